//! In-process counters and message sessions (embedded mode).
//!
//! Counters live in sharded maps, each shard behind its own mutex; a key's work happens under
//! its shard's lock, so every take is atomic. A group's ops are taken in order and refunded
//! when a later op of the group refuses (the same rule the Redis implementation follows), so
//! no limit is ever exceeded; under contention two requests may both be refused where one
//! would have fit (bounded under-admission). Counters idle past their period and sessions
//! past their TTL are reclaimed by [`MemoryState::sweep`].

use crate::clock::Clock;
use crate::state::{
    BoxFuture, CounterBatch, CounterOp, CounterReply, EomResult, OpKind, OpResult, Outcome, State,
    StateError,
};
use crate::window::{TakeOutcome, Window, WindowSpec};
use foldhash::quality::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

/// Settings of the in-process state.
#[derive(Debug, Clone)]
pub struct MemoryStateSettings {
    /// Number of independently locked shards.
    pub shards: usize,
    /// How long a message session (per `instance`) is kept without END-OF-MESSAGE.
    pub session_ttl_ms: u64,
}

impl Default for MemoryStateSettings {
    fn default() -> Self {
        MemoryStateSettings {
            shards: 64,
            session_ttl_ms: 30 * 60_000,
        }
    }
}

struct Counter {
    spec: WindowSpec,
    window: Window,
}

#[derive(Default)]
struct Session {
    created_ms: u64,
    /// Counters charged once for this message (a handful: a list beats a hash set).
    charged: Vec<String>,
    /// Counters to charge the real size to at END-OF-MESSAGE.
    pending: Vec<Pending>,
}

#[derive(Clone)]
struct Pending {
    key: String,
    limit: u64,
    spec: WindowSpec,
    label: String,
    group: u32,
}

/// Counters and sessions in process memory.
pub struct MemoryState {
    clock: Arc<dyn Clock>,
    settings: MemoryStateSettings,
    counters: Vec<Mutex<HashMap<String, Counter, RandomState>>>,
    /// Picks a key's shard (seeded per process, like the maps).
    hasher: RandomState,
    sessions: Vec<Mutex<HashMap<String, Session, RandomState>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl MemoryState {
    /// Empty state reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, settings: MemoryStateSettings) -> Self {
        let n = settings.shards.max(1);
        MemoryState {
            clock,
            counters: (0..n).map(|_| Mutex::new(HashMap::default())).collect(),
            sessions: (0..n).map(|_| Mutex::new(HashMap::default())).collect(),
            hasher: RandomState::default(),
            settings,
        }
    }

