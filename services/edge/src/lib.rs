//! The edge: the Postfix policy-protocol server.
//!
//! It owns sockets, connection limits, idle and busy timeouts, the per-request deadline, the
//! fallback action and graceful shutdown. Bytes are framed by [`sluice_protocol`], typed into a
//! [`sluice_protocol::PolicyRequest`] and handed to [`sluice_engine::Engine::decide`]; the
//! engine never sees bytes or sockets. The edge never touches SQL on the request path.
//!
//! Layout:
//! - [`config`]: [`EdgeConfig`], the knobs and their defaults.
//! - [`listen`]: [`ListenAddr`] (`127.0.0.1:10031`, `[::1]:10031`, `unix:/path`) and
//!   [`Listener`] (TCP or Unix socket, stale socket files removed when binding).
//! - [`server`]: [`run`], the accept loop and graceful shutdown.
//! - `admission`: the connection caps (total and per client address) and eviction of the
//!   oldest idle connection to make room.
//! - `connection`: one connection, one request at a time, with timeouts.
//! - [`history_sink`]: refusals and sender counts handed to a background writer (never
//!   waiting on the request path); [`accounting_sink`]: Accounting's counts, likewise.
//! - [`verdict_log`]: the Policyd-style `module=Quotas, action=reject, ...` log lines.
//!
//! Postfix's rules shape the error handling: a request that cannot be evaluated (say, without
//! `client_address`) is answered with the fallback action and the connection is kept; bytes
//! that are not a request (framing errors) are logged and the connection is closed without a
//! reply, since the protocol has no way to answer them and Postfix retries.
#![forbid(unsafe_code)]

pub mod accounting_sink;
mod admission;
pub mod config;
mod connection;
pub mod error;
pub mod history_sink;
pub mod hold_sink;
pub mod listen;
mod metrics;
pub mod server;
mod shutdown;
pub mod verdict_log;
mod workers;

pub use config::EdgeConfig;
pub use error::EdgeError;
pub use listen::{ListenAddr, Listener};
pub use server::run;
