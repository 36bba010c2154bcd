//! The connection to Redis, cluster or single node: connecting (at once, or patiently in
//! the background) and the timeout around every call.

use crate::cluster::node::{jitter, Connector};
use crate::cluster::replication::{Landed, WaitPolicy};
use crate::cluster::request::Request;
use crate::cluster::router::Router;
use crate::cluster::CallError;
use crate::endpoint::{Address, Endpoint};
use crate::error::{redact_url, ConnectError};
use crate::tls::RedisTls;
use redis::{FromRedisValue, Value};
use sluice_engine::StateError;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The first wait after a failed start attempt; doubled per failure.
const FIRST_START_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two start attempts.
pub(crate) const MAX_START_BACKOFF: Duration = Duration::from_secs(10);
/// A start attempt that fails like the one before is logged at most this often.
const START_LOG_INTERVAL: Duration = Duration::from_secs(30);

/// Our own client (see [`crate::cluster`]): one multiplexed connection per node, cheap to
/// clone; one per process is enough. Until Redis has answered once (a patient start),
/// every call fails at once as unavailable.
#[derive(Clone)]
pub(crate) struct Conn {
    ready: Arc<Ready>,
    /// How writes wait for replicas (applied to the router once it exists).
    wait: Arc<std::sync::RwLock<WaitPolicy>>,
}

/// The router once Redis answered, and a signal for those waiting for it.
struct Ready {
    cell: OnceLock<(Router, Topology)>,
    connected: tokio::sync::watch::Sender<bool>,
}

impl Ready {
    fn new() -> Arc<Ready> {
        Arc::new(Ready {
            cell: OnceLock::new(),
            connected: tokio::sync::watch::Sender::new(false),
        })
    }

    fn set(&self, router: Router, topology: Topology) {
        let _ = self.cell.set((router, topology));
        self.connected.send_replace(true);
    }

    fn get(&self) -> Option<&(Router, Topology)> {
        self.cell.get()
    }
}

/// Which kind of deployment [`crate::RedisState::connect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A Redis Cluster.
    Cluster,
    /// One plain Redis node.
    Single,
}

/// What connecting needs, checked: the URLs parsed, the TLS files read.
struct Plan {
    /// Each URL (password redacted) and its endpoint.
    endpoints: Vec<(String, Endpoint)>,
    connector: Connector,
    timeout: Duration,
}

impl Plan {
    /// Checks everything that needs no network: each error is a configuration error.
    fn new(urls: &[String], tls: &RedisTls, timeout: Duration) -> Result<Plan, ConnectError> {
        let endpoints = urls
            .iter()
            .map(|u| Ok((redact_url(u), Endpoint::parse(u)?)))
            .collect::<Result<Vec<_>, ConnectError>>()?;
        let Some((first_url, first)) = endpoints.first() else {
            return Err(ConnectError::NoUrls);
        };
        if let Some((url, _)) = endpoints.iter().find(|(_, e)| e.tls != first.tls) {
            return Err(ConnectError::InvalidUrl {
                url: url.clone(),
                reason: format!(
                    "mixes redis:// and rediss:// with {first_url}: every node is reached the same way"
                ),
            });
        }
        if endpoints.len() > 1 {
            for (url, e) in &endpoints {
                e.tcp_addr(url)?;
            }
        }
        let tls = match first.tls {
            true => Some(tls.connector()?),
            false => None,
        };
        Ok(Plan {
            connector: Connector::new(first.redis.clone(), tls, timeout),
            endpoints,
            timeout,
        })
    }

    /// One attempt: one URL is a cluster if the node says `cluster_enabled:1`, else a
    /// plain node; several URLs are seeds of a cluster, each asked in turn with its own
    /// timeout until one answers.
    async fn attempt(&self) -> Result<(Router, Topology), ConnectError> {
        if let [(_, one)] = &self.endpoints[..] {
            let node = self.connector.node_at(one.addr.clone());
            let mut info = redis::Pipeline::new();
            info.cmd("INFO").arg("cluster");
            let reply = tokio::time::timeout(self.timeout, node.send(&info))
                .await
                .map_err(|_| ConnectError::Timeout)?
                .map_err(|e| connect_error(CallError::from_redis(&e)))?;
            let info: String = match reply.into_iter().next() {
                Some(Value::ServerError(e)) => {
                    return Err(ConnectError::Redis(format!("INFO cluster: {e:?}")))
                }
                Some(v) => redis::from_redis_value(v)
                    .map_err(|e| ConnectError::Redis(format!("INFO cluster: {e}")))?,
                None => return Err(ConnectError::Redis("INFO cluster: no reply".into())),
            };
            if !info.lines().any(|l| l.trim() == "cluster_enabled:1") {
                let router = Router::single(node, self.timeout);
                crate::version::require_supported(&router, self.timeout).await?;
                return Ok((router, Topology::Single));
            }
        }
        let seeds: Vec<String> = self
            .endpoints
            .iter()
            .map(|(url, e)| match &e.addr {
                Address::Tcp(a) => Ok(a.clone()),
                Address::Unix(_) => Err(ConnectError::InvalidUrl {
                    url: url.clone(),
                    reason: "a Redis Cluster node must be a TCP address".into(),
                }),
            })
            .collect::<Result<_, _>>()?;
        let router = Router::cluster(self.connector.clone(), &seeds, self.timeout)
            .await
            .map_err(connect_error)?;
        crate::version::require_supported(&router, self.timeout).await?;
        Ok((router, Topology::Cluster))
    }

