//! In-process counters and message sessions (embedded mode).
//!
//! Counters live in sharded maps, each shard behind its own mutex (`parking_lot`'s: no
//! poisoning to check on each lock and unlock); a key's work happens under its shard's lock,
//! so every take is atomic. A group's ops are taken in order and refunded when a later op of
//! the group refuses (the same rule the Redis implementation follows), so no limit is ever
//! exceeded; under contention two requests may both be refused where one would have fit
//! (bounded under-admission). Counters idle past their period and sessions past their TTL are
//! reclaimed by [`MemoryState::sweep`], which also gives the tables' memory back when
//! they have emptied. A take that is refused creates no counter, and a refund that empties
//! one removes it.
//!
//! A message session lives until END-OF-MESSAGE or, without one, for what its counters
//! need: each change keeps it for the longest window among the counters it holds (period
//! plus one sub-bucket; after that a once-per-message charge has left every window),
//! within [`MemoryStateSettings::session_min_ttl_ms`] and
//! [`MemoryStateSettings::session_max_ttl_ms`].
//!
//! For persistence (storage is not this crate's business: see [`snapshot`]), the state can
//! mark each counter it changes ([`MemoryStateSettings::track_changes`]: a flag and, on its
//! first change since the last collection, a pushed hash, under the lock already held) and
//! hand the changes over ([`MemoryState::take_changes`]); [`MemoryState::restore_counters`]
//! and [`MemoryState::restore_sessions`] load what was saved.
//!
//! As the quota service's state (tests, or a quota service without Redis) it also grants
//! leases ([`SharedState::apply_leasing`]: extra units charged in the same step as the take, under
//! the same lock, sized by [`crate::window::lease_units`]), takes their unused units back
//! ([`SharedState::return_leases`]) and stores edge-held message sessions
//! ([`SharedState::save_sessions`], [`SharedState::load_session`]).

use crate::clock::Clock;
use crate::state::{
    BoxFuture, CounterBatch, CounterOp, CounterReply, DetailAnswer, EomResult, LeaseGrant,
    LeaseReturn, LeasedReply, OpDetail, OpKind, OpResult, Outcome, SessionData, SharedState, State,
    StateError,
};
use crate::window::{lease_units, TakeOutcome, Window, WindowSpec};
use foldhash::quality::RandomState;
use hashbrown::HashTable;
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

mod checkhelo;
mod greylisting;
pub mod snapshot;

/// Settings of the in-process state.
#[derive(Debug, Clone)]
pub struct MemoryStateSettings {
    /// Number of independently locked shards.
    pub shards: usize,
    /// Shortest time a message session (per `instance`) is kept without END-OF-MESSAGE,
    /// from its last change (default 10 minutes: twice Postfix's `smtpd_timeout`, so a
    /// message whose DATA phase is slow still reaches END-OF-MESSAGE).
    pub session_min_ttl_ms: u64,
    /// Longest time a message session is kept without END-OF-MESSAGE, from its last change
    /// (default 1 hour). Between the two, a session lives as long as the longest window
    /// (period plus one sub-bucket) among the counters it holds.
    pub session_max_ttl_ms: u64,
    /// Mark every counter changed so that [`MemoryState::take_changes`] can hand the changes
    /// to a store (default off: nothing is tracked).
    pub track_changes: bool,
}

impl Default for MemoryStateSettings {
    fn default() -> Self {
        MemoryStateSettings {
            shards: 64,
            session_min_ttl_ms: 10 * 60_000,
            session_max_ttl_ms: 60 * 60_000,
            track_changes: false,
        }
    }
}

struct Counter {
    spec: WindowSpec,
    window: Window,
    /// Changed since the last [`MemoryState::take_changes`] (its hash is in the shard's
    /// `dirty` list once).
    dirty: bool,
    /// Handed to a store at least once (or restored from one): removing it from memory
    /// must remove it there too.
    stored: bool,
}

/// One shard of counters, with what changed since the last [`MemoryState::take_changes`].
#[derive(Default)]
struct Counters {
    table: Table<Counter>,
    /// Hashes of counters that became dirty (one entry per counter; tracking only).
    dirty: Vec<u64>,
    /// Keys of stored counters removed from memory whose store copy may still count
    /// something (emptied by a refund, or swept while dirty).
    removed: Vec<String>,
}

impl std::ops::Deref for Counters {
    type Target = Table<Counter>;
    fn deref(&self) -> &Table<Counter> {
        &self.table
    }
}

impl std::ops::DerefMut for Counters {
    fn deref_mut(&mut self) -> &mut Table<Counter> {
        &mut self.table
    }
}

/// Marks `counter` changed: a flag and, the first time since the last collection, its hash
/// in the shard's list (when tracking; otherwise nothing).
#[inline]
fn mark_dirty(track: bool, counter: &mut Counter, dirty: &mut Vec<u64>, hash: u64) {
    if track && !counter.dirty {
        counter.dirty = true;
        dirty.push(hash);
    }
}

/// A table is rebuilt smaller after a sweep when it holds less than a quarter of what it
/// could (to twice its entries: room to grow again without rebuilding at once).
const SHRINK_BELOW: usize = 4;

/// Tables this small are never rebuilt.
const MIN_SHRINK_CAPACITY: usize = 64;

/// A message session. Its strings (charged keys, pending keys and labels) live in one
/// buffer: recording a message allocates once, not once per key and list.
#[derive(Default, Clone)]
struct Session {
    /// When the session is dropped if no END-OF-MESSAGE came (ms since the epoch).
    expires_ms: u64,
    /// Every string of the session, concatenated.
    text: String,
    /// Counters charged once for this message (a handful: a list beats a hash set).
    charged: SmallVec<[Span; 4]>,
    /// Counters to charge the real size to at END-OF-MESSAGE.
    pending: SmallVec<[Pending; 2]>,
}

/// A string of a session's `text`.
#[derive(Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

#[derive(Clone, Copy)]
struct Pending {
    key: Span,
    limit: u64,
    spec: WindowSpec,
    label: Span,
    group: u32,
}

/// Room reserved in a new session's `text` (a few keys and a label: no regrowth).
const SESSION_TEXT_CAPACITY: usize = 256;

impl Session {
    fn new(expires_ms: u64) -> Self {
        Session {
            expires_ms,
            ..Session::default()
        }
    }

    /// Keeps the session at least until `expires_ms`.
    fn keep_until(&mut self, expires_ms: u64) {
        self.expires_ms = self.expires_ms.max(expires_ms);
    }

    fn str(&self, s: Span) -> &str {
        &self.text[s.start..s.end]
    }

    fn push(&mut self, s: &str) -> Span {
        if self.text.capacity() == 0 {
            self.text.reserve(SESSION_TEXT_CAPACITY.max(s.len()));
        }
        let start = self.text.len();
        self.text.push_str(s);
        Span {
            start,
            end: self.text.len(),
        }
    }

    /// Whether `key` was charged once for this message.
    fn is_charged(&self, key: &str) -> bool {
        self.charged.iter().any(|&k| self.str(k) == key)
    }

    /// Notes `key` as charged once for this message (no duplicates).
    fn charge(&mut self, key: &str) {
        if !self.is_charged(key) {
            let k = self.push(key);
            self.charged.push(k);
        }
    }

    /// Whether a record for `key` exists.
    fn is_pending(&self, key: &str) -> bool {
        self.pending.iter().any(|p| self.str(p.key) == key)
    }

    /// Records `key` for END-OF-MESSAGE (the first record of a key wins).
    fn record(&mut self, key: &str, limit: u64, spec: WindowSpec, label: &str, group: u32) {
        if !self.is_pending(key) {
            let key = self.push(key);
            let label = self.push(label);
            self.pending.push(Pending {
                key,
                limit,
                spec,
                label,
                group,
            });
        }
    }
}

/// What running a group reads of an op: a batch's [`CounterOp`], or an END-OF-MESSAGE
/// charge borrowing its key from the message's session.
trait GroupOp {
    fn key(&self) -> &str;
    fn limit(&self) -> u64;
    fn window(&self) -> WindowSpec;
    fn kind(&self) -> &OpKind;
}

impl GroupOp for CounterOp {
    fn key(&self) -> &str {
        &self.key
    }
    fn limit(&self) -> u64 {
        self.limit
    }
    fn window(&self) -> WindowSpec {
        self.window
    }
    fn kind(&self) -> &OpKind {
        &self.kind
    }
}

/// Where running a group puts its results: a reply's vector, or a few on the stack.
trait ResultList: std::ops::DerefMut<Target = [OpResult]> {
    fn clear(&mut self);
    fn reserve(&mut self, n: usize);
    fn push(&mut self, r: OpResult);
}

impl ResultList for Vec<OpResult> {
    fn clear(&mut self) {
        Vec::clear(self);
    }
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
    fn push(&mut self, r: OpResult) {
        Vec::push(self, r);
    }
}

