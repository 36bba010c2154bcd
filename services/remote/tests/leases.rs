//! Leases and edge-held message sessions: edges (`RemoteState`s with client connection ids)
//! against a real quota service over TCP on 127.0.0.1, counting in process.

mod common;

use common::{Counting, QuotaNode};
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, ManualClock, MemoryState, MemoryStateSettings, OpKind, Outcome,
    SharedState, State,
};
use sluice_quota::QuotaConfig;
use sluice_remote::{RemoteConfig, RemoteState};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The start of a sub-bucket of a one-hour window (60 s buckets): leases last ~60 s.
const T0: u64 = 1_700_000_040_000;

const HOUR: u64 = 3_600_000;

fn memory(clock: &ManualClock) -> Arc<MemoryState> {
    Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ))
}

fn op(key: &str, limit: u64, period_ms: u64, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.into(),
        limit,
        window: WindowSpec::new(period_ms, 60),
        kind,
    }
}

fn take(key: &str, limit: u64) -> CounterBatch {
    CounterBatch {
        groups: vec![vec![op(key, limit, HOUR, OpKind::Take { cost: 1 })]],
        ..CounterBatch::default()
    }
}

fn config() -> RemoteConfig {
    RemoteConfig {
        over_limit_cache: false,
        ..RemoteConfig::default()
    }
}

