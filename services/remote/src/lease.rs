//! Leases: units a quota service charged ahead for this edge, admitted locally.
//!
//! When a take fits with plenty of room, the quota service charges a few more units than the
//! request's cost (see `sluice_engine::window::lease_units`) and hands them to the edge,
//! valid until the end of the sub-bucket they were charged to. The edge then admits later
//! requests on the same counter from those units without a call. Every local admission
//! happens before the lease expires, i.e. inside the sub-bucket the units were charged to —
//! exactly what charging it on its own would have recorded — so no window ever holds more
//! than the limit. Units not used by then are given back to that bucket
//! ([`LeaseTable::expired`], sent by [`crate::flush`]).
//!
//! Expiry is measured on this edge's monotonic clock from *before* the call that brought
//! the lease was sent, so it never outlives the sub-bucket on the service's clock.

use crate::lock;
use foldhash::quality::RandomState;
use sluice_engine::window::WindowSpec;
use sluice_engine::{LeaseGrant, LeaseReturn};
use std::cmp::Reverse;
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Shards of the table (independent locks).
const SHARDS: usize = 16;

/// How long an ended lease is remembered (for the size of the counter's next one).
const REMEMBERED: Duration = Duration::from_secs(120);

/// How much earlier than its sub-bucket's end a lease ends: 0–10 % of the sub-bucket
/// (at most half the time it has left), by a hash of the counter and the charge time.
///
/// Every lease of a counter charged in one sub-bucket is valid until that sub-bucket ends,
/// so without this the leases of every counter of a window would end at the same instant
/// and every request on a busy counter would need a call at once (the burst of calls at
/// each minute boundary of a one-hour window). Ending earlier keeps every local admission
/// inside the bucket the units were charged to, so exactness is unchanged; the unused units
/// go back a little earlier.
fn early_end_ms(key: &str, window: WindowSpec, grant: LeaseGrant) -> u64 {
    let mut h = DefaultHasher::new();
    (key, grant.charged_at_ms).hash(&mut h);
    let span = window.bucket_ms / 10;
    if span == 0 {
        return 0;
    }
    (h.finish() % (span + 1)).min(grant.valid_ms / 2)
}

/// One lease.
#[derive(Debug, Clone)]
struct Lease {
    /// Units still to be admitted from.
    left: u64,
    /// When the lease stops being usable.
    expires: Instant,
    /// The counter's window.
    window: WindowSpec,
    /// The service's time of the charge (for the return).
    charged_at_ms: u64,
    /// The counter's level reported with the grant plus what was admitted from it since: a
    /// lower bound of the real level (for logs and the near-limit metric).
    level: u64,
    /// The multiple of a request's cost this lease was asked for.
    multiple: u64,
    /// A request found it too small before it expired: ask for more next time.
    exhausted: bool,
    /// Its end was handled by [`LeaseTable::expired`] (its unused units taken for the
    /// return); it is only remembered now.
    ended: bool,
}

impl Lease {
    /// The units not used, to be given back (none are left after).
    fn take_unused(&mut self, key: &str) -> Option<LeaseReturn> {
        let units = std::mem::take(&mut self.left);
        (units > 0).then(|| LeaseReturn {
            key: key.to_string(),
            window: self.window,
            units,
            charged_at_ms: self.charged_at_ms,
        })
    }
}

/// One shard: the leases and, in time order, when each is to end or be forgotten.
///
/// Expiry pops the due timers instead of visiting every lease: on a long tail of keys an
/// edge holds hundreds of thousands of leases (one per counter seen in the last sub-bucket,
/// plus those remembered), and a sweep of all of them every flush interval cost more CPU
/// than the requests.
#[derive(Debug, Default)]
struct Shard {
    leases: HashMap<String, Lease, RandomState>,
    /// `(when, key)`: a lease's end, or when an ended one is forgotten. A timer whose lease
    /// was replaced meanwhile finds a later `expires` and is dropped.
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    /// Leases not ended yet (`!ended`).
    live: usize,
}

impl std::ops::Deref for Shard {
    type Target = HashMap<String, Lease, RandomState>;

    fn deref(&self) -> &Self::Target {
        &self.leases
    }
}

impl std::ops::DerefMut for Shard {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.leases
    }
}

/// The leases this edge holds, by counter key.
#[derive(Debug)]
pub struct LeaseTable {
    shards: Vec<Mutex<Shard>>,
    /// Picks a key's shard (seeded per table, apart from the shards' own map seeds: keys
    /// of one shard must not share bits of the hash its map uses).
    shard_of: RandomState,
}

impl Default for LeaseTable {
    fn default() -> Self {
        LeaseTable {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            shard_of: RandomState::default(),
        }
    }
}

