//! Shared by the integration tests: a pseudo-random batch generator and comparison with
//! `MemoryState`.
#![allow(dead_code)]

use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, EomRecord, LeaseReturn, ManualClock, MemoryState, MemoryStateSettings,
    OpKind, SessionData, SharedState, State,
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
        // Room to lease, and 200 ms buckets: takes often fall within MIN_LEASE_MS of a
        // bucket's end.
        c("p4/q/Sender:bulk@example.com", 200, 10_000, 50),
    ]
}

/// The period the generator moves time through (the longest counter's).
pub const LONGEST_PERIOD_MS: u64 = 3_600_000;

/// A pseudo-random batch: all op kinds, several groups, dry runs, END-OF-MESSAGE.
pub fn batch(rng: &mut Rng, counters: &[Counter]) -> CounterBatch {
    let instance = INSTANCES[rng.below(INSTANCES.len() as u64) as usize].to_string();
    let groups = (0..1 + rng.below(3))
        .map(|_| {
            let mut ops = (0..1 + rng.below(4))
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
                .collect::<Vec<_>>();
            // A greylisting op leads its group now and then (the engine pushes it first).
            if rng.chance(25) {
                ops.insert(0, grey_op(rng));
            }
            // A CheckHelo op leads its group now and then, before any greylisting op (the
            // chain's order).
            if rng.chance(25) {
                ops.insert(0, helo_op(rng));
            }
            ops
        })
        .collect();
    CounterBatch {
        instance,
        dry_run: rng.chance(10),
        groups,
        end_of_message: rng.chance(15).then(|| rng.below(12)),
    }
}

/// A pseudo-random CheckHelo op: few addresses and HELOs, a short HRP window and a low
/// limit, so that HELOs pass, exceed the limit, leave the window, and addresses are
/// blacklisted for a while.
pub fn helo_op(rng: &mut Rng) -> CounterOp {
    use sluice_engine::HeloParams;
    let address = ["192.0.2.7", "2001:db8::7"][rng.below(2) as usize];
    let helo = ["a.example", "B.example", "c.example", "localhost"][rng.below(4) as usize];
    let op = sluice_engine::HeloOp {
        address: address.to_string(),
        helo: helo.to_string(),
        params: HeloParams {
            hrp_window_ms: if rng.chance(70) { 600_000 } else { 0 },
            hrp_limit: 1 + rng.below(3),
            blacklist_ms: if rng.chance(50) { 300_000 } else { 0 },
            blacklisted_now: helo == "localhost",
        },
        dry_run: rng.chance(10),
    };
    Box::new(op).into_counter_op()
}

/// A pseudo-random greylisting op: few networks and triplets, a short period, so that
/// triplets are deferred, pass, and auto-whitelist their network.
pub fn grey_op(rng: &mut Rng) -> CounterOp {
    use sluice_engine::greylisting::record::{triplet_field, AutoList, GreyParams};
    let network = ["SenderIP:192.0.2.0/24", "SenderIP:2001:db8::/64"][rng.below(2) as usize];
    let op = sluice_engine::GreylistOp {
        network: network.to_string(),
        triplet: triplet_field(
            ["a@x.org", ""][rng.below(2) as usize],
            ["r1@y.org", "r2@y.org"][rng.below(2) as usize],
        ),
        params: GreyParams {
            period_ms: 300_000,
            auth_validity_ms: 3_600_000,
            unauth_validity_ms: 1_800_000,
            awl: rng.chance(50).then_some(AutoList {
                period_ms: 3_600_000,
                count: 2,
                percentage: 0,
            }),
            abl: None,
            training: false,
        },
        dry_run: false,
    };
    Box::new(op).into_counter_op()
}

