//! Errors of setting up a [`crate::RedisState`].

/// Why [`crate::RedisState::connect`] (or [`crate::RedisState::start`]) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// No Redis URL was given.
    #[error("no Redis URL given")]
    NoUrls,
    /// The key prefix contains `{` or `}` (it would break the cluster hash tags).
    #[error("invalid Redis key prefix {0:?}: it must not contain '{{' or '}}'")]
    InvalidPrefix(String),
    /// A URL cannot be used (syntax, scheme, or a cluster seed that is not a TCP address).
    #[error("invalid Redis URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL, password redacted.
        url: String,
        /// What is wrong and what to give instead.
        reason: String,
    },
    /// The TLS settings cannot be used (a file unreadable or not PEM, a bad server name).
    #[error("Redis TLS settings: {0}")]
    Tls(String),
    /// Redis refused the credentials of the URL (`AUTH`).
    #[error("Redis refused the user name or password of the URL: {0}: check them (redis://user:password@host:port) and the user's ACL")]
    Auth(String),
    /// Redis refused or failed.
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
    /// Whether trying again can never help: the settings are wrong (the caller should stop
    /// with a configuration error instead of retrying).
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            ConnectError::NoUrls
                | ConnectError::InvalidPrefix(_)
                | ConnectError::InvalidUrl { .. }
                | ConnectError::Tls(_)
        )
    }
}

/// `url` with the password replaced by `***`.
pub(crate) fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                "***".to_string()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        assert_eq!(
            redact_url("rediss://u:secret@h:1/0"),
            "rediss://u:***@h:1/0"
        );
        assert_eq!(redact_url("redis://secret@h:1"), "redis://***@h:1");
        assert_eq!(redact_url(":secret@x"), ":secret@x");
    }
}
