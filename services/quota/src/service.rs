//! The `Apply` and `ApplyMany` handlers.
//!
//! Each call runs in its own task: if the caller gives up (its deadline passes and it resets
//! the stream), its batches still run to completion, so an all-or-nothing group is never
//! left half taken without its refund. The caller may therefore see a timeout for a batch
//! that was applied — which is why the remote client never retries after a timeout.
//!
//! `ApplyMany` carries the batches of several policy requests that an edge had waiting at
//! the same time: they run concurrently (so their Redis commands go out together) and each
//! is answered on its own, as `Apply` would have answered it.

use crate::error::{status_from_error, ServiceError};
use futures_util::future::join_all;
use sluice_engine::{CounterBatch, State};
use sluice_proto::v1::quota_server::Quota;
use sluice_proto::v1::{
    apply_result, ApplyManyReply, ApplyManyRequest, ApplyReply, ApplyRequest, ApplyResult,
    BatchError,
};
use sluice_proto::ConvertError;
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

    /// Runs the batches of one `ApplyMany` concurrently, all in one task (so each still runs
    /// to completion when the caller gives up), and answers each on its own.
    pub async fn run_many(
        &self,
        request: ApplyManyRequest,
    ) -> Result<ApplyManyReply, ServiceError> {
        let batches: Vec<Result<CounterBatch, ConvertError>> = request
            .batches
            .into_iter()
            .map(CounterBatch::try_from)
            .collect();
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(
            async move {
                let runs = batches.iter().map(|b| {
                    let state = &state;
                    async move {
                        match b {
                            Ok(batch) => state
                                .apply(batch)
                                .await
                                .map(|r| ApplyReply::from(&r))
                                .map_err(ServiceError::from),
                            Err(e) => Err(ServiceError::from(e.clone())),
                        }
                    }
                });
                join_all(runs).await
            }
            .in_current_span(),
        );
        let results = match tokio::time::timeout(self.apply_timeout, task).await {
            Ok(Ok(results)) => results,
            Ok(Err(join)) => return Err(ServiceError::Internal(join.to_string())),
            Err(_) => return Err(ServiceError::State(sluice_engine::StateError::Timeout)),
        };
        let results = results.into_iter().map(|r| self.record(r)).collect();
        Ok(ApplyManyReply { results })
    }

    /// Counts one batch's result and turns it into its wire form.
    fn record(&self, result: Result<ApplyReply, ServiceError>) -> ApplyResult {
        let result = match result {
            Ok(reply) => {
                self.metrics.ok.increment(1);
                apply_result::Result::Reply(reply)
            }
            Err(e) => {
                self.failed(&e);
                let status = status_from_error(&e);
                apply_result::Result::Error(BatchError {
                    code: status.code() as i32,
                    message: status.message().to_string(),
                })
            }
        };
        ApplyResult {
            result: Some(result),
        }
    }

    /// Logs and counts a failed batch.
    fn failed(&self, e: &ServiceError) {
        tracing::warn!(error = %e, kind = e.kind_label(), "Apply failed.");
        metrics::counter!(
            sluice_runtime::metrics::names::QUOTA_BATCHES,
            "result" => e.kind_label()
        )
        .increment(1);
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
                    self.failed(&e);
                    Err(e.into())
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn apply_many(
        &self,
        request: Request<ApplyManyRequest>,
    ) -> Result<Response<ApplyManyReply>, Status> {
        // Batched calls carry no per-request trace context (edges send traced requests
        // with `Apply`), so one debug span covers the call.
        let span = tracing::debug_span!(
            "apply_many",
            peer = ?request.remote_addr(),
            batches = request.get_ref().batches.len(),
        );
        let request = request.into_inner();
        let n = request.batches.len();
        match self.run_many(request).instrument(span).await {
            Ok(reply) => Ok(Response::new(reply)),
            Err(e) => {
                for _ in 0..n {
                    self.failed(&e);
                }
                Err(e.into())
            }
        }
    }
}
