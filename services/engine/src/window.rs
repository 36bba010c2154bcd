//! The rolling-window arithmetic, in one place.
//!
//! A counter is a short list of sub-buckets `(index, count)`, where bucket `j` holds what
//! was admitted during `[j*b, (j+1)*b)` milliseconds (`b` = bucket width, by default the
//! period / 60). At time `now` the window `(now - P, now]` is covered conservatively by
//! every bucket that *may* hold an event inside it: those with `(j+1)*b > now - P`. A cost
//! is admitted only if that sum plus the cost stays within the limit, so no window of length
//! `P` ever holds more than the limit. The price is a little under-admission: an event is
//! counted for at most one bucket width longer than it really is inside the window.
//!
//! The Redis Lua script of the cluster mode implements exactly these rules; a test feeds both
//! the same sequence and compares every answer.

/// Parameters of one counter's window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowSpec {
    /// Window length in milliseconds (> 0).
    pub period_ms: u64,
    /// Sub-bucket width in milliseconds (> 0, at most `period_ms`).
    pub bucket_ms: u64,
}

impl WindowSpec {
    /// A window of `period_ms` split into `buckets` sub-buckets (the width is rounded up,
    /// so there are never more than `buckets` + 1 live buckets).
    pub fn new(period_ms: u64, buckets: u32) -> Self {
        let period_ms = period_ms.max(1);
        let n = u64::from(buckets.max(1));
        WindowSpec {
            period_ms,
            bucket_ms: period_ms.div_ceil(n).max(1),
        }
    }

    /// Index of the bucket `now` falls in.
    pub fn bucket_of(&self, now_ms: u64) -> u64 {
        now_ms / self.bucket_ms
    }

    /// The oldest bucket index still counted at `now`.
    pub fn oldest_counted(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.period_ms) / self.bucket_ms
    }

    /// When bucket `index` stops being counted (ms since the epoch).
    pub fn expiry_of(&self, index: u64) -> u64 {
        (index + 1) * self.bucket_ms + self.period_ms
    }
}

/// A lease shorter than this is not worth handing out (ms): none is granted so close to the
/// end of a sub-bucket.
pub const MIN_LEASE_MS: u64 = 50;

/// Leases only come out of the half of the limit furthest from it: the last half is taken
/// one request at a time, so limits stay exact where they bind.
const LEASE_RESERVE_DIVISOR: u64 = 2;

/// One lease gets at most this share of the room left above the reserve, so that several
/// edges asking at once still find room.
const LEASE_SHARE_DIVISOR: u64 = 4;

/// One lease is at most this share of the limit: what an edge holds unused (when its
/// traffic stops) is a small part of the limit.
const LEASE_LIMIT_DIVISOR: u64 = 64;

/// How many units beyond a fitting take to charge as a lease for the caller.
///
/// `used_after` is the level including the take's own cost, `want` the units asked for, and
/// `valid_ms` how long the lease would last (until the end of the current sub-bucket). The
/// grant is at most a quarter of the room left above half the limit and at most 1/64 of the
/// limit, and nothing when the sub-bucket ends within [`MIN_LEASE_MS`]. The Redis script
/// mirrors this exactly.
pub fn lease_units(limit: u64, used_after: u64, want: u64, valid_ms: u64) -> u64 {
    if want == 0 || valid_ms < MIN_LEASE_MS {
        return 0;
    }
    let reserve = limit.div_ceil(LEASE_RESERVE_DIVISOR);
    let room = limit.saturating_sub(reserve).saturating_sub(used_after);
    want.min(room / LEASE_SHARE_DIVISOR)
        .min(limit / LEASE_LIMIT_DIVISOR)
}

impl WindowSpec {
    /// Milliseconds from `now` until the sub-bucket `now` falls in ends (how long a lease
    /// charged now may be used).
    pub fn lease_valid_ms(&self, now_ms: u64) -> u64 {
        (self.bucket_of(now_ms) + 1) * self.bucket_ms - now_ms
    }
}

