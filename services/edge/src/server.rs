//! The accept loop and graceful shutdown.

use crate::config::EdgeConfig;
use crate::connection::{self, Shared};
use crate::listen::{Listener, Stream};
use crate::workers::Workers;
use sluice_engine::Engine;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Pause after a failed `accept` (out of file descriptors...) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Serves the policy protocol on `listener` until `shutdown` resolves.
///
/// At most [`EdgeConfig::max_connections`] connections are served at once: a permit is taken
/// before each `accept`, so further clients wait in the listen backlog. Each connection gets
/// its own task and carries many requests, one at a time.
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
    let limit = Arc::new(Semaphore::new(shared.config.max_connections.max(1)));
    loop {
        let permit = match limit.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return, // never closed
        };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "Accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let shared = Arc::clone(shared);
        let open = shared.metrics.connection();
        let span = tracing::debug_span!("connection", %peer);
        let Some(workers) = workers else {
            tracker.spawn(
                async move {
                    let _permit = permit;
                    let _open = open;
                    tokio::select! {
                        biased;
                        () = shared.hard_stop.wait() => {}
                        () = serve_stream(stream, peer, &shared) => {}
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
                let _permit = permit;
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
                    () = serve_stream(stream, peer, &shared) => {}
                }
            }
            .instrument(span),
        ));
    }
}

async fn serve_stream(stream: Stream, peer: crate::listen::Peer, shared: &Shared) {
    match stream {
        Stream::Tcp(s) => connection::serve(s, peer, shared).await,
        Stream::Unix(s) => connection::serve(s, peer, shared).await,
    }
}
