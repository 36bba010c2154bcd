//! Counter state, behind two traits:
//! - [`State`], what the engine calls: every counter and per-message operation of one
//!   policy request, batched into **one** call (plus health and lifecycle hooks);
//! - [`SharedState`], the quota-service protocol on top of it: leases charged ahead for an
//!   edge, their returns, and the hand-over of message sessions between edges.
//!
//! The engine decides *what* to count; a `State` does the counting atomically. Embedded mode
//! uses [`crate::MemoryState`]; cluster mode's edge uses the remote state, which sends the
//! batch to the quota service, which runs it on a [`SharedState`] (Redis). Every backend
//! follows [`crate::window`]'s arithmetic (the Redis script is its only mirror).

use std::future::Future;
use std::pin::Pin;

/// The counter key the default [`State::ready`] checks (never charged).
pub const PROBE_KEY: &str = "_sluice/health/probe";

/// The batch the default [`State::ready`] runs: a dry-run `Check` of cost 1 on
/// [`PROBE_KEY`].
pub fn probe_batch() -> CounterBatch {
    CounterBatch {
        instance: String::new(),
        dry_run: true,
        groups: vec![vec![CounterOp {
            key: PROBE_KEY.into(),
            limit: 1,
            window: crate::window::WindowSpec::new(60_000, 60),
            kind: OpKind::Check { cost: 1 },
        }]],
        end_of_message: None,
    }
}

/// A boxed, sendable future (keeps [`State`] usable as `dyn State`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The engine-facing counter backend: one call per request ([`State::apply`]), health and
/// lifecycle hooks. The quota-service protocol is [`SharedState`].
pub trait State: Send + Sync + 'static {
    /// Runs one request's batch. Each group in [`CounterBatch::groups`] is all-or-nothing:
    /// its ops are taken in order and, at the first refusal, what the group already took is
    /// given back and the rest of the group is [`Outcome::NotEvaluated`].
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>>;

    /// [`State::apply`] for a batch of the client connection `connection` (an id from
    /// [`crate::Scratch::for_connection`]; 0: unknown). The default ignores the connection.
    fn apply_on<'a>(
        &'a self,
        connection: u64,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        let _ = connection;
        self.apply(batch)
    }

    /// For explanations: of a counter's level, the units this process holds charged ahead
    /// and not used yet (cluster mode: an edge's lease on `key`). `None` when the backend
    /// holds none, or cannot tell (the default; in-process counters charge nothing ahead).
    fn leased_unused(&self, key: &str) -> Option<u64> {
        let _ = key;
        None
    }

    /// The client connection `connection` closed: whatever the backend kept for it may be
    /// handed on (cluster mode stores the message sessions it carried). The default does
    /// nothing.
    fn connection_closed(&self, connection: u64) {
        let _ = connection;
    }

    /// The process is stopping and no more batches will come: hand on what is held (cluster
    /// mode gives back lease units and stores message sessions). The default does nothing.
    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }

    /// Runs the batch at once, as [`State::apply`] would, when the backend needs no I/O
    /// (in-process counters); `None` means "call [`State::apply`]". Spares the boxed future
    /// on the hot path.
    fn apply_in_place(&self, batch: &CounterBatch) -> Option<Result<CounterReply, StateError>> {
        let _ = batch;
        None
    }

    /// [`State::apply_in_place`] into `reply`, which is overwritten: a backend may reuse its
    /// vectors (a caller keeping one reply per connection then allocates none per batch).
    /// `None` means "call [`State::apply`]" (`reply` is untouched). The default forwards to
    /// [`State::apply_in_place`].
    fn apply_in_place_into(
        &self,
        batch: &CounterBatch,
        reply: &mut CounterReply,
    ) -> Option<Result<(), StateError>> {
        Some(self.apply_in_place(batch)?.map(|r| *reply = r))
    }

    /// Whether the backend can serve at all (for health checks): `Ok` when it can answer
    /// batches, even if some of its parts are failing. The default runs a dry-run check of
    /// cost 1 on the reserved counter [`PROBE_KEY`] (charges nothing, creates nothing).
    fn ready(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(async move { self.apply(&probe_batch()).await.map(drop) })
    }
}

