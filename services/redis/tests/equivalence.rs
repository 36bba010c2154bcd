//! One arithmetic, two implementations: `MemoryState` and the Lua scripts on a real
//! 3-primary/3-replica Redis Cluster give the same answer to every batch, lease grant,
//! lease return and stored message session.

mod common;

use common::{compare, settings, START_MS};
use sluice_engine::ManualClock;
use sluice_redis::{RedisState, Topology};
use sluice_test_support::RedisCluster;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lua_and_memory_agree_on_every_reply() {
    let cluster = RedisCluster::start(3, 1);
    let clock = ManualClock::new(START_MS);
    let redis = RedisState::connect_with(&cluster.urls(), settings("eq"))
        .await
        .expect("connect to the cluster")
        .with_test_clock(Arc::new(clock.clone()));
    assert_eq!(redis.topology(), Some(Topology::Cluster));
    let seen = compare(&redis, &clock, 0x5eed, 3_000).await;
    assert!(
        seen.refused > 100,
        "the sequence must exercise refusals ({seen:?})"
    );
    // Leases, their returns and edge-held sessions are exercised too.
    assert!(seen.leased > 100, "{seen:?}");
    assert!(seen.returned > 50, "{seen:?}");
    assert!(seen.sessions_found > 20, "{seen:?}");
    assert!(seen.saved > 20 && seen.loaded > 10, "{seen:?}");
    // Every op kind (the in-process counters against the counter script and the plain
    // reads of `level.rs`).
    seen.assert_every_kind(100);
    // A second, independent sequence (fresh keys: another prefix).
    let clock = ManualClock::new(START_MS + 12_345);
    let redis = RedisState::connect_with(&cluster.urls(), settings("eq2"))
        .await
        .expect("connect to the cluster")
        .with_test_clock(Arc::new(clock.clone()));
    compare(&redis, &clock, 42, 1_500).await;
}

/// On one thread (as the quota service runs) every op of a group, every check of the level
/// reads and every lease return waiting together go to a node as one script call: the
/// answers stay exactly `MemoryState`'s.
#[tokio::test]
async fn lua_and_memory_agree_when_ops_share_script_calls() {
    let cluster = RedisCluster::start(3, 0);
    let clock = ManualClock::new(START_MS + 777);
    let redis = RedisState::connect_with(&cluster.urls(), settings("eq3"))
        .await
        .expect("connect to the cluster")
        .with_test_clock(Arc::new(clock.clone()));
    let seen = compare(&redis, &clock, 0xc0a1, 1_500).await;
    assert!(
        seen.refused > 50 && seen.leased > 50 && seen.returned > 20,
        "{seen:?}"
    );
}
