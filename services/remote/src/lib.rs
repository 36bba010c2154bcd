//! [`RemoteState`]: the engine's [`sluice_engine::State`] in cluster mode — each batch is one
//! `sluice.quota.v1.Quota/Apply` call to a quota service.
//!
//! Layout:
//! - [`state`] — [`RemoteState`]: the deadline, one retry on another endpoint when the
//!   call provably never reached a service, error mapping.
//! - [`batch`] — the calls waiting on one connection at the same time go out together in
//!   one `ApplyMany`.
//! - [`pool`] — the endpoints: URL parsing, DNS resolution, load balancing (power of two
//!   choices by in-flight calls), down marking.
//! - [`maintain`] — the background task: re-resolving names, probing `grpc.health.v1`.
//! - [`cache`] — the local over-limit cache answering known refusals without a call.
//! - [`lease`] — units charged ahead for this edge and admitted locally; [`sessions`] —
//!   message sessions held by this edge; the batch path using both (`leasing`) and the
//!   background sender of lease returns and sessions to store (`flush`); [`sightings`] —
//!   which counters a once-per-message take was seen on lately (the first gets no lease).
//! - [`held`] — DELAY quotas' ledger of held messages, kept by the quota services.
//! - [`security`] — TLS (`https://` endpoints), client certificates and the bearer token.
//! - [`config`] — [`RemoteConfig`]; [`error`] — [`RemoteError`] and the status mapping.
//!
//! This crate knows nothing about Redis, SQL or the policy protocol.
#![forbid(unsafe_code)]

pub mod batch;
pub mod cache;
pub mod config;
pub mod error;
mod flush;
pub mod held;
pub mod lease;
mod leasing;
pub mod live;
pub mod maintain;
pub mod pool;
pub mod security;
pub mod sessions;
pub mod sightings;
pub mod state;

pub use batch::BatchLimits;

/// Locks `m`, carrying on with the data of a holder that panicked (every table here stays
/// consistent between statements).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub use cache::OverLimitCache;
pub use config::RemoteConfig;
pub use error::{state_error_from_status, RemoteError};
pub use pool::EndpointStats;
pub use security::{ClientSecurity, ClientTls};
pub use state::RemoteState;