/// The quota-service protocol: what the quota service needs of the counters it runs edges'
/// batches on (cluster mode's Redis; the in-process counters for tests and the equivalence
/// test), beyond the engine's [`State`]. The engine never calls these.
pub trait SharedState: State {
    /// Cluster mode, quota-service side: [`State::apply`], and for each op with a non-zero
    /// `leases[group][op]` (only [`OpKind::Take`] ops ask) also charge up to that many
    /// extra units as a *lease* the calling edge admits from locally (see
    /// [`crate::window::lease_units`] for how much is granted). `leases` has the batch's
    /// shape or is empty (no leases). A refused group charges nothing, leases included.
    /// Also says whether the batch's message session existed (END-OF-MESSAGE).
    ///
    /// The default grants nothing and reports no session.
    fn apply_leasing<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        let _ = leases;
        Box::pin(async move {
            let reply = self.apply(batch).await?;
            let leases = reply
                .groups
                .iter()
                .map(|g| vec![LeaseGrant::default(); g.len()])
                .collect();
            Ok(LeasedReply {
                reply,
                leases,
                session_found: false,
            })
        })
    }

    /// [`SharedState::apply_leasing`] with all of the batch's backend work bounded by `deadline`
    /// (the caller's remaining budget): past it no new backend call is started and the
    /// batch fails with [`StateError::Timeout`]; compensation for charges already made
    /// (refunds) may still go out. The default ignores the deadline (the caller bounds its
    /// wait; in-process states do not wait).
    fn apply_leasing_by<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
        deadline: std::time::Instant,
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        let _ = deadline;
        self.apply_leasing(batch, leases)
    }

    /// Gives back the unused units of leases, each to the sub-bucket it was charged to
    /// (best effort: a bucket that has left the window is not touched).
    fn return_leases<'a>(
        &'a self,
        returns: &'a [LeaseReturn],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let _ = returns;
        Box::pin(async { Ok(()) })
    }

    /// Stores message sessions held by an edge (merged into what is stored: charged keys
    /// added, the first record of a key wins) so another edge can continue the message, and
    /// deletes the sessions of the `ended` instances.
    fn save_sessions<'a>(
        &'a self,
        sessions: &'a [SessionData],
        ended: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let _ = (sessions, ended);
        Box::pin(async {
            Err(StateError::Unavailable(
                "this backend keeps no shared message sessions".into(),
            ))
        })
    }

    /// Reads a stored message session (`None`: there is none).
    fn load_session<'a>(
        &'a self,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionData>, StateError>> {
        let _ = instance;
        Box::pin(async { Ok(None) })
    }
}

/// Units charged beyond an op's cost and handed to the caller (an edge) to admit from
/// locally until `valid_ms` has passed. All zero: no lease.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeaseGrant {
    /// Extra units charged (on top of the op's cost).
    pub units: u64,
    /// How long the lease may be used, in ms from when the backend charged it: until the end
    /// of the sub-bucket it was charged to, so every local admission falls into that bucket.
    pub valid_ms: u64,
    /// The backend's time of the charge (ms since the epoch): a return passes it back so the
    /// refund hits the same sub-bucket.
    pub charged_at_ms: u64,
}

/// The answer to [`SharedState::apply_leasing`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeasedReply {
    /// What [`State::apply`] would have answered.
    pub reply: CounterReply,
    /// One grant per op, in the batch's shape.
    pub leases: Vec<Vec<LeaseGrant>>,
    /// The batch's message session existed when it was read (only meaningful for a batch
    /// with an instance and a once-per-message take or END-OF-MESSAGE).
    pub session_found: bool,
}

