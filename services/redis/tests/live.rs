//! Live counters on Redis ([`sluice_engine::LiveCounters`] for `RedisState`): the index of
//! refused and near-limit counters, levels read back, listings and resets, on a real Redis
//! Cluster as an ACL user allowed exactly `REDIS_COMMANDS` (so the index's commands are
//! in that list).

mod common;

use common::settings;
use sluice_engine::counters::{CounterQuery, Listing, LiveCounters};
use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterBatch, CounterOp, OpKind, Outcome, State};
use sluice_redis::{RedisState, REDIS_COMMANDS};
use sluice_test_support::{AclUser, RedisCluster, RedisOptions};
use std::time::{Duration, Instant};

const WINDOW: WindowSpec = WindowSpec {
    period_ms: 3_600_000,
    bucket_ms: 60_000,
};

fn take(key: &str, limit: u64) -> CounterBatch {
    CounterBatch {
        groups: vec![vec![CounterOp {
            key: key.into(),
            limit,
            window: WINDOW,
            kind: OpKind::Take { cost: 1 },
        }]],
        ..CounterBatch::default()
    }
}

/// `n` takes of `key` under `limit`; the last outcome.
async fn takes(state: &RedisState, key: &str, limit: u64, n: usize) -> Outcome {
    let mut last = Outcome::NotEvaluated;
    for _ in 0..n {
        last = state.apply(&take(key, limit)).await.unwrap().groups[0][0].outcome;
    }
    last
}

fn query(key: &str, limit: u64) -> CounterQuery {
    CounterQuery {
        key: key.into(),
        limit,
        window: WINDOW,
    }
}

/// The keys of `listing` (polled until `done` accepts them: the index is written after
/// the answer, off its path). Panics after 10 s.
async fn listed_until(
    state: &RedisState,
    listing: Listing,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let start = Instant::now();
    loop {
        let keys: Vec<String> = state
            .list(listing, 100)
            .await
            .expect("a listing")
            .into_iter()
            .map(|c| c.key)
            .collect();
        if done(&keys) {
            return keys;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{listing:?}: still {keys:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_near_counters_are_indexed_read_back_and_reset() {
    let options = RedisOptions {
        password: Some("pw".into()),
        acl_user: Some(AclUser {
            name: "sluice".into(),
            password: "acl-pw".into(),
            rules: {
                let mut rules = vec!["~live:*".to_string()];
                rules.extend(REDIS_COMMANDS.iter().map(|c| format!("+{c}")));
                rules
            },
        }),
        tls: None,
    };
    let cluster = RedisCluster::start_with(3, 1, &options);
    let state = RedisState::connect_with(&cluster.urls_as("sluice", "acl-pw"), settings("live"))
        .await
        .unwrap();
    let (full, near, low) = (
        "p/q/MessageCount/Sender:full@x",
        "p/q/MessageCount/Sender:near@x",
        "p/q/MessageCount/Sender:low@x",
    );
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(matches!(
        takes(&state, full, 2, 3).await,
        Outcome::Refused { .. }
    ));
    assert_eq!(takes(&state, near, 10, 8).await, Outcome::Admitted);
    assert_eq!(takes(&state, low, 10, 1).await, Outcome::Admitted);

    let limited = listed_until(&state, Listing::RefusedSince(since), |k| !k.is_empty()).await;
    assert_eq!(limited, [full]);
    let refused = state
        .list(Listing::RefusedSince(since), 10)
        .await
        .unwrap()
        .remove(0);
    assert_eq!((refused.used, refused.limit), (2, 2), "{refused:?}");
    assert!(refused.refused_at_ms.is_some_and(|at| at >= since));
    // Charged within the current minute-wide bucket: room again once it leaves the hour.
    let room = refused.room_in_ms.unwrap();
    assert!(room > 3_540_000 && room <= 3_660_000, "{refused:?}");
    assert!(state
        .list(Listing::RefusedSince(since + 3_600_000), 10)
        .await
        .unwrap()
        .is_empty());

    let close = listed_until(&state, Listing::AtLeastPercent(80), |k| k.len() >= 2).await;
    assert_eq!(
        close,
        [full, near],
        "highest share first; the low one is not close"
    );

    let levels = state
        .levels(&[query(low, 10), query("p/q/MessageCount/Sender:none@x", 10)])
        .await
        .unwrap();
    assert_eq!(
        levels
            .iter()
            .map(|c| (c.used, c.room_in_ms, c.refused_at_ms))
            .collect::<Vec<_>>(),
        [(1, Some(0), None), (0, Some(0), None)]
    );

    // A reset empties the counter and drops it from both indexes; the next take fits.
    assert!(state.reset(full).await.unwrap());
    assert!(!state.reset(full).await.unwrap(), "nothing left to reset");
    assert_eq!(state.levels(&[query(full, 2)]).await.unwrap()[0].used, 0);
    assert!(state
        .list(Listing::RefusedSince(since), 10)
        .await
        .unwrap()
        .is_empty());
    let close: Vec<String> = state
        .list(Listing::AtLeastPercent(80), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.key)
        .collect();
    assert_eq!(close, [near]);
    assert_eq!(takes(&state, full, 2, 1).await, Outcome::Admitted);
}
