//! Runtime settings of the quota service.

use crate::security::Security;
use std::time::Duration;

/// Settings of [`crate::serve`].
#[derive(Debug, Clone)]
pub struct QuotaConfig {
    /// How often the backing state is probed for `grpc.health.v1` (default 1 s).
    pub probe_interval: Duration,
    /// How long one probe may take before it counts as failed (default 500 ms).
    pub probe_timeout: Duration,
    /// Upper bound on one `Apply` on the server side (default 1 s); past it the caller gets
    /// `DEADLINE_EXCEEDED`. The batch itself still runs to completion (see
    /// [`crate::service`]). Callers normally give up earlier with their own deadline.
    pub apply_timeout: Duration,
    /// After the shutdown signal, how long in-flight RPCs get to finish before connections
    /// are dropped (default 5 s).
    pub drain_timeout: Duration,
    /// TLS and client authentication of the listener (default: none).
    pub security: Security,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            probe_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_millis(500),
            apply_timeout: Duration::from_secs(1),
            drain_timeout: Duration::from_secs(5),
            security: Security::default(),
        }
    }
}
