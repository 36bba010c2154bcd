//! Settings of [`crate::RemoteState`].

use crate::batch::BatchLimits;
use crate::error::RemoteError;
use crate::security::ClientSecurity;
use std::time::Duration;

/// Settings of the quota-service client.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The whole budget of one batch, retry included (default 200 ms). Past it the batch
    /// fails with `StateError::Timeout` and the engine answers its fallback action. Keep it
    /// below the edge's request deadline.
    pub deadline: Duration,
    /// How long a TCP connect to one endpoint may take (default 50 ms).
    pub connect_timeout: Duration,
    /// How often every endpoint's `grpc.health.v1` is probed (default 1 s): an endpoint
    /// marked down comes back once it answers SERVING.
    pub probe_interval: Duration,
    /// How often DNS names among the endpoints are re-resolved (default 5 s).
    pub resolve_interval: Duration,
    /// Whether the local over-limit cache is used (default on; see [`crate::cache`]).
    pub over_limit_cache: bool,
    /// Most entries the over-limit cache holds (default 100,000; the oldest is evicted).
    pub over_limit_cache_capacity: usize,
    /// How calls waiting at the same time are sent together (see [`crate::batch`]).
    pub batch: BatchLimits,
    /// Leases: a take sent to the quota service asks for this many times its cost more,
    /// admitted here afterwards without a call (doubled for a counter whose lease ran out,
    /// up to 1,024 times; the service grants none near the limit). 0 turns leases and
    /// edge-held message sessions off: every batch is one call. Default 64.
    pub lease_multiple: u64,
    /// Most message sessions this edge holds (default 200,000); past it, new messages keep
    /// their sessions in the shared store as without leases.
    pub max_edge_sessions: usize,
    /// How long a message session is kept without END-OF-MESSAGE (default 30 minutes).
    pub session_ttl: Duration,
    /// An END-OF-MESSAGE for a message this edge holds no session of, whose stored session
    /// is not found, asks once more after this long (default 50 ms): the edge that carried
    /// its RCPTs may be storing it right now. 0: never.
    pub session_settle: Duration,
    /// How often expired leases are given back and sessions stored (default 50 ms).
    pub flush_interval: Duration,
    /// TLS for `https://` endpoints and the bearer token (default: neither).
    pub security: ClientSecurity,
}

impl Default for RemoteConfig {
    fn default() -> Self {
        RemoteConfig {
            deadline: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(50),
            probe_interval: Duration::from_secs(1),
            resolve_interval: Duration::from_secs(5),
            over_limit_cache: true,
            over_limit_cache_capacity: 100_000,
            batch: BatchLimits::default(),
            lease_multiple: 64,
            max_edge_sessions: 200_000,
            session_ttl: Duration::from_secs(30 * 60),
            session_settle: Duration::from_millis(50),
            flush_interval: Duration::from_millis(50),
            security: ClientSecurity::default(),
        }
    }
}

impl RemoteConfig {
    /// Checks every setting, reporting all problems at once.
    pub fn validate(&self) -> Result<(), RemoteError> {
        let mut problems = Vec::new();
        for (name, d) in [
            ("deadline", self.deadline),
            ("connect_timeout", self.connect_timeout),
            ("probe_interval", self.probe_interval),
            ("resolve_interval", self.resolve_interval),
            ("session_ttl", self.session_ttl),
            ("flush_interval", self.flush_interval),
        ] {
            if d.is_zero() {
                problems.push(format!("{name} must be greater than zero"));
            }
        }
        if self.over_limit_cache && self.over_limit_cache_capacity == 0 {
            problems
                .push("over_limit_cache_capacity must be at least 1 when the cache is on".into());
        }
        if self.session_settle >= self.deadline {
            problems.push("session_settle must be shorter than deadline".into());
        }
        if self.batch.max_batch == 0 || self.batch.max_in_flight == 0 {
            problems.push("batch.max_batch and batch.max_in_flight must be at least 1".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RemoteError::InvalidConfig(problems.join("; ")))
        }
    }
}
