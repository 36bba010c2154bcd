//! Change notification: a background task reads the version counter on every tick and, on
//! PostgreSQL, as soon as a `sluice_policy_changed` notification arrives (LISTEN/NOTIFY, sent
//! by the version trigger at commit). Polling stays on as the safety net for lost
//! notifications and dropped listener connections.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{Backend, FileCheck, Store};
use crate::StoreError;

/// A sensible polling interval: changes are seen within a quarter of a second.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

impl Store {
    /// Watches the version counter: returns a receiver holding the current version, which
    /// changes whenever the policy tables do (also for changes made directly in SQL). On
    /// SQLite it also checks that the file at the database's path is the one open: a
    /// replaced file is reopened and every receiver told (even if the version number is the
    /// same), a deleted one is reported once and the last policies stay.
    ///
    /// A background task on the current tokio runtime polls every `poll`. It survives a
    /// failing database (logs a warning and tries again at the next tick) and ends when every
    /// receiver is dropped. To stay current: mark the version seen, then [`Store::load`], and
    /// load again on each `changed()`; a change between the two only causes one extra load.
    ///
    /// Fails only if the first read of the version fails.
    pub async fn watch(&self, poll: Duration) -> Result<watch::Receiver<i64>, StoreError> {
        let initial = self.version().await?;
        let (tx, rx) = watch::channel(initial);
        let store = self.clone();
        let nudge = std::sync::Arc::new(tokio::sync::Notify::new());
        if let Backend::Postgres(pool) = &self.backend {
            tokio::spawn(listen(pool.clone(), NOTIFY_CHANNEL, nudge.clone(), poll));
        }
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate
            let mut failing = false;
            let mut missing = false;
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = ticker.tick() => {}
                    _ = nudge.notified() => {}
                    _ = store.check.notified() => {}
                }
                // A replaced SQLite file is reopened; every receiver is told even when the
                // new file's version number happens to equal the old one's.
                let mut reopened = false;
                match store.check_file().await {
                    Ok(FileCheck::Same) => {}
                    Ok(FileCheck::Reopened) => {
                        tracing::warn!(
                            path = ?store.sqlite_path(),
                            "The policy database file was replaced; reopened it and reloading its policies."
                        );
                        missing = false;
                        reopened = true;
                    }
                    Ok(FileCheck::Missing) => {
                        if !missing {
                            tracing::error!(
                                path = ?store.sqlite_path(),
                                "The policy database file was deleted; still serving the last loaded policies. Import policies to that path again (sluice policy import FILE) and they are loaded within a second."
                            );
                            missing = true;
                        }
                        continue;
                    }
                    Err(error) => {
                        sluice_runtime::warn_limited!(%error, "Cannot check the policy database file; retrying.");
                        continue;
                    }
                }
                match store.version().await {
                    Ok(version) => {
                        if failing {
                            tracing::info!(version, "Policy database reachable again.");
                            failing = false;
                        }
                        tx.send_if_modified(|current| {
                            let changed = reopened || *current != version;
                            *current = version;
                            changed
                        });
                    }
                    Err(error) => {
                        // Once per 10 s at most, however short the poll interval.
                        sluice_runtime::warn_limited!(
                            %error,
                            kind = error.kind_label(),
                            "Cannot read the policy version; keeping the current policies and retrying."
                        );
                        failing = true;
                    }
                }
            }
        });
        Ok(rx)
    }
}

/// Name of the PostgreSQL notification channel the version trigger notifies.
pub const NOTIFY_CHANNEL: &str = "sluice_policy_changed";

/// Keeps a connection LISTENing on `channel` open and nudges the watcher on every
/// notification. Reconnects (after `retry`) when the connection drops; ends when the
/// watcher is gone (it holds the only other reference to `nudge`).
pub(super) async fn listen(
    pool: sqlx::PgPool,
    channel: &'static str,
    nudge: std::sync::Arc<tokio::sync::Notify>,
    retry: Duration,
) {
    loop {
        let listener = async {
            let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
            l.listen(channel).await?;
            Ok::<_, sqlx::Error>(l)
        };
        match listener.await {
            Ok(mut l) => loop {
                match l.try_recv().await {
                    Ok(Some(_)) => nudge.notify_one(),
                    // The connection was lost: sqlx reconnects on the next call; nudge so
                    // a change made meanwhile is read now.
                    Ok(None) => nudge.notify_one(),
                    Err(error) => {
                        tracing::debug!(%error, channel, "Change listener failed; polling meanwhile.");
                        break;
                    }
                }
                if std::sync::Arc::strong_count(&nudge) == 1 {
                    return;
                }
            },
            Err(error) => {
                tracing::debug!(%error, channel, "Cannot LISTEN for changes; polling meanwhile.")
            }
        }
        if std::sync::Arc::strong_count(&nudge) == 1 {
            return;
        }
        tokio::time::sleep(retry.max(Duration::from_millis(100))).await;
    }
}
