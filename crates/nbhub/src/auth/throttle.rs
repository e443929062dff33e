//! Slows down password guessing without letting anyone lock a user out.
//!
//! * Failures are counted per (client address, name). After `threshold` of them that client
//!   waits before trying that name again, twice as long each time (up to 5 minutes), until it
//!   signs in or its failures are an hour old. Another client's failures never delay a login:
//!   before, failures were counted per name alone, so three anonymous wrong passwords every
//!   5 minutes kept `admin` out for good.
//! * A client failing for many different names (one password sprayed over many accounts) waits
//!   too: from the `SPRAY_NAMES`-th distinct name within `SPRAY_WINDOW`, twice as long per
//!   further failure, up to a minute (short: many users may share one address behind a NAT).
//!   A success does not reset it, so one valid account cannot launder a spray.
//! * Memory is bounded: each table keeps two generations of at most `capacity / 2` entries; a
//!   full or hour-old generation becomes the previous one and the one before is dropped, so
//!   every operation is O(1) (amortised) however many names a flood makes up. Names are kept
//!   as keyed hashes, so a long name costs no more than a short one.
//! * Logging is bounded too: [`LoginThrottle::failed`] says whether to log this failure (a
//!   token bucket, `LOG_BURST` lines then `LOG_PER_SEC` a second) and how many were not.
//!
//! IPv6 clients are counted per /64, the block one host usually has. Kept in memory: a restart
//! forgets, which only helps the legitimate user.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_WAIT: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(3600);
const SPRAY_NAMES: usize = 20;
const SPRAY_WINDOW: Duration = Duration::from_secs(15 * 60);
const SPRAY_MAX_WAIT: Duration = Duration::from_secs(60);
/// Entries kept per table (both generations together).
const PAIR_CAPACITY: usize = 100_000;
const CLIENT_CAPACITY: usize = 20_000;
const LOG_BURST: f64 = 20.0;
const LOG_PER_SEC: f64 = 5.0;

/// A client address as counted: IPv4 whole, IPv6 by its /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Client(u128);

impl From<IpAddr> for Client {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Client(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Client(u128::from(u32::from(v4))),
                None => Client(u128::from(v6) & !((1u128 << 64) - 1) | (1u128 << 127)),
            },
        }
    }
}

