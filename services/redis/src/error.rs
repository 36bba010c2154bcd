//! Errors of setting up a [`crate::RedisState`].

/// Why [`crate::RedisState::connect`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No Redis URL was given.
    #[error("no Redis URL given")]
    NoUrls,
    /// The key prefix contains `{` or `}` (it would break the cluster hash tags).
    #[error("invalid Redis key prefix {0:?}: it must not contain '{{' or '}}'")]
    InvalidPrefix(String),
    /// A URL was malformed or Redis refused or failed.
    #[error("cannot connect to Redis: {0}")]
    Redis(String),
    /// Redis did not answer within the configured timeout.
    #[error("cannot connect to Redis: timed out")]
    Timeout,
}
