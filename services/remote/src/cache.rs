//! The local over-limit cache: counters known to be over their limit, answered without a
//! call while they stay so.
//!
//! When the quota service refuses an op with a retry-after `r > 0`, the edge remembers
//! `(key, limit) → (cost, level, until = now + r)`. Until `until`, a later group whose
//! **first refusable op** (the first op that is not a `RecordForEom`) is a `Take` or `Check`
//! of cost ≥ 1 on that key and limit, with a cost at least the remembered one, is answered
//! locally: that op `Refused` with the remaining retry-after (counted down), the ops before
//! it (records, always admitted) `Admitted`, the ops after it `NotEvaluated` — exactly what
//! the quota service would answer, because:
//! - the counter's level can only fall when its old buckets leave the window, which the
//!   retry-after already accounts for; a refusal charges nothing, and the group's earlier
//!   ops charge nothing (records), so answering locally changes no counter;
//! - a group is all-or-nothing, so once its first refusable op is refused the rest is not
//!   evaluated.
//!
//! `TakeOncePerMessage` ops are never answered locally (they are admitted as
//! `AlreadyCounted` when the message was charged before, which only the quota service
//! knows). Dry runs (`sluice explain`) bypass the cache.
//!
//! One approximation, in the same direction as the all-or-nothing refunds: a refusal seen
//! while another request's group had taken from the counter and later refunded it may be
//! repeated locally although the refund made room — the cache can refuse a little more
//! under contention; it never admits anything. An admission observed on a remembered key
//! with at least the remembered cost forgets the entry.
//!
//! Bounded: at most `capacity` entries; inserting into a full cache evicts the oldest
//! entry; expired entries are dropped when met.

use sluice_engine::{CounterOp, OpKind, OpResult, Outcome};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

#[derive(Debug, Clone, Copy)]
struct Entry {
    limit: u64,
    cost: u64,
    used: u64,
    /// When the refused cost fits again (for the retry hint).
    until_ms: u64,
    /// When the entry is dropped: at most [`MAX_ENTRY_MS`] after it was learned.
    expires_ms: u64,
    seq: u64,
}

/// The longest a refusal is answered locally before the quota service is asked again. A
/// refusal can come from a race (another edge's take that was refunded a moment later); with
/// this bound such a refusal is corrected within seconds, not at its retry-after (up to a
/// whole period), while floods of a key over its limit are still answered locally.
pub const MAX_ENTRY_MS: u64 = 5_000;

#[derive(Default)]
struct Inner {
    map: HashMap<String, Entry, foldhash::quality::RandomState>,
    /// Insertion order `(seq, key)`; stale pairs (re-inserted or removed keys) are skipped.
    order: VecDeque<(u64, String)>,
    seq: u64,
}

/// Counters known to be over their limit, with when they may fit again.
pub struct OverLimitCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl OverLimitCache {
    /// An empty cache holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        OverLimitCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of entries (expired ones included until met or evicted).
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether the cache holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The local answer for one group, if its outcome is certain (see the module docs).
    pub fn answer_group(&self, ops: &[CounterOp], now_ms: u64) -> Option<Vec<OpResult>> {
        let (idx, op) = ops
            .iter()
            .enumerate()
            .find(|(_, op)| !matches!(op.kind, OpKind::RecordForEom { .. }))?;
        let cost = match op.kind {
            OpKind::Take { cost } | OpKind::Check { cost } if cost >= 1 => cost,
            _ => return None,
        };
        let (retry_after_ms, used) = self.lookup(&op.key, op.limit, cost, now_ms)?;
        let results = (0..ops.len())
            .map(|i| match i.cmp(&idx) {
                std::cmp::Ordering::Less => OpResult {
                    outcome: Outcome::Admitted,
                    used: 0,
                },
                std::cmp::Ordering::Equal => OpResult {
                    outcome: Outcome::Refused {
                        retry_after_ms: Some(retry_after_ms),
                    },
                    used,
                },
                std::cmp::Ordering::Greater => OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: 0,
                },
            })
            .collect();
        Some(results)
    }

    /// `(remaining retry-after, level)` when `cost` on `(key, limit)` is known refused now.
    fn lookup(&self, key: &str, limit: u64, cost: u64, now_ms: u64) -> Option<(u64, u64)> {
        let mut inner = self.lock();
        let e = *inner.map.get(key)?;
        if e.until_ms.min(e.expires_ms) <= now_ms {
            inner.map.remove(key);
            return None;
        }
        (e.limit == limit && cost >= e.cost).then(|| (e.until_ms - now_ms, e.used))
    }

    /// Learns from a quota-service reply to `ops`: remembers refusals with a retry-after,
    /// forgets entries an admission contradicts.
    pub fn observe(&self, ops: &[CounterOp], results: &[OpResult], now_ms: u64) {
        for (op, r) in ops.iter().zip(results) {
            let cost = match op.kind {
                OpKind::Take { cost } | OpKind::Check { cost } => cost,
                OpKind::TakeOncePerMessage => 1,
                // Not a counter: a greylisting refusal says nothing about a limit.
                OpKind::RecordForEom { .. } | OpKind::Greylist(_) | OpKind::Helo(_) => continue,
            };
            match r.outcome {
                Outcome::Refused {
                    retry_after_ms: Some(wait),
                } if wait > 0 && cost >= 1 => {
                    self.insert(&op.key, op.limit, cost, r.used, now_ms + wait, now_ms);
                }
                Outcome::Admitted => self.forget(&op.key, op.limit, cost),
                _ => {}
            }
        }
    }

    fn insert(&self, key: &str, limit: u64, cost: u64, used: u64, until_ms: u64, now_ms: u64) {
        let mut inner = self.lock();
        inner.seq += 1;
        let seq = inner.seq;
        let entry = Entry {
            limit,
            cost,
            used,
            until_ms,
            expires_ms: now_ms + MAX_ENTRY_MS,
            seq,
        };
        if let Some(old) = inner.map.get_mut(key) {
            // Keep the smallest refused cost of the same limit (it answers the most).
            if old.limit == limit && old.cost < cost && old.until_ms >= until_ms {
                return;
            }
            *old = entry;
        } else {
            while inner.map.len() >= self.capacity {
                let Some((s, k)) = inner.order.pop_front() else {
                    break;
                };
                if inner.map.get(&k).is_some_and(|e| e.seq == s) {
                    inner.map.remove(&k);
                }
            }
            inner.map.insert(key.to_string(), entry);
        }
        inner.order.push_back((seq, key.to_string()));
        if inner.order.len() > 2 * self.capacity {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(s, k)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Forgets whatever is remembered of `key` (the counter was reset: its next request
    /// asks the quota service); whether there was an entry.
    pub fn remove(&self, key: &str) -> bool {
        self.lock().map.remove(key).is_some()
    }

    fn forget(&self, key: &str, limit: u64, cost: u64) {
        let mut inner = self.lock();
        if inner
            .map
            .get(key)
            .is_some_and(|e| e.limit == limit && e.cost <= cost)
        {
            inner.map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests;
