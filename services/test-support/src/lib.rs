//! Test harnesses for Sluice (a dev-dependency only).
//!
//! - [`TestServer`]: compiles a policy set, builds an in-memory engine with a
//!   [`ManualClock`], and runs the real edge server ([`sluice_edge::run`]) on `127.0.0.1:0`.
//! - [`PolicyClient`]: a raw policy-protocol client speaking bytes over TCP or a Unix socket,
//!   as Postfix's smtpd does.
//! - [`Request`]: a request with the attributes Postfix really sends, so tests stay short.
//! - [`Process`], [`PrivatePostgres`]: real long-running processes (the `sluice` roles, a
//!   private PostgreSQL server) that tests kill, stop and restart; [`start_front`],
//!   [`start_quota`] ([`start_quota_with`]) and [`import_policies`] start the roles and load policies.
//! - [`RedisCluster`], [`RedisServer`]: real Redis processes; [`CuttingProxy`] loses a
//!   Redis reply on demand.
//! - [`TestPki`]: a throw-away CA with server and client certificates for TLS tests.
//! - [`dns::DnsServer`]: a real authoritative DNS server on 127.0.0.1 serving the records a
//!   test gives it (for CheckHelo and CheckSPF), counting queries.
//!
//! ```no_run
//! # async fn demo() {
//! use sluice_test_support::{rcpt, TestServer};
//! let server = TestServer::start(Default::default()).await;
//! let mut client = server.client().await;
//! assert_eq!(client.send(&rcpt("a@example.com", "b@example.org", "192.0.2.1", "i1")).await, "DUNNO");
//! server.shutdown().await;
//! # }
//! ```
#![forbid(unsafe_code)]

mod blocking;
mod client;
mod http;
mod pki;
mod processes;
mod proxy;
mod redis_cluster;
mod request;
mod roles;
mod server;

pub mod dns;
pub mod policies;

pub use blocking::{ask_blocking, http_get, output_text};
pub use client::PolicyClient;
pub use http::{http, HttpReply};
pub use pki::{CertFiles, TestPki};
pub use processes::{free_port, listening, wait_listening, PrivatePostgres, Process};
pub use proxy::CuttingProxy;
pub use redis_cluster::{
    AclUser, NodeInfo, RedisCluster, RedisOptions, RedisServer, RedisTlsFiles,
    CLUSTER_NODE_TIMEOUT_MS,
};
pub use request::{end_of_message, rcpt, Request};
pub use roles::{import_policies, start_front, start_quota, start_quota_with, RoleProcess};
pub use server::{TestServer, TestServerBuilder};
pub use sluice_engine::ManualClock;
