//! Starts the admin service (web UI and REST API, [`sluice_admin`]) of `sluice serve` on its
//! own listener (`admin_listen`), on the policy database the server reads, so changes made
//! there reach the engine as imports do; its Explain asks the running engine (live counter
//! levels, nothing charged).

use std::future::Future;
use std::sync::Arc;

use sluice_admin::AdminOptions;
use sluice_engine::Engine;
use sluice_store::Store;

use crate::config::Settings;

/// Serves the admin service on `listener` until `shutdown` resolves.
pub fn spawn(
    listener: tokio::net::TcpListener,
    store: Store,
    engine: Arc<Engine>,
    settings: &Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let address = listener.local_addr().ok();
    if address.is_some_and(|a| !a.ip().is_loopback()) && !settings.admin_secure_cookies {
        tracing::warn!(
            address = ?address,
            "The admin service listens beyond this host over plain HTTP: passwords and session cookies cross the network unencrypted. Keep admin_listen on 127.0.0.1, or put a TLS proxy in front and set admin_secure_cookies"
        );
    }
    let options = AdminOptions {
        secure_cookies: settings.admin_secure_cookies,
        engine: Some(engine),
        ..AdminOptions::default()
    };
    tokio::spawn(async move {
        tracing::info!(address = ?address, "Admin service listening");
        if let Err(e) = sluice_admin::serve(listener, store, options, shutdown).await {
            tracing::error!(error = %e, "Admin service failed");
        }
    });
}
