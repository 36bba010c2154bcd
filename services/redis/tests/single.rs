//! `RedisState` on one plain Redis node, and what happens when Redis is dead or slow.

mod common;

use common::{compare, settings, START_MS};
use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterBatch, CounterOp, ManualClock, OpKind, State, StateError};
use sluice_redis::{ConnectError, RedisState, RedisStateSettings, Topology};
use sluice_test_support::{CuttingProxy, RedisServer};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn one_take() -> CounterBatch {
    CounterBatch {
        groups: vec![vec![CounterOp {
            key: "Sender:a@example.com".into(),
            limit: 10,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Take { cost: 1 },
        }]],
        ..CounterBatch::default()
    }
}

fn fast(timeout_ms: u64) -> RedisStateSettings {
    RedisStateSettings {
        timeout: Duration::from_millis(timeout_ms),
        ..RedisStateSettings::default()
    }
}

#[tokio::test]
async fn a_single_plain_node_gives_the_same_answers() {
    let server = RedisServer::start();
    let clock = ManualClock::new(START_MS);
    let redis = RedisState::connect_with(&[server.url()], settings("single"))
        .await
        .unwrap()
        .with_test_clock(Arc::new(clock.clone()));
    assert_eq!(redis.topology(), Some(Topology::Single));
    compare(&redis, &clock, 7, 1_500).await;
    // Redis's own clock works too.
    let real = RedisState::connect(&[server.url()]).await.unwrap();
    let reply = real.apply(&one_take()).await.unwrap();
    assert_eq!(reply.groups[0][0].used, 1);
}

#[tokio::test]
async fn a_dead_redis_is_an_error_within_the_timeout() {
    let mut server = RedisServer::start();
    let state = RedisState::connect_with(&[server.url()], fast(250))
        .await
        .unwrap();
    state.apply(&one_take()).await.unwrap();
    server.stop();
    for _ in 0..3 {
        let t = Instant::now();
        let err = state.apply(&one_take()).await.unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(750),
            "{:?}",
            t.elapsed()
        );
        assert!(
            matches!(err, StateError::Unavailable(_) | StateError::Timeout),
            "{err:?}"
        );
    }
    // It comes back by itself once Redis does (an empty Redis: nothing was persisted).
    server.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match state.apply(&one_take()).await {
            Ok(reply) => {
                assert_eq!(reply.groups[0][0].used, 1);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Connecting to a dead port fails fast with a clear error.
    server.stop();
    let t = Instant::now();
    let err = RedisState::connect_with(&[server.url()], fast(250))
        .await
        .err()
        .expect("connecting to a dead Redis fails");
    assert!(
        t.elapsed() < Duration::from_millis(750),
        "{:?}",
        t.elapsed()
    );
    assert!(
        matches!(err, ConnectError::Redis(_) | ConnectError::Timeout),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_redis_times_out() {
    let server = RedisServer::start();
    let state = RedisState::connect_with(&[server.url()], fast(200))
        .await
        .unwrap();
    state.apply(&one_take()).await.unwrap();
    server.pause();
    for _ in 0..3 {
        let t = Instant::now();
        let err = state.apply(&one_take()).await.unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(600),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(err, StateError::Timeout);
    }
    server.resume();
    // Answers again once Redis does.
    let deadline = Instant::now() + Duration::from_secs(10);
    while state.apply(&one_take()).await.is_err() {
        assert!(Instant::now() < deadline, "no recovery after a stall");
    }
}

/// The level of the counter of [`one_take`] (a check of 0).
async fn level(state: &RedisState) -> u64 {
    let mut b = one_take();
    b.groups[0][0].kind = OpKind::Check { cost: 0 };
    state.apply(&b).await.unwrap().groups[0][0].used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_take_whose_reply_is_lost_fails_and_is_not_sent_again() {
    let server = RedisServer::start();
    let proxy = CuttingProxy::start(server.port()).await;
    let state = RedisState::connect_with(&[proxy.url()], fast(1000))
        .await
        .unwrap();
    assert_eq!(state.topology(), Some(Topology::Single));
    state.apply(&one_take()).await.unwrap();
    // The take runs in Redis; the connection breaks before its reply arrives.
    proxy.arm();
    let err = state.apply(&one_take()).await.unwrap_err();
    assert!(matches!(err, StateError::Unavailable(_)), "{err:?}");
    assert_eq!(proxy.cuts(), 1);
    // Charged exactly once (a resend would have charged twice), and the state reconnects
    // by itself.
    let direct = RedisState::connect_with(&[server.url()], fast(1000))
        .await
        .unwrap();
    assert_eq!(level(&direct).await, 2);
    assert_eq!(level(&state).await, 2);
}

#[tokio::test]
async fn bad_settings_are_refused() {
    let err = RedisState::connect(&[]).await.err().unwrap();
    assert_eq!(err, ConnectError::NoUrls);
    let s = RedisStateSettings {
        key_prefix: "a{b".into(),
        ..RedisStateSettings::default()
    };
    let err = RedisState::connect_with(&["redis://127.0.0.1:1".into()], s)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, ConnectError::InvalidPrefix(_)));
}

/// Counts, bucket indexes and expiry times are written back by the counter script as exact
/// integers (not in exponent form, not rounded): charges of 15 digits on a limit near
/// 2^52, in a 30-day window (10-digit expiry in ms), alone and two in one script call.
#[tokio::test]
async fn large_counts_and_times_are_written_exactly() {
    let server = RedisServer::start();
    let redis = RedisState::connect(&[server.url()]).await.unwrap();
    let big = 123_456_789_012_345u64;
    let op = |key: &str| CounterOp {
        key: key.into(),
        limit: (1 << 52) + 12_345,
        window: WindowSpec::new(30 * 86_400_000, 60),
        kind: OpKind::Take { cost: big },
    };
    let alone = CounterBatch {
        groups: vec![vec![op("Sender:big@example.com")]],
        ..CounterBatch::default()
    };
    let first = redis.apply(&alone).await.unwrap();
    assert_eq!(first.groups[0][0].used, big, "{first:?}");
    let second = redis.apply(&alone).await.unwrap();
    assert_eq!(second.groups[0][0].used, 2 * big, "{second:?}");
    // Two ops in one batch: one script call for both.
    let together = CounterBatch {
        groups: vec![
            vec![op("Sender:big@example.com")],
            vec![op("Sender:other@example.com")],
        ],
        ..CounterBatch::default()
    };
    let third = redis.apply(&together).await.unwrap();
    assert_eq!(third.groups[0][0].used, 3 * big, "{third:?}");
    assert_eq!(third.groups[1][0].used, big, "{third:?}");
    let check = CounterBatch {
        groups: vec![vec![CounterOp {
            kind: OpKind::Check { cost: 0 },
            ..op("Sender:big@example.com")
        }]],
        ..CounterBatch::default()
    };
    let level = redis.apply(&check).await.unwrap();
    assert_eq!(level.groups[0][0].used, 3 * big, "{level:?}");
    // The expiry the script set: the period and one sub-bucket (30 days + 12 h), in ms.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg("sluice:{Sender:big@example.com}:w")
        .query_async(&mut conn)
        .await
        .unwrap();
    let full = 30 * 86_400_000 + 43_200_000;
    assert!(
        full - 60_000 < ttl && ttl <= full,
        "PTTL {ttl}, expected about {full}"
    );
}
