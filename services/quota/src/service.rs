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
//!
//! **One deadline per call.** The caller's gRPC deadline (`grpc-timeout`, which edges always
//! send) minus a margin for the way back ([`reply_deadline`]), and at most the server's own
//! `apply_timeout`, bounds all of a call's backend work ([`SharedState::apply_leasing_by`]): past
//! it no new Redis call is started, and every batch not finished by then is answered
//! `DEADLINE_EXCEEDED` — on its own, so a batch stuck on one failing Redis node does not
//! hold back the answers of the others in the same `ApplyMany`. A charge made before the
//! deadline whose batch is answered with an error stands (it is refunded when the batch
//! gets to it, and otherwise leaves the window with its bucket): under-admission, never
//! over-admission, and the edge answers its fallback action.

use crate::error::{status_from_error, ServiceError};
use futures_util::future::join_all;
use sluice_engine::{
    CounterBatch, LeaseReturn, LeasedReply, LiveCounters, SessionData, SharedState,
};
use sluice_proto::counters as live_wire;
use sluice_proto::v1::quota_server::Quota;
use sluice_proto::v1::{
    apply_result, ActHeldRequest, ApplyManyReply, ApplyManyRequest, ApplyReply, ApplyRequest,
    ApplyResult, BatchError, CounterLevelsReply, CounterLevelsRequest, HeldMessagesReply,
    HoldReply, HoldRequest, ListCountersRequest, ListHeldRequest, LoadSessionReply,
    LoadSessionRequest, ResetCounterReply, ResetCounterRequest, ReturnLeasesReply,
    ReturnLeasesRequest, SaveSessionsReply, SaveSessionsRequest, SyncHeldReply, SyncHeldRequest,
    WaitingHeldReply,
};
use sluice_proto::ConvertError;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};
use tracing::Instrument;

/// The `sluice.quota.v1.Quota` service over a [`SharedState`].
pub struct QuotaService {
    state: Arc<dyn SharedState>,
    /// The live view of the counters (`CounterLevels`, `ListCounters`, `ResetCounter`);
    /// without one those answer `UNIMPLEMENTED`.
    live: Option<Arc<dyn LiveCounters>>,
    /// DELAY quotas' ledger of held messages (`Hold`, `ListHeld`, `SyncHeld`, `ActHeld`);
    /// without one those answer `UNIMPLEMENTED`.
    held: Option<sluice_engine::hold::SharedHeld>,
    apply_timeout: Duration,
    metrics: ServiceMetrics,
}

/// Handles registered once (the error results are rare and looked up when they happen).
struct ServiceMetrics {
    ok: metrics::Counter,
}

impl QuotaService {
    /// A service running batches on `state`, each bounded by `apply_timeout`.
    pub fn new(state: Arc<dyn SharedState>, apply_timeout: Duration) -> Self {
        // Exported from the start (docs/metrics.md): every result at 0.
        for result in ["unavailable", "timeout", "invalid_request", "internal"] {
            metrics::counter!(sluice_runtime::metrics::names::QUOTA_BATCHES, "result" => result)
                .increment(0);
        }
        QuotaService {
            state,
            live: None,
            held: None,
            apply_timeout,
            metrics: ServiceMetrics {
                ok: metrics::counter!(
                    sluice_runtime::metrics::names::QUOTA_BATCHES,
                    "result" => "ok"
                ),
            },
        }
    }

    /// Also answers the live-counter calls from `live` (the same counters as `state`).
    pub fn with_live(mut self, live: Option<Arc<dyn LiveCounters>>) -> Self {
        self.live = live;
        self
    }

    /// Also answers the held-message calls from `held`.
    pub fn with_held(mut self, held: Option<sluice_engine::hold::SharedHeld>) -> Self {
        self.held = held;
        self
    }