/// Two generations of a map: O(1) operations, at most `capacity` entries.
struct Generations<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    started: Instant,
    capacity: usize,
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn new(capacity: usize) -> Self {
        Generations {
            current: HashMap::new(),
            previous: HashMap::new(),
            started: Instant::now(),
            capacity,
        }
    }

    fn get(&self, k: &K) -> Option<&V> {
        self.current.get(k).or_else(|| self.previous.get(k))
    }

    /// The entry of `k` in the current generation (moved there if it was in the previous one).
    fn entry(&mut self, k: K, new: impl FnOnce() -> V) -> &mut V {
        if !self.current.contains_key(&k)
            && (self.current.len() >= self.capacity / 2 || self.started.elapsed() >= FORGET_AFTER)
        {
            // The generation before the previous one is dropped: it is at least an hour old, or
            // a flood filled two generations since.
            self.previous = std::mem::take(&mut self.current);
            self.started = Instant::now();
        }
        let v = match self.previous.remove(&k) {
            Some(v) => v,
            None => new(),
        };
        self.current.entry(k).or_insert(v)
    }

    fn remove(&mut self, k: &K) {
        self.current.remove(k);
        self.previous.remove(k);
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

struct Failures {
    count: u32,
    last: Instant,
}

/// One client's recent failures over all names.
struct Spray {
    /// Distinct names (hashed) failed within the window, up to `SPRAY_NAMES`.
    names: Vec<u64>,
    /// Failures since `names` reached `SPRAY_NAMES`.
    beyond: u32,
    last: Instant,
}

/// Whether to log a failed login, and how many were left unlogged before it.
#[derive(Debug, PartialEq, Eq)]
pub struct LogLine {
    pub log: bool,
    pub suppressed: u64,
}

struct Inner {
    pairs: Generations<(Client, u64), Failures>,
    clients: Generations<Client, Spray>,
    log_tokens: f64,
    log_refilled: Instant,
    suppressed: u64,
}

pub struct LoginThrottle {
    threshold: u32,
    hasher: RandomState,
    inner: Mutex<Inner>,
}

fn doubling(exponent: u32, cap: Duration) -> Duration {
    Duration::from_secs(1u64 << exponent.min(16)).min(cap)
}

impl LoginThrottle {
    pub fn new(threshold: u32) -> Self {
        Self::with_capacity(threshold, PAIR_CAPACITY, CLIENT_CAPACITY)
    }

    fn with_capacity(threshold: u32, pairs: usize, clients: usize) -> Self {
        LoginThrottle {
            threshold: threshold.max(1),
            hasher: RandomState::new(),
            inner: Mutex::new(Inner {
                pairs: Generations::new(pairs),
                clients: Generations::new(clients),
                log_tokens: LOG_BURST,
                log_refilled: Instant::now(),
                suppressed: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn name_key(&self, name: &str) -> u64 {
        self.hasher.hash_one(name)
    }

    /// How long `client` must still wait before trying `name` again, if at all.
    pub fn wait_for(&self, client: IpAddr, name: &str) -> Option<Duration> {
        let client = Client::from(client);
        let key = (client, self.name_key(name));
        let inner = self.lock();
        let pair = inner.pairs.get(&key).and_then(|f| {
            if f.count < self.threshold || f.last.elapsed() > FORGET_AFTER {
                return None;
            }
            doubling(f.count - self.threshold, MAX_WAIT).checked_sub(f.last.elapsed())
        });
        let spray = inner.clients.get(&client).and_then(|s| {
            if s.names.len() < SPRAY_NAMES || s.last.elapsed() > SPRAY_WINDOW {
                return None;
            }
            doubling(s.beyond, SPRAY_MAX_WAIT).checked_sub(s.last.elapsed())
        });
        pair.max(spray)
    }

    /// Counts a failed login of `client` for `name`.
    pub fn failed(&self, client: IpAddr, name: &str) -> LogLine {
        let client = Client::from(client);
        let name_key = self.name_key(name);
        let now = Instant::now();
        let mut inner = self.lock();
        let pair = inner.pairs.entry((client, name_key), || Failures {
            count: 0,
            last: now,
        });
        if pair.last.elapsed() > FORGET_AFTER {
            pair.count = 0;
        }
        pair.count = pair.count.saturating_add(1);
        pair.last = now;
        let spray = inner.clients.entry(client, || Spray {
            names: Vec::new(),
            beyond: 0,
            last: now,
        });
        if spray.last.elapsed() > SPRAY_WINDOW {
            spray.names.clear();
            spray.beyond = 0;
        }
        if spray.names.len() >= SPRAY_NAMES {
            spray.beyond = spray.beyond.saturating_add(1);
        } else if !spray.names.contains(&name_key) {
            spray.names.push(name_key);
        }
        spray.last = now;
        // The log's token bucket.
        let refill = inner.log_refilled.elapsed().as_secs_f64() * LOG_PER_SEC;
        inner.log_tokens = (inner.log_tokens + refill).min(LOG_BURST);
        inner.log_refilled = now;
        if inner.log_tokens >= 1.0 {
            inner.log_tokens -= 1.0;
            LogLine {
                log: true,
                suppressed: std::mem::take(&mut inner.suppressed),
            }
        } else {
            inner.suppressed += 1;
            LogLine {
                log: false,
                suppressed: inner.suppressed,
            }
        }
    }

    /// A login of `client` for `name` succeeded: its failures for that name are forgotten.
    pub fn succeeded(&self, client: IpAddr, name: &str) {
        let key = (Client::from(client), self.name_key(name));
        self.lock().pairs.remove(&key);
    }

    /// Entries held in both tables (bounded by their capacities).
    pub fn tracked(&self) -> usize {
        let inner = self.lock();
        inner.pairs.len() + inner.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn waits_after_threshold_for_that_client_only() {
        let t = LoginThrottle::new(2);
        let (attacker, user) = (ip("192.0.2.1"), ip("198.51.100.7"));
        t.failed(attacker, "a");
        assert!(t.wait_for(attacker, "a").is_none());
        t.failed(attacker, "a");
        assert!(t.wait_for(attacker, "a").is_some());
        assert!(t.wait_for(attacker, "b").is_none(), "another name");
        assert!(
            t.wait_for(user, "a").is_none(),
            "another client is never delayed by the attacker's failures"
        );
        t.succeeded(attacker, "a");
        assert!(t.wait_for(attacker, "a").is_none());
    }

    #[test]
    fn a_client_spraying_names_waits() {
        let t = LoginThrottle::new(3);
        let sprayer = ip("2001:db8::1");
        for i in 0..SPRAY_NAMES {
            assert!(t.wait_for(sprayer, &format!("u{i}")).is_none());
            t.failed(sprayer, &format!("u{i}"));
        }
        // Every further name waits, from the same /64 too; other clients do not.
        assert!(t.wait_for(sprayer, "fresh").is_some());
        assert!(t.wait_for(ip("2001:db8::99"), "fresh").is_some());
        assert!(t.wait_for(ip("2001:db8:1::1"), "fresh").is_none());
        // A success of the sprayer does not reset its count.
        t.succeeded(sprayer, "own-account");
        assert!(t.wait_for(sprayer, "fresh").is_some());
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_names() {
        let t = LoginThrottle::with_capacity(3, 1_000, 100);
        for i in 0..50_000u32 {
            let client = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + (i % 5_000)));
            t.failed(client, &format!("made-up-{i}"));
        }
        assert!(t.tracked() <= 1_100, "tracked {}", t.tracked());
        // What is recent is still counted.
        let c = ip("192.0.2.9");
        for _ in 0..3 {
            t.failed(c, "target");
        }
        assert!(t.wait_for(c, "target").is_some());
    }

    #[test]
    fn the_log_is_bounded() {
        let t = LoginThrottle::new(3);
        let logged = (0..10_000)
            .filter(|i| t.failed(ip("192.0.2.1"), &format!("n{i}")).log)
            .count();
        // The burst, and what the bucket refilled during the loop.
        assert!(logged <= LOG_BURST as usize + 5, "{logged} lines logged");
        let next = (0..)
            .map(|_| t.failed(ip("192.0.2.1"), "x"))
            .find(|l| l.log);
        assert!(next.is_some_and(|l| l.suppressed > 0));
    }
}
