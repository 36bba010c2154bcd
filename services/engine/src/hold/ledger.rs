//! The held messages and every rule about them, in memory, with time as a parameter and
//! charging as a closure (the server charges through its counters and writes each
//! [`Change`] to its database).
//!
//! Rules:
//! - messages wait in queues, one per (policy, DELAY quota, track value), in arrival order;
//!   a queue holds at most its quota's `max_held` messages waiting;
//! - a release charges the message's needs all-or-nothing; a queue's first waiting message
//!   must leave before the next may (no overtaking); `room` releases as many as fit,
//!   `paced` at most one per pace (the window over the limit);
//! - a message waiting longer than `max_hold_age` is returned or released regardless of
//!   room (its quota's `on_expiry`);
//! - a released (or returned, or deleted) message stays in the ledger until its MTA's agent
//!   reports it gone from the hold queue, so an agent that restarts acts again and nothing
//!   is charged twice;
//! - a waiting message is charged and released only once its MTA's agent has seen it in
//!   the hold queue (an MTA without a running agent spends no room);
//! - a waiting message its MTA no longer holds (deleted or released by hand) is forgotten
//!   at once if its agent had seen it held, else once it is older than the grace time (a
//!   message just held may not be in the hold queue yet); the room it would have used goes
//!   to the next one.

use super::{
    HeldMessage, HeldState, HoldError, HoldOutcome, HoldRequest, OnExpiry, QueuedMessage,
    ReleaseShape,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;

/// How long a message just held may be missing from its MTA's hold queue before it counts
/// as deleted by hand (Postfix moves it there when the SMTP transaction ends).
pub const DEFAULT_GRACE_MS: u64 = 10_000;

/// A change to write to the ledger's store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Insert or replace this message.
    Put(Box<HeldMessage>),
    /// Remove message `id`.
    Remove(u64),
}

/// Why a message left the ledger, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gone {
    /// Released by its agent (`postsuper -H`).
    Released,
    /// Returned to its sender by its agent.
    Returned,
    /// Deleted by its agent on an operator's request.
    Deleted,
    /// No longer in its MTA's hold queue while waiting: deleted or released by hand.
    Vanished,
}

impl Gone {
    /// Its label in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Gone::Released => "released",
            Gone::Returned => "returned",
            Gone::Deleted => "deleted",
            Gone::Vanished => "vanished",
        }
    }
}

/// What one [`Ledger::release_due`] pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// Messages charged and marked for release.
    pub released: Vec<u64>,
    /// Messages past their maximum age marked for return.
    pub expired_returned: Vec<u64>,
    /// Messages past their maximum age released anyway.
    pub expired_released: Vec<u64>,
    /// What to write.
    pub changes: Vec<Change>,
}

/// The answer to an agent's sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncAnswer {
    /// Queue IDs to release (`postsuper -H`).
    pub release: Vec<String>,
    /// Queue IDs to return to their senders (`postsuper -f`).
    pub r#return: Vec<String>,
    /// Queue IDs to delete (`postsuper -d`).
    pub delete: Vec<String>,
    /// Messages the ledger forgot in this sync, and why.
    pub gone: Vec<(String, Gone)>,
    /// Messages in the hold queue the ledger does not know (held by something else).
    pub unknown: usize,
    /// Messages of this MTA still waiting for room.
    pub waiting: usize,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    messages: BTreeMap<u64, HeldMessage>,
    queues: HashMap<String, VecDeque<u64>>,
    by_queue_id: HashMap<(String, String), u64>,
    /// When each queue last released a message (for `paced`).
    last_release: HashMap<String, u64>,
    next_id: u64,
}

impl Ledger {
    /// A ledger holding `messages` (read back from a store).
    pub fn restore(messages: Vec<HeldMessage>) -> Self {
        let mut ledger = Ledger::default();
        for m in messages {
            ledger.next_id = ledger.next_id.max(m.id);
            if m.state == HeldState::Releasing {
                let last = ledger
                    .last_release
                    .entry(m.request.queue_key())
                    .or_default();
                *last = (*last).max(m.state_at_ms);
            }
            ledger.insert(m);
        }
        ledger
    }

