//! DELAY: a quota that, when full, has Postfix hold the message (`HOLD`) instead of refusing
//! it, and releases it later when the quota has room (docs/delay.md).
//!
//! - [`settings`]: a DELAY quota's compiled settings (release shape, caps, what happens to
//!   a message held too long) and their checks;
//! - [`memo`]: per connection, the message being held between RCPT (where the quota is
//!   full) and END-OF-MESSAGE (where its queue ID and real size are known);
//! - [`ledger`]: the held messages in arrival order per quota key, and every rule about
//!   them: the cap, the order and pace of releases, expiry, and what an MTA's hold queue
//!   says happened to them. Pure (time is a parameter, charging is a closure): the server
//!   keeps it in memory, writes it to its database, and charges through its counters.
//!
//! The engine gives [`crate::Decision::hold`] at END-OF-MESSAGE; the server records it in
//! its ledger before Postfix gets the answer, and the release agent beside each Postfix
//! asks the server ([`HeldMessages::sync`]) which of its messages to release.

pub mod ledger;
pub mod memo;
pub mod settings;
pub mod waiting;

use crate::state::BoxFuture;
use crate::window::WindowSpec;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub use ledger::{Change, Gone, Ledger, Released, SyncAnswer};
pub use memo::{Delayed, HoldMemo};
pub use settings::{DelaySettings, OnExpiry, ReleaseShape};
pub use waiting::WaitingQueues;

/// How long a queue's window must have had room before a held message is released: the
/// release is checked against the window lengthened by this much. Mail admitted just
/// before the window turned is counted when Postfix accepts it, and leaves Postfix a
/// moment later; a release, once charged, leaves at once. Without the margin the two could
/// be delivered closer than the window (the quota holds at admission either way).
pub const RELEASE_MARGIN_MS: u64 = 1_000;

/// One counter charge a held message still needs before it may leave: what RCPT found
/// no room for (the message itself, its refused recipients, its size).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Need {
    /// The counter ([`crate::modules::counter_key`] form).
    pub key: String,
    /// The limit the quota had when the message was held.
    pub limit: u64,
    /// The window length (ms).
    pub period_ms: u64,
    /// The sub-bucket width (ms).
    pub bucket_ms: u64,
    /// What to charge.
    pub cost: u64,
    /// A recipient count: each refused recipient of the message adds its cost (a message
    /// count or a size is needed once).
    #[serde(default)]
    pub per_recipient: bool,
}

impl Need {
    /// The counter's window.
    pub fn window(&self) -> WindowSpec {
        WindowSpec {
            period_ms: self.period_ms,
            bucket_ms: self.bucket_ms,
        }
    }

    /// The shortest time between two paced releases this counter allows: its window over
    /// its limit (a limit of 100 per hour: 36 s); the whole window for a limit of 0.
    pub fn pace_ms(&self) -> u64 {
        match self.period_ms.checked_div(self.limit) {
            None => self.period_ms,
            // A cost of several units (recipients, bytes) takes as many paces.
            Some(per_unit) => per_unit.saturating_mul(self.cost.max(1)),
        }
    }
}

/// The counter ops that release `needs`, all-or-nothing in one group: with `force` (an
/// operator's release, an expiry), taken whatever the room; otherwise each need checked
/// first against its window lengthened by [`RELEASE_MARGIN_MS`], then taken.
pub fn release_ops(needs: &[Need], force: bool) -> Vec<crate::state::CounterOp> {
    use crate::state::{CounterOp, OpKind};
    let take = |n: &Need| CounterOp {
        key: n.key.clone(),
        // Forced: a limit nothing reaches (the counters hold at most 2^64-1).
        limit: if force { u64::MAX / 2 } else { n.limit },
        window: n.window(),
        kind: OpKind::Take { cost: n.cost },
    };
    if force {
        return needs.iter().map(take).collect();
    }
    let checks = needs.iter().map(|n| CounterOp {
        key: n.key.clone(),
        limit: n.limit,
        window: WindowSpec {
            period_ms: n.period_ms.saturating_add(RELEASE_MARGIN_MS),
            bucket_ms: n.bucket_ms,
        },
        kind: OpKind::Check { cost: n.cost },
    });
    checks.chain(needs.iter().map(take)).collect()
}

