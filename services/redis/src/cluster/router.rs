//! Sends each request to the node serving its slot, follows `MOVED`/`ASK`, loads scripts
//! on `NOSCRIPT`, and keeps the slot table fresh in the background.
//!
//! **Nothing that may have run is sent again.** A connection error or a timeout ends the
//! call with an error (and, on a cluster, schedules a topology refresh); only answers that
//! prove the request did not run (see [`Verdict`]) lead to sending it again, at most
//! [`MAX_ATTEMPTS`] times within the caller's deadline.

use super::node::{split_addr, Connector, Node};
use super::replication::{Landed, Replication, WaitPolicy};
use super::request::{Request, Verdict};
use super::slots::{parse_cluster_slots, SlotRange, SlotTable};
use super::CallError;
use redis::Value;
use sluice_runtime::metrics::names::{REDIS_RESENDS, REDIS_TOPOLOGY_REFRESHES};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;

/// Counts a request sent again after an answer proving it did not run.
fn resent(reason: &'static str) {
    metrics::counter!(REDIS_RESENDS, "reason" => reason).increment(1);
}

/// Sends of one request at most (the first one plus redirects, retries and a script load).
pub(crate) const MAX_ATTEMPTS: usize = 6;
/// Topology refreshes start at most this often.
const REFRESH_INTERVAL: Duration = Duration::from_millis(100);

/// Routes requests to one node (a plain Redis) or by slot (a Redis Cluster). Cheap to
/// clone.
#[derive(Clone)]
pub(crate) struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// `None`: one plain node, every request goes to `single`.
    cluster: Option<ClusterState>,
    single: Option<Arc<Node>>,
    /// Bound on each topology query.
    timeout: Duration,
    /// `MOVED` answers seen (tests check that routing needs none).
    moved: AtomicU64,
    /// `WAIT` after writes (off until [`Router::wait_for_replicas`]).
    replication: RwLock<Arc<Replication>>,
}

struct ClusterState {
    connector: Connector,
    table: RwLock<Arc<SlotTable<Arc<Node>>>>,
    /// The seeds and the nodes of the current topology (primaries, replicas), by
    /// `host:port`: topology queries go to any of them. A node that leaves the topology
    /// is dropped at the next refresh; seeds stay (a way back in if every node moved).
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    /// The seed addresses, as given.
    seeds: Vec<String>,
    refresh: Mutex<RefreshState>,
    /// Rotates the node asked first for the topology.
    next_seed: AtomicUsize,
    /// Live replicas per primary (`host:port`), from the last topology read.
    replicas: Mutex<HashMap<String, usize>>,
}

#[derive(Default)]
struct RefreshState {
    /// A refresh task is running.
    running: bool,
    /// Another refresh was asked for since the running one started.
    wanted: bool,
    last: Option<Instant>,
}

impl Router {
    /// A router for one plain node.
    pub(crate) fn single(node: Node, timeout: Duration) -> Self {
        Router {
            inner: Arc::new(Inner {
                cluster: None,
                single: Some(Arc::new(node)),
                timeout,
                moved: AtomicU64::new(0),
                replication: RwLock::new(Arc::new(Replication::new(WaitPolicy::OFF))),
            }),
        }
    }

    /// A router for the cluster the `seeds` (`host:port`) belong to; reads the slot table
    /// before returning.
    pub(crate) async fn cluster(
        connector: Connector,
        seeds: &[String],
        timeout: Duration,
    ) -> Result<Self, CallError> {
        let mut nodes = HashMap::new();
        for addr in seeds {
            let node = connector.node(addr).map_err(CallError::connection)?;
            nodes.insert(addr.clone(), Arc::new(node));
        }
        let empty = SlotTable::new(&[], |_: &str| unreachable!());
        let router = Router {
            inner: Arc::new(Inner {
                cluster: Some(ClusterState {
                    connector,
                    table: RwLock::new(Arc::new(empty)),
                    nodes: Mutex::new(nodes),
                    seeds: seeds.to_vec(),
                    refresh: Mutex::new(RefreshState::default()),
                    next_seed: AtomicUsize::new(0),
                    replicas: Mutex::new(HashMap::new()),
                }),
                single: None,
                timeout,
                moved: AtomicU64::new(0),
                replication: RwLock::new(Arc::new(Replication::new(WaitPolicy::OFF))),
            }),
        };
        router.refresh_now().await?;
        Ok(router)
    }