    /// The URLs, passwords redacted (for logs).
    fn urls(&self) -> Vec<&str> {
        self.endpoints.iter().map(|(u, _)| u.as_str()).collect()
    }
}

/// Checks Redis URLs and TLS settings without connecting (what `--check-config` runs):
/// URL syntax, schemes, and, for `rediss://`, the TLS files and server name. An error is a
/// configuration error ([`ConnectError::is_permanent`]).
pub fn check_settings(urls: &[String], tls: &RedisTls) -> Result<(), ConnectError> {
    Plan::new(urls, tls, Duration::from_secs(1)).map(|_| ())
}

fn connect_error(e: CallError) -> ConnectError {
    match e {
        CallError::Timeout => ConnectError::Timeout,
        CallError::Auth(msg) => ConnectError::Auth(msg),
        other => ConnectError::Redis(other.to_string()),
    }
}

impl Conn {
    /// Connects now: one attempt (each seed with its own `timeout`), an error if Redis
    /// does not answer.
    pub(crate) async fn connect(
        urls: &[String],
        tls: &RedisTls,
        timeout: Duration,
    ) -> Result<(Conn, Topology), ConnectError> {
        let plan = Plan::new(urls, tls, timeout)?;
        let (router, topology) = plan.attempt().await?;
        let ready = Ready::new();
        ready.set(router, topology);
        Ok((
            Conn {
                ready,
                wait: Arc::default(),
            },
            topology,
        ))
    }

    /// Checks the settings (an error is a configuration error) and returns at once; the
    /// connection is made in the background, retrying with a capped, jittered exponential
    /// backoff (failures logged at most every 30 s) until Redis answers. Calls fail as
    /// unavailable until then. Must run inside a Tokio runtime.
    pub(crate) fn start(
        urls: &[String],
        tls: &RedisTls,
        timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        let plan = Plan::new(urls, tls, timeout)?;
        let ready = Ready::new();
        tokio::spawn(connect_patiently(plan, Arc::downgrade(&ready)));
        Ok(Conn {
            ready,
            wait: Arc::default(),
        })
    }

    /// Waits until Redis has answered, at most `limit`; whether it has.
    pub(crate) async fn wait_connected(&self, limit: Duration) -> bool {
        let mut connected = self.ready.connected.subscribe();
        let answered = tokio::time::timeout(limit, connected.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok());
        answered
    }

    /// Whether Redis has answered (always, after [`Conn::connect`]).
    pub(crate) fn topology(&self) -> Option<Topology> {
        self.ready.get().map(|(_, t)| *t)
    }

