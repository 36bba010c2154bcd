//! Greylisting: `greylisting.lua` on a real 3-primary/3-replica Redis Cluster and the
//! in-process state (the Rust home of the arithmetic) give the same answer to every op of a
//! pseudo-random sequence — new triplets, retries before and after the period, expiry,
//! training, auto-whitelisting and auto-blacklisting by count and by percentage, dry runs —
//! and every network's key carries a TTL (idle records leave by themselves). Each op goes
//! through the batch path (`State::apply`) as the engine sends it: the greylisting op first
//! in its group, followed by a counter take that must charge only when the triplet passes
//! (the group's all-or-nothing rule), so both backends must also agree on the counter.

mod common;

use common::{settings, Rng, START_MS};
use sluice_engine::greylisting::record::{triplet_field, AutoList};
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    greylist_answer_in, CounterOp, GreyOutcome, GreyParams, GreylistOp, ManualClock, MemoryState,
    MemoryStateSettings, OpKind, Outcome, State,
};
use sluice_redis::RedisState;
use sluice_test_support::RedisCluster;
use std::sync::Arc;

const MIN: u64 = 60_000;

/// A few parameter sets: short periods and validities so that expiry happens often.
fn params(rng: &mut Rng) -> GreyParams {
    let auto = |rng: &mut Rng| {
        rng.chance(60).then(|| AutoList {
            period_ms: [10 * MIN, 60 * MIN][rng.below(2) as usize],
            count: rng.below(4),
            percentage: [0, 50, 75][rng.below(3) as usize],
        })
    };
    GreyParams {
        period_ms: [MIN, 5 * MIN][rng.below(2) as usize],
        auth_validity_ms: [30 * MIN, 90 * MIN][rng.below(2) as usize],
        unauth_validity_ms: [10 * MIN, 20 * MIN][rng.below(2) as usize],
        awl: auto(rng),
        abl: auto(rng),
        training: rng.chance(10),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_and_memory_agree_on_greylisting() {
    let cluster = RedisCluster::start(3, 1);
    let clock = ManualClock::new(START_MS);
    let redis = RedisState::connect_with(&cluster.urls(), settings("grey-eq"))
        .await
        .expect("connect to the cluster")
        .with_test_clock(Arc::new(clock.clone()));
    let memory = MemoryState::new(Arc::new(clock.clone()), MemoryStateSettings::default());
    let mut rng = Rng::new(0x9e11);
    let networks = [
        "SenderIP:192.0.2.0/24",
        "SenderIP:198.51.100.0/24",
        "SenderIP:2001:db8:1:2::/64",
        "SenderIP:203.0.113.0/24",
    ];
    let senders = ["", "a@x.org", "b@x.org"];
    let recipients = ["r1@y.org", "r2@y.org", "r3@y.org", "r4@y.org"];
    let mut seen = std::collections::HashMap::<&str, usize>::new();
    for i in 0..2_500 {
        // One parameter set per stretch of ops (as a policy set would be), changing now and then.
        let p = params(&mut Rng::new(i / 200));
        let op = GreylistOp {
            network: networks[rng.below(networks.len() as u64) as usize].to_string(),
            triplet: triplet_field(
                senders[rng.below(3) as usize],
                recipients[rng.below(4) as usize],
            ),
            params: p,
            dry_run: rng.chance(5),
        };
        let mut batch = op.clone().into_batch();
        // A quota charged behind the greylisting op, in its group.
        batch.groups[0].push(CounterOp {
            key: format!("grey-eq-count:{{{}}}", op.network),
            limit: 1_000_000,
            window: WindowSpec::new(60 * MIN, 6),
            kind: OpKind::Take { cost: 1 },
        });
        let want_reply = memory.apply(&batch).await.expect("memory");
        let got_reply = redis.apply(&batch).await.expect("redis");
        assert_eq!(got_reply, want_reply, "op {i}: {op:?}");
        let want = greylist_answer_in(&want_reply, 0, 0).expect("an answer");
        let take = want_reply.groups[0][1].outcome;
        if want.outcome().is_admitted() {
            assert_eq!(
                take,
                Outcome::Admitted,
                "op {i}: passed, so the quota charges"
            );
        } else {
            assert_eq!(take, Outcome::NotEvaluated, "op {i}: refused, so no charge");
        }
        let label = match want.outcome {
            GreyOutcome::Blacklisted {
                listed_now: Some(_),
                ..
            } => "blacklisted now",
            GreyOutcome::Passed {
                auto_whitelisted_until_ms: Some(_),
                ..
            } => "whitelisted now",
            o => o.label(),
        };
        *seen.entry(label).or_default() += 1;
        clock.advance_ms(rng.below(3 * MIN));
    }
    for what in [
        "deferred",
        "passed",
        "training",
        "auto_whitelisted",
        "whitelisted now",
        "blacklisted",
        "blacklisted now",
    ] {
        assert!(
            seen.get(what).copied().unwrap_or(0) >= 5,
            "the sequence must exercise {what}: {seen:?}"
        );
    }
    // Every network's record expires by itself.
    for net in networks {
        let key = format!("grey-eq:{{g:{net}}}:g");
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-u", &cluster.urls()[0], "PTTL", &key])
            .output()
            .expect("redis-cli");
        let pttl: i64 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(-3);
        assert!(pttl > 0, "{key} has no TTL ({pttl})");
    }
}
