//! The live-counter calls (`CounterLevels`, `ListCounters`, `ResetCounter`) over real gRPC:
//! answered from the service's live view, input range-checked, `UNIMPLEMENTED` without one.

use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, ManualClock, MemoryState, MemoryStateSettings, OpKind, State,
};
use sluice_proto::v1::list_counters_request::Listing;
use sluice_proto::v1::quota_client::QuotaClient;
use sluice_proto::v1::{
    CounterLevelsRequest, CounterQuery, ListCountersRequest, ResetCounterRequest,
};
use sluice_quota::QuotaConfig;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::Code;

const KEY: &str = "p/q/MessageCount/Sender:a@example.org";

async fn start(
    live: bool,
) -> (
    Arc<MemoryState>,
    QuotaClient<tonic::transport::Channel>,
    tokio::sync::oneshot::Sender<()>,
) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let state = Arc::new(MemoryState::new(clock, MemoryStateSettings::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let live_view: Option<Arc<dyn sluice_engine::LiveCounters>> =
        live.then(|| state.clone() as Arc<dyn sluice_engine::LiveCounters>);
    tokio::spawn(sluice_quota::serve_with_live(
        listener,
        state.clone(),
        live_view,
        None,
        QuotaConfig::default(),
        async {
            let _ = stopped.await;
        },
    ));
    let client = QuotaClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    (state, client, stop)
}

fn query(key: &str, bucket_ms: u64) -> CounterQuery {
    CounterQuery {
        key: key.into(),
        limit: 2,
        period_ms: 60_000,
        bucket_ms,
    }
}

fn take() -> CounterBatch {
    CounterBatch {
        groups: vec![vec![CounterOp {
            key: KEY.into(),
            limit: 2,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Take { cost: 1 },
        }]],
        ..CounterBatch::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn levels_listings_and_resets_come_from_the_live_view() {
    let (state, mut client, _stop) = start(true).await;
    for _ in 0..3 {
        state.apply(&take()).await.unwrap();
    }
    let levels = client
        .counter_levels(CounterLevelsRequest {
            counters: vec![query(KEY, 1000)],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((levels.counters[0].used, levels.counters[0].limit), (2, 2));
    let listed = client
        .list_counters(ListCountersRequest {
            listing: Some(Listing::RefusedSinceMs(1_000_000)),
            max: 10,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.counters.len(), 1, "{listed:?}");
    assert_eq!(listed.counters[0].refused_at_ms, Some(1_000_000));
    let reset = client
        .reset_counter(ResetCounterRequest { key: KEY.into() })
        .await
        .unwrap()
        .into_inner();
    assert!(reset.counted);
    assert_eq!(state.counter_info(KEY, 2).used, 0);

    // Out of range: refused before anything runs.
    let refused = [
        client
            .counter_levels(CounterLevelsRequest {
                counters: vec![query(KEY, 0)],
            })
            .await
            .map(drop),
        client
            .counter_levels(CounterLevelsRequest {
                counters: vec![query(KEY, 1000); 1001],
            })
            .await
            .map(drop),
        client
            .counter_levels(CounterLevelsRequest {
                counters: vec![query(&"x".repeat(2049), 1000)],
            })
            .await
            .map(drop),
        client
            .list_counters(ListCountersRequest {
                listing: Some(Listing::AtLeastPercent(0)),
                max: 10,
            })
            .await
            .map(drop),
        client
            .list_counters(ListCountersRequest {
                listing: None,
                max: 10,
            })
            .await
            .map(drop),
        client
            .reset_counter(ResetCounterRequest { key: String::new() })
            .await
            .map(drop),
    ];
    for (i, r) in refused.into_iter().enumerate() {
        assert_eq!(r.unwrap_err().code(), Code::InvalidArgument, "call {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_live_view_the_calls_are_unimplemented() {
    let (state, mut client, _stop) = start(false).await;
    state.apply(&take()).await.unwrap();
    let status = client
        .reset_counter(ResetCounterRequest { key: KEY.into() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    assert_eq!(state.counter_info(KEY, 2).used, 1, "nothing was reset");
    let status = client
        .list_counters(ListCountersRequest {
            listing: Some(Listing::AtLeastPercent(80)),
            max: 10,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);
}
