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
use hashbrown::HashTable;
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
    counters: Vec<Mutex<Table<Counter>>>,
    /// Picks a key's shard (seeded per process, like the maps).
    hasher: RandomState,
    sessions: Vec<Mutex<Table<Session>>>,
}

/// A key and its hash.
#[derive(Clone, Copy)]
struct Hashed<'k> {
    key: &'k str,
    hash: u64,
}

/// One shard's map from key to value, looked up by a hash computed once per key.
struct Table<V>(HashTable<(String, V)>);

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table(HashTable::new())
    }
}

impl<V> Table<V> {
    fn get(&self, key: Hashed<'_>) -> Option<&V> {
        self.0.find(key.hash, |(k, _)| k == key.key).map(|(_, v)| v)
    }

    fn get_mut(&mut self, key: Hashed<'_>) -> Option<&mut V> {
        self.0
            .find_mut(key.hash, |(k, _)| k == key.key)
            .map(|(_, v)| v)
    }

    /// Adds an entry for a key not in the table; `rehash` recomputes stored keys' hashes
    /// when the table grows.
    fn insert(&mut self, key: Hashed<'_>, value: V, rehash: impl Fn(&str) -> u64) {
        self.0
            .insert_unique(key.hash, (key.key.to_string(), value), |(k, _)| rehash(k));
    }

    fn remove(&mut self, key: Hashed<'_>) -> Option<V> {
        self.0
            .find_entry(key.hash, |(k, _)| k == key.key)
            .ok()
            .map(|e| e.remove().0 .1)
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.0.retain(|(_, v)| keep(v));
    }

