//! The background task of a [`crate::RemoteState`]: re-resolves DNS names every
//! [`crate::RemoteConfig::resolve_interval`] and probes every backend's `grpc.health.v1`
//! (service `sluice.quota.v1.Quota`) every [`crate::RemoteConfig::probe_interval`]. A
//! backend answering SERVING is marked up; one that fails to answer, or answers anything
//! else, is marked down (the probe carries the bearer token, if any, like every call: a
//! refused token marks the backend down). The task ends when the `RemoteState` is dropped.

use crate::pool::{Backend, Pool};
use crate::state::Inner;
use std::sync::{Arc, Weak};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Runs until `inner` is gone.
pub(crate) async fn run(inner: Weak<Inner>) {
    let (probe_every, resolve_every) = match inner.upgrade() {
        Some(i) => (i.config.probe_interval, i.config.resolve_interval),
        None => return,
    };
    let mut probe = tokio::time::interval(probe_every);
    let mut resolve = tokio::time::interval(resolve_every);
    probe.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resolve.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Both intervals tick at once first; the pool was just resolved and starts up.
    probe.tick().await;
    resolve.tick().await;
    loop {
        tokio::select! {
            _ = probe.tick() => {
                let Some(i) = inner.upgrade() else { return };
                probe_all(&i.pool, i.config.connect_timeout + i.config.deadline).await;
            }
            _ = resolve.tick() => {
                let Some(i) = inner.upgrade() else { return };
                if i.pool.specs.iter().any(|s| s.fixed().is_none()) {
                    i.pool.refresh().await;
                }
            }
        }
    }
}

/// Probes every backend concurrently.
pub(crate) async fn probe_all(pool: &Pool, timeout: std::time::Duration) {
    let backends = pool.backends();
    let probes = backends.iter().map(|b| probe_one(Arc::clone(b), timeout));
    let handles: Vec<_> = probes.map(tokio::spawn).collect();
    for h in handles {
        let _ = h.await;
    }
}

async fn probe_one(backend: Arc<Backend>, timeout: std::time::Duration) {
    let mut client = HealthClient::with_interceptor(backend.channel.clone(), backend.token.clone());
    let request = HealthCheckRequest {
        service: sluice_proto::QUOTA_SERVICE_NAME.to_string(),
    };
    match tokio::time::timeout(timeout, client.check(request)).await {
        Ok(Ok(r)) if r.get_ref().status == ServingStatus::Serving as i32 => backend.mark_up(),
        Ok(Ok(_)) => backend.mark_down("health check: not serving"),
        Ok(Err(s)) => {
            crate::error::log_if_credentials_refused(&s);
            backend.mark_down(&format!("health check failed: {}", s.message()))
        }
        Err(_) => backend.mark_down("health check timed out"),
    }
}
