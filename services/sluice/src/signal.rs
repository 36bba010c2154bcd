//! Signals: SIGTERM and SIGINT stop a role after draining; SIGHUP never stops it (see
//! [`crate::hangup`]).

use tokio::signal::unix::{signal, Signal, SignalKind};

/// Takes over SIGTERM and SIGINT now (so one arriving during start-up is not fatal but
/// ends the wait), and returns a future that resolves on the first of them.
pub fn shutdown() -> impl std::future::Future<Output = ()> + Send + 'static {
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(error = %e, "Cannot listen for SIGTERM/SIGINT; only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    }
}

/// Takes over SIGHUP, whose default action ends the process: from this call on, hangups
/// are queued in the returned stream until [`crate::hangup::serve`] handles them. Call it
/// first thing in a long-running role, before anything that can take time.
pub fn hangups() -> anyhow::Result<Signal> {
    signal(SignalKind::hangup()).map_err(|e| anyhow::anyhow!("cannot handle SIGHUP: {e}"))
}
