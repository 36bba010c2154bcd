//! Leases and edge-held message sessions on a real 3-primary Redis Cluster: a grant is
//! charged with its take, a refused group charges neither, returns restore the level, no
//! lease from the upper half of a limit or at a bucket end; sessions are saved, merged,
//! loaded, ended, and found (or not) by the batches that read them.

mod common;

use common::settings;
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, EomRecord, LeaseGrant, LeaseReturn, ManualClock, OpKind, Outcome,
    SessionData, SharedState, State,
};
use sluice_redis::RedisState;
use sluice_test_support::RedisCluster;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

const HOUR: u64 = 3_600_000;
/// The start of a minute: a bucket of an hour / 60 window begins here.
const T0: u64 = 1_700_000_040_000 / 60_000 * 60_000;

fn op(key: &str, limit: u64, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.to_string(),
        limit,
        window: WindowSpec::new(HOUR, 60),
        kind,
    }
}

fn take(key: &str, limit: u64, cost: u64) -> CounterOp {
    op(key, limit, OpKind::Take { cost })
}

fn batch(groups: Vec<Vec<CounterOp>>) -> CounterBatch {
    CounterBatch {
        groups,
        ..CounterBatch::default()
    }
}

/// The level of a counter (a dry-run check of 0).
async fn level(state: &RedisState, key: &str) -> u64 {
    level_in(state, key, WindowSpec::new(HOUR, 60)).await
}

async fn level_in(state: &RedisState, key: &str, window: WindowSpec) -> u64 {
    let mut check = op(key, 1_000, OpKind::Check { cost: 0 });
    check.window = window;
    let mut b = batch(vec![vec![check]]);
    b.dry_run = true;
    state.apply(&b).await.unwrap().groups[0][0].used
}

async fn on_test_clock(cluster: &RedisCluster, prefix: &str) -> (RedisState, ManualClock) {
    let clock = ManualClock::new(T0);
    let state = RedisState::connect_with(&cluster.urls(), settings(prefix))
        .await
        .unwrap()
        .with_test_clock(Arc::new(clock.clone()));
    (state, clock)
}

