//! CheckHelo records in process (embedded mode): one [`HeloRecord`] per client address in
//! sharded maps, each shard behind its own mutex, so each op is atomic on its address.
//! Records whose entries all ran out are dropped by [`HeloTable::sweep`] (run by
//! [`super::MemoryState::sweep`]).

use crate::checkhelo::op::{HeloOp, HeloReply};
use crate::checkhelo::record::{expires, run, HeloRecord};
use foldhash::quality::RandomState;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::BuildHasher;

/// CheckHelo records by client address.
pub(crate) struct HeloTable {
    shards: Vec<Mutex<HashMap<Box<str>, HeloRecord>>>,
    hasher: RandomState,
}

impl HeloTable {
    /// An empty table of `shards` shards.
    pub(crate) fn new(shards: usize) -> Self {
        HeloTable {
            shards: (0..shards.max(1)).map(|_| Mutex::default()).collect(),
            hasher: RandomState::default(),
        }
    }

    fn shard(&self, address: &str) -> &Mutex<HashMap<Box<str>, HeloRecord>> {
        let h = self.hasher.hash_one(address) as usize;
        &self.shards[h % self.shards.len()]
    }

    /// Runs `op` at `now` (`dry_run`: changes nothing).
    pub(crate) fn apply(&self, op: &HeloOp, now: u64, dry_run: bool) -> HeloReply {
        let mut shard = self.shard(&op.address).lock();
        let outcome = if dry_run {
            let mut copy = shard.get(op.address.as_str()).cloned().unwrap_or_default();
            run(&mut copy, &op.helo, &op.params, now, true)
        } else {
            let rec = match shard.get_mut(op.address.as_str()) {
                Some(rec) => rec,
                None => shard.entry(op.address.as_str().into()).or_default(),
            };
            run(rec, &op.helo, &op.params, now, false)
        };
        HeloReply {
            outcome,
            now_ms: now,
        }
    }

    /// Drops records that ran out. Returns how many went.
    pub(crate) fn sweep(&self, now: u64) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = shard.lock();
            let before = map.len();
            map.retain(|_, rec| expires(rec) > now);
            removed += before - map.len();
            if map.len() * 4 < map.capacity() {
                map.shrink_to_fit();
            }
        }
        removed
    }

    /// Client addresses held (ones that ran out and are not yet swept included).
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}
