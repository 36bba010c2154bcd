//! The Postfix SMTPD policy delegation protocol, as bytes and as types.
//!
//! Layers, each in its own module:
//! - [`codec`]: framing. Turns a byte buffer into [`RawRequest`]s (`name=value` lines ended by a
//!   blank line) and enforces hard caps on line length, attribute count and request size.
//! - [`request`]: the typed [`PolicyRequest`] built from a [`RawRequest`], validated.
//! - [`action`]: the [`Action`] sent back (`action=...` plus a blank line).
//!
//! This crate must not depend on sockets, async runtimes, databases or RPC: it is pure data
//! transformation, so it can be fuzzed and unit-tested in isolation.
// `deny`, not `forbid`: `scan::masks` calls SSE2 code, the only `unsafe` block (see there).
#![deny(unsafe_code)]

pub mod action;
pub mod codec;
pub mod request;
mod scan;

pub use action::{Action, ParseActionError};
pub use codec::{FrameError, Limits, RawRequest, RequestDecoder};
pub use request::{PolicyRequest, ProtocolState, RequestError};
