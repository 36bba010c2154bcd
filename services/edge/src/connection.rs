//! One connection: strict request/response, many requests, with idle and busy timeouts.
//!
//! Warnings about a connection or a request (malformed bytes, timeouts, fallbacks) are
//! rate-limited ([`sluice_runtime::warn_limited!`]): a flood of bad clients logs one line
//! per kind every few seconds, with the count left out.

use crate::admission::Slot;
use crate::config::EdgeConfig;
use crate::listen::Peer;
use crate::metrics::{self, EdgeMetrics, Fallback};
use crate::shutdown::Signal;
use crate::verdict_log;
use sluice_engine::engine::Decision;
use sluice_engine::{Engine, Scratch};
use sluice_protocol::{FrameError, PolicyRequest, RawRequest, RequestDecoder};
use sluice_runtime::warn_limited;
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, timeout_at, Instant};
use tracing::Instrument;

/// Bytes reserved in the read buffer before each read.
const READ_CHUNK: usize = 4096;
/// A buffer grown past this by a large request is shrunk back once drained.
const MAX_KEPT_CAPACITY: usize = 64 * 1024;

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) engine: Arc<Engine>,
    pub(crate) config: EdgeConfig,
    /// The fallback action, encoded once.
    fallback_reply: Vec<u8>,
    /// Triggered when shutdown starts: connections close once no request is in flight.
    pub(crate) soft_stop: Signal,
    /// Triggered when the shutdown grace period is over: connections are dropped.
    pub(crate) hard_stop: Signal,
    /// Metric handles.
    pub(crate) metrics: Arc<EdgeMetrics>,
    /// Answers the modules' lookups (built on the first request that needs one).
    pub(crate) dns: sluice_dns::Answerer,
}

impl Shared {
    pub(crate) fn new(engine: Arc<Engine>, config: EdgeConfig) -> Self {
        let fallback_reply = config.fallback_action.encode();
        Shared {
            engine,
            fallback_reply,
            soft_stop: Signal::default(),
            hard_stop: Signal::default(),
            metrics: Arc::new(EdgeMetrics::new()),
            dns: sluice_dns::Answerer::new(config.dns.clone()),
            config,
        }
    }
}

/// Why a connection ended.
#[derive(Debug)]
enum Closed {
    /// The client closed between requests.
    Eof,
    /// No new request within the idle timeout.
    Idle,
    /// Closed to make room for a new connection (it was the oldest idle one).
    Evicted,
    /// Shutdown while no request was in flight.
    Shutdown,
    /// A started request was not completed, or a reply not written, in time.
    BusyTimeout { buffered: usize },
    /// The client closed in the middle of a request.
    EofMidRequest { buffered: usize },
    /// The bytes are not a policy request.
    Frame(FrameError),
    /// Reading or writing failed (reset by peer...).
    Io(io::Error),
}

/// Serves `stream` until the client leaves, a timeout or error closes it, or
/// [`Shared::soft_stop`] is triggered (or `slot` evicted) while no request is in flight.
pub(crate) async fn serve<S>(stream: S, peer: Peer, shared: &Shared, slot: &Slot)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut connection = Connection {
        stream,
        peer,
        shared,
        slot,
        buf: Vec::with_capacity(READ_CHUNK),
        out: Vec::with_capacity(256),
        decoder: RequestDecoder::new(shared.config.limits),
        // Policyd-style logs have a line for every quota that admits a request.
        scratch: Scratch::for_connection()
            .report_admitted(verdict_log::lines() == verdict_log::VerdictLines::Policyd),
    };
    let closed = connection.run().await;
    shared.engine.connection_closed(&connection.scratch);
    match closed {
        Closed::Eof | Closed::Shutdown => {
            tracing::debug!(%peer, reason = ?closed, "Connection closed")
        }
        Closed::Idle => tracing::debug!(%peer, "Closing idle connection"),
        Closed::Evicted => tracing::debug!(
            %peer,
            "Closing the oldest idle connection to make room for a new one"
        ),
        Closed::BusyTimeout { buffered } => warn_limited!(
            %peer, buffered, timeout_ms = shared.config.busy_timeout.as_millis() as u64,
            "Request not completed in time; closing connection"
        ),
        Closed::EofMidRequest { buffered } => {
            warn_limited!(%peer, buffered, "Client closed the connection mid-request")
        }
        Closed::Frame(e) => {
            EdgeMetrics::frame_error(e.kind_label());
            warn_limited!(
                %peer, kind = e.kind_label(), error = %e,
                "Malformed request; closing connection without reply"
            )
        }
        Closed::Io(e) => tracing::info!(%peer, error = %e, "Connection failed"),
    }
}

