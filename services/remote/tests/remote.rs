//! RemoteState against real quota services over TCP on 127.0.0.1.

mod common;

use common::{Counting, Gate, Hanging, QuotaNode, Switchable};
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, ManualClock, MemoryState, MemoryStateSettings, OpKind, Outcome, State,
    StateError,
};
use sluice_quota::QuotaConfig;
use sluice_remote::{RemoteConfig, RemoteState};
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::Notify;

const T0: u64 = 1_700_000_000_000;

fn memory(clock: &ManualClock) -> Arc<MemoryState> {
    Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ))
}

fn op(key: &str, limit: u64, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.into(),
        limit,
        window: WindowSpec::new(60_000, 60),
        kind,
    }
}

fn take(key: &str, limit: u64) -> CounterBatch {
    CounterBatch {
        groups: vec![vec![op(key, limit, OpKind::Take { cost: 1 })]],
        ..CounterBatch::default()
    }
}

fn no_cache() -> RemoteConfig {
    RemoteConfig {
        over_limit_cache: false,
        ..RemoteConfig::default()
    }
}

async fn remote(urls: Vec<String>, config: RemoteConfig, clock: &ManualClock) -> RemoteState {
    RemoteState::connect_with_clock(urls, config, Arc::new(clock.clone()))
        .await
        .unwrap()
}