    fn len(&self) -> usize {
        self.0.len()
    }
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
            counters: (0..n).map(|_| Mutex::new(Table::default())).collect(),
            sessions: (0..n).map(|_| Mutex::new(Table::default())).collect(),
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
            map.retain(|c| {
                c.window.prune(c.spec, now);
                !c.window.is_idle(c.spec, now)
            });
            removed += before - map.len();
        }
        let ttl = self.settings.session_ttl_ms;
        for shard in &self.sessions {
            let mut map = lock(shard);
            let before = map.len();
            map.retain(|s| s.created_ms + ttl > now);
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

    /// `key` with its hash, computed once for the shard choice and the table lookup.
    fn hashed<'k>(&self, key: &'k str) -> Hashed<'k> {
        Hashed {
            key,
            hash: self.hasher.hash_one(key),
        }
    }

    fn shard_of<'s, T>(shards: &'s [Mutex<Table<T>>], key: Hashed<'_>) -> MutexGuard<'s, Table<T>> {
        // Middle bits: the table itself uses the low bits (bucket) and the top seven (tag).
        lock(&shards[((key.hash >> 32) % shards.len() as u64) as usize])
    }

    fn take(
        &self,
        key: Hashed<'_>,
        spec: WindowSpec,
        now: u64,
        cost: u64,
        limit: u64,
        dry_run: bool,
    ) -> TakeOutcome {
        let mut map = Self::shard_of(&self.counters, key);
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
        map.insert(key, Counter { spec, window }, |k| self.hasher.hash_one(k));
        outcome
    }

    fn refund(&self, key: Hashed<'_>, spec: WindowSpec, now: u64, cost: u64) {
        if let Some(c) = Self::shard_of(&self.counters, key).get_mut(key) {
            c.window.refund(spec, now, cost);
        }
    }

    fn level(&self, key: Hashed<'_>, spec: WindowSpec, now: u64) -> u64 {
        Self::shard_of(&self.counters, key)
            .get(key)
            .map_or(0, |c| c.window.used(spec, now))
    }

    fn already_charged(&self, instance: Option<Hashed<'_>>, key: &str) -> bool {
        instance.is_some_and(|instance| {
            Self::shard_of(&self.sessions, instance)
                .get(instance)
                .is_some_and(|s| s.charged.iter().any(|k| k == key))
        })
    }

    /// Runs one all-or-nothing group; `instance` is the batch's instance, hashed (`None`
    /// when it has none).
    fn run_group(
        &self,
        batch: &CounterBatch,
        instance: Option<Hashed<'_>>,
        ops: &[CounterOp],
        now: u64,
    ) -> Vec<OpResult> {
        let mut results = Vec::with_capacity(ops.len());
        let mut refused = false;
        for op in ops {
            let key = self.hashed(&op.key);
            if refused {
                results.push(OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: self.level(key, op.window, now),
                });
                continue;
            }
            let (cost, check_only) = match &op.kind {
                OpKind::Take { cost } => (*cost, false),
                OpKind::Check { cost } => (*cost, true),
                OpKind::TakeOncePerMessage => {
                    if self.already_charged(instance, &op.key) {
                        results.push(OpResult {
                            outcome: Outcome::AlreadyCounted,
                            used: self.level(key, op.window, now),
                        });
                        continue;
                    }
                    (1, false)
                }
                OpKind::RecordForEom { .. } => {
                    results.push(OpResult {
                        outcome: Outcome::Admitted,
                        used: self.level(key, op.window, now),
                    });
                    continue;
                }
            };
            match self.take(
                key,
                op.window,
                now,
                cost,
                op.limit,
                batch.dry_run || check_only,
            ) {
                TakeOutcome::Admitted { used } => {
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
            // Give back what this group charged: the ops admitted before the refusal that
            // charge (takes, and first takes once per message).
            if !batch.dry_run {
                for (op, r) in ops.iter().zip(&results) {
                    let cost = match op.kind {
                        OpKind::Take { cost } => cost,
                        OpKind::TakeOncePerMessage => 1,
                        OpKind::Check { .. } | OpKind::RecordForEom { .. } => continue,
                    };
                    if r.outcome == Outcome::Admitted {
                        self.refund(self.hashed(&op.key), op.window, now, cost);
                    }
                }
            }
            // Levels reported for admitted ops must not include the refunded cost.
            for (r, op) in results.iter_mut().zip(ops) {
                if r.outcome == Outcome::Admitted {
                    r.used = self.level(self.hashed(&op.key), op.window, now);
                }
            }
        } else if let (false, Some(instance)) = (batch.dry_run, instance) {
            self.remember(instance, ops, &results, now);
        }
        results
    }

    /// Records once-per-message charges and END-OF-MESSAGE counters of an admitted group.
    fn remember(&self, instance: Hashed<'_>, ops: &[CounterOp], results: &[OpResult], now: u64) {
        let needs = |(op, r): &(&CounterOp, &OpResult)| {
            matches!(op.kind, OpKind::RecordForEom { .. })
                || (matches!(op.kind, OpKind::TakeOncePerMessage) && r.outcome == Outcome::Admitted)
        };
        if !ops.iter().zip(results).any(|pair| needs(&pair)) {
            return;
        }
        let mut sessions = Self::shard_of(&self.sessions, instance);
        if sessions.get(instance).is_none() {
            sessions.insert(
                instance,
                Session {
                    created_ms: now,
                    ..Session::default()
                },
                |k| self.hasher.hash_one(k),
            );
        }
        let session = sessions.get_mut(instance).expect("inserted above");
        for (op, _) in ops.iter().zip(results).filter(needs) {
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
        let instance = self.hashed(&batch.instance);
        let pending = {
            let mut sessions = Self::shard_of(&self.sessions, instance);
            if batch.dry_run {
                sessions
                    .get(instance)
                    .map(|s| s.pending.clone())
                    .unwrap_or_default()
            } else {
                sessions
                    .remove(instance)
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
            let batch = CounterBatch {
                instance: String::new(),
                dry_run: batch.dry_run,
                groups: Vec::new(),
                end_of_message: None,
            };
            let results = self.run_group(&batch, None, &ops, now);
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
        let instance = (!batch.instance.is_empty()).then(|| self.hashed(&batch.instance));
        let groups = batch
            .groups
            .iter()
            .map(|ops| self.run_group(batch, instance, ops, now))
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

    fn apply_in_place(&self, batch: &CounterBatch) -> Option<Result<CounterReply, StateError>> {
        Some(Ok(self.apply_now(batch)))
    }
}