struct Connection<'a, S> {
    stream: S,
    peer: Peer,
    shared: &'a Shared,
    /// Busy or idle since when, for eviction of the oldest idle connection.
    slot: &'a Slot,
    /// Bytes read and not yet decoded.
    buf: Vec<u8>,
    /// The reply being written.
    out: Vec<u8>,
    decoder: RequestDecoder,
    /// The engine's buffers, reused from request to request.
    scratch: Scratch,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Connection<'_, S> {
    async fn run(&mut self) -> Closed {
        let config = &self.shared.config;
        // When the request now buffered started arriving.
        let mut started: Option<Instant> = None;
        // The idle timer is armed once and only moved when it fires early: re-arming a
        // timer for every request would cost more than the rest of the request path. The
        // last read times the requests it completed (one clock read per request); the last
        // request is the last read that completed one: only a request starts the idle time
        // over (a client sending blank lines, or nothing, is idle all the same). The idle
        // time is counted from a request's arrival, not from its answer, which is the same
        // to well within the timer's resolution.
        let mut last_read = Instant::now();
        let mut last_request = last_read;
        let idle = tokio::time::sleep_until(last_request + config.idle_timeout);
        let mut idle = pin!(idle);
        // Made once: a fresh wait per request would cost an allocation and a lock.
        let mut cancelled = self.shared.soft_stop.wait();
        let mut evicted = self.slot.evicted_wait();
        loop {
            match self.decoder.decode(&mut self.buf) {
                Err(e) => return Closed::Frame(e),
                Ok(Some(raw)) => {
                    last_request = last_read;
                    self.answer(&raw, last_read).await;
                    self.decoder.recycle(raw);
                    match write_reply(&mut self.stream, &self.out, config.busy_timeout).await {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                            return Closed::BusyTimeout { buffered: 0 }
                        }
                        Err(e) => return Closed::Io(e),
                    }
                    started = None;
                    if self.buf.is_empty() && self.slot.evicted() && !self.arrived().await {
                        return Closed::Evicted;
                    }
                    if self.buf.is_empty() && self.stopping() && !self.arrived().await {
                        return Closed::Shutdown;
                    }
                    if self.buf.capacity() > MAX_KEPT_CAPACITY && self.buf.len() < READ_CHUNK {
                        self.buf.shrink_to(READ_CHUNK);
                    }
                    continue;
                }
                Ok(None) => {}
            }
            if self.buf.is_empty() {
                // Between requests: idle, and closed on shutdown or eviction.
                started = None;
                if self.stopping() {
                    if self.arrived().await {
                        continue;
                    }
                    return Closed::Shutdown;
                }
                self.slot.idle(last_request);
                tokio::select! {
                    biased;
                    r = read_more(&mut self.stream, &mut self.buf) => match r {
                        Ok(0) => return Closed::Eof,
                        Ok(_) => {
                            self.slot.busy();
                            last_read = Instant::now();
                        }
                        Err(e) => return Closed::Io(e),
                    },
                    () = &mut cancelled => return Closed::Shutdown,
                    () = &mut evicted => return Closed::Evicted,
                    () = &mut idle => {
                        let deadline = last_request + config.idle_timeout;
                        if deadline <= Instant::now() {
                            return Closed::Idle;
                        }
                        idle.as_mut().reset(deadline);
                    }
                }
            } else {
                // A request has started: it gets the busy timeout, even during shutdown.
                let deadline = *started.get_or_insert_with(Instant::now) + config.busy_timeout;
                let buffered = self.buf.len();
                match timeout_at(deadline, read_more(&mut self.stream, &mut self.buf)).await {
                    Err(_) => return Closed::BusyTimeout { buffered },
                    Ok(Ok(0)) => return Closed::EofMidRequest { buffered },
                    Ok(Ok(_)) => last_read = Instant::now(),
                    Ok(Err(e)) => return Closed::Io(e),
                }
            }
        }
    }

    /// Whether shutdown has started.
    fn stopping(&self) -> bool {
        self.shared.soft_stop.is_triggered()
    }

    /// During shutdown: takes in what the client already sent, without waiting. True when
    /// bytes arrived (a request sent before the connection was closed still gets its answer).
    async fn arrived(&mut self) -> bool {
        let mut read = pin!(read_more(&mut self.stream, &mut self.buf));
        matches!(
            poll_fn(|cx| Poll::Ready(read.as_mut().poll(cx))).await,
            Poll::Ready(Ok(n)) if n > 0
        )
    }

    /// Decides `raw`, which was complete at `received`, and puts the encoded reply in
    /// `self.out`; counts it.
    async fn answer(&mut self, raw: &RawRequest, received: Instant) {
        let shared = self.shared;
        self.out.clear();
        // Typed in place: the request is not moved out of a `Result` into this future.
        let mut req = PolicyRequest::default();
        if let Err(e) = req.apply_raw(raw) {
            warn_limited!(
                peer = %self.peer, kind = e.kind_label(), error = %e,
                "Request cannot be evaluated; answering the fallback_action"
            );
            self.out.extend_from_slice(&shared.fallback_reply);
            shared.metrics.fallback(Fallback::Invalid(e.kind_label()));
            shared.metrics.request(
                metrics::INVALID,
                &shared.config.fallback_action,
                received.elapsed(),
            );
            return;
        }
        req.peer_address = self.peer.ip();
        let state = metrics::state_index(req.protocol_state);
        // Usually empty (no allocation): only policies with a module that needs DNS ask.
        // The policies matched here are carried in the scratch to the decision.
        let lookups = shared.engine.lookups_reusing(&req, &mut self.scratch);
        // The engine's futures are large: each is made in place, pinned where it is made,
        // and handed on by reference (moving one cost a copy of all of it per request).
        let decided = if lookups.is_empty() {
            let decide = pin!(shared.engine.decide_reusing(&req, &mut self.scratch));
            within_deadline(shared, &req, decide).await
        } else {
            // The lookups and the decision share the request's deadline; the lookups' own
            // timeout (dns_timeout_ms) is shorter, so a slow DNS gives the module's
            // temporary answer, not the fallback action.
            let scratch = &mut self.scratch;
            let decide = pin!(async {
                let answers = shared.dns.answer(lookups).await;
                shared.engine.decide_with(&req, &answers, scratch).await
            });
            within_deadline(shared, &req, decide).await
        };
        match decided {
            Some(mut decision) => {
                if decision.hold.is_some() {
                    // A DELAY quota holds the message: in the ledger before Postfix hears.
                    let left = shared
                        .config
                        .request_deadline
                        .saturating_sub(received.elapsed());
                    crate::hold_sink::record(&mut decision, left).await;
                }
                if decision.hold_lost {
                    warn_limited!(
                        peer = %self.peer,
                        "A message held by a DELAY quota at RCPT never reached END-OF-MESSAGE on this connection: \
                         Postfix holds it, Sluice cannot release it. Is the policy service in smtpd_end_of_data_restrictions?"
                    );
                }
                if let Some(e) = &decision.state_error {
                    warn_limited!(
                        peer = %self.peer, kind = e.kind_label(), error = %e,
                        "Counter backend failed; answering the fallback_action"
                    );
                }
                verdict_log::log_decision(&req, &decision);
                crate::history_sink::record(&req, &decision);
                crate::accounting_sink::record(&decision);
                decision.action.encode_into(&mut self.out);
                shared.metrics.decision(&decision);
                shared
                    .metrics
                    .request(state, &decision.action, received.elapsed());
            }
            None => {
                warn_limited!(
                    peer = %self.peer,
                    deadline_ms = shared.config.request_deadline.as_millis() as u64,
                    "Request deadline exceeded; answering the fallback_action"
                );
                self.out.extend_from_slice(&shared.fallback_reply);
                shared.metrics.fallback(Fallback::Deadline);
                shared
                    .metrics
                    .request(state, &shared.config.fallback_action, received.elapsed());
            }
        }
    }
}

