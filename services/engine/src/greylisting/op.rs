//! The greylisting state operation: what the engine asks a backend to run for one request
//! (atomically, on the record of one network), and the answer.

use super::record::{GreyOutcome, GreyParams};
use crate::state::{CounterBatch, CounterOp, CounterReply, DetailAnswer, OpKind, Outcome};
use crate::window::WindowSpec;

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

impl GreylistReply {
    /// The op's place in its batch group: refused (the rest of the group, later modules'
    /// charges, is not evaluated) when the triplet is deferred or its network blacklisted,
    /// with the time until the deferral ends or the listing expires; admitted otherwise.
    /// The one home of this mapping for every backend.
    pub fn outcome(&self) -> Outcome {
        match self.outcome {
            GreyOutcome::Deferred { passes_at_ms, .. } => Outcome::Refused {
                retry_after_ms: Some(passes_at_ms.saturating_sub(self.now_ms)),
            },
            GreyOutcome::Blacklisted { until_ms, .. } => Outcome::Refused {
                retry_after_ms: Some(until_ms.saturating_sub(self.now_ms)),
            },
            _ => Outcome::Admitted,
        }
    }
}

/// The window of a greylisting [`CounterOp`]: unused (the record keeps its own times), but
/// valid wherever a window is checked.
pub const UNUSED_WINDOW: WindowSpec = WindowSpec {
    period_ms: 1000,
    bucket_ms: 1000,
};

impl GreylistOp {
    /// The op as a batch op: keyed by its network's record.
    pub fn into_counter_op(self: Box<Self>) -> CounterOp {
        CounterOp {
            key: self.network.clone(),
            limit: 0,
            window: UNUSED_WINDOW,
            kind: OpKind::Greylist(self),
        }
    }

    /// A batch of this op alone (tests, measurements).
    pub fn into_batch(self) -> CounterBatch {
        CounterBatch {
            instance: String::new(),
            dry_run: self.dry_run,
            groups: vec![vec![Box::new(self).into_counter_op()]],
            end_of_message: None,
        }
    }
}

/// The greylisting answer of the op at `index` of `group` in a batch's reply.
pub fn answer_in(reply: &CounterReply, group: u32, index: u32) -> Option<GreylistReply> {
    reply
        .details
        .iter()
        .find(|d| d.group == group && d.index == index)
        .and_then(|d| match d.answer {
            DetailAnswer::Greylist(g) => Some(g),
            _ => None,
        })
}
