//! [`Sightings`]: which counters this edge saw a once-per-message take on lately — a lossy,
//! fixed-size memory, so that a counter seen for the first time gets no lease.
//!
//! A once-per-message take (a `MessageCount` limit) is the only charge its message makes on
//! that counter, so a lease granted with it is only of use to *later* messages on the same
//! counter. On a long tail of keys (a new sender, a new client network) most counters are
//! seen once: a lease granted there is charged, held, and given back unused when its
//! sub-bucket ends — a second Redis script call and an entry held for nothing. So the first
//! once-per-message take of a counter asks for no lease; one seen again within
//! [`REMEMBER_SECS`] asks as usual (and from then on the lease table knows it).
//!
//! The memory is a table of slots indexed by the key's hash, each holding the last hash
//! seen there and when: a collision only makes a counter look new (no lease this once) or
//! seen (a lease, as without this table) — it never changes what is admitted, only how.

use foldhash::quality::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

/// Slots of the table (a power of two): 2^18, 3 MiB.
const SLOTS: usize = 1 << 18;

/// How long a sighting counts (seconds).
pub const REMEMBER_SECS: u32 = 120;

/// A lossy memory of recently seen counter keys.
pub struct Sightings {
    hashes: Box<[AtomicU64]>,
    /// Seconds since `start` (plus one: 0 is an empty slot) of the last sighting.
    seen_at: Box<[AtomicU32]>,
    start: Instant,
    /// Hashes keys (seeded per table).
    hasher: RandomState,
}

impl std::fmt::Debug for Sightings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sightings").field("slots", &SLOTS).finish()
    }
}

impl Default for Sightings {
    fn default() -> Self {
        Sightings {
            hashes: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            seen_at: (0..SLOTS).map(|_| AtomicU32::new(0)).collect(),
            start: Instant::now(),
            hasher: RandomState::default(),
        }
    }
}

impl Sightings {
    /// Records a sighting of `key` at `now`; whether it was seen within [`REMEMBER_SECS`]
    /// before (as far as this lossy table knows).
    pub fn seen_before(&self, key: &str, now: Instant) -> bool {
        let hash = self.hasher.hash_one(key);
        let slot = (hash as usize) & (SLOTS - 1);
        let secs = u32::try_from(now.saturating_duration_since(self.start).as_secs())
            .unwrap_or(u32::MAX - 1)
            + 1;
        let before = self.hashes[slot].swap(hash, Ordering::Relaxed) == hash;
        let at = self.seen_at[slot].swap(secs, Ordering::Relaxed);
        before && at != 0 && secs.saturating_sub(at) < REMEMBER_SECS
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_key_is_new_once_then_seen_until_it_is_forgotten() {
        let s = Sightings::default();
        let now = Instant::now();
        assert!(!s.seen_before("a", now));
        assert!(s.seen_before("a", now));
        assert!(s.seen_before("a", now + Duration::from_secs(119)));
        assert!(!s.seen_before("b", now));
        let later = now + Duration::from_secs(119 + u64::from(REMEMBER_SECS));
        assert!(!s.seen_before("a", later), "forgotten after REMEMBER_SECS");
        assert!(s.seen_before("a", later));
    }

    #[test]
    fn most_of_many_new_keys_are_new() {
        let s = Sightings::default();
        let now = Instant::now();
        let seen = (0..100_000)
            .filter(|i| s.seen_before(&format!("sender-{i}"), now))
            .count();
        assert_eq!(seen, 0, "distinct keys never look seen (hashes differ)");
    }
}
