//! One Redis node: a lazily opened multiplexed connection (plain TCP, TLS or a Unix
//! socket; `AUTH` and `SELECT` from the URL) that is dropped after a connection error and
//! opened again by a later call. Failed connection attempts back off (exponentially,
//! jittered, capped at [`MAX_BACKOFF`]): while a node is backing off, calls to it fail at
//! once instead of each trying again. A call is sent once; nothing here ever resends.

use crate::endpoint::Address;
use crate::tls::TlsConnector;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ErrorKind, RedisConnectionInfo, RedisError, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

/// The first wait after a failed connection attempt; it doubles with each failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest wait between two connection attempts to one node.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How to reach nodes: the seed URL's settings (credentials, database, TLS) and the
/// timeouts.
#[derive(Clone)]
pub(crate) struct Connector {
    redis: RedisConnectionInfo,
    tls: Option<TlsConnector>,
    config: AsyncConnectionConfig,
    timeout: Duration,
}

impl Connector {
    /// Nodes are reached with `redis`'s credentials and database, over TLS if `tls` is
    /// given, with `timeout` for connecting (TCP, TLS and `AUTH` together) and for every
    /// reply.
    pub(crate) fn new(
        redis: RedisConnectionInfo,
        tls: Option<TlsConnector>,
        timeout: Duration,
    ) -> Self {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(timeout));
        Connector {
            redis,
            tls,
            config,
            timeout,
        }
    }

    /// The node at `addr` (`host:port`); not connected yet.
    pub(crate) fn node(&self, addr: &str) -> Result<Node, RedisError> {
        split_addr(addr).ok_or_else(|| {
            RedisError::from((ErrorKind::InvalidClientConfig, "bad node address"))
        })?;
        Ok(self.node_at(Address::Tcp(addr.to_string())))
    }

    /// The node at `address`; not connected yet.
    pub(crate) fn node_at(&self, address: Address) -> Node {
        let addr = match &address {
            Address::Tcp(a) => a.clone(),
            Address::Unix(p) => p.display().to_string(),
        };
        Node {
            addr,
            address,
            connector: self.clone(),
            live: Mutex::new(None),
            backoff: Mutex::new(Backoff::default()),
            connecting: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            answered: AtomicU64::new(0),
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
    address: Address,
    connector: Connector,
    live: Mutex<Option<Live>>,
    backoff: Mutex<Backoff>,
    /// Held while connecting, so concurrent calls share one new connection.
    connecting: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// The id of the last connection that answered a request.
    answered: AtomicU64,
}

/// Failed connection attempts in a row, and when the next one may start.
#[derive(Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
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
            Ok(replies) => {
                self.answered.store(id, Ordering::Relaxed);
                Ok((id, replies))
            }
            Err(e) if e.is_timeout() => Err(e),
            Err(e) => {
                self.discard(id);
                // A connection that broke before its first reply (a node that accepts and
                // closes) counts as a failed attempt: the next one backs off.
                match self.answered.load(Ordering::Relaxed) == id {
                    true => Err(e),
                    false => Err(self.failed(e)),
                }
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
        self.check_backoff()?;
        let _connecting = self.connecting.lock().await;
        if let Some(live) = self.current() {
            return Ok(live);
        }
        self.check_backoff()?;
        let opened = tokio::time::timeout(self.connector.timeout, self.open()).await;
        let conn = match opened {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => return Err(self.failed(e)),
            Err(_) => {
                let e = RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to Redis node {} timed out", self.addr),
                ));
                return Err(self.failed(e));
            }
        };
        *self.backoff.lock().expect("backoff lock") = Backoff::default();
        let live = Live {
            id: self.generation.fetch_add(1, Ordering::Relaxed) + 1,
            conn,
        };
        *self.live.lock().expect("node lock") = Some(live.clone());
        tracing::debug!(node = %self.addr, "Connected to Redis node");
        Ok(live)
    }

    /// Fails at once while the node is backing off after failed connection attempts.
    fn check_backoff(&self) -> Result<(), RedisError> {
        let backoff = self.backoff.lock().expect("backoff lock");
        match backoff.retry_at {
            Some(at) if Instant::now() < at => Err(RedisError::from((
                ErrorKind::Io,
                "Redis node unreachable (backing off before the next connection attempt)",
                format!("{} after {} failed attempts", self.addr, backoff.failures),
            ))),
            _ => Ok(()),
        }
    }

    /// Records a failed connection attempt and passes its error on.
    fn failed(&self, e: RedisError) -> RedisError {
        let mut backoff = self.backoff.lock().expect("backoff lock");
        backoff.failures = backoff.failures.saturating_add(1);
        let wait = backoff_delay(backoff.failures);
        backoff.retry_at = Some(Instant::now() + wait);
        tracing::debug!(node = %self.addr, error = %e, failures = backoff.failures, wait_ms = wait.as_millis() as u64, "Cannot connect to a Redis node");
        e
    }

    /// TCP (or Unix socket), TLS if configured, then `AUTH`/`SELECT` from the URL.
    async fn open(&self) -> Result<MultiplexedConnection, RedisError> {
        match &self.address {
            Address::Tcp(addr) => {
                let (host, port) = split_addr(addr).ok_or_else(|| {
                    RedisError::from((ErrorKind::InvalidClientConfig, "bad node address"))
                })?;
                let tcp = tokio::net::TcpStream::connect((host, port)).await?;
                tcp.set_nodelay(true)?;
                match &self.connector.tls {
                    Some(tls) => self.handshake(tls.connect(host, tcp).await?).await,
                    None => self.handshake(tcp).await,
                }
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                let socket = tokio::net::UnixStream::connect(path).await?;
                self.handshake(socket).await
            }
            #[cfg(not(unix))]
            Address::Unix(_) => Err(RedisError::from((
                ErrorKind::InvalidClientConfig,
                "Unix sockets are not supported on this platform",
            ))),
        }
    }

    async fn handshake<S>(&self, stream: S) -> Result<MultiplexedConnection, RedisError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (conn, driver) = MultiplexedConnection::new_with_config(
            &self.connector.redis,
            stream,
            self.connector.config.clone(),
        )
        .await?;
        tokio::spawn(driver);
        Ok(conn)
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

/// The wait after `failures` failed attempts in a row: [`FIRST_BACKOFF`] doubled per
/// failure, capped at [`MAX_BACKOFF`], then between 50 % and 100 % of that (jitter, so
/// many processes do not reconnect in step).
pub(crate) fn backoff_delay(failures: u32) -> Duration {
    let full = FIRST_BACKOFF
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(MAX_BACKOFF);
    full / 2 + full.mul_f64(jitter() / 2.0)
}

/// A number in [0, 1) that differs between calls and processes (not for cryptography).
pub(crate) fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::{backoff_delay, split_addr, FIRST_BACKOFF, MAX_BACKOFF};

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

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        for failures in 1..40 {
            let full = FIRST_BACKOFF
                .saturating_mul(1 << (failures - 1).min(16))
                .min(MAX_BACKOFF);
            let d = backoff_delay(failures);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?} of {full:?}");
        }
        assert!(backoff_delay(1) <= FIRST_BACKOFF);
        assert!(backoff_delay(30) >= MAX_BACKOFF / 2);
    }
}
