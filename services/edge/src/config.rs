//! The edge's knobs.

use sluice_protocol::{Action, Limits};
use std::time::Duration;

/// How the edge serves connections. [`Default`] gives production-sensible values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Most connections open at once (default 4096). A new connection beyond it closes the
    /// connection idle the longest (Postfix reconnects when it needs one); only when every
    /// connection has a request in flight does it wait in the listen backlog. `0` is
    /// treated as `1`.
    pub max_connections: usize,
    /// Most connections open at once from one client address (default 512; Unix-socket
    /// clients are not limited). A new connection beyond it closes that client's connection
    /// idle the longest, or, when all of them are busy, is closed itself. `0` is treated as
    /// `1`.
    pub max_connections_per_client: usize,
    /// How long a connection may stay without a complete request before it is closed
    /// quietly (default 300 s, Postfix's `smtpd_policy_service_max_idle`). Only a complete
    /// request starts it over: stray blank lines do not.
    pub idle_timeout: Duration,
    /// How long a started request may take to arrive completely, and a reply to be written,
    /// before the connection is logged and closed (default 30 s).
    pub busy_timeout: Duration,
    /// How long the engine may take to decide one request (default 1 s, the roles'
    /// `request_deadline_ms` default). On overrun the request is answered with
    /// [`EdgeConfig::fallback_action`].
    pub request_deadline: Duration,
    /// Hard caps on request framing.
    pub limits: Limits,
    /// The answer for requests that cannot be evaluated (e.g. missing `client_address`) and
    /// for deadline overruns. Default `DEFER_IF_PERMIT 4.3.0 Policy service unavailable, try
    /// again later`.
    pub fallback_action: Action,
    /// On shutdown, how long requests in flight get to finish before their connections are
    /// dropped (default 10 s).
    pub shutdown_grace: Duration,
    /// Connection worker threads. 0 (the default) serves connections on the caller's
    /// runtime. N > 0 starts N single-threaded runtimes, each owning the connections handed
    /// to it (round-robin), so a request is read, decided and answered on one thread without
    /// work-stealing or cross-thread wake-ups. That saves a little CPU on an otherwise idle
    /// machine, but a connection then waits whenever its thread is not scheduled: with the
    /// CPUs shared (the load generator, Postfix itself), p99 grew from ~1 ms to ~4.5 ms in
    /// `docs/benchmarks.md`, so 0 is the default.
    pub worker_threads: usize,
    /// How the lookups of modules that need DNS (CheckHelo, CheckSPF) are answered: name
    /// servers, the per-request lookup time, the cache. Only requests whose policies need a
    /// lookup ask anything.
    pub dns: sluice_dns::DnsConfig,
}

impl EdgeConfig {
    /// The default fallback action.
    pub fn default_fallback_action() -> Action {
        Action::DeferIfPermit(Some(
            "4.3.0 Policy service unavailable, try again later".into(),
        ))
    }
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            max_connections: 4096,
            max_connections_per_client: 512,
            idle_timeout: Duration::from_secs(300),
            busy_timeout: Duration::from_secs(30),
            request_deadline: Duration::from_secs(1),
            limits: Limits::default(),
            fallback_action: EdgeConfig::default_fallback_action(),
            shutdown_grace: Duration::from_secs(10),
            worker_threads: 0,
            dns: sluice_dns::DnsConfig::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_fallback_defers_if_permit() {
        let c = EdgeConfig::default();
        assert_eq!(
            c.fallback_action.to_string(),
            "DEFER_IF_PERMIT 4.3.0 Policy service unavailable, try again later"
        );
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.max_connections, 4096);
        assert_eq!(c.max_connections_per_client, 512);
    }
}
