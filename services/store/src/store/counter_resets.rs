//! Counter resets (table `counter_resets`): the admin service records each reset of a live
//! counter with its audit entry, and every edge follows the table to forget what it holds
//! locally for that counter (its over-limit memo and its lease), as soon as PostgreSQL's
//! `sluice_counter_reset` notification arrives and on every poll as a safety net.
//!
//! Rows are read as `id > the last id seen`: on PostgreSQL the writer takes the table's
//! lock before its insert, so ids are committed in increasing order (a reader never sees a
//! later id before an earlier one); SQLite has one writer at a time. Rows older than
//! [`KEEP_MS`] are pruned by the writer.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use super::audit::{bind_audit, INSERT_AUDIT};
use super::{Backend, NewAudit, Store};
use crate::StoreError;

/// Rows older than this (ms) are deleted by the next reset: an edge's memo of a refusal
/// lasts seconds and a lease at most one sub-bucket, and an edge that could not read the
/// table for longer holds nothing from before anyway.
pub const KEEP_MS: i64 = 3_600_000;

/// Most rows one read returns (the rest at the next).
const MAX_READ: i64 = 1000;

/// Name of the PostgreSQL notification channel an insert into `counter_resets` notifies.
pub const RESET_CHANNEL: &str = "sluice_counter_reset";

/// One recorded reset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterReset {
    /// Row id: grows with every reset.
    pub id: i64,
    /// When, ms since the epoch (the admin service's clock).
    pub at_ms: i64,
    /// The counter's key (`policy/quota/LimitType/track key`).
    pub key: String,
}

impl Store {
    /// Records the reset of counter `key` with its audit `entry`, in one transaction (and
    /// deletes resets older than [`KEEP_MS`]). On PostgreSQL the insert notifies
    /// [`RESET_CHANNEL`] at commit.
    pub async fn record_counter_reset(
        &self,
        key: &str,
        entry: &NewAudit,
    ) -> Result<(), StoreError> {
        const INSERT: &str = "INSERT INTO counter_resets (at_ms, counter_key) VALUES ($1, $2)";
        const PRUNE: &str = "DELETE FROM counter_resets WHERE at_ms < $1";
        let lock = matches!(self.backend, Backend::Postgres(_));
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            if lock {
                // Ids in commit order (see the module docs). Readers are not blocked.
                sqlx::query("LOCK TABLE counter_resets IN EXCLUSIVE MODE")
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(PRUNE)
                .bind(entry.at_ms.saturating_sub(KEEP_MS))
                .execute(&mut *tx)
                .await?;
            sqlx::query(INSERT)
                .bind(entry.at_ms)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            bind_audit(sqlx::query(INSERT_AUDIT), entry)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The id of the newest recorded reset (0: none).
    pub async fn last_counter_reset(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(id), 0) FROM counter_resets";
        let id: i64 = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await?);
        Ok(id)
    }

    /// The resets recorded after id `after`, oldest first (at most 1000).
    pub async fn counter_resets_after(&self, after: i64) -> Result<Vec<CounterReset>, StoreError> {
        const SQL: &str = "SELECT id, at_ms, counter_key FROM counter_resets WHERE id > $1 \
             ORDER BY id LIMIT $2";
        let rows: Vec<(i64, i64, String)> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(after)
            .bind(MAX_READ)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, at_ms, key)| CounterReset { id, at_ms, key })
            .collect())
    }

    /// Follows the resets recorded from now on: each is sent to the receiver once, in id
    /// order, as soon as PostgreSQL's notification arrives and at the latest at the next
    /// poll (every `poll`). A background task on the current tokio runtime does it; it
    /// survives a failing database (logs a warning, rate-limited, and reads again at the
    /// next tick) and ends when the receiver is dropped.
    ///
    /// Fails only if the first read (the newest id so far) fails.
    pub async fn follow_counter_resets(
        &self,
        poll: Duration,
    ) -> Result<mpsc::Receiver<CounterReset>, StoreError> {
        let mut seen = self.last_counter_reset().await?;
        let (tx, rx) = mpsc::channel(MAX_READ as usize);
        let nudge = std::sync::Arc::new(tokio::sync::Notify::new());
        if let Backend::Postgres(pool) = &self.backend {
            tokio::spawn(super::watch::listen(
                pool.clone(),
                RESET_CHANNEL,
                nudge.clone(),
                poll,
            ));
        }
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = ticker.tick() => {}
                    _ = nudge.notified() => {}
                }
                loop {
                    let resets = match store.counter_resets_after(seen).await {
                        Ok(resets) => resets,
                        Err(error) => {
                            sluice_runtime::warn_limited!(
                                %error,
                                "Cannot read the counter resets; retrying."
                            );
                            break;
                        }
                    };
                    let full = resets.len() as i64 >= MAX_READ;
                    for reset in resets {
                        seen = seen.max(reset.id);
                        if tx.send(reset).await.is_err() {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
            }
        });
        Ok(rx)
    }
}
