//! Unix account and group lookups, off the async runtime's workers.
//!
//! `getpwnam`, `getgrouplist` and `getgrgid` go through NSS: at a real site that is SSSD or
//! LDAP, and one lookup may wait on the network for seconds. They run on every form render,
//! every validation and every spawn, so on a runtime worker they would stall every other task
//! of that worker (the proxy's route checks, other users' pages) for as long.
//!
//! So they run in `tokio::task::spawn_blocking`, behind a small cache with a lifetime
//! ([`Accounts`], one per spawner): a form render, its validation and the spawn that follows
//! ask for the same user within seconds, and one lookup answers them all. Why a cache and
//! not only `spawn_blocking` per call: a slow directory then costs one blocking thread per
//! user and minute, not one per request. What it costs: a change of group membership shows
//! after at most [`TTL`] (SSSD's own cache keeps entries far longer, 90 minutes by default).
//! Only accounts that exist are kept: a user whose account is created just now is found at
//! once, and a failed lookup is asked again next time. The cache holds at most [`MAX_ENTRIES`]
//! users (the oldest goes first), so a stream of names costs bounded memory.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::unistd::{Gid, Group};

use crate::local::unix::{lookup_account, Account};
use crate::SpawnError;

/// How long a looked-up account and its groups are believed.
pub(crate) const TTL: Duration = Duration::from_secs(60);
/// How many users the cache holds at most.
pub(crate) const MAX_ENTRIES: usize = 1024;

/// An account and its groups (initgroups' list: the primary group and the supplementary ones).
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub account: Account,
    pub gids: Vec<u32>,
}

/// The account and group lookups of one spawner, cached for [`TTL`].
#[derive(Debug)]
pub(crate) struct Accounts {
    members: TtlCache<String, Arc<Member>>,
    group_names: TtlCache<String, Arc<Vec<String>>>,
}

impl Default for Accounts {
    fn default() -> Self {
        Self {
            members: TtlCache::new(TTL, MAX_ENTRIES),
            group_names: TtlCache::new(TTL, MAX_ENTRIES),
        }
    }
}

impl Accounts {
    /// The account `name` and its groups; `Ok(None)` when there is no such account.
    pub async fn member(&self, name: &str) -> Result<Option<Arc<Member>>, SpawnError> {
        if let Some(hit) = self.members.get(name, Instant::now()) {
            return Ok(Some(hit));
        }
        let owned = name.to_owned();
        let found = blocking(move || lookup_member(&owned)).await??;
        let found = found.map(Arc::new);
        if let Some(member) = &found {
            self.members
                .insert(name.to_owned(), member.clone(), Instant::now());
        }
        Ok(found)
    }

    /// The account `name` and its groups, which must exist ([`SpawnError::NoUnixAccount`]).
    pub async fn require(&self, name: &str) -> Result<Arc<Member>, SpawnError> {
        self.member(name)
            .await?
            .ok_or_else(|| SpawnError::NoUnixAccount {
                user: name.to_owned(),
            })
    }

    /// The names of the Unix groups `name` is in; none when the account or its groups cannot
    /// be found (the form then offers what needs no group).
    pub async fn group_names(&self, name: &str) -> Arc<Vec<String>> {
        if let Some(hit) = self.group_names.get(name, Instant::now()) {
            return hit;
        }
        let Ok(Some(member)) = self.member(name).await else {
            return Arc::default();
        };
        let gids = member.gids.clone();
        let Ok(names) = blocking(move || {
            gids.into_iter()
                .filter_map(|gid| Group::from_gid(Gid::from_raw(gid)).ok().flatten())
                .map(|g| g.name)
                .collect::<Vec<_>>()
        })
        .await
        else {
            return Arc::default();
        };
        let names = Arc::new(names);
        self.group_names
            .insert(name.to_owned(), names.clone(), Instant::now());
        names
    }
}

/// `getpwnam`, then `getgrouplist` (blocking: NSS).
fn lookup_member(name: &str) -> Result<Option<Member>, SpawnError> {
    let Some(account) = lookup_account(name)? else {
        return Ok(None);
    };
    let cname = std::ffi::CString::new(account.name.as_bytes())
        .map_err(|_| SpawnError::Failed(format!("invalid user name {:?}", account.name)))?;
    let gids = nix::unistd::getgrouplist(&cname, Gid::from_raw(account.gid))
        .map_err(|e| {
            SpawnError::io(
                format!("list the groups of {}", account.name),
                std::io::Error::from(e),
            )
        })?
        .into_iter()
        .map(Gid::as_raw)
        .collect();
    Ok(Some(Member { account, gids }))
}

/// Runs a blocking lookup on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SpawnError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        SpawnError::io(
            "look up a Unix account",
            std::io::Error::other(e.to_string()),
        )
    })
}

