//! Cross-request batching: the `Apply` calls waiting on one HTTP/2 connection go out
//! together in one `ApplyMany`.
//!
//! A [`Batcher`] owns one connection's client and a small task that sends calls as they come:
//! - **No added delay.** A call is sent at once when fewer than
//!   [`BatchLimits::max_in_flight`] RPCs are in flight on the connection; calls arriving
//!   while that many are in flight wait for the next free slot and go out together (at most
//!   [`BatchLimits::max_batch`] per RPC). Calls made in the same scheduler tick (several
//!   connections' requests evaluated together) are picked up together too.
//! - **Never stuck behind a stalled node.** A call waits for a free slot at most a tenth of
//!   its budget ([`slot_wait_until`]); if every slot is still held then (RPCs waiting on a
//!   stalled Redis node until their deadline), it goes out at once in an extra RPC. So
//!   requests whose counters live on healthy nodes are not queued behind calls that cannot
//!   finish, and still reach the service with nearly all their budget.
//! - **Own deadlines.** Each caller waits for its answer under its own deadline (the
//!   caller's timeout); the RPC carries the earliest deadline of its calls as its
//!   `grpc-timeout`, the budget the quota service answers every batch of it within. A call whose caller
//!   already gave up before it was sent is dropped — it was never sent, so nothing was
//!   charged. A call that was sent is never resent: the service runs every batch of an
//!   `ApplyMany` to completion, whatever happens to the caller.
//! - **Own answers.** Each batch of an `ApplyMany` is answered on its own (a Redis failure
//!   on one batch fails that batch only); a failure of the RPC as a whole is every call's
//!   failure, with the same status (so "never sent" is still recognised for the retry on
//!   another endpoint).
//! - **Compatible.** A lone call goes out as a plain `Apply`. A service that does not know
//!   `ApplyMany` (answers `UNIMPLEMENTED`; it ran nothing) gets every call as `Apply` from
//!   then on (the calls of that one RPC fail and get the fallback action).

use sluice_proto::v1::quota_client::QuotaClient;
use sluice_proto::v1::{apply_result, ApplyManyRequest, ApplyReply, ApplyRequest};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// The client of one connection: every call carries the bearer token, if one is configured
/// (see [`crate::security`]).
pub(crate) type QuotaRpc = QuotaClient<InterceptedService<Channel, sluice_proto::auth::AddToken>>;

/// How calls are grouped on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most calls in one `ApplyMany` (default 64).
    pub max_batch: usize,
    /// Most RPCs in flight on one connection at a time (default 2); further calls wait and
    /// are sent together as soon as one returns.
    pub max_in_flight: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_batch: 64,
            max_in_flight: 2,
        }
    }
}

/// One waiting call.
struct Call {
    request: ApplyRequest,
    deadline: Instant,
    /// When the call was handed to the batcher.
    queued: Instant,
    reply: oneshot::Sender<Result<ApplyReply, Status>>,
}

/// The most of its budget a call waits for a free RPC slot: a tenth.
const SLOT_WAIT_SHARE: u32 = 10;

/// Until when `call` waits for a free RPC slot before it goes out in an extra RPC: a tenth
/// of the budget it had when it was queued.
fn slot_wait_until(call: &Call) -> Instant {
    call.queued + call.deadline.saturating_duration_since(call.queued) / SLOT_WAIT_SHARE
}

/// Sends the calls of one connection, batching those that wait at the same time.
pub(crate) struct Batcher {
    calls: mpsc::UnboundedSender<Call>,
    client: QuotaRpc,
}

impl Batcher {
    /// A batcher over `client`; its task runs on the calling tokio runtime and ends when the
    /// batcher is dropped.
    pub fn spawn(client: QuotaRpc, limits: BatchLimits) -> Self {
        let (calls, queue) = mpsc::unbounded_channel();
        tokio::spawn(drive(queue, client.clone(), limits));
        Batcher { calls, client }
    }

    /// The connection's client, for calls that must go out on their own (traced calls).
    pub fn client(&self) -> QuotaRpc {
        self.client.clone()
    }

    /// Sends `request` (with the next batch) and waits for its answer. The caller bounds
    /// the wait with its own deadline; `deadline` travels with the RPC.
    pub async fn call(
        &self,
        request: ApplyRequest,
        deadline: Instant,
    ) -> Result<ApplyReply, Status> {
        let (reply, answer) = oneshot::channel();
        self.calls
            .send(Call {
                request,
                deadline,
                queued: Instant::now(),
                reply,
            })
            .map_err(|_| Status::unavailable("quota client task stopped"))?;
        answer
            .await
            .unwrap_or_else(|_| Err(Status::unavailable("quota client task stopped")))
    }
}

