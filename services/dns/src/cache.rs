//! A bounded cache of answers, each kept until its own expiry: what lets a request whose
//! answers are known skip the resolver (and its timers) altogether.
//!
//! Sharded by the key's hash, one mutex a shard (held only to copy an answer in or out).
//! Read by any key [`Equivalent`] to `K` (a borrowed form of it: no key is built to read).
//! Keys are hashed with foldhash, seeded per process, as the engine's in-memory state is
//! (SipHash, std's default, cost more than the rest of a cached read), once an access: the
//! shard and the shard's table ([`HashTable`]) use the same hash.
//! When a shard is full, an insert first drops its expired entries, then, if none had
//! expired, one entry of the shard (the bound holds; which one goes does not matter for
//! answers that are all still valid).

use foldhash::quality::RandomState;
use hashbrown::{Equivalent, HashTable};
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::Instant;

const SHARDS: usize = 16;

/// One entry: the key, its value, the instant it is valid until, and the key's hash (the
/// table's own, kept for growing it).
struct Entry<K, V> {
    key: K,
    value: V,
    until: Instant,
    hash: u64,
}

/// One shard's entries.
type Shard<K, V> = Mutex<HashTable<Entry<K, V>>>;

/// A bounded map from `K` to `V`, each value valid until its own instant.
pub(crate) struct TtlCache<K, V> {
    shards: Box<[Shard<K, V>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    /// A cache holding at most about `capacity` entries (at least one a shard).
    pub(crate) fn new(capacity: u64) -> Self {
        let per_shard = (capacity as usize).div_ceil(SHARDS).max(1);
        TtlCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashTable::new())).collect(),
            hasher: RandomState::default(),
            per_shard,
        }
    }

    /// The shard of a key's hash: from bits the table does not use for its slots (the
    /// lowest) nor for its control bytes (the highest 7), so a shard's keys spread over
    /// its table.
    fn shard(&self, hash: u64) -> &Shard<K, V> {
        &self.shards[(hash >> 32) as usize % SHARDS]
    }

    /// The value of `key` when it is held and valid at `now`.
    pub(crate) fn get<Q>(&self, key: &Q, now: Instant) -> Option<V>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        self.get_until(key, now).map(|(v, _)| v)
    }

    /// The value of `key` and until when it is valid, when it is held and valid at `now`.
    /// `key` hashes as the `K` it is equivalent to; it is hashed once (for the shard and
    /// the table).
    pub(crate) fn get_until<Q>(&self, key: &Q, now: Instant) -> Option<(V, Instant)>
    where
        Q: Hash + Equivalent<K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        match shard.find(hash, |e| key.equivalent(&e.key)) {
            Some(e) if e.until > now => Some((e.value.clone(), e.until)),
            _ => None,
        }
    }

    /// Keeps `value` for `key` until `until` (nothing when that has passed at `now`).
    pub(crate) fn insert(&self, key: K, value: V, until: Instant, now: Instant) {
        if until <= now {
            return;
        }
        let hash = self.hasher.hash_one(&key);
        let mut shard = self.shard(hash).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = shard.find_mut(hash, |e| e.key == key) {
            e.value = value;
            e.until = until;
            return;
        }
        if shard.len() >= self.per_shard {
            shard.retain(|e| e.until > now);
            if shard.len() >= self.per_shard {
                // Any entry (the first met): the hasher's order is as good as random.
                let mut first = true;
                shard.retain(|_| !std::mem::take(&mut first));
            }
        }
        shard.insert_unique(
            hash,
            Entry {
                key,
                value,
                until,
                hash,
            },
            |e| e.hash,
        );
    }

    /// How many entries are held (expired ones included until they are dropped).
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn values_are_kept_until_their_instant_replaced_and_bounded() {
        let cache: TtlCache<String, u32> = TtlCache::new(SHARDS as u64 * 2);
        let now = Instant::now();
        let later = |s| now + Duration::from_secs(s);
        cache.insert("a".into(), 1, later(10), now);
        assert_eq!(cache.get("a", now), Some(1));
        assert_eq!(cache.get_until("a", now), Some((1, later(10))));
        assert_eq!(cache.get("a", later(10)), None, "expired at its instant");
        assert_eq!(cache.get("b", now), None);
        cache.insert("a".into(), 2, later(20), now);
        assert_eq!(cache.get_until("a", now), Some((2, later(20))), "replaced");
        assert_eq!(cache.len(), 1);
        cache.insert("gone".into(), 3, now, now);
        assert_eq!(cache.get("gone", now), None, "already expired: not kept");
        // Far more keys than room: every shard stays within its bound.
        for i in 0..1000 {
            cache.insert(format!("k{i}"), i, later(30), now);
        }
        assert!(cache.len() <= SHARDS * 2, "{}", cache.len());
        assert_eq!(cache.get("k999", now), Some(999), "the last one is kept");
        // Expired entries go first when a shard is full.
        let cache: TtlCache<String, u32> = TtlCache::new(1);
        let short: Vec<String> = (0..64).map(|i| format!("s{i}")).collect();
        for k in &short {
            cache.insert(k.clone(), 0, later(1), now);
        }
        cache.insert("long".into(), 1, later(100), later(2));
        assert_eq!(cache.get("long", later(2)), Some(1));
    }
}
