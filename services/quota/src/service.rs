//! The `Apply` handler.
//!
//! Each batch runs in its own task: if the caller gives up (its deadline passes and it resets
//! the stream), the batch still runs to completion, so an all-or-nothing group is never left
//! half taken without its refund. The caller may therefore see a timeout for a batch that
//! was applied — which is why the remote client never retries after a timeout.

use crate::error::ServiceError;
use sluice_engine::{CounterBatch, State};
use sluice_proto::v1::quota_server::Quota;
use sluice_proto::v1::{ApplyReply, ApplyRequest};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The `sluice.quota.v1.Quota` service over a [`State`].
pub struct QuotaService {
    state: Arc<dyn State>,
    apply_timeout: Duration,
    metrics: ServiceMetrics,
}

/// Handles registered once (the error results are rare and looked up when they happen).
struct ServiceMetrics {
    ok: metrics::Counter,
}

impl QuotaService {
    /// A service running batches on `state`, each bounded by `apply_timeout`.
    pub fn new(state: Arc<dyn State>, apply_timeout: Duration) -> Self {
        QuotaService {
            state,
            apply_timeout,
            metrics: ServiceMetrics {
                ok: metrics::counter!(
                    sluice_runtime::metrics::names::QUOTA_BATCHES,
                    "result" => "ok"
                ),
            },
        }
    }

    /// Runs one request's batch.
    pub async fn run(&self, request: ApplyRequest) -> Result<ApplyReply, ServiceError> {
        let batch = CounterBatch::try_from(request)?;
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(
            async move { state.apply(&batch).await.map(|r| ApplyReply::from(&r)) }
                .in_current_span(),
        );
        match tokio::time::timeout(self.apply_timeout, task).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(join)) => Err(ServiceError::Internal(join.to_string())),
            Err(_) => Err(ServiceError::State(sluice_engine::StateError::Timeout)),
        }
    }
}

#[tonic::async_trait]
impl Quota for QuotaService {
    async fn apply(&self, request: Request<ApplyRequest>) -> Result<Response<ApplyReply>, Status> {
        let peer = request.remote_addr();
        let span = if sluice_runtime::traces_enabled() {
            // Joins the caller's trace (W3C trace context in the metadata).
            let span = tracing::info_span!(
                "quota.apply",
                otel.kind = "server",
                rpc.system = "grpc",
                rpc.service = "sluice.quota.v1.Quota",
                rpc.method = "Apply",
                groups = request.get_ref().groups.len(),
            );
            sluice_runtime::propagation::extract_into(request.metadata(), &span);
            span
        } else {
            tracing::debug_span!(
                "apply",
                peer = ?peer,
                groups = request.get_ref().groups.len(),
                dry_run = request.get_ref().dry_run,
                eom = request.get_ref().end_of_message_size.is_some(),
            )
        };
        let request = request.into_inner();
        async {
            match self.run(request).await {
                Ok(reply) => {
                    self.metrics.ok.increment(1);
                    Ok(Response::new(reply))
                }
                Err(e) => {
                    tracing::warn!(error = %e, kind = e.kind_label(), "Apply failed.");
                    metrics::counter!(
                        sluice_runtime::metrics::names::QUOTA_BATCHES,
                        "result" => e.kind_label()
                    )
                    .increment(1);
                    Err(e.into())
                }
            }
        }
        .instrument(span)
        .await
    }
}
