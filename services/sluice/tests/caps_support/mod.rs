//! A running edge for the caps, listener and recipes tests: embedded (the in-process state)
//! or cluster (the edge's state is the quota service over gRPC, whose state is a real Redis
//! Cluster), time through a manual clock.

#![allow(dead_code)] // Each test file uses part of it.

use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{compile, Engine, EngineSettings, ManualClock, PolicySetDef, State};
use sluice_test_support::PolicyClient;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// 2026-12-06 12:00:00 UTC.
pub const START_MS: u64 = 1_796_558_400_000;

pub use crate::state_support::Mode;

/// A running edge (and, in cluster mode, a quota service).
pub struct Stack {
    pub addr: SocketAddr,
    pub clock: ManualClock,
    pub engine: Arc<Engine>,
    /// Cluster mode: the quota service's address.
    quota: Option<SocketAddr>,
    def: PolicySetDef,
    stops: Vec<oneshot::Sender<()>>,
}

impl Stack {
    /// Starts an edge over `def` (compiled; panics on errors). `tag` keeps the Redis keys
    /// of scenarios apart.
    pub async fn start(mode: &Mode<'_>, def: PolicySetDef, tag: &str) -> Stack {
        let clock = ManualClock::new(START_MS);
        let mut stops = Vec::new();
        let started = crate::state_support::start(mode, &clock, &format!("caps-{tag}")).await;
        stops.extend(started.stop);
        let quota_addr = started.quota;
        let state = started.state;
        let (addr, engine, stop) = edge(&def, state).await;
        stops.push(stop);
        Stack {
            addr,
            clock,
            engine,
            quota: quota_addr,
            def,
            stops,
        }
    }

    /// Cluster mode: another edge on the same quota service (its address); stopped with
    /// the stack.
    pub async fn another_edge(&mut self) -> SocketAddr {
        let quota = self.quota.expect("another edge needs cluster mode");
        let remote = sluice_remote::RemoteState::connect(
            vec![format!("http://{quota}")],
            sluice_remote::RemoteConfig::default(),
        )
        .await
        .expect("edge state");
        let (addr, _, stop) = edge(&self.def, Arc::new(remote)).await;
        self.stops.push(stop);
        addr
    }

    /// A new client connection.
    pub async fn client(&self) -> PolicyClient {
        PolicyClient::connect(self.addr).await
    }
}

/// An edge over `def` counting in `state`: its address, engine and stop.
async fn edge(
    def: &PolicySetDef,
    state: Arc<dyn State>,
) -> (SocketAddr, Arc<Engine>, oneshot::Sender<()>) {
    let set = match compile(def) {
        Ok(c) => c.set,
        Err(e) => panic!("policies do not compile: {e:?}"),
    };
    let engine = Arc::new(Engine::new(set, state, EngineSettings::default()));
    let listener = Listener::bind(&ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))))
        .await
        .unwrap();
    let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
        unreachable!()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(sluice_edge::run(
        listener,
        Arc::clone(&engine),
        EdgeConfig::default(),
        async move {
            let _ = stopped.await;
        },
    ));
    (addr, engine, stop)
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

/// The policy set of a policy file's text (panics with the findings when it does not
/// load).
pub fn policy_file(text: &str) -> PolicySetDef {
    match sluice_store::policy_file::parse("test.toml", text) {
        Ok(parsed) => parsed.def,
        Err(findings) => panic!(
            "policy file does not load:\n{}\n---\n{text}",
            findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}
