//! The counting state behind a test edge, for the module tests (greylisting, CheckHelo,
//! CheckSPF, Accounting, caps, listeners, recipes): in process (embedded mode) or the quota
//! service over gRPC on a real Redis Cluster (cluster mode), time through a manual clock.

#![allow(dead_code)] // Each test file uses part of it.

use sluice_engine::{ManualClock, MemoryState, MemoryStateSettings, State};
use sluice_test_support::RedisCluster;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// Where the state lives.
pub enum Mode<'a> {
    /// In process, as `sluice serve` keeps it.
    Embedded,
    /// In Redis Cluster, through a quota service, as `sluice edge` reaches it.
    Cluster(&'a RedisCluster),
}

impl Mode<'_> {
    /// For messages.
    pub fn name(&self) -> &'static str {
        match self {
            Mode::Embedded => "embedded",
            Mode::Cluster(_) => "cluster",
        }
    }
}

/// A running state and what keeps it running.
pub struct TestState {
    /// What the engine is given.
    pub state: Arc<dyn State>,
    /// Embedded mode: the in-process state itself.
    pub memory: Option<Arc<MemoryState>>,
    /// Cluster mode: the quota service's address.
    pub quota: Option<SocketAddr>,
    /// Cluster mode: stops the quota service when sent or dropped.
    pub stop: Option<oneshot::Sender<()>>,
}

/// Starts the state of `mode` on `clock`. In cluster mode its Redis keys start with
/// `key_prefix` (keep scenarios apart) and a quota service serves them on 127.0.0.1.
pub async fn start(mode: &Mode<'_>, clock: &ManualClock, key_prefix: &str) -> TestState {
    match mode {
        Mode::Embedded => {
            let memory = Arc::new(MemoryState::new(
                Arc::new(clock.clone()),
                MemoryStateSettings::default(),
            ));
            TestState {
                state: memory.clone(),
                memory: Some(memory),
                quota: None,
                stop: None,
            }
        }
        Mode::Cluster(cluster) => {
            let settings = sluice_redis::RedisStateSettings {
                key_prefix: format!("{key_prefix}-{}", std::process::id()),
                ..Default::default()
            };
            let redis = sluice_redis::RedisState::connect_with(&cluster.urls(), settings)
                .await
                .expect("connect to the cluster")
                .with_test_clock(Arc::new(clock.clone()));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let quota = listener.local_addr().unwrap();
            let (stop, stopped) = oneshot::channel::<()>();
            tokio::spawn(sluice_quota::serve(
                listener,
                Arc::new(redis),
                sluice_quota::QuotaConfig::default(),
                async {
                    let _ = stopped.await;
                },
            ));
            let remote = sluice_remote::RemoteState::connect(
                vec![format!("http://{quota}")],
                sluice_remote::RemoteConfig::default(),
            )
            .await
            .expect("edge state");
            TestState {
                state: Arc::new(remote),
                memory: None,
                quota: Some(quota),
                stop: Some(stop),
            }
        }
    }
}