/// Runs `decide` under the request deadline (`None` past it), in a `policy_request` span
/// that records the outcome when traces are on.
async fn within_deadline<F: Future<Output = Decision>>(
    shared: &Shared,
    req: &PolicyRequest<'_>,
    decide: Pin<&mut F>,
) -> Option<Decision> {
    let limit = shared.config.request_deadline;
    if !sluice_runtime::traces_enabled() {
        return with_deadline(limit, decide).await;
    }
    let span = request_span(req);
    let decided = with_deadline(limit, pin!(decide.instrument(span.clone()))).await;
    record_outcome(&span, decided.as_ref(), &shared.config.fallback_action);
    decided
}

/// The span of one policy request (only created while traces are on). It carries no
/// addresses or names of the client, sender or recipient.
fn request_span(req: &PolicyRequest<'_>) -> tracing::Span {
    tracing::info_span!(
        "policy_request",
        otel.kind = "server",
        protocol_state = req.protocol_state.as_str(),
        policies = tracing::field::Empty,
        verdicts = tracing::field::Empty,
        action = tracing::field::Empty,
        fallback = tracing::field::Empty,
    )
}

/// Records the matched policies (those that gave a verdict), the verdicts and the final
/// action on the request span.
fn record_outcome(
    span: &tracing::Span,
    decided: Option<&sluice_engine::engine::Decision>,
    fallback: &sluice_protocol::Action,
) {
    let Some(d) = decided else {
        span.record("action", fallback.keyword());
        span.record("fallback", "deadline");
        return;
    };
    span.record("action", d.action.keyword());
    if let Some(e) = &d.state_error {
        span.record("fallback", e.kind_label());
    }
    if !d.verdicts.is_empty() {
        let mut policies: Vec<&str> = d.verdicts.iter().map(|v| &*v.policy).collect();
        policies.dedup();
        span.record("policies", policies.join(",").as_str());
        let verdicts: Vec<String> = d
            .verdicts
            .iter()
            .map(|v| {
                format!(
                    "{}:{}:{}:{}",
                    v.module,
                    v.policy,
                    v.name,
                    v.action.keyword()
                )
            })
            .collect();
        span.record("verdicts", verdicts.join(",").as_str());
    }
}

