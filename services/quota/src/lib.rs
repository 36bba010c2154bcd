//! The quota service of cluster mode: a gRPC server (`sluice.quota.v1.Quota`) that runs each
//! edge's counter batch on a [`sluice_engine::SharedState`] — in production the Redis (Cluster)
//! state, in tests the in-process [`sluice_engine::MemoryState`] — and answers with its
//! reply. Edges stay stateless: per-message sessions live behind the state.
//!
//! Layout:
//! - [`server`] — [`serve`] — the tonic server on a bound listener, health reporting and
//!   graceful shutdown.
//! - [`service`] — the `Apply` and `ApplyMany` handlers (one span per RPC).
//! - [`held`] — the held-message calls (DELAY quotas' ledger, kept in Redis).
//! - [`health`] — the state probe that drives `grpc.health.v1`.
//! - [`error`] — [`ServiceError`] and the one mapping to `tonic::Status`.
//! - [`security`] — TLS, mTLS and the bearer-token check of the listener.
//! - [`config`] — [`QuotaConfig`].
//!
//! This crate knows nothing about Redis, SQL or the policy protocol: it depends on the
//! engine's `State` trait and the generated API only.
#![forbid(unsafe_code)]

pub mod config;
pub mod error;
pub mod health;
pub mod held;
pub mod security;
pub mod server;
pub mod service;

pub use config::QuotaConfig;
pub use error::{status_from_error, ServeError, ServiceError};
pub use security::{Security, ServerTls};
pub use server::{serve, serve_with_live};
pub use service::QuotaService;
