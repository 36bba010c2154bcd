//! The background sender of a [`crate::RemoteState`] with leases: every
//! [`crate::RemoteConfig::flush_interval`] it gives back the unused units of expired leases
//! (`ReturnLeases`) and sends the message sessions to store and the ended ones to delete
//! (`SaveSessions`); a closing connection wakes it at once, so another edge finds the
//! sessions that connection carried as soon as possible. It also forgets sessions older than
//! [`crate::RemoteConfig::session_ttl`]. It ends when the `RemoteState` is dropped.
//!
//! Sending is best effort under the call deadline. Units that cannot be given back only
//! under-admit until they leave the window; sessions that cannot be stored are tried again
//! at the next tick (a bounded number of them).

use crate::lock;
use crate::state::{Inner, Outbox};
use sluice_proto::v1;
use sluice_runtime::metrics::names;
use std::sync::Weak;
use std::time::Instant;

/// Most sessions kept waiting for another try after a failed store.
const MAX_RETRIED_SAVES: usize = 10_000;

/// Most lease returns in one `ReturnLeases` call (about 100 bytes each on the wire), and
/// per flush (every [`crate::RemoteConfig::flush_interval`], 50 ms by default: at most
/// ~20,000 returns a second per edge).
const MAX_RETURNS_PER_CALL: usize = 1_024;

/// Runs until `inner` is gone.
pub(crate) async fn run(inner: Weak<Inner>) {
    let every = match inner.upgrade() {
        Some(i) => i.config.flush_interval,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_expiry = Instant::now();
    loop {
        // Holding the state while waiting is fine: the task is aborted when it is dropped.
        let Some(i) = inner.upgrade() else { return };
        tokio::select! {
            _ = tick.tick() => {}
            _ = i.wake.notified() => {}
        }
        flush(&i, false).await;
        record_held(&i);
        if last_expiry.elapsed() >= std::time::Duration::from_secs(1) {
            last_expiry = Instant::now();
            let gone = i.sessions.expire(last_expiry);
            if gone > 0 {
                tracing::debug!(sessions = gone, "Forgot message sessions past their TTL.");
            }
        }
    }
}

/// Sets the gauges of what this edge holds: leases and message sessions.
fn record_held(inner: &Inner) {
    let leases = inner.leases.as_ref().map_or(0, |l| l.len());
    metrics::gauge!(names::LEASES_HELD).set(leases as f64);
    metrics::gauge!(names::EDGE_SESSIONS).set(inner.sessions.len() as f64);
}

/// Sends what waits: expired leases' units (all leases' with `everything`), sessions to
/// store (all unstored ones with `everything`), ended sessions.
pub(crate) async fn flush(inner: &Inner, everything: bool) {
    let _sending = inner.sending.lock().await;
    let now = Instant::now();
    if let Some(leases) = inner.leases.as_ref() {
        let back = if everything {
            leases.drain()
        } else {
            leases.expired(now)
        };
        lock(&inner.outbox).returns.extend(back);
    }
    if everything {
        let all = inner.sessions.all_dirty();
        lock(&inner.outbox).saves.extend(all);
    }
    let Outbox {
        mut returns,
        saves,
        ended,
    } = std::mem::take(&mut *lock(&inner.outbox));
    // Paced: the leases of a whole period end together (at the end of every sub-bucket),
    // which on a long tail of keys is hundreds of thousands of returns at once — more than
    // one gRPC message may carry (4 MiB by default), and, sent at once, enough refunds to
    // hold up the quota service and Redis for seconds (requests got the fallback action).
    // So one call of at most `MAX_RETURNS_PER_CALL` per flush; the rest waits for the next
    // (units counted a little longer: under-admission only). A shutdown sends everything.
    // A backlog that keeps growing is sent faster (one call more per 256 calls waiting).
    let pace = MAX_RETURNS_PER_CALL * (1 + returns.len() / (256 * MAX_RETURNS_PER_CALL));
    if !everything && returns.len() > pace {
        let rest = returns.split_off(pace);
        let mut outbox = lock(&inner.outbox);
        let newer = std::mem::replace(&mut outbox.returns, rest);
        outbox.returns.extend(newer);
    }
    let timeout = inner.config.deadline;
    for piece in returns.chunks(MAX_RETURNS_PER_CALL) {
        let request = v1::ReturnLeasesRequest {
            leases: piece.iter().map(v1::LeaseReturn::from).collect(),
        };
        let n = piece.len();
        let result = inner
            .unary(
                timeout,
                |mut c| async move { c.return_leases(request).await },
            )
            .await;
        record(names::LEASE_RETURNS, result.is_ok());
        if let Err(e) = result {
            sluice_runtime::warn_limited!(leases = n, error = %e, "Could not give back unused lease units (they count until they leave the window).");
        }
    }
    if !saves.is_empty() || !ended.is_empty() {
        let request = v1::SaveSessionsRequest {
            sessions: saves.iter().map(v1::SessionData::from).collect(),
            ended: ended.clone(),
        };
        let result = inner
            .unary(
                timeout,
                |mut c| async move { c.save_sessions(request).await },
            )
            .await;
        record(names::SESSION_SAVES, result.is_ok());
        if let Err(e) = result {
            sluice_runtime::warn_limited!(sessions = saves.len(), ended = ended.len(), error = %e, "Could not store message sessions; trying again.");
            if !everything {
                let mut outbox = lock(&inner.outbox);
                if outbox.saves.len() + saves.len() <= MAX_RETRIED_SAVES {
                    outbox.saves.extend(saves);
                    outbox.ended.extend(ended);
                }
            }
        }
    }
}

fn record(name: &'static str, ok: bool) {
    metrics::counter!(name, "result" => if ok { "ok" } else { "error" }).increment(1);
}
