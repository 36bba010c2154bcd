//! Shared by the integration tests: a pseudo-random batch generator and comparison with
//! `MemoryState`.
#![allow(dead_code)]

use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, ManualClock, MemoryState, MemoryStateSettings, OpKind, State,
};
use sluice_redis::{RedisState, RedisStateSettings};
use std::sync::Arc;
use std::time::Duration;

/// 2023-11-14T22:13:20Z.
pub const START_MS: u64 = 1_700_000_000_000;

/// SplitMix64: a tiny deterministic generator.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// True with probability `pct` %.
    pub fn chance(&mut self, pct: u64) -> bool {
        self.below(100) < pct
    }
}

/// A counter of the generated traffic: key, limit, window.
pub struct Counter {
    pub key: String,
    pub limit: u64,
    pub window: WindowSpec,
}

/// Counters on different slots, including a key with braces and a long one (hashed tags).
pub fn counters() -> Vec<Counter> {
    let c = |key: &str, limit, period_ms, buckets| Counter {
        key: key.to_string(),
        limit,
        window: WindowSpec::new(period_ms, buckets),
    };
    vec![
        c("p1/q1/Sender:alice@example.com", 5, 60_000, 60),
        c("p1/q1/SenderIP:192.0.2.1", 8, 300_000, 60),
        c("p1/q2/Recipient:@example.net", 12, 3_600_000, 60),
        c("p2/size/Sender:{odd}@example.org", 40, 3_600_000, 60),
        c(
            &format!("p2/q/Sender:{}@example.org", "x".repeat(80)),
            3,
            60_000,
            6,
        ),
        c("p3/q/Policy", 20, 600_000, 7),
    ]
}

/// The period the generator moves time through (the longest counter's).
pub const LONGEST_PERIOD_MS: u64 = 3_600_000;

/// A pseudo-random batch: all op kinds, several groups, dry runs, END-OF-MESSAGE.
pub fn batch(rng: &mut Rng, counters: &[Counter]) -> CounterBatch {
    let instances = ["", "4F2A1B", "77C0DE", "A1B2C3"];
    let instance = instances[rng.below(instances.len() as u64) as usize].to_string();
    let groups = (0..1 + rng.below(3))
        .map(|_| {
            (0..1 + rng.below(4))
                .map(|_| {
                    let c = &counters[rng.below(counters.len() as u64) as usize];
                    let kind = match rng.below(10) {
                        0..=3 => OpKind::Take { cost: rng.below(5) },
                        4 | 5 => OpKind::TakeOncePerMessage,
                        6 | 7 => OpKind::Check { cost: rng.below(7) },
                        _ => OpKind::RecordForEom {
                            label: format!("label|{}", rng.below(3)),
                            group: rng.below(3) as u32,
                        },
                    };
                    CounterOp {
                        key: c.key.clone(),
                        limit: c.limit,
                        window: c.window,
                        kind,
                    }
                })
                .collect()
        })
        .collect();
    CounterBatch {
        instance,
        dry_run: rng.chance(10),
        groups,
        end_of_message: rng.chance(15).then(|| rng.below(12)),
    }
}

/// Settings with a short timeout for tests and a test-specific key prefix.
pub fn settings(prefix: &str) -> RedisStateSettings {
    RedisStateSettings {
        timeout: Duration::from_millis(2000),
        key_prefix: prefix.to_string(),
        ..RedisStateSettings::default()
    }
}

/// Feeds `n` generated batches to `MemoryState` and to `redis` (both on `clock`), moving
/// time forward by random steps through several periods, and compares every reply.
/// Returns how many ops were refused (so callers can check refusals were exercised).
pub async fn compare(redis: &RedisState, clock: &ManualClock, seed: u64, n: usize) -> usize {
    let memory = MemoryState::new(Arc::new(clock.clone()), MemoryStateSettings::default());
    let counters = counters();
    let mut rng = Rng::new(seed);
    let mut refused = 0;
    for i in 0..n {
        let b = batch(&mut rng, &counters);
        let want = memory.apply(&b).await.expect("memory state never fails");
        let got = redis.apply(&b).await.expect("redis state");
        assert_eq!(got, want, "batch #{i} (seed {seed}) differs: {b:#?}");
        refused += want
            .groups
            .iter()
            .flatten()
            .chain(want.end_of_message.iter().map(|e| &e.result))
            .filter(|r| matches!(r.outcome, sluice_engine::Outcome::Refused { .. }))
            .count();
        // Mostly small steps (bursts within a bucket), sometimes minutes, rarely an hour.
        let step = match rng.below(20) {
            0..=11 => rng.below(2_000),
            12..=18 => rng.below(120_000),
            _ => rng.below(LONGEST_PERIOD_MS + 60_000),
        };
        clock.advance_ms(step);
    }
    refused
}
