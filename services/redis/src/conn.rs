//! One connection to Redis, cluster or single node, and the timeout around every call.

use crate::error::ConnectError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisError, ScriptInvocation};
use sluice_engine::StateError;
use std::future::Future;
use std::time::Duration;

/// A multiplexed connection, cheap to clone: one per process is enough.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Redis Cluster (slot-aware routing, MOVED/ASK handling, topology refresh).
    Cluster(ClusterConnection),
    /// A single non-cluster node (reconnects by itself).
    Single(ConnectionManager),
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
        if cluster {
            let client = ClusterClient::builder(urls.iter().map(String::as_str))
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(100)
                .build()
                .map_err(|e| ConnectError::Redis(e.to_string()))?;
            let conn = bounded(timeout, client.get_async_connection()).await?;
            Ok((Conn::Cluster(conn), Topology::Cluster))
        } else {
            let client = redis::Client::open(urls[0].as_str())
                .map_err(|e| ConnectError::Redis(e.to_string()))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(100));
            let conn = bounded(timeout, ConnectionManager::new_with_config(client, config)).await?;
            Ok((Conn::Single(conn), Topology::Single))
        }
    }

    /// Runs a script (EVALSHA; on NOSCRIPT the redis crate loads it and retries) within
    /// `timeout`.
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<T, StateError> {
        let call = async {
            match self.clone() {
                Conn::Cluster(mut c) => inv.invoke_async(&mut c).await,
                Conn::Single(mut c) => inv.invoke_async(&mut c).await,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(state_error(&e)),
            Err(_) => Err(StateError::Timeout),
        }
    }

    /// Runs a pipeline (routed, on a cluster, to the node of its first key) within
    /// `timeout`.
    pub(crate) async fn pipeline<T: FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
        timeout: Duration,
    ) -> Result<T, StateError> {
        let call = async {
            match self.clone() {
                Conn::Cluster(mut c) => pipe.query_async(&mut c).await,
                Conn::Single(mut c) => pipe.query_async(&mut c).await,
            }
        };
        match tokio::time::timeout(timeout, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(state_error(&e)),
            Err(_) => Err(StateError::Timeout),
        }
    }
}

/// Maps a redis error to the engine's error.
fn state_error(e: &RedisError) -> StateError {
    if e.is_timeout() {
        StateError::Timeout
    } else {
        StateError::Unavailable(e.to_string())
    }
}

/// Runs a connection attempt within `timeout`.
async fn bounded<T>(
    timeout: Duration,
    fut: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ConnectError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ConnectError::Redis(e.to_string())),
        Err(_) => Err(ConnectError::Timeout),
    }
}

/// Asks one node whether it runs in cluster mode.
async fn cluster_enabled(url: &str, timeout: Duration) -> Result<bool, ConnectError> {
    let client = redis::Client::open(url).map_err(|e| ConnectError::Redis(e.to_string()))?;
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    let mut conn = bounded(
        timeout,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await?;
    let info: String = bounded(
        timeout,
        redis::cmd("INFO").arg("cluster").query_async(&mut conn),
    )
    .await?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}
