//! Embedded mode's counters kept across restarts: restored from the SQLite policy database
//! at start, written back in the background every `counter_flush_ms`, and once more after
//! the requests in flight have drained at a clean stop (message sessions too, then).
//!
//! The request path only marks what it changed (see `sluice_engine::memory::snapshot`);
//! collecting and writing happen here, on a task of their own. A write that fails is kept
//! and retried with the next one (a key's latest state wins), so an unreachable database
//! costs nothing but staleness.

use crate::config::Settings;
use anyhow::Context;
use sluice_engine::{Clock, CounterChanges, MemoryState, SystemClock};
use sluice_store::Store;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

/// Whether `settings` keep in-process counters across restarts: a flush interval and a
/// SQLite policy database. Says so in the log when they do not.
pub fn enabled(settings: &Settings) -> bool {
    let Some(every) = settings.counter_flush else {
        tracing::info!(
            "counter_flush_ms = 0: counters are kept in memory only and start empty after a restart"
        );
        return false;
    };
    if !settings
        .database
        .to_ascii_lowercase()
        .starts_with("sqlite:")
    {
        tracing::warn!(
            flush_ms = every.as_millis() as u64,
            "Counters are not kept across restarts: only a SQLite policy database stores them \
             (a PostgreSQL one is shared by several servers); counters start empty after a \
             restart. For counters that survive restarts with PostgreSQL, count in Redis (--redis)."
        );
        return false;
    }
    if settings.database.contains(":memory:") {
        tracing::info!("An in-memory policy database: counters start empty after a restart");
        return false;
    }
    true
}

/// The background writer of one server's counters.
pub struct Persistence {
    store: Store,
    memory: Arc<MemoryState>,
    stop: watch::Sender<bool>,
    writer: JoinHandle<CounterChanges>,
}

impl Persistence {
    /// Opens the policy database (creating and migrating it if needed), restores the saved
    /// counters and message sessions into `memory` (which must track changes), and starts
    /// writing every `counter_flush_ms`.
    pub async fn start(settings: &Settings, memory: Arc<MemoryState>) -> anyhow::Result<Self> {
        let every = settings
            .counter_flush
            .context("counter_flush_ms is 0: nothing to keep")?;
        let shown = crate::config::redact(&settings.database);
        let store =
            crate::database::open(&settings.database, crate::database::Schema::MigrateSqlite)
                .await
                .with_context(|| format!("cannot open the policy database {shown}"))?;
        let started = Instant::now();
        let now = SystemClock.now_ms();
        let mut restored = 0;
        let read = store
            .load_counters(now, |page| restored += memory.restore_counters(page))
            .await
            .with_context(|| format!("cannot read the saved counters from {shown}"))?;
        let sessions = store
            .take_sessions(now)
            .await
            .with_context(|| format!("cannot read the saved message sessions from {shown}"))?;
        let sessions = memory.restore_sessions(sessions);
        tracing::info!(
            counters = restored,
            rows = read,
            sessions,
            flush_ms = every.as_millis() as u64,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "Counters restored from the policy database"
        );
        let (stop, stopped) = watch::channel(false);
        let writer = tokio::spawn(write_every(store.clone(), memory.clone(), every, stopped));
        Ok(Persistence {
            store,
            memory,
            stop,
            writer,
        })
    }

    /// The clean stop, once no request can come any more: stops the periodic writer (after
    /// a write in progress), writes every change left and the message sessions, and closes
    /// the database.
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        let mut pending = self.writer.await.unwrap_or_default();
        pending.absorb(self.memory.take_changes());
        let now = SystemClock.now_ms();
        let counters = pending.changed.len();
        if let Err(e) = self.store.write_counters(&pending, now).await {
            tracing::error!(error = %e, counters, "Cannot save the counters at stop: they start from the last saved state");
        }
        let sessions = self.memory.saved_sessions();
        if let Err(e) = self.store.save_sessions(&sessions).await {
            tracing::error!(error = %e, "Cannot save the message sessions at stop");
        }
        tracing::info!(
            counters,
            sessions = sessions.len(),
            "Counters saved to the policy database"
        );
        self.store.close().await;
    }
}

/// Writes the changes collected from `memory` every `every` until told to stop; returns
/// what could not be written yet.
async fn write_every(
    store: Store,
    memory: Arc<MemoryState>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> CounterChanges {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tick.tick().await;
    let mut pending = CounterChanges::default();
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return pending,
        }
        pending.absorb(memory.take_changes());
        let started = Instant::now();
        match store.write_counters(&pending, SystemClock.now_ms()).await {
            Ok(w) => {
                if failing {
                    tracing::info!("Counters are written to the policy database again");
                    failing = false;
                }
                if w.upserted > 0 || w.deleted > 0 {
                    tracing::debug!(
                        upserted = w.upserted,
                        deleted = w.deleted,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "Counters written"
                    );
                }
                pending = CounterChanges::default();
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e,
                        pending = pending.changed.len(),
                        "Cannot write the counters to the policy database; retrying at the next flush"
                    );
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Role, RoleArgs};
    use crate::role_args::{CounterSettings, DatabaseSettings};

    fn settings(database: &str, flush: Option<u64>) -> Settings {
        let args = RoleArgs {
            database: DatabaseSettings {
                database: Some(database.into()),
            },
            counters: CounterSettings {
                counter_flush_ms: flush,
            },
            ..RoleArgs::default()
        };
        resolve(args, Role::Serve).unwrap()
    }

    #[test]
    fn counters_are_kept_with_sqlite_and_a_flush_interval_only() {
        let sqlite = settings("sqlite:///var/lib/sluice/sluice.db", None);
        assert_eq!(sqlite.counter_flush, Some(Duration::from_secs(1)));
        assert!(enabled(&sqlite));
        assert!(enabled(&settings("SQLite://x.db", Some(250))));
        assert!(!enabled(&settings("sqlite://x.db", Some(0))));
        assert!(!enabled(&settings("sqlite::memory:", None)));
        assert!(!enabled(&settings("postgres://db/sluice", None)));
        assert!(!enabled(&settings("postgresql://db/sluice", Some(500))));
        let errors = resolve(
            RoleArgs {
                counters: CounterSettings {
                    counter_flush_ms: Some(3_600_001),
                },
                ..RoleArgs::default()
            },
            Role::Serve,
        )
        .unwrap_err();
        assert!(
            errors.iter().any(|e| e.contains("counter_flush_ms")),
            "{errors:?}"
        );
        // Not a setting of the edge, whose counters are the quota service's.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("edge.toml");
        std::fs::write(&file, "counter_flush_ms = 1000\nquota = [\"http://q:1\"]\n").unwrap();
        let errors = resolve(
            RoleArgs {
                config: Some(file),
                ..RoleArgs::default()
            },
            Role::Edge,
        )
        .unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`counter_flush_ms` is not a setting")),
            "{errors:?}"
        );
    }
}