    /// Runs `req` and returns its replies (see [`Verdict::Done`]).
    pub(crate) async fn call(&self, req: &Request) -> Result<Vec<Value>, CallError> {
        self.call_landed(req).await.map(|(values, _)| values)
    }

    /// From now on, writes confirmed with [`Router::confirm`] wait for replicas as `policy`
    /// says (the live replicas per primary come from the topology).
    pub(crate) fn wait_for_replicas(&self, policy: WaitPolicy) {
        let replication = Replication::new(policy);
        if let Some(cluster) = &self.inner.cluster {
            replication.set_replicas(cluster.replicas.lock().expect("replicas lock").clone());
        }
        *self.inner.replication.write().expect("replication lock") = Arc::new(replication);
    }

    /// [`Router::wait_for_replicas`] unless `policy` is already the one in force.
    pub(crate) fn ensure_wait_policy(&self, policy: WaitPolicy) {
        let current = self
            .inner
            .replication
            .read()
            .expect("replication lock")
            .policy();
        if current != policy {
            self.wait_for_replicas(policy);
        }
    }

    /// Returns once a replica confirmed the write that landed as `write` (see
    /// [`super::replication`]); a shortfall also asks for a topology refresh (a replica
    /// marked failed no longer counts).
    pub(crate) async fn confirm(&self, write: &Landed, deadline: Instant) -> Result<(), CallError> {
        let replication = Arc::clone(&self.inner.replication.read().expect("replication lock"));
        let result = replication.confirm(write, deadline).await;
        if result.is_err() {
            self.refresh_soon();
        }
        result
    }

    /// Runs `req` and returns its replies (see [`Verdict::Done`]) and where it ran (for
    /// [`Router::confirm`]).
    pub(crate) async fn call_landed(
        &self,
        req: &Request,
    ) -> Result<(Vec<Value>, Landed), CallError> {
        let mut ask: Option<Arc<Node>> = None;
        for attempt in 0..MAX_ATTEMPTS {
            let asking = ask.is_some();
            let node = match ask.take() {
                Some(node) => node,
                None => self.node_for(req.slot())?,
            };
            let (conn, replies) = match node.send_on(&req.pipeline(asking)).await {
                Ok(sent) => sent,
                Err(e) => {
                    // It may have run: never sent again.
                    self.refresh_soon();
                    return Err(CallError::from_redis(&e));
                }
            };
            match req.verdict(replies, asking) {
                Verdict::Done(values) => return Ok((values, Landed { node, conn })),
                Verdict::Failed(msg) => return Err(CallError::Server(msg)),
                Verdict::NoScript => {
                    resent("noscript");
                    let source = req.script().expect("only scripts answer NoScript");
                    self.load_script(&node, source).await?;
                }
                Verdict::Moved { slot, addr } => {
                    let cluster = self.cluster_or(&addr)?;
                    self.inner.moved.fetch_add(1, Ordering::Relaxed);
                    resent("moved");
                    let addr = resolve(&addr, &node);
                    let target = self.known_node(cluster, &addr)?;
                    let mut table = cluster.table.write().expect("slot table lock");
                    *table = Arc::new(table.with_slot(slot, &addr, || target));
                    drop(table);
                    self.refresh_soon();
                }
                Verdict::Ask { addr } => {
                    resent("ask");
                    let cluster = self.cluster_or(&addr)?;
                    ask = Some(self.known_node(cluster, &resolve(&addr, &node))?);
                }
                Verdict::Down(msg) => {
                    self.refresh_soon();
                    return Err(CallError::Server(msg));
                }
                Verdict::Wait(msg) => {
                    if attempt + 1 == MAX_ATTEMPTS {
                        return Err(CallError::Server(msg));
                    }
                    resent("try_again");
                    self.refresh_soon();
                    tokio::time::sleep(Duration::from_millis(10 << attempt.min(3))).await;
                }
            }
        }
        Err(CallError::Redirects)
    }