impl LeaseTable {
    fn shard(&self, key: &str) -> MutexGuard<'_, Shard> {
        lock(&self.shards[self.shard_of.hash_one(key) as usize % SHARDS])
    }

    /// Admits `cost` from the key's lease if it holds that much and has not expired; returns
    /// the estimated level after it.
    pub fn take(&self, key: &str, cost: u64, now: Instant) -> Option<u64> {
        self.fit(key, cost, now, true)
    }

    /// Whether `cost` would fit in the key's lease (changes nothing); the estimated level
    /// with it.
    pub fn check(&self, key: &str, cost: u64, now: Instant) -> Option<u64> {
        self.fit(key, cost, now, false)
    }

    fn fit(&self, key: &str, cost: u64, now: Instant, take: bool) -> Option<u64> {
        let mut shard = self.shard(key);
        let lease = shard.get_mut(key)?;
        if lease.expires <= now {
            return None;
        }
        if lease.left < cost {
            // Too small for the requests it sees: the next one is asked for larger.
            lease.exhausted = true;
            return None;
        }
        if take {
            lease.left -= cost;
            lease.level += cost;
            return Some(lease.level);
        }
        Some(lease.level + cost)
    }

    /// The units of the key's live lease not admitted yet (charged, not used).
    pub fn unused(&self, key: &str, now: Instant) -> Option<u64> {
        let shard = self.shard(key);
        let lease = shard.get(key)?;
        (lease.expires > now && lease.left > 0).then_some(lease.left)
    }

    /// Whether the table holds or remembers a lease of `key`.
    pub fn knows(&self, key: &str) -> bool {
        self.shard(key).contains_key(key)
    }

    /// The estimated level of a counter with a live lease.
    pub fn level(&self, key: &str, now: Instant) -> Option<u64> {
        let shard = self.shard(key);
        let lease = shard.get(key)?;
        (lease.expires > now).then_some(lease.level)
    }

    /// How many times a request's cost to ask for as the key's next lease: `base` at first,
    /// doubled (up to `max`) each time a lease ran out before its sub-bucket ended.
    pub fn multiple(&self, key: &str, base: u64, max: u64) -> u64 {
        match self.shard(key).get(key) {
            Some(l) if l.exhausted => (l.multiple * 2).clamp(base, max.max(base)),
            Some(l) => l.multiple.max(base),
            None => base,
        }
    }

    /// Undoes a [`LeaseTable::take`] whose group was refused elsewhere. If the lease was
    /// replaced or expired meanwhile, the units go back to the service instead.
    pub fn untake(&self, key: &str, cost: u64, now: Instant, returns: &mut Vec<LeaseReturn>) {
        let mut shard = self.shard(key);
        if let Some(lease) = shard.get_mut(key) {
            if lease.expires > now {
                lease.left += cost;
                lease.level = lease.level.saturating_sub(cost);
                return;
            }
            returns.push(LeaseReturn {
                key: key.to_string(),
                window: lease.window,
                units: cost,
                charged_at_ms: lease.charged_at_ms,
            });
        }
    }

    /// Holds a new lease (`used`: the level the service reported after the op's own cost;
    /// `sent`: when the call carrying it was sent; `multiple`: what it was asked for, see
    /// [`LeaseTable::multiple`]). A lease it replaces that still had units left goes to
    /// `returns`.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &self,
        key: &str,
        window: WindowSpec,
        grant: LeaseGrant,
        used: u64,
        sent: Instant,
        multiple: u64,
        returns: &mut Vec<LeaseReturn>,
    ) {
        if grant.units == 0 || grant.valid_ms == 0 {
            return;
        }
        let valid_ms = grant.valid_ms - early_end_ms(key, window, grant);
        let expires = sent + Duration::from_millis(valid_ms);
        let lease = Lease {
            left: grant.units,
            expires,
            window,
            charged_at_ms: grant.charged_at_ms,
            level: used,
            multiple,
            exhausted: false,
            ended: false,
        };
        let mut shard = self.shard(key);
        let shard = &mut *shard;
        match shard.leases.entry(key.to_string()) {
            Entry::Occupied(mut o) => {
                let old = std::mem::replace(o.get_mut(), lease);
                if old.ended {
                    shard.live += 1;
                }
                if old.left > 0 {
                    returns.push(LeaseReturn {
                        key: key.to_string(),
                        window: old.window,
                        units: old.left,
                        charged_at_ms: old.charged_at_ms,
                    });
                }
            }
            Entry::Vacant(v) => {
                v.insert(lease);
                shard.live += 1;
            }
        }
        shard.timers.push(Reverse((expires, key.to_string())));
    }

    /// Takes the unused units of the leases expired at `now` (to be given back). An expired
    /// lease is remembered for [`REMEMBERED`] more, so that the counter's next lease is
    /// asked for with the size this one reached (leases of a whole period end together, at
    /// the end of every sub-bucket).
    pub fn expired(&self, now: Instant) -> Vec<LeaseReturn> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            let shard = &mut *shard;
            while let Some(Reverse((when, _))) = shard.timers.peek() {
                if *when > now {
                    break;
                }
                let Some(Reverse((when, key))) = shard.timers.pop() else {
                    break;
                };
                let Some(l) = shard.leases.get_mut(&key) else {
                    continue;
                };
                if l.expires > now {
                    continue; // replaced by a later lease: its own timer follows
                }
                if !l.ended {
                    l.ended = true;
                    shard.live -= 1;
                    out.extend(l.take_unused(&key));
                }
                let forget = l.expires + REMEMBERED;
                if forget <= now {
                    shard.leases.remove(&key);
                } else if when < forget {
                    shard.timers.push(Reverse((forget, key)));
                }
            }
        }
        out
    }

    /// Forgets the key's lease without giving its units back (the counter was reset: they
    /// were charged to buckets that no longer exist, and a return would take them from the
    /// new count); the units it had left. Its next take asks the quota service.
    pub fn forget(&self, key: &str) -> u64 {
        let mut shard = self.shard(key);
        match shard.leases.remove(key) {
            Some(l) => {
                if !l.ended {
                    shard.live -= 1;
                }
                l.left
            }
            None => 0,
        }
    }

    /// Removes every lease, returning the unused units (shutdown).
    pub fn drain(&self) -> Vec<LeaseReturn> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let mut shard = lock(shard);
            shard.timers.clear();
            shard.live = 0;
            out.extend(
                shard
                    .leases
                    .drain()
                    .filter_map(|(key, mut l)| l.take_unused(&key)),
            );
        }
        out
    }

    /// Number of leases held: those whose end [`LeaseTable::expired`] has not handled yet
    /// (so a lease ended since the last call still counts). Counted, not visited.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).live).sum()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(units: u64, valid_ms: u64) -> LeaseGrant {
        LeaseGrant {
            units,
            valid_ms,
            charged_at_ms: 1_000,
        }
    }

    #[test]
    fn takes_until_empty_or_expired_and_returns_the_rest() {
        let t = LeaseTable::default();
        let w = WindowSpec::new(3_600_000, 60);
        let now = Instant::now();
        let mut returns = Vec::new();
        assert_eq!(t.take("k", 1, now), None);
        t.grant("k", w, grant(3, 1_000), 10, now, 16, &mut returns);
        assert_eq!(t.multiple("k", 16, 1024), 16);
        assert_eq!(t.check("k", 3, now), Some(13));
        assert_eq!(t.check("k", 4, now), None);
        assert_eq!(t.take("k", 2, now), Some(12));
        assert_eq!(t.take("k", 2, now), None, "only one unit left");
        assert_eq!(
            t.multiple("k", 16, 1024),
            32,
            "ran out: ask for twice as much"
        );
        assert_eq!(t.multiple("none", 16, 1024), 16);
        t.untake("k", 2, now, &mut returns);
        assert_eq!(t.take("k", 3, now), Some(13));
        assert!(returns.is_empty());
        // Expired: nothing more is admitted, the rest goes back.
        t.grant("j", w, grant(5, 100), 0, now, 16, &mut returns);
        assert_eq!(t.take("j", 1, now + Duration::from_millis(100)), None);
        let back = t.expired(now + Duration::from_millis(100));
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!((back[0].key.as_str(), back[0].units), ("j", 5));
        assert_eq!(back[0].charged_at_ms, 1_000);
        assert!(
            t.expired(now + Duration::from_millis(200)).is_empty(),
            "given back once"
        );
        assert_eq!(
            t.multiple("j", 16, 1024),
            16,
            "j's ended lease is remembered a while"
        );
        assert!(t
            .expired(now + REMEMBERED + Duration::from_millis(100))
            .is_empty());
        let entries: usize = t.shards.iter().map(|s| lock(s).leases.len()).sum();
        assert_eq!(entries, 1, "then forgotten; k's lasts until it expires");
        // A replaced lease returns what it had left.
        t.grant("k", w, grant(4, 1_000), 20, now, 32, &mut returns);
        assert!(returns.is_empty(), "k had nothing left");
        t.grant("k", w, grant(4, 1_000), 30, now, 32, &mut returns);
        assert_eq!(returns.len(), 1);
        assert_eq!(returns[0].units, 4);
        assert_eq!(t.drain().iter().map(|r| r.units).sum::<u64>(), 4);
        assert!(t.is_empty());
    }

    #[test]
    fn a_forgotten_lease_admits_nothing_and_gives_nothing_back() {
        let t = LeaseTable::default();
        let w = WindowSpec::new(3_600_000, 60);
        let now = Instant::now();
        let mut returns = Vec::new();
        t.grant("k", w, grant(5, 1_000), 0, now, 16, &mut returns);
        t.grant("j", w, grant(2, 1_000), 0, now, 16, &mut returns);
        assert_eq!(t.take("k", 1, now), Some(1));
        assert_eq!(t.len(), 2);
        assert_eq!(t.forget("k"), 4, "the units it had left");
        assert_eq!(t.forget("k"), 0, "nothing more");
        assert_eq!(t.len(), 1);
        assert!(!t.knows("k"));
        assert_eq!(t.take("k", 1, now), None, "the next take asks the service");
        // Its old timer finds nothing; only j's units go back.
        let back = t.expired(now + Duration::from_millis(1_000));
        assert_eq!(back.len(), 1, "{back:?}");
        assert_eq!((back[0].key.as_str(), back[0].units), ("j", 2));
        assert!(returns.is_empty());
        // A new lease of the counter is held and ends as usual.
        t.grant("k", w, grant(3, 1_000), 0, now, 16, &mut returns);
        assert_eq!(t.len(), 1);
        assert_eq!(t.drain().iter().map(|r| r.units).sum::<u64>(), 3);
    }

    #[test]
    fn leases_end_up_to_a_tenth_of_their_sub_bucket_early_and_spread() {
        let t = LeaseTable::default();
        let w = WindowSpec::new(3_600_000, 60); // 60 s sub-buckets
        let now = Instant::now();
        let mut returns = Vec::new();
        let mut ends = std::collections::BTreeSet::new();
        for i in 0..200 {
            let key = format!("k{i}");
            t.grant(&key, w, grant(3, 30_000), 0, now, 16, &mut returns);
            let expires = t
                .shards
                .iter()
                .find_map(|s| lock(s).get(&key).map(|l| l.expires))
                .unwrap();
            let early = Duration::from_millis(30_000) - (expires - now);
            assert!(early <= Duration::from_millis(6_000), "{key}: {early:?}");
            ends.insert(early.as_millis() / 500);
        }
        assert!(ends.len() >= 10, "ends spread over the last 6 s: {ends:?}");
        // Little time left: at most half of it is cut.
        t.grant("short", w, grant(3, 1_000), 0, now, 16, &mut returns);
        assert_eq!(
            t.take("short", 1, now + Duration::from_millis(499)),
            Some(1)
        );
        // Units of every lease still go back once each.
        let back = t.expired(now + Duration::from_millis(30_000));
        assert_eq!(back.len(), 201);
        assert_eq!(back.iter().map(|r| r.units).sum::<u64>(), 200 * 3 + 2);
        assert!(returns.is_empty());
    }

    #[test]
    fn a_replaced_lease_ends_on_its_own_timer_and_held_leases_are_counted() {
        let t = LeaseTable::default();
        // 10 ms sub-buckets: ends at most 1 ms early, so the timing below is exact.
        let w = WindowSpec::new(600, 60);
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut returns = Vec::new();
        t.grant("k", w, grant(3, 100), 0, now, 16, &mut returns);
        t.grant("j", w, grant(2, 300), 0, now, 16, &mut returns);
        assert_eq!(t.len(), 2);
        // Replaced before its end: the old units go back at once, the old timer is stale.
        t.grant("k", w, grant(5, 1_000), 0, now, 16, &mut returns);
        assert_eq!(returns.iter().map(|r| r.units).sum::<u64>(), 3);
        assert_eq!(t.len(), 2);
        assert!(
            t.expired(now + ms(200)).is_empty(),
            "k's first end is stale"
        );
        assert_eq!(t.take("k", 1, now + ms(200)), Some(1));
        let back = t.expired(now + ms(300));
        assert_eq!(
            (back.len(), back[0].key.as_str(), back[0].units),
            (1, "j", 2)
        );
        assert_eq!(t.len(), 1);
        let back = t.expired(now + ms(1_000));
        assert_eq!((back.len(), back[0].units), (1, 4));
        assert_eq!(t.len(), 0);
        assert!(t.knows("k"), "remembered after its end");
        // A new lease of a remembered counter is held again.
        t.grant(
            "k",
            w,
            grant(5, 1_000),
            0,
            now + ms(1_000),
            16,
            &mut returns,
        );
        assert_eq!(t.len(), 1);
        assert!(t.expired(now + REMEMBERED + ms(1_500)).len() == 1);
        assert!(t.expired(now + REMEMBERED + ms(2_500)).is_empty());
        assert!(!t.knows("k") && !t.knows("j"), "forgotten");
    }
}
