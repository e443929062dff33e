//! Resolved identities, so that a request with a known token (or login cookie) costs no
//! database query for its scopes, and a user's groups and roles are read once per change.
//!
//! An entry is valid only for the database's authorization epoch it was resolved in: every
//! write to tokens, users, groups, roles, shares or services bumps the epoch when it finishes
//! ([`crate::db::Db::authz_write`]), so a revoked token, a deleted user or a changed group is
//! seen by the very next request. The epoch is read before the queries that resolve an entry,
//! so an entry resolved while a write was under way carries the older epoch and is never used.
//! Expiry is checked on every hit. Keys are SHA-256 digests: raw tokens are not kept.
//!
//! Two writes leave the epoch alone, on purpose: one that changed nothing
//! (`AuthzWrite::unchanged`: a first spawn finds no old server token to revoke), and creating a
//! token (no cached entry can depend on a token that did not exist). Otherwise every spawn
//! emptied the cache, and a spawn storm turned every request into a round of queries. The same
//! epoch guards a third map: a user's groups and role names (`auth::memberships`, two queries
//! for a whole page of users), which the REST API's user models read.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest, Sha256};

use super::scopes::ScopeSet;
use super::Identity;
use crate::db::users::Membership;

/// Beyond this many entries a map is emptied and refilled: simpler than LRU, and a full
/// refill costs what the uncached path costs anyway.
const MAX_ENTRIES: usize = 20_000;

pub type TokenKey = [u8; 32];

pub fn token_key(raw: &str) -> TokenKey {
    Sha256::digest(raw.as_bytes()).into()
}

/// A user's (or service's) own scopes and the members of the groups their filters name.
#[derive(Clone)]
pub struct OwnerScopes {
    pub scopes: Arc<ScopeSet>,
    pub group_members: Arc<HashMap<String, HashSet<String>>>,
}

struct Entry<T> {
    epoch: u64,
    value: T,
}

#[derive(Clone)]
pub struct TokenHit {
    pub identity: Identity,
    /// When the token's use was last written back (`last_activity`).
    pub touched: i64,
}

#[derive(Default)]
pub struct IdentityCache {
    tokens: Mutex<HashMap<TokenKey, Entry<TokenHit>>>,
    /// Keyed by user id; cookie logins.
    users: Mutex<HashMap<i64, Entry<OwnerScopes>>>,
    /// Keyed by user id: groups and role names, for the user models of the REST API.
    memberships: Mutex<HashMap<i64, Entry<Arc<Membership>>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn get<K: std::hash::Hash + Eq, T: Clone>(
    map: &Mutex<HashMap<K, Entry<T>>>,
    key: &K,
    epoch: u64,
) -> Option<T> {
    let mut map = lock(map);
    match map.get(key) {
        Some(e) if e.epoch == epoch => Some(e.value.clone()),
        Some(_) => {
            map.remove(key);
            None
        }
        None => None,
    }
}

fn put<K: std::hash::Hash + Eq, T>(
    map: &Mutex<HashMap<K, Entry<T>>>,
    key: K,
    epoch: u64,
    value: T,
) {
    let mut map = lock(map);
    if map.len() >= MAX_ENTRIES {
        map.clear();
    }
    map.insert(key, Entry { epoch, value });
}

impl IdentityCache {
    pub fn token(&self, key: &TokenKey, epoch: u64) -> Option<TokenHit> {
        get(&self.tokens, key, epoch)
    }

    pub fn put_token(&self, key: TokenKey, epoch: u64, hit: TokenHit) {
        put(&self.tokens, key, epoch, hit);
    }

    pub fn forget_token(&self, key: &TokenKey) {
        lock(&self.tokens).remove(key);
    }

    /// Records a write-back of the token's use, so that the next one waits its turn.
    pub fn touched(&self, key: &TokenKey, at: i64) {
        if let Some(e) = lock(&self.tokens).get_mut(key) {
            e.value.touched = at;
        }
    }

    pub fn user(&self, user_id: i64, epoch: u64) -> Option<OwnerScopes> {
        get(&self.users, &user_id, epoch)
    }

    pub fn put_user(&self, user_id: i64, epoch: u64, owner: OwnerScopes) {
        put(&self.users, user_id, epoch, owner);
    }

    pub fn membership(&self, user_id: i64, epoch: u64) -> Option<Arc<Membership>> {
        get(&self.memberships, &user_id, epoch)
    }

    pub fn put_membership(&self, user_id: i64, epoch: u64, membership: Arc<Membership>) {
        put(&self.memberships, user_id, epoch, membership);
    }
}
