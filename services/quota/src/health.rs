//! The state probe behind `grpc.health.v1`.
//!
//! A probe is [`State::ready`]: whether the state can serve **at all**, not whether every
//! part of it works. On Redis Cluster that is "the topology is known and at least one
//! primary answers": a failing node affects only the requests whose counters live on it
//! (they get per-batch errors), so it must not take the whole service out of the edges'
//! rotation. The default (in-process states) is a dry-run check of the reserved counter
//! [`PROBE_KEY`]. The service `sluice.quota.v1.Quota` (and the server as a whole, `""`) is
//! SERVING while probes succeed within the probe timeout, NOT_SERVING otherwise.

use sluice_engine::State;
use std::time::Duration;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

pub use sluice_engine::state::{probe_batch, PROBE_KEY};

/// Whether `state` can serve, answered within `timeout`.
pub async fn probe(state: &dyn State, timeout: Duration) -> bool {
    matches!(
        tokio::time::timeout(timeout, state.ready()).await,
        Ok(Ok(()))
    )
}

/// Sets the health of the quota service (and of the server as a whole).
pub async fn set_status(reporter: &HealthReporter, serving: bool) {
    metrics::gauge!(sluice_runtime::metrics::names::QUOTA_BACKEND_UP).set(if serving {
        1.0
    } else {
        0.0
    });
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter
        .set_service_status(sluice_proto::QUOTA_SERVICE_NAME, status)
        .await;
    reporter.set_service_status("", status).await;
}