/// A map whose entries live for `ttl`, holding at most `max` of them.
#[derive(Debug)]
pub(crate) struct TtlCache<K, V> {
    ttl: Duration,
    max: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Eq + Hash + Clone, V: Clone> TtlCache<K, V> {
    pub fn new(ttl: Duration, max: usize) -> Self {
        Self {
            ttl,
            max: max.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<K, (Instant, V)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The value stored for `key` if it is younger than the lifetime at `now`.
    pub fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Eq + Hash + ?Sized,
    {
        let entries = self.entries();
        let (at, value) = entries.get(key)?;
        (now.saturating_duration_since(*at) < self.ttl).then(|| value.clone())
    }

    /// Stores `value` for `key` as of `now`. When full, expired entries go first, then the
    /// oldest one.
    pub fn insert(&self, key: K, value: V, now: Instant) {
        let mut entries = self.entries();
        if entries.len() >= self.max && !entries.contains_key(&key) {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| now.saturating_duration_since(*at) < ttl);
            if entries.len() >= self.max {
                let oldest = entries
                    .iter()
                    .min_by_key(|(_, (at, _))| *at)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(key, (now, value));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_expire_after_their_lifetime() {
        let cache = TtlCache::new(Duration::from_secs(60), 10);
        let t0 = Instant::now();
        cache.insert("alice".to_owned(), 1, t0);
        assert_eq!(cache.get("alice", t0), Some(1));
        assert_eq!(cache.get("alice", t0 + Duration::from_secs(59)), Some(1));
        assert_eq!(cache.get("alice", t0 + Duration::from_secs(60)), None);
        assert_eq!(cache.get("bob", t0), None);
        // A fresh lookup replaces the expired entry and lives again.
        let t1 = t0 + Duration::from_secs(61);
        cache.insert("alice".to_owned(), 2, t1);
        assert_eq!(cache.get("alice", t1 + Duration::from_secs(59)), Some(2));
    }

    #[test]
    fn the_cache_is_bounded_expired_and_oldest_go_first() {
        let cache = TtlCache::new(Duration::from_secs(60), 3);
        let t0 = Instant::now();
        let s = Duration::from_secs;
        cache.insert("a".to_owned(), 1, t0);
        cache.insert("b".to_owned(), 2, t0 + s(10));
        cache.insert("c".to_owned(), 3, t0 + s(20));
        // Full: the oldest ("a") makes room.
        cache.insert("d".to_owned(), 4, t0 + s(30));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("a", t0 + s(30)), None);
        assert_eq!(cache.get("b", t0 + s(30)), Some(2));
        // Re-storing a key that is in does not evict another one.
        cache.insert("b".to_owned(), 5, t0 + s(31));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("c", t0 + s(31)), Some(3));
        // Later, everything but "d" and "b" has expired: both expired ones go at once.
        cache.insert("e".to_owned(), 6, t0 + s(85));
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get("c", t0 + s(85)), None);
        assert_eq!(cache.get("d", t0 + s(85)), Some(4));
        assert_eq!(cache.get("e", t0 + s(85)), Some(6));
        let tiny = TtlCache::new(Duration::from_secs(60), 0);
        tiny.insert(1, 1, t0);
        tiny.insert(2, 2, t0);
        assert_eq!((tiny.len(), tiny.get(&2, t0)), (1, Some(2)));
    }

    #[tokio::test]
    async fn looks_up_real_accounts_off_the_workers() {
        let accounts = Accounts::default();
        // root is in every password database.
        let root = accounts.member("root").await.unwrap().unwrap();
        assert_eq!((root.account.uid, root.account.gid), (0, 0));
        assert!(root.gids.contains(&0));
        assert!(accounts
            .group_names("root")
            .await
            .contains(&"root".to_owned()));
        assert!(accounts
            .member("nbhub-no-such-user-x")
            .await
            .unwrap()
            .is_none());
        assert!(accounts
            .group_names("nbhub-no-such-user-x")
            .await
            .is_empty());
        if !nbhub_testkit::is_root() {
            nbhub_testkit::missing_part(
                "root (to create a Unix account with a group of its own)",
                "the tests as root (CI does)",
            );
            return;
        }
        let base = nbhub_testkit::temp_dir_world_readable();
        let account = nbhub_testkit::TempAccount::create("c", &base.path().join("home"));
        let member = accounts.member(&account.name).await.unwrap().unwrap();
        let expected = nix::unistd::User::from_name(&account.name)
            .unwrap()
            .unwrap();
        assert_eq!(member.account.uid, expected.uid.as_raw());
        assert_eq!(member.account.home, account.home);
        let group = Group::from_name(&account.group).unwrap().unwrap();
        assert!(member.gids.contains(&group.gid.as_raw()));
        let names = accounts.group_names(&account.name).await;
        assert!(names.contains(&account.group), "{names:?}");
    }
}
