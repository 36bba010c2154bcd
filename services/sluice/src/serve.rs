//! `sluice serve` (everything in one process) and `sluice edge` (a stateless node of a
//! cluster): the same front end, with counters in process, in Redis, or behind the quota
//! service.

use crate::cli::LogArgs;
use crate::config::{self, Role, RoleArgs, Settings};
use crate::hangup::Hangups;
use crate::persist::{self, Persistence};
use crate::ready::Counters;
use crate::{front, logging};
use anyhow::Context;
use sluice_engine::{MemoryState, MemoryStateSettings, SystemClock};
use sluice_redis::{RedisState, RedisStateSettings};
use sluice_remote::{RemoteConfig, RemoteState};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How often idle counters and expired message sessions are reclaimed (in-process state).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// `sluice serve`: counters in process, or in Redis when `--redis` is given.
pub async fn run(args: RoleArgs, log: &LogArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let given = args.clone();
    let settings = match config::resolve_or_exit(args, Role::Serve) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let hangups = Hangups::take_over(Role::Serve, given, &settings)?;
    let telemetry = logging::init_role(log, &settings, Role::Serve)?;
    let result = async {
        if !settings.redis.is_empty() {
            let redis = Arc::new(connect_redis(&settings).await?);
            let counters = Counters::Redis(redis.clone());
            return front::run(settings, redis, counters, Role::Serve, hangups).await;
        }
        let keep = persist::enabled(&settings);
        let memory = Arc::new(MemoryState::new(
            Arc::new(SystemClock),
            MemoryStateSettings {
                track_changes: keep,
                ..MemoryStateSettings::default()
            },
        ));
        // Counters saved by the last run are back before the first request.
        let persistence = match keep {
            true => Some(Persistence::start(&settings, memory.clone()).await?),
            false => None,
        };
        spawn_sweeper(memory.clone());
        let result = front::run(
            settings,
            memory.clone(),
            Counters::Embedded(memory),
            Role::Serve,
            hangups,
        )
        .await;
        // Requests have drained (or never started): what they counted is saved.
        if let Some(p) = persistence {
            p.finish().await;
        }
        result
    }
    .await;
    logging::finish(telemetry).await;
    result
}

/// `sluice edge`: counters behind the quota service.
pub async fn run_edge(args: RoleArgs, log: &LogArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let given = args.clone();
    let settings = match config::resolve_or_exit(args, Role::Edge) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let security = crate::grpc_security::client_security(&settings.quota_security, &settings.quota)
        .map_err(|e| anyhow::anyhow!("quota-service TLS/token settings: {}", e.join("; ")))?;
    let remote = RemoteConfig {
        security,
        deadline: settings.quota_deadline,
        over_limit_cache: settings.over_limit_cache,
        lease_multiple: settings.lease_multiple,
        ..RemoteConfig::default()
    };
    let hangups = Hangups::take_over(Role::Edge, given, &settings)?;
    let telemetry = logging::init_role(log, &settings, Role::Edge)?;
    let result = async {
        let state = Arc::new(
            RemoteState::connect(settings.quota.clone(), remote)
                .await
                .context("invalid quota service settings")?,
        );
        front::run(
            settings,
            state.clone(),
            Counters::Remote(state),
            Role::Edge,
            hangups,
        )
        .await
    }
    .await;
    logging::finish(telemetry).await;
    result
}

/// The Redis state's settings from the role's.
pub fn redis_settings(settings: &Settings) -> RedisStateSettings {
    RedisStateSettings {
        timeout: settings.redis_timeout,
        wait_replicas: settings.redis_wait_replicas,
        wait_timeout: settings.redis_wait_timeout,
        tls: settings.redis_tls.clone(),
        ..RedisStateSettings::default()
    }
}

/// Connects to Redis (Cluster or one node) now: an error if it does not answer.
pub async fn connect_redis(settings: &Settings) -> anyhow::Result<RedisState> {
    let urls: Vec<String> = settings.redis.iter().map(|u| config::redact(u)).collect();
    RedisState::connect_with(&settings.redis, redis_settings(settings))
        .await
        .with_context(|| format!("cannot connect to Redis {urls:?}"))
}

fn spawn_sweeper(state: Arc<MemoryState>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            tick.tick().await;
            let removed = state.sweep();
            tracing::debug!(
                removed,
                counters = state.counters(),
                sessions = state.sessions(),
                "Swept idle counters"
            );
        }
    });
}
