//! The policy engine: Policyd v2's model, matched and run in memory.
//!
//! Layout:
//! - [`model`]: policy definitions as operators write them; [`compile`] validates them into a
//!   [`PolicySet`] (parsed member specs, verdicts, tracks) with [`Diagnostic`]s; [`bounds`]:
//!   the ranges every period, limit and priority must lie in.
//! - [`spec`]: member specs (IPs, CIDRs, addresses, `@domain`, `$sasl`, hostnames, `%group`,
//!   `!` negation, `any`) and their matching.
//! - [`engine`]: the module chain (AccessControl, then Quotas) over a [`PolicyRequest`]
//!   giving a [`Decision`], and [`Explanation`]s for `sluice explain`.
//! - [`window`]: the rolling-window arithmetic; [`state`]: the [`State`] trait every counter
//!   backend implements; [`memory`]: the in-process implementation.
//! - [`clock`]: time as a parameter; [`suggest`]: "did you mean ...?" for mistyped names.
//!
//! This crate does no I/O: no sockets, no databases, no async runtime. It must not depend on
//! tokio's networking, sqlx, redis or tonic.
#![forbid(unsafe_code)]

pub mod bounds;
pub mod clock;
pub mod compile;
pub mod diagnostic;
pub mod engine;
pub mod greylisting;
pub mod memory;
pub mod model;
mod scratch;
pub mod spec;
pub mod state;
pub mod suggest;
pub mod track;
pub mod verdict;
mod view;
pub mod window;

pub use clock::{Clock, ManualClock, SystemClock};
pub use compile::{compile, Compiled, PolicySet};
pub use diagnostic::{Diagnostic, Location, Severity};
pub use engine::{
    CounterLevel, Decision, Engine, EngineSettings, Explanation, ModuleVerdict, QuotaRef,
    NEAR_LIMIT_PERCENT,
};
pub use greylisting::def::{GreylistWhitelistDef, GreylistingDef};
pub use greylisting::op::{GreylistOp, GreylistReply};
pub use greylisting::record::{GreyOutcome, GreyParams};
pub use memory::snapshot::{CounterChanges, CounterSnapshot, SavedSession};
pub use memory::{MemoryState, MemoryStateSettings};
pub use model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
pub use scratch::Scratch;
pub use sluice_protocol::{Action, PolicyRequest, ProtocolState};
pub use state::{
    CounterBatch, CounterOp, CounterReply, EomRecord, LeaseGrant, LeaseReturn, LeasedReply, OpKind,
    OpResult, Outcome, SessionData, State, StateError,
};
