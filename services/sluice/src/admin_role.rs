//! `sluice admin` (no subcommand): the admin service on its own, for a cluster. It serves
//! the web UI and REST API on `admin_listen` over the cluster's PostgreSQL policy database;
//! every change is written there, and the edges pick it up as they pick up imports (the
//! database's change notification, within a second). Like an edge it never changes the
//! schema: `sluice migrate` must have made it, and an older or newer schema is refused
//! (exit code 64). While the database cannot be reached at start it retries, with
//! `/healthz` up and `/readyz` not ready; Explain evaluates the stored policies with
//! counters at zero (the counters live behind the quota service). With `quota` (the edge's
//! quota-service settings, TLS and token included) its Counters page and `/api/counters`
//! read and reset the live counters through the quota service. With `alert_webhook` it
//! sends the alerts for every edge's refusals (stored in the history), while it holds the
//! alert lock: one sender per cluster ([`crate::alerts`]).

use crate::cli::LogArgs;
use crate::config::{self, Role, RoleArgs, Settings};
use crate::{database, logging, signal};
use anyhow::Context;
use sluice_runtime::http::BoxFuture;
use sluice_runtime::ReadyCheck;
use sluice_store::Store;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// Longest wait between attempts to reach the database at start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(5);

/// How long one readiness check may wait for the database.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the admin role until a shutdown signal.
pub async fn run(args: RoleArgs, log: &LogArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let given = args.clone();
    let settings = match config::resolve_or_exit(args, Role::Admin) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let hangups = crate::hangup::Hangups::take_over(Role::Admin, given, &settings)?;
    let telemetry = logging::init_role(log, &settings, Role::Admin)?;
    let result = serve(settings, hangups).await;
    logging::finish(telemetry).await;
    result
}

/// `/readyz` of the admin role: the database is open and answers.
struct AdminReady(OnceLock<Store>);

impl ReadyCheck for AdminReady {
    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            let Some(store) = self.0.get() else {
                return Err("policy database not reached yet".into());
            };
            match tokio::time::timeout(CHECK_TIMEOUT, store.version()).await {
                Ok(Ok(version)) => Ok(format!("ready: policy version {version}\n")),
                Ok(Err(e)) => Err(format!("policy database unreachable: {e}")),
                Err(_) => Err("policy database does not answer".into()),
            }
        })
    }
}

async fn serve(settings: Settings, hangups: crate::hangup::Hangups) -> anyhow::Result<ExitCode> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop = signal::shutdown();
    tokio::spawn(async move {
        stop.await;
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let address = settings
        .admin_listen
        .context("admin_listen is required for `sluice admin`")?;
    let listener = tokio::net::TcpListener::bind(address).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {address} for the admin service: {e}: stop what holds it, or choose another address (--admin-listen)"
        )
    })?;
    let metrics = match settings.metrics {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {a} for metrics: {e}: stop what holds it, or choose another address (--metrics-listen, metrics_listen = \"off\" disables it)"
            )
        })?),
        None => None,
    };
    crate::descriptors::raise_limit(crate::descriptors::RESERVE);
    let ready = Arc::new(AdminReady(OnceLock::new()));
    if let Some(metrics) = metrics {
        tokio::spawn(crate::metrics_listener::serve_basic(metrics, ready.clone()));
    }
    tracing::info!(
        admin = %address,
        database = %config::redact(&settings.database),
        metrics = %settings.metrics.map_or("off".into(), |a| a.to_string()),
        "Starting the admin service: opening the policy database"
    );
    let store = tokio::select! {
        store = open_at_start(&settings) => store?,
        () = stopped() => {
            tracing::info!("Stopped before the policy database was reached");
            return Ok(ExitCode::SUCCESS);
        }
    };
    let _ = ready.0.set(store.clone());
    hangups.spawn(Some(store.clone()));
    crate::history::start_alerts(&settings.history, &store, stopped());
    let quota = quota_service(&settings).await?;
    let counters = quota
        .clone()
        .map(|q| q as Arc<dyn sluice_engine::LiveCounters>);
    let held = quota.map(|q| q as sluice_engine::hold::SharedHeld);
    crate::admin_service::run(
        listener,
        store.clone(),
        None,
        counters,
        held,
        &settings,
        stopped(),
    )
    .await
    .context("the admin service failed")?;
    store.close().await;
    tracing::info!("Stopped");
    Ok(ExitCode::SUCCESS)
}

/// The quota service, when `quota` is set (the edge's endpoint, TLS and token settings): the
/// live counters and DELAY quotas' held messages are read and acted on there. Without it
/// the Counters page and `/api/counters` answer 503, and there is no held message.
async fn quota_service(
    settings: &Settings,
) -> anyhow::Result<Option<Arc<sluice_remote::RemoteState>>> {
    if settings.quota.is_empty() {
        return Ok(None);
    }
    let security = crate::grpc_security::client_security(&settings.quota_security, &settings.quota)
        .map_err(|e| anyhow::anyhow!("quota-service TLS/token settings: {}", e.join("; ")))?;
    let remote = sluice_remote::RemoteConfig {
        security,
        // Nothing is counted here: no local answers, no leases.
        over_limit_cache: false,
        lease_multiple: 0,
        ..sluice_remote::RemoteConfig::default()
    };
    let state = sluice_remote::RemoteState::connect(settings.quota.clone(), remote)
        .await
        .context("invalid quota service settings")?;
    tracing::info!(
        quota = ?settings.quota,
        "Live counters and held messages are read from the quota service"
    );
    Ok(Some(Arc::new(state)))
}

/// Opens the policy database, checking its schema (never changing it), retrying while it
/// cannot be reached; a schema this build was not made for is fatal (exit code 64).
async fn open_at_start(settings: &Settings) -> anyhow::Result<Store> {
    let shown = config::redact(&settings.database);
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let store = database::open(&settings.database, database::Schema::Check).await?;
            store.version().await?;
            anyhow::Ok(store)
        };
        match attempt.await {
            Ok(store) => return Ok(store),
            Err(e) if database::is_schema_error(&e) => {
                return Err(e).with_context(|| format!("cannot use the policy database {shown}"))
            }
            Err(e) => {
                tracing::warn!(
                    database = %shown,
                    "Cannot reach the policy database yet, retrying: {}",
                    crate::error_text(&e)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_START_BACKOFF);
            }
        }
    }
}
