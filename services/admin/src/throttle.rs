//! Login throttling: failed logins are counted per account name and per client address over
//! a window; at [`MAX_FAILURES`] the key is refused (even with the right password) until the
//! window that began with its first failure ends. Kept in memory: each admin process counts
//! its own (docs/admin.md).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins per key within [`WINDOW`] before the key is refused.
pub const MAX_FAILURES: u32 = 5;
/// How long failures are remembered.
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
/// Most keys remembered; beyond it the oldest windows are forgotten first.
const MAX_KEYS: usize = 10_000;

/// Failure counts by key (`account:NAME`, `ip:ADDR`).
#[derive(Debug, Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, (Instant, u32)>>,
}

impl Throttle {
    /// How long `key` is still refused, if it is.
    pub fn refused_for(&self, key: &str, now: Instant) -> Option<Duration> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = keys.get(key)?;
        let ends = *start + WINDOW;
        (*count >= MAX_FAILURES && ends > now).then(|| ends - now)
    }

    /// Counts a failed login of `key`.
    pub fn failed(&self, key: &str, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, (start, _)| *start + WINDOW > now);
            if keys.len() >= MAX_KEYS {
                if let Some(oldest) = keys.iter().min_by_key(|(_, v)| v.0).map(|(k, _)| k.clone()) {
                    keys.remove(&oldest);
                }
            }
        }
        let entry = keys.entry(key.to_owned()).or_insert((now, 0));
        if entry.0 + WINDOW <= now {
            *entry = (now, 0);
        }
        entry.1 += 1;
    }

    /// Forgets the failures of `key` (after a successful login of that account).
    pub fn succeeded(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_after_the_limit_until_the_window_ends() {
        let t = Throttle::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES - 1 {
            t.failed("ip:1", now);
        }
        assert!(t.refused_for("ip:1", now).is_none());
        t.failed("ip:1", now);
        assert_eq!(t.refused_for("ip:1", now), Some(WINDOW));
        assert!(t.refused_for("ip:2", now).is_none());
        assert!(t.refused_for("ip:1", now + WINDOW).is_none());
        t.failed("ip:1", now + WINDOW);
        assert!(
            t.refused_for("ip:1", now + WINDOW).is_none(),
            "a new window"
        );
        t.succeeded("ip:1");
        assert!(t.refused_for("ip:1", now).is_none());
    }
}
