//! Warnings about conditions that repeat (accept failures, malformed connections, a backend
//! down for every request): logged at most once per interval, with the number suppressed
//! since the last one logged, so a flood of bad clients or a failing backend cannot flood
//! the logs.
//!
//! [`warn_limited!`](crate::warn_limited) is the usual way in: one limit per call site, 10 s
//! apart, and the logged line carries `suppressed=N`. [`RateLimit`] is the limit itself,
//! with the time passed in ([`RateLimit::admit_at`]) so tests drive it with their own clock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How far apart [`warn_limited!`](crate::warn_limited) logs one call site's warnings.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Lets one event through per interval and counts the others.
#[derive(Debug)]
pub struct RateLimit {
    interval_ns: u64,
    /// When the next event may be logged, in nanoseconds since [`epoch`] (0: at once).
    next_ns: AtomicU64,
    /// Events suppressed since the last one let through.
    suppressed: AtomicU64,
}

impl RateLimit {
    /// A limit letting one event through per `interval` (the first one at once).
    pub const fn new(interval: Duration) -> Self {
        let ns = interval.as_nanos();
        RateLimit {
            interval_ns: if ns > u64::MAX as u128 {
                u64::MAX
            } else {
                ns as u64
            },
            next_ns: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Counts one event now: `Some(suppressed)` when it is to be logged (with the number of
    /// events suppressed since the last one logged), `None` when it is suppressed.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(since_epoch())
    }

    /// As [`RateLimit::admit`], with `now` given as the time since a fixed point of the
    /// caller's clock (which must not go backwards).
    pub fn admit_at(&self, now: Duration) -> Option<u64> {
        let now_ns = u64::try_from(now.as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_ns.load(Ordering::Relaxed);
        if now_ns >= next
            && self
                .next_ns
                .compare_exchange(
                    next,
                    now_ns.saturating_add(self.interval_ns),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }
}

/// The fixed point [`RateLimit::admit`] measures time from (the first call).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Time since [`epoch`] (the first event, at 0, is let through: nothing is due before 0).
fn since_epoch() -> Duration {
    epoch().elapsed()
}

/// `tracing::warn!` at most once per [`DEFAULT_INTERVAL`] for this call site, with a
/// `suppressed` field counting the warnings left out since the last one logged. Takes what
/// `tracing::warn!` takes:
///
/// ```
/// # let peer = "192.0.2.1:4242";
/// sluice_runtime::warn_limited!(%peer, "Malformed request; closing connection");
/// ```
#[macro_export]
macro_rules! warn_limited {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::ratelimit::RateLimit =
            $crate::ratelimit::RateLimit::new($crate::ratelimit::DEFAULT_INTERVAL);
        if let Some(suppressed) = LIMIT.admit() {
            $crate::__tracing::warn!(suppressed, $($arg)+);
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn one_event_per_interval_with_the_count_suppressed() {
        let limit = RateLimit::new(Duration::from_secs(10));
        assert_eq!(limit.admit_at(at(0)), Some(0), "the first is logged");
        for s in 1..=9 {
            assert_eq!(limit.admit_at(at(s)), None, "second {s} is suppressed");
        }
        assert_eq!(
            limit.admit_at(at(10)),
            Some(9),
            "the next logged one says how many were left out"
        );
        assert_eq!(limit.admit_at(at(11)), None);
        assert_eq!(limit.admit_at(at(60)), Some(1));
        assert_eq!(limit.admit_at(at(70)), Some(0), "nothing left out since");
    }

    #[test]
    fn concurrent_events_are_each_logged_or_counted() {
        let limit = std::sync::Arc::new(RateLimit::new(Duration::from_secs(3600)));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let limit = limit.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .filter(|_| limit.admit_at(at(5)).is_some())
                        .count()
                })
            })
            .collect();
        let logged: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(logged, 1);
        assert_eq!(limit.admit_at(at(4000)), Some(3999));
    }

    #[test]
    fn the_macro_logs_the_first_warning() {
        // Compiles with fields and a message, and lets the first one through.
        let peer = "192.0.2.1:1";
        for _ in 0..3 {
            crate::warn_limited!(%peer, kind = "x", "Repeated condition");
        }
    }
}