    /// When a held-message call must be answered: its caller's budget, at most
    /// [`crate::held::HELD_TIMEOUT`].
    fn held_deadline(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        reply_deadline(
            Instant::now(),
            grpc_timeout(metadata),
            crate::held::HELD_TIMEOUT,
        )
    }

    /// The live view, or `UNIMPLEMENTED`.
    fn live(&self) -> Result<&Arc<dyn LiveCounters>, Status> {
        self.live.as_ref().ok_or_else(|| {
            Status::unimplemented("this quota service has no live view of its counters")
        })
    }

    /// A live-counter call bounded by the caller's deadline and `apply_timeout`; an error
    /// is logged (rate-limited) and mapped as a batch's.
    async fn live_call<T>(
        &self,
        what: &'static str,
        deadline: Instant,
        call: impl std::future::Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, Status> {
        let left = deadline.saturating_duration_since(Instant::now());
        let result = match tokio::time::timeout(left, call).await {
            Ok(r) => r,
            Err(_) => Err(ServiceError::State(sluice_engine::StateError::Timeout)),
        };
        result.map_err(|e| {
            sluice_runtime::warn_limited!(error = %e, call = what, "A live-counter call failed.");
            status_from_error(&e)
        })
    }

    /// Runs one request's batch, answered by `deadline` (see [`reply_deadline`]).
    pub async fn run(
        &self,
        request: ApplyRequest,
        deadline: Instant,
    ) -> Result<ApplyReply, ServiceError> {
        let (batch, leases) = leased_batch(request)?;
        let state = Arc::clone(&self.state);
        let task = tokio::spawn(
            async move {
                state
                    .apply_leasing_by(&batch, &leases, deadline)
                    .await
                    .map(|r| leased_reply(&r))
            }
            .in_current_span(),
        );
        match tokio::time::timeout_at(deadline.into(), task).await {
            Ok(Ok(result)) => Ok(result?),
            Ok(Err(join)) => Err(ServiceError::Internal(join.to_string())),
            Err(_) => Err(ServiceError::State(sluice_engine::StateError::Timeout)),
        }
    }

    /// Runs the batches of one `ApplyMany` concurrently, all in one task (so each still runs
    /// to completion when the caller gives up), and answers each on its own by `deadline`:
    /// a batch not done by then is answered `DEADLINE_EXCEEDED`, the others with their
    /// results.
    pub async fn run_many(
        &self,
        request: ApplyManyRequest,
        deadline: Instant,
    ) -> Result<ApplyManyReply, ServiceError> {
        let mut answers = Vec::with_capacity(request.batches.len());
        let mut runs = Vec::with_capacity(request.batches.len());
        for b in request.batches {
            let (tx, rx) = oneshot::channel();
            answers.push(rx);
            runs.push((leased_batch(b), tx));
        }
        let state = Arc::clone(&self.state);
        tokio::spawn(
            async move {
                let runs = runs.into_iter().map(|(b, tx)| {
                    let state = &state;
                    async move {
                        let result = match b {
                            Ok((batch, leases)) => state
                                .apply_leasing_by(&batch, &leases, deadline)
                                .await
                                .map(|r| leased_reply(&r))
                                .map_err(ServiceError::from),
                            Err(e) => Err(ServiceError::from(e)),
                        };
                        let _ = tx.send(result);
                    }
                });
                join_all(runs).await;
            }
            .in_current_span(),
        );
        // One timer for the whole call (not one per batch): a batch answered by the deadline
        // gets its result; once the deadline passed, each batch not answered yet times out.
        let expiry = tokio::time::sleep_until(deadline.into());
        tokio::pin!(expiry);
        let mut expired = false;
        let mut results = Vec::with_capacity(answers.len());
        for mut rx in answers {
            let result = if expired {
                answered_by_now(&mut rx)
            } else {
                tokio::select! {
                    biased;
                    r = &mut rx => r.unwrap_or_else(|_| Err(batch_task_ended())),
                    () = &mut expiry => {
                        expired = true;
                        answered_by_now(&mut rx)
                    }
                }
            };
            results.push(self.record(result));
        }
        Ok(ApplyManyReply { results })
    }

    /// When a call with `metadata` must be answered: see [`reply_deadline`], at most the
    /// server's `apply_timeout` from now.
    fn deadline_of(&self, metadata: &tonic::metadata::MetadataMap) -> Instant {
        reply_deadline(Instant::now(), grpc_timeout(metadata), self.apply_timeout)
    }

    /// Runs `call` on the state in its own task (it completes even when the caller gives
    /// up), bounded by the apply timeout.
    pub(crate) async fn run_task<T: Send + 'static>(
        &self,
        call: impl FnOnce(
                Arc<dyn SharedState>,
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

/// The most kept back from a caller's budget for the way back (the reply's transit and the
/// edge's own work): a tenth of the budget, at most this much.
const MAX_REPLY_MARGIN: Duration = Duration::from_millis(50);

/// When a call received at `now` must be answered: the caller's budget (its `grpc-timeout`)
/// minus a tenth of it (at most [`MAX_REPLY_MARGIN`]) for the reply to travel back, and at
/// most `server_bound` (the `apply_timeout`) from now. Without a budget: `server_bound`.
pub fn reply_deadline(now: Instant, budget: Option<Duration>, server_bound: Duration) -> Instant {
    let bound = match budget {
        Some(b) => (b - (b / 10).min(MAX_REPLY_MARGIN)).min(server_bound),
        None => server_bound,
    };
    now + bound
}

/// The caller's budget from its `grpc-timeout` header (`<digits><unit>`, unit one of `H`,
/// `M`, `S`, `m`, `u`, `n`); `None` when absent or malformed.
pub fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
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
    async fn hold(&self, request: Request<HoldRequest>) -> Result<Response<HoldReply>, Status> {
        let deadline = self.held_deadline(request.metadata());
        crate::held::hold(&self.held, deadline, request).await
    }

    async fn list_held(
        &self,
        request: Request<ListHeldRequest>,
    ) -> Result<Response<HeldMessagesReply>, Status> {
        let deadline = self.held_deadline(request.metadata());
        crate::held::list(&self.held, deadline, request).await
    }

    async fn sync_held(
        &self,
        request: Request<SyncHeldRequest>,
    ) -> Result<Response<SyncHeldReply>, Status> {
        let deadline = self.held_deadline(request.metadata());
        crate::held::sync(&self.held, deadline, request).await
    }

    async fn act_held(
        &self,
        request: Request<ActHeldRequest>,
    ) -> Result<Response<HeldMessagesReply>, Status> {
        let deadline = self.held_deadline(request.metadata());
        crate::held::act(&self.held, deadline, request).await
    }

    async fn waiting_held(
        &self,
        request: Request<ListHeldRequest>,
    ) -> Result<Response<WaitingHeldReply>, Status> {
        let deadline = self.held_deadline(request.metadata());
        crate::held::waiting(&self.held, deadline, request).await
    }

    async fn counter_levels(
        &self,
        request: Request<CounterLevelsRequest>,
    ) -> Result<Response<CounterLevelsReply>, Status> {
        let live = self.live()?;
        let deadline = self.deadline_of(request.metadata());
        let request = request.into_inner();
        if request.counters.len() > sluice_engine::counters::MAX_LISTED {
            return Err(Status::invalid_argument(format!(
                "at most {} counters per call",
                sluice_engine::counters::MAX_LISTED
            )));
        }
        let queries = request
            .counters
            .into_iter()
            .map(live_wire::query_from_wire)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let infos = self
            .live_call("CounterLevels", deadline, async {
                Ok(live.levels(&queries).await?)
            })
            .await?;
        Ok(Response::new(CounterLevelsReply {
            counters: infos.into_iter().map(live_wire::info_to_wire).collect(),
        }))
    }

    async fn list_counters(
        &self,
        request: Request<ListCountersRequest>,
    ) -> Result<Response<CounterLevelsReply>, Status> {
        let live = self.live()?;
        let deadline = self.deadline_of(request.metadata());
        let (listing, max) = live_wire::listing_from_wire(request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let infos = self
            .live_call("ListCounters", deadline, async {
                Ok(live.list(listing, max).await?)
            })
            .await?;
        Ok(Response::new(CounterLevelsReply {
            counters: infos.into_iter().map(live_wire::info_to_wire).collect(),
        }))
    }

    async fn reset_counter(
        &self,
        request: Request<ResetCounterRequest>,
    ) -> Result<Response<ResetCounterReply>, Status> {
        let live = self.live()?;
        let deadline = self.deadline_of(request.metadata());
        let key = request.into_inner().key;
        live_wire::check_key(&key).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let counted = self
            .live_call("ResetCounter", deadline, async {
                Ok(live.reset(&key).await?)
            })
            .await?;
        tracing::info!(key, counted, "A counter was reset");
        Ok(Response::new(ResetCounterReply { counted }))
    }

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
        let deadline = self.deadline_of(request.metadata());
        let request = request.into_inner();
        async {
            match self.run(request, deadline).await {
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
        let deadline = self.deadline_of(request.metadata());
        let request = request.into_inner();
        let n = request.batches.len();
        match self.run_many(request, deadline).instrument(span).await {
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

/// A batch's answer once its deadline passed: the result if it is there, else a timeout.
fn answered_by_now(
    rx: &mut oneshot::Receiver<Result<ApplyReply, ServiceError>>,
) -> Result<ApplyReply, ServiceError> {
    match rx.try_recv() {
        Ok(result) => result,
        Err(oneshot::error::TryRecvError::Empty) => {
            Err(ServiceError::State(sluice_engine::StateError::Timeout))
        }
        Err(oneshot::error::TryRecvError::Closed) => Err(batch_task_ended()),
    }
}

/// The error of a batch whose task ended without answering.
fn batch_task_ended() -> ServiceError {
    ServiceError::Internal("batch task ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(timeout: &str) -> tonic::metadata::MetadataMap {
        let mut m = tonic::metadata::MetadataMap::new();
        m.insert("grpc-timeout", timeout.parse().unwrap());
        m
    }

    #[test]
    fn reads_the_callers_budget() {
        assert_eq!(
            grpc_timeout(&metadata("200m")),
            Some(Duration::from_millis(200))
        );
        assert_eq!(grpc_timeout(&metadata("3S")), Some(Duration::from_secs(3)));
        assert_eq!(
            grpc_timeout(&metadata("1500u")),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(
            grpc_timeout(&metadata("2M")),
            Some(Duration::from_secs(120))
        );
        for bad in ["", "m", "12", "12x", "-1m", "1234567890m"] {
            let mut m = tonic::metadata::MetadataMap::new();
            if let Ok(v) = bad.parse() {
                m.insert("grpc-timeout", v);
            }
            assert_eq!(grpc_timeout(&m), None, "{bad:?}");
        }
        assert_eq!(grpc_timeout(&tonic::metadata::MetadataMap::new()), None);
    }

    #[test]
    fn answers_before_the_caller_gives_up() {
        let now = Instant::now();
        let bound = Duration::from_secs(1);
        let ms = |d: Instant| d.duration_since(now).as_millis();
        assert_eq!(
            ms(reply_deadline(now, Some(Duration::from_millis(200)), bound)),
            180
        );
        assert_eq!(
            ms(reply_deadline(now, Some(Duration::from_millis(900)), bound)),
            850
        );
        assert_eq!(
            ms(reply_deadline(now, Some(Duration::from_secs(5)), bound)),
            1000
        );
        assert_eq!(ms(reply_deadline(now, None, bound)), 1000);
    }
}
