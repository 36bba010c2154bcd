//! Greylisting records in process (embedded mode): one [`NetRecord`] per client network in
//! sharded maps, each shard behind its own mutex, so each op is atomic on its network.
//! Expired entries count as absent ([`crate::greylisting::record`]); they are reclaimed when
//! their network adds a triplet, and by [`GreyTable::sweep`] (run by
//! [`super::MemoryState::sweep`]), which drops networks whose every entry expired.

use crate::greylisting::op::{GreylistOp, GreylistReply};
use crate::greylisting::record::{expires, prune, run, NetRecord};
use foldhash::quality::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// Greylisting records by network.
pub(crate) struct GreyTable {
    shards: Vec<Mutex<HashMap<Box<str>, NetRecord>>>,
    hasher: RandomState,
}

impl GreyTable {
    /// An empty table of `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        GreyTable {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, network: &str) -> &Mutex<HashMap<Box<str>, NetRecord>> {
        let h = self.hasher.hash_one(network) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// Runs `op` at `now` (a dry run on a copy of the record).
    pub(crate) fn apply(&self, op: &GreylistOp, now: u64) -> GreylistReply {
        let mut shard = self.shard(&op.network).lock();
        let outcome = if op.dry_run {
            let mut copy = shard.get(op.network.as_str()).cloned().unwrap_or_default();
            run(&mut copy, &op.triplet, &op.params, now)
        } else {
            let rec = match shard.get_mut(op.network.as_str()) {
                Some(rec) => rec,
                None => shard.entry(op.network.as_str().into()).or_default(),
            };
            run(rec, &op.triplet, &op.params, now)
        };
        GreylistReply {
            outcome,
            now_ms: now,
        }
    }

    /// Drops expired entries, and networks left empty. Returns how many entries went.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.lock();
            map.retain(|_, rec| {
                let before = rec.triplets.len()
                    + usize::from(rec.awl.is_some())
                    + usize::from(rec.abl.is_some());
                if expires(rec) <= now {
                    removed += before;
                    return false;
                }
                prune(rec, now);
                removed += before
                    - rec.triplets.len()
                    - usize::from(rec.awl.is_some())
                    - usize::from(rec.abl.is_some());
                rec.triplets.shrink_to_fit();
                true
            });
            if map.len() * 4 < map.capacity() {
                map.shrink_to_fit();
            }
        }
        removed
    }

    /// Live networks and triplets (expired ones not yet swept included).
    pub(crate) fn len(&self) -> (usize, usize) {
        let mut nets = 0;
        let mut triplets = 0;
        for shard in &self.shards {
            let map = shard.lock();
            nets += map.len();
            triplets += map.values().map(|r| r.triplets.len()).sum::<usize>();
        }
        (nets, triplets)
    }
}
