//! A real edge server on an ephemeral port.

use crate::client::PolicyClient;
use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    compile, Engine, EngineSettings, ManualClock, MemoryState, MemoryStateSettings, PolicySetDef,
};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The time a [`TestServer`]'s clock starts at: 2023-11-14T22:13:20Z, in milliseconds.
pub const START_MS: u64 = 1_700_000_000_000;

/// How long [`TestServer::shutdown`] waits for the server before failing the test.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Builds a [`TestServer`].
#[must_use]
pub struct TestServerBuilder {
    def: PolicySetDef,
    clock: ManualClock,
    edge: EdgeConfig,
    engine: EngineSettings,
    listen: ListenAddr,
}

impl TestServerBuilder {
    /// Uses `clock` (default: a [`ManualClock`] at [`START_MS`]).
    pub fn clock(mut self, clock: ManualClock) -> Self {
        self.clock = clock;
        self
    }

    /// Uses `config` for the edge (default: [`EdgeConfig::default`]).
    pub fn edge_config(mut self, config: EdgeConfig) -> Self {
        self.edge = config;
        self
    }

    /// Uses `settings` for the engine (default: [`EngineSettings::default`]).
    pub fn engine_settings(mut self, settings: EngineSettings) -> Self {
        self.engine = settings;
        self
    }

    /// Listens on `addr` instead of `127.0.0.1:0` (e.g. a Unix socket in a temp dir).
    pub fn listen(mut self, addr: ListenAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Compiles the policy set (panicking with the diagnostics if it does not compile),
    /// binds, and spawns the server.
    pub async fn start(self) -> TestServer {
        let compiled = match compile(&self.def) {
            Ok(c) => c,
            Err(diagnostics) => {
                let text: Vec<String> = diagnostics.iter().map(|d| d.to_string()).collect();
                panic!("policy set does not compile:\n{}", text.join("\n"));
            }
        };
        let state = MemoryState::new(Arc::new(self.clock.clone()), MemoryStateSettings::default());
        let engine = Arc::new(Engine::new(compiled.set, Arc::new(state), self.engine));
        let listener = Listener::bind(&self.listen)
            .await
            .unwrap_or_else(|e| panic!("cannot bind {}: {e}", self.listen));
        let listen = listener
            .local_addr()
            .expect("bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(sluice_edge::run(
            listener,
            Arc::clone(&engine),
            self.edge,
            async move {
                let _ = stopped.await;
            },
        ));
        TestServer {
            listen,
            clock: self.clock,
            engine,
            stop: Some(stop),
            handle: Some(handle),
        }
    }
}

/// A running edge server with an in-memory engine. Dropping it starts a shutdown without
/// waiting; [`TestServer::shutdown`] waits for it.
pub struct TestServer {
    listen: ListenAddr,
    clock: ManualClock,
    engine: Arc<Engine>,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl TestServer {
    /// A server for `def` with default settings, on `127.0.0.1:0`.
    pub async fn start(def: PolicySetDef) -> TestServer {
        TestServer::builder(def).start().await
    }

    /// A builder for a server running `def`.
    pub fn builder(def: PolicySetDef) -> TestServerBuilder {
        TestServerBuilder {
            def,
            clock: ManualClock::new(START_MS),
            edge: EdgeConfig::default(),
            engine: EngineSettings::default(),
            listen: ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }

    /// The TCP address the server listens on. Panics for a Unix socket server.
    pub fn addr(&self) -> SocketAddr {
        match &self.listen {
            ListenAddr::Tcp(a) => *a,
            ListenAddr::Unix(p) => panic!("server listens on unix socket {}", p.display()),
        }
    }

    /// Where the server listens.
    pub fn listen_addr(&self) -> &ListenAddr {
        &self.listen
    }

    /// The clock the engine's state reads.
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The engine (e.g. to swap policies with [`Engine::replace_policies`]).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A new client connected to the server.
    pub async fn client(&self) -> PolicyClient {
        PolicyClient::connect_to(&self.listen).await
    }

    /// Starts a shutdown without waiting for it (see [`TestServer::wait_stopped`]).
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Waits until the server has stopped (after [`TestServer::begin_shutdown`]). Panics if
    /// it takes more than 30 s or the server task panicked.
    pub async fn wait_stopped(&mut self) {
        if let Some(handle) = self.handle.take() {
            match tokio::time::timeout(SHUTDOWN_LIMIT, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => panic!("server task failed: {e}"),
                Err(_) => panic!("server did not stop within {SHUTDOWN_LIMIT:?}"),
            }
        }
    }

    /// Shuts the server down gracefully and waits until it has stopped.
    pub async fn shutdown(mut self) {
        self.begin_shutdown();
        self.wait_stopped().await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.begin_shutdown();
    }
}