    /// `Ok` when the topology is known and at least one primary (or the plain node)
    /// answers `PING` within the timeout: the router can serve some slots. One failing node
    /// does not make it unready (its requests fail on their own). Also reads the topology
    /// again in the background, so a health probe every second keeps the replicas known
    /// (which writes wait for, see [`super::replication`]) up to date.
    pub(crate) async fn ready(&self) -> Result<(), CallError> {
        self.refresh_soon();
        let nodes: Vec<Arc<Node>> = match &self.inner.cluster {
            None => vec![self.inner.single.clone().expect("a single node")],
            Some(cluster) => {
                let primaries: Vec<String> = cluster
                    .replicas
                    .lock()
                    .expect("replicas lock")
                    .keys()
                    .cloned()
                    .collect();
                primaries
                    .iter()
                    .map(|addr| self.known_node(cluster, addr))
                    .collect::<Result<_, _>>()?
            }
        };
        if nodes.is_empty() {
            return Err(CallError::NoNode(0));
        }
        let mut ping = redis::Pipeline::new();
        ping.cmd("PING");
        let ping = &ping;
        // The first primary to answer decides: a stalled one must not hold the answer.
        let pings = nodes.iter().map(|node| {
            Box::pin(async move {
                match tokio::time::timeout(self.inner.timeout, node.send(ping)).await {
                    Ok(Ok(replies)) if !matches!(replies.first(), Some(Value::ServerError(_))) => {
                        Ok(())
                    }
                    Ok(Ok(replies)) => Err(CallError::Server(format!("PING: {replies:?}"))),
                    Ok(Err(e)) => Err(CallError::from_redis(&e)),
                    Err(_) => Err(CallError::Timeout),
                }
            })
        });
        let first = futures_util::future::select_ok(pings).await;
        first.map(drop)
    }

    /// How many `MOVED` answers this router followed.
    #[cfg(test)]
    pub(crate) fn moved(&self) -> u64 {
        self.inner.moved.load(Ordering::Relaxed)
    }

    /// **Test only.** Makes `slot` point at `addr` as a stale table would.
    #[cfg(test)]
    pub(crate) fn force_slot(&self, slot: u16, addr: &str) {
        let cluster = self.inner.cluster.as_ref().expect("a cluster router");
        let node = self.known_node(cluster, addr).expect("a valid address");
        let mut table = cluster.table.write().unwrap();
        *table = Arc::new(table.with_slot(slot, addr, || node));
    }

    /// How many replicas a write on the primary `addr` waits for now (0: its
    /// confirmation is `Ok` at once).
    pub(crate) fn replicas_waited_for(&self, addr: &str) -> usize {
        self.inner
            .replication
            .read()
            .expect("replication lock")
            .wanted(addr)
    }

