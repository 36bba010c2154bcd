//! `sluice serve`: the embedded one-binary mode. Policies come from the database (compiled in
//! memory, reloaded on change), counters live in process, Postfix talks to the edge listener.

use crate::cli::ServeArgs;
use crate::{admin, reload, signal, EX_USAGE};
use anyhow::Context;
use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{Engine, EngineSettings, MemoryState, MemoryStateSettings, SystemClock};
use sluice_protocol::{Action, Limits};
use sluice_store::Store;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How often idle counters and expired message sessions are reclaimed.
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// Validated `serve` settings (everything checked before any port is bound).
struct Settings {
    listen: Vec<ListenAddr>,
    admin: Option<std::net::SocketAddr>,
    edge: EdgeConfig,
    engine: EngineSettings,
}

fn validate(args: &ServeArgs) -> Result<Settings, Vec<String>> {
    let mut errors = Vec::new();
    let mut listen = Vec::new();
    for l in &args.listen {
        match l.parse::<ListenAddr>() {
            Ok(a) => listen.push(a),
            Err(e) => errors.push(format!("--listen {l:?}: {e}")),
        }
    }
    let admin = match args.admin_listen.as_str() {
        "off" | "" => None,
        a => match a.parse() {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(format!("--admin-listen {a:?}: {e}"));
                None
            }
        },
    };
    let fallback: Option<Action> = match args.fallback_action.parse() {
        Ok(a) => Some(a),
        Err(e) => {
            errors.push(format!("--fallback-action: {e}"));
            None
        }
    };
    if args.max_connections == 0 {
        errors.push("--max-connections must be at least 1".into());
    }
    if args.request_deadline_ms == 0 {
        errors.push("--request-deadline-ms must be at least 1".into());
    }
    if args.max_line < 256 || args.max_request < args.max_line {
        errors.push("--max-line must be at least 256 and --max-request at least --max-line".into());
    }
    let Some(fallback) = fallback else {
        return Err(errors);
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let edge = EdgeConfig {
        max_connections: args.max_connections,
        idle_timeout: Duration::from_secs(args.idle_timeout.max(1)),
        request_deadline: Duration::from_millis(args.request_deadline_ms),
        limits: Limits {
            max_line_len: args.max_line,
            max_request_len: args.max_request,
            ..Limits::default()
        },
        fallback_action: fallback.clone(),
        shutdown_grace: Duration::from_secs(args.shutdown_grace),
        ..EdgeConfig::default()
    };
    let engine = EngineSettings {
        monitor_all: args.monitor,
        buckets_per_period: args.buckets,
        state_failure_action: fallback,
    };
    Ok(Settings {
        listen,
        admin,
        edge,
        engine,
    })
}

/// Runs the service until SIGTERM/SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let settings = match validate(&args) {
        Ok(s) => s,
        Err(errors) => {
            for e in errors {
                eprintln!("sluice serve: {e}");
            }
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let url = args.db.url();
    let store = Store::connect(&url)
        .await
        .with_context(|| format!("cannot open the policy database {url}"))?;
    let version = store.version().await?;
    let (set, warnings) = reload::load_set(&store, version).await?;
    tracing::info!(
        database = store.backend_name(),
        version,
        policies = set.enabled_policies(),
        warnings,
        monitor = settings.engine.monitor_all,
        "Policies loaded"
    );

    let state = Arc::new(MemoryState::new(
        Arc::new(SystemClock),
        MemoryStateSettings::default(),
    ));
    let engine = Arc::new(Engine::new(set, state.clone(), settings.engine));

    // Bind everything before serving anything: a bad address fails the start.
    let mut listeners = Vec::new();
    for addr in &settings.listen {
        let l = Listener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        listeners.push(l);
    }
    let admin = match settings.admin {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.with_context(|| {
            format!("cannot listen on {a} (admin; --admin-listen off disables it)")
        })?),
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    tokio::spawn(reload::watch(
        store.clone(),
        engine.clone(),
        Duration::from_millis(args.reload_poll_ms.max(10)),
        version,
    ));
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let removed = sweeper.sweep();
            tracing::debug!(
                removed,
                counters = sweeper.counters(),
                sessions = sweeper.sessions(),
                "Swept idle counters"
            );
        }
    });
    if let Some(admin) = admin {
        tokio::spawn(admin::serve(admin, engine.clone(), stopped()));
    }

    let mut servers = tokio::task::JoinSet::new();
    for l in listeners {
        servers.spawn(sluice_edge::run(
            l,
            engine.clone(),
            settings.edge.clone(),
            stopped(),
        ));
    }
    signal::shutdown().await;
    let _ = stop_tx.send(true);
    while servers.join_next().await.is_some() {}
    store.close().await;
    tracing::info!("Stopped");
    Ok(ExitCode::SUCCESS)
}