    /// A ledger read back from a store shared by several servers: `messages`, new ones
    /// numbered after `last_id` (so a number is never given twice, even once its message
    /// is gone), and each queue's last release time (`paces`, for `paced` queues whose
    /// released messages are gone already).
    pub fn restore_shared(
        messages: Vec<HeldMessage>,
        last_id: u64,
        paces: HashMap<String, u64>,
    ) -> Self {
        let mut ledger = Ledger::restore(messages);
        ledger.next_id = ledger.next_id.max(last_id);
        for (queue, at) in paces {
            if ledger.queues.contains_key(&queue) {
                let last = ledger.last_release.entry(queue).or_default();
                *last = (*last).max(at);
            }
        }
        ledger
    }

    /// The highest message number given so far.
    pub fn last_id(&self) -> u64 {
        self.next_id
    }

    /// When each queue last released a message (ms since the epoch).
    pub fn paces(&self) -> &HashMap<String, u64> {
        &self.last_release
    }

    fn insert(&mut self, m: HeldMessage) {
        let key = m.request.queue_key();
        let queue = self.queues.entry(key).or_default();
        // Ids grow with arrival: keep each queue sorted.
        let at = queue.partition_point(|&id| id < m.id);
        queue.insert(at, m.id);
        self.by_queue_id
            .insert((m.request.mta.clone(), m.request.queue_id.clone()), m.id);
        self.messages.insert(m.id, m);
    }

    fn remove(&mut self, id: u64) -> Option<HeldMessage> {
        let m = self.messages.remove(&id)?;
        let key = m.request.queue_key();
        if let Some(queue) = self.queues.get_mut(&key) {
            queue.retain(|&i| i != id);
            if queue.is_empty() {
                self.queues.remove(&key);
                self.last_release.remove(&key);
            }
        }
        self.by_queue_id
            .remove(&(m.request.mta.clone(), m.request.queue_id.clone()));
        Some(m)
    }

    /// Forgets message `id` (a hold its store could not write).
    pub fn forget(&mut self, id: u64) {
        self.remove(id);
    }

    /// Every message, in arrival order.
    pub fn messages(&self) -> impl Iterator<Item = &HeldMessage> {
        self.messages.values()
    }

    /// Message `id`.
    pub fn get(&self, id: u64) -> Option<&HeldMessage> {
        self.messages.get(&id)
    }

    /// Messages waiting in `queue_key`'s queue.
    pub fn waiting_in(&self, queue_key: &str) -> usize {
        self.queues.get(queue_key).map_or(0, |q| {
            q.iter()
                .filter(|id| self.messages[id].state == HeldState::Held)
                .count()
        })
    }

