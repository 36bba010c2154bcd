//! [`RemoteState`]: one batch, one `Apply` call, under a deadline.
//!
//! **Deadline.** The whole batch — picking an endpoint, connecting, the call and a possible
//! retry — runs under [`RemoteConfig::deadline`]; past it the batch fails with
//! [`StateError::Timeout`]. The remaining budget travels as the gRPC deadline too.
//!
//! **Retry, never double-charging.** A failed call is retried once, on another endpoint,
//! within the same deadline, only when it provably never reached a quota service: the
//! connection to the endpoint could not be made (refused, unreachable, connect timeout), so
//! nothing was sent. Anything else is not retried, because the batch may have been applied:
//! a timeout after sending (the service runs a batch to completion even when the caller gave
//! up), a connection reset mid-call, or an `UNAVAILABLE` answered by a service whose backend
//! failed part-way. Those fail with [`StateError`] and the engine answers its fallback action.
//!
//! **Health.** A transport failure marks the endpoint down (it is skipped while others are
//! up); a successful call or a SERVING health probe (see [`crate::maintain`]) marks it up.
//! An error the service answered — a whole call's status or one batch's error in an
//! `ApplyMany`, e.g. a failing Redis node behind it — never marks it down: only the
//! requests on that node fail, and the service's health says whether it can serve at all.

use crate::cache::OverLimitCache;
use crate::config::RemoteConfig;
use crate::error::{is_transport_failure, never_sent, state_error_from_status, RemoteError};
use crate::lease::LeaseTable;
use crate::pool::{Backend, EndpointSpec, EndpointStats, Pool};
use crate::sessions::Sessions;
use sluice_engine::state::BoxFuture;
use sluice_engine::{
    Clock, CounterBatch, CounterReply, LeaseReturn, OpResult, SessionData, State, StateError,
    SystemClock,
};
use sluice_proto::v1::{ApplyReply, ApplyRequest};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::Status;
use tracing::Instrument;

/// Metric handles of the remote state (see `docs/metrics.md`).
struct RemoteMetrics {
    rpc_ok: metrics::Histogram,
    rpc_error: metrics::Histogram,
    cache_hits: metrics::Counter,
    lease_grants: metrics::Counter,
}

impl RemoteMetrics {
    fn new() -> Self {
        use sluice_runtime::metrics::names;
        // Exported from the start (docs/metrics.md): the gauges at 0, every result at 0.
        metrics::gauge!(names::LEASES_HELD).set(0.0);
        metrics::gauge!(names::EDGE_SESSIONS).set(0.0);
        for result in ["ok", "error"] {
            metrics::counter!(names::LEASE_RETURNS, "result" => result).increment(0);
            metrics::counter!(names::SESSION_SAVES, "result" => result).increment(0);
        }
        RemoteMetrics {
            rpc_ok: metrics::histogram!(names::QUOTA_RPC_DURATION, "result" => "ok"),
            rpc_error: metrics::histogram!(names::QUOTA_RPC_DURATION, "result" => "error"),
            cache_hits: metrics::counter!(names::OVER_LIMIT_CACHE_HITS),
            lease_grants: metrics::counter!(names::LEASE_GRANTS),
        }
    }

    /// Runs one call and records its duration by result.
    async fn timed<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<T, Status> {
        let started = std::time::Instant::now();
        let r = call.await;
        let h = if r.is_ok() {
            &self.rpc_ok
        } else {
            &self.rpc_error
        };
        h.record(started.elapsed().as_secs_f64());
        r
    }
}

/// Work the background task sends: unused lease units, sessions to store, ended sessions.
#[derive(Default)]
pub(crate) struct Outbox {
    pub returns: Vec<LeaseReturn>,
    pub saves: Vec<SessionData>,
    pub ended: Vec<String>,
}

/// Shared by the state and its background task.
pub(crate) struct Inner {
    pub pool: Pool,
    metrics: RemoteMetrics,
    pub config: RemoteConfig,
    pub(crate) cache: Option<OverLimitCache>,
    pub(crate) clock: Arc<dyn Clock>,
    /// The leases held (`None`: leases are off).
    pub(crate) leases: Option<LeaseTable>,
    /// Counters a once-per-message take was seen on lately (`None`: leases are off).
    pub(crate) sightings: Option<crate::sightings::Sightings>,
    /// The message sessions held (used with leases).
    pub(crate) sessions: Sessions,
    /// What the background task is to send.
    pub(crate) outbox: Mutex<Outbox>,
    /// Wakes the background task (sessions to store now).
    pub(crate) wake: Notify,
    /// Held while sending (a shutdown's hand-over waits for a send in progress).
    pub(crate) sending: tokio::sync::Mutex<()>,
}