/// What a take decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TakeOutcome {
    /// Admitted; `used` is the level after adding the cost.
    Admitted {
        /// Level in the window after the take.
        used: u64,
    },
    /// Refused; nothing was added.
    Refused {
        /// Level in the window (unchanged).
        used: u64,
        /// Milliseconds until the cost would fit, if it ever can (`None` when cost > limit).
        retry_after_ms: Option<u64>,
    },
}

/// One counter: its live sub-buckets, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Window {
    /// In increasing index order (a plain vector: reading the newest bucket and the sum
    /// costs less than with a ring buffer, and dropping old buckets happens once per
    /// sub-bucket width at most).
    buckets: Vec<(u64, u64)>,
}

impl Window {
    /// An empty counter.
    pub fn new() -> Self {
        Window::default()
    }

    /// The live buckets `(index, count)`, oldest first.
    pub fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.buckets.iter().copied()
    }

    /// Drops buckets no longer counted at `now`.
    pub fn prune(&mut self, spec: WindowSpec, now_ms: u64) {
        let oldest = spec.oldest_counted(now_ms);
        let stale = self.buckets.partition_point(|&(j, _)| j < oldest);
        if stale > 0 {
            self.buckets.drain(..stale);
        }
    }

    /// The level counted at `now`.
    #[inline]
    pub fn used(&self, spec: WindowSpec, now_ms: u64) -> u64 {
        let oldest = spec.oldest_counted(now_ms);
        self.buckets
            .iter()
            .filter(|(j, _)| *j >= oldest)
            .map(|(_, c)| *c)
            .sum()
    }

    /// Whether `cost` would fit under `limit` at `now`, without changing anything.
    #[inline]
    pub fn check(&self, spec: WindowSpec, now_ms: u64, cost: u64, limit: u64) -> TakeOutcome {
        self.outcome(self.used(spec, now_ms), spec, now_ms, cost, limit)
    }

    /// Whether `cost` fits under `limit` on top of the level `used` counted at `now`.
    #[inline]
    fn outcome(
        &self,
        used: u64,
        spec: WindowSpec,
        now_ms: u64,
        cost: u64,
        limit: u64,
    ) -> TakeOutcome {
        if used.saturating_add(cost) <= limit {
            TakeOutcome::Admitted { used: used + cost }
        } else {
            TakeOutcome::Refused {
                used,
                retry_after_ms: self.retry_after(spec, now_ms, cost, limit),
            }
        }
    }

    /// Adds `cost` at `now` if it fits under `limit`; otherwise changes nothing. (Pruned
    /// first, so the level is the sum of every bucket left: no second window arithmetic.)
    pub fn take(&mut self, spec: WindowSpec, now_ms: u64, cost: u64, limit: u64) -> TakeOutcome {
        self.prune(spec, now_ms);
        let used = self.buckets.iter().map(|&(_, c)| c).sum();
        let outcome = self.outcome(used, spec, now_ms, cost, limit);
        if matches!(outcome, TakeOutcome::Admitted { .. }) {
            self.add(spec, now_ms, cost);
        }
        outcome
    }

    /// Adds `cost` at `now` unconditionally.
    pub fn add(&mut self, spec: WindowSpec, now_ms: u64, cost: u64) {
        if cost == 0 {
            return;
        }
        let cur = spec.bucket_of(now_ms);
        match self.buckets.last_mut() {
            Some((j, c)) if *j == cur => *c += cost,
            Some((j, _)) if *j > cur => {
                // The clock went backwards: charge the newest bucket (never lose a charge).
                if let Some((_, c)) = self.buckets.last_mut() {
                    *c += cost;
                }
            }
            _ => self.buckets.push((cur, cost)),
        }
    }

    /// Takes back `cost` charged at `now` (the refund of an all-or-nothing batch).
    pub fn refund(&mut self, spec: WindowSpec, now_ms: u64, cost: u64) {
        let cur = spec.bucket_of(now_ms);
        let mut left = cost;
        for (j, c) in self.buckets.iter_mut().rev() {
            if *j > cur {
                continue;
            }
            let d = left.min(*c);
            *c -= d;
            left -= d;
            if left == 0 {
                break;
            }
        }
        self.buckets.retain(|(_, c)| *c > 0);
    }

    /// Milliseconds from `now` until `cost` fits under `limit`, assuming nothing else is
    /// taken meanwhile. `Some(0)` if it fits now; `None` if it never can (`cost > limit`).
    pub fn retry_after(&self, spec: WindowSpec, now_ms: u64, cost: u64, limit: u64) -> Option<u64> {
        if cost > limit {
            return None;
        }
        let oldest = spec.oldest_counted(now_ms);
        let mut used = self.used(spec, now_ms);
        if used.saturating_add(cost) <= limit {
            return Some(0);
        }
        for &(j, c) in self.buckets.iter().filter(|(j, _)| *j >= oldest) {
            used -= c;
            if used.saturating_add(cost) <= limit {
                return Some(spec.expiry_of(j).saturating_sub(now_ms));
            }
        }
        Some(0)
    }

    /// Whether nothing is counted any more at `now` (the counter can be reclaimed).
    pub fn is_idle(&self, spec: WindowSpec, now_ms: u64) -> bool {
        let oldest = spec.oldest_counted(now_ms);
        self.buckets.iter().all(|(j, _)| *j < oldest)
    }

    /// Whether no bucket holds anything.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// A counter rebuilt from saved buckets `(index, count)` (as [`Window::buckets`] gave
    /// them, in any order): buckets no longer counted at `now` and empty ones are dropped,
    /// buckets of the same index added up. What is kept is counted exactly as before it was
    /// saved: nothing forgotten, nothing twice.
    pub fn restore(
        spec: WindowSpec,
        now_ms: u64,
        buckets: impl IntoIterator<Item = (u64, u64)>,
    ) -> Window {
        let oldest = spec.oldest_counted(now_ms);
        let mut kept: Vec<(u64, u64)> = buckets
            .into_iter()
            .filter(|&(j, c)| j >= oldest && c > 0)
            .collect();
        kept.sort_unstable_by_key(|&(j, _)| j);
        kept.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 = earlier.1.saturating_add(later.1);
            }
            same
        });
        Window { buckets: kept }
    }

    /// Re-indexes the buckets of a counter kept with `from` for `to` (a quota whose period,
    /// or the number of sub-buckets, changed): each bucket's count moves to the new bucket
    /// holding the old bucket's *last* millisecond, so an event is never counted earlier
    /// than it happened (it may leave the window up to one new bucket width later: the
    /// window's usual conservative side). Nothing to do when the width did not change.
    pub fn rebase(&mut self, from: WindowSpec, to: WindowSpec) {
        if from.bucket_ms == to.bucket_ms {
            return;
        }
        let rebased = self
            .buckets
            .iter()
            .map(|&(j, c)| {
                let last_ms = j
                    .saturating_add(1)
                    .saturating_mul(from.bucket_ms)
                    .saturating_sub(1);
                (to.bucket_of(last_ms), c)
            })
            .collect::<Vec<_>>();
        // Still in index order (the mapping is monotonic); merge equal indexes.
        *self = Window::restore(to, 0, rebased);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;

    fn admitted(o: TakeOutcome) -> bool {
        matches!(o, TakeOutcome::Admitted { .. })
    }

    #[test]
    fn admits_exactly_the_limit_in_a_burst() {
        let spec = WindowSpec::new(HOUR, 60);
        let mut w = Window::new();
        let now = 10 * HOUR;
        for _ in 0..5 {
            assert!(admitted(w.take(spec, now, 1, 5)));
        }
        assert!(!admitted(w.take(spec, now, 1, 5)));
        assert_eq!(w.used(spec, now), 5);
    }

    #[test]
    fn no_double_burst_at_a_fixed_window_boundary() {
        let spec = WindowSpec::new(HOUR, 60);
        let mut w = Window::new();
        // 5 at the very end of an hour, then 5 more just after the boundary: refused.
        let t = 10 * HOUR - 1;
        for _ in 0..5 {
            assert!(admitted(w.take(spec, t, 1, 5)));
        }
        assert!(!admitted(w.take(spec, t + 2, 1, 5)));
        // Still refused just before a full period has passed since those events.
        assert!(!admitted(w.take(spec, t + HOUR - 1, 1, 5)));
        // Room again once the bucket holding them has left the window (at most one bucket later).
        assert!(admitted(w.take(spec, t + HOUR + spec.bucket_ms, 1, 5)));
    }

    #[test]
    fn never_more_than_limit_in_any_window_under_steady_load() {
        let spec = WindowSpec::new(60_000, 60);
        let mut w = Window::new();
        let mut admitted_at = Vec::new();
        let mut t = 1_000_000;
        for _ in 0..20_000 {
            t += 37;
            if admitted(w.take(spec, t, 1, 100)) {
                admitted_at.push(t);
            }
        }
        for (i, &start) in admitted_at.iter().enumerate() {
            let in_window = admitted_at[i..]
                .iter()
                .take_while(|&&x| x < start + 60_000)
                .count();
            assert!(in_window <= 100, "window at {start} holds {in_window}");
        }
        // ... and under-admission is bounded: at least limit * (1 - 1/60) per period on average.
        let span = (admitted_at.last().unwrap() - admitted_at[0]) as f64 / 60_000.0;
        assert!(admitted_at.len() as f64 / span > 95.0);
    }

    #[test]
    fn retry_after_points_at_when_room_returns() {
        let spec = WindowSpec::new(HOUR, 60);
        let mut w = Window::new();
        let t0 = 100 * HOUR;
        assert!(admitted(w.take(spec, t0, 3, 3)));
        let later = t0 + 10 * 60_000;
        let wait = w.retry_after(spec, later, 1, 3).unwrap();
        assert!(!admitted(w.clone().take(spec, later + wait - 1, 1, 3)));
        assert!(admitted(w.take(spec, later + wait, 1, 3)));
        assert_eq!(w.retry_after(spec, later, 4, 3), None);
    }

    #[test]
    fn leases_come_from_the_lower_half_and_not_at_a_bucket_end() {
        // Limit 1,000: reserve 500; at level 100 the room above it is 400, a quarter is 100,
        // but a lease is at most 1,000 / 64 = 15.
        assert_eq!(lease_units(1_000, 100, 8, 10_000), 8);
        assert_eq!(lease_units(1_000, 100, 500, 10_000), 15);
        assert_eq!(lease_units(100_000, 100, 500_000, 10_000), 1_562);
        assert_eq!(lease_units(1_000, 480, 32, 10_000), 5);
        assert_eq!(lease_units(1_000, 499, 32, 10_000), 0);
        assert_eq!(lease_units(1_000, 900, 32, 10_000), 0);
        assert_eq!(lease_units(1_000, 100, 32, MIN_LEASE_MS - 1), 0);
        assert_eq!(lease_units(1_000, 100, 0, 10_000), 0);
        assert_eq!(lease_units(1, 0, 32, 10_000), 0);
        let spec = WindowSpec::new(HOUR, 60);
        assert_eq!(spec.lease_valid_ms(10 * HOUR), 60_000);
        assert_eq!(spec.lease_valid_ms(10 * HOUR + 59_999), 1);
    }

    #[test]
    fn a_restored_window_counts_exactly_as_the_original() {
        let spec = WindowSpec::new(HOUR, 60);
        let t0 = 100 * HOUR;
        let mut w = Window::new();
        // Events spread over 90 minutes: some buckets leave the window before the restore.
        for i in 0..90u64 {
            w.take(spec, t0 + i * 60_000 + 17, 1 + i % 3, 1_000);
        }
        let saved: Vec<(u64, u64)> = w.buckets().collect();
        assert_eq!(
            saved.len(),
            61,
            "a full window: 60 buckets and the current one"
        );
        // Restored 10 minutes later (the process was stopped meanwhile).
        let now = t0 + 100 * 60_000;
        let restored = Window::restore(spec, now, saved.iter().copied());
        let oldest = spec.oldest_counted(now);
        assert!(
            restored.buckets().all(|(j, _)| j >= oldest),
            "expired buckets dropped"
        );
        assert!(restored.buckets().count() < saved.len());
        let mut original = w.clone();
        original.prune(spec, now);
        assert_eq!(restored, original);
        // From now on both answer alike: levels, checks, retry times, takes.
        let (mut a, mut b) = (original, restored);
        for step in 0..200u64 {
            let t = now + step * 37_000;
            assert_eq!(a.used(spec, t), b.used(spec, t), "at +{step}");
            assert_eq!(
                a.retry_after(spec, t, 5, 120),
                b.retry_after(spec, t, 5, 120)
            );
            assert_eq!(a.take(spec, t, 2, 120), b.take(spec, t, 2, 120));
        }
        // Unordered input, repeated indexes and empty buckets: sorted, added up, dropped.
        let messy = [
            (oldest + 2, 1),
            (oldest + 1, 0),
            (oldest + 2, 4),
            (oldest, 3),
        ];
        let w = Window::restore(spec, now, messy);
        assert_eq!(
            w.buckets().collect::<Vec<_>>(),
            [(oldest, 3), (oldest + 2, 5)]
        );
        // Everything expired: an empty window.
        assert!(Window::restore(spec, now + 2 * HOUR, saved).is_empty());
    }

    #[test]
    fn a_rebased_window_never_counts_an_event_earlier() {
        let hour = WindowSpec::new(HOUR, 60);
        let day = WindowSpec::new(24 * HOUR, 60);
        let t0 = 1_000 * HOUR;
        let mut w = Window::new();
        for i in 0..30u64 {
            w.take(hour, t0 + i * 60_000, 1, 1_000);
        }
        let now = t0 + 30 * 60_000;
        let mut wider = w.clone();
        wider.rebase(hour, day);
        assert_eq!(
            wider.used(day, now),
            30,
            "nothing forgotten when the period grows"
        );
        assert!(wider.buckets().all(|(j, _)| j <= day.bucket_of(now)));
        // At any time, every event really inside the day's window is counted (and all are
        // gone a day and two buckets after the last).
        let events: Vec<u64> = (0..30u64).map(|i| t0 + i * 60_000).collect();
        for step in 0..200u64 {
            let t = now + step * 10 * 60_000;
            let inside = events.iter().filter(|&&e| e + 24 * HOUR > t).count() as u64;
            assert!(wider.used(day, t) >= inside, "at +{step}");
        }
        assert_eq!(wider.used(day, now + 24 * HOUR + 2 * day.bucket_ms), 0);
        // Narrower buckets: each count goes to the new bucket of the old one's last ms.
        let mut narrower = w.clone();
        let minute = WindowSpec::new(10 * 60_000, 60);
        narrower.rebase(hour, minute);
        for ((j, c), (k, d)) in w.buckets().zip(narrower.buckets()) {
            assert_eq!(c, d);
            assert_eq!(k, ((j + 1) * hour.bucket_ms - 1) / minute.bucket_ms);
        }
        let same = w.clone();
        w.rebase(hour, WindowSpec::new(2 * HOUR, 120));
        assert_eq!(w, same, "same bucket width: nothing moves");
    }

    #[test]
    fn refund_restores_the_level_and_idle_counters_are_detected() {
        let spec = WindowSpec::new(60_000, 60);
        let mut w = Window::new();
        w.take(spec, 5_000, 2, 10);
        w.refund(spec, 5_000, 2);
        assert_eq!(w.used(spec, 5_000), 0);
        w.take(spec, 5_000, 1, 10);
        assert!(!w.is_idle(spec, 60_000));
        assert!(w.is_idle(spec, 5_000 + 60_000 + 1_000));
    }
}
