//! `ApplyMany`: every batch answered on its own, as `Apply` would have answered it.

use sluice_engine::state::BoxFuture;
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, CounterReply, ManualClock, MemoryState, OpKind, Outcome, SharedState,
    State, StateError,
};
use sluice_proto::v1::quota_client::QuotaClient;
use sluice_proto::v1::{apply_result, ApplyManyRequest, ApplyRequest};
use sluice_quota::QuotaConfig;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::Code;

/// Fails the batches whose first counter key starts with `fail/`; runs the others.
struct FailsSome {
    inner: MemoryState,
}

impl State for FailsSome {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        let fail = batch
            .groups
            .first()
            .and_then(|g| g.first())
            .is_some_and(|op| op.key.starts_with("fail/"));
        if fail {
            return Box::pin(std::future::ready(Err(StateError::Unavailable(
                "refused on purpose".into(),
            ))));
        }
        self.inner.apply(batch)
    }
}

/// The quota-service protocol's defaults (no leases, no shared sessions).
impl SharedState for FailsSome {}

fn take(key: &str, limit: u64) -> ApplyRequest {
    ApplyRequest::from(&CounterBatch {
        groups: vec![vec![CounterOp {
            key: key.into(),
            limit,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Take { cost: 1 },
        }]],
        ..CounterBatch::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_batch_gets_its_own_answer_in_order() {
    let state = Arc::new(FailsSome {
        inner: MemoryState::new(Arc::new(ManualClock::new(1_000_000)), Default::default()),
    });
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
    let mut client = QuotaClient::connect(format!("http://{addr}"))
        .await
        .unwrap();

    // Three takes on one counter with limit 2, a failing batch, and a malformed one.
    let mut malformed = take("bad", 1);
    malformed.groups[0].ops[0].kind = None;
    let batches = vec![
        take("k", 2),
        take("fail/x", 2),
        take("k", 2),
        malformed,
        take("k", 2),
    ];
    let reply = client
        .apply_many(ApplyManyRequest { batches })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.results.len(), 5);
    let mut admitted = 0;
    for (i, r) in reply.results.into_iter().enumerate() {
        match (i, r.result.unwrap()) {
            (1, apply_result::Result::Error(e)) => {
                assert_eq!(Code::from(e.code), Code::Unavailable);
                assert!(e.message.contains("refused on purpose"), "{}", e.message);
            }
            (3, apply_result::Result::Error(e)) => {
                assert_eq!(Code::from(e.code), Code::InvalidArgument);
            }
            (0 | 2 | 4, apply_result::Result::Reply(reply)) => {
                let reply = CounterReply::try_from(reply).unwrap();
                if reply.groups[0][0].outcome == Outcome::Admitted {
                    admitted += 1;
                }
            }
            (i, other) => panic!("batch {i}: unexpected {other:?}"),
        }
    }
    assert_eq!(
        admitted, 2,
        "the limit holds across the batches of one call"
    );

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}