    /// The `host:port` of every node known (seeds and the current topology), sorted.
    #[cfg(test)]
    pub(crate) fn known_nodes(&self) -> Vec<String> {
        let cluster = self.inner.cluster.as_ref().expect("a cluster router");
        let mut v: Vec<String> = cluster
            .nodes
            .lock()
            .expect("nodes lock")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Reads the topology now (tests).
    #[cfg(test)]
    pub(crate) async fn refresh_for_test(&self) -> Result<(), CallError> {
        self.refresh_now().await
    }

    /// The `host:port` serving `slot` in the current table.
    #[cfg(test)]
    pub(crate) fn addr_of(&self, slot: u16) -> Option<String> {
        self.node_for(slot).ok().map(|n| n.addr().to_string())
    }

    /// The identity of the node serving `slot` in the current table (the only node, for a
    /// plain Redis); `None` if no node serves it. Changes nothing.
    pub(crate) fn node_id(&self, slot: u16) -> Option<usize> {
        let Some(cluster) = &self.inner.cluster else {
            return self.inner.single.as_ref().map(|n| Arc::as_ptr(n) as usize);
        };
        let table = cluster.table.read().expect("slot table lock");
        table.get(slot).map(|n| Arc::as_ptr(n) as usize)
    }

    fn node_for(&self, slot: u16) -> Result<Arc<Node>, CallError> {
        let Some(cluster) = &self.inner.cluster else {
            return Ok(self.inner.single.clone().expect("a single node"));
        };
        let node = cluster
            .table
            .read()
            .expect("slot table lock")
            .get(slot)
            .cloned();
        node.ok_or_else(|| {
            self.refresh_soon();
            CallError::NoNode(slot)
        })
    }

    /// The cluster state; a redirect from a plain node is an error.
    fn cluster_or(&self, addr: &str) -> Result<&ClusterState, CallError> {
        self.inner
            .cluster
            .as_ref()
            .ok_or_else(|| CallError::Server(format!("redirect to {addr} from a plain node")))
    }

    /// The node at `addr`, created (not connected) if new.
    fn known_node(&self, cluster: &ClusterState, addr: &str) -> Result<Arc<Node>, CallError> {
        let mut nodes = cluster.nodes.lock().expect("nodes lock");
        if let Some(n) = nodes.get(addr) {
            return Ok(n.clone());
        }
        let node = Arc::new(
            cluster
                .connector
                .node(addr)
                .map_err(CallError::connection)?,
        );
        nodes.insert(addr.to_string(), node.clone());
        Ok(node)
    }

    /// `SCRIPT LOAD` on `node` (answered only after the script is stored).
    async fn load_script(&self, node: &Node, source: &str) -> Result<(), CallError> {
        let mut load = redis::cmd("SCRIPT");
        load.arg("LOAD").arg(source);
        let mut pipe = redis::Pipeline::new();
        pipe.add_command(load);
        match node.send(&pipe).await {
            Ok(replies) => match replies.first() {
                Some(Value::ServerError(e)) => Err(CallError::Server(format!("{e:?}"))),
                _ => Ok(()),
            },
            Err(e) => Err(CallError::from_redis(&e)),
        }
    }

    /// Asks for a topology refresh in the background: at most one runs at a time, and
    /// they start at most every [`REFRESH_INTERVAL`]. No-op for a plain node.
    pub(crate) fn refresh_soon(&self) {
        let Some(cluster) = &self.inner.cluster else {
            return;
        };
        let mut state = cluster.refresh.lock().expect("refresh lock");
        state.wanted = true;
        if state.running {
            return;
        }
        state.running = true;
        drop(state);
        let router = self.clone();
        tokio::spawn(async move { router.refresh_loop().await });
    }

    async fn refresh_loop(&self) {
        let cluster = self.inner.cluster.as_ref().expect("a cluster router");
        loop {
            let last = {
                let mut state = cluster.refresh.lock().expect("refresh lock");
                if !state.wanted {
                    state.running = false;
                    return;
                }
                state.wanted = false;
                state.last
            };
            if let Some(last) = last {
                tokio::time::sleep_until(last + REFRESH_INTERVAL).await;
            }
            cluster.refresh.lock().expect("refresh lock").last = Some(Instant::now());
            let result = self.refresh_now().await;
            metrics::counter!(
                REDIS_TOPOLOGY_REFRESHES,
                "result" => if result.is_ok() { "ok" } else { "error" }
            )
            .increment(1);
            if let Err(e) = result {
                tracing::warn!(error = %e, "Cannot read the Redis Cluster topology");
            }
        }
    }

    /// Reads `CLUSTER SLOTS` from the first node that answers (each asked with its own
    /// timeout, in rotating order starting with the seeds) and installs it.
    async fn refresh_now(&self) -> Result<(), CallError> {
        let cluster = self.inner.cluster.as_ref().expect("a cluster router");
        // The seeds in the order given, then the other nodes.
        let mut candidates: Vec<Arc<Node>> = {
            let nodes = cluster.nodes.lock().expect("nodes lock");
            let mut others: Vec<Arc<Node>> = nodes
                .iter()
                .filter(|(addr, _)| !cluster.seeds.contains(addr))
                .map(|(_, n)| n.clone())
                .collect();
            others.sort_by(|a, b| a.addr().cmp(b.addr()));
            let mut v: Vec<Arc<Node>> = cluster
                .seeds
                .iter()
                .filter_map(|addr| nodes.get(addr).cloned())
                .collect();
            v.extend(others);
            v
        };
        if candidates.is_empty() {
            return Err(CallError::NoNode(0));
        }
        let start = cluster.next_seed.fetch_add(1, Ordering::Relaxed) % candidates.len();
        candidates.rotate_left(start);
        let mut pipe = redis::Pipeline::new();
        pipe.cmd("CLUSTER").arg("SLOTS");
        let mut last_error = CallError::NoNode(0);
        for node in candidates {
            let reply = tokio::time::timeout(self.inner.timeout, node.send(&pipe)).await;
            let ranges = match reply {
                Ok(Ok(replies)) => match replies.first() {
                    Some(v @ Value::Array(_)) => parse_cluster_slots(v, node.host()),
                    Some(Value::ServerError(e)) => Err(format!("CLUSTER SLOTS: {e}")),
                    other => Err(format!("unexpected CLUSTER SLOTS reply {other:?}")),
                },
                Ok(Err(e)) => {
                    last_error = CallError::from_redis(&e);
                    continue;
                }
                Err(_) => {
                    last_error = CallError::Timeout;
                    continue;
                }
            };
            match ranges {
                Ok(ranges) if !ranges.is_empty() => {
                    self.install(cluster, &ranges)?;
                    return Ok(());
                }
                Ok(_) => last_error = CallError::Server("no slots served".into()),
                Err(e) => last_error = CallError::Server(e),
            }
        }
        Err(last_error)
    }

    /// Makes `ranges` the slot table (remembering replicas as topology sources) and drops
    /// the nodes that are neither in it nor seeds.
    fn install(&self, cluster: &ClusterState, ranges: &[SlotRange]) -> Result<(), CallError> {
        for addr in ranges.iter().flat_map(|r| &r.replicas) {
            self.known_node(cluster, addr)?;
        }
        {
            let mut nodes = cluster.nodes.lock().expect("nodes lock");
            let before = nodes.len();
            nodes.retain(|addr, _| {
                cluster.seeds.contains(addr)
                    || ranges
                        .iter()
                        .any(|r| &r.primary == addr || r.replicas.contains(addr))
            });
            if nodes.len() < before {
                tracing::info!(
                    dropped = before - nodes.len(),
                    "Dropped Redis nodes that left the cluster topology"
                );
            }
        }
        let mut primaries = HashMap::new();
        for r in ranges {
            primaries.insert(r.primary.clone(), self.known_node(cluster, &r.primary)?);
        }
        let table = SlotTable::new(ranges, |addr| primaries[addr].clone());
        *cluster.table.write().expect("slot table lock") = Arc::new(table);
        let counts = replica_counts(ranges);
        self.inner
            .replication
            .read()
            .expect("replication lock")
            .set_replicas(counts.clone());
        *cluster.replicas.lock().expect("replicas lock") = counts;
        Ok(())
    }
}

/// The live replicas of each primary: `CLUSTER SLOTS` lists only replicas not marked
/// failed; a primary serving several ranges counts its fewest.
fn replica_counts(ranges: &[SlotRange]) -> HashMap<String, usize> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in ranges {
        counts
            .entry(r.primary.clone())
            .and_modify(|c| *c = (*c).min(r.replicas.len()))
            .or_insert(r.replicas.len());
    }
    counts
}

/// A redirect's `host:port`; an empty host is the host of the node that answered.
fn resolve(addr: &str, answered: &Node) -> String {
    match split_addr(addr) {
        Some(("", port)) => format!("{}:{port}", answered.host()),
        _ => addr.to_string(),
    }
}