/// The batching loop: waits for a call, then for an RPC slot (at most until
/// [`slot_wait_until`]), then sends everything queued.
async fn drive(mut queue: mpsc::UnboundedReceiver<Call>, client: QuotaRpc, limits: BatchLimits) {
    let slots = Arc::new(Semaphore::new(limits.max_in_flight.max(1)));
    let plain_only = Arc::new(AtomicBool::new(false));
    let max_batch = limits.max_batch.max(1);
    while let Some(first) = queue.recv().await {
        let wait = slot_wait_until(&first);
        let slot = match tokio::time::timeout_at(wait, Arc::clone(&slots).acquire_owned()).await {
            Ok(Ok(slot)) => Some(slot),
            Ok(Err(_)) => return,
            // Every slot is held by an RPC that is taking long (a stalled Redis node): this
            // one goes out beside them.
            Err(_) => None,
        };
        let mut calls = Vec::with_capacity(8);
        calls.push(first);
        while calls.len() < max_batch {
            match queue.try_recv() {
                Ok(c) => calls.push(c),
                Err(_) => break,
            }
        }
        // Callers that gave up before their call was sent: drop it, nothing was charged.
        calls.retain(|c| !c.reply.is_closed());
        if calls.is_empty() {
            continue;
        }
        tokio::spawn(send(client.clone(), calls, slot, Arc::clone(&plain_only)));
    }
}

/// Sends one group of calls and hands every caller its answer.
async fn send(
    mut client: QuotaRpc,
    mut calls: Vec<Call>,
    _slot: Option<OwnedSemaphorePermit>,
    plain_only: Arc<AtomicBool>,
) {
    if calls.len() == 1 || plain_only.load(Ordering::Relaxed) {
        send_each(client, calls).await;
        return;
    }
    let deadline = calls.iter().map(|c| c.deadline).max().expect("not empty");
    // The service answers every batch by the budget it is sent: the earliest caller's, so
    // no batch is still being worked on after its caller gave up.
    let earliest = calls.iter().map(|c| c.deadline).min().expect("not empty");
    let batches: Vec<ApplyRequest> = calls
        .iter_mut()
        .map(|c| std::mem::take(&mut c.request))
        .collect();
    let mut request = tonic::Request::new(ApplyManyRequest { batches });
    request.set_timeout(earliest.saturating_duration_since(Instant::now()));
    let result = match tokio::time::timeout_at(deadline, client.apply_many(request)).await {
        Ok(r) => r,
        Err(_) => Err(Status::deadline_exceeded("quota call timed out")),
    };
    match result {
        Ok(reply) => {
            let results = reply.into_inner().results;
            if results.len() != calls.len() {
                let status = Status::internal("ApplyMany reply does not match its request");
                for c in calls {
                    let _ = c.reply.send(Err(status.clone()));
                }
                return;
            }
            for (c, r) in calls.into_iter().zip(results) {
                let answer = match r.result {
                    Some(apply_result::Result::Reply(reply)) => Ok(reply),
                    Some(apply_result::Result::Error(e)) => {
                        Err(Status::new(Code::from(e.code), e.message))
                    }
                    None => Err(Status::internal("ApplyMany result without a result")),
                };
                let _ = c.reply.send(answer);
            }
        }
        Err(status) if status.code() == Code::Unimplemented && is_answer(&status) => {
            // An older service: it ran nothing. Use `Apply` from now on; the calls of this
            // one RPC fail (their requests went into it) and get the fallback action.
            tracing::info!("Quota service does not support ApplyMany; sending calls one by one.");
            plain_only.store(true, Ordering::Relaxed);
            for c in calls {
                let _ = c.reply.send(Err(status.clone()));
            }
        }
        Err(status) => {
            for c in calls {
                let _ = c.reply.send(Err(status.clone()));
            }
        }
    }
}

/// Sends each call as its own `Apply`, concurrently (on this one task).
async fn send_each(client: QuotaRpc, calls: Vec<Call>) {
    let runs = calls.into_iter().map(|c| {
        let mut client = client.clone();
        async move {
            let mut request = tonic::Request::new(c.request);
            request.set_timeout(c.deadline.saturating_duration_since(Instant::now()));
            let result = match tokio::time::timeout_at(c.deadline, client.apply(request)).await {
                Ok(r) => r.map(tonic::Response::into_inner),
                Err(_) => Err(Status::deadline_exceeded("quota call timed out")),
            };
            let _ = c.reply.send(result);
        }
    });
    futures_util::future::join_all(runs).await;
}

/// Whether the status was answered by the service (not a local or transport failure).
fn is_answer(status: &Status) -> bool {
    std::error::Error::source(status).is_none()
}
