//! What every Sluice role shares at run time:
//!
//! - [`telemetry`]: one [`telemetry::init`] for logs (plain or JSON, to stderr or syslog)
//!   and OpenTelemetry traces (OTLP over gRPC, off by default, sampled).
//! - [`metrics`]: the Prometheus recorder, the metric names ([`metrics::names`]) and their
//!   descriptions; the request path records through pre-registered `metrics` handles.
//! - [`http`]: `/metrics`, `/healthz` and `/readyz` as an axum router, served with a
//!   connection cap and an idle timeout ([`http::serve`]).
//! - [`ratelimit`]: warnings about repeated conditions, at most one per interval with the
//!   count suppressed ([`warn_limited!`]).
//! - [`propagation`]: W3C trace context in gRPC metadata (edge → quota service).
//! - [`syslog`]: RFC 3164 lines to the local syslog socket (`/dev/log`), facility mail.
//! - [`gathered`]: log lines to stderr, gathered and written by a background thread.
//!
//! The request path pays for tracing only when it is on: [`telemetry::traces_enabled`] is
//! one relaxed atomic load, and request spans are only created when it returns true.
#![forbid(unsafe_code)]

pub mod gathered;
pub mod http;
pub mod metrics;
pub mod propagation;
pub mod ratelimit;
pub mod syslog;
pub mod telemetry;

pub use http::{router, ReadyCheck};

pub use telemetry::{init, traces_enabled, LogFormat, LogTarget, Telemetry, TelemetryConfig};
/// For [`warn_limited!`]: callers need no `tracing` dependency of their own.
#[doc(hidden)]
pub use tracing as __tracing;
