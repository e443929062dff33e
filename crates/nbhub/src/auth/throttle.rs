//! Slows down repeated failed logins for one name: after `threshold` failures each further
//! attempt must wait, twice as long each time (capped), until a login succeeds or the failures
//! are an hour old. Kept in memory: a restart forgets, which only helps the legitimate user.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const MAX_WAIT: Duration = Duration::from_secs(300);
const FORGET_AFTER: Duration = Duration::from_secs(3600);

pub struct LoginThrottle {
    threshold: u32,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(threshold: u32) -> Self {
        LoginThrottle {
            threshold,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `name` must still wait before trying again, if at all.
    pub fn wait_for(&self, name: &str) -> Option<Duration> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, last) = map.get(name)?;
        if *count < self.threshold.max(1) || last.elapsed() > FORGET_AFTER {
            return None;
        }
        let wait =
            Duration::from_secs(1u64 << (count - self.threshold.max(1)).min(16)).min(MAX_WAIT);
        wait.checked_sub(last.elapsed())
    }

    pub fn failed(&self, name: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Bound memory under a flood of made-up names.
            map.retain(|_, (_, t)| t.elapsed() < FORGET_AFTER);
        }
        let entry = map.entry(name.to_string()).or_insert((0, Instant::now()));
        if entry.1.elapsed() > FORGET_AFTER {
            entry.0 = 0;
        }
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    pub fn succeeded(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_after_threshold() {
        let t = LoginThrottle::new(2);
        t.failed("a");
        assert!(t.wait_for("a").is_none());
        t.failed("a");
        assert!(t.wait_for("a").is_some());
        assert!(t.wait_for("b").is_none());
        t.succeeded("a");
        assert!(t.wait_for("a").is_none());
    }
}
