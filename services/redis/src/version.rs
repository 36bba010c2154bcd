//! The oldest Redis Sluice works with, and the check at connect.
//!
//! Why 5.0: the counter script reads Redis's own clock (`TIME`) and then writes
//! (`HINCRBY`, `HDEL`, `PEXPIRE`). Before Redis 5.0 scripts were replicated verbatim by
//! default, and a write after a non-deterministic command was refused ("Write commands not
//! allowed after non deterministic commands") unless the script switched to effects
//! replication first; since 5.0 effects replication is the default. One call of the counter
//! script touches counters of several slots of one node, passed as arguments (see
//! `crate::coalesce`): Redis 5 and 6 check only that the node serves each key, and Redis 7
//! also lets scripts without a `#!lua` flags line touch several slots (a script with flags
//! would need `allow-cross-slot-keys`). Everything else sent is
//! older: `EVALSHA`/`SCRIPT LOAD` and `PEXPIRE` (2.6), `MULTI`/`EXEC`, `HGETALL`,
//! `HSETNX`, `SMEMBERS`, `SADD`, `DEL`, `PING`, `INFO`, and for a cluster `CLUSTER SLOTS`
//! and `ASKING` (3.0). Redis 5.0 is checked with `INFO server` (`redis_version`) when a
//! [`crate::RedisState`] connects: on the node of the first slot in a cluster (a cluster's
//! nodes run one version, except during a rolling upgrade).

use crate::cluster::request::Request;
use crate::cluster::router::Router;
use crate::conn::parse;
use crate::error::ConnectError;
use std::fmt;
use std::time::Duration;

/// A Redis version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RedisVersion {
    /// `7` of 7.0.15.
    pub major: u32,
    /// `0` of 7.0.15.
    pub minor: u32,
    /// `15` of 7.0.15.
    pub patch: u32,
}

/// The oldest Redis the scripts and commands work with (see the module documentation).
pub const MIN_REDIS_VERSION: RedisVersion = RedisVersion {
    major: 5,
    minor: 0,
    patch: 0,
};

impl fmt::Display for RedisVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl RedisVersion {
    /// Parses `7.0.15` (a missing minor or patch number is 0; anything after a number's
    /// digits, as in `7.2.4-rc1`, is ignored).
    pub fn parse(text: &str) -> Option<RedisVersion> {
        let mut parts = text.trim().split('.');
        let mut number = |required: bool| -> Option<u32> {
            match parts.next() {
                Some(p) => {
                    let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                }
                None if required => None,
                None => Some(0),
            }
        };
        Some(RedisVersion {
            major: number(true)?,
            minor: number(false)?,
            patch: number(false)?,
        })
    }

    /// The `redis_version` field of an `INFO` (`INFO server`) reply.
    pub fn from_info(info: &str) -> Option<RedisVersion> {
        info.lines()
            .find_map(|l| l.trim().strip_prefix("redis_version:"))
            .and_then(RedisVersion::parse)
    }
}

/// Checks an `INFO server` reply: the version when it is [`MIN_REDIS_VERSION`] or newer,
/// else the error that says what to do.
pub fn check_info(info: &str) -> Result<RedisVersion, ConnectError> {
    let version = RedisVersion::from_info(info).ok_or(ConnectError::NoVersion)?;
    if version < MIN_REDIS_VERSION {
        return Err(ConnectError::TooOld {
            found: version.to_string(),
            minimum: MIN_REDIS_VERSION.to_string(),
        });
    }
    Ok(version)
}

/// Asks the node of the first slot (the only node, for a single Redis) for its version and
/// checks it: part of every connection attempt, so a patient start keeps saying why it
/// cannot serve until Redis is upgraded.
pub(crate) async fn require_supported(
    router: &Router,
    timeout: Duration,
) -> Result<RedisVersion, ConnectError> {
    let request = Request::single("", redis::cmd("INFO").arg("server").clone());
    let replies = tokio::time::timeout(timeout, router.call(&request))
        .await
        .map_err(|_| ConnectError::Timeout)?
        .map_err(|e| ConnectError::Redis(format!("INFO server: {e}")))?;
    let info: String = replies
        .into_iter()
        .next()
        .map(parse)
        .transpose()
        .map_err(|e| ConnectError::Redis(format!("INFO server: {e}")))?
        .unwrap_or_default();
    let version = check_info(&info)?;
    tracing::debug!(%version, "Redis version supported");
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> String {
        format!("# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\nredis_mode:standalone\r\n")
    }

    #[test]
    fn versions_parse_and_order() {
        let v = |s| RedisVersion::parse(s).unwrap();
        assert_eq!(v("7.0.15").to_string(), "7.0.15");
        assert_eq!(v("5"), v("5.0.0"));
        assert_eq!(v("7.2.4-rc1"), v("7.2.4"));
        assert!(v("4.0.14") < MIN_REDIS_VERSION);
        assert!(v("5.0.0") >= MIN_REDIS_VERSION);
        assert!(v("10.0.0") > v("9.9.9"));
        assert!(v("5.0.10") > v("5.0.9"), "numbers, not text");
        assert_eq!(RedisVersion::parse(""), None);
        assert_eq!(RedisVersion::parse("x.1"), None);
    }

    #[test]
    fn too_old_versions_are_refused_saying_what_is_needed() {
        for old in ["2.8.24", "3.2.12", "4.0.14"] {
            let e = check_info(&info(old)).unwrap_err();
            assert_eq!(
                e,
                ConnectError::TooOld {
                    found: old.into(),
                    minimum: "5.0.0".into()
                }
            );
            let text = e.to_string();
            assert!(
                text.contains(old) && text.contains("5.0.0 or newer"),
                "{text}"
            );
            assert!(text.contains("upgrade Redis"), "{text}");
        }
        for ok in ["5.0.0", "6.2.14", "7.0.15", "7.2.4"] {
            assert_eq!(check_info(&info(ok)).unwrap().to_string(), ok);
        }
        assert_eq!(
            check_info("# Server\r\nos:Linux\r\n"),
            Err(ConnectError::NoVersion)
        );
    }

    /// The text of the local redis-server (its `INFO server` as the command line tool
    /// prints it), when there is one.
    #[test]
    fn the_local_redis_server_is_supported() {
        let Ok(out) = std::process::Command::new("redis-server")
            .arg("--version")
            .output()
        else {
            return;
        };
        // "Redis server v=7.0.15 sha=..."
        let text = String::from_utf8_lossy(&out.stdout);
        let version = text
            .split_whitespace()
            .find_map(|w| w.strip_prefix("v="))
            .expect("redis-server --version names its version");
        assert_eq!(check_info(&info(version)).unwrap().to_string(), version);
    }
}