    /// The queues with a waiting message its agent has seen: new mail for them is held
    /// behind it ([`super::WaitingQueues`]).
    pub fn waiting_queues(&self) -> Vec<String> {
        self.queues
            .iter()
            .filter(|(_, ids)| {
                ids.iter().any(|id| {
                    let m = &self.messages[id];
                    m.state == HeldState::Held && m.seen
                })
            })
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Messages waiting, and the age of the oldest (ms) at `now`.
    pub fn waiting(&self, now: u64) -> (usize, u64) {
        let mut count = 0;
        let mut oldest = 0;
        for m in self.messages.values() {
            if m.state == HeldState::Held {
                count += 1;
                oldest = oldest.max(now.saturating_sub(m.held_at_ms));
            }
        }
        (count, oldest)
    }

    /// Records `request` at `now`: its place in its queue, or `Full` when the queue holds
    /// its cap. The same (MTA, queue ID) again gives the first one's place.
    pub fn hold(&mut self, request: HoldRequest, now: u64) -> (HoldOutcome, Option<Change>) {
        let key = request.queue_key();
        if let Some(&id) = self
            .by_queue_id
            .get(&(request.mta.clone(), request.queue_id.clone()))
        {
            return (
                HoldOutcome::Held {
                    position: self.position(&key, id),
                },
                None,
            );
        }
        let waiting = self.waiting_in(&key);
        if waiting >= request.settings.max_held as usize {
            return (
                HoldOutcome::Full {
                    max_held: request.settings.max_held,
                },
                None,
            );
        }
        self.next_id += 1;
        let m = HeldMessage {
            id: self.next_id,
            request,
            held_at_ms: now,
            state: HeldState::Held,
            state_at_ms: now,
            seen: false,
        };
        let change = Change::Put(Box::new(m.clone()));
        self.insert(m);
        (
            HoldOutcome::Held {
                position: waiting + 1,
            },
            Some(change),
        )
    }

    /// Place of `id` among its queue's waiting messages (1 = next).
    fn position(&self, key: &str, id: u64) -> usize {
        self.queues.get(key).map_or(0, |q| {
            q.iter()
                .filter(|i| self.messages[i].state == HeldState::Held)
                .position(|&i| i == id)
                .map_or(0, |p| p + 1)
        })
    }

    /// Marks the waiting messages that may leave at `now`: first those past their maximum
    /// age, then, per queue in arrival order, those `charge` admits (it charges a message's
    /// needs all-or-nothing and says whether they fit; with `force` it charges without
    /// checking room). A queue stops at its first message that does not fit, and a paced
    /// queue after one release per pace. `charge` is asynchronous (counters elsewhere);
    /// each charge completes before the next message is looked at.
    pub async fn release_due<E, F, Fut>(&mut self, now: u64, mut charge: F) -> Result<Released, E>
    where
        F: FnMut(HeldMessage, bool) -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        let mut out = Released::default();
        // Expiry, over every waiting message.
        let expired: Vec<u64> = self
            .messages
            .values()
            .filter(|m| {
                m.state == HeldState::Held
                    && now.saturating_sub(m.held_at_ms) >= m.request.settings.max_hold_age_ms
            })
            .map(|m| m.id)
            .collect();
        for id in expired {
            let on_expiry = self.messages[&id].request.settings.on_expiry;
            match on_expiry {
                OnExpiry::Return => {
                    self.set_state(id, HeldState::Returning, now, &mut out.changes);
                    out.expired_returned.push(id);
                }
                OnExpiry::Release => {
                    charge(self.messages[&id].clone(), true).await?;
                    self.set_state(id, HeldState::Releasing, now, &mut out.changes);
                    out.expired_released.push(id);
                }
            }
        }
        let keys: Vec<String> = self.queues.keys().cloned().collect();
        for key in keys {
            let ids: Vec<u64> = self.queues[&key]
                .iter()
                .copied()
                .filter(|id| self.messages[id].state == HeldState::Held)
                .collect();
            for id in ids {
                let m = &self.messages[&id];
                if !m.seen {
                    // Its agent has not reported it held yet: it (and, to keep the order,
                    // the queue behind it) waits for the next sync.
                    break;
                }
                let paced = m.request.settings.release == ReleaseShape::Paced;
                if paced {
                    let pace = m.request.needs.iter().map(|n| n.pace_ms()).max();
                    let last = self.last_release.get(&key).copied();
                    if let (Some(pace), Some(last)) = (pace, last) {
                        if now < last.saturating_add(pace) {
                            break;
                        }
                    }
                }
                if !charge(m.clone(), false).await? {
                    break;
                }
                self.set_state(id, HeldState::Releasing, now, &mut out.changes);
                self.last_release.insert(key.clone(), now);
                out.released.push(id);
                if paced {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn set_state(&mut self, id: u64, state: HeldState, now: u64, changes: &mut Vec<Change>) {
        if let Some(m) = self.messages.get_mut(&id) {
            m.state = state;
            m.state_at_ms = now;
            changes.push(Change::Put(Box::new(m.clone())));
        }
    }

    /// An operator's action on message `id`: release now (charged by `charge` without
    /// checking room), return, or delete. Only a waiting message can be acted on.
    pub async fn act<E, F, Fut>(
        &mut self,
        id: u64,
        to: HeldState,
        now: u64,
        charge: F,
    ) -> Result<Result<(HeldMessage, Change), HoldError>, E>
    where
        F: FnOnce(HeldMessage, bool) -> Fut,
        Fut: Future<Output = Result<bool, E>>,
    {
        let Some(m) = self.messages.get(&id) else {
            return Ok(Err(HoldError::NotFound(id)));
        };
        if m.state != HeldState::Held {
            // Already leaving: acting again changes nothing.
            return Ok(Ok((m.clone(), Change::Put(Box::new(m.clone())))));
        }
        if to == HeldState::Releasing {
            charge(m.clone(), true).await?;
        }
        let mut changes = Vec::new();
        self.set_state(id, to, now, &mut changes);
        let m = self.messages[&id].clone();
        Ok(Ok((m, changes.pop().expect("one change"))))
    }

    /// An MTA's agent reports its queue (`queue`, from `postqueue -j`) at `now`: the
    /// answer names what it is to release, return and delete; messages of this MTA that
    /// left the hold queue are forgotten (those released, returned or deleted as asked,
    /// and waiting ones missing for longer than `grace_ms`).
    pub fn sync(
        &mut self,
        mta: &str,
        queue: &[QueuedMessage],
        now: u64,
        grace_ms: u64,
    ) -> (SyncAnswer, Vec<Change>) {
        let in_queue: HashMap<&str, &str> = queue
            .iter()
            .map(|q| (q.queue_id.as_str(), q.queue_name.as_str()))
            .collect();
        let mut answer = SyncAnswer::default();
        let mut changes = Vec::new();
        let mine: Vec<u64> = self
            .messages
            .values()
            .filter(|m| m.request.mta == mta)
            .map(|m| m.id)
            .collect();
        let mut known = 0;
        for id in mine {
            let m = &self.messages[&id];
            let held = in_queue.get(m.request.queue_id.as_str()) == Some(&"hold");
            if held {
                known += 1;
            }
            let queue_id = m.request.queue_id.clone();
            let gone = match (m.state, held) {
                (HeldState::Held, true) => {
                    answer.waiting += 1;
                    if !m.seen {
                        let m = self.messages.get_mut(&id).expect("listed");
                        m.seen = true;
                        changes.push(Change::Put(Box::new(m.clone())));
                    }
                    None
                }
                (HeldState::Held, false) => {
                    if m.seen || now.saturating_sub(m.held_at_ms) > grace_ms {
                        Some(Gone::Vanished)
                    } else {
                        answer.waiting += 1;
                        None
                    }
                }
                (HeldState::Releasing, true) => {
                    answer.release.push(queue_id.clone());
                    None
                }
                (HeldState::Returning, true) => {
                    answer.r#return.push(queue_id.clone());
                    None
                }
                (HeldState::Deleting, true) => {
                    answer.delete.push(queue_id.clone());
                    None
                }
                (HeldState::Releasing, false) => Some(Gone::Released),
                (HeldState::Returning, false) => Some(Gone::Returned),
                (HeldState::Deleting, false) => Some(Gone::Deleted),
            };
            if let Some(gone) = gone {
                self.remove(id);
                changes.push(Change::Remove(id));
                answer.gone.push((queue_id, gone));
            }
        }
        answer.unknown = in_queue.values().filter(|&&n| n == "hold").count() - known;
        (answer, changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hold::{DelaySettings, Need};

    /// Runs a release pass whose charges answer at once (the ledger alone, in memory).
    fn release<E>(
        l: &mut Ledger,
        now: u64,
        mut charge: impl FnMut(&HeldMessage, bool) -> Result<bool, E>,
    ) -> Result<Released, E> {
        at_once(l.release_due(now, |m, force| std::future::ready(charge(&m, force))))
    }

    /// Polls `f` once: the charges here never wait.
    fn at_once<F: Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let waker = std::task::Waker::noop();
        match f.as_mut().poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a charge answering at once never waits"),
        }
    }

    fn request(queue_id: &str, shape: ReleaseShape) -> HoldRequest {
        HoldRequest {
            mta: "127.0.0.1".into(),
            queue_id: queue_id.into(),
            sender: "a@example.org".into(),
            policy: "p".into(),
            quota: "q".into(),
            track: "Sender:a@example.org".into(),
            needs: vec![Need {
                key: "p/q/MessageCount/Sender:a@example.org".into(),
                limit: 5,
                period_ms: 10_000,
                bucket_ms: 1_000,
                cost: 1,
                per_recipient: false,
            }],
            recipients: 1,
            size: 100,
            settings: DelaySettings {
                release: shape,
                max_held: 3,
                ..DelaySettings::default()
            },
        }
    }

    fn hold_queue(ids: &[&str]) -> Vec<QueuedMessage> {
        ids.iter()
            .map(|id| QueuedMessage {
                queue_id: id.to_string(),
                queue_name: "hold".into(),
            })
            .collect()
    }

    #[test]
    fn holds_up_to_the_cap_once_per_queue_id() {
        let mut l = Ledger::default();
        for (i, id) in ["A", "B", "C"].iter().enumerate() {
            let (out, change) = l.hold(request(id, ReleaseShape::Room), 1);
            assert_eq!(out, HoldOutcome::Held { position: i + 1 });
            assert!(change.is_some());
        }
        assert_eq!(
            l.hold(request("B", ReleaseShape::Room), 2).0,
            HoldOutcome::Held { position: 2 }
        );
        assert_eq!(
            l.hold(request("D", ReleaseShape::Room), 2).0,
            HoldOutcome::Full { max_held: 3 }
        );
    }

    #[test]
    fn room_releases_in_order_and_stops_at_the_first_that_does_not_fit() {
        let mut l = Ledger::default();
        for id in ["A", "B", "C"] {
            l.hold(request(id, ReleaseShape::Room), 1);
        }
        // Not seen in the hold queue yet: nothing is charged.
        let out =
            release::<()>(&mut l, 2, |_, _| panic!("charged before its agent saw it")).unwrap();
        assert!(out.released.is_empty());
        l.sync("127.0.0.1", &hold_queue(&["A", "B", "C"]), 3, 60_000);
        let mut room = 2;
        let mut order = Vec::new();
        let out = release::<()>(&mut l, 5, |m, _| {
            if room == 0 {
                return Ok(false);
            }
            room -= 1;
            order.push(m.request.queue_id.clone());
            Ok(true)
        })
        .unwrap();
        assert_eq!(order, ["A", "B"]);
        assert_eq!(out.released.len(), 2);
        // C waits; A and B are released once their agent sees them gone.
        let (answer, changes) = l.sync("127.0.0.1", &hold_queue(&["A", "B", "C"]), 6, 60_000);
        assert_eq!(answer.release, ["A", "B"]);
        assert_eq!(answer.waiting, 1);
        assert!(changes.is_empty());
        let (answer, changes) = l.sync("127.0.0.1", &hold_queue(&["C"]), 7, 60_000);
        assert_eq!(
            answer.gone,
            [("A".into(), Gone::Released), ("B".into(), Gone::Released)]
        );
        assert_eq!(changes.len(), 2);
        // Nothing is charged twice: released messages are not offered again.
        let mut charged = 0;
        release::<()>(&mut l, 8, |_, _| {
            charged += 1;
            Ok(false)
        })
        .unwrap();
        assert_eq!(charged, 1, "only C is tried");
    }

    #[test]
    fn paced_releases_one_per_pace() {
        let mut l = Ledger::default();
        for id in ["A", "B"] {
            l.hold(request(id, ReleaseShape::Paced), 1);
        }
        l.sync("127.0.0.1", &hold_queue(&["A", "B"]), 2, 60_000);
        let mut yes = |_: &HeldMessage, _| Ok::<bool, ()>(true);
        assert_eq!(release(&mut l, 10, &mut yes).unwrap().released.len(), 1);
        // 10 s over a limit of 5: one per 2 s.
        assert_eq!(release(&mut l, 1_999, &mut yes).unwrap().released.len(), 0);
        assert_eq!(release(&mut l, 2_010, &mut yes).unwrap().released.len(), 1);
    }

    #[test]
    fn vanished_messages_are_forgotten_after_the_grace() {
        let mut l = Ledger::default();
        l.hold(request("A", ReleaseShape::Room), 1_000);
        l.hold(request("B", ReleaseShape::Room), 1_000);
        // Just held: not in the hold queue yet, kept.
        let (answer, _) = l.sync("127.0.0.1", &[], 2_000, 60_000);
        assert!(answer.gone.is_empty());
        assert_eq!(answer.waiting, 2);
        // A deleted by hand; B still held; an unknown held message.
        let (answer, changes) = l.sync("127.0.0.1", &hold_queue(&["B", "X"]), 70_000, 60_000);
        assert_eq!(answer.gone, [("A".into(), Gone::Vanished)]);
        assert_eq!(changes[0], Change::Remove(1));
        assert!(
            matches!(&changes[1], Change::Put(m) if m.seen),
            "B is seen now"
        );
        assert_eq!(answer.unknown, 1);
        // Another MTA's sync does not touch them.
        let (answer, _) = l.sync("192.0.2.1", &[], 200_000, 60_000);
        assert!(answer.gone.is_empty());
        assert_eq!(l.messages().count(), 1);
        // Seen held, then missing: forgotten at once, whatever its age.
        l.hold(request("C", ReleaseShape::Room), 200_000);
        l.sync("127.0.0.1", &hold_queue(&["B", "C"]), 200_001, 60_000);
        let (answer, _) = l.sync("127.0.0.1", &hold_queue(&["B"]), 200_002, 60_000);
        assert_eq!(answer.gone, [("C".into(), Gone::Vanished)]);
    }

    #[test]
    fn expiry_returns_or_releases() {
        let mut l = Ledger::default();
        let mut r = request("A", ReleaseShape::Room);
        r.settings.max_hold_age_ms = 1_000;
        l.hold(r.clone(), 0);
        r.queue_id = "B".into();
        r.settings.on_expiry = OnExpiry::Release;
        l.hold(r, 0);
        let mut forced = Vec::new();
        let out = release::<()>(&mut l, 1_000, |m, force| {
            if force {
                forced.push(m.request.queue_id.clone());
            }
            Ok(false)
        })
        .unwrap();
        assert_eq!(out.expired_returned, [1]);
        assert_eq!(out.expired_released, [2]);
        assert_eq!(forced, ["B"]);
        let (answer, _) = l.sync("127.0.0.1", &hold_queue(&["A", "B"]), 1_001, 60_000);
        assert_eq!(answer.r#return, ["A"]);
        assert_eq!(answer.release, ["B"]);
    }

    #[test]
    fn restore_keeps_order_ids_and_pace() {
        let mut l = Ledger::default();
        for id in ["A", "B", "C"] {
            l.hold(request(id, ReleaseShape::Paced), 1);
        }
        l.sync("127.0.0.1", &hold_queue(&["A", "B", "C"]), 2, 60_000);
        release::<()>(&mut l, 10, |_, _| Ok(true)).unwrap();
        let saved: Vec<HeldMessage> = l.messages().cloned().collect();
        let mut back = Ledger::restore(saved);
        // The pace survives: B does not leave before 2 s after A.
        assert!(release::<()>(&mut back, 1_000, |_, _| Ok(true))
            .unwrap()
            .released
            .is_empty());
        let out = release::<()>(&mut back, 2_010, |_, _| Ok(true)).unwrap();
        assert_eq!(out.released, [2]);
        let (o, _) = back.hold(request("D", ReleaseShape::Paced), 3_000);
        assert_eq!(o, HoldOutcome::Held { position: 2 });
        assert_eq!(back.messages().last().unwrap().id, 4);
    }
}