impl Inner {
    /// One unary call (`call` on a client) to a quota service picked by the balancer, under
    /// `timeout`; a transport failure marks that service down. Not retried.
    pub(crate) async fn unary<T, F, Fut>(
        &self,
        timeout: std::time::Duration,
        call: F,
    ) -> Result<T, StateError>
    where
        F: FnOnce(crate::batch::QuotaRpc) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let Some(backend) = self.pool.pick(None) else {
            return Err(StateError::Unavailable(
                "no quota-service endpoint resolved".into(),
            ));
        };
        match tokio::time::timeout(timeout, call(backend.batcher().client())).await {
            Ok(Ok(reply)) => Ok(reply.into_inner()),
            Ok(Err(status)) => {
                if is_transport_failure(&status) {
                    backend.mark_down(status.message());
                }
                Err(state_error_from_status(&status))
            }
            Err(_) => Err(StateError::Timeout),
        }
    }

    /// Counts a lease granted.
    pub(crate) fn metrics_lease_grant(&self) {
        self.metrics.lease_grants.increment(1);
    }
}

/// The engine's [`State`] backed by quota services over gRPC.
pub struct RemoteState {
    pub(crate) inner: Arc<Inner>,
    task: JoinHandle<()>,
    flusher: JoinHandle<()>,
}

impl Drop for RemoteState {
    fn drop(&mut self) {
        self.task.abort();
        self.flusher.abort();
    }
}

impl RemoteState {
    /// Connects (lazily) to the quota services at `endpoints` (`http://host:port` URLs; a
    /// name resolving to several addresses stands for all of them). Fails only on invalid
    /// URLs or settings; unreachable or unresolvable endpoints are retried in the background.
    /// Must be called within a tokio runtime (it spawns the background task).
    pub async fn connect(
        endpoints: Vec<String>,
        config: RemoteConfig,
    ) -> Result<Self, RemoteError> {
        Self::connect_with_clock(endpoints, config, Arc::new(SystemClock)).await
    }

