//! The policy engine: Policyd v2's model, matched and run in memory.
//!
//! Layout:
//! - [`model`]: policy definitions as operators write them; [`compile`] validates them into a
//!   [`PolicySet`] (parsed member specs, verdicts, tracks) with [`Diagnostic`]s; [`bounds`]:
//!   the ranges every period, limit and priority must lie in.
//! - [`spec`]: member specs (IPs, CIDRs, addresses, `@domain`, `$sasl`, hostnames, `%group`,
//!   listener specs `server_port=` / `server_address=` / `policy_context=`, `!` negation,
//!   `any`) and their matching.
//! - [`caps`]: per-message caps (largest message, most recipients) and their rules.
//! - [`engine`]: runs the module chain over a [`PolicyRequest`] giving a [`Decision`], and
//!   [`Explanation`]s for `sluice explain`; [`modules`]: the modules (AccessControl, Quotas),
//!   each planning its counter ops and judging their results, and the one list of them.
//! - [`window`]: the rolling-window arithmetic; [`state`]: the [`State`] trait every counter
//!   backend implements; [`memory`]: the in-process implementation.
//! - [`clock`]: time as a parameter; [`suggest`]: "did you mean ...?" for mistyped names.
//!
//! This crate does no I/O: no sockets, no databases, no async runtime. It must not depend on
//! tokio's networking, sqlx, redis or tonic.
#![forbid(unsafe_code)]

pub mod accounting;
pub mod bounds;
pub mod caps;
pub mod checkhelo;
pub mod checkspf;
pub mod clock;
pub mod compile;
pub mod counters;
pub mod diagnostic;
pub mod engine;
pub mod greylisting;
pub mod hold;
pub mod memory;
pub mod model;
pub(crate) mod modules;
mod scratch;
pub mod spec;
pub mod state;
pub mod suggest;
pub mod track;
pub mod verdict;
mod view;
pub mod window;

pub use accounting::def::AccountingDef;
pub use accounting::period::{PeriodError, PeriodKind};
pub use accounting::Accounted;
pub use caps::def::MessageCapsDef;
pub use checkhelo::def::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
pub use checkhelo::op::{HeloOp, HeloReply};
pub use checkhelo::record::{HeloOutcome, HeloParams};
pub use checkspf::def::CheckSpfDef;
pub use clock::{Clock, ManualClock, SystemClock};
pub use compile::{compile, Compiled, PolicySet};
pub use counters::{CounterInfo, Listing, LiveCounters};
pub use diagnostic::{Diagnostic, Location, Severity};
pub use engine::{
    CounterLevel, Decision, Engine, EngineSettings, Explanation, ModuleVerdict, QuotaRef,
    NEAR_LIMIT_PERCENT,
};
pub use greylisting::def::{GreylistWhitelistDef, GreylistingDef};
pub use greylisting::op::{answer_in as greylist_answer_in, GreylistOp, GreylistReply};
pub use greylisting::record::{GreyOutcome, GreyParams};
pub use memory::snapshot::{CounterChanges, CounterSnapshot, SavedSession};
pub use memory::{MemoryState, MemoryStateSettings};
pub use model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
pub use modules::{Lookup, LookupAnswer, LookupAnswers, SpfAnswer, SpfResult};
pub use scratch::Scratch;
pub use sluice_protocol::{Action, PolicyRequest, ProtocolState};
pub use state::{
    CounterBatch, CounterOp, CounterReply, DetailAnswer, EomRecord, LeaseGrant, LeaseReturn,
    LeasedReply, OpDetail, OpKind, OpResult, Outcome, SessionData, SharedState, State, StateError,
};
