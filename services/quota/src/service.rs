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
use sluice_engine::{CounterBatch, LeaseReturn, LeasedReply, SessionData, State};
use sluice_proto::v1::quota_server::Quota;
use sluice_proto::v1::{
    apply_result, ApplyManyReply, ApplyManyRequest, ApplyReply, ApplyRequest, ApplyResult,
    BatchError, LoadSessionReply, LoadSessionRequest, ReturnLeasesReply, ReturnLeasesRequest,
    SaveSessionsReply, SaveSessionsRequest,
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
        // Exported from the start (docs/metrics.md): every result at 0.
        for result in ["unavailable", "timeout", "invalid_request", "internal"] {
            metrics::counter!(sluice_runtime::metrics::names::QUOTA_BATCHES, "result" => result)
                .increment(0);
        }
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
        let (batch, leases) = leased_batch(request)?;
        self.run_task(move |state| {
            Box::pin(async move {
                state
                    .apply_leasing(&batch, &leases)
                    .await
                    .map(|r| leased_reply(&r))
            })
        })
        .await
    }

    /// Runs the batches of one `ApplyMany` concurrently, all in one task (so each still runs
    /// to completion when the caller gives up), and answers each on its own.
    pub async fn run_many(
        &self,
        request: ApplyManyRequest,
    ) -> Result<ApplyManyReply, ServiceError> {
        let batches: Vec<Result<LeasedBatch, ConvertError>> =
            request.batches.into_iter().map(leased_batch).collect();
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(
            async move {
                let runs = batches.iter().map(|b| {
                    let state = &state;
                    async move {
                        match b {
                            Ok((batch, leases)) => state
                                .apply_leasing(batch, leases)
                                .await
                                .map(|r| leased_reply(&r))
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

    /// Runs `call` on the state in its own task (it completes even when the caller gives
    /// up), bounded by the apply timeout.
    async fn run_task<T: Send + 'static>(
        &self,
        call: impl FnOnce(
                Arc<dyn State>,
            ) -> std::pin::Pin<
                Box<dyn std::future::Future<Output = Result<T, sluice_engine::StateError>> + Send>,
            > + Send
            + 'static,
    ) -> Result<T, ServiceError> {
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(call(state).in_current_span());
        match tokio::time::timeout(self.apply_timeout, task).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(join)) => Err(ServiceError::Internal(join.to_string())),
            Err(_) => Err(ServiceError::State(sluice_engine::StateError::Timeout)),
        }
    }

    /// Gives back unused lease units.
    pub async fn run_return_leases(
        &self,
        request: ReturnLeasesRequest,
    ) -> Result<(), ServiceError> {
        let returns = request
            .leases
            .into_iter()
            .map(LeaseReturn::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        self.run_task(move |state| Box::pin(async move { state.return_leases(&returns).await }))
            .await
    }

    /// Stores edge-held message sessions and deletes ended ones.
    pub async fn run_save_sessions(
        &self,
        request: SaveSessionsRequest,
    ) -> Result<(), ServiceError> {
        let sessions = request
            .sessions
            .into_iter()
            .map(SessionData::try_from)
            .collect::<Result<Vec<_>, _>>()?;
        let ended = request.ended;
        self.run_task(move |state| {
            Box::pin(async move { state.save_sessions(&sessions, &ended).await })
        })
        .await
    }

    /// Reads a stored message session.
    pub async fn run_load_session(
        &self,
        request: LoadSessionRequest,
    ) -> Result<Option<SessionData>, ServiceError> {
        let instance = request.instance;
        self.run_task(move |state| Box::pin(async move { state.load_session(&instance).await }))
            .await
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
        sluice_runtime::warn_limited!(error = %e, kind = e.kind_label(), "Apply failed.");
        metrics::counter!(
            sluice_runtime::metrics::names::QUOTA_BATCHES,
            "result" => e.kind_label()
        )
        .increment(1);
    }
}

/// A batch and the lease each op asks for (in the batch's shape, or empty: none).
type LeasedBatch = (CounterBatch, Vec<Vec<u64>>);

/// A wire batch and the lease each op asks for (in the batch's shape).
fn leased_batch(request: ApplyRequest) -> Result<LeasedBatch, ConvertError> {
    let leases: Vec<Vec<u64>> = request
        .groups
        .iter()
        .map(|g| g.ops.iter().map(|op| op.lease).collect())
        .collect();
    let any = leases.iter().flatten().any(|&l| l > 0);
    let batch = CounterBatch::try_from(request)?;
    Ok((batch, if any { leases } else { Vec::new() }))
}

/// The wire reply of a leasing batch: the reply plus each op's lease and the session flag.
fn leased_reply(r: &LeasedReply) -> ApplyReply {
    let mut reply = ApplyReply::from(&r.reply);
    reply.session_found = r.session_found;
    for (group, grants) in reply.groups.iter_mut().zip(&r.leases) {
        for (result, grant) in group.results.iter_mut().zip(grants) {
            result.leased = grant.units;
            result.lease_valid_ms = grant.valid_ms;
            result.lease_charged_at_ms = grant.charged_at_ms;
        }
    }
    reply
}

#[tonic::async_trait]
impl Quota for QuotaService {
    async fn return_leases(
        &self,
        request: Request<ReturnLeasesRequest>,
    ) -> Result<Response<ReturnLeasesReply>, Status> {
        let span = tracing::debug_span!("return_leases", leases = request.get_ref().leases.len());
        match self
            .run_return_leases(request.into_inner())
            .instrument(span)
            .await
        {
            Ok(()) => Ok(Response::new(ReturnLeasesReply {})),
            Err(e) => {
                self.failed(&e);
                Err(e.into())
            }
        }
    }

    async fn save_sessions(
        &self,
        request: Request<SaveSessionsRequest>,
    ) -> Result<Response<SaveSessionsReply>, Status> {
        let span = tracing::debug_span!(
            "save_sessions",
            sessions = request.get_ref().sessions.len(),
            ended = request.get_ref().ended.len(),
        );
        match self
            .run_save_sessions(request.into_inner())
            .instrument(span)
            .await
        {
            Ok(()) => Ok(Response::new(SaveSessionsReply {})),
            Err(e) => {
                self.failed(&e);
                Err(e.into())
            }
        }
    }

    async fn load_session(
        &self,
        request: Request<LoadSessionRequest>,
    ) -> Result<Response<LoadSessionReply>, Status> {
        match self.run_load_session(request.into_inner()).await {
            Ok(session) => Ok(Response::new(LoadSessionReply {
                session: session.as_ref().map(Into::into),
            })),
            Err(e) => {
                self.failed(&e);
                Err(e.into())
            }
        }
    }

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
