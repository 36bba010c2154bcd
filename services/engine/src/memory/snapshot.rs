//! What the in-process state hands to a store, and takes back from one at start.
//!
//! Persistence is the store's business; the state only keeps it cheap. With
//! [`MemoryStateSettings::track_changes`](super::MemoryStateSettings::track_changes) on, a
//! request that changes a counter sets a flag on it and, the first time since the last
//! collection, pushes its hash onto its shard's list (under the shard lock the request holds
//! anyway: no allocation once the list has grown, no I/O). A background task calls
//! [`MemoryState::take_changes`] every so often and writes what it gets: the changed counters
//! as they are now, and the keys of saved counters that were removed from memory while they
//! may still count something (emptied by a refund). At start, [`MemoryState::restore_counters`]
//! puts saved counters back, with their sub-buckets and indexes, so a restart neither
//! forgets nor counts twice; buckets that left the window while the process was stopped are
//! dropped.
//!
//! Message sessions are saved whole ([`MemoryState::saved_sessions`], on a clean stop) and
//! restored with their expiry ([`MemoryState::restore_sessions`]).

use super::{Counter, Counters, MemoryState};
use crate::state::{EomRecord, SessionData};
use crate::window::{Window, WindowSpec};
use std::collections::HashMap;

/// One counter as saved: its key, window and live sub-buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterSnapshot {
    /// The counter's key (policy, quota, limit type and track key).
    pub key: String,
    /// The window its buckets are indexed by.
    pub window: WindowSpec,
    /// Sub-buckets `(index, count)`, oldest first.
    pub buckets: Vec<(u64, u64)>,
}

impl CounterSnapshot {
    /// When the saved counter stops counting anything (ms since the epoch): the newest
    /// bucket leaves the window then. 0 when it has no bucket.
    pub fn expires_ms(&self) -> u64 {
        self.buckets
            .iter()
            .map(|&(j, _)| self.window.expiry_of(j))
            .max()
            .unwrap_or(0)
    }
}

/// Counter changes since the last [`MemoryState::take_changes`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CounterChanges {
    /// Keys whose saved copy is to be deleted. Applied before [`CounterChanges::changed`]
    /// (a key removed and then counted again appears in both).
    pub removed: Vec<String>,
    /// Changed counters, as they are now.
    pub changed: Vec<CounterSnapshot>,
}

impl CounterChanges {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.changed.is_empty()
    }

    /// Adds later changes to these (not yet written): a key's latest state wins.
    pub fn absorb(&mut self, later: CounterChanges) {
        if self.is_empty() {
            *self = later;
            return;
        }
        let mut at: HashMap<String, usize> = self
            .changed
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.clone(), i))
            .collect();
        let mut dropped = vec![false; self.changed.len()];
        for key in later.removed {
            if let Some(i) = at.remove(&key) {
                dropped[i] = true;
            }
            self.removed.push(key);
        }
        let mut kept: Vec<CounterSnapshot> = std::mem::take(&mut self.changed)
            .into_iter()
            .zip(dropped)
            .filter_map(|(c, d)| (!d).then_some(c))
            .collect();
        at = kept
            .iter()
            .enumerate()
            .map(|(i, c)| (c.key.clone(), i))
            .collect();
        for c in later.changed {
            match at.get(&c.key) {
                Some(&i) => kept[i] = c,
                None => {
                    at.insert(c.key.clone(), kept.len());
                    kept.push(c);
                }
            }
        }
        self.changed = kept;
    }
}

/// A message session as saved, with when it expires (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedSession {
    /// Its instance, once-per-message charges and END-OF-MESSAGE records.
    pub session: SessionData,
    /// When it is dropped if no END-OF-MESSAGE comes.
    pub expires_ms: u64,
}

