//! The connection to Redis, cluster or single node, and the timeout around every call.

use crate::cluster::node::Connector;
use crate::cluster::replication::{Landed, WaitPolicy};
use crate::cluster::request::Request;
use crate::cluster::router::Router;
use crate::cluster::CallError;
use crate::error::ConnectError;
use redis::{
    AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    Value,
};
use sluice_engine::StateError;
use std::future::Future;
use std::time::Duration;

/// Our own client (see [`crate::cluster`]): one multiplexed connection per node, cheap to
/// clone; one per process is enough.
#[derive(Clone)]
pub(crate) struct Conn {
    router: Router,
}

/// Which kind of deployment [`crate::RedisState::connect`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topology {
    /// A Redis Cluster.
    Cluster,
    /// One plain Redis node.
    Single,
}

impl Conn {
    /// One URL: a cluster if the node says `cluster_enabled:1`, else a plain node. Several
    /// URLs: seed nodes of a cluster.
    pub(crate) async fn connect(
        urls: &[String],
        timeout: Duration,
    ) -> Result<(Conn, Topology), ConnectError> {
        let cluster = match urls {
            [] => return Err(ConnectError::NoUrls),
            [one] => cluster_enabled(one, timeout).await?,
            _ => true,
        };
        let infos = urls
            .iter()
            .map(|u| u.as_str().into_connection_info())
            .collect::<Result<Vec<ConnectionInfo>, _>>()
            .map_err(|e| ConnectError::Redis(e.to_string()))?;
        let connector = Connector::new(infos[0].clone(), timeout);
        let connect_error = |e: CallError| match e {
            CallError::Timeout => ConnectError::Timeout,
            other => ConnectError::Redis(other.to_string()),
        };
        if cluster {
            let seeds = infos
                .iter()
                .map(|i| match i.addr() {
                    ConnectionAddr::Tcp(host, port) => Ok(format!("{host}:{port}")),
                    other => Err(ConnectError::Redis(format!(
                        "a cluster node must be a TCP address, not {other:?}"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()?;
            let router = bounded(timeout, Router::cluster(connector, &seeds, timeout))
                .await?
                .map_err(connect_error)?;
            Ok((Conn { router }, Topology::Cluster))
        } else {
            let client = redis::Client::open(infos[0].clone())
                .map_err(|e| ConnectError::Redis(e.to_string()))?;
            let node = connector.node_at(infos[0].addr().to_string(), client);
            let conn = Conn {
                router: Router::single(node, timeout),
            };
            // Open the connection now: a dead node is an error at start-up.
            let ping = Request::single("", redis::cmd("PING"));
            bounded(timeout, conn.router.call(&ping))
                .await?
                .map_err(connect_error)?;
            Ok((conn, Topology::Single))
        }
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

    /// [`Conn::call`] for a write whose effect is acknowledged only after
    /// [`Conn::confirm`]: also says where it ran.
    pub(crate) async fn call_landed(
        &self,
        req: &Request,
        timeout: Duration,
    ) -> Result<(Vec<Value>, Landed), StateError> {
        let deadline = crate::deadline::call_deadline(timeout);
        if deadline <= tokio::time::Instant::now() {
            return Err(StateError::Timeout);
        }
        match tokio::time::timeout_at(deadline, self.router.call_landed(req)).await {
            Ok(r) => r.map_err(StateError::from),
            Err(_) => {
                // A node that stopped answering may have been failed over.
                self.router.refresh_soon();
                Err(StateError::Timeout)
            }
        }
    }

    /// Returns once enough replicas have the write that landed as `write` (at once when
    /// none are waited for), within `timeout` and the batch's deadline.
    pub(crate) async fn confirm(
        &self,
        write: &Landed,
        timeout: Duration,
    ) -> Result<(), StateError> {
        let deadline = crate::deadline::call_deadline(timeout);
        self.router
            .confirm(write, deadline)
            .await
            .map_err(StateError::from)
    }

    /// `Ok` when the topology is known and at least one primary answers (see
    /// [`Router::ready`]).
    pub(crate) async fn ready(&self) -> Result<(), StateError> {
        self.router.ready().await.map_err(StateError::from)
    }

    /// Writes wait for replicas as `policy` says (see [`crate::cluster::replication`]).
    pub(crate) fn wait_for_replicas(&self, policy: WaitPolicy) {
        self.router.wait_for_replicas(policy);
    }

    /// The router (tests reach into routing).
    #[cfg(test)]
    pub(crate) fn router(&self) -> &Router {
        &self.router
    }
}

/// Converts one reply.
pub(crate) fn parse<T: FromRedisValue>(v: Value) -> Result<T, StateError> {
    redis::from_redis_value(v).map_err(|e| StateError::Unavailable(e.to_string()))
}

/// Runs a connection attempt within `timeout`.
async fn bounded<T>(timeout: Duration, fut: impl Future<Output = T>) -> Result<T, ConnectError> {
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| ConnectError::Timeout)
}

/// Asks one node whether it runs in cluster mode.
async fn cluster_enabled(url: &str, timeout: Duration) -> Result<bool, ConnectError> {
    let redis_error = |e: redis::RedisError| ConnectError::Redis(e.to_string());
    let client = redis::Client::open(url).map_err(redis_error)?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = bounded(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await?
    .map_err(redis_error)?;
    let info: String = bounded(
        timeout,
        redis::cmd("INFO").arg("cluster").query_async(&mut conn),
    )
    .await?
    .map_err(redis_error)?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}
