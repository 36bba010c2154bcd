//! [`serve`]: the tonic server on a bound listener, with health and graceful shutdown.
//!
//! Shutdown order: health flips to NOT_SERVING first (so balancers and edges' probers stop
//! choosing this node), the listener closes (new connections are refused — edges retry
//! those on another node), in-flight RPCs finish (bounded by
//! [`QuotaConfig::drain_timeout`]), then `serve` returns.

use crate::config::QuotaConfig;
use crate::error::ServeError;
use crate::health;
use crate::service::QuotaService;
use sluice_engine::SharedState;
use sluice_proto::v1::quota_server::QuotaServer;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::server::TcpIncoming;
use tonic::transport::Server;
use tonic_health::server::HealthReporter;

/// Runs the quota service on `listener` until `shutdown` resolves, then drains.
///
/// Serves `sluice.quota.v1.Quota` (batches run on `state`) and `grpc.health.v1.Health`
/// (SERVING while `state` answers probes, see [`crate::health`]), with the TLS and client
/// authentication of [`QuotaConfig::security`] (see [`crate::security`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<dyn SharedState>,
    config: QuotaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    serve_with_live(listener, state, None, None, config, shutdown).await
}

/// [`serve`], also answering the live-counter calls (`CounterLevels`, `ListCounters`,
/// `ResetCounter`) from `live`, the same counters as `state`, and the held-message calls
/// (`Hold`, `ListHeld`, `SyncHeld`, `ActHeld`) from `held` (without them: `UNIMPLEMENTED`).
pub async fn serve_with_live(
    listener: TcpListener,
    state: Arc<dyn SharedState>,
    live: Option<Arc<dyn sluice_engine::LiveCounters>>,
    held: Option<sluice_engine::hold::SharedHeld>,
    config: QuotaConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let local = listener.local_addr().ok();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let first = health::probe(state.as_ref(), config.probe_timeout).await;
    health::set_status(&reporter, first).await;
    let (stop_probes, stopped) = watch::channel(false);
    let prober = tokio::spawn(probe_loop(
        Arc::clone(&state),
        reporter.clone(),
        config.clone(),
        first,
        stopped,
    ));

    let quota = QuotaServer::with_interceptor(
        QuotaService::new(state, config.apply_timeout)
            .with_live(live)
            .with_held(held),
        config.security.interceptor(),
    );
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = Server::builder();
    if let Some(tls) = &config.security.tls {
        builder = builder.tls_config(tls.tonic_config())?;
    }
    let server = builder
        .add_service(InterceptedService::new(
            health_service,
            config.security.interceptor(),
        ))
        .add_service(quota)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = drain_rx.await;
        });
    tracing::info!(
        addr = ?local,
        tls = config.security.tls.is_some(),
        client_certificates = config.security.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some()),
        token = config.security.token.is_some(),
        "Quota service listening."
    );

    tokio::pin!(server);
    let early = tokio::select! {
        r = &mut server => Some(r),
        () = shutdown => None,
    };
    let result = match early {
        Some(r) => r.map_err(ServeError::from),
        None => {
            tracing::info!("Quota service shutting down: health NOT_SERVING, draining.");
            let _ = stop_probes.send(true);
            health::set_status(&reporter, false).await;
            let _ = drain_tx.send(());
            match tokio::time::timeout(config.drain_timeout, &mut server).await {
                Ok(r) => r.map_err(ServeError::from),
                Err(_) => {
                    tracing::warn!(
                        timeout = ?config.drain_timeout,
                        "Drain timed out; dropping the remaining connections."
                    );
                    Ok(())
                }
            }
        }
    };
    let _ = stop_probes.send(true);
    prober.abort();
    result
}

/// Probes `state` every [`QuotaConfig::probe_interval`] and reports changes.
async fn probe_loop(
    state: Arc<dyn SharedState>,
    reporter: HealthReporter,
    config: QuotaConfig,
    mut serving: bool,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(config.probe_interval) => {}
            _ = stopped.changed() => return,
        }
        let ok = health::probe(state.as_ref(), config.probe_timeout).await;
        if *stopped.borrow() {
            return;
        }
        if ok != serving {
            if ok {
                tracing::info!("Counter state answers probes again: SERVING.");
            } else {
                tracing::warn!("Counter state fails probes: NOT_SERVING.");
            }
            health::set_status(&reporter, ok).await;
            serving = ok;
        }
    }
}
