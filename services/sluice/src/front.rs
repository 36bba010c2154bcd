//! The front end shared by `serve` and `edge`: policies from the database (compiled in
//! memory, reloaded on change), the Postfix listeners, the admin listener, graceful
//! shutdown on SIGTERM/SIGINT, and SIGHUP handled without stopping.

use crate::config::{Role, Settings};
use crate::ready::{Counters, FrontReady};
use crate::{database, descriptors, metrics_listener, reload, signal, startup};
use anyhow::Context;
use sluice_edge::Listener;
use sluice_engine::{Engine, State};
use sluice_store::Store;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Longest wait between attempts to reach the database at start.
const MAX_START_BACKOFF: Duration = Duration::from_secs(5);

/// Runs the front end on `state` until a shutdown signal. `counters` says how `/readyz`
/// checks the counter backend.
pub async fn run(
    settings: Settings,
    state: Arc<dyn State>,
    counters: Counters,
    role: Role,
    hangups: crate::hangup::Hangups,
) -> anyhow::Result<ExitCode> {
    // A bad or busy address fails the start at once; but Postfix's listeners are only
    // opened for good once policies are loaded, so that while the database is unreachable
    // at start Postfix gets "connection refused" and its default action at once, instead of
    // a connection that is accepted and never answered.
    let stop = signal::shutdown();
    check_listeners(&settings).await?;
    descriptors::raise_limit(descriptors::budget(&settings));
    let admin = match settings.metrics {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {a} for metrics: {e}: stop what holds it (another sluice?), or choose another address (--metrics-listen, metrics_listen = \"off\" disables it)"
            )
        })?),
        None => None,
    };
    let admin_service = match settings.admin_listen {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {a} for the admin service: {e}: stop what holds it, or choose another address (--admin-listen, admin_listen = \"off\" disables it)"
            )
        })?),
        None => None,
    };
    tracing::info!(
        role = %role,
        database = %startup::where_policies_are(&settings.database),
        listen = %settings.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
        metrics = %settings.metrics.map_or("off".into(), |a| a.to_string()),
        counters = %startup::where_counters_are(&settings, role),
        "Starting: loading policies"
    );

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    // Serving /healthz, /metrics and a 503 /readyz while the policies load.
    let live_counters = counters.live();
    let in_process = matches!(counters, Counters::Embedded(_));
    // An edge forgets what it holds for a counter the admin service reset.
    let remote = match &counters {
        Counters::Remote(remote) => Some(remote.clone()),
        _ => None,
    };
    let redis = match &counters {
        Counters::Redis(redis) => Some(redis.clone()),
        _ => None,
    };
    let ready = FrontReady::new(counters);
    if let Some(admin) = admin {
        tokio::spawn(metrics_listener::serve(
            admin,
            ready.clone(),
            settings.http_explain,
            settings.edge.dns.clone(),
            stopped(),
        ));
    }
    metrics::counter!(sluice_runtime::metrics::names::POLICY_RELOAD_FAILURES).increment(0);
    startup::export_request_metrics();

    let (store, version, set) = load_at_start(&settings, role).await?;
    reload::record_loaded(&set);
    tracing::info!(
        role = %role,
        database = %startup::where_policies_are(&settings.database),
        version,
        policies = set.enabled_policies(),
        monitor = settings.engine.monitor_all,
        "Policies loaded"
    );
    if set.enabled_policies() == 0 {
        tracing::warn!(
            database = %startup::where_policies_are(&settings.database),
            "No enabled policies: every request gets DUNNO. Import some: sluice policy import FILE --database {}",
            crate::config::redact(&settings.database)
        );
    }
    let engine = Arc::new(Engine::new(set, state.clone(), settings.engine.clone()));
    let ledger = match (&redis, &remote) {
        (Some(redis), _) => LedgerPlace::Here(crate::held::Keeper::redis(redis.clone())),
        (None, Some(remote)) => LedgerPlace::QuotaService(remote.clone()),
        (None, None) if in_process && store.keeps_counters() => {
            LedgerPlace::Here(crate::held::Keeper::database(store.clone()))
        }
        (None, None) => LedgerPlace::Nowhere,
    };
    let held = held_ledger(role, ledger, &state).await?;
    if let Some(held) = &held {
        tokio::spawn(follow_waiting_queues(held.clone(), engine.clone()));
    }
    if let Some(listener) = admin_service {
        let engine = engine.clone();
        crate::admin_service::spawn(
            listener,
            store.clone(),
            engine,
            live_counters,
            held,
            &settings,
            stopped(),
        );
    }
    ready.loaded(engine.clone(), store.clone());
    tokio::spawn(reload::watch(
        store.clone(),
        engine.clone(),
        settings.reload_poll,
        version,
    ));
    if let Some(remote) = remote {
        tokio::spawn(crate::counter_resets::follow(
            store.clone(),
            remote,
            settings.reload_poll,
            settings.quota_deadline,
        ));
    }
    tokio::spawn(record_database_checks(store.clone()));
    hangups.spawn(Some(store.clone()));
    let history = crate::history::start(&settings.history, &store, &stopped);
    let accounting = crate::accounting::start(&settings.history, &store);
    let listeners = bind_listeners(&settings).await?;
    let mut servers = tokio::task::JoinSet::new();
    for l in listeners {
        servers.spawn(sluice_edge::run(
            l,
            engine.clone(),
            settings.edge.clone(),
            stopped(),
        ));
    }
    stop.await;
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    // The refusals of the last requests are written before the store closes.
    if let Some(history) = history {
        history.finish().await;
    }
    if let Some(accounting) = accounting {
        accounting.finish().await;
    }
    // Leases given back and message sessions stored, so other edges carry on exactly.
    state.shutdown().await;
    store.close().await;
    tracing::info!("Stopped");
    Ok(ExitCode::SUCCESS)
}

