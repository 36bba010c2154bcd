//! `/readyz` of each role (Kubernetes readiness).
//!
//! - serve, edge: the policies are loaded, the policy database answers, and the counter
//!   backend answers (edge: at least one quota-service endpoint is up; serve with Redis:
//!   Redis answers a probe; in-process counters: always).
//! - quota: Redis answers a probe.

use sluice_engine::{Engine, State};
use sluice_remote::RemoteState;
use sluice_runtime::http::BoxFuture;
use sluice_runtime::metrics::{names, unix_now};
use sluice_runtime::ReadyCheck;
use sluice_store::Store;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long one readiness check may wait for a backend.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Where the counters of a serve/edge process live.
pub enum Counters {
    /// In process: always ready (the state, for the admin service's live counters).
    Embedded(Arc<sluice_engine::MemoryState>),
    /// In Redis (serve with `--redis`): probed.
    Redis(Arc<sluice_redis::RedisState>),
    /// Behind quota services (edge): ready while one endpoint is up.
    Remote(Arc<RemoteState>),
}

impl Counters {
    /// The live view of the counters for the admin service (in process, or in Redis).
    pub fn live(&self) -> Option<Arc<dyn sluice_engine::LiveCounters>> {
        match self {
            Counters::Embedded(memory) => Some(memory.clone()),
            Counters::Redis(redis) => Some(redis.clone()),
            Counters::Remote(_) => None,
        }
    }
}

/// Readiness of serve and edge; also hands the engine to `/explain` once loaded.
pub struct FrontReady {
    loaded: OnceLock<(Arc<Engine>, Store)>,
    counters: Counters,
}

impl FrontReady {
    /// Not ready until [`FrontReady::loaded`].
    pub fn new(counters: Counters) -> Arc<Self> {
        Arc::new(FrontReady {
            loaded: OnceLock::new(),
            counters,
        })
    }

    /// The policies are loaded into `engine`, read from `store`.
    pub fn loaded(&self, engine: Arc<Engine>, store: Store) {
        let _ = self.loaded.set((engine, store));
    }

    /// The engine, once policies are loaded.
    pub fn engine(&self) -> Option<&Arc<Engine>> {
        self.loaded.get().map(|(e, _)| e)
    }

    async fn run_check(&self) -> Result<String, String> {
        let Some((engine, store)) = self.loaded.get() else {
            return Err("policies not loaded yet".into());
        };
        match tokio::time::timeout(CHECK_TIMEOUT, store.version()).await {
            Ok(Ok(_)) => metrics::gauge!(names::POLICY_CHECK_TIMESTAMP).set(unix_now()),
            Ok(Err(e)) => return Err(format!("policy database unreachable: {e}")),
            Err(_) => return Err("policy database does not answer".into()),
        }
        match &self.counters {
            Counters::Embedded(_) => {}
            Counters::Redis(state) => {
                let state: &dyn State = state.as_ref();
                if !sluice_quota::health::probe(state, CHECK_TIMEOUT).await {
                    return Err("Redis does not answer".into());
                }
            }
            Counters::Remote(remote) => {
                let endpoints = remote.endpoints();
                if !endpoints.iter().any(|e| e.up) {
                    return Err(format!(
                        "no quota-service endpoint is up ({} known)",
                        endpoints.len()
                    ));
                }
            }
        }
        let set = engine.policies();
        Ok(format!(
            "policy set version {}, {} enabled policies",
            set.version,
            set.enabled_policies()
        ))
    }
}

impl ReadyCheck for FrontReady {
    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(self.run_check())
    }
}

/// Readiness of the quota service: its Redis answers.
pub struct QuotaReady(pub Arc<dyn State>);

impl ReadyCheck for QuotaReady {
    fn check(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async move {
            if sluice_quota::health::probe(self.0.as_ref(), CHECK_TIMEOUT).await {
                Ok("Redis answers".into())
            } else {
                Err("Redis does not answer".into())
            }
        })
    }
}