/// Unused units of a lease, given back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseReturn {
    /// The counter.
    pub key: String,
    /// Its window.
    pub window: crate::window::WindowSpec,
    /// Units to give back.
    pub units: u64,
    /// [`LeaseGrant::charged_at_ms`] of the lease.
    pub charged_at_ms: u64,
}

/// A counter to charge the real size to at END-OF-MESSAGE (what [`OpKind::RecordForEom`]
/// recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EomRecord {
    /// The counter.
    pub key: String,
    /// Its limit.
    pub limit: u64,
    /// Its window.
    pub window: crate::window::WindowSpec,
    /// The quota's label (policy and quota names).
    pub label: String,
    /// END-OF-MESSAGE charges the records of one group all-or-nothing.
    pub group: u32,
}

/// One message session (per Postfix `instance`), as an edge holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionData {
    /// The Postfix `instance`.
    pub instance: String,
    /// Counters charged once for the message.
    pub charged: Vec<String>,
    /// Counters for END-OF-MESSAGE, in recording order.
    pub records: Vec<EomRecord>,
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
///
/// # Ops of modules that keep records, not counters
///
/// A module whose state is not a rolling-window counter (Greylisting's triplets) adds its
/// op as a variant here, holding its arguments; the op's [`CounterOp::key`] names its
/// record (Redis: hash-tagged so the op touches one slot), `limit` and `window` are unused
/// (0 and the default). Rules every backend follows for such an op:
/// - it runs in its group's order like any op; [`Outcome::Refused`] means its module gives
///   a final verdict, so the rest of the group is [`Outcome::NotEvaluated`] and charges
///   nothing (the module pushes it first, [`crate::modules`]);
/// - its own effect (a record written even when refusing: a triplet's first attempt) is
///   kept: a refusal later in its group does not undo it;
/// - its detailed answer, beyond [`OpResult`], goes to [`CounterReply::details`];
/// - `dry_run` batches compute the answer on a copy and write nothing.
///
/// Each backend dispatches such ops in one place (in-process: a table of its own beside
/// the counters; Redis: a script of its own), and the equivalence test covers them.
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
    /// Greylisting: run [`crate::greylisting::record::run`] for the op's triplet on its
    /// network's record ([`CounterOp::key`] is the network, as in the op). Refused when
    /// the triplet is deferred or its network blacklisted; the answer goes to
    /// [`CounterReply::details`] as [`DetailAnswer::Greylist`]. Boxed: the arguments are
    /// larger than every other kind's.
    Greylist(Box<crate::greylisting::op::GreylistOp>),
    /// CheckHelo: run [`crate::checkhelo::record::run`] for the request's HELO on its client
    /// address's record ([`CounterOp::key`] is the address). Refused when the address is
    /// blacklisted or over its HRP limit; the answer goes to [`CounterReply::details`] as
    /// [`DetailAnswer::Helo`]. Boxed, as [`OpKind::Greylist`].
    Helo(Box<crate::checkhelo::op::HeloOp>),
}

/// The answer to a [`CounterBatch`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterReply {
    /// One result per op, in the batch's shape.
    pub groups: Vec<Vec<OpResult>>,
    /// One result per counter charged at END-OF-MESSAGE.
    pub end_of_message: Vec<EomResult>,
    /// Detailed answers of the ops of modules that keep records (see [`OpKind`]), each
    /// naming its op; empty when the batch has none.
    pub details: Vec<OpDetail>,
}

/// The detailed answer of a module's record op (see [`OpKind`]), for its judging step and
/// explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpDetail {
    /// The op's group in the batch.
    pub group: u32,
    /// The op's index in its group.
    pub index: u32,
    /// The answer.
    pub answer: DetailAnswer,
}

/// A module's detailed answer: one variant per module with record ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DetailAnswer {
    /// The answer to an [`OpKind::Greylist`] op.
    Greylist(crate::greylisting::op::GreylistReply),
    /// The answer to an [`OpKind::Helo`] op.
    Helo(crate::checkhelo::op::HeloReply),
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