    /// [`RemoteState::connect`] with the clock the over-limit cache reads (tests move it by
    /// hand).
    pub async fn connect_with_clock(
        endpoints: Vec<String>,
        config: RemoteConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RemoteError> {
        config.validate()?;
        if endpoints.is_empty() {
            return Err(RemoteError::NoEndpoints);
        }
        let specs = endpoints
            .iter()
            .map(|u| EndpointSpec::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        for spec in &specs {
            // TLS problems (an unusable CA or client certificate, no system roots) are
            // reported now, not at the first call.
            let probe = std::net::SocketAddr::from(([127, 0, 0, 1], spec.port));
            crate::pool::endpoint(spec, probe, &config)?;
        }
        let pool = Pool::new(specs, config.clone()).await;
        let cache = config
            .over_limit_cache
            .then(|| OverLimitCache::new(config.over_limit_cache_capacity));
        let leases = (config.lease_multiple > 0).then(LeaseTable::default);
        let sessions = Sessions::new(config.max_edge_sessions, config.session_ttl);
        let inner = Arc::new(Inner {
            pool,
            metrics: RemoteMetrics::new(),
            config,
            cache,
            clock,
            sightings: leases
                .as_ref()
                .map(|_| crate::sightings::Sightings::default()),
            leases,
            sessions,
            outbox: Mutex::new(Outbox::default()),
            wake: Notify::new(),
            sending: tokio::sync::Mutex::new(()),
        });
        let task = tokio::spawn(crate::maintain::run(Arc::downgrade(&inner)));
        let flusher = tokio::spawn(crate::flush::run(Arc::downgrade(&inner)));
        Ok(RemoteState {
            inner,
            task,
            flusher,
        })
    }

    /// Number of leases held (0 when leases are off).
    pub fn leases_held(&self) -> usize {
        self.inner.leases.as_ref().map_or(0, LeaseTable::len)
    }

    /// Number of message sessions held.
    pub fn sessions_held(&self) -> usize {
        self.inner.sessions.len()
    }

    /// Sends now what waits to be sent: unused units of expired leases, sessions to store.
    pub async fn flush_now(&self) {
        crate::flush::flush(&self.inner, false).await;
    }

    /// Shutdown: gives back every lease's unused units and stores every session not
    /// stored yet, so other edges can continue the messages.
    pub async fn hand_over(&self) {
        crate::flush::flush(&self.inner, true).await;
    }

    pub(crate) fn queue_returns(&self, returns: Vec<LeaseReturn>) {
        if !returns.is_empty() {
            crate::lock(&self.inner.outbox).returns.extend(returns);
        }
    }

    pub(crate) fn queue_ended(&self, instance: String) {
        crate::lock(&self.inner.outbox).ended.push(instance);
    }

    /// Reads the shared store's session of `instance`, under the deadline.
    pub(crate) async fn load_session(
        &self,
        instance: &str,
    ) -> Result<Option<SessionData>, StateError> {
        let deadline = self.inner.config.deadline;
        let mut request = tonic::Request::new(sluice_proto::v1::LoadSessionRequest {
            instance: instance.to_string(),
        });
        request.set_timeout(deadline);
        let reply = self
            .inner
            .unary(
                deadline,
                |mut c| async move { c.load_session(request).await },
            )
            .await?;
        reply
            .session
            .map(SessionData::try_from)
            .transpose()
            .map_err(|e| StateError::Unavailable(format!("malformed session: {e}")))
    }

    /// Per-address snapshots (up/down, calls, in flight), for metrics and logs.
    pub fn endpoints(&self) -> Vec<EndpointStats> {
        self.inner.pool.stats()
    }

    /// The counter `key` was reset (by the admin service): forgets what this edge holds
    /// for it — its over-limit memo entry, and its lease without giving the units back
    /// (they were charged to the buckets the reset deleted) — so its next request asks the
    /// quota service. Whether anything was held.
    pub fn forget_counter(&self, key: &str) -> bool {
        let memo = self.inner.cache.as_ref().is_some_and(|c| c.remove(key));
        let leased = self.inner.leases.as_ref().map_or(0, |l| l.forget(key));
        memo || leased > 0
    }

    /// Number of entries in the over-limit cache (0 when it is off).
    pub fn cached_over_limit(&self) -> usize {
        self.inner.cache.as_ref().map_or(0, OverLimitCache::len)
    }

    /// Probes every endpoint's health now (the background task does it every
    /// [`RemoteConfig::probe_interval`]).
    pub async fn probe_now(&self) {
        let c = &self.inner.config;
        crate::maintain::probe_all(&self.inner.pool, c.connect_timeout + c.deadline).await;
    }

    /// Re-resolves the endpoints now (the background task does it every
    /// [`RemoteConfig::resolve_interval`]).
    pub async fn resolve_now(&self) {
        self.inner.pool.refresh().await;
    }

    async fn apply_batch(&self, batch: &CounterBatch) -> Result<CounterReply, StateError> {
        let Some(cache) = self.inner.cache.as_ref().filter(|_| !batch.dry_run) else {
            return self.remote(batch).await;
        };
        let now = self.inner.clock.now_ms();
        let local: Vec<Option<Vec<OpResult>>> = batch
            .groups
            .iter()
            .map(|g| cache.answer_group(g, now))
            .collect();
        let answered = local.iter().filter(|l| l.is_some()).count();
        if answered == 0 {
            let reply = self.remote(batch).await?;
            let now = self.inner.clock.now_ms();
            for (ops, results) in batch.groups.iter().zip(&reply.groups) {
                cache.observe(ops, results, now);
            }
            return Ok(reply);
        }
        tracing::debug!(groups = answered, "Answered from the over-limit cache.");
        self.inner.metrics.cache_hits.increment(answered as u64);
        if answered == batch.groups.len() && batch.end_of_message.is_none() {
            return Ok(CounterReply {
                groups: local.into_iter().flatten().collect(),
                end_of_message: Vec::new(),
                details: Vec::new(),
            });
        }
        let rest = CounterBatch {
            instance: batch.instance.clone(),
            dry_run: batch.dry_run,
            groups: batch
                .groups
                .iter()
                .zip(&local)
                .filter(|(_, l)| l.is_none())
                .map(|(g, _)| g.clone())
                .collect(),
            end_of_message: batch.end_of_message,
        };
        let reply = self.remote(&rest).await?;
        let now = self.inner.clock.now_ms();
        for (ops, results) in rest.groups.iter().zip(&reply.groups) {
            cache.observe(ops, results, now);
        }
        // The remote batch's group k is the batch's k-th group not answered here.
        let remote_index: Vec<u32> = (0..local.len() as u32)
            .filter(|&g| local[g as usize].is_none())
            .collect();
        let details = reply
            .details
            .into_iter()
            .filter_map(|mut d| {
                d.group = *remote_index.get(d.group as usize)?;
                Some(d)
            })
            .collect();
        let mut remote_groups = reply.groups.into_iter();
        let groups = local
            .into_iter()
            .map(|l| l.or_else(|| remote_groups.next()).unwrap_or_default())
            .collect();
        Ok(CounterReply {
            groups,
            end_of_message: reply.end_of_message,
            details,
        })
    }

    /// One batch to the quota services, under the deadline.
    pub(crate) async fn remote(&self, batch: &CounterBatch) -> Result<CounterReply, StateError> {
        let reply = self.call(ApplyRequest::from(batch)).await?;
        let reply = CounterReply::try_from(reply)
            .map_err(|e| StateError::Unavailable(format!("malformed reply: {e}")))?;
        let shape_ok = reply.groups.len() == batch.groups.len()
            && reply
                .groups
                .iter()
                .zip(&batch.groups)
                .all(|(r, ops)| r.len() == ops.len());
        if !shape_ok {
            return Err(StateError::Unavailable(
                "reply does not match the batch's shape".into(),
            ));
        }
        Ok(reply)
    }

    /// One `Apply` to the quota services, under the deadline.
    pub(crate) async fn call(&self, request: ApplyRequest) -> Result<ApplyReply, StateError> {
        let deadline = Instant::now() + self.inner.config.deadline;
        match tokio::time::timeout_at(deadline, self.attempts(request, deadline)).await {
            Ok(result) => result,
            Err(_) => {
                tracing::debug!(deadline = ?self.inner.config.deadline, "Quota call timed out.");
                Err(StateError::Timeout)
            }
        }
    }

    async fn attempts(
        &self,
        request: ApplyRequest,
        deadline: Instant,
    ) -> Result<ApplyReply, StateError> {
        let pool = &self.inner.pool;
        let Some(first) = pool.pick(None) else {
            return Err(StateError::Unavailable(
                "no quota-service endpoint resolved".into(),
            ));
        };
        let m = &self.inner.metrics;
        let status = match m.timed(attempt(&first, request.clone(), deadline)).await {
            Ok(reply) => return Ok(reply),
            Err(status) => status,
        };
        if is_transport_failure(&status) {
            first.mark_down(status.message());
        }
        if !never_sent(&status) {
            return Err(state_error_from_status(&status));
        }
        let Some(second) = pool.pick(Some(first.addr)) else {
            return Err(state_error_from_status(&status));
        };
        tracing::debug!(failed = %first.addr, retry = %second.addr, "Retrying on another quota service.");
        m.timed(attempt(&second, request, deadline))
            .await
            .map_err(|status| {
                if is_transport_failure(&status) {
                    second.mark_down(status.message());
                }
                state_error_from_status(&status)
            })
    }
}

/// One call to one backend.
async fn attempt(
    backend: &Backend,
    request: ApplyRequest,
    deadline: Instant,
) -> Result<ApplyReply, Status> {
    let _in_flight = backend.start_call();
    let batcher = backend.batcher();
    let reply = if sluice_runtime::traces_enabled() {
        // A traced call goes out on its own: its trace context travels in its metadata.
        let groups = request.groups.len();
        let mut request = tonic::Request::new(request);
        request.set_timeout(deadline.saturating_duration_since(Instant::now()));
        let mut client = batcher.client();
        let span = tracing::info_span!(
            "quota.apply",
            otel.kind = "client",
            rpc.system = "grpc",
            rpc.service = "sluice.quota.v1.Quota",
            rpc.method = "Apply",
            server.address = %backend.addr,
            groups,
        );
        sluice_runtime::propagation::inject(&span, request.metadata_mut());
        client.apply(request).instrument(span).await?.into_inner()
    } else {
        batcher.call(request, deadline).await?
    };
    backend.mark_up();
    Ok(reply)
}

impl State for RemoteState {
    fn leased_unused(&self, key: &str) -> Option<u64> {
        self.inner
            .leases
            .as_ref()?
            .unused(key, std::time::Instant::now())
    }

    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        self.apply_on(0, batch)
    }

    fn apply_on<'a>(
        &'a self,
        connection: u64,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        match self.inner.leases.as_ref() {
            // Leases and edge-held sessions need to know the client connection (see
            // `crate::sessions`); batches of no connection go to the service as they are.
            Some(leases) if !batch.dry_run && connection != 0 => {
                Box::pin(self.apply_leased(connection, batch, leases))
            }
            _ => Box::pin(self.apply_batch(batch)),
        }
    }

    fn connection_closed(&self, connection: u64) {
        let saves = self.inner.sessions.connection_closed(connection);
        if !saves.is_empty() {
            crate::lock(&self.inner.outbox).saves.extend(saves);
            self.inner.wake.notify_one();
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.hand_over())
    }
}
