//! Leases and edge-held message sessions over gRPC: `Op.lease` gets a grant, `ReturnLeases`
//! gives it back, `SaveSessions` then `LoadSession` round-trips, and an END-OF-MESSAGE for an
//! unknown instance says the session was not found.

use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, CounterReply, EomRecord, ManualClock, MemoryState, OpKind, Outcome,
    SessionData,
};
use sluice_proto::v1::quota_client::QuotaClient;
use sluice_proto::v1::{
    self, ApplyManyRequest, ApplyRequest, LoadSessionRequest, ReturnLeasesRequest,
    SaveSessionsRequest,
};
use sluice_quota::QuotaConfig;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const HOUR: u64 = 3_600_000;
/// The start of a minute: a bucket of an hour / 60 window begins here.
const T0: u64 = 1_700_000_040_000 / 60_000 * 60_000;

fn op(key: &str, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.into(),
        limit: 100_000,
        window: WindowSpec::new(HOUR, 60),
        kind,
    }
}

fn request(ops: Vec<CounterOp>) -> ApplyRequest {
    ApplyRequest::from(&CounterBatch {
        groups: vec![ops],
        ..CounterBatch::default()
    })
}

/// A quota service on `MemoryState` at `T0 + 10 s`, and a client.
async fn start() -> (
    QuotaClient<Channel>,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), sluice_quota::ServeError>>,
) {
    let state = Arc::new(MemoryState::new(
        Arc::new(ManualClock::new(T0 + 10_000)),
        Default::default(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(sluice_quota::serve(
        listener,
        state,
        QuotaConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = QuotaClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (client, stop, server)
}

async fn level(client: &mut QuotaClient<Channel>, key: &str) -> u64 {
    let reply = client
        .apply(request(vec![op(key, OpKind::Check { cost: 0 })]))
        .await
        .unwrap()
        .into_inner();
    CounterReply::try_from(reply).unwrap().groups[0][0].used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_are_granted_and_given_back_over_grpc() {
    let (mut client, stop, server) = start().await;
    let mut req = request(vec![
        op("k", OpKind::Take { cost: 1 }),
        op("j", OpKind::Take { cost: 1 }),
    ]);
    req.groups[0].ops[0].lease = 32;
    let reply = client.apply(req).await.unwrap().into_inner();
    let leased = &reply.groups[0].results[0];
    assert_eq!(
        (
            leased.leased,
            leased.lease_valid_ms,
            leased.lease_charged_at_ms
        ),
        (32, 50_000, T0 + 10_000)
    );
    assert_eq!(leased.used, 1, "the op's level excludes its lease");
    let plain = &reply.groups[0].results[1];
    assert_eq!(
        (
            plain.leased,
            plain.lease_valid_ms,
            plain.lease_charged_at_ms
        ),
        (0, 0, 0)
    );
    assert_eq!(level(&mut client, "k").await, 33);

    // ApplyMany grants too.
    let mut req = request(vec![op("m", OpKind::Take { cost: 1 })]);
    req.groups[0].ops[0].lease = 8;
    let many = client
        .apply_many(ApplyManyRequest { batches: vec![req] })
        .await
        .unwrap()
        .into_inner();
    match many.results[0].result.as_ref().unwrap() {
        v1::apply_result::Result::Reply(r) => assert_eq!(r.groups[0].results[0].leased, 8),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(level(&mut client, "m").await, 9);

    client
        .return_leases(ReturnLeasesRequest {
            leases: vec![v1::LeaseReturn {
                key: "k".into(),
                period_ms: HOUR,
                bucket_ms: 60_000,
                units: 30,
                charged_at_ms: T0 + 10_000,
            }],
        })
        .await
        .unwrap();
    assert_eq!(level(&mut client, "k").await, 3);
    // A malformed window is refused, not guessed.
    let bad = client
        .return_leases(ReturnLeasesRequest {
            leases: vec![v1::LeaseReturn {
                key: "k".into(),
                period_ms: 0,
                bucket_ms: 0,
                units: 3,
                charged_at_ms: T0 + 10_000,
            }],
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert_eq!(level(&mut client, "k").await, 3);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_saved_loaded_ended_and_found_over_grpc() {
    let (mut client, stop, server) = start().await;
    let load = |instance: &str| LoadSessionRequest {
        instance: instance.into(),
    };
    let none = client.load_session(load("M1")).await.unwrap().into_inner();
    assert_eq!(none.session, None);

    let session = SessionData {
        instance: "M1".into(),
        charged: vec!["a".into(), "b".into()],
        records: vec![EomRecord {
            key: "size".into(),
            limit: 100,
            window: WindowSpec::new(HOUR, 60),
            label: "pol/size".into(),
            group: 1,
        }],
    };
    client
        .save_sessions(SaveSessionsRequest {
            sessions: vec![v1::SessionData::from(&session)],
            ended: vec![],
        })
        .await
        .unwrap();
    let loaded = client.load_session(load("M1")).await.unwrap().into_inner();
    let loaded = SessionData::try_from(loaded.session.expect("a saved session")).unwrap();
    assert_eq!(loaded, session);

    // END-OF-MESSAGE of the saved message finds it and charges its record.
    let eom = |instance: &str| {
        ApplyRequest::from(&CounterBatch {
            instance: instance.into(),
            end_of_message: Some(7),
            ..CounterBatch::default()
        })
    };
    let reply = client.apply(eom("M1")).await.unwrap().into_inner();
    assert!(reply.session_found);
    let reply = CounterReply::try_from(reply).unwrap();
    assert_eq!(reply.end_of_message.len(), 1);
    assert_eq!(reply.end_of_message[0].result.outcome, Outcome::Admitted);
    assert_eq!(reply.end_of_message[0].result.used, 7);
    // For an unknown instance (or the ended one) it does not.
    let reply = client.apply(eom("unknown")).await.unwrap().into_inner();
    assert!(!reply.session_found);
    assert!(reply.end_of_message.is_empty());
    let reply = client.apply(eom("M1")).await.unwrap().into_inner();
    assert!(!reply.session_found);

    // `ended` deletes a session.
    let mut other = session.clone();
    other.instance = "M2".into();
    client
        .save_sessions(SaveSessionsRequest {
            sessions: vec![v1::SessionData::from(&other)],
            ended: vec![],
        })
        .await
        .unwrap();
    assert!(client
        .load_session(load("M2"))
        .await
        .unwrap()
        .into_inner()
        .session
        .is_some());
    client
        .save_sessions(SaveSessionsRequest {
            sessions: vec![],
            ended: vec!["M2".into()],
        })
        .await
        .unwrap();
    let gone = client.load_session(load("M2")).await.unwrap().into_inner();
    assert_eq!(gone.session, None);

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