/// A mixed sequence: once-per-message takes, recipient takes, size checks recorded for
/// END-OF-MESSAGE, independent groups, dry runs, time passing.
fn scenario() -> Vec<(u64, CounterBatch)> {
    let record = |g| OpKind::RecordForEom {
        label: "p\u{1f}size".into(),
        group: g,
    };
    let rcpt = |instance: &str, size: u64| CounterBatch {
        instance: instance.into(),
        dry_run: false,
        groups: vec![
            vec![
                op("p/q/MessageCount/s", 3, OpKind::TakeOncePerMessage),
                op("p/q/RecipientCount/s", 5, OpKind::Take { cost: 1 }),
                op(
                    "p/size/MessageCumulativeSize/s",
                    1_000,
                    OpKind::Check { cost: size },
                ),
                op("p/size/MessageCumulativeSize/s", 1_000, record(0)),
            ],
            vec![op("m/q/RecipientCount/ip", 2, OpKind::Take { cost: 1 })],
        ],
        end_of_message: None,
    };
    let eom = |instance: &str, size: u64| CounterBatch {
        instance: instance.into(),
        end_of_message: Some(size),
        ..CounterBatch::default()
    };
    let mut v = Vec::new();
    for (i, instance) in ["A", "B", "C", "D"].iter().enumerate() {
        for _ in 0..3 {
            v.push((0, rcpt(instance, 300)));
        }
        v.push((1_000, eom(instance, 300)));
        if i == 1 {
            let mut dry = rcpt("E", 900);
            dry.dry_run = true;
            v.push((0, dry));
        }
    }
    v.push((65_000, rcpt("F", 100)));
    v.push((0, eom("F", 2_000)));
    v.push((0, eom("nobody", 10)));
    v.push((30_000, rcpt("G", 1)));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_exactly_the_replies_of_the_state_behind_it() {
    let clock = ManualClock::new(T0);
    let direct = memory(&clock);
    let node = QuotaNode::start(memory(&clock), QuotaConfig::default()).await;
    let remote = remote(vec![node.url()], no_cache(), &clock).await;
    let mut refusals = 0;
    for (i, (advance, batch)) in scenario().into_iter().enumerate() {
        clock.advance_ms(advance);
        let want = direct.apply(&batch).await.unwrap();
        let got = remote.apply(&batch).await.unwrap();
        assert_eq!(got, want, "batch {i}: {batch:?}");
        refusals += want
            .groups
            .iter()
            .flatten()
            .filter(|r| matches!(r.outcome, Outcome::Refused { .. }))
            .count();
    }
    assert!(refusals > 3, "the scenario exercises refusals");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_calls_go_out_together_and_each_gets_its_own_answer() {
    let clock = ManualClock::new(T0);
    let counting = Counting::new(memory(&clock));
    let node = QuotaNode::start(counting.clone(), QuotaConfig::default()).await;
    let remote = remote(vec![node.url()], no_cache(), &clock).await;
    // 300 calls at once (one task: they are all queued before the first is sent, so they
    // share ApplyMany calls): 30 takes on each of 10 counters with a limit of 20.
    let calls = (0..300).map(|i| {
        let key = format!("k{}", i % 10);
        let remote = &remote;
        async move {
            let r = remote.apply(&take(&key, 20)).await.unwrap();
            (key, r.groups[0][0].outcome)
        }
    });
    let results = futures_util::future::join_all(calls).await;
    for k in 0..10 {
        let key = format!("k{k}");
        let admitted = results
            .iter()
            .filter(|(rk, o)| *rk == key && *o == Outcome::Admitted)
            .count();
        assert_eq!(admitted, 20, "{key}: exactly the limit is admitted");
    }
    assert_eq!(counting.calls(), 300, "every call ran exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spreads_load_fails_over_without_errors_and_recovers() {
    let clock = ManualClock::new(T0);
    let shared = memory(&clock);
    let a_state = Counting::new(shared.clone());
    let b_state = Counting::new(shared.clone());
    let a = QuotaNode::start(a_state.clone(), QuotaConfig::default()).await;
    let b = QuotaNode::start(b_state.clone(), QuotaConfig::default()).await;
    let a_addr = a.addr;
    let remote = remote(vec![a.url(), b.url()], no_cache(), &clock).await;

    for _ in 0..20 {
        let r = remote.apply(&take("k", 1_000)).await.unwrap();
        assert_eq!(r.groups[0][0].outcome, Outcome::Admitted);
    }
    assert_eq!((a_state.calls(), b_state.calls()), (10, 10));

    // Stop A mid-way: every call still succeeds (connection refused is retried on B).
    a.stop().await;
    for i in 0..20 {
        let r = remote.apply(&take("k", 1_000)).await;
        assert!(r.is_ok(), "call {i} after stopping A: {r:?}");
    }
    assert_eq!(a_state.calls(), 10);
    assert_eq!(b_state.calls(), 30);
    let down: Vec<_> = remote.endpoints().into_iter().filter(|e| !e.up).collect();
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].addr, a_addr);
    // Nothing was charged twice.
    let level = remote.apply(&take("k", 1_000)).await.unwrap().groups[0][0].used;
    assert_eq!(level, 41);

    // A comes back on its address: the next probe marks it up and it gets calls again.
    let listener = TcpListener::bind(a_addr).await.unwrap();
    let _a2 = QuotaNode::start_on(listener, a_state.clone(), QuotaConfig::default());
    remote.probe_now().await;
    assert!(remote.endpoints().iter().all(|e| e.up));
    for _ in 0..10 {
        remote.apply(&take("k", 1_000)).await.unwrap();
    }
    assert_eq!(a_state.calls(), 15);
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_within_the_deadline_when_every_endpoint_is_down() {
    let clock = ManualClock::new(T0);
    let mut urls = Vec::new();
    for _ in 0..2 {
        // A port nobody listens on any more.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", l.local_addr().unwrap()));
    }
    let config = RemoteConfig {
        deadline: Duration::from_millis(200),
        ..RemoteConfig::default()
    };
    let remote = remote(urls, config, &clock).await;
    for _ in 0..3 {
        let started = Instant::now();
        let r = remote.apply(&take("k", 10)).await;
        assert!(matches!(r, Err(StateError::Unavailable(_))), "got {r:?}");
        assert!(started.elapsed() < Duration::from_millis(1_200));
    }
    assert!(remote.endpoints().iter().all(|e| !e.up));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_backend_times_out_within_the_deadline_and_is_not_retried() {
    let clock = ManualClock::new(T0);
    let hanging = Arc::new(Hanging {
        calls: AtomicUsize::new(0),
    });
    let a = QuotaNode::start(hanging.clone(), QuotaConfig::default()).await;
    let b = QuotaNode::start(hanging.clone(), QuotaConfig::default()).await;
    let config = RemoteConfig {
        deadline: Duration::from_millis(200),
        ..no_cache()
    };
    let remote = remote(vec![a.url(), b.url()], config, &clock).await;
    let started = Instant::now();
    let r = remote.apply(&take("k", 10)).await;
    let took = started.elapsed();
    assert_eq!(r, Err(StateError::Timeout));
    // The service answers by the budget it was sent (200 ms) less its reply margin (a
    // tenth): the call waited out the deadline instead of failing fast.
    assert!(took >= Duration::from_millis(160), "{took:?}");
    assert!(took < Duration::from_millis(1_200), "{took:?}");
    assert_eq!(
        hanging.calls.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "a call that may have been applied is never retried"
    );
    assert!(
        remote.endpoints().iter().all(|e| e.up),
        "slowness is not a node failure: {:?}",
        remote.endpoints()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_over_limit_cache_answers_locally_until_the_retry_after() {
    let clock = ManualClock::new(T0);
    let counting = Counting::new(memory(&clock));
    let node = QuotaNode::start(counting.clone(), QuotaConfig::default()).await;
    let remote = remote(vec![node.url()], RemoteConfig::default(), &clock).await;
    let batch = take("sender", 3);
    for _ in 0..3 {
        assert_eq!(
            remote.apply(&batch).await.unwrap().groups[0][0].outcome,
            Outcome::Admitted
        );
    }
    let refused = remote.apply(&batch).await.unwrap().groups[0][0];
    let Outcome::Refused {
        retry_after_ms: Some(wait),
    } = refused.outcome
    else {
        panic!("{refused:?}")
    };
    assert_eq!(counting.calls(), 4);
    assert_eq!(remote.cached_over_limit(), 1);

    // Answered locally, counted down, no call reaches the quota service.
    clock.advance_ms(1_000);
    let local = remote.apply(&batch).await.unwrap();
    assert_eq!(
        local.groups[0][0].outcome,
        Outcome::Refused {
            retry_after_ms: Some(wait - 1_000)
        }
    );
    assert_eq!(counting.calls(), 4);
    // A group not starting with the known key, and dry runs, still go to the service.
    let mut other = take("other", 3);
    other.groups.push(batch.groups[0].clone());
    let mixed = remote.apply(&other).await.unwrap();
    assert_eq!(mixed.groups[0][0].outcome, Outcome::Admitted);
    assert!(matches!(
        mixed.groups[1][0].outcome,
        Outcome::Refused { .. }
    ));
    assert_eq!(counting.calls(), 5, "only the unknown group was sent");
    let mut dry = batch.clone();
    dry.dry_run = true;
    remote.apply(&dry).await.unwrap();
    assert_eq!(counting.calls(), 6);

    // Past the retry-after the service is asked again, and admits.
    clock.advance_ms(wait - 1_000);
    assert_eq!(
        remote.apply(&batch).await.unwrap().groups[0][0].outcome,
        Outcome::Admitted
    );
    assert_eq!(counting.calls(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_resolving_to_the_service_works() {
    let clock = ManualClock::new(T0);
    let node = QuotaNode::start(memory(&clock), QuotaConfig::default()).await;
    let url = format!("http://localhost:{}", node.addr.port());
    let remote = remote(vec![url], no_cache(), &clock).await;
    assert!(remote.endpoints().iter().any(|e| e.addr == node.addr));
    // localhost may also resolve to ::1, where nothing listens: that is retried.
    for _ in 0..4 {
        remote.apply(&take("k", 10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_errors_reach_the_engine_as_unavailable() {
    let clock = ManualClock::new(T0);
    let state = Arc::new(Switchable {
        inner: memory(&clock),
        down: AtomicBool::new(true),
    });
    let node = QuotaNode::start(state.clone(), QuotaConfig::default()).await;
    let remote = remote(vec![node.url()], no_cache(), &clock).await;
    let r = remote.apply(&take("k", 10)).await;
    assert!(
        matches!(r, Err(StateError::Unavailable(ref m)) if m.contains("switched off")),
        "{r:?}"
    );
    state.down.store(false, std::sync::atomic::Ordering::SeqCst);
    remote.apply(&take("k", 10)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_in_flight_calls() {
    let clock = ManualClock::new(T0);
    let gate = Arc::new(Gate {
        inner: memory(&clock),
        entered: Notify::new(),
        release: Notify::new(),
    });
    let mut node = QuotaNode::start(gate.clone(), QuotaConfig::default()).await;
    let config = RemoteConfig {
        deadline: Duration::from_secs(5),
        ..no_cache()
    };
    let remote = Arc::new(remote(vec![node.url()], config, &clock).await);
    let call = tokio::spawn({
        let remote = remote.clone();
        async move { remote.apply(&take("k", 10)).await }
    });
    gate.entered.notified().await;
    node.signal_stop();
    gate.release.notify_one();
    let reply = call.await.unwrap().unwrap();
    assert_eq!(reply.groups[0][0].outcome, Outcome::Admitted);
    node.stop().await;
}

/// A quota service of before `ApplyMany`: answers `UNIMPLEMENTED` to it, like a server
/// without the method.
struct WithoutApplyMany(sluice_quota::QuotaService);

#[tonic::async_trait]
impl sluice_proto::v1::quota_server::Quota for WithoutApplyMany {
    async fn apply(
        &self,
        request: tonic::Request<sluice_proto::v1::ApplyRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::ApplyReply>, tonic::Status> {
        self.0.apply(request).await
    }

    async fn apply_many(
        &self,
        _request: tonic::Request<sluice_proto::v1::ApplyManyRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::ApplyManyReply>, tonic::Status> {
        Err(tonic::Status::unimplemented("no ApplyMany here"))
    }

    async fn return_leases(
        &self,
        request: tonic::Request<sluice_proto::v1::ReturnLeasesRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::ReturnLeasesReply>, tonic::Status> {
        self.0.return_leases(request).await
    }

    async fn save_sessions(
        &self,
        request: tonic::Request<sluice_proto::v1::SaveSessionsRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::SaveSessionsReply>, tonic::Status> {
        self.0.save_sessions(request).await
    }

    async fn load_session(
        &self,
        request: tonic::Request<sluice_proto::v1::LoadSessionRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::LoadSessionReply>, tonic::Status> {
        self.0.load_session(request).await
    }

    async fn counter_levels(
        &self,
        request: tonic::Request<sluice_proto::v1::CounterLevelsRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::CounterLevelsReply>, tonic::Status> {
        self.0.counter_levels(request).await
    }

    async fn list_counters(
        &self,
        request: tonic::Request<sluice_proto::v1::ListCountersRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::CounterLevelsReply>, tonic::Status> {
        self.0.list_counters(request).await
    }

    async fn reset_counter(
        &self,
        request: tonic::Request<sluice_proto::v1::ResetCounterRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::ResetCounterReply>, tonic::Status> {
        self.0.reset_counter(request).await
    }

    async fn hold(
        &self,
        request: tonic::Request<sluice_proto::v1::HoldRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::HoldReply>, tonic::Status> {
        self.0.hold(request).await
    }

    async fn list_held(
        &self,
        request: tonic::Request<sluice_proto::v1::ListHeldRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::HeldMessagesReply>, tonic::Status> {
        self.0.list_held(request).await
    }

    async fn sync_held(
        &self,
        request: tonic::Request<sluice_proto::v1::SyncHeldRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::SyncHeldReply>, tonic::Status> {
        self.0.sync_held(request).await
    }

    async fn act_held(
        &self,
        request: tonic::Request<sluice_proto::v1::ActHeldRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::HeldMessagesReply>, tonic::Status> {
        self.0.act_held(request).await
    }

    async fn waiting_held(
        &self,
        request: tonic::Request<sluice_proto::v1::ListHeldRequest>,
    ) -> Result<tonic::Response<sluice_proto::v1::WaitingHeldReply>, tonic::Status> {
        self.0.waiting_held(request).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_apply_many_gets_single_calls() {
    use sluice_proto::v1::quota_server::QuotaServer;
    let clock = ManualClock::new(T0);
    let counting = Counting::new(memory(&clock));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let service = WithoutApplyMany(sluice_quota::QuotaService::new(
        counting.clone(),
        Duration::from_secs(1),
    ));
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(QuotaServer::new(service))
            .serve_with_incoming(tokio_stream_incoming(listener)),
    );
    let remote = remote(vec![url], no_cache(), &clock).await;
    let wave =
        |n: usize| {
            let remote = &remote;
            futures_util::future::join_all((0..n).map(move |i| async move {
                remote.apply(&take(&format!("k{}", i % 10), 1_000)).await
            }))
        };
    // The first calls waiting together go out as one ApplyMany: it is refused without
    // running anything, so they fail (fallback action) and nothing is charged for them.
    let first = wave(100).await;
    let ok = first.iter().filter(|r| r.is_ok()).count();
    assert!(
        first
            .iter()
            .all(|r| r.is_ok() || matches!(r, Err(StateError::Unavailable(_)))),
        "{first:?}"
    );
    assert!(ok < 100, "100 calls at once share at least one ApplyMany");
    assert_eq!(counting.calls(), ok, "only the calls that succeeded ran");
    // From then on every call is a single Apply.
    let second = wave(100).await;
    assert!(second.iter().all(Result::is_ok), "{second:?}");
    assert_eq!(counting.calls(), ok + 100);
    server.abort();
}

/// The connections of `listener` as tonic's incoming stream.
fn tokio_stream_incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}