/// Where this server's ledger of held messages is.
enum LedgerPlace {
    /// Kept by this process: `sluice serve` on SQLite with in-process counters, or with
    /// `--redis` (shared through Redis).
    Here(crate::held::Keeper),
    /// Kept by the quota services (an edge).
    QuotaService(Arc<sluice_remote::RemoteState>),
    /// Nowhere (`sluice serve` with in-process counters on PostgreSQL).
    Nowhere,
}

/// The ledger of messages DELAY quotas hold, installed for the request path: kept with the
/// in-process counters in a SQLite policy database or in Redis, or (an edge) the quota
/// services'. `None` where there is none (DELAY quotas then defer).
async fn held_ledger(
    role: Role,
    ledger: LedgerPlace,
    state: &Arc<dyn State>,
) -> anyhow::Result<Option<sluice_engine::hold::SharedHeld>> {
    let held: sluice_engine::hold::SharedHeld = match ledger {
        LedgerPlace::Nowhere => {
            tracing::debug!(%role, "No ledger of held messages here: DELAY quotas defer instead of holding");
            return Ok(None);
        }
        LedgerPlace::Here(keeper) => {
            let clock = Arc::new(sluice_engine::SystemClock);
            crate::held::HeldService::start(keeper, state.clone(), clock).await?
        }
        LedgerPlace::QuotaService(remote) => remote,
    };
    sluice_edge::hold_sink::install(held.clone());
    Ok(Some(held))
}

/// Keeps the engine's [`sluice_engine::hold::WaitingQueues`] up to date from the ledger
/// (new mail for a queue where held mail waits is held behind it). When the ledger cannot
/// be read the set is emptied: new mail is then admitted as the quota allows, as if nothing
/// waited.
async fn follow_waiting_queues(held: sluice_engine::hold::SharedHeld, engine: Arc<Engine>) {
    let mut tick = tokio::time::interval(Duration::from_millis(
        sluice_engine::hold::waiting::REFRESH_MS,
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match held.waiting_queues().await {
            Ok(queues) => engine.waiting_queues().replace(queues),
            Err(e) => {
                if !engine.waiting_queues().is_empty() {
                    tracing::warn!(error = %e, "Cannot read which DELAY queues have held mail waiting; new mail is no longer held behind it until the ledger answers");
                }
                engine.waiting_queues().replace(Vec::new());
            }
        }
    }
}

/// How often the policy database is checked for the `sluice_policy_check_timestamp_seconds`
/// gauge (so the "database unreachable" alert works without readiness probes too).
const DATABASE_CHECK_INTERVAL: Duration = Duration::from_secs(30);

/// Records every successful read of the policy database in the check-timestamp gauge.
async fn record_database_checks(store: Store) {
    let mut tick = tokio::time::interval(DATABASE_CHECK_INTERVAL);
    loop {
        tick.tick().await;
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(5), store.version()).await {
            metrics::gauge!(sluice_runtime::metrics::names::POLICY_CHECK_TIMESTAMP)
                .set(sluice_runtime::metrics::unix_now());
        }
    }
}

/// The advice that goes with a Postfix listener that cannot be bound.
fn bind_advice(e: sluice_edge::EdgeError) -> anyhow::Error {
    anyhow::anyhow!(
        "{e}: stop what holds it (another sluice?), or choose another address (--listen, listen = [...])"
    )
}

/// Checks at start that every Postfix listener's address can be bound, accepting nothing
/// yet (see [`Listener::check`]): Postfix is refused, not left hanging, until the
/// policies are loaded and [`bind_listeners`] opens them.
async fn check_listeners(settings: &Settings) -> anyhow::Result<()> {
    for addr in &settings.listen {
        Listener::check(addr).await.map_err(bind_advice)?;
    }
    Ok(())
}

/// Binds the Postfix listeners.
async fn bind_listeners(settings: &Settings) -> anyhow::Result<Vec<Listener>> {
    let mut listeners = Vec::new();
    for addr in &settings.listen {
        listeners.push(Listener::bind(addr).await.map_err(bind_advice)?);
    }
    Ok(listeners)
}

/// Connects and loads the policy set, retrying while the database is unreachable (an edge
/// has no policies to serve before its first load). An invalid stored set is fatal, and so
/// is a schema this build was not made for (exit code 64: see [`database`]). An edge never
/// changes the schema; `serve` migrates only a SQLite file.
async fn load_at_start(
    settings: &Settings,
    role: Role,
) -> anyhow::Result<(Store, i64, sluice_engine::PolicySet)> {
    let url = &settings.database;
    let shown = crate::config::redact(url);
    let schema = match role {
        Role::Edge => database::Schema::Check,
        _ => database::Schema::MigrateSqlite,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let attempt = async {
            let store = database::open(url, schema).await?;
            let version = store.version().await?;
            anyhow::Ok((store, version))
        };
        match attempt.await {
            Ok((store, version)) => {
                if store.migrations_applied() > 0 {
                    tracing::info!(
                        database = %shown,
                        applied = store.migrations_applied(),
                        "Applied schema migrations to the policy database"
                    );
                }
                let (set, _) = reload::load_set(&store, version).await?;
                return Ok((store, version, set));
            }
            Err(e) if database::is_schema_error(&e) => {
                return Err(e).with_context(|| format!("cannot use the policy database {shown}"))
            }
            Err(e) if role == Role::Edge || url.starts_with("postgres") => {
                tracing::warn!(
                    database = %shown,
                    "Cannot load policies yet, retrying: {}",
                    crate::error_text(&e)
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_START_BACKOFF);
            }
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open the policy database {shown}"))
            }
        }
    }
}