impl MemoryState {
    /// Hands over every counter changed since the last call (clearing the marks) and the
    /// keys of saved counters removed since. Empty unless
    /// [`MemoryStateSettings::track_changes`](super::MemoryStateSettings::track_changes) is
    /// on. Each shard is locked once, for as long as copying its changes takes.
    pub fn take_changes(&self) -> CounterChanges {
        let mut out = CounterChanges::default();
        for shard in &self.counters {
            let mut guard = shard.lock();
            let Counters {
                table,
                dirty,
                removed,
            } = &mut *guard;
            out.removed.append(removed);
            for hash in dirty.drain(..) {
                // The dirty entry of this hash (several keys may share the hash's tag, so
                // the whole hash is compared; an entry removed since is simply not found).
                let found = table
                    .0
                    .find_mut(hash, |(k, c)| c.dirty && self.hash(k) == hash);
                if let Some((key, c)) = found {
                    c.dirty = false;
                    c.stored = true;
                    out.changed.push(CounterSnapshot {
                        key: key.clone(),
                        window: c.spec,
                        buckets: c.window.buckets().collect(),
                    });
                }
            }
            super::shrink_list(dirty);
            super::shrink_list(removed);
        }
        out
    }

    /// Puts saved counters back (at start, before requests): buckets no longer counted now
    /// are dropped, and a counter left with none is not created. A key already in memory
    /// is left as it is. Returns how many counters were restored.
    pub fn restore_counters(&self, counters: impl IntoIterator<Item = CounterSnapshot>) -> usize {
        let now = self.clock.now_ms();
        let mut restored = 0;
        for saved in counters {
            let window = Window::restore(saved.window, now, saved.buckets);
            if window.is_empty() {
                continue;
            }
            let key = self.hashed(&saved.key);
            let mut shard = Self::shard_of(&self.counters, key);
            if shard.get(key).is_some() {
                continue;
            }
            let counter = Counter {
                spec: saved.window,
                window,
                dirty: false,
                stored: true,
                limit: 0,
                refused_at_ms: 0,
            };
            shard.insert(key, counter, |k| self.hash(k));
            restored += 1;
        }
        restored
    }

    /// Every live message session, with its expiry (for a store, at a clean stop).
    pub fn saved_sessions(&self) -> Vec<SavedSession> {
        let now = self.clock.now_ms();
        let mut out = Vec::new();
        for shard in &self.sessions {
            let sessions = shard.lock();
            for (instance, s) in sessions.table.0.iter() {
                if s.expires_ms > now {
                    out.push(SavedSession {
                        session: session_data(instance, s),
                        expires_ms: s.expires_ms,
                    });
                }
            }
        }
        out
    }

    /// Puts saved message sessions back, each with its saved expiry (expired ones are
    /// skipped; one already in memory is merged). Returns how many were restored.
    pub fn restore_sessions(&self, sessions: impl IntoIterator<Item = SavedSession>) -> usize {
        let now = self.clock.now_ms();
        let mut restored = 0;
        for saved in sessions {
            let data = &saved.session;
            if saved.expires_ms <= now || (data.charged.is_empty() && data.records.is_empty()) {
                continue;
            }
            let instance = self.hashed(&data.instance);
            let mut shard = Self::shard_of(&self.sessions, instance);
            let existed = shard.get(instance).is_some();
            let session = self.session_entry(&mut shard, instance, now);
            if !existed {
                session.expires_ms = saved.expires_ms;
            }
            session.keep_until(saved.expires_ms);
            for key in &data.charged {
                session.charge(key);
            }
            for r in &data.records {
                session.record(&r.key, r.limit, r.window, &r.label, r.group);
            }
            restored += 1;
        }
        restored
    }
}

/// A session's contents in the shape the [`crate::State`] trait uses.
pub(super) fn session_data(instance: &str, s: &super::Session) -> SessionData {
    SessionData {
        instance: instance.to_string(),
        charged: s.charged.iter().map(|&k| s.str(k).to_string()).collect(),
        records: s
            .pending
            .iter()
            .map(|p| EomRecord {
                key: s.str(p.key).to_string(),
                limit: p.limit,
                window: p.spec,
                label: s.str(p.label).to_string(),
                group: p.group,
            })
            .collect(),
    }
}
