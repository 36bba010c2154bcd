//! The gRPC API between Sluice edges and the quota service: package `sluice.quota.v1`
//! (`proto/sluice/quota/v1/quota.proto`), generated with tonic/prost at build time, plus the
//! conversions between its messages and the engine's [`sluice_engine::CounterBatch`] /
//! [`sluice_engine::CounterReply`].
//!
//! One `Apply` RPC carries all counter work of one policy request; `ApplyMany` carries the
//! batches of several requests that waited at the same time on one edge connection, each
//! answered on its own. Per-message sessions
//! (END-OF-MESSAGE may arrive on another edge) live behind the quota service's state, so
//! edges stay stateless.
//!
//! [`auth`] holds the bearer-token interceptors both sides of the link use.
//!
//! This crate holds types, pure conversions and the token check only: no server, no client
//! logic, no I/O.
#![forbid(unsafe_code)]

pub mod auth;
mod checkhelo;
mod convert;
pub mod counters;
mod greylisting;
pub mod held;

pub use convert::{op_to_wire, ConvertError};

/// Generated code of `sluice.quota.v1`: messages, the `Quota` client and server.
pub mod v1 {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    tonic::include_proto!("sluice.quota.v1");
}

/// The gRPC service name of the quota service, as used by `grpc.health.v1`.
pub const QUOTA_SERVICE_NAME: &str = "sluice.quota.v1.Quota";
