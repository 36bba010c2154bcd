//! The state probe behind `grpc.health.v1`.
//!
//! A probe is one [`State::apply`] of a dry-run batch holding a single `Check` of cost 1 on
//! the reserved key [`PROBE_KEY`]: a dry run charges nothing and creates nothing, but the
//! state must really reach its backend to answer it (an empty batch might not). The service
//! `sluice.quota.v1.Quota` (and the server as a whole, `""`) is SERVING while probes succeed
//! within the probe timeout, NOT_SERVING otherwise.

use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterBatch, CounterOp, OpKind, State};
use std::time::Duration;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The counter key probes check (never charged).
pub const PROBE_KEY: &str = "_sluice/health/probe";

/// The batch a probe runs.
pub fn probe_batch() -> CounterBatch {
    CounterBatch {
        instance: String::new(),
        dry_run: true,
        groups: vec![vec![CounterOp {
            key: PROBE_KEY.into(),
            limit: 1,
            window: WindowSpec::new(60_000, 60),
            kind: OpKind::Check { cost: 1 },
        }]],
        end_of_message: None,
    }
}

/// Whether `state` answers a probe within `timeout`.
pub async fn probe(state: &dyn State, timeout: Duration) -> bool {
    let batch = probe_batch();
    matches!(
        tokio::time::timeout(timeout, state.apply(&batch)).await,
        Ok(Ok(_))
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
