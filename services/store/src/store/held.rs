//! The ledger of held messages of `sluice serve` (DELAY quotas, docs/delay.md), kept in the
//! SQLite policy database (table `held_message`, migration
//! `migrations/sqlite/0011_delay.sql`) so that a restart forgets no held message.
//!
//! The ledger's rules live in [`sluice_engine::hold::Ledger`]; this table only stores its
//! messages, one JSON body each. A message is written before Postfix is told to hold it.
//! Only SQLite keeps the ledger, as only SQLite keeps in-process counters (the two must
//! survive a restart together); in cluster mode the ledger lives in Redis.

use sluice_engine::hold::{Change, HeldMessage};

use super::Store;
use crate::error::StoreError;

impl Store {
    /// Writes ledger changes in one transaction.
    pub async fn write_held(&self, changes: &[Change]) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        let pool = self.counters_pool()?;
        let mut tx = pool.begin().await?;
        for change in changes {
            match change {
                Change::Put(m) => {
                    let body = serde_json::to_string(m).map_err(|e| {
                        StoreError::OutOfRange(format!("held message {}: {e}", m.id))
                    })?;
                    sqlx::query(
                        "INSERT INTO held_message (id, mta, queue_id, body) VALUES ($1, $2, $3, $4) \
                         ON CONFLICT (id) DO UPDATE SET body = excluded.body",
                    )
                    .bind(id_i64(m.id)?)
                    .bind(&m.request.mta)
                    .bind(&m.request.queue_id)
                    .bind(body)
                    .execute(&mut *tx)
                    .await?;
                }
                Change::Remove(id) => {
                    sqlx::query("DELETE FROM held_message WHERE id = $1")
                        .bind(id_i64(*id)?)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every held message, in arrival order. A row that cannot be read (written by a newer
    /// version, or by hand) is an error naming it: dropping it would lose track of mail.
    pub async fn load_held(&self) -> Result<Vec<HeldMessage>, StoreError> {
        let pool = self.counters_pool()?;
        let rows: Vec<(i64, String)> =
            sqlx::query_as("SELECT id, body FROM held_message ORDER BY id")
                .fetch_all(&*pool)
                .await?;
        rows.into_iter()
            .map(|(id, body)| {
                serde_json::from_str(&body).map_err(|e| {
                    StoreError::OutOfRange(format!(
                        "held_message {id} cannot be read ({e}); fix or delete the row"
                    ))
                })
            })
            .collect()
    }
}

fn id_i64(id: u64) -> Result<i64, StoreError> {
    super::rows::to_i64(id, || "a held message's id".into())
}
