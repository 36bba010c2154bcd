//! Starts the admin service (web UI and REST API, [`sluice_admin`]) on its own listener
//! (`admin_listen`), over HTTPS when `admin_tls_cert_file` is set: next to the policy
//! listener in `sluice serve` (its Explain asks the running engine: live counter levels,
//! nothing charged; its Counters page reads and resets the in-process counters, or those
//! in Redis with `--redis`), or alone in `sluice admin` ([`crate::admin_role`]: counters
//! through the quota service). Changes are written to the policy database, so they reach
//! every engine reading it as imports do.

use std::future::Future;
use std::sync::Arc;

use sluice_admin::AdminOptions;
use sluice_engine::hold::SharedHeld;
use sluice_engine::{Engine, LiveCounters};
use sluice_store::Store;

use crate::config::Settings;

/// Serves the admin service on `listener` until `shutdown` resolves. `engine` is the
/// running engine of `sluice serve`, if any (for Explain with live counter levels).
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Store,
    engine: Option<Arc<Engine>>,
    counters: Option<Arc<dyn LiveCounters>>,
    held: Option<SharedHeld>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr().ok();
    let tls = settings.admin_tls.as_ref().map(|t| t.config.clone());
    if address.is_some_and(|a| !a.ip().is_loopback())
        && tls.is_none()
        && !settings.admin_secure_cookies
    {
        tracing::warn!(
            address = ?address,
            "The admin service listens beyond this host over plain HTTP: passwords and session cookies cross the network unencrypted. Keep admin_listen on 127.0.0.1, set admin_tls_cert_file and admin_tls_key_file, or put a TLS proxy in front and set admin_secure_cookies"
        );
    }
    let options = AdminOptions {
        secure_cookies: settings.admin_secure_cookies || tls.is_some(),
        engine,
        counters,
        held,
        dns: Some(Arc::new(sluice_dns::Answerer::new(
            settings.edge.dns.clone(),
        ))),
        buckets: settings.engine.buckets_per_period,
        ..AdminOptions::default()
    };
    tracing::info!(
        address = ?address,
        tls = tls.is_some(),
        "Admin service listening"
    );
    match tls {
        Some(config) => sluice_admin::serve_tls(listener, store, options, config, shutdown).await,
        None => sluice_admin::serve(listener, store, options, shutdown).await,
    }
}

/// [`run`] in a task of its own (serve); a failure is logged.
pub fn spawn(
    listener: tokio::net::TcpListener,
    store: Store,
    engine: Arc<Engine>,
    counters: Option<Arc<dyn LiveCounters>>,
    held: Option<SharedHeld>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let settings = settings.clone();
    tokio::spawn(async move {
        if let Err(e) = run(
            listener,
            store,
            Some(engine),
            counters,
            held,
            &settings,
            shutdown,
        )
        .await
        {
            tracing::error!(error = %e, "Admin service failed");
        }
    });
}
