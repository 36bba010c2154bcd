//! Redis URLs → where and how to connect: `redis://` (plain TCP), `rediss://` (TLS, see
//! [`crate::RedisTls`]), `redis+unix://` / `unix://` (a local socket, one plain node
//! only). The user name, password and database number of the URL go with every node.

use crate::error::{redact_url, ConnectError};
use redis::{ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo};

/// One parsed URL.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `host:port`, or the socket path.
    pub addr: Address,
    /// `rediss://`.
    pub tls: bool,
    /// Credentials and database.
    pub redis: RedisConnectionInfo,
}

/// Where a node listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket (one plain node only).
    Unix(std::path::PathBuf),
}

impl Endpoint {
    /// Parses `url`; the error says what is wrong (password redacted).
    pub(crate) fn parse(url: &str) -> Result<Endpoint, ConnectError> {
        let invalid = |reason: String| ConnectError::InvalidUrl {
            url: redact_url(url),
            reason,
        };
        let (tls, plain) = match url.strip_prefix("rediss://") {
            Some(rest) => (true, format!("redis://{rest}")),
            None => (false, url.to_string()),
        };
        if tls && plain.contains('#') {
            return Err(invalid(
                "a URL fragment (such as #insecure) is not supported: certificates are always verified (give redis_tls_ca_file or redis_tls_server_name instead)".into(),
            ));
        }
        let info = plain.as_str().into_connection_info().map_err(|e| {
            invalid(format!(
                "{e}: expected redis://[user:password@]host:port[/db] or rediss://…"
            ))
        })?;
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) if host.contains(':') => {
                Address::Tcp(format!("[{host}]:{port}"))
            }
            ConnectionAddr::Tcp(host, port) => Address::Tcp(format!("{host}:{port}")),
            ConnectionAddr::Unix(path) => Address::Unix(path.clone()),
            other => return Err(invalid(format!("unsupported address {other:?}"))),
        };
        // Every connection opens with AUTH (if any) and SELECT (if db ≠ 0) only: no
        // CLIENT SETINFO, so an ACL user needs no CLIENT rights.
        let redis = info.redis_settings().clone().set_skip_set_lib_name();
        Ok(Endpoint { addr, tls, redis })
    }

    /// `host:port` of a TCP endpoint (a cluster seed), else an error naming the URL.
    pub(crate) fn tcp_addr(&self, url: &str) -> Result<&str, ConnectError> {
        match &self.addr {
            Address::Tcp(a) => Ok(a),
            Address::Unix(_) => Err(ConnectError::InvalidUrl {
                url: redact_url(url),
                reason: "a Unix socket can only name one plain Redis, not a cluster seed".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_credentials_and_databases() {
        let e = Endpoint::parse("rediss://app:s3cret@redis.example:6380/2").unwrap();
        assert!(e.tls);
        assert_eq!(e.addr, Address::Tcp("redis.example:6380".into()));
        assert_eq!(e.redis.username(), Some("app"));
        assert_eq!(e.redis.password(), Some("s3cret"));
        assert_eq!(e.redis.db(), 2);
        let e = Endpoint::parse("redis://:pw@127.0.0.1").unwrap();
        assert!(!e.tls);
        assert_eq!(e.addr, Address::Tcp("127.0.0.1:6379".into()));
        assert_eq!(e.redis.username(), None);
        assert_eq!(e.redis.password(), Some("pw"));
    }

    #[test]
    fn refuses_what_cannot_work_with_a_clear_reason() {
        for bad in [
            "http://h:1",
            "redis://",
            "rediss://h:1#insecure",
            "redis://u:secret@h:1/notadb",
        ] {
            let e = Endpoint::parse(bad).unwrap_err();
            assert!(e.is_permanent(), "{bad}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }
}