impl ResultList for SmallVec<[OpResult; 4]> {
    fn clear(&mut self) {
        SmallVec::clear(self);
    }
    fn reserve(&mut self, n: usize) {
        SmallVec::reserve(self, n);
    }
    fn push(&mut self, r: OpResult) {
        SmallVec::push(self, r);
    }
}

/// An END-OF-MESSAGE charge: a [`OpKind::Take`] of the message's size on a recorded key.
struct EomOp<'s> {
    key: &'s str,
    limit: u64,
    window: WindowSpec,
    kind: OpKind,
}

impl GroupOp for EomOp<'_> {
    fn key(&self) -> &str {
        self.key
    }
    fn limit(&self) -> u64 {
        self.limit
    }
    fn window(&self) -> WindowSpec {
        self.window
    }
    fn kind(&self) -> &OpKind {
        &self.kind
    }
}

/// Whether an admitted group's op leaves a mark in its message's session: an END-OF-MESSAGE
/// record, or a first once-per-message take.
fn needs_recording(op: &impl GroupOp, r: &OpResult) -> bool {
    match op.kind() {
        OpKind::RecordForEom { .. } => true,
        OpKind::TakeOncePerMessage => r.outcome == Outcome::Admitted,
        _ => false,
    }
}

/// Where a group's answers go: one result per op, and the detailed answers of its record
/// ops (greylisting), named by the group's index in its batch.
struct GroupOut<'a, R> {
    results: &'a mut R,
    group: u32,
    details: &'a mut Vec<OpDetail>,
}

/// Counters and sessions in process memory.
pub struct MemoryState {
    clock: Arc<dyn Clock>,
    settings: MemoryStateSettings,
    counters: Vec<Mutex<Counters>>,
    /// Picks a key's shard (seeded per process, like the maps).
    hasher: RandomState,
    sessions: Vec<Mutex<Sessions>>,
    /// Greylisting records (`memory/greylisting.rs`).
    grey: greylisting::GreyTable,
    /// CheckHelo records (`memory/checkhelo.rs`).
    helo: checkhelo::HeloTable,
}

/// Most sessions' buffers a sessions shard keeps for new sessions.
const MAX_SPARE_SESSIONS: usize = 4;

/// One shard's message sessions, and the emptied buffers (instance key, text) of ended
/// ones: a message's session then allocates nothing once the shard has warmed up.
#[derive(Default)]
struct Sessions {
    table: Table<Session>,
    spare: Vec<(String, String)>,
}

impl std::ops::Deref for Sessions {
    type Target = Table<Session>;
    fn deref(&self) -> &Table<Session> {
        &self.table
    }
}

impl std::ops::DerefMut for Sessions {
    fn deref_mut(&mut self) -> &mut Table<Session> {
        &mut self.table
    }
}

impl Sessions {
    /// Removes `instance`'s session, keeping its buffers for a later one.
    fn end(&mut self, instance: Hashed<'_>) {
        if let Some((key, session)) = self.table.remove_entry(instance) {
            self.recycle(key, session);
        }
    }

    /// Keeps an ended session's buffers for a later one.
    fn recycle(&mut self, mut instance: String, mut session: Session) {
        if self.spare.len() < MAX_SPARE_SESSIONS
            && instance.capacity() <= MAX_SPARE_SESSION_TEXT
            && session.text.capacity() <= MAX_SPARE_SESSION_TEXT
        {
            instance.clear();
            session.text.clear();
            self.spare.push((instance, session.text));
        }
    }
}