/// Runs `fut` to completion within `limit`; `None` on overrun. A future that is ready at
/// once (the usual case: the in-process engine) does not touch the timer wheel. The future
/// is pinned by the caller: the engine's future is large (its matched policies and op
/// references live on its stack), and moving it in here cost a copy per request.
async fn with_deadline<F: Future>(limit: Duration, mut fut: Pin<&mut F>) -> Option<F::Output> {
    match poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(v) => Some(v),
        Poll::Pending => timeout(limit, fut).await.ok(),
    }
}

/// Writes the whole reply within `limit` (a `TimedOut` error on overrun). A reply the
/// socket takes at once does not touch the timer wheel.
async fn write_reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    reply: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let mut write = pin!(stream.write_all(reply));
    match poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await {
        Poll::Ready(r) => r,
        Poll::Pending => match timeout(limit, write).await {
            Ok(r) => r,
            Err(_) => Err(io::ErrorKind::TimedOut.into()),
        },
    }
}

/// Reads what is available into the spare capacity of `buf` (growing it by a chunk when
/// needed). `Ok(0)` is end of stream.
async fn read_more<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> io::Result<usize> {
    if buf.capacity() - buf.len() < READ_CHUNK / 2 {
        buf.reserve(READ_CHUNK);
    }
    stream.read_buf(buf).await
}
