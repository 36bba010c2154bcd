//! The CheckHelo state operation: what the engine asks a backend to run for one request
//! (atomically, on its client address's record), and the answer.

use super::record::{HeloOutcome, HeloParams};
use crate::greylisting::op::UNUSED_WINDOW;
use crate::state::{CounterOp, OpKind, Outcome};

/// One CheckHelo op: run [`super::record::run`] for a HELO on its client address's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeloOp {
    /// The client address (the record's name).
    pub address: String,
    /// The HELO name as sent.
    pub helo: String,
    /// What to check.
    pub params: HeloParams,
    /// Compute the outcome but change nothing (`sluice explain`).
    pub dry_run: bool,
}

/// A backend's answer to a [`HeloOp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeloReply {
    /// What the op decided.
    pub outcome: HeloOutcome,
    /// The backend's time of the op, ms since the epoch.
    pub now_ms: u64,
}

impl HeloReply {
    /// The op's place in its batch group: refused (later modules' charges in the group are
    /// not evaluated) when blacklisted (until the listing ends) or over the HRP limit;
    /// admitted otherwise. The one home of this mapping for every backend.
    pub fn outcome(&self) -> Outcome {
        match self.outcome {
            HeloOutcome::Blacklisted { until_ms } => Outcome::Refused {
                retry_after_ms: Some(until_ms.saturating_sub(self.now_ms)),
            },
            HeloOutcome::HrpExceeded { .. } => Outcome::Refused {
                retry_after_ms: None,
            },
            HeloOutcome::Passed { .. } => Outcome::Admitted,
        }
    }
}

impl HeloOp {
    /// The op as a batch op: keyed by its client address's record.
    pub fn into_counter_op(self: Box<Self>) -> CounterOp {
        CounterOp {
            key: self.address.clone(),
            limit: 0,
            window: UNUSED_WINDOW,
            kind: OpKind::Helo(self),
        }
    }
}
