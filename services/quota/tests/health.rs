//! grpc.health.v1 follows the backing state, and shutdown flips it first.

use sluice_engine::state::BoxFuture;
use sluice_engine::{
    CounterBatch, CounterReply, ManualClock, MemoryState, SharedState, State, StateError,
};
use sluice_quota::QuotaConfig;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A fake backend for the "backend down" fault: fails while `down` is set.
struct Switchable {
    inner: MemoryState,
    down: AtomicBool,
}

impl State for Switchable {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StateError::Unavailable(
                "backend switched off".into(),
            ))));
        }
        self.inner.apply(batch)
    }
}

/// The quota-service protocol's defaults (no leases, no shared sessions).
impl SharedState for Switchable {}

/// The next status on a watch stream (bounded wait: fails instead of hanging).
async fn next(
    watch: &mut tonic::Streaming<tonic_health::pb::HealthCheckResponse>,
) -> ServingStatus {
    let m = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("a health update in time")
        .unwrap()
        .unwrap();
    ServingStatus::try_from(m.status).unwrap()
}

async fn health_client(addr: std::net::SocketAddr) -> HealthClient<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_state_and_shutdown() {
    let state = Arc::new(Switchable {
        inner: MemoryState::new(Arc::new(ManualClock::new(1_000_000)), Default::default()),
        down: AtomicBool::new(false),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = QuotaConfig {
        probe_interval: Duration::from_millis(20),
        ..QuotaConfig::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice_quota::serve(
        listener,
        state.clone(),
        config,
        async {
            let _ = stopped.await;
        },
    ));

    let mut client = health_client(addr).await;
    let mut watch = client
        .watch(HealthCheckRequest {
            service: sluice_proto::QUOTA_SERVICE_NAME.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next(&mut watch).await, ServingStatus::Serving);
    state.down.store(true, Ordering::SeqCst);
    assert_eq!(next(&mut watch).await, ServingStatus::NotServing);
    state.down.store(false, Ordering::SeqCst);
    assert_eq!(next(&mut watch).await, ServingStatus::Serving);

    // Shutdown: NOT_SERVING first, then the server drains (the watch stream is cut after
    // the drain timeout at the latest) and returns.
    stop.send(()).unwrap();
    assert_eq!(next(&mut watch).await, ServingStatus::NotServing);
    drop(watch);
    drop(client);
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returns after draining")
        .unwrap()
        .unwrap();
    // The listener is closed: new connections are refused.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_failing_at_start_is_not_serving_at_once() {
    let state = Arc::new(Switchable {
        inner: MemoryState::new(Arc::new(ManualClock::new(1_000_000)), Default::default()),
        down: AtomicBool::new(true),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let _server = tokio::spawn(sluice_quota::serve(
        listener,
        state,
        QuotaConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = health_client(addr).await;
    for service in [sluice_proto::QUOTA_SERVICE_NAME, ""] {
        let r = client
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap();
        assert_eq!(r.get_ref().status, ServingStatus::NotServing as i32);
    }
}