/// Counter names whose windows live on `n` different primaries.
fn names_on_different_primaries(cluster: &RedisCluster, prefix: &str, n: usize) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut ports = Vec::new();
    for i in 0.. {
        let name = format!("{prefix}{i}");
        let port = cluster.primary_of_slot(cluster.key_slot(&name)).port;
        if !ports.contains(&port) {
            ports.push(port);
            names.push(name);
            if names.len() == n {
                break;
            }
        }
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_are_charged_refused_groups_keep_nothing_and_returns_give_back() {
    let cluster = RedisCluster::start(3, 0);
    let (state, clock) = on_test_clock(&cluster, "lease1").await;
    clock.advance_ms(10_000);

    // A grant is charged with the take: the op's level excludes it, the counter's includes it.
    let r = state
        .apply_leasing(&batch(vec![vec![take("k", 100_000, 1)]]), &[vec![32]])
        .await
        .unwrap();
    assert_eq!(r.reply.groups[0][0].outcome, Outcome::Admitted);
    assert_eq!(r.reply.groups[0][0].used, 1);
    let grant = r.leases[0][0];
    assert_eq!(
        grant,
        LeaseGrant {
            units: 32,
            valid_ms: 50_000,
            charged_at_ms: T0 + 10_000,
        }
    );
    assert_eq!(level(&state, "k").await, 33);
    // At most 1/64 of the limit (and a quarter of the room above half of it).
    let r = state
        .apply_leasing(&batch(vec![vec![take("k", 100_000, 1)]]), &[vec![5_000]])
        .await
        .unwrap();
    assert_eq!(r.leases[0][0].units, 1_562);
    assert_eq!(level(&state, "k").await, 1_596);

    // A refused group charges neither cost nor lease, run at once (counters on different
    // primaries) or in order (one counter twice).
    let names = names_on_different_primaries(&cluster, "Sender:", 2);
    let (a, b) = (&names[0], &names[1]);
    let refused = batch(vec![vec![take(a, 1_000, 1), take(b, 1, 2)]]);
    let r = state.apply_leasing(&refused, &[vec![32, 0]]).await.unwrap();
    assert!(matches!(
        r.reply.groups[0][1].outcome,
        Outcome::Refused { .. }
    ));
    assert_eq!(r.reply.groups[0][0].used, 0);
    assert_eq!(r.leases, vec![vec![LeaseGrant::default(); 2]]);
    assert_eq!(level(&state, a).await, 0);
    let in_order = batch(vec![vec![take(a, 1_000, 1), take(a, 1_000, 990)]]);
    let r = state
        .apply_leasing(&in_order, &[vec![32, 0]])
        .await
        .unwrap();
    assert!(matches!(
        r.reply.groups[0][1].outcome,
        Outcome::Refused { .. }
    ));
    assert_eq!(r.leases, vec![vec![LeaseGrant::default(); 2]]);
    assert_eq!(level(&state, a).await, 0);
    // In order, a lease granted to an earlier op counts for the later ones.
    let r = state
        .apply_leasing(
            &batch(vec![vec![take(a, 100_000, 1), take(a, 100_000, 1)]]),
            &[vec![32, 0]],
        )
        .await
        .unwrap();
    assert_eq!(r.leases[0][0].units, 32);
    assert_eq!(r.reply.groups[0][1].used, 34);

    // Returns restore the level: to the lease's bucket, not to a later one.
    clock.advance_ms(90_000);
    state
        .apply(&batch(vec![vec![take("k", 100_000, 1)]]))
        .await
        .unwrap();
    assert_eq!(level(&state, "k").await, 1_597);
    let back = |units| LeaseReturn {
        key: "k".into(),
        window: WindowSpec::new(HOUR, 60),
        units,
        charged_at_ms: grant.charged_at_ms,
    };
    let gone = LeaseReturn {
        key: "never-taken".into(),
        ..back(5)
    };
    state.return_leases(&[back(30), gone]).await.unwrap();
    assert_eq!(level(&state, "k").await, 1_567);
    assert_eq!(level(&state, "never-taken").await, 0);
    // An oversized return empties the lease's bucket but never touches the later one.
    state.return_leases(&[back(10_000)]).await.unwrap();
    assert_eq!(level(&state, "k").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lease_from_the_upper_half_nor_at_a_bucket_end_nor_for_non_takes() {
    let cluster = RedisCluster::start(3, 0);
    let (state, clock) = on_test_clock(&cluster, "lease2").await;
    // At half the limit nothing is left to lease.
    let r = state
        .apply_leasing(&batch(vec![vec![take("half", 100, 50)]]), &[vec![32]])
        .await
        .unwrap();
    assert_eq!(r.reply.groups[0][0].outcome, Outcome::Admitted);
    assert_eq!(r.leases[0][0], LeaseGrant::default());
    assert_eq!(level(&state, "half").await, 50);
    // 49 ms before the bucket ends: nothing; 50 ms before: a lease valid 50 ms.
    clock.set_ms(T0 + 60_000 - 49);
    let b = batch(vec![vec![take("end", 100_000, 1)]]);
    let r = state.apply_leasing(&b, &[vec![32]]).await.unwrap();
    assert_eq!(r.leases[0][0], LeaseGrant::default());
    assert_eq!(level(&state, "end").await, 1);
    clock.set_ms(T0 + 120_000 - 50);
    let r = state.apply_leasing(&b, &[vec![32]]).await.unwrap();
    assert_eq!(r.leases[0][0].units, 32);
    assert_eq!(r.leases[0][0].valid_ms, 50);
    assert_eq!(level(&state, "end").await, 34);
    // Dry runs, checks and once-per-message takes get no lease.
    let mut dry = batch(vec![vec![take("dry", 1_000, 1)]]);
    dry.dry_run = true;
    let r = state.apply_leasing(&dry, &[vec![32]]).await.unwrap();
    assert_eq!(r.leases[0][0], LeaseGrant::default());
    let mut others = batch(vec![vec![
        op("chk", 1_000, OpKind::Check { cost: 1 }),
        op("once", 1_000, OpKind::TakeOncePerMessage),
    ]]);
    others.instance = "L2".into();
    let r = state.apply_leasing(&others, &[vec![32, 32]]).await.unwrap();
    assert_eq!(r.leases[0], vec![LeaseGrant::default(); 2]);
    assert_eq!(
        (
            level(&state, "dry").await,
            level(&state, "chk").await,
            level(&state, "once").await
        ),
        (0, 0, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_on_redis_own_clock_last_until_the_bucket_ends() {
    let cluster = RedisCluster::start(3, 0);
    let state = RedisState::connect_with(&cluster.urls(), settings("lease3"))
        .await
        .unwrap();
    // One bucket per hour: the bucket ends within 50 ms only once an hour.
    let window = WindowSpec::new(HOUR, 1);
    let mut t = take("own", 100_000, 1);
    t.window = window;
    let r = state
        .apply_leasing(&batch(vec![vec![t]]), &[vec![32]])
        .await
        .unwrap();
    let grant = r.leases[0][0];
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(grant.units, 32);
    assert!(
        grant.charged_at_ms.abs_diff(now) < 10_000,
        "{grant:?} vs {now}"
    );
    assert_eq!(grant.valid_ms, HOUR - grant.charged_at_ms % HOUR);
    assert_eq!(level_in(&state, "own", window).await, 33);
    let back = LeaseReturn {
        key: "own".into(),
        window,
        units: 32,
        charged_at_ms: grant.charged_at_ms,
    };
    state.return_leases(&[back]).await.unwrap();
    assert_eq!(level_in(&state, "own", window).await, 1);
}

fn record(key: &str, group: u32) -> EomRecord {
    EomRecord {
        key: key.to_string(),
        limit: 10_000,
        window: WindowSpec::new(HOUR, 60),
        label: format!("pol/quo|{key}"),
        group,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_saved_merged_loaded_found_and_ended_on_a_cluster() {
    let cluster = RedisCluster::start(3, 0);
    let (state, _clock) = on_test_clock(&cluster, "sess").await;
    // Three instances whose sessions live on three primaries.
    let tags = names_on_different_primaries(&cluster, "m:Q", 3);
    let instances: Vec<String> = tags.iter().map(|t| t["m:".len()..].to_string()).collect();
    let (i1, i2, i3) = (&instances[0], &instances[1], &instances[2]);
    assert_eq!(state.load_session(i1).await.unwrap(), None);

    let first = SessionData {
        instance: i1.clone(),
        charged: vec!["c2".into(), "c1".into()],
        records: vec![record("r1", 0), record("r2", 1)],
    };
    let second = SessionData {
        instance: i2.clone(),
        charged: vec![],
        records: vec![record("r9", 0)],
    };
    let third = SessionData {
        instance: i3.clone(),
        charged: vec!["c1".into()],
        records: vec![],
    };
    state
        .save_sessions(&[first.clone(), second.clone(), third.clone()], &[])
        .await
        .unwrap();
    let mut want = first.clone();
    want.charged.sort();
    assert_eq!(state.load_session(i1).await.unwrap(), Some(want.clone()));
    assert_eq!(state.load_session(i2).await.unwrap(), Some(second));
    assert_eq!(state.load_session(i3).await.unwrap(), Some(third));
    // A new session expires after the session TTL (30 minutes by default).
    let key = format!("sess:{{m:{i1}}}:eom");
    let port = cluster.primary_of_slot(cluster.key_slot(&key)).port;
    let pttl: u64 = cluster.cli(port, &["PTTL", &key]).trim().parse().unwrap();
    assert!(pttl > 25 * 60_000 && pttl <= 30 * 60_000, "{pttl}");

    // Merging: charged keys are added, a key's first record wins, new records follow;
    // `ended` sessions are deleted.
    let mut changed = record("r1", 2);
    changed.limit = 1;
    let more = SessionData {
        instance: i1.clone(),
        charged: vec!["c1".into(), "c0".into()],
        records: vec![changed, record("r3", 0)],
    };
    state
        .save_sessions(&[more], std::slice::from_ref(i2))
        .await
        .unwrap();
    want.charged.insert(0, "c0".into());
    want.records.push(record("r3", 0));
    assert_eq!(state.load_session(i1).await.unwrap(), Some(want));
    assert_eq!(state.load_session(i2).await.unwrap(), None);

    // A saved session is what the next batches of the message find.
    let mut once = batch(vec![vec![op("c1", 10, OpKind::TakeOncePerMessage)]]);
    once.instance = i3.clone();
    let r = state.apply_leasing(&once, &[]).await.unwrap();
    assert!(r.session_found);
    assert_eq!(r.reply.groups[0][0].outcome, Outcome::AlreadyCounted);
    once.instance = "never-seen".into();
    let r = state.apply_leasing(&once, &[]).await.unwrap();
    assert!(!r.session_found);
    assert_eq!(r.reply.groups[0][0].outcome, Outcome::Admitted);
    // A batch that does not read the session reports none.
    let mut plain = batch(vec![vec![take("k", 10, 1)]]);
    plain.instance = i3.clone();
    assert!(
        !state
            .apply_leasing(&plain, &[])
            .await
            .unwrap()
            .session_found
    );

    // END-OF-MESSAGE charges the saved records and ends the session.
    let mut eom = CounterBatch {
        instance: i1.clone(),
        end_of_message: Some(7),
        ..CounterBatch::default()
    };
    let r = state.apply_leasing(&eom, &[]).await.unwrap();
    assert!(r.session_found);
    let keys: Vec<&str> = r
        .reply
        .end_of_message
        .iter()
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(keys, ["r1", "r3", "r2"]);
    assert_eq!(level(&state, "r1").await, 7);
    assert_eq!(state.load_session(i1).await.unwrap(), None);
    let r = state.apply_leasing(&eom, &[]).await.unwrap();
    assert!(!r.session_found);
    assert!(r.reply.end_of_message.is_empty());
    eom.instance = "unknown".into();
    assert!(!state.apply_leasing(&eom, &[]).await.unwrap().session_found);
}
