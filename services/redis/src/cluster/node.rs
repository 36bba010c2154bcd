//! One Redis node: a lazily opened multiplexed connection that is dropped after a
//! connection error and opened again by the next call. A call is sent once; nothing here
//! ever resends.

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, ConnectionInfo, RedisError, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How to reach nodes: the seed URL's settings (credentials, database) and the timeouts.
#[derive(Clone)]
pub(crate) struct Connector {
    info: ConnectionInfo,
    config: AsyncConnectionConfig,
}

impl Connector {
    /// Nodes are reached like `info` (only the address changes), with `timeout` for
    /// connecting and for every reply.
    pub(crate) fn new(info: ConnectionInfo, timeout: Duration) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Connector { info, config }
    }

    /// The node at `addr` (`host:port`); not connected yet.
    pub(crate) fn node(&self, addr: &str) -> Result<Node, RedisError> {
        let (host, port) = split_addr(addr).ok_or_else(|| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad node address"))
        })?;
        let info = self
            .info
            .clone()
            .set_addr(ConnectionAddr::Tcp(host.to_string(), port));
        Ok(self.node_at(addr.to_string(), Client::open(info)?))
    }

    /// The node `info` describes, named `addr`.
    pub(crate) fn node_at(&self, addr: String, client: Client) -> Node {
        Node {
            addr,
            client,
            config: self.config.clone(),
            live: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }
}

/// `host:port` (the host may be an IPv6 address) → its parts.
pub(crate) fn split_addr(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((host, port.parse().ok()?))
}

/// A node and its connection, if open.
pub(crate) struct Node {
    addr: String,
    client: Client,
    config: AsyncConnectionConfig,
    live: Mutex<Option<Live>>,
    /// Held while connecting, so concurrent calls share one new connection.
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// An open connection and which one it is.
#[derive(Clone)]
struct Live {
    id: u64,
    conn: MultiplexedConnection,
}

impl Node {
    /// `host:port`.
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    /// The host part of the address.
    pub(crate) fn host(&self) -> &str {
        split_addr(&self.addr).map_or(&self.addr, |(h, _)| h)
    }

    /// Sends `pipe` once and returns every reply, server errors included (as
    /// [`Value::ServerError`]). An `Err` is a connection error or a timeout: the commands
    /// may or may not have run. After a connection error the connection is dropped and the
    /// next call opens a new one; after a timeout it is kept (its late replies are
    /// discarded in order).
    pub(crate) async fn send(&self, pipe: &redis::Pipeline) -> Result<Vec<Value>, RedisError> {
        self.send_on(pipe).await.map(|(_, replies)| replies)
    }

    /// [`Node::send`], also saying which of the node's connections carried it (a `WAIT`
    /// proves only writes sent on its own connection).
    pub(crate) async fn send_on(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<(u64, Vec<Value>), RedisError> {
        let Live { id, mut conn } = self.connection().await?;
        match conn.send_packed_commands(pipe, 0, pipe.len()).await {
            Ok(replies) => Ok((id, replies)),
            Err(e) => {
                if !e.is_timeout() {
                    self.discard(id);
                }
                Err(e)
            }
        }
    }

    fn current(&self) -> Option<Live> {
        self.live.lock().expect("node lock").clone()
    }

    async fn connection(&self) -> Result<Live, RedisError> {
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let _connecting = self.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        let live = Live {
            id: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            conn,
        };
        *self.live.lock().expect("node lock") = Some(live.clone());
        tracing::debug!(node = %self.addr, "Connected to Redis node");
        Ok(live)
    }

    /// Drops connection `id` if it is still the current one.
    fn discard(&self, id: u64) {
        let mut live = self.live.lock().expect("node lock");
        if live.as_ref().is_some_and(|l| l.id == id) {
            *live = None;
            tracing::debug!(node = %self.addr, "Dropped the connection to a Redis node");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_addr;

    #[test]
    fn splits_addresses() {
        assert_eq!(split_addr("127.0.0.1:7000"), Some(("127.0.0.1", 7000)));
        assert_eq!(split_addr("::1:7000"), Some(("::1", 7000)));
        assert_eq!(
            split_addr("redis.example:6379"),
            Some(("redis.example", 6379))
        );
        assert_eq!(split_addr("nope"), None);
        assert_eq!(split_addr("h:99999"), None);
    }
}