    /// Runs `req` within `timeout` (and the batch's deadline, see [`crate::deadline`])
    /// and returns its replies (of a transaction: `EXEC`'s). Nothing that may have run is
    /// sent again: a connection error or a timeout is an error. Past the batch's deadline
    /// nothing is sent.
    pub(crate) async fn call(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<Vec<Value>, StateError> {
        self.call_landed(req, timeout)
            .await
            .map(|(values, _)| values)
    }

    /// The router, once Redis has answered.
    fn connected(&self) -> Result<&Router, StateError> {
        match self.ready.get() {
            Some((router, _)) => Ok(router),
            None => Err(StateError::Unavailable(
                "not connected to Redis yet (still trying)".into(),
            )),
        }
    }

    /// [`Conn::call`] for a write whose effect is acknowledged only after
    /// [`Conn::confirm`]: also says where it ran.
    pub(crate) async fn call_landed(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<(Vec<Value>, Landed), StateError> {
        let router = self.connected()?;
        let deadline = crate::deadline::call_deadline(timeout);
        if deadline <= tokio::time::Instant::now() {
            return Err(StateError::Timeout);
        }
        match tokio::time::timeout_at(deadline, router.call_landed(req)).await {
            Ok(r) => r.map_err(StateError::from),
            Err(_) => {
                // A node that stopped answering may have been failed over.
                router.refresh_soon();
                Err(StateError::Timeout)
            }
        }
    }

    /// Which connection and node a call on `key` goes to now (identities, for grouping
    /// calls by node); `None` when not connected or no node is known for the key's slot.
    pub(crate) fn route_of(&self, key: &str) -> Option<(usize, usize)> {
        let (router, _) = self.ready.get()?;
        let slot = crate::cluster::slots::key_slot(key.as_bytes());
        let node = router.node_id(slot)?;
        Some((Arc::as_ptr(&self.ready) as usize, node))
    }

    /// Returns once enough replicas have the write that landed as `write` (at once when
    /// none are waited for), within `timeout` and the batch's deadline.
    pub(crate) async fn confirm(
        &self,
        write: &Landed,
        timeout: Duration,
    ) -> Result<(), StateError> {
        match self.confirmation(write, timeout)? {
            Some(wait) => wait.await,
            None => Ok(()),
        }
    }

    /// What confirming `write` waits for: `None` when no replica of the node it landed on
    /// is waited for (it is confirmed at once: a landed write means the connection is up),
    /// else the wait, within `timeout` and the batch's deadline. Callers confirming many
    /// writes build no future for those with nothing to wait for.
    pub(crate) fn confirmation<'a>(
        &'a self,
        write: &'a Landed,
        timeout: Duration,
    ) -> Result<Option<impl std::future::Future<Output = Result<(), StateError>> + 'a>, StateError>
    {
        let router = self.connected()?;
        let policy = *self.wait.read().expect("wait policy lock");
        router.ensure_wait_policy(policy);
        if router.replicas_waited_for(write.node.addr()) == 0 {
            return Ok(None);
        }
        let deadline = crate::deadline::call_deadline(timeout);
        Ok(Some(async move {
            router
                .confirm(write, deadline)
                .await
                .map_err(StateError::from)
        }))
    }

    /// `Ok` when the topology is known and at least one primary answers (see
    /// [`Router::ready`]).
    pub(crate) async fn ready(&self) -> Result<(), StateError> {
        self.connected()?.ready().await.map_err(StateError::from)
    }

    /// Writes wait for replicas as `policy` says (see [`crate::cluster::replication`]).
    pub(crate) fn wait_for_replicas(&self, policy: WaitPolicy) {
        *self.wait.write().expect("wait policy lock") = policy;
        if let Some((router, _)) = self.ready.get() {
            router.ensure_wait_policy(policy);
        }
    }

    /// The router (tests reach into routing).
    #[cfg(test)]
    pub(crate) fn router(&self) -> &Router {
        &self.ready.get().expect("connected").0
    }
}

/// Connects in the background until Redis answers (or the state is dropped).
async fn connect_patiently(plan: Plan, ready: Weak<Ready>) {
    let mut failures: u32 = 0;
    let mut logged: Option<(Instant, String)> = None;
    loop {
        match plan.attempt().await {
            Ok((router, topology)) => {
                let Some(ready) = ready.upgrade() else { return };
                tracing::info!(
                    redis = ?plan.urls(),
                    ?topology,
                    failed_attempts = failures,
                    "Connected to Redis"
                );
                ready.set(router, topology);
                return;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = start_backoff(failures);
                let message = e.to_string();
                let due = match &logged {
                    None => true,
                    Some((at, last)) => *last != message || at.elapsed() >= START_LOG_INTERVAL,
                };
                if due {
                    tracing::warn!(
                        redis = ?plan.urls(),
                        error = %message,
                        failed_attempts = failures,
                        retry_in_ms = wait.as_millis() as u64,
                        "Redis does not answer yet; not ready, retrying"
                    );
                    logged = Some((Instant::now(), message));
                }
                tokio::time::sleep(wait).await;
                if ready.strong_count() == 0 {
                    return;
                }
            }
        }
    }
}

/// The wait after `failures` failed start attempts: doubling from
/// [`FIRST_START_BACKOFF`], capped at [`MAX_START_BACKOFF`], then 50–100 % of that.
fn start_backoff(failures: u32) -> Duration {
    let full = FIRST_START_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_START_BACKOFF);
    full / 2 + full.mul_f64(jitter() / 2.0)
}

/// Converts one reply.
pub(crate) fn parse<T: FromRedisValue>(v: Value) -> Result<T, StateError> {
    redis::from_redis_value(v).map_err(|e| StateError::Unavailable(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_backoff_is_capped_and_jittered() {
        assert!(start_backoff(1) <= FIRST_START_BACKOFF);
        assert!(start_backoff(1) >= FIRST_START_BACKOFF / 2);
        for n in 10..50 {
            let d = start_backoff(n);
            assert!(
                d >= MAX_START_BACKOFF / 2 && d <= MAX_START_BACKOFF,
                "{n}: {d:?}"
            );
        }
    }

    #[tokio::test]
    async fn settings_that_cannot_work_fail_at_once() {
        let tls = RedisTls {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..RedisTls::default()
        };
        let t = Duration::from_millis(100);
        let urls = |u: &[&str]| u.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        for (given, tls) in [
            (urls(&["rediss://127.0.0.1:1"]), &tls),
            (urls(&["nonsense"]), &RedisTls::default()),
            (
                urls(&["redis://127.0.0.1:1", "rediss://127.0.0.1:2"]),
                &RedisTls::default(),
            ),
            (urls(&[]), &RedisTls::default()),
        ] {
            let e = Conn::start(&given, tls, t).err().expect("refused");
            assert!(e.is_permanent(), "{given:?}: {e}");
        }
        // A plain URL does not read the TLS files.
        let conn = Conn::start(&urls(&["redis://127.0.0.1:1"]), &tls, t).unwrap();
        assert_eq!(conn.topology(), None);
    }
}