/// When the message at `position` (1 = next out) of a queue is expected to leave, at
/// `now_ms`, from `room_in_ms` — when the queue's counters next have room for one unit
/// (`None`: never) — plus the release margin: the first then, the next ones a pace apart
/// (`paced`) or one window later per window's worth of messages (`room`, the tightest of
/// the needs' limits). An estimate for operators: mail the quota admits meanwhile, the
/// agents' syncs and messages deleted by hand move it.
pub fn estimated_release_ms(
    needs: &[Need],
    shape: ReleaseShape,
    position: u64,
    room_in_ms: Option<u64>,
    now_ms: u64,
) -> Option<u64> {
    let first = now_ms
        .saturating_add(room_in_ms?)
        .saturating_add(RELEASE_MARGIN_MS);
    let later = position.saturating_sub(1);
    let wait = match shape {
        ReleaseShape::Paced => later.saturating_mul(needs.iter().map(Need::pace_ms).max()?),
        ReleaseShape::Room => {
            let per_window = needs.iter().map(|n| n.limit / n.cost.max(1)).min()?;
            let period = needs.iter().map(|n| n.period_ms).max()?;
            later.checked_div(per_window)?.saturating_mul(period)
        }
    };
    Some(first.saturating_add(wait))
}

/// What the engine asks the server to record at END-OF-MESSAGE: a message Postfix will hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRequest {
    /// The MTA whose hold queue has the message (the address of its policy connection).
    pub mta: String,
    /// Postfix's queue ID.
    pub queue_id: String,
    /// The envelope sender (for operators).
    pub sender: String,
    /// The policy of the DELAY quota that held it.
    pub policy: String,
    /// The DELAY quota.
    pub quota: String,
    /// The quota's track value (`Sender:user@example.org`): with policy and quota, the
    /// queue the message waits in.
    pub track: String,
    /// What it must be charged when it leaves (all or nothing).
    pub needs: Vec<Need>,
    /// Its recipients (`recipient_count`).
    pub recipients: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The quota's DELAY settings when it was held.
    pub settings: DelaySettings,
}

impl HoldRequest {
    /// The queue it waits in: policy, quota and track value.
    pub fn queue_key(&self) -> String {
        format!("{}/{}/{}", self.policy, self.quota, self.track)
    }
}

/// Where a held message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeldState {
    /// Waiting for room.
    Held,
    /// Charged: its MTA's agent is to release it (`postsuper -H`).
    Releasing,
    /// Held past its maximum age and not to be sent: its agent is to return it to the
    /// sender (`postsuper -f`, which expires it and releases it so Postfix bounces it).
    Returning,
    /// Deleted by an operator: its agent is to delete it (`postsuper -d`).
    Deleting,
}

impl HeldState {
    /// Its name in APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            HeldState::Held => "held",
            HeldState::Releasing => "releasing",
            HeldState::Returning => "returning",
            HeldState::Deleting => "deleting",
        }
    }
}

/// One message in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// Its number: arrival order across the ledger (the order of release within a queue).
    pub id: u64,
    /// What was recorded.
    pub request: HoldRequest,
    /// When it was held (ms since the epoch).
    pub held_at_ms: u64,
    /// Where it is.
    pub state: HeldState,
    /// When it entered its state (ms since the epoch).
    pub state_at_ms: u64,
    /// Whether its MTA's agent has seen it in the hold queue: only then may it be charged
    /// and released (room is not spent on a message no agent can release), and only then
    /// does its absence mean it was deleted or released by hand.
    #[serde(default)]
    pub seen: bool,
}

/// What [`HeldMessages::hold`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldOutcome {
    /// Recorded: the message is `position` in its queue (1 = next to leave).
    Held {
        /// Its place in its queue.
        position: usize,
    },
    /// Its queue already holds the quota's `max_held` messages: the quota's fallback
    /// verdict applies instead.
    Full {
        /// The cap.
        max_held: u32,
    },
}

/// One message in an MTA's queue, as `postqueue -j` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedMessage {
    /// The queue ID.
    pub queue_id: String,
    /// The queue it is in (`hold`, `incoming`, `active`, `deferred`, `maildrop`).
    pub queue_name: String,
}

