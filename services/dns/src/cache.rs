//! A bounded cache of answers, each kept until its own expiry: what lets a request whose
//! answers are known skip the resolver (and its timers) altogether.
//!
//! Sharded by the key's hash, one mutex a shard (held only to copy an answer in or out).
//! Read by any key [`Equivalent`] to `K` (a borrowed form of it: no key is built to read).
//! Keys are hashed with foldhash, seeded per process, as the engine's in-memory state is
//! (SipHash, std's default, cost more than the rest of a cached read).
//! When a shard is full, an insert first drops its expired entries, then, if none had
//! expired, one entry of the shard (the bound holds; which one goes does not matter for
//! answers that are all still valid).

use foldhash::quality::RandomState;
use hashbrown::{Equivalent, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;

/// One shard: values with the instant they are valid until.
type Shard<K, V> = Mutex<HashMap<K, (V, Instant), RandomState>>;

/// A bounded map from `K` to `V`, each value valid until its own instant.
pub(crate) struct TtlCache<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl<K: Hash + Eq + Clone, V: Clone> TtlCache<K, V> {
    /// A cache holding at most about `capacity` entries (at least one a shard).
    pub(crate) fn new(capacity: u64) -> Self {
        let per_shard = (capacity as usize).div_ceil(SHARDS).max(1);
        TtlCache {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_hasher(RandomState::default())))
                .collect(),
            hasher: RandomState::default(),
            per_shard,
        }
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> &Shard<K, V> {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// The value of `key` when it is held and valid at `now`.
    pub(crate) fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get_until(key, now).map(|(v, _)| v)
    }

    /// The value of `key` and until when it is valid, when it is held and valid at `now`.
    /// `key` hashes as the `K` it is equivalent to.
    pub(crate) fn get_until<Q>(&self, key: &Q, now: Instant) -> Option<(V, Instant)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let shard = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        match shard.get(key) {
            Some((v, until)) if *until > now => Some((v.clone(), *until)),
            _ => None,
        }
    }

    /// Keeps `value` for `key` until `until` (nothing when that has passed at `now`).
    pub(crate) fn insert(&self, key: K, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let mut shard = self.shard(&key).lock().unwrap_or_else(|e| e.into_inner());
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.retain(|_, (_, u)| *u > now);
            if shard.len() >= self.per_shard {
                // Any entry: the hasher's order is as good as random.
                if let Some(k) = shard.keys().next().cloned() {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(key, (value, until));
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}
