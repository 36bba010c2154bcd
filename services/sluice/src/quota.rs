//! `sluice quota`: the gRPC quota service on Redis (Cluster). It starts without waiting
//! for Redis: gRPC health reports NOT_SERVING and `/readyz` not ready until Redis answers.

use crate::cli::LogArgs;
use crate::config::{self, Role, RoleArgs};
use crate::ready::QuotaReady;
use crate::serve::redis_settings;
use crate::{logging, signal};
use anyhow::Context;
use sluice_quota::QuotaConfig;
use sluice_redis::RedisState;
use std::process::ExitCode;
use std::sync::Arc;

/// The quota service's runtime: a single-threaded one. The service's work is many small
/// concurrent calls each waiting on Redis; on one thread the Redis commands of every call
/// that is ready in the same scheduler tick are queued before the connection tasks run, so
/// they go out to each node in one write (and their replies come back in one read), and no
/// call ever wakes another thread. Measured on 2 cores: less CPU per request than a
/// multi-thread runtime (docs/benchmarks.md).
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Runs the quota service until a shutdown signal.
pub async fn run(args: RoleArgs, log: &LogArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let given = args.clone();
    let settings = match config::resolve_or_exit(args, Role::Quota) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let hangups = crate::hangup::Hangups::take_over(Role::Quota, given, &settings)?;
    let telemetry = logging::init_role(log, &settings, Role::Quota)?;
    hangups.spawn(None);
    let result = serve(settings).await;
    logging::finish(telemetry).await;
    result
}

async fn serve(settings: config::Settings) -> anyhow::Result<ExitCode> {
    let stop = signal::shutdown();
    let grpc = settings.grpc_listen.expect("resolved for the quota role");
    // Read (and checked) before any port is bound or Redis is dialled.
    let security = crate::grpc_security::server_security(&settings.grpc_security, Some(grpc))
        .map_err(|e| anyhow::anyhow!("gRPC TLS/authentication settings: {}", e.join("; ")))?;
    if !grpc.ip().is_loopback() {
        if !security.authenticates_clients() {
            tracing::warn!(
                grpc = %grpc,
                "gRPC listener reachable from other hosts WITHOUT client authentication (grpc_allow_unauthenticated = true): anyone reaching the port can take or give back quota."
            );
        } else if security.tls.is_none() {
            tracing::warn!(
                grpc = %grpc,
                "gRPC listener without TLS: the bearer token crosses the network in clear text; set grpc_tls_cert_file and grpc_tls_key_file."
            );
        }
    }
    // gRPC connections come from the edges only; the metrics listener has its own cap.
    crate::descriptors::raise_limit(crate::descriptors::RESERVE);
    let listener = tokio::net::TcpListener::bind(grpc).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot listen on {grpc} for gRPC: {e}: stop what holds it (another sluice quota?), or choose another address (--grpc-listen)"
        )
    })?;
    let admin = match settings.metrics {
        Some(a) => Some(tokio::net::TcpListener::bind(a).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {a} for metrics: {e}: stop what holds it, or choose another address (--metrics-listen, metrics_listen = \"off\" disables it)"
            )
        })?),
        None => None,
    };
    // A patient start: listening at once, NOT_SERVING (and /readyz not ready) until Redis
    // answers, connecting in the background with backoff. Only settings that can never
    // work stop the process (exit code 64).
    let redis = match RedisState::start(&settings.redis, redis_settings(&settings)) {
        Ok(redis) => redis,
        Err(e) => {
            eprintln!("sluice quota: configuration: {e}");
            tracing::error!(error = %e, "Cannot use the Redis settings");
            return Ok(ExitCode::from(crate::EX_USAGE));
        }
    };
    // Redis usually answers at once: give the first attempt (each seed its timeout) the
    // time to, so a normal start is SERVING from its first health probe.
    let first_attempt = settings.redis_timeout * (settings.redis.len() as u32 + 1);
    redis.wait_connected(first_attempt).await;
    let redis = Arc::new(redis);
    let live: Arc<dyn sluice_engine::LiveCounters> = redis.clone();
    // DELAY quotas' ledger, in Redis beside the counters its releases are charged to.
    let held: sluice_engine::hold::SharedHeld = crate::held::HeldService::start(
        crate::held::Keeper::redis(redis.clone()),
        redis.clone(),
        Arc::new(sluice_engine::SystemClock),
    )
    .await?;
    let held = Some(held);
    let state: Arc<dyn sluice_engine::SharedState> = redis;
    if let Some(admin) = admin {
        tokio::spawn(crate::metrics_listener::serve_basic(
            admin,
            Arc::new(QuotaReady(state.clone() as Arc<dyn sluice_engine::State>)),
        ));
    }
    tracing::info!(
        grpc = %grpc,
        metrics = %settings.metrics.map_or("off".into(), |a| a.to_string()),
        redis = ?settings.redis.iter().map(|u| config::redact(u)).collect::<Vec<_>>(),
        "Quota service listening"
    );
    let config = QuotaConfig {
        drain_timeout: settings.shutdown_grace,
        security,
        ..QuotaConfig::default()
    };
    sluice_quota::serve_with_live(listener, state, Some(live), held, config, stop)
        .await
        .context("quota service failed")?;
    tracing::info!("Stopped");
    Ok(ExitCode::SUCCESS)
}
