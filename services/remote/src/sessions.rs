//! Message sessions held by this edge, and what each client connection has carried.
//!
//! A Postfix `smtpd` process talks to the policy service over one connection and handles
//! one message at a time, so a message's RCPTs and its END-OF-MESSAGE normally all arrive on
//! one connection, hence on one edge. The edge keeps the message's session (counters
//! charged once for it, counters END-OF-MESSAGE must charge) in memory and stores it in the
//! shared store only when it may be needed elsewhere: when the connection that carried it
//! closes (`smtpd` may continue the message on a new connection, which the load balancer may
//! send to another edge) and when the edge shuts down.
//!
//! The rule that decides when the shared store must be asked: an instance first seen on a
//! connection that has **already carried another instance** began on that connection (the
//! connection was open before the message started, and `smtpd` sends all of a message's
//! requests over its current connection), so it has no stored session. Only the first
//! instance of a connection may be the continuation of a message begun elsewhere; it is
//! looked up once.

use crate::lock;
use foldhash::quality::RandomState;
use sluice_engine::{EomRecord, SessionData};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards of the session table.
const SHARDS: usize = 16;
/// Instances remembered per connection (one message at a time; a few for safety).
const INSTANCES_PER_CONNECTION: usize = 4;

/// One message's session.
#[derive(Debug, Clone)]
pub struct LocalSession {
    /// Counters charged once for the message.
    pub charged: Vec<String>,
    /// Counters for END-OF-MESSAGE, in recording order.
    pub records: Vec<EomRecord>,
    created: Instant,
    /// Changed since it was last stored.
    dirty: bool,
    /// A copy is in the shared store (it must be deleted when the message ends).
    pub stored: bool,
    /// The connection that used it last.
    connection: u64,
}

impl LocalSession {
    fn new(connection: u64, now: Instant) -> Self {
        LocalSession {
            charged: Vec::new(),
            records: Vec::new(),
            created: now,
            dirty: false,
            stored: false,
            connection,
        }
    }

    /// Remembers a once-per-message charge.
    pub fn charge(&mut self, key: &str) {
        if !self.charged.iter().any(|k| k == key) {
            self.charged.push(key.to_string());
            self.dirty = true;
        }
    }

    /// Remembers a counter for END-OF-MESSAGE (the first record of a key wins).
    pub fn record(&mut self, record: EomRecord) {
        let key = record.key.clone();
        self.record_with(&key, || record);
    }

    /// [`LocalSession::record`], building the record only when `key` has none yet.
    pub fn record_with(&mut self, key: &str, record: impl FnOnce() -> EomRecord) {
        if !self.records.iter().any(|r| r.key == key) {
            self.records.push(record());
            self.dirty = true;
        }
    }

    fn data(&self, instance: &str) -> SessionData {
        SessionData {
            instance: instance.to_string(),
            charged: self.charged.clone(),
            records: self.records.clone(),
        }
    }
}

/// Where a batch's message session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whereabouts {
    /// Held here.
    Local,
    /// The message began on this connection after another one: a new, empty session.
    New,
    /// The connection's first instance: the shared store may hold a session for it.
    Unknown,
    /// The table is full: use the shared store directly, as without edge sessions.
    Full,
}

#[derive(Debug, Default)]
struct ConnectionTrack {
    /// The first instance it carried.
    first: String,
    /// The instances it carried, newest last (at most [`INSTANCES_PER_CONNECTION`]).
    instances: Vec<String>,
}

/// The sessions this edge holds and the instances each connection carried.
#[derive(Debug)]
pub struct Sessions {
    shards: Vec<Mutex<HashMap<String, LocalSession, RandomState>>>,
    connections: Vec<Mutex<HashMap<u64, ConnectionTrack, RandomState>>>,
    /// Picks an instance's shard (seeded apart from the shards' own maps).
    shard_of: RandomState,
    capacity: usize,
    ttl: Duration,
    /// The table was full at some point since it was last under half its capacity: some
    /// messages keep their sessions in the shared store.
    overflowed: AtomicBool,
}