async fn edge(url: &str, clock: &ManualClock) -> RemoteState {
    RemoteState::connect_with_clock(vec![url.to_string()], config(), Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// The level the service holds for `key` (a dry-run check of 0).
async fn level(state: &MemoryState, key: &str, limit: u64) -> u64 {
    let batch = CounterBatch {
        dry_run: true,
        groups: vec![vec![op(key, limit, HOUR, OpKind::Check { cost: 0 })]],
        ..CounterBatch::default()
    };
    state.apply(&batch).await.unwrap().groups[0][0].used
}

fn admitted(reply: &sluice_engine::CounterReply) -> bool {
    reply
        .groups
        .iter()
        .flatten()
        .all(|r| r.outcome.is_admitted())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_with_leases_admit_exactly_the_limit_with_few_calls() {
    const LIMIT: u64 = 6_400;
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let counting = Counting::new(shared.clone());
    let node = QuotaNode::start(counting.clone(), QuotaConfig::default()).await;
    let edges = [
        edge(&node.url(), &clock).await,
        edge(&node.url(), &clock).await,
    ];
    let batch = take("sender", LIMIT);
    let mut admitted_n = 0u64;
    let mut refused = [false, false];
    let mut i = 0usize;
    // Alternate between the edges until both are refused.
    while !(refused[0] && refused[1]) {
        let e = i % 2;
        i += 1;
        let reply = edges[e].apply_on(100 + e as u64, &batch).await.unwrap();
        if admitted(&reply) {
            admitted_n += 1;
            assert!(admitted_n <= LIMIT, "more than the limit admitted");
            refused[e] = false;
        } else {
            assert!(matches!(
                reply.groups[0][0].outcome,
                Outcome::Refused { .. }
            ));
            refused[e] = true;
        }
        assert!(i < 20_000, "never refused");
    }
    assert_eq!(
        admitted_n, LIMIT,
        "every unit was used: none stranded in a lease"
    );
    assert_eq!(level(&shared, "sender", LIMIT).await, LIMIT);
    let calls = counting.calls.load(Ordering::SeqCst);
    // The lower half of the limit goes in leases (at most 100 units each, 1/64 of the limit);
    // the upper half is one call per request.
    assert!(
        calls < (LIMIT as usize) * 6 / 10,
        "{calls} calls for {LIMIT} admissions"
    );
    assert!(
        calls > (LIMIT as usize) / 2,
        "the upper half of the limit is taken one call at a time ({calls} calls)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_lease_units_go_back_and_a_refused_group_gives_back_its_local_take() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    // A roomy counter gets a lease; a tight one (limit 1) never does.
    let both = |ok_limit: u64| CounterBatch {
        groups: vec![vec![
            op("roomy", 1_000_000, HOUR, OpKind::Take { cost: 1 }),
            op("tight", ok_limit, HOUR, OpKind::Take { cost: 1 }),
        ]],
        ..CounterBatch::default()
    };
    assert!(admitted(&e.apply_on(1, &both(1)).await.unwrap()));
    let leased = level(&shared, "roomy", 1_000_000).await;
    assert!(leased > 1, "the first take brought a lease: level {leased}");
    assert_eq!(e.leases_held(), 1);
    // "roomy" is taken from the lease, "tight" is refused by the service: the group charges
    // nothing, and the unit goes back to the lease (not to the service).
    let reply = e.apply_on(1, &both(1)).await.unwrap();
    assert!(matches!(
        reply.groups[0][1].outcome,
        Outcome::Refused { .. }
    ));
    assert_eq!(level(&shared, "roomy", 1_000_000).await, leased);
    assert_eq!(level(&shared, "tight", 1).await, 1);
    // Handing over (shutdown) gives back what the lease did not use: one admission counted.
    e.hand_over().await;
    assert_eq!(e.leases_held(), 0);
    assert_eq!(level(&shared, "roomy", 1_000_000).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_given_back_by_the_background_task() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    // A 6 s window: 100 ms buckets, leases of at most 100 ms.
    let batch = CounterBatch {
        groups: vec![vec![op(
            "short",
            1_000_000,
            6_000,
            OpKind::Take { cost: 1 },
        )]],
        ..CounterBatch::default()
    };
    assert!(admitted(&e.apply_on(1, &batch).await.unwrap()));
    let probe = || CounterBatch {
        dry_run: true,
        groups: vec![vec![op(
            "short",
            1_000_000,
            6_000,
            OpKind::Check { cost: 0 },
        )]],
        ..CounterBatch::default()
    };
    assert!(shared.apply(&probe()).await.unwrap().groups[0][0].used > 1);
    let started = Instant::now();
    loop {
        if shared.apply(&probe()).await.unwrap().groups[0][0].used == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the lease was never given back"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(e.leases_held(), 0);
}

/// RCPT ops of one message: once per message, a recipient, a size check recorded for
/// END-OF-MESSAGE.
fn rcpt(instance: &str) -> CounterBatch {
    CounterBatch {
        instance: instance.into(),
        groups: vec![vec![
            op("messages", 10, HOUR, OpKind::TakeOncePerMessage),
            op("bytes", 10_000, HOUR, OpKind::Check { cost: 1 }),
            op(
                "bytes",
                10_000,
                HOUR,
                OpKind::RecordForEom {
                    label: "p\u{1f}size".into(),
                    group: 0,
                },
            ),
        ]],
        ..CounterBatch::default()
    }
}

fn eom(instance: &str, size: u64) -> CounterBatch {
    CounterBatch {
        instance: instance.into(),
        end_of_message: Some(size),
        ..CounterBatch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_is_counted_once_and_its_size_charged_at_end_of_message() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let counting = Counting::new(shared.clone());
    let node = QuotaNode::start(counting.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    let r1 = e.apply_on(1, &rcpt("m1")).await.unwrap();
    assert_eq!(r1.groups[0][0].outcome, Outcome::Admitted);
    let r2 = e.apply_on(1, &rcpt("m1")).await.unwrap();
    assert_eq!(r2.groups[0][0].outcome, Outcome::AlreadyCounted);
    assert_eq!(level(&shared, "messages", 10).await, 1);
    let done = e.apply_on(1, &eom("m1", 4_000)).await.unwrap();
    assert_eq!(done.end_of_message.len(), 1);
    assert_eq!(done.end_of_message[0].result.outcome, Outcome::Admitted);
    // At least the size (plus maybe a lease of a few bytes, given back below).
    assert!(level(&shared, "bytes", 10_000).await >= 4_000);
    assert_eq!(e.sessions_held(), 0, "END-OF-MESSAGE ends the session");
    // The connection's next messages began on it: no lookup in the shared store.
    for m in ["m2", "m3"] {
        e.apply_on(1, &rcpt(m)).await.unwrap();
        e.apply_on(1, &eom(m, 1_000)).await.unwrap();
    }
    assert_eq!(
        counting.loads.load(Ordering::SeqCst),
        1,
        "one lookup per connection"
    );
    assert_eq!(level(&shared, "messages", 10).await, 3);
    // A size that does not fit is refused at END-OF-MESSAGE and charges nothing.
    e.apply_on(1, &rcpt("m4")).await.unwrap();
    let big = e.apply_on(1, &eom("m4", 5_000)).await.unwrap();
    assert!(matches!(
        big.end_of_message[0].result.outcome,
        Outcome::Refused { .. }
    ));
    // Nothing was stored: every message ended on the connection that began it.
    e.connection_closed(1);
    e.flush_now().await;
    assert_eq!(counting.saves.load(Ordering::SeqCst), 0);
    // With the leases given back, exactly what was admitted is counted.
    e.hand_over().await;
    assert_eq!(level(&shared, "bytes", 10_000).await, 6_000);
    assert_eq!(
        level(&shared, "messages", 10).await,
        4,
        "m4 was counted at RCPT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_continued_on_another_edge_keeps_its_session() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let a = edge(&node.url(), &clock).await;
    let b = edge(&node.url(), &clock).await;
    // Edge A: the message's first RCPT; then its connection closes.
    a.apply_on(1, &rcpt("m1")).await.unwrap();
    a.connection_closed(1);
    // Edge B, a new connection: the second RCPT is not charged again, and
    // END-OF-MESSAGE charges the size recorded on edge A.
    let started = Instant::now();
    while shared.load_session("m1").await.unwrap().is_none() {
        assert!(started.elapsed() < Duration::from_secs(5), "never stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r2 = b.apply_on(7, &rcpt("m1")).await.unwrap();
    assert_eq!(r2.groups[0][0].outcome, Outcome::AlreadyCounted);
    let done = b.apply_on(7, &eom("m1", 3_000)).await.unwrap();
    assert_eq!(done.end_of_message.len(), 1, "{done:?}");
    // (Lease units given back first: then exactly what was admitted is counted.)
    b.hand_over().await;
    assert_eq!(level(&shared, "messages", 10).await, 1);
    assert_eq!(level(&shared, "bytes", 10_000).await, 3_000);
    assert!(
        shared.load_session("m1").await.unwrap().is_none(),
        "the stored session ends with the message"
    );

    // END-OF-MESSAGE alone on another edge right after the connection closed: found
    // (asked again after the settle time if the store was not written yet).
    a.apply_on(2, &rcpt("m2")).await.unwrap();
    a.connection_closed(2);
    let done = b.apply_on(8, &eom("m2", 2_000)).await.unwrap();
    assert_eq!(done.end_of_message.len(), 1, "{done:?}");
    b.hand_over().await;
    assert_eq!(level(&shared, "bytes", 10_000).await, 5_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_keep_admitting_while_the_service_is_down_until_they_expire() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    let batch = take("steady", 1_000_000);
    assert!(admitted(&e.apply_on(1, &batch).await.unwrap()));
    node.stop().await;
    // The lease still answers...
    for _ in 0..5 {
        assert!(admitted(&e.apply_on(1, &batch).await.unwrap()));
    }
    // ... a counter without one fails (the engine answers its fallback action).
    assert!(e.apply_on(1, &take("other", 1_000_000)).await.is_err());
}

/// What `sluice explain` on an edge reads: the level the service holds includes the units
/// leased to the edge, and the edge tells how many of them it has not used yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_tells_its_unused_lease_units_apart_from_the_level() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    assert_eq!(e.leased_unused("sender"), None, "no lease yet");
    for _ in 0..3 {
        let reply = e.apply_on(7, &take("sender", 6_400)).await.unwrap();
        assert!(admitted(&reply));
    }
    let unused = e.leased_unused("sender").expect("a lease is held");
    let charged = level(&shared, "sender", 6_400).await;
    assert!(unused > 0, "the lease has units left");
    assert_eq!(
        charged - unused,
        3,
        "the service's level ({charged}) is the 3 admitted plus the unused lease ({unused})"
    );
}

/// One RCPT of message `instance`: once per message on `counter`.
fn once(instance: &str, counter: &str) -> CounterBatch {
    CounterBatch {
        instance: instance.into(),
        groups: vec![vec![op(
            counter,
            1_000_000,
            HOUR,
            OpKind::TakeOncePerMessage,
        )]],
        ..CounterBatch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_seen_once_gets_no_lease_and_one_seen_again_does() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let counting = Counting::new(shared.clone());
    let node = QuotaNode::start(counting.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    // A long tail: every message from a new sender.
    for m in 0..50 {
        let r = e
            .apply_on(1, &once(&format!("m{m}"), &format!("sender{m}")))
            .await
            .unwrap();
        assert_eq!(r.groups[0][0].outcome, Outcome::Admitted);
        e.apply_on(1, &eom(&format!("m{m}"), 100)).await.unwrap();
    }
    for m in 0..50 {
        let key = format!("sender{m}");
        assert_eq!(
            level(&shared, &key, 1_000_000).await,
            1,
            "{key}: no lease charged"
        );
    }
    assert_eq!(e.leases_held(), 0);
    e.hand_over().await;
    assert_eq!(
        counting.returns.load(Ordering::SeqCst),
        0,
        "nothing to give back"
    );
    // A counter seen again gets a lease; the messages after it are admitted here.
    let calls = counting.calls();
    for m in 0..10 {
        let instance = format!("again{m}");
        let r = e.apply_on(1, &once(&instance, "sender0")).await.unwrap();
        assert_eq!(r.groups[0][0].outcome, Outcome::Admitted);
        e.apply_on(1, &eom(&instance, 100)).await.unwrap();
    }
    assert_eq!(counting.calls() - calls, 1, "one call, then the lease");
    assert_eq!(e.leases_held(), 1);
    e.hand_over().await;
    assert_eq!(
        level(&shared, "sender0", 1_000_000).await,
        11,
        "exactly what was admitted"
    );
}

/// A greylisting op leading a group always goes to the service, even when the group's take
/// could be answered from a lease: a deferral comes back with its detailed answer renamed
/// to the batch's op, and the group's local take goes back to the lease (no charge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deferred_greylisting_op_gives_back_its_groups_local_take() {
    use sluice_engine::greylisting::record::GreyParams;
    use sluice_engine::{DetailAnswer, GreyOutcome, GreylistOp};
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let node = QuotaNode::start(shared.clone(), QuotaConfig::default()).await;
    let e = edge(&node.url(), &clock).await;
    let roomy = || op("roomy", 1_000_000, HOUR, OpKind::Take { cost: 1 });
    let first = CounterBatch {
        groups: vec![vec![roomy()]],
        ..CounterBatch::default()
    };
    assert!(admitted(&e.apply_on(1, &first).await.unwrap()));
    let leased = level(&shared, "roomy", 1_000_000).await;
    assert!(leased > 1, "the first take brought a lease: level {leased}");
    let grey = GreylistOp {
        network: "SenderIP:192.0.2.0/24".into(),
        triplet: "a@x.org\nb@y.org".into(),
        params: GreyParams {
            period_ms: 240_000,
            auth_validity_ms: HOUR,
            unauth_validity_ms: HOUR,
            awl: None,
            abl: None,
            training: false,
        },
        dry_run: false,
    };
    let batch = CounterBatch {
        // An empty group first: details are named by the batch's groups.
        groups: vec![vec![], vec![Box::new(grey).into_counter_op(), roomy()]],
        ..CounterBatch::default()
    };
    let reply = e.apply_on(1, &batch).await.unwrap();
    assert!(matches!(
        reply.groups[1][0].outcome,
        Outcome::Refused { .. }
    ));
    assert_eq!(reply.groups[1][1].outcome, Outcome::NotEvaluated);
    assert_eq!(reply.details.len(), 1, "{reply:?}");
    let d = &reply.details[0];
    assert_eq!((d.group, d.index), (1, 0));
    assert!(matches!(
        d.answer,
        DetailAnswer::Greylist(g) if matches!(g.outcome, GreyOutcome::Deferred { tries: 1, .. })
    ));
    // Nothing charged: the service's level is the lease's, and handing over gives back all
    // but the first admission.
    assert_eq!(level(&shared, "roomy", 1_000_000).await, leased);
    e.hand_over().await;
    assert_eq!(level(&shared, "roomy", 1_000_000).await, 1);
}