/// Session buffers grown past this are not kept.
const MAX_SPARE_SESSION_TEXT: usize = 4 * SESSION_TEXT_CAPACITY;

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

    /// The value of `key`, added with `entry()` (`key` as a `String`, and the value) when
    /// missing (one lookup either way).
    fn get_or_insert_with(
        &mut self,
        key: Hashed<'_>,
        entry: impl FnOnce() -> (String, V),
        rehash: impl Fn(&str) -> u64,
    ) -> &mut V {
        &mut self
            .0
            .entry(key.hash, |(k, _)| k == key.key, |(k, _)| rehash(k))
            .or_insert_with(entry)
            .into_mut()
            .1
    }

    fn remove(&mut self, key: Hashed<'_>) -> Option<V> {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning its stored key and value.
    fn remove_entry(&mut self, key: Hashed<'_>) -> Option<(String, V)> {
        self.0
            .find_entry(key.hash, |(k, _)| k == key.key)
            .ok()
            .map(|e| e.remove().0)
    }

    fn retain(&mut self, mut keep: impl FnMut(&mut V) -> bool) {
        self.0.retain(|(_, v)| keep(v));
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Rebuilds the table smaller when it holds less than a quarter of its capacity (after
    /// a sweep): the memory of reclaimed entries' slots goes back to the allocator.
    fn shrink_if_sparse(&mut self, rehash: impl Fn(&str) -> u64) {
        let (len, capacity) = (self.0.len(), self.0.capacity());
        if capacity > MIN_SHRINK_CAPACITY && len < capacity / SHRINK_BELOW {
            self.0.shrink_to(len * 2, |(k, _)| rehash(k));
        }
    }
}

/// Gives back most of a list's spare room once it is mostly unused (a burst of changes
/// must not keep its memory).
fn shrink_list<T>(list: &mut Vec<T>) {
    if list.capacity() > 1024 && list.len() < list.capacity() / SHRINK_BELOW {
        list.shrink_to(list.len() * 2);
    }
}

impl MemoryState {
    /// Empty state reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, settings: MemoryStateSettings) -> Self {
        let n = settings.shards.max(1);
        MemoryState {
            clock,
            counters: (0..n).map(|_| Mutex::new(Counters::default())).collect(),
            sessions: (0..n).map(|_| Mutex::new(Sessions::default())).collect(),
            hasher: RandomState::default(),
            grey: greylisting::GreyTable::new(n),
            helo: checkhelo::HeloTable::new(n),
            settings,
        }
    }

    /// Reclaims counters idle past their period and expired sessions, and rebuilds tables
    /// left mostly empty smaller. Returns how many entries were removed.
    pub fn sweep(&self) -> usize {
        let now = self.clock.now_ms();
        let mut removed = 0;
        for shard in &self.counters {
            let mut guard = shard.lock();
            let Counters {
                table,
                removed: gone,
                ..
            } = &mut *guard;
            let idle = table.0.extract_if(|(_, c)| {
                c.window.prune(c.spec, now);
                c.window.is_idle(c.spec, now)
            });
            for (key, c) in idle {
                removed += 1;
                // A stored copy of a counter that was not changed since is idle too (it
                // expires by itself); one changed since may still hold a refunded charge.
                if c.stored && c.dirty {
                    gone.push(key);
                }
            }
            table.shrink_if_sparse(|k| self.hash(k));
        }
        for shard in &self.sessions {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|s| s.expires_ms > now);
            removed += before - map.len();
            map.table.shrink_if_sparse(|k| self.hash(k));
        }
        removed += self.grey.sweep(now);
        removed += self.helo.sweep(now);
        removed
    }

    /// CheckHelo client addresses held (ones that ran out and are not yet swept included).
    pub fn checkhelo_entries(&self) -> usize {
        self.helo.len()
    }

    /// Greylisting networks and triplets held (expired ones not yet swept included).
    pub fn greylisting_entries(&self) -> (usize, usize) {
        self.grey.len()
    }

    /// Number of live counters.
    pub fn counters(&self) -> usize {
        self.counters.iter().map(|s| s.lock().len()).sum()
    }

    /// Entries the counter tables can hold without growing (what their memory is sized
    /// for; falls after a sweep that emptied them).
    pub fn counter_capacity(&self) -> usize {
        self.counters.iter().map(|s| s.lock().capacity()).sum()
    }

    /// Entries the session tables can hold without growing.
    pub fn session_capacity(&self) -> usize {
        self.sessions.iter().map(|s| s.lock().capacity()).sum()
    }

    /// How long a change involving a counter of window `spec` keeps its message session.
    fn session_ttl(&self, spec: WindowSpec) -> u64 {
        let s = &self.settings;
        spec.period_ms
            .saturating_add(spec.bucket_ms)
            .min(s.session_max_ttl_ms)
            .max(s.session_min_ttl_ms.min(s.session_max_ttl_ms))
    }

    /// Number of live message sessions.
    pub fn sessions(&self) -> usize {
        self.sessions.iter().map(|s| s.lock().len()).sum()
    }

    /// `key` with its hash, computed once for the shard choice and the table lookup.
    fn hashed<'k>(&self, key: &'k str) -> Hashed<'k> {
        Hashed {
            key,
            hash: self.hash(key),
        }
    }

    /// The hash of a stored or looked-up key: its bytes alone (a lookup compares whole keys,
    /// so the end marker `str`'s `Hash` adds, and its extra mixing step, are not needed).
    fn hash(&self, key: &str) -> u64 {
        let mut h = self.hasher.build_hasher();
        h.write(key.as_bytes());
        h.finish()
    }

    /// The instance's session, created (at `now`) if it does not exist (one lookup).
    fn session_entry<'t>(
        &self,
        sessions: &'t mut Sessions,
        instance: Hashed<'_>,
        now: u64,
    ) -> &'t mut Session {
        let Sessions { table, spare } = sessions;
        table.get_or_insert_with(
            instance,
            || {
                let (mut key, text) = spare.pop().unwrap_or_default();
                key.push_str(instance.key);
                let session = Session {
                    text,
                    ..Session::new(
                        now.saturating_add(
                            self.settings
                                .session_min_ttl_ms
                                .min(self.settings.session_max_ttl_ms),
                        ),
                    )
                };
                (key, session)
            },
            |k| self.hash(k),
        )
    }

    fn shard_of<'s, T>(shards: &'s [Mutex<T>], key: Hashed<'_>) -> MutexGuard<'s, T> {
        // Middle bits: the table itself uses the low bits (bucket) and the top seven (tag).
        shards[((key.hash >> 32) % shards.len() as u64) as usize].lock()
    }

    /// Takes `cost` if it fits (only checks when `dry_run`); a fitting take with `want` > 0
    /// also charges a lease of [`lease_units`] extra units in the same step. Returns the
    /// outcome and the lease units charged.
    #[allow(clippy::too_many_arguments)]
    fn take(
        &self,
        key: Hashed<'_>,
        spec: WindowSpec,
        now: u64,
        cost: u64,
        limit: u64,
        dry_run: bool,
        want: u64,
    ) -> (TakeOutcome, u64) {
        let mut shard = Self::shard_of(&self.counters, key);
        if dry_run {
            let outcome = match shard.get(key) {
                Some(c) if c.spec == spec => c.window.check(spec, now, cost, limit),
                Some(c) => {
                    let mut window = c.window.clone();
                    window.rebase(c.spec, spec);
                    window.check(spec, now, cost, limit)
                }
                None => Window::new().check(spec, now, cost, limit),
            };
            return (outcome, 0);
        }
        let track = self.settings.track_changes;
        let Counters { table, dirty, .. } = &mut *shard;
        let lease = |window: &mut Window, outcome: TakeOutcome| match outcome {
            TakeOutcome::Admitted { used } if want > 0 => {
                let units = lease_units(limit, used, want, spec.lease_valid_ms(now));
                window.add(spec, now, units);
                units
            }
            _ => 0,
        };
        if let Some(counter) = table.get_mut(key) {
            let respec = counter.spec != spec;
            if respec {
                // The quota's period or sub-buckets changed (a policy change, or a counter
                // restored from before one): its buckets are re-indexed, not forgotten.
                counter.window.rebase(counter.spec, spec);
                counter.spec = spec;
            }
            let outcome = counter.window.take(spec, now, cost, limit);
            let units = lease(&mut counter.window, outcome);
            let charged =
                units > 0 || (cost > 0 && matches!(outcome, TakeOutcome::Admitted { .. }));
            if respec || charged {
                mark_dirty(track, counter, dirty, key.hash);
            }
            return (outcome, units);
        }
        let mut window = Window::new();
        let outcome = window.take(spec, now, cost, limit);
        let units = lease(&mut window, outcome);
        if window.is_empty() {
            // Refused (or nothing to charge): no counter is left behind.
            return (outcome, units);
        }
        let counter = Counter {
            spec,
            window,
            dirty: track,
            stored: false,
        };
        table.insert(key, counter, |k| self.hash(k));
        if track {
            dirty.push(key.hash);
        }
        (outcome, units)
    }

    /// Takes back `cost` charged at `now`; a counter left empty is removed.
    fn refund(&self, key: Hashed<'_>, spec: WindowSpec, now: u64, cost: u64) {
        let mut shard = Self::shard_of(&self.counters, key);
        let Counters {
            table,
            dirty,
            removed,
        } = &mut *shard;
        let Some(c) = table.get_mut(key) else {
            return;
        };
        c.window.refund(spec, now, cost);
        if !c.window.is_empty() {
            mark_dirty(self.settings.track_changes, c, dirty, key.hash);
        } else if let Some((k, c)) = table.remove_entry(key) {
            if c.stored {
                removed.push(k);
            }
        }
    }

    fn level(&self, key: Hashed<'_>, spec: WindowSpec, now: u64) -> u64 {
        Self::shard_of(&self.counters, key)
            .get(key)
            .map_or(0, |c| c.window.used(spec, now))
    }

    /// The sessions shard of `instance`, locked on first use and then kept in `held`: a
    /// group locks it once for all its once-per-message checks and records. (The only
    /// nesting of locks is a sessions shard, then a counters shard: no deadlock.)
    fn sessions_of<'g, 's>(
        &'s self,
        held: &'g mut Option<MutexGuard<'s, Sessions>>,
        instance: Hashed<'_>,
    ) -> &'g mut Sessions {
        held.get_or_insert_with(|| Self::shard_of(&self.sessions, instance))
    }

    /// Runs one all-or-nothing group; `instance` is the batch's instance, hashed (`None`
    /// when it has none). One result per op goes to `results` (emptied first). `wants`
    /// are the ops' lease wants (empty: none); the returned grants are empty when `wants`
    /// is, else one per op.
    fn run_group<O: GroupOp>(
        &self,
        batch: &CounterBatch,
        instance: Option<Hashed<'_>>,
        ops: &[O],
        wants: &[u64],
        now: u64,
        out: GroupOut<'_, impl ResultList>,
    ) -> Vec<LeaseGrant> {
        let GroupOut {
            results,
            group,
            details,
        } = out;
        results.clear();
        results.reserve(ops.len());
        let mut grants = if wants.is_empty() {
            Vec::new()
        } else {
            vec![LeaseGrant::default(); ops.len()]
        };
        let mut refused = false;
        let mut sessions = None;
        // The message's session, looked up once for all the group's once-per-message takes
        // and for recording what the group charged.
        let wants_session = instance.filter(|_| {
            ops.iter().any(|op| match op.kind() {
                OpKind::TakeOncePerMessage => true,
                OpKind::RecordForEom { .. } => !batch.dry_run,
                _ => false,
            })
        });
        let session = match wants_session {
            Some(instance) => self.sessions_of(&mut sessions, instance).get_mut(instance),
            None => None,
        };
        // A size check and its END-OF-MESSAGE record are adjacent ops on the same key: the
        // second reuses the first's hash, and the level the check saw (a check changes
        // nothing).
        let mut previous: Option<Hashed<'_>> = None;
        let mut checked_level: Option<u64> = None;
        for (i, op) in ops.iter().enumerate() {
            let (key, known_level) = match previous {
                Some(p) if p.key == op.key() => (p, checked_level),
                _ => (self.hashed(op.key()), None),
            };
            previous = Some(key);
            checked_level = None;
            if refused {
                results.push(OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: self.level(key, op.window(), now),
                });
                continue;
            }
            let mut want = 0;
            let (cost, check_only) = match op.kind() {
                OpKind::Take { cost } => {
                    want = wants.get(i).copied().unwrap_or(0);
                    (*cost, false)
                }
                OpKind::Check { cost } => (*cost, true),
                OpKind::TakeOncePerMessage => {
                    if session.as_deref().is_some_and(|s| s.is_charged(op.key())) {
                        results.push(OpResult {
                            outcome: Outcome::AlreadyCounted,
                            used: self.level(key, op.window(), now),
                        });
                        continue;
                    }
                    (1, false)
                }
                OpKind::Greylist(grey) => {
                    // A record op of its own table (memory/greylisting.rs): its write is
                    // kept whatever the rest of the group does.
                    let answer = if batch.dry_run && !grey.dry_run {
                        let mut dry = (**grey).clone();
                        dry.dry_run = true;
                        self.grey.apply(&dry, now)
                    } else {
                        self.grey.apply(grey, now)
                    };
                    let outcome = answer.outcome();
                    refused |= !outcome.is_admitted();
                    results.push(OpResult { outcome, used: 0 });
                    details.push(OpDetail {
                        group,
                        index: i as u32,
                        answer: DetailAnswer::Greylist(answer),
                    });
                    continue;
                }
                OpKind::Helo(helo) => {
                    // A record op of its own table (memory/checkhelo.rs), like greylisting.
                    let answer = self.helo.apply(helo, now, batch.dry_run || helo.dry_run);
                    let outcome = answer.outcome();
                    refused |= !outcome.is_admitted();
                    results.push(OpResult { outcome, used: 0 });
                    details.push(OpDetail {
                        group,
                        index: i as u32,
                        answer: DetailAnswer::Helo(answer),
                    });
                    continue;
                }
                OpKind::RecordForEom { .. } => {
                    let used = match known_level {
                        Some(level) => level,
                        None => self.level(key, op.window(), now),
                    };
                    results.push(OpResult {
                        outcome: Outcome::Admitted,
                        used,
                    });
                    continue;
                }
            };
            let changes_nothing = batch.dry_run || check_only;
            let (outcome, leased) = self.take(
                key,
                op.window(),
                now,
                cost,
                op.limit(),
                changes_nothing,
                want,
            );
            if changes_nothing {
                checked_level = Some(match outcome {
                    TakeOutcome::Admitted { used } => used - cost,
                    TakeOutcome::Refused { used, .. } => used,
                });
            }
            if leased > 0 {
                grants[i] = LeaseGrant {
                    units: leased,
                    valid_ms: op.window().lease_valid_ms(now),
                    charged_at_ms: now,
                };
            }
            match outcome {
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
            // charge (takes with their leases, and first takes once per message).
            if !batch.dry_run {
                for (i, (op, r)) in ops.iter().zip(results.iter()).enumerate() {
                    let cost = match op.kind() {
                        OpKind::Take { cost } => cost + grants.get(i).map_or(0, |g| g.units),
                        OpKind::TakeOncePerMessage => 1,
                        OpKind::Check { .. }
                        | OpKind::RecordForEom { .. }
                        | OpKind::Greylist(_)
                        | OpKind::Helo(_) => continue,
                    };
                    if r.outcome == Outcome::Admitted {
                        self.refund(self.hashed(op.key()), op.window(), now, cost);
                    }
                }
            }
            // Nothing was leased.
            grants.fill(LeaseGrant::default());
            // Levels reported for admitted ops must not include the refunded cost.
            for (r, op) in results.iter_mut().zip(ops) {
                if r.outcome == Outcome::Admitted {
                    r.used = self.level(self.hashed(op.key()), op.window(), now);
                }
            }
        } else if let (false, Some(instance)) = (batch.dry_run, instance) {
            match session {
                Some(session) => self.record_group(session, ops, results, now),
                None => self.remember(instance, ops, results, now, &mut sessions),
            }
        }
        grants
    }

    /// Records once-per-message charges and END-OF-MESSAGE counters of an admitted group.
    fn remember<'s, O: GroupOp>(
        &'s self,
        instance: Hashed<'_>,
        ops: &[O],
        results: &[OpResult],
        now: u64,
        held: &mut Option<MutexGuard<'s, Sessions>>,
    ) {
        if !ops
            .iter()
            .zip(results)
            .any(|(op, r)| needs_recording(op, r))
        {
            return;
        }
        let sessions = self.sessions_of(held, instance);
        let session = self.session_entry(sessions, instance, now);
        self.record_group(session, ops, results, now);
    }

    /// Records an admitted group's once-per-message charges and END-OF-MESSAGE counters in
    /// its message's session, which then lives on for what those counters need.
    fn record_group<O: GroupOp>(
        &self,
        session: &mut Session,
        ops: &[O],
        results: &[OpResult],
        now: u64,
    ) {
        for (op, _) in ops
            .iter()
            .zip(results)
            .filter(|(op, r)| needs_recording(*op, r))
        {
            session.keep_until(now.saturating_add(self.session_ttl(op.window())));
            match op.kind() {
                OpKind::TakeOncePerMessage => session.charge(op.key()),
                OpKind::RecordForEom { label, group } => {
                    session.record(op.key(), op.limit(), op.window(), label, *group)
                }
                _ => {}
            }
        }
    }

    /// END-OF-MESSAGE: charge `size` to every counter recorded for the instance, one
    /// result per record into `out` (its entries' strings are reused; emptied first when
    /// nothing was recorded).
    fn end_of_message(&self, batch: &CounterBatch, size: u64, now: u64, out: &mut Vec<EomResult>) {
        let mut n = 0;
        if !batch.instance.is_empty() {
            let instance = self.hashed(&batch.instance);
            // Charged in place, under its shard's lock (then counters shards' locks: the
            // nesting run_group uses too), and ended after.
            let mut sessions = Self::shard_of(&self.sessions, instance);
            if batch.dry_run {
                if let Some(session) = sessions.get(instance) {
                    n = self.charge_session(&mut session.clone(), true, size, now, out);
                }
            } else if let Some(session) = sessions.get_mut(instance) {
                n = self.charge_session(session, false, size, now, out);
                sessions.end(instance);
            }
        }
        out.truncate(n);
    }

    /// Charges `size` to a session's records, group by group; writes the results over
    /// `out`'s first entries (reusing their strings), then appends. Returns how many.
    fn charge_session(
        &self,
        session: &mut Session,
        dry_run: bool,
        size: u64,
        now: u64,
        out: &mut Vec<EomResult>,
    ) -> usize {
        // Group by group, keeping the recorded order within a group (a stable sort: no
        // allocation for the few records a message has).
        session.pending.sort_by_key(|p| p.group);
        let batch = CounterBatch {
            instance: String::new(),
            dry_run,
            groups: Vec::new(),
            end_of_message: None,
        };
        let mut n = 0;
        let mut results: SmallVec<[OpResult; 4]> = SmallVec::new();
        // Filled in place for each group (a collected vector would be moved).
        let mut ops: SmallVec<[EomOp<'_>; 4]> = SmallVec::new();
        let mut rest = &session.pending[..];
        while let Some(first) = rest.first() {
            let g = first.group;
            let k = rest.iter().take_while(|p| p.group == g).count();
            let (members, tail) = rest.split_at(k);
            rest = tail;
            ops.clear();
            ops.extend(members.iter().map(|p| EomOp {
                key: session.str(p.key),
                limit: p.limit,
                window: p.spec,
                kind: OpKind::Take { cost: size },
            }));
            self.run_group(
                &batch,
                None,
                &ops,
                &[],
                now,
                GroupOut {
                    results: &mut results,
                    group: g,
                    details: &mut Vec::new(),
                },
            );
            for ((p, op), &result) in members.iter().zip(&ops).zip(&results) {
                let label = session.str(p.label);
                match out.get_mut(n) {
                    Some(r) => {
                        r.label.clear();
                        r.label.push_str(label);
                        r.key.clear();
                        r.key.push_str(op.key);
                        r.limit = p.limit;
                        r.result = result;
                    }
                    None => out.push(EomResult {
                        label: label.to_string(),
                        key: op.key.to_string(),
                        limit: p.limit,
                        result,
                    }),
                }
                n += 1;
            }
        }
        n
    }

    fn apply_now(&self, batch: &CounterBatch) -> CounterReply {
        let mut reply = CounterReply::default();
        self.run_batch(batch, &[], false, &mut reply);
        reply
    }

    /// Runs a batch with its lease wants; the grants have the batch's shape.
    fn apply_leasing_now(&self, batch: &CounterBatch, leases: &[Vec<u64>]) -> LeasedReply {
        let mut reply = CounterReply::default();
        let (mut grants, session_found) = self.run_batch(batch, leases, true, &mut reply);
        if grants.is_empty() {
            grants = reply
                .groups
                .iter()
                .map(|g| vec![LeaseGrant::default(); g.len()])
                .collect();
        }
        LeasedReply {
            reply,
            leases: grants,
            session_found,
        }
    }

    /// Runs a batch into `reply` (overwritten; its vectors are reused); `leases` has the
    /// batch's shape or is empty (then so are the returned grants, else they have the
    /// batch's shape). With `report_session`, also says whether the batch's session existed
    /// when the batch started.
    fn run_batch(
        &self,
        batch: &CounterBatch,
        leases: &[Vec<u64>],
        report_session: bool,
        reply: &mut CounterReply,
    ) -> (Vec<Vec<LeaseGrant>>, bool) {
        let now = self.clock.now_ms();
        let instance = (!batch.instance.is_empty()).then(|| self.hashed(&batch.instance));
        // As the Redis state reads it: only for a once-per-message take or END-OF-MESSAGE.
        let session_found = report_session
            && instance.is_some_and(|instance| {
                (batch.end_of_message.is_some()
                    || batch
                        .groups
                        .iter()
                        .flatten()
                        .any(|op| op.kind == OpKind::TakeOncePerMessage))
                    && Self::shard_of(&self.sessions, instance)
                        .get(instance)
                        .is_some()
            });
        reply.groups.resize_with(batch.groups.len(), Vec::new);
        reply.details.clear();
        let mut grants = Vec::new();
        for ((g, ops), results) in batch.groups.iter().enumerate().zip(&mut reply.groups) {
            let wants = leases.get(g).map_or(&[][..], Vec::as_slice);
            let group_grants = self.run_group(
                batch,
                instance,
                ops,
                wants,
                now,
                GroupOut {
                    results,
                    group: g as u32,
                    details: &mut reply.details,
                },
            );
            if !leases.is_empty() {
                grants.push(if group_grants.is_empty() {
                    vec![LeaseGrant::default(); ops.len()]
                } else {
                    group_grants
                });
            }
        }
        match batch.end_of_message {
            Some(size) => self.end_of_message(batch, size, now, &mut reply.end_of_message),
            None => reply.end_of_message.clear(),
        }
        (grants, session_found)
    }

    /// Merges an edge-held session into the stored one (kept for what its records' windows
    /// need, at least the shortest session TTL from now); a session with nothing to add is
    /// not created.
    fn save_session(&self, data: &SessionData, now: u64) {
        if data.charged.is_empty() && data.records.is_empty() {
            return;
        }
        let instance = self.hashed(&data.instance);
        let mut sessions = Self::shard_of(&self.sessions, instance);
        let session = self.session_entry(&mut sessions, instance, now);
        for key in &data.charged {
            session.charge(key);
        }
        for r in &data.records {
            session.keep_until(now.saturating_add(self.session_ttl(r.window)));
            session.record(&r.key, r.limit, r.window, &r.label, r.group);
        }
    }

    fn session_data(&self, instance: &str) -> Option<SessionData> {
        let hashed = self.hashed(instance);
        let sessions = Self::shard_of(&self.sessions, hashed);
        let mut data = snapshot::session_data(instance, sessions.get(hashed)?);
        // As the Redis state reports them (a set there): sorted.
        data.charged.sort_unstable();
        Some(data)
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

    fn apply_in_place_into(
        &self,
        batch: &CounterBatch,
        reply: &mut CounterReply,
    ) -> Option<Result<(), StateError>> {
        self.run_batch(batch, &[], false, reply);
        Some(Ok(()))
    }
}

/// For the quota service's tests and the equivalence test (embedded mode needs no leases).
impl SharedState for MemoryState {
    fn apply_leasing<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        let reply = self.apply_leasing_now(batch, leases);
        Box::pin(std::future::ready(Ok(reply)))
    }

    fn return_leases<'a>(
        &'a self,
        returns: &'a [LeaseReturn],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        for r in returns.iter().filter(|r| r.units > 0) {
            self.refund(self.hashed(&r.key), r.window, r.charged_at_ms, r.units);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn save_sessions<'a>(
        &'a self,
        sessions: &'a [SessionData],
        ended: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        let now = self.clock.now_ms();
        for s in sessions {
            self.save_session(s, now);
        }
        for instance in ended {
            let hashed = self.hashed(instance);
            Self::shard_of(&self.sessions, hashed).remove(hashed);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn load_session<'a>(
        &'a self,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionData>, StateError>> {
        Box::pin(std::future::ready(Ok(self.session_data(instance))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::state::EomRecord;
    use snapshot::CounterChanges;

    const HOUR: u64 = 3_600_000;
    /// The start of a minute: a bucket of an hour / 60 window begins here.
    const T0: u64 = 1_700_000_040_000 / 60_000 * 60_000;

    fn ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("in-process future was not ready"),
        }
    }

    fn state() -> (MemoryState, ManualClock) {
        let clock = ManualClock::new(T0);
        let state = MemoryState::new(Arc::new(clock.clone()), MemoryStateSettings::default());
        (state, clock)
    }

    fn op(key: &str, limit: u64, kind: OpKind) -> CounterOp {
        CounterOp {
            key: key.into(),
            limit,
            window: WindowSpec::new(HOUR, 60),
            kind,
        }
    }

    fn take(key: &str, limit: u64, cost: u64) -> CounterOp {
        op(key, limit, OpKind::Take { cost })
    }

    fn batch(groups: Vec<Vec<CounterOp>>) -> CounterBatch {
        CounterBatch {
            groups,
            ..CounterBatch::default()
        }
    }

    fn level(s: &MemoryState, key: &str) -> u64 {
        let b = batch(vec![vec![op(key, 1_000, OpKind::Check { cost: 0 })]]);
        s.apply_now(&b).groups[0][0].used
    }

    #[test]
    fn end_of_message_charges_each_group_in_order_and_reports_labels_and_keys() {
        let (s, _clock) = state();
        let record = |key: &str, limit: u64, label: &str, group: u32| {
            op(
                key,
                limit,
                OpKind::RecordForEom {
                    label: label.into(),
                    group,
                },
            )
        };
        // Group 1 recorded first, then group 0 with two records.
        let rcpt = CounterBatch {
            instance: "msg-1".into(),
            groups: vec![
                vec![record("a", 1_000, "pa", 0), record("b", 50, "pb", 0)],
                vec![record("c", 1_000, "pc", 1)],
            ],
            ..CounterBatch::default()
        };
        s.apply_now(&rcpt);
        let eom = CounterBatch {
            instance: "msg-1".into(),
            end_of_message: Some(100),
            ..CounterBatch::default()
        };
        let dry = s.apply_now(&CounterBatch {
            dry_run: true,
            ..eom.clone()
        });
        let got = s.apply_now(&eom).end_of_message;
        let summary = |r: &[EomResult]| {
            r.iter()
                .map(|e| {
                    let outcome = match e.result.outcome {
                        Outcome::Admitted => "admitted",
                        Outcome::Refused { .. } => "refused",
                        _ => "other",
                    };
                    (e.label.clone(), e.key.clone(), e.limit, outcome)
                })
                .collect::<Vec<_>>()
        };
        let expected = vec![
            ("pa".to_string(), "a".to_string(), 1_000, "admitted"),
            ("pb".to_string(), "b".to_string(), 50, "refused"),
            ("pc".to_string(), "c".to_string(), 1_000, "admitted"),
        ];
        assert_eq!(summary(&got), expected);
        assert_eq!(summary(&dry.end_of_message), expected);
        // Group 0 was all-or-nothing (refused by "b"); group 1 was charged.
        assert_eq!(level(&s, "a"), 0);
        assert_eq!(level(&s, "c"), 100);
        // The session is gone: a second END-OF-MESSAGE charges nothing.
        assert!(s.apply_now(&eom).end_of_message.is_empty());
    }

    #[test]
    fn a_record_after_a_check_reports_the_counter_level() {
        let (s, _clock) = state();
        s.apply_now(&batch(vec![vec![take("k", 100, 5)]]));
        let record = OpKind::RecordForEom {
            label: "l".into(),
            group: 0,
        };
        for dry_run in [false, true] {
            let b = CounterBatch {
                instance: format!("I-{dry_run}"),
                dry_run,
                groups: vec![vec![
                    op("k", 100, OpKind::Check { cost: 3 }),
                    op("k", 100, record.clone()),
                    op("j", 100, OpKind::Take { cost: 2 }),
                    op("j", 100, record.clone()),
                ]],
                ..CounterBatch::default()
            };
            let used: Vec<u64> = s.apply_now(&b).groups[0].iter().map(|r| r.used).collect();
            // The first pass charged "j": the dry run sees it.
            let j = if dry_run { [4, 2] } else { [2, 2] };
            assert_eq!(used, [8, 5, j[0], j[1]], "dry run: {dry_run}");
        }
        // A refused check: the record is not evaluated and reports the level.
        let b = batch(vec![vec![
            op("k", 6, OpKind::Check { cost: 3 }),
            op("k", 6, record),
        ]]);
        let r = s.apply_now(&b);
        assert_eq!(r.groups[0][1].outcome, Outcome::NotEvaluated);
        assert_eq!(r.groups[0][1].used, 5);
    }

    #[test]
    fn a_reused_reply_equals_a_fresh_one() {
        let (fresh, _c1) = state();
        let (reused, _c2) = state();
        let mut reply = CounterReply::default();
        let once = |limit| op("o", limit, OpKind::TakeOncePerMessage);
        let batches = [
            batch(vec![
                vec![take("a", 10, 1)],
                vec![take("b", 10, 1), once(10)],
            ]),
            batch(vec![vec![take("a", 10, 20)]]),
            CounterBatch {
                instance: "I1".into(),
                groups: vec![vec![
                    once(10),
                    op("s", 10, OpKind::Check { cost: 4 }),
                    op(
                        "s",
                        10,
                        OpKind::RecordForEom {
                            label: "l".into(),
                            group: 0,
                        },
                    ),
                ]],
                ..CounterBatch::default()
            },
            CounterBatch {
                instance: "I1".into(),
                end_of_message: Some(4),
                ..CounterBatch::default()
            },
            batch(vec![
                vec![],
                vec![take("a", 10, 1), take("b", 1, 5)],
                vec![],
            ]),
            batch(vec![]),
        ];
        for b in &batches {
            let want = fresh.apply_now(b);
            assert_eq!(reused.apply_in_place_into(b, &mut reply), Some(Ok(())));
            assert_eq!(reply, want);
        }
    }

    #[test]
    fn recycled_sessions_and_stale_end_of_message_results_change_nothing() {
        // One state's replies are reused, with stale END-OF-MESSAGE results; both recycle
        // session buffers from message to message.
        let (reused, _c1) = state();
        let (fresh, _c2) = state();
        let mut reply = CounterReply::default();
        let stale = |n: usize| {
            (0..n)
                .map(|i| EomResult {
                    label: format!("stale label {i}"),
                    key: format!("stale key {i}"),
                    limit: 1,
                    result: OpResult {
                        outcome: Outcome::NotEvaluated,
                        used: 7,
                    },
                })
                .collect::<Vec<_>>()
        };
        let record = |key: &str, label: &str, group: u32| {
            op(
                key,
                1_000,
                OpKind::RecordForEom {
                    label: label.into(),
                    group,
                },
            )
        };
        for (m, stale_entries) in [(0, 0), (1, 5), (2, 1), (3, 2), (4, 0)] {
            let instance = format!("msg-{m}");
            // Message m records m % 3 + 1 counters (group 1 before group 0), once-per-message
            // keys shared between messages and its own.
            let mut groups = vec![vec![], vec![]];
            for k in 0..=(m % 3) {
                groups[(k + 1) % 2].push(record(
                    &format!("r{m}-{k}"),
                    &format!("L{k}"),
                    ((k + 1) % 2) as u32,
                ));
            }
            groups[0].push(op("shared", 1_000, OpKind::TakeOncePerMessage));
            groups[0].push(op(&format!("own{m}"), 1_000, OpKind::TakeOncePerMessage));
            let rcpt = CounterBatch {
                instance: instance.clone(),
                groups,
                ..CounterBatch::default()
            };
            for _ in 0..2 {
                let want = fresh.apply_now(&rcpt);
                assert_eq!(reused.apply_in_place_into(&rcpt, &mut reply), Some(Ok(())));
                assert_eq!(reply, want, "message {m}");
            }
            let data = reused.session_data(&instance).expect("a session");
            assert_eq!(data, fresh.session_data(&instance).expect("a session"));
            // Nothing left over from an earlier message's recycled buffers.
            assert_eq!(data.charged, [format!("own{m}"), "shared".into()]);
            let mut keys: Vec<_> = data.records.iter().map(|r| r.key.clone()).collect();
            keys.sort();
            let want_keys: Vec<_> = (0..=(m % 3)).map(|k| format!("r{m}-{k}")).collect();
            assert_eq!(keys, want_keys);
            let outcomes: Vec<_> = reply.groups[0].iter().map(|r| r.outcome).collect();
            assert!(outcomes.ends_with(&[Outcome::AlreadyCounted, Outcome::AlreadyCounted]));
            let eom = CounterBatch {
                instance,
                end_of_message: Some(10 + m as u64),
                ..CounterBatch::default()
            };
            let want = fresh.apply_now(&eom);
            assert_eq!(want.end_of_message.len(), m % 3 + 1);
            reply.end_of_message = stale(stale_entries);
            assert_eq!(reused.apply_in_place_into(&eom, &mut reply), Some(Ok(())));
            assert_eq!(reply, want, "message {m}");
        }
        assert_eq!(reused.sessions(), 0);
        // An END-OF-MESSAGE without a session empties stale results.
        reply.end_of_message = stale(3);
        let none = CounterBatch {
            instance: "unknown".into(),
            end_of_message: Some(1),
            ..CounterBatch::default()
        };
        assert_eq!(reused.apply_in_place_into(&none, &mut reply), Some(Ok(())));
        assert!(reply.end_of_message.is_empty());
    }

    #[test]
    fn a_session_keeps_its_strings_apart() {
        let mut s = Session::new(0);
        let w = WindowSpec::new(HOUR, 60);
        s.charge("a");
        s.charge("ab");
        s.charge("a");
        s.record("k", 5, w, "label", 1);
        s.record("k", 6, w, "other", 2);
        s.record("a", 7, w, "l2", 0);
        assert_eq!(s.charged.len(), 2);
        assert!(s.is_charged("a") && s.is_charged("ab") && !s.is_charged("b"));
        assert!(!s.is_charged("k") && !s.is_charged(""));
        let pending: Vec<_> = s
            .pending
            .iter()
            .map(|p| (s.str(p.key), s.str(p.label), p.limit, p.group))
            .collect();
        assert_eq!(pending, [("k", "label", 5, 1), ("a", "l2", 7, 0)]);
    }

    #[test]
    fn a_lease_is_charged_with_the_take_and_reported() {
        let (s, clock) = state();
        clock.advance_ms(10_000);
        let r =
            ready(s.apply_leasing(&batch(vec![vec![take("k", 100_000, 1)]]), &[vec![32]])).unwrap();
        assert_eq!(r.reply.groups[0][0].outcome, Outcome::Admitted);
        // The op's level does not include the lease; the counter's does.
        assert_eq!(r.reply.groups[0][0].used, 1);
        assert_eq!(
            r.leases,
            vec![vec![LeaseGrant {
                units: 32,
                valid_ms: 50_000,
                charged_at_ms: T0 + 10_000,
            }]]
        );
        assert_eq!(level(&s, "k"), 33);
        // A grant is capped at 1/64 of the limit (and a quarter of the room above half of it).
        let r = ready(s.apply_leasing(&batch(vec![vec![take("k", 100_000, 1)]]), &[vec![5_000]]))
            .unwrap();
        assert_eq!(r.leases[0][0].units, 1_562);
        assert_eq!(level(&s, "k"), 1_596);
        // No want, no lease; no wants at all: grants in the batch's shape, all zero.
        let r = ready(s.apply_leasing(
            &batch(vec![vec![take("k", 100_000, 1), take("j", 100_000, 1)]]),
            &[vec![0, 0]],
        ))
        .unwrap();
        assert_eq!(r.leases, vec![vec![LeaseGrant::default(); 2]]);
        let r =
            ready(s.apply_leasing(&batch(vec![vec![take("k", 100_000, 1)], vec![]]), &[])).unwrap();
        assert_eq!(r.leases, vec![vec![LeaseGrant::default()], vec![]]);
        assert_eq!(level(&s, "k"), 1_598);
    }

    #[test]
    fn only_takes_that_charge_get_leases() {
        let (s, _clock) = state();
        let mut dry = batch(vec![vec![take("k", 1_000, 1)]]);
        dry.dry_run = true;
        let r = ready(s.apply_leasing(&dry, &[vec![32]])).unwrap();
        assert_eq!(r.leases[0][0], LeaseGrant::default());
        let mut once = batch(vec![vec![
            op("c", 1_000, OpKind::Check { cost: 1 }),
            op("o", 1_000, OpKind::TakeOncePerMessage),
        ]]);
        once.instance = "I1".into();
        let r = ready(s.apply_leasing(&once, &[vec![32, 32]])).unwrap();
        assert_eq!(r.leases[0], vec![LeaseGrant::default(); 2]);
        assert_eq!((level(&s, "k"), level(&s, "c"), level(&s, "o")), (0, 0, 1));
    }

    #[test]
    fn a_refused_group_charges_neither_cost_nor_lease() {
        let (s, _clock) = state();
        let b = batch(vec![vec![take("k", 1_000, 1), take("full", 1, 2)]]);
        let r = ready(s.apply_leasing(&b, &[vec![32, 0]])).unwrap();
        assert_eq!(r.reply.groups[0][0].outcome, Outcome::Admitted);
        assert_eq!(r.reply.groups[0][0].used, 0);
        assert!(matches!(
            r.reply.groups[0][1].outcome,
            Outcome::Refused { .. }
        ));
        assert_eq!(r.leases[0], vec![LeaseGrant::default(); 2]);
        assert_eq!(level(&s, "k"), 0);
    }

    #[test]
    fn no_lease_in_the_upper_half_or_at_a_bucket_end() {
        let (s, clock) = state();
        let b = batch(vec![vec![take("k", 100, 50)]]);
        let r = ready(s.apply_leasing(&b, &[vec![32]])).unwrap();
        assert_eq!(r.leases[0][0].units, 0);
        assert_eq!(level(&s, "k"), 50);
        // 49 ms before the bucket ends: nothing; 50 ms before: a lease valid 50 ms.
        let b = batch(vec![vec![take("j", 100_000, 1)]]);
        clock.advance_ms(60_000 - 49);
        let r = ready(s.apply_leasing(&b, &[vec![32]])).unwrap();
        assert_eq!(r.leases[0][0], LeaseGrant::default());
        clock.set_ms(T0 + 120_000 - 50);
        let r = ready(s.apply_leasing(&b, &[vec![32]])).unwrap();
        assert_eq!(r.leases[0][0].units, 32);
        assert_eq!(r.leases[0][0].valid_ms, 50);
        assert_eq!(level(&s, "j"), 34);
    }

    #[test]
    fn returned_leases_go_back_to_their_bucket() {
        let (s, clock) = state();
        let b = batch(vec![vec![take("k", 100_000, 1)]]);
        let r = ready(s.apply_leasing(&b, &[vec![32]])).unwrap();
        let grant = r.leases[0][0];
        assert_eq!(grant.units, 32);
        // Later, in another bucket, more is taken; the return hits the lease's bucket.
        clock.advance_ms(90_000);
        s.apply_now(&b);
        assert_eq!(level(&s, "k"), 34);
        let back = |units| LeaseReturn {
            key: "k".into(),
            window: WindowSpec::new(HOUR, 60),
            units,
            charged_at_ms: grant.charged_at_ms,
        };
        let missing = LeaseReturn {
            key: "gone".into(),
            ..back(5)
        };
        ready(s.return_leases(&[back(30), missing])).unwrap();
        assert_eq!(level(&s, "k"), 4);
        assert_eq!(s.counters(), 1, "a return creates no counter");
        // The take of the later bucket is not touched by an oversized return.
        ready(s.return_leases(&[back(10)])).unwrap();
        assert_eq!(level(&s, "k"), 1);
    }

    fn record(key: &str, group: u32) -> EomRecord {
        EomRecord {
            key: key.into(),
            limit: 10_000,
            window: WindowSpec::new(HOUR, 60),
            label: format!("label|{key}"),
            group,
        }
    }

    #[test]
    fn sessions_are_saved_merged_loaded_and_ended() {
        let (s, _clock) = state();
        assert_eq!(ready(s.load_session("I1")).unwrap(), None);
        let first = SessionData {
            instance: "I1".into(),
            charged: vec!["b".into(), "a".into()],
            records: vec![record("r1", 0), record("r2", 1)],
        };
        let other = SessionData {
            instance: "I2".into(),
            charged: vec!["x".into()],
            records: vec![],
        };
        let empty = SessionData {
            instance: "I3".into(),
            ..SessionData::default()
        };
        ready(s.save_sessions(&[first.clone(), other.clone(), empty], &[])).unwrap();
        let mut want = first.clone();
        want.charged.sort();
        assert_eq!(ready(s.load_session("I1")).unwrap(), Some(want.clone()));
        assert_eq!(ready(s.load_session("I2")).unwrap(), Some(other));
        assert_eq!(ready(s.load_session("I3")).unwrap(), None);
        // Merging: new charged keys are added, a key's first record wins, new records follow.
        let mut changed = record("r1", 2);
        changed.limit = 1;
        let more = SessionData {
            instance: "I1".into(),
            charged: vec!["a".into(), "c".into()],
            records: vec![changed, record("r3", 0)],
        };
        ready(s.save_sessions(&[more], &["I2".into()])).unwrap();
        want.charged.push("c".into());
        want.records.push(record("r3", 0));
        assert_eq!(ready(s.load_session("I1")).unwrap(), Some(want));
        assert_eq!(ready(s.load_session("I2")).unwrap(), None);
        // A saved session is the one END-OF-MESSAGE charges, and that ends it.
        let mut eom = CounterBatch {
            instance: "I1".into(),
            end_of_message: Some(7),
            ..CounterBatch::default()
        };
        let r = ready(s.apply_leasing(&eom, &[])).unwrap();
        assert!(r.session_found);
        let keys: Vec<&str> = r
            .reply
            .end_of_message
            .iter()
            .map(|e| e.key.as_str())
            .collect();
        assert_eq!(keys, ["r1", "r3", "r2"]);
        assert_eq!(ready(s.load_session("I1")).unwrap(), None);
        eom.instance = "unknown".into();
        let r = ready(s.apply_leasing(&eom, &[])).unwrap();
        assert!(!r.session_found);
        assert!(r.reply.end_of_message.is_empty());
    }

    #[test]
    fn session_found_says_whether_the_session_existed() {
        let (s, _clock) = state();
        let mut b = batch(vec![vec![op("o", 10, OpKind::TakeOncePerMessage)]]);
        b.instance = "I1".into();
        assert!(!ready(s.apply_leasing(&b, &[])).unwrap().session_found);
        let r = ready(s.apply_leasing(&b, &[])).unwrap();
        assert!(r.session_found);
        assert_eq!(r.reply.groups[0][0].outcome, Outcome::AlreadyCounted);
        // Batches that do not read the session never report one.
        let mut plain = batch(vec![vec![take("k", 10, 1)]]);
        plain.instance = "I1".into();
        assert!(!ready(s.apply_leasing(&plain, &[])).unwrap().session_found);
        // A saved session is found too.
        ready(s.save_sessions(
            &[SessionData {
                instance: "I2".into(),
                charged: vec!["o".into()],
                records: vec![],
            }],
            &[],
        ))
        .unwrap();
        b.instance = "I2".into();
        let r = ready(s.apply_leasing(&b, &[])).unwrap();
        assert!(r.session_found);
        assert_eq!(r.reply.groups[0][0].outcome, Outcome::AlreadyCounted);
    }

    fn tracking_state(clock: &ManualClock) -> MemoryState {
        let settings = MemoryStateSettings {
            track_changes: true,
            ..MemoryStateSettings::default()
        };
        MemoryState::new(Arc::new(clock.clone()), settings)
    }

    #[test]
    fn a_refused_request_leaves_no_counter() {
        let (s, _clock) = state();
        // A take that can never fit, one on a full limit of zero, a once-per-message take.
        let mut b = batch(vec![
            vec![take("big", 5, 6)],
            vec![take("zero", 0, 1)],
            vec![op("once", 0, OpKind::TakeOncePerMessage)],
        ]);
        b.instance = "I1".into();
        let r = s.apply_now(&b);
        assert!(r.groups.iter().all(|g| !g[0].outcome.is_admitted()));
        assert_eq!(s.counters(), 0);
        assert_eq!(s.sessions(), 0, "a refused group records nothing either");
        // A group whose second op is refused: the first op's new counter is refunded away.
        let r = s.apply_now(&batch(vec![vec![take("first", 10, 1), take("full", 1, 2)]]));
        assert_eq!(r.groups[0][0].outcome, Outcome::Admitted);
        assert_eq!(s.counters(), 0);
        // Checks and dry runs never create one.
        let mut dry = batch(vec![vec![take("dry", 10, 1)]]);
        dry.dry_run = true;
        s.apply_now(&dry);
        s.apply_now(&batch(vec![vec![op("c", 10, OpKind::Check { cost: 1 })]]));
        assert_eq!(s.counters(), 0);
        // A counter that holds something keeps it when a later group is refused.
        s.apply_now(&batch(vec![vec![take("kept", 10, 3)]]));
        s.apply_now(&batch(vec![vec![take("kept", 10, 1), take("full", 1, 2)]]));
        assert_eq!((s.counters(), level(&s, "kept")), (1, 3));
    }

    #[test]
    fn tables_shrink_after_a_sweep() {
        let (s, clock) = state();
        for i in 0..20_000 {
            let mut b = batch(vec![vec![
                take(&format!("k{i}"), 10, 1),
                op(&format!("o{i}"), 10, OpKind::TakeOncePerMessage),
            ]]);
            b.instance = format!("I{i}");
            s.apply_now(&b);
        }
        assert_eq!((s.counters(), s.sessions()), (40_000, 20_000));
        let (counters, sessions) = (s.counter_capacity(), s.session_capacity());
        assert!(counters >= 40_000 && sessions >= 20_000);
        // Half the keys stay busy; the sweep after an hour reclaims the rest.
        clock.advance_ms(HOUR - 60_000);
        for i in 0..100 {
            s.apply_now(&batch(vec![vec![take(&format!("k{i}"), 10, 1)]]));
        }
        clock.advance_ms(2 * 60_000);
        assert_eq!(s.sweep(), 40_000 - 100 + 20_000);
        assert_eq!((s.counters(), s.sessions()), (100, 0));
        assert!(
            s.counter_capacity() < counters / 20,
            "{} of {counters}",
            s.counter_capacity()
        );
        assert!(s.session_capacity() < sessions / 20);
        // The kept counters are intact and the tables grow again as needed.
        assert_eq!(level(&s, "k7"), 1);
        s.apply_now(&batch(vec![vec![take("new", 10, 1)]]));
        assert_eq!(s.counters(), 101);
    }

    #[test]
    fn sessions_live_as_long_as_their_counters_need() {
        let (s, clock) = state();
        let once = |key: &str, period_s: u64| CounterOp {
            window: WindowSpec::new(period_s * 1_000, 60),
            ..op(key, 10, OpKind::TakeOncePerMessage)
        };
        let at = |instance: &str, ops: Vec<CounterOp>| {
            let mut b = batch(vec![ops]);
            b.instance = instance.into();
            s.apply_now(&b);
        };
        at("minute", vec![once("a", 60)]);
        at("quarter", vec![once("b", 900)]);
        at("day", vec![once("c", 86_400)]);
        at("mixed", vec![once("d", 60), once("e", 1_800)]);
        let live = |s: &MemoryState| {
            let mut v: Vec<String> = s
                .saved_sessions()
                .into_iter()
                .map(|x| x.session.instance)
                .collect();
            v.sort();
            v
        };
        // A 1-minute window: the 10-minute minimum. 15 minutes: period + one bucket.
        clock.advance_ms(10 * 60_000 - 1);
        s.sweep();
        assert_eq!(live(&s), ["day", "minute", "mixed", "quarter"]);
        clock.advance_ms(1);
        s.sweep();
        assert_eq!(live(&s), ["day", "mixed", "quarter"]);
        clock.set_ms(T0 + 15 * 60_000 + 15_000);
        s.sweep();
        assert_eq!(live(&s), ["day", "mixed"]);
        // 30 minutes (and a bucket); a day is capped at the 1-hour maximum.
        clock.set_ms(T0 + 30 * 60_000 + 30_000);
        s.sweep();
        assert_eq!(live(&s), ["day"]);
        clock.set_ms(T0 + HOUR);
        s.sweep();
        assert!(live(&s).is_empty());
        // Each change counts from itself: a later RCPT of the message keeps it longer.
        clock.set_ms(T0 + 2 * HOUR);
        at("slow", vec![once("f", 60)]);
        clock.advance_ms(9 * 60_000);
        at("slow", vec![once("g", 60)]);
        clock.advance_ms(9 * 60_000);
        s.sweep();
        assert_eq!(live(&s), ["slow"]);
    }

    #[test]
    fn changes_are_handed_over_and_restored_exactly() {
        let clock = ManualClock::new(T0);
        let s = tracking_state(&clock);
        assert!(s.take_changes().is_empty());
        for minute in 0..90u64 {
            s.apply_now(&batch(vec![vec![take("k", 1_000, 1), take("j", 1_000, 2)]]));
            if minute % 30 == 0 {
                s.apply_now(&batch(vec![vec![take("rare", 1_000, 5)]]));
            }
            clock.advance_ms(60_000);
        }
        let mut changes = s.take_changes();
        assert!(changes.removed.is_empty());
        changes.changed.sort_by(|a, b| a.key.cmp(&b.key));
        let keys: Vec<&str> = changes.changed.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["j", "k", "rare"]);
        assert!(s.take_changes().is_empty(), "marks are cleared");
        // Refused and checked requests change nothing.
        s.apply_now(&batch(vec![vec![take("k", 1, 1)]]));
        s.apply_now(&batch(vec![vec![op(
            "k",
            1_000,
            OpKind::Check { cost: 1 },
        )]]));
        assert!(s.take_changes().is_empty());
        // A new process, five minutes later, restored from the snapshot.
        clock.advance_ms(5 * 60_000);
        let restored = tracking_state(&clock);
        assert_eq!(restored.restore_counters(changes.changed.clone()), 3);
        for key in ["k", "j", "rare"] {
            assert_eq!(level(&restored, key), level(&s, key), "{key}");
        }
        assert!(
            restored.take_changes().is_empty(),
            "restored is not changed"
        );
        // Both go on alike.
        for _ in 0..70 {
            let b = batch(vec![vec![take("k", 62, 1)]]);
            assert_eq!(restored.apply_now(&b), s.apply_now(&b));
            clock.advance_ms(20_000);
        }
        // Restoring again adds nothing (no double count); expired snapshots restore nothing.
        assert_eq!(restored.restore_counters(changes.changed.clone()), 0);
        clock.advance_ms(2 * HOUR);
        assert_eq!(tracking_state(&clock).restore_counters(changes.changed), 0);
    }

    #[test]
    fn removing_a_stored_counter_is_handed_over() {
        let clock = ManualClock::new(T0);
        let s = tracking_state(&clock);
        // Stored, then emptied by a refund: its key is handed over for deletion.
        let r =
            ready(s.apply_leasing(&batch(vec![vec![take("k", 100_000, 1)]]), &[vec![32]])).unwrap();
        let grant = r.leases[0][0];
        assert_eq!(s.take_changes().changed.len(), 1);
        ready(s.return_leases(&[LeaseReturn {
            key: "k".into(),
            window: WindowSpec::new(HOUR, 60),
            units: 33,
            charged_at_ms: grant.charged_at_ms,
        }]))
        .unwrap();
        assert_eq!(s.counters(), 0);
        let changes = s.take_changes();
        assert_eq!(
            (changes.removed, changes.changed),
            (vec!["k".into()], vec![])
        );
        // Never stored: removed without a trace.
        s.apply_now(&batch(vec![vec![take("n", 10, 1), take("full", 0, 1)]]));
        assert!(s.take_changes().is_empty());
        // Removed, then counted again before the next collection: both, removal first.
        s.apply_now(&batch(vec![vec![take("r", 10, 1)]]));
        s.take_changes();
        s.refund(s.hashed("r"), WindowSpec::new(HOUR, 60), T0, 1);
        s.apply_now(&batch(vec![vec![take("r", 10, 2)]]));
        let changes = s.take_changes();
        assert_eq!(changes.removed, ["r"]);
        assert_eq!(changes.changed[0].buckets, [(T0 / 60_000, 2)]);
        // Pending changes absorb later ones: the latest state of a key wins.
        let mut pending = changes.clone();
        s.apply_now(&batch(vec![vec![take("r", 10, 1), take("q", 10, 1)]]));
        pending.absorb(s.take_changes());
        let mut keys: Vec<_> = pending.changed.iter().map(|c| c.key.clone()).collect();
        keys.sort();
        assert_eq!(keys, ["q", "r"]);
        let r = pending.changed.iter().find(|c| c.key == "r").unwrap();
        assert_eq!(r.buckets, [(T0 / 60_000, 3)]);
        pending.absorb(CounterChanges {
            removed: vec!["q".into()],
            changed: vec![],
        });
        assert_eq!(pending.changed.len(), 1);
        assert_eq!(pending.removed, ["r", "q"]);
    }

    #[test]
    fn a_changed_period_keeps_the_counter() {
        let (s, clock) = state();
        s.apply_now(&batch(vec![vec![take("k", 10, 4)]]));
        clock.advance_ms(30 * 60_000);
        // The quota now counts per day: what was taken is still there.
        let day = CounterOp {
            window: WindowSpec::new(24 * HOUR, 60),
            ..take("k", 10, 4)
        };
        let r = s.apply_now(&batch(vec![vec![day.clone()]]));
        assert_eq!(r.groups[0][0].used, 8);
        clock.advance_ms(2 * HOUR);
        let r = s.apply_now(&batch(vec![vec![day]]));
        assert!(matches!(r.groups[0][0].outcome, Outcome::Refused { .. }));
    }

    #[test]
    fn sessions_are_saved_and_restored_with_their_expiry() {
        let clock = ManualClock::new(T0);
        let s = tracking_state(&clock);
        let rcpt = CounterBatch {
            instance: "I1".into(),
            groups: vec![vec![
                op("o", 10, OpKind::TakeOncePerMessage),
                op(
                    "size",
                    1_000,
                    OpKind::RecordForEom {
                        label: "l".into(),
                        group: 0,
                    },
                ),
            ]],
            ..CounterBatch::default()
        };
        s.apply_now(&rcpt);
        let saved = s.saved_sessions();
        assert_eq!(saved.len(), 1);
        assert_eq!(saved[0].expires_ms, T0 + HOUR);
        let restored = tracking_state(&clock);
        restored.restore_counters(s.take_changes().changed);
        clock.advance_ms(60_000);
        assert_eq!(restored.restore_sessions(saved.clone()), 1);
        assert_eq!(restored.saved_sessions(), saved);
        // The message goes on: its once-per-message charge is not taken twice, and
        // END-OF-MESSAGE charges the recorded counter.
        let r = restored.apply_now(&rcpt);
        assert_eq!(r.groups[0][0].outcome, Outcome::AlreadyCounted);
        let eom = CounterBatch {
            instance: "I1".into(),
            end_of_message: Some(700),
            ..CounterBatch::default()
        };
        let r = restored.apply_now(&eom);
        assert_eq!(r.end_of_message[0].result.used, 700);
        assert_eq!(level(&restored, "o"), 1);
        // Expired sessions are not restored.
        clock.advance_ms(HOUR);
        assert_eq!(tracking_state(&clock).restore_sessions(saved), 0);
    }
}
