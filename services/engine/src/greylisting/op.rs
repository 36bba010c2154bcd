//! The greylisting state operation: what the engine asks a backend to run for one request
//! (atomically, on the record of one network), and the answer.

use super::record::{GreyOutcome, GreyParams};

/// One greylisting op: run [`super::record::run`] for a triplet on its network's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreylistOp {
    /// The client's network, masked (`192.0.2.0/24`, `2001:db8::/64`): the record's name.
    pub network: String,
    /// The triplet within it ([`super::record::triplet_field`]).
    pub triplet: String,
    /// The settings.
    pub params: GreyParams,
    /// Compute the outcome but change nothing (`sluice explain`).
    pub dry_run: bool,
}

/// A backend's answer to a [`GreylistOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GreylistReply {
    /// What the op decided.
    pub outcome: GreyOutcome,
    /// The backend's time of the op, ms since the epoch (explanations count from it).
    pub now_ms: u64,
}