/// Lease wants in `b`'s shape (any op may ask; only charging takes get one), or none.
pub fn wants(rng: &mut Rng, b: &CounterBatch) -> Vec<Vec<u64>> {
    if rng.chance(25) {
        return Vec::new();
    }
    b.groups
        .iter()
        .map(|ops| {
            ops.iter()
                .map(|_| if rng.chance(60) { rng.below(12) } else { 0 })
                .collect()
        })
        .collect()
}

/// The instances the generated batches and sessions use.
pub const INSTANCES: [&str; 5] = ["", "4F2A1B", "77C0DE", "A1B2C3", "SAVED9"];

/// A pseudo-random edge-held session (charged keys and records, possibly repeating keys).
pub fn session(rng: &mut Rng, counters: &[Counter]) -> SessionData {
    let instance = INSTANCES[1 + rng.below(INSTANCES.len() as u64 - 1) as usize].to_string();
    let pick = |rng: &mut Rng| &counters[rng.below(counters.len() as u64) as usize];
    let charged = (0..rng.below(3)).map(|_| pick(rng).key.clone()).collect();
    let records = (0..rng.below(4))
        .map(|_| {
            let c = pick(rng);
            EomRecord {
                key: c.key.clone(),
                limit: c.limit,
                window: c.window,
                label: format!("saved|{}", rng.below(3)),
                group: rng.below(3) as u32,
            }
        })
        .collect();
    SessionData {
        instance,
        charged,
        records,
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

/// What [`compare`] exercised.
#[derive(Debug, Default)]
pub struct Compared {
    /// Ops refused.
    pub refused: usize,
    /// Leases granted (non-zero grants).
    pub leased: usize,
    /// Lease returns sent.
    pub returned: usize,
    /// Batches that found their session.
    pub sessions_found: usize,
    /// Sessions saved, and loads that found one.
    pub saved: usize,
    pub loaded: usize,
    /// Ops compared, by kind ([`kind_index`]), and END-OF-MESSAGE charges.
    pub kinds: [usize; KINDS],
    pub end_of_message: usize,
}

/// How many op kinds there are.
pub const KINDS: usize = 6;

/// An op kind's index in [`Compared::kinds`]. No wildcard: an op kind added to the engine
/// does not compile here until the generator ([`batch`]) makes it and this counts it.
pub fn kind_index(kind: &OpKind) -> usize {
    match kind {
        OpKind::Take { .. } => 0,
        OpKind::TakeOncePerMessage => 1,
        OpKind::Check { .. } => 2,
        OpKind::RecordForEom { .. } => 3,
        OpKind::Greylist(_) => 4,
        OpKind::Helo(_) => 5,
    }
}

impl Compared {
    /// Asserts that every op kind and END-OF-MESSAGE were compared at least `min` times.
    pub fn assert_every_kind(&self, min: usize) {
        assert!(
            self.kinds.iter().all(|&n| n >= min) && self.end_of_message >= min,
            "every op kind must be compared at least {min} times: {self:?}"
        );
    }
}

/// The levels of every counter (a dry run checking 0).
async fn levels(state: &dyn State, counters: &[Counter]) -> Vec<u64> {
    let b = CounterBatch {
        dry_run: true,
        groups: vec![counters
            .iter()
            .map(|c| CounterOp {
                key: c.key.clone(),
                limit: c.limit,
                window: c.window,
                kind: OpKind::Check { cost: 0 },
            })
            .collect()],
        ..CounterBatch::default()
    };
    let reply = state.apply(&b).await.expect("levels");
    reply.groups[0].iter().map(|r| r.used).collect()
}

/// Feeds `n` generated batches (with lease wants) to `MemoryState` and to `redis` (both on
/// `clock`), moving time forward by random steps through several periods, and compares
/// every reply and grant; in between it gives back random parts of the granted leases
/// and saves, ends and loads message sessions on both, comparing levels and sessions.
pub async fn compare(redis: &RedisState, clock: &ManualClock, seed: u64, n: usize) -> Compared {
    let memory = MemoryState::new(Arc::new(clock.clone()), MemoryStateSettings::default());
    let counters = counters();
    let mut rng = Rng::new(seed);
    let mut seen = Compared::default();
    let mut held: Vec<LeaseReturn> = Vec::new();
    for i in 0..n {
        let b = batch(&mut rng, &counters);
        for op in b.groups.iter().flatten() {
            seen.kinds[kind_index(&op.kind)] += 1;
        }
        seen.end_of_message += usize::from(b.end_of_message.is_some());
        let leases = wants(&mut rng, &b);
        let want = if leases.is_empty() && rng.chance(50) {
            let want = memory.apply(&b).await.expect("memory state never fails");
            let got = redis.apply(&b).await.expect("redis state");
            assert_eq!(got, want, "batch #{i} (seed {seed}) differs: {b:#?}");
            want
        } else {
            let want = memory
                .apply_leasing(&b, &leases)
                .await
                .expect("memory state never fails");
            let got = redis.apply_leasing(&b, &leases).await.expect("redis state");
            assert_eq!(
                got, want,
                "batch #{i} (seed {seed}) differs: {b:#?} wants {leases:?}"
            );
            seen.sessions_found += usize::from(want.session_found);
            for (ops, grants) in b.groups.iter().zip(&want.leases) {
                for (op, g) in ops.iter().zip(grants).filter(|(_, g)| g.units > 0) {
                    seen.leased += 1;
                    held.push(LeaseReturn {
                        key: op.key.clone(),
                        window: op.window,
                        units: g.units,
                        charged_at_ms: g.charged_at_ms,
                    });
                }
            }
            want.reply
        };
        seen.refused += want
            .groups
            .iter()
            .flatten()
            .chain(want.end_of_message.iter().map(|e| &e.result))
            .filter(|r| matches!(r.outcome, sluice_engine::Outcome::Refused { .. }))
            .count();
        if rng.chance(30) && !held.is_empty() {
            // Give back unused parts of some leases (some after their bucket has passed).
            let returns: Vec<LeaseReturn> = (0..1 + rng.below(held.len() as u64))
                .map(|_| {
                    let mut r = held.swap_remove(rng.below(held.len() as u64) as usize);
                    r.units = rng.below(r.units + 1);
                    r
                })
                .collect();
            seen.returned += returns.len();
            memory
                .return_leases(&returns)
                .await
                .expect("memory returns");
            redis.return_leases(&returns).await.expect("redis returns");
            assert_eq!(
                levels(redis, &counters).await,
                levels(&memory, &counters).await,
                "levels after returns #{i} (seed {seed}): {returns:#?}"
            );
        }
        if rng.chance(8) {
            let sessions: Vec<SessionData> = (0..rng.below(3))
                .map(|_| session(&mut rng, &counters))
                .collect();
            let ended: Vec<String> = (0..rng.below(2))
                .map(|_| INSTANCES[1 + rng.below(4) as usize].to_string())
                .collect();
            seen.saved += sessions.len();
            memory
                .save_sessions(&sessions, &ended)
                .await
                .expect("memory saves");
            redis
                .save_sessions(&sessions, &ended)
                .await
                .expect("redis saves");
        }
        if rng.chance(10) {
            let instance = INSTANCES[rng.below(INSTANCES.len() as u64) as usize];
            let want = memory.load_session(instance).await.expect("memory loads");
            let got = redis.load_session(instance).await.expect("redis loads");
            assert_eq!(got, want, "session {instance:?} after #{i} (seed {seed})");
            seen.loaded += usize::from(want.is_some());
        }
        // Mostly small steps (bursts within a bucket), sometimes minutes, rarely an hour.
        let step = match rng.below(20) {
            0..=11 => rng.below(2_000),
            12..=18 => rng.below(120_000),
            _ => rng.below(LONGEST_PERIOD_MS + 60_000),
        };
        clock.advance_ms(step);
    }
    seen
}
