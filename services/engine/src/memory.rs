//! In-process counters and message sessions (embedded mode). (Stub; being written.)

use crate::clock::Clock;
use crate::state::{BoxFuture, CounterBatch, CounterReply, State, StateError};
use std::sync::Arc;

/// Settings of the in-process state.
#[derive(Debug, Clone)]
pub struct MemoryStateSettings {
    /// Number of independently locked shards.
    pub shards: usize,
    /// How long a message session (per `instance`) is kept without END-OF-MESSAGE.
    pub session_ttl_ms: u64,
}

impl Default for MemoryStateSettings {
    fn default() -> Self {
        MemoryStateSettings {
            shards: 64,
            session_ttl_ms: 3_600_000,
        }
    }
}

/// Counters and sessions in process memory.
pub struct MemoryState {
    clock: Arc<dyn Clock>,
    settings: MemoryStateSettings,
}

impl MemoryState {
    /// Empty state reading time from `clock`.
    pub fn new(clock: Arc<dyn Clock>, settings: MemoryStateSettings) -> Self {
        MemoryState { clock, settings }
    }

    /// Reclaims counters idle past their period and expired sessions. Returns how many
    /// entries were removed.
    pub fn sweep(&self) -> usize {
        let _ = (&self.clock, &self.settings);
        0
    }

    /// Number of live counters.
    pub fn counters(&self) -> usize {
        0
    }

    /// Number of live message sessions.
    pub fn sessions(&self) -> usize {
        0
    }
}

impl State for MemoryState {
    fn apply<'a>(&'a self, _batch: &'a CounterBatch) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        Box::pin(async { Ok(CounterReply::default()) })
    }
}