/// Why the ledger could not do something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldError {
    /// Its store failed (the database, or Redis).
    #[error("the held-message ledger could not be written: {0}")]
    Store(String),
    /// No message with this number.
    #[error("no held message {0}")]
    NotFound(u64),
    /// This server keeps no ledger.
    #[error("this server keeps no ledger of held messages: {0}")]
    Unsupported(String),
}

/// The ledger as the server's parts use it: the request path records, the admin service
/// lists and acts, the release agent syncs.
pub trait HeldMessages: Send + Sync + 'static {
    /// Records a message Postfix is about to hold, written durably before it returns.
    /// Recording the same (MTA, queue ID) twice keeps the first.
    fn hold(&self, request: HoldRequest) -> BoxFuture<'_, Result<HoldOutcome, HoldError>>;

    /// Every held message, in arrival order.
    fn list(&self) -> BoxFuture<'_, Result<Vec<HeldMessage>, HoldError>>;

    /// An MTA's agent reports what its queue holds; the answer says what to release and
    /// what to return. Messages of this MTA no longer in its hold queue are forgotten.
    fn sync<'a>(
        &'a self,
        mta: &'a str,
        queue: &'a [QueuedMessage],
    ) -> BoxFuture<'a, Result<SyncAnswer, HoldError>>;

    /// Releases message `id` now, charging what it needs without checking room (an
    /// operator's decision, audited by the caller).
    fn release_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>>;

    /// Returns message `id` to its sender now (its agent expires it).
    fn return_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>>;

    /// Deletes message `id` (its agent deletes it from the hold queue; nothing is charged).
    fn delete(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>>;

    /// The queues where held mail waits ([`Ledger::waiting_queues`]), for
    /// [`WaitingQueues`].
    fn waiting_queues(&self) -> BoxFuture<'_, Result<Vec<String>, HoldError>>;
}

/// A shared ledger handle.
pub type SharedHeld = Arc<dyn HeldMessages>;

/// What `queue` (`policy/quota/track value`) holds, for explanations: how many wait, the
/// next out and how long it has waited, and how many are leaving.
pub fn describe_queue(queue: &str, messages: &[HeldMessage], now_ms: u64) -> String {
    let mine: Vec<&HeldMessage> = messages
        .iter()
        .filter(|m| m.request.queue_key() == queue)
        .collect();
    let waiting: Vec<&&HeldMessage> = mine.iter().filter(|m| m.state == HeldState::Held).collect();
    let leaving = mine.len() - waiting.len();
    let mut line = format!("Held for {queue}: {} waiting", waiting.len());
    if let Some(next) = waiting.first() {
        line.push_str(&format!(
            " (next out: {} from {}, held {} s ago)",
            next.request.queue_id,
            next.request.mta,
            now_ms.saturating_sub(next.held_at_ms) / 1000
        ));
    }
    if leaving > 0 {
        line.push_str(&format!(", {leaving} being released, returned or deleted"));
    }
    line.push('.');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(limit: u64, period_ms: u64) -> Need {
        Need {
            key: "p/q/MessageCount/Sender:a@b".into(),
            limit,
            period_ms,
            bucket_ms: period_ms / 10,
            cost: 1,
            per_recipient: false,
        }
    }

    #[test]
    fn release_estimates_follow_the_shape() {
        let needs = [need(5, 10_000)];
        let est = |shape, position, room| estimated_release_ms(&needs, shape, position, room, 0);
        let m = RELEASE_MARGIN_MS;
        // Room: five per window, the sixth a window later.
        assert_eq!(est(ReleaseShape::Room, 1, Some(3_000)), Some(3_000 + m));
        assert_eq!(est(ReleaseShape::Room, 5, Some(3_000)), Some(3_000 + m));
        assert_eq!(est(ReleaseShape::Room, 6, Some(3_000)), Some(13_000 + m));
        // Paced: one per 2 s.
        assert_eq!(est(ReleaseShape::Paced, 3, Some(0)), Some(4_000 + m));
        // Never room (a limit of 0), or a limit below one message's cost: no estimate.
        assert_eq!(est(ReleaseShape::Room, 1, None), None);
        let zero = [need(0, 10_000)];
        assert_eq!(
            estimated_release_ms(&zero, ReleaseShape::Room, 2, Some(0), 0),
            None
        );
    }
}