    /// Reclaims counters idle past their period and expired sessions. Returns how many
    /// entries were removed.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let mut removed = 0;
        for shard in &self.counters {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, c| {
                c.window.prune(c.spec, now);
                !c.window.is_idle(c.spec, now)
            });
            removed += before - map.len();
        }
        let ttl = self.settings.session_ttl_ms;
        for shard in &self.sessions {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|_, s| s.created_ms + ttl > now);
            removed += before - map.len();
        }
        removed
    }

    /// Number of live counters.
    pub fn counters(&self) -> usize {
        self.counters.iter().map(|s| lock(s).len()).sum()
    }

    /// Number of live message sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.iter().map(|s| lock(s).len()).sum()
    }

    fn shard_of(&self, key: &str, n: usize) -> usize {
        (self.hasher.hash_one(key) % n as u64) as usize
    }

    fn counter_shard(&self, key: &str) -> MutexGuard<'_, HashMap<String, Counter, RandomState>> {
        lock(&self.counters[self.shard_of(key, self.counters.len())])
    }

    fn session_shard(
        &self,
        instance: &str,
    ) -> MutexGuard<'_, HashMap<String, Session, RandomState>> {
        lock(&self.sessions[self.shard_of(instance, self.sessions.len())])
    }

    /// Takes (or, when `dry_run`, checks) `cost` on one counter.
    fn take(
        &self,
        key: &str,
        spec: WindowSpec,
        now: u64,
        cost: u64,
        limit: u64,
        dry_run: bool,
    ) -> TakeOutcome {
        let mut map = self.counter_shard(key);
        if dry_run {
            return match map.get(key) {
                Some(c) => c.window.check(spec, now, cost, limit),
                None => Window::new().check(spec, now, cost, limit),
            };
        }
        if let Some(counter) = map.get_mut(key) {
            counter.spec = spec;
            return counter.window.take(spec, now, cost, limit);
        }
        let mut window = Window::new();
        let outcome = window.take(spec, now, cost, limit);
        map.insert(key.to_string(), Counter { spec, window });
        outcome
    }

    fn refund(&self, key: &str, spec: WindowSpec, now: u64, cost: u64) {
        if let Some(c) = self.counter_shard(key).get_mut(key) {
            c.window.refund(spec, now, cost);
        }
    }

    fn level(&self, key: &str, spec: WindowSpec, now: u64) -> u64 {
        self.counter_shard(key)
            .get(key)
            .map_or(0, |c| c.window.used(spec, now))
    }

    fn already_charged(&self, instance: &str, key: &str) -> bool {
        !instance.is_empty()
            && self
                .session_shard(instance)
                .get(instance)
                .is_some_and(|s| s.charged.iter().any(|k| k == key))
    }

    /// Runs one all-or-nothing group. Returns results and the (key, spec, cost) taken.
    fn run_group(&self, batch: &CounterBatch, ops: &[CounterOp], now: u64) -> Vec<OpResult> {
        let mut results = Vec::with_capacity(ops.len());
        let mut taken: Vec<(&str, WindowSpec, u64)> = Vec::new();
        let mut refused = false;
        for op in ops {
            if refused {
                results.push(OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: self.level(&op.key, op.window, now),
                });
                continue;
            }
            let (cost, check_only) = match &op.kind {
                OpKind::Take { cost } => (*cost, false),
                OpKind::Check { cost } => (*cost, true),
                OpKind::TakeOncePerMessage => {
                    if self.already_charged(&batch.instance, &op.key) {
                        results.push(OpResult {
                            outcome: Outcome::AlreadyCounted,
                            used: self.level(&op.key, op.window, now),
                        });
                        continue;
                    }
                    (1, false)
                }
                OpKind::RecordForEom { .. } => {
                    results.push(OpResult {
                        outcome: Outcome::Admitted,
                        used: self.level(&op.key, op.window, now),
                    });
                    continue;
                }
            };
            match self.take(
                &op.key,
                op.window,
                now,
                cost,
                op.limit,
                batch.dry_run || check_only,
            ) {
                TakeOutcome::Admitted { used } => {
                    if !batch.dry_run && !check_only {
                        taken.push((&op.key, op.window, cost));
                    }
                    results.push(OpResult {
                        outcome: Outcome::Admitted,
                        used,
                    });
                }
                TakeOutcome::Refused {
                    used,
                    retry_after_ms,
                } => {
                    refused = true;
                    results.push(OpResult {
                        outcome: Outcome::Refused { retry_after_ms },
                        used,
                    });
                }
            }
        }
        if refused {
            for (key, spec, cost) in taken {
                self.refund(key, spec, now, cost);
            }
            // Levels reported for admitted ops must not include the refunded cost.
            for (r, op) in results.iter_mut().zip(ops) {
                if r.outcome == Outcome::Admitted {
                    r.used = self.level(&op.key, op.window, now);
                }
            }
        } else if !batch.dry_run && !batch.instance.is_empty() {
            self.remember(batch, ops, &results, now);
        }
        results
    }

    /// Records once-per-message charges and END-OF-MESSAGE counters of an admitted group.
    fn remember(&self, batch: &CounterBatch, ops: &[CounterOp], results: &[OpResult], now: u64) {
        let mut sessions = self.session_shard(&batch.instance);
        for (op, r) in ops.iter().zip(results) {
            let needs = matches!(op.kind, OpKind::RecordForEom { .. })
                || (matches!(op.kind, OpKind::TakeOncePerMessage)
                    && r.outcome == Outcome::Admitted);
            if !needs {
                continue;
            }
            let session = sessions
                .entry(batch.instance.clone())
                .or_insert_with(|| Session {
                    created_ms: now,
                    ..Session::default()
                });
            match &op.kind {
                OpKind::TakeOncePerMessage if !session.charged.contains(&op.key) => {
                    session.charged.push(op.key.clone());
                }
                OpKind::RecordForEom { label, group }
                    if !session.pending.iter().any(|p| p.key == op.key) =>
                {
                    session.pending.push(Pending {
                        key: op.key.clone(),
                        limit: op.limit,
                        spec: op.window,
                        label: label.clone(),
                        group: *group,
                    });
                }
                _ => {}
            }
        }
    }

    /// END-OF-MESSAGE: charge `size` to every counter recorded for the instance.
    fn end_of_message(&self, batch: &CounterBatch, size: u64, now: u64) -> Vec<EomResult> {
        if batch.instance.is_empty() {
            return Vec::new();
        }
        let pending = {
            let mut sessions = self.session_shard(&batch.instance);
            if batch.dry_run {
                sessions
                    .get(&batch.instance)
                    .map(|s| s.pending.clone())
                    .unwrap_or_default()
            } else {
                sessions
                    .remove(&batch.instance)
                    .map(|s| s.pending)
                    .unwrap_or_default()
            }
        };
        let mut out = Vec::with_capacity(pending.len());
        let mut groups: Vec<u32> = pending.iter().map(|p| p.group).collect();
        groups.sort_unstable();
        groups.dedup();
        for g in groups {
            let members: Vec<&Pending> = pending.iter().filter(|p| p.group == g).collect();
            let ops: Vec<CounterOp> = members
                .iter()
                .map(|p| CounterOp {
                    key: p.key.clone(),
                    limit: p.limit,
                    window: p.spec,
                    kind: OpKind::Take { cost: size },
                })
                .collect();
            let results = self.run_group(
                &CounterBatch {
                    instance: String::new(),
                    dry_run: batch.dry_run,
                    groups: Vec::new(),
                    end_of_message: None,
                },
                &ops,
                now,
            );
            for (p, result) in members.into_iter().zip(results) {
                out.push(EomResult {
                    label: p.label.clone(),
                    key: p.key.clone(),
                    limit: p.limit,
                    result,
                });
            }
        }
        out
    }

    fn apply_now(&self, batch: &CounterBatch) -> CounterReply {
        let now = self.clock.now_ms();
        let groups = batch
            .groups
            .iter()
            .map(|ops| self.run_group(batch, ops, now))
            .collect();
        let end_of_message = match batch.end_of_message {
            Some(size) => self.end_of_message(batch, size, now),
            None => Vec::new(),
        };
        CounterReply {
            groups,
            end_of_message,
        }
    }
}

impl State for MemoryState {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        let reply = self.apply_now(batch);
        Box::pin(std::future::ready(Ok(reply)))
    }
}