impl Sessions {
    /// An empty table holding at most `capacity` sessions, each at most `ttl`.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Sessions {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            connections: (0..SHARDS).map(|_| Mutex::default()).collect(),
            shard_of: RandomState::default(),
            capacity,
            ttl,
            overflowed: AtomicBool::new(false),
        }
    }

    fn connection(
        &self,
        connection: u64,
    ) -> MutexGuard<'_, HashMap<u64, ConnectionTrack, RandomState>> {
        lock(&self.connections[connection as usize % SHARDS])
    }

    fn shard(&self, instance: &str) -> MutexGuard<'_, HashMap<String, LocalSession, RandomState>> {
        lock(&self.shards[self.shard_of.hash_one(instance) as usize % SHARDS])
    }

    /// Notes that `connection` carries `instance` (every batch with an instance).
    pub fn note(&self, connection: u64, instance: &str) {
        if connection == 0 {
            return;
        }
        let mut conns = self.connection(connection);
        let track = conns.entry(connection).or_default();
        if track.instances.last().is_some_and(|i| i == instance) {
            return;
        }
        if track.first.is_empty() {
            track.first = instance.to_string();
        }
        if !track.instances.iter().any(|i| i == instance) {
            if track.instances.len() == INSTANCES_PER_CONNECTION {
                track.instances.remove(0);
            }
            track.instances.push(instance.to_string());
        }
    }

    /// Whether `instance` began on `connection`: the connection carried another instance
    /// first (see the module docs). Then, without a local session, nothing is stored for it
    /// anywhere — unless the table overflowed lately (then messages that found it full keep
    /// their sessions in the shared store, and this says `false`).
    pub fn began_here(&self, connection: u64, instance: &str) -> bool {
        connection != 0
            && !self.overflowed.load(Ordering::Relaxed)
            && self
                .connection(connection)
                .get(&connection)
                .is_some_and(|t| !t.first.is_empty() && t.first != instance)
    }

    /// Says where the session of `instance` (carried by `connection`, already
    /// [noted](Sessions::note)) is. A new session is created (empty) for
    /// [`Whereabouts::New`]; for [`Whereabouts::Unknown`] the caller looks it up and calls
    /// [`Sessions::adopt`].
    pub fn locate(&self, connection: u64, instance: &str, now: Instant) -> Whereabouts {
        let began_here = self.began_here(connection, instance);
        let mut shard = self.shard(instance);
        if let Some(s) = shard.get_mut(instance) {
            s.connection = connection;
            return Whereabouts::Local;
        }
        if !began_here {
            return Whereabouts::Unknown;
        }
        if self.len_hint(&shard) {
            self.overflowed.store(true, Ordering::Relaxed);
            return Whereabouts::Full;
        }
        shard.insert(instance.to_string(), LocalSession::new(connection, now));
        Whereabouts::New
    }

    /// A rough capacity check on one shard (exact counting would lock every shard).
    fn len_hint(&self, shard: &HashMap<String, LocalSession, RandomState>) -> bool {
        shard.len() * SHARDS >= self.capacity
    }

    /// Holds the session looked up for the connection's first instance (`None`: nothing was
    /// stored). Returns `false` when the table is full (the caller uses the shared store).
    pub fn adopt(
        &self,
        connection: u64,
        instance: &str,
        stored: Option<SessionData>,
        now: Instant,
    ) -> bool {
        let mut shard = self.shard(instance);
        if let Some(s) = shard.get_mut(instance) {
            // Another request of the connection got here first: merge.
            if let Some(d) = stored {
                for k in &d.charged {
                    s.charge(k);
                }
                for r in d.records {
                    s.record(r);
                }
                s.stored = true;
            }
            return true;
        }
        if self.len_hint(&shard) {
            self.overflowed.store(true, Ordering::Relaxed);
            return false;
        }
        let mut s = LocalSession::new(connection, now);
        if let Some(d) = stored {
            s.charged = d.charged;
            s.records = d.records;
            s.stored = true;
        }
        shard.insert(instance.to_string(), s);
        true
    }

    /// Runs `f` on the instance's session, if held.
    pub fn with<T>(&self, instance: &str, f: impl FnOnce(&mut LocalSession) -> T) -> Option<T> {
        self.shard(instance).get_mut(instance).map(f)
    }

    /// Ends a session (END-OF-MESSAGE).
    pub fn remove(&self, instance: &str) -> Option<LocalSession> {
        self.shard(instance).remove(instance)
    }

    /// A connection closed: the changed sessions it carried last, to be stored (they are
    /// marked stored and clean).
    pub fn connection_closed(&self, connection: u64) -> Vec<SessionData> {
        let Some(track) = self.connection(connection).remove(&connection) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for instance in &track.instances {
            let mut shard = self.shard(instance);
            if let Some(s) = shard.get_mut(instance) {
                if s.connection == connection && s.dirty {
                    out.push(s.data(instance));
                    s.dirty = false;
                    s.stored = true;
                }
            }
        }
        out
    }

    /// Every changed session (shutdown), marked stored and clean.
    pub fn all_dirty(&self) -> Vec<SessionData> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for (instance, s) in lock(shard).iter_mut() {
                if s.dirty {
                    out.push(s.data(instance));
                    s.dirty = false;
                    s.stored = true;
                }
            }
        }
        out
    }

    /// Forgets sessions older than the TTL (messages that never ended). Returns how many.
    pub fn expire(&self, now: Instant) -> usize {
        let mut n = 0;
        for shard in &self.shards {
            let mut shard = lock(shard);
            let before = shard.len();
            shard.retain(|_, s| now.duration_since(s.created) < self.ttl);
            n += before - shard.len();
        }
        if self.len() < self.capacity / 2 {
            self.overflowed.store(false, Ordering::Relaxed);
        }
        n
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether none is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::window::WindowSpec;

    fn record(key: &str) -> EomRecord {
        EomRecord {
            key: key.into(),
            limit: 10,
            window: WindowSpec::new(3_600_000, 60),
            label: "p\u{1f}q".into(),
            group: 0,
        }
    }

    #[test]
    fn only_a_connections_first_instance_is_looked_up() {
        let s = Sessions::new(1_000, Duration::from_secs(60));
        let now = Instant::now();
        s.note(1, "a");
        assert!(!s.began_here(1, "a"));
        assert_eq!(s.locate(1, "a", now), Whereabouts::Unknown);
        assert!(s.adopt(1, "a", None, now));
        assert_eq!(s.locate(1, "a", now), Whereabouts::Local);
        // The next message on the same connection began here.
        s.note(1, "b");
        assert!(s.began_here(1, "b"));
        assert_eq!(s.locate(1, "b", now), Whereabouts::New);
        assert!(
            s.began_here(1, "c"),
            "a later instance of connection 1 began on it"
        );
        // A new connection's first instance is looked up again, even if held elsewhere.
        s.note(2, "z");
        assert_eq!(s.locate(2, "z", now), Whereabouts::Unknown);
        assert!(!s.began_here(2, "z"));
        assert!(!s.began_here(0, "a"));
        assert_eq!(s.locate(0, "q", now), Whereabouts::Unknown);
        // Many messages later the connection still knows its first one.
        for i in 0..10 {
            s.note(1, &format!("m{i}"));
        }
        assert!(!s.began_here(1, "a"));
        assert!(s.began_here(1, "m3"));
    }

    #[test]
    fn closing_a_connection_hands_on_its_changed_sessions_once() {
        let s = Sessions::new(1_000, Duration::from_secs(60));
        let now = Instant::now();
        s.note(1, "a");
        s.locate(1, "a", now);
        let stored = SessionData {
            instance: "a".into(),
            charged: vec!["k0".into()],
            records: vec![],
        };
        s.adopt(1, "a", Some(stored), now);
        s.with("a", |x| {
            x.charge("k1");
            x.charge("k1");
            x.record(record("r"));
            x.record(record("r"));
        });
        s.note(1, "b");
        s.locate(1, "b", now); // unchanged: not handed on
        let out = s.connection_closed(1);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].charged, vec!["k0".to_string(), "k1".to_string()]);
        assert_eq!(out[0].records.len(), 1);
        assert!(s.connection_closed(1).is_empty());
        assert!(s.all_dirty().is_empty());
        let ended = s.remove("a").unwrap();
        assert!(ended.stored);
        assert!(!s.remove("b").unwrap().stored);
    }

    #[test]
    fn sessions_expire_and_the_table_is_bounded() {
        let s = Sessions::new(SHARDS, Duration::from_secs(60));
        let now = Instant::now();
        s.note(1, "first");
        let mut full = false;
        for i in 0..200 {
            s.note(1, &format!("m{i}"));
            if s.locate(1, &format!("m{i}"), now) == Whereabouts::Full {
                full = true;
            }
        }
        assert!(full);
        assert!(s.len() <= 2 * SHARDS);
        assert!(
            !s.began_here(1, "m150"),
            "after an overflow, END-OF-MESSAGE without a local session asks the store"
        );
        let held = s.len();
        assert_eq!(s.expire(now), 0);
        assert_eq!(s.expire(now + Duration::from_secs(61)), held);
        assert!(s.is_empty());
        assert!(s.began_here(1, "m150"), "under half full again");
    }
}
