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
    /// The Redis server is older than [`crate::MIN_REDIS_VERSION`].
    #[error("Redis {found} is too old: Sluice needs Redis {minimum} or newer (its counter script reads TIME and then writes, which older versions refuse): upgrade Redis")]
    TooOld {
        /// The `redis_version` the server reported.
        found: String,
        /// The oldest version supported.
        minimum: String,
    },
    /// `INFO server` named no `redis_version`.
    #[error(
        "Redis answered INFO server without a redis_version: is it a Redis server (5.0 or newer)?"
    )]
    NoVersion,
    /// Redis did not answer within the configured timeout.
    #[error("cannot connect to Redis: timed out")]
    Timeout,
}

impl ConnectError {
    /// Whether connecting again later may succeed (Redis was unreachable, slow or failing),
    /// as opposed to settings or a server that cannot work (no URL, a bad prefix, a Redis
    /// older than [`crate::MIN_REDIS_VERSION`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, ConnectError::Redis(_) | ConnectError::Timeout)
    }
}
