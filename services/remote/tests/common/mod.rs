//! Harness: quota services on 127.0.0.1:0 over any `State`, and test states.
#![allow(dead_code)]

use sluice_engine::state::BoxFuture;
use sluice_engine::{
    CounterBatch, CounterReply, LeaseReturn, LeasedReply, SessionData, SharedState, State,
    StateError,
};
use sluice_quota::{QuotaConfig, ServeError};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::JoinHandle;

/// A running quota service.
pub struct QuotaNode {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), ServeError>>>,
}

impl QuotaNode {
    /// Starts a quota service on a fresh port.
    pub async fn start(state: Arc<dyn SharedState>, config: QuotaConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, state, config)
    }

    /// Starts a quota service on `listener`.
    pub fn start_on(
        listener: TcpListener,
        state: Arc<dyn SharedState>,
        config: QuotaConfig,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(sluice_quota::serve(listener, state, config, async {
            let _ = stopped.await;
        }));
        QuotaNode {
            addr,
            stop: Some(stop),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Signals shutdown without waiting.
    pub fn signal_stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Signals shutdown and waits until the server has drained and returned.
    pub async fn stop(mut self) {
        self.signal_stop();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("quota service drains in time")
            .unwrap()
            .unwrap();
    }
}

impl Drop for QuotaNode {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Counts the batches that reach the wrapped state.
pub struct Counting {
    pub inner: Arc<dyn SharedState>,
    /// Batches run (`apply` and `apply_leasing`).
    pub calls: AtomicUsize,
    /// `return_leases` calls.
    pub returns: AtomicUsize,
    /// `save_sessions` calls.
    pub saves: AtomicUsize,
    /// `load_session` calls.
    pub loads: AtomicUsize,
}

impl Counting {
    pub fn new(inner: Arc<dyn SharedState>) -> Arc<Self> {
        Arc::new(Counting {
            inner,
            calls: AtomicUsize::new(0),
            returns: AtomicUsize::new(0),
            saves: AtomicUsize::new(0),
            loads: AtomicUsize::new(0),
        })
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl State for Counting {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        // Health probes are dry runs of one op on the reserved key; count real batches only.
        let probe = batch.dry_run
            && batch.groups.len() == 1
            && batch.groups[0]
                .first()
                .is_some_and(|op| op.key == sluice_quota::health::PROBE_KEY);
        if !probe {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.apply(batch)
    }
}

impl SharedState for Counting {
    fn apply_leasing<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.apply_leasing(batch, leases)
    }

    fn return_leases<'a>(
        &'a self,
        returns: &'a [LeaseReturn],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.returns.fetch_add(1, Ordering::SeqCst);
        self.inner.return_leases(returns)
    }

    fn save_sessions<'a>(
        &'a self,
        sessions: &'a [SessionData],
        ended: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save_sessions(sessions, ended)
    }

    fn load_session<'a>(
        &'a self,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionData>, StateError>> {
        self.loads.fetch_add(1, Ordering::SeqCst);
        self.inner.load_session(instance)
    }
}

/// A fake backend for the "state hangs" fault: never answers within any sane deadline.
pub struct Hanging {
    pub calls: AtomicUsize,
}

impl State for Hanging {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        let probe = batch
            .groups
            .first()
            .and_then(|g| g.first())
            .map(|op| op.key.as_str())
            == Some(sluice_quota::health::PROBE_KEY);
        if !probe {
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(async move {
            if !probe {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
            Ok(CounterReply {
                groups: batch.groups.iter().map(|_| Vec::new()).collect(),
                end_of_message: Vec::new(),
                details: Vec::new(),
            })
        })
    }
}

/// The quota-service protocol's defaults (no leases, no shared sessions).
impl SharedState for Hanging {}

/// A fake backend for the "backend down" fault: fails while `down` is set.
pub struct Switchable {
    pub inner: Arc<dyn SharedState>,
    pub down: AtomicBool,
}

impl State for Switchable {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        if self.down.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(StateError::Unavailable(
                "backend switched off".into(),
            ))));
        }
        self.inner.apply(batch)
    }
}

/// The quota-service protocol's defaults (no leases, no shared sessions).
impl SharedState for Switchable {}

/// Holds every batch until released, to have RPCs in flight on purpose.
pub struct Gate {
    pub inner: Arc<dyn SharedState>,
    pub entered: Notify,
    pub release: Notify,
}

impl State for Gate {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        let probe = batch
            .groups
            .first()
            .and_then(|g| g.first())
            .map(|op| op.key.as_str())
            == Some(sluice_quota::health::PROBE_KEY);
        Box::pin(async move {
            if !probe {
                self.entered.notify_one();
                self.release.notified().await;
            }
            self.inner.apply(batch).await
        })
    }
}

/// The quota-service protocol's defaults (no leases, no shared sessions).
impl SharedState for Gate {}
