//! `sluice serve` (everything in one process) and `sluice edge` (a stateless node of a
//! cluster): the same front end, with counters in process, in Redis, or behind the quota
//! service.

use crate::config::{self, Role, RoleArgs, Settings};
use crate::front;
use anyhow::Context;
use sluice_engine::{MemoryState, MemoryStateSettings, State, SystemClock};
use sluice_redis::{RedisState, RedisStateSettings};
use sluice_remote::{RemoteConfig, RemoteState};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// How often idle counters and expired message sessions are reclaimed (in-process state).
const SWEEP_INTERVAL: Duration = Duration::from_secs(30);

/// `sluice serve`: counters in process, or in Redis when `--redis` is given.
pub async fn run(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let settings = match config::resolve_or_exit(args, Role::Serve) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let state: Arc<dyn State> = if settings.redis.is_empty() {
        let memory = Arc::new(MemoryState::new(
            Arc::new(SystemClock),
            MemoryStateSettings::default(),
        ));
        spawn_sweeper(memory.clone());
        memory
    } else {
        Arc::new(connect_redis(&settings).await?)
    };
    front::run(settings, state, Role::Serve).await
}

/// `sluice edge`: counters behind the quota service.
pub async fn run_edge(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let check = args.check_config;
    let settings = match config::resolve_or_exit(args, Role::Edge) {
        Ok(s) => s,
        Err(code) => return Ok(code),
    };
    if check {
        print!("{settings}");
        return Ok(ExitCode::SUCCESS);
    }
    let remote = RemoteConfig {
        deadline: settings.quota_deadline,
        over_limit_cache: settings.over_limit_cache,
        ..RemoteConfig::default()
    };
    let state = RemoteState::connect(settings.quota.clone(), remote)
        .await
        .context("invalid quota service settings")?;
    front::run(settings, Arc::new(state), Role::Edge).await
}

/// Connects to Redis (Cluster or one node).
pub async fn connect_redis(settings: &Settings) -> anyhow::Result<RedisState> {
    let redis = RedisStateSettings {
        timeout: settings.redis_timeout,
        ..RedisStateSettings::default()
    };
    let urls: Vec<String> = settings.redis.iter().map(|u| config::redact(u)).collect();
    RedisState::connect_with(&settings.redis, redis)
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
