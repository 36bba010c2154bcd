//! The [`State`] trait: every counter and per-message operation of one policy request,
//! batched into one call.
//!
//! The engine decides *what* to count; a `State` does the counting atomically. Embedded mode
//! uses [`crate::MemoryState`]; cluster mode sends the same batch to the quota service, which
//! runs it on Redis. Both follow [`crate::window`]'s arithmetic.

use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future (keeps [`State`] usable as `dyn State`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Counter and message-session storage.
pub trait State: Send + Sync + 'static {
    /// Runs one request's batch. Each group in [`CounterBatch::groups`] is all-or-nothing:
    /// its ops are taken in order and, at the first refusal, what the group already took is
    /// given back and the rest of the group is [`Outcome::NotEvaluated`].
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>>;

    /// Runs the batch at once, as [`State::apply`] would, when the backend needs no I/O
    /// (in-process counters); `None` means "call [`State::apply`]". Spares the boxed future
    /// on the hot path.
    fn apply_in_place(&self, batch: &CounterBatch) -> Option<Result<CounterReply, StateError>> {
        let _ = batch;
        None
    }
}

/// Why a batch could not be run (the engine answers with the configured fallback action).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// The backend could not be reached or failed.
    #[error("counter backend unavailable: {0}")]
    Unavailable(String),
    /// The backend did not answer within the deadline.
    #[error("counter backend timed out")]
    Timeout,
}

impl StateError {
    /// A short bounded label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            StateError::Unavailable(_) => "unavailable",
            StateError::Timeout => "timeout",
        }
    }
}

/// All counter work of one policy request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterBatch {
    /// The Postfix `instance` of the message (may be empty): correlates
    /// [`OpKind::TakeOncePerMessage`], [`OpKind::RecordForEom`] and
    /// [`CounterBatch::end_of_message`].
    pub instance: String,
    /// Compute outcomes and levels but change nothing (`sluice explain`).
    pub dry_run: bool,
    /// Independent all-or-nothing groups (monitor-mode policies get their own group so a
    /// limit that is only watched never blocks an enforced one).
    pub groups: Vec<Vec<CounterOp>>,
    /// At END-OF-MESSAGE: the real size in bytes, to be taken (all-or-nothing) from every
    /// counter recorded with [`OpKind::RecordForEom`] for this instance. The session is then
    /// forgotten.
    pub end_of_message: Option<u64>,
}

/// One counter operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterOp {
    /// The counter's identity (policy, quota, limit type and track key).
    pub key: String,
    /// Most admitted within any window.
    pub limit: u64,
    /// The window and its sub-bucket width.
    pub window: crate::window::WindowSpec,
    /// What to do.
    pub kind: OpKind,
}

/// What a [`CounterOp`] does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpKind {
    /// Add `cost` if it fits.
    Take {
        /// Amount to add.
        cost: u64,
    },
    /// Add 1 once per message: the first admitted take for this (instance, key) charges,
    /// later ones are [`Outcome::AlreadyCounted`] and always admitted.
    TakeOncePerMessage,
    /// Would `cost` fit? Charges nothing.
    Check {
        /// Amount to test.
        cost: u64,
    },
    /// Remember this counter for the instance so END-OF-MESSAGE charges the real size to it
    /// (once per message per key). Always admitted; charges nothing now.
    RecordForEom {
        /// Identifies the quota for the END-OF-MESSAGE verdict (policy and quota names).
        label: String,
        /// END-OF-MESSAGE charges counters of one group all-or-nothing, groups
        /// independently (as [`CounterBatch::groups`] do at RCPT).
        group: u32,
    },
}

/// The answer to a [`CounterBatch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterReply {
    /// One result per op, in the batch's shape.
    pub groups: Vec<Vec<OpResult>>,
    /// One result per counter charged at END-OF-MESSAGE.
    pub end_of_message: Vec<EomResult>,
}

/// The result of one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpResult {
    /// What happened.
    pub outcome: Outcome,
    /// The counter's level after the op (unchanged when refused).
    pub used: u64,
}

/// What happened to one op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It fitted (and was charged, unless a check, a record or a dry run).
    Admitted,
    /// Already charged for this message; admitted without charging again.
    AlreadyCounted,
    /// It did not fit; nothing in its group was charged.
    Refused {
        /// Milliseconds until it would fit; `None` if it never can.
        retry_after_ms: Option<u64>,
    },
    /// An earlier op of its group was refused, so it was not tried.
    NotEvaluated,
}

impl Outcome {
    /// Whether the op did not block its group.
    pub fn is_admitted(&self) -> bool {
        matches!(self, Outcome::Admitted | Outcome::AlreadyCounted)
    }
}

/// One counter charged at END-OF-MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomResult {
    /// The label recorded with [`OpKind::RecordForEom`].
    pub label: String,
    /// The counter's identity.
    pub key: String,
    /// The counter's limit.
    pub limit: u64,
    /// What happened.
    pub result: OpResult,
}
