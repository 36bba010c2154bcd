//! The queues where held mail waits: new mail for such a queue is held behind it, even when
//! its quota has room again, so that a DELAY quota's messages leave in the order they came
//! (a message arriving just as room appears does not take it from one that waited).
//!
//! The server fills it from its ledger ([`super::Ledger::waiting_queues`]) about twice a
//! second; the engine reads it when it plans a DELAY quota. Only messages their MTA's agent
//! has seen count: without a running agent nothing is released, and new mail is not held
//! behind mail that cannot leave.

use parking_lot::RwLock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

/// How often servers bring [`WaitingQueues`] up to date from their ledger.
pub const REFRESH_MS: u64 = 500;

/// Queue keys (`policy/quota/track value`) with held messages waiting.
#[derive(Debug, Default)]
pub struct WaitingQueues {
    queues: RwLock<HashSet<String>>,
    /// Whether `queues` has any (read first: the usual answer, without the lock).
    any: AtomicBool,
}

impl WaitingQueues {
    /// Replaces the set.
    pub fn replace(&self, queues: impl IntoIterator<Item = String>) {
        let queues: HashSet<String> = queues.into_iter().collect();
        let mut guard = self.queues.write();
        self.any.store(!queues.is_empty(), Ordering::Release);
        *guard = queues;
    }

    /// Whether held mail waits in the queue of `policy`'s `quota` for `track`.
    pub fn waits(&self, policy: &str, quota: &str, track: &str) -> bool {
        if !self.any.load(Ordering::Acquire) {
            return false;
        }
        self.queues
            .read()
            .contains(&format!("{policy}/{quota}/{track}"))
    }

    /// Whether no queue has held mail waiting.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaced_whole() {
        let w = WaitingQueues::default();
        assert!(!w.waits("p", "q", "Sender:a@b"));
        w.replace(["p/q/Sender:a@b".to_string()]);
        assert!(w.waits("p", "q", "Sender:a@b"));
        assert!(!w.waits("p", "q", "Sender:c@b"));
        w.replace(Vec::new());
        assert!(w.is_empty());
        assert!(!w.waits("p", "q", "Sender:a@b"));
    }
}
