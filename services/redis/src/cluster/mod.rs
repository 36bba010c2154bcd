//! Our own Redis client, for a Redis Cluster or one plain node: one multiplexed
//! connection per node (concurrent requests are pipelined on it), requests routed by the
//! slot of their key, and **no resend of anything that may have run**.
//!
//! - [`slots`]: CRC16 key → slot, the slot → primary table from `CLUSTER SLOTS`;
//! - [`node`]: one node's connection, opened lazily, dropped after a connection error;
//! - [`request`]: the shapes of a request (one command, read-only commands, a
//!   transaction) and what a node's replies mean (done, `MOVED`, `ASK`, retry shortly,
//!   cluster down, `NOSCRIPT`, failed);
//! - [`router`]: the loop that sends a request, follows redirects and refreshes the
//!   topology;
//! - [`replication`]: `WAIT` after writes, shared by the writes of one flush, so a charge
//!   is acknowledged only once a replica has it.
//!
//! A request whose connection fails or times out is never sent again, because Redis may
//! have run it (a refund run twice would refund twice); only answers proving it did not
//! run (`MOVED`, `ASK`, `TRYAGAIN`, `READONLY`, `NOSCRIPT`) lead to sending it again.

pub(crate) mod node;
pub(crate) mod replication;
pub(crate) mod request;
pub(crate) mod router;
pub(crate) mod slots;

#[cfg(test)]
mod tests;

use redis::RedisError;
use sluice_engine::StateError;

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CallError {
    /// No reply within the timeout (the request may have run).
    #[error("Redis timed out")]
    Timeout,
    /// Connecting failed or the connection broke (the request may have run).
    #[error("Redis connection: {0}")]
    Connection(String),
    /// The node refused the URL's credentials (`AUTH`).
    #[error("Redis authentication: {0}")]
    Auth(String),
    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    Server(String),
    /// The request was redirected or refused too many times.
    #[error("Redis Cluster: too many redirects")]
    Redirects,
    /// No known node serves the slot (the topology is being read again).
    #[error("Redis Cluster: no node serves slot {0}")]
    NoNode(u16),
    /// The write ran, but not enough replicas confirmed it in time (`WAIT`): it is not
    /// acknowledged.
    #[error("Redis: {acked} of {wanted} replicas confirmed the write in time")]
    NotReplicated { acked: usize, wanted: usize },
}

impl CallError {
    /// A connection-level redis error.
    pub(crate) fn from_redis(e: &RedisError) -> Self {
        if e.is_timeout() {
            CallError::Timeout
        } else if e.kind() == redis::ErrorKind::AuthenticationFailed {
            CallError::Auth(e.to_string())
        } else {
            CallError::Connection(e.to_string())
        }
    }

    /// For `map_err`.
    pub(crate) fn connection(e: RedisError) -> Self {
        Self::from_redis(&e)
    }
}

impl From<CallError> for StateError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Timeout => StateError::Timeout,
            other => StateError::Unavailable(other.to_string()),
        }
    }
}
