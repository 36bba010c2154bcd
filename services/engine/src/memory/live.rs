//! The live view of the in-process counters ([`crate::counters`]): levels, listings (a
//! pass over the shards, one lock at a time, each held only while its table is read) and
//! resets.

use super::{Counter, Counters, Hashed, MemoryState};
use crate::counters::{sort_listed, CounterInfo, CounterQuery, Listing, LiveCounters, MAX_LISTED};
use crate::state::{BoxFuture, StateError};

/// The live view of `counter` at `now`, with `limit`.
fn info(key: &str, c: &Counter, limit: u64, now: u64) -> CounterInfo {
    let used = c.window.used(c.spec, now);
    let oldest = c.spec.oldest_counted(now);
    let empty_in_ms = c
        .window
        .buckets()
        .filter(|&(j, n)| j >= oldest && n > 0)
        .map(|(j, _)| c.spec.expiry_of(j).saturating_sub(now))
        .max()
        .unwrap_or(0);
    CounterInfo {
        key: key.to_owned(),
        used,
        limit,
        refused_at_ms: (c.refused_at_ms > 0).then_some(c.refused_at_ms),
        room_in_ms: c.window.retry_after(c.spec, now, 1, limit),
        empty_in_ms,
    }
}

impl MemoryState {
    /// Notes that a check refused on `key` (a take notes its refusals itself).
    pub(super) fn note_refused(&self, key: Hashed<'_>, limit: u64, now: u64) {
        let mut shard = Self::shard_of(&self.counters, key);
        if let Some(c) = shard.get_mut(key) {
            c.limit = limit;
            c.refused_at_ms = now;
        }
    }

    /// The counter `key` now, with `limit` (level 0 when it counts nothing).
    pub fn counter_info(&self, key: &str, limit: u64) -> CounterInfo {
        let now = self.clock.now_ms();
        let hashed = self.hashed(key);
        let shard = Self::shard_of(&self.counters, hashed);
        match shard.get(hashed) {
            Some(c) => info(key, c, limit, now),
            None => CounterInfo {
                key: key.to_owned(),
                used: 0,
                limit,
                refused_at_ms: None,
                room_in_ms: (limit > 0).then_some(0),
                empty_in_ms: 0,
            },
        }
    }

    /// The counters of `listing`, at most `max`, highest share of their limit first.
    pub fn counters_listed(&self, listing: Listing, max: usize) -> Vec<CounterInfo> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for shard in &self.counters {
            let shard = shard.lock();
            for (key, c) in shard.table.0.iter() {
                // Cheap tests first: most counters are neither refused nor near.
                let candidate = match listing {
                    Listing::RefusedSince(since) => c.refused_at_ms >= since.max(1),
                    Listing::AtLeastPercent(_) => c.limit > 0,
                };
                if !candidate {
                    continue;
                }
                let i = info(key, c, c.limit, now);
                if listing.includes(&i) {
                    out.push(i);
                }
            }
            drop(shard);
            // Bounded memory even when very many match: keep the highest shares.
            if out.len() > 4 * MAX_LISTED {
                sort_listed(&mut out, MAX_LISTED);
            }
        }
        sort_listed(&mut out, max);
        out
    }

    /// Forgets the counter `key` (a stored copy is deleted at the next save); whether it
    /// counted anything.
    pub fn reset_counter(&self, key: &str) -> bool {
        let now = self.clock.now_ms();
        let hashed = self.hashed(key);
        let mut shard = Self::shard_of(&self.counters, hashed);
        let Counters { table, removed, .. } = &mut *shard;
        match table.remove_entry(hashed) {
            Some((k, c)) => {
                if c.stored {
                    removed.push(k);
                }
                c.window.used(c.spec, now) > 0
            }
            None => false,
        }
    }
}

impl LiveCounters for MemoryState {
    fn levels<'a>(
        &'a self,
        keys: &'a [CounterQuery],
    ) -> BoxFuture<'a, Result<Vec<CounterInfo>, StateError>> {
        let out = keys
            .iter()
            .map(|q| self.counter_info(&q.key, q.limit))
            .collect();
        Box::pin(std::future::ready(Ok(out)))
    }

    fn list(
        &self,
        listing: Listing,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<CounterInfo>, StateError>> {
        Box::pin(std::future::ready(Ok(self.counters_listed(listing, max))))
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(std::future::ready(Ok(self.reset_counter(key))))
    }
}

#[cfg(test)]
mod tests {
    use crate::clock::ManualClock;
    use crate::counters::Listing;
    use crate::state::{CounterBatch, CounterOp, OpKind, State};
    use crate::window::WindowSpec;
    use crate::{MemoryState, MemoryStateSettings};
    use std::sync::Arc;

    fn take(key: &str, limit: u64) -> CounterBatch {
        CounterBatch {
            groups: vec![vec![CounterOp {
                key: key.into(),
                limit,
                window: WindowSpec::new(60_000, 60),
                kind: OpKind::Take { cost: 1 },
            }]],
            ..CounterBatch::default()
        }
    }

    #[test]
    fn refused_and_near_keys_are_listed_and_a_reset_frees_them() {
        let clock = Arc::new(ManualClock::new(1_000_000));
        let state = MemoryState::new(clock.clone(), MemoryStateSettings::default());
        let run = |key: &str, n: usize| {
            for _ in 0..n {
                state.apply_in_place(&take(key, 5)).unwrap().unwrap();
            }
        };
        run("p/q/MessageCount/Sender:full@x", 6);
        run("p/q/MessageCount/Sender:near@x", 4);
        run("p/q/MessageCount/Sender:low@x", 1);
        clock.advance_ms(1_500);

        let limited = state.counters_listed(Listing::RefusedSince(1_000_000), 10);
        assert_eq!(limited.len(), 1, "{limited:?}");
        let full = &limited[0];
        assert_eq!(full.key, "p/q/MessageCount/Sender:full@x");
        assert_eq!(
            (full.used, full.limit, full.refused_at_ms),
            (5, 5, Some(1_000_000))
        );
        // Everything was charged in the bucket of second 1000 (1 s buckets): it leaves the
        // window a period after that bucket ends, at 1_061_000.
        assert_eq!(full.room_in_ms, Some(1_061_000 - 1_001_500));
        assert_eq!(full.empty_in_ms, 1_061_000 - 1_001_500);
        assert!(state
            .counters_listed(Listing::RefusedSince(1_000_001), 10)
            .is_empty());

        let near: Vec<_> = state
            .counters_listed(Listing::AtLeastPercent(80), 10)
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(
            near,
            [
                "p/q/MessageCount/Sender:full@x",
                "p/q/MessageCount/Sender:near@x"
            ]
        );

        let low = state.counter_info("p/q/MessageCount/Sender:low@x", 5);
        assert_eq!((low.used, low.room_in_ms), (1, Some(0)));
        let none = state.counter_info("p/q/MessageCount/Sender:none@x", 5);
        assert_eq!(
            (none.used, none.room_in_ms, none.empty_in_ms),
            (0, Some(0), 0)
        );

        assert!(state.reset_counter("p/q/MessageCount/Sender:full@x"));
        assert!(!state.reset_counter("p/q/MessageCount/Sender:full@x"));
        assert_eq!(
            state.counter_info("p/q/MessageCount/Sender:full@x", 5).used,
            0
        );
        let reply = state.apply_in_place(&take("p/q/MessageCount/Sender:full@x", 5));
        assert!(reply.unwrap().unwrap().groups[0][0].outcome.is_admitted());
    }
}
