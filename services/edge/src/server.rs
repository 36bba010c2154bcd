//! The accept loop and graceful shutdown.

use crate::admission::{Admission, Admit, Slot, Ticket};
use crate::config::EdgeConfig;
use crate::connection::{self, Shared};
use crate::listen::{Listener, Peer, Stream};
use crate::workers::Workers;
use sluice_engine::Engine;
use sluice_runtime::warn_limited;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// First pause after a failed `accept` (out of file descriptors...); doubled on each
/// failure in a row, up to [`ACCEPT_BACKOFF_MAX`].
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after a failed `accept`.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While every connection is busy, how often to look again for one turned idle.
const FULL_RECHECK: Duration = Duration::from_millis(20);

/// Serves the policy protocol on `listener` until `shutdown` resolves.
///
/// Connections are admitted within [`EdgeConfig::max_connections`] and
/// [`EdgeConfig::max_connections_per_client`], closing the oldest idle connection to make
/// room (see the `admission` module); when every connection is busy, further clients wait
/// in the listen backlog. When `accept` fails for want of file descriptors, the oldest idle
/// connection is closed too, and the loop backs off (10 ms doubling to 1 s) instead of
/// spinning. Each connection gets its own task and carries many requests, one at a time.
///
/// When `shutdown` resolves the listener is closed, idle connections are closed, and
/// requests in flight are finished and answered within [`EdgeConfig::shutdown_grace`]; then
/// the remaining connections are dropped and `run` returns. A Unix socket file is left in
/// place (the next [`Listener::bind`] removes it as stale).
pub async fn run(
    listener: Listener,
    engine: Arc<Engine>,
    config: EdgeConfig,
    shutdown: impl Future<Output = ()>,
) {
    let grace = config.shutdown_grace;
    let listen = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    tracing::info!(%listen, max_connections = config.max_connections, "Policy server listening");

    let shared = Arc::new(Shared::new(engine, config));
    let tracker = TaskTracker::new();

    let workers = match shared.config.worker_threads {
        0 => None,
        n => match Workers::start(n) {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "Cannot start connection worker threads; serving on the main runtime");
                None
            }
        },
    };
    tokio::select! {
        () = accept_loop(&listener, &shared, &tracker, workers.as_ref()) => {}
        () = shutdown => {}
    }
    drop(listener);
    tracing::info!(
        connections = tracker.len(),
        "Shutting down: not accepting, finishing requests in flight"
    );
    shared.soft_stop.trigger();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        tracing::warn!(
            connections = tracker.len(),
            grace_ms = grace.as_millis() as u64,
            "Shutdown grace period over; dropping remaining connections"
        );
        shared.hard_stop.trigger();
        tracker.wait().await;
    }
    if let Some(w) = workers {
        w.stop();
    }
    tracing::info!(%listen, "Policy server stopped");
}

async fn accept_loop(
    listener: &Listener,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    workers: Option<&Workers>,
) {
    let admission = Admission::new(
        shared.config.max_connections,
        shared.config.max_connections_per_client,
    );
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => {
                backoff = ACCEPT_BACKOFF_MIN;
                c
            }
            Err(e) => {
                // Out of descriptors: an idle connection gives one back.
                let evicted = out_of_descriptors(&e) && admission.evict_oldest_idle();
                warn_limited!(
                    error = %e, evicted_idle = evicted, backoff_ms = backoff.as_millis() as u64,
                    "Accept failed; backing off"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let Some(ticket) = admit(&admission, peer, &shared.config).await else {
            continue;
        };
        let shared = Arc::clone(shared);
        let open = shared.metrics.connection();
        let span = tracing::debug_span!("connection", %peer);
        let Some(workers) = workers else {
            tracker.spawn(
                async move {
                    let _open = open;
                    tokio::select! {
                        biased;
                        () = shared.hard_stop.wait() => {}
                        () = serve_stream(stream, peer, &shared, ticket.slot()) => {}
                    }
                }
                .instrument(span),
            );
            continue;
        };
        let detached = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "Cannot hand the connection to a worker");
                continue;
            }
        };
        workers.spawn(tracker.track_future(
            async move {
                let _open = open;
                let stream = match detached.into_tokio() {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "Cannot register the connection on its worker");
                        return;
                    }
                };
                tokio::select! {
                    biased;
                    () = shared.hard_stop.wait() => {}
                    () = serve_stream(stream, peer, &shared, ticket.slot()) => {}
                }
            }
            .instrument(span),
        ));
    }
}

/// Admits the connection from `peer`: `None` when it is to be closed at once (its client
/// is at its cap with every connection busy). While every connection is busy, waits until
/// one closes (new clients wait in the backlog meanwhile).
async fn admit(admission: &Admission, peer: Peer, config: &EdgeConfig) -> Option<Ticket> {
    loop {
        match admission.admit(peer.ip()) {
            Admit::Admitted(ticket) => return Some(ticket),
            Admit::ClientFull => {
                warn_limited!(
                    %peer, max_connections_per_client = config.max_connections_per_client,
                    "Client at its connection cap with every connection busy; closing the new connection"
                );
                return None;
            }
            Admit::Full => {
                warn_limited!(
                    max_connections = config.max_connections,
                    "Every connection is busy; new connections wait"
                );
                // A connection closing wakes this at once; one turning idle (which may then
                // be evicted) is seen at the next look.
                let _ = tokio::time::timeout(FULL_RECHECK, admission.room()).await;
            }
        }
    }
}

/// Whether `accept` failed for want of file descriptors (process or system).
fn out_of_descriptors(e: &io::Error) -> bool {
    // EMFILE (24) and ENFILE (23) on Linux and the BSDs.
    matches!(e.raw_os_error(), Some(23 | 24))
}

async fn serve_stream(stream: Stream, peer: Peer, shared: &Shared, slot: &Slot) {
    match stream {
        Stream::Tcp(s) => connection::serve(s, peer, shared, slot).await,
        Stream::Unix(s) => connection::serve(s, peer, shared, slot).await,
    }
}
