//! Accounting totals (table `accounting_totals`): what serving processes counted per
//! accounting row, period and track key, written in batches by their background task and
//! summed when read (`sluice accounting report`, the admin service). Nothing here runs per
//! request. The SQL is fixed text with `$N` placeholders; every value is bound.

use super::{Backend, Store};
use crate::StoreError;

/// What one process counted for one (policy, row, period, track key) since its last batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountingTotal {
    /// When the batch was written, ms since the epoch.
    pub at_ms: i64,
    /// Which process counted (its `history_node`).
    pub node: String,
    /// The policy.
    pub policy: String,
    /// The accounting row.
    pub name: String,
    /// The period key (`2026-11`, `2026-W48`, `2026-11-30`).
    pub period: String,
    /// The track key (`Sender:@example.com`).
    pub track: String,
    /// Messages counted.
    pub messages: i64,
    /// Recipients counted.
    pub recipients: i64,
    /// Bytes counted (END-OF-MESSAGE).
    pub bytes: i64,
}

/// The totals of one (policy, row, track key) in a period, summed over processes and
/// batches.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct AccountingTotalRow {
    /// The policy.
    pub policy: String,
    /// The accounting row.
    pub name: String,
    /// The track key.
    pub track: String,
    /// Messages.
    pub messages: i64,
    /// Recipients.
    pub recipients: i64,
    /// Bytes.
    pub bytes: i64,
}

const INSERT_TOTAL: &str = "INSERT INTO accounting_totals (at_ms, node, policy, name, period, \
     track, messages, recipients, bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

/// Sums of one period, largest message counts first within each row. `CAST`: PostgreSQL's
/// SUM of BIGINT is NUMERIC.
const REPORT: &str = "SELECT policy, name, track, \
     CAST(SUM(messages) AS BIGINT) AS messages, \
     CAST(SUM(recipients) AS BIGINT) AS recipients, \
     CAST(SUM(bytes) AS BIGINT) AS bytes \
     FROM accounting_totals WHERE period = $1 \
     GROUP BY policy, name, track \
     ORDER BY policy, name, messages DESC, recipients DESC, bytes DESC, track \
     LIMIT $2";

/// Most rows a report returns.
pub const MAX_REPORT_ROWS: u32 = 100_000;

impl Store {
    /// Stores one batch of totals in one transaction.
    pub async fn insert_accounting_totals(
        &self,
        batch: &[AccountingTotal],
    ) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for t in batch {
                sqlx::query(INSERT_TOTAL)
                    .bind(t.at_ms)
                    .bind(&t.node)
                    .bind(&t.policy)
                    .bind(&t.name)
                    .bind(&t.period)
                    .bind(&t.track)
                    .bind(t.messages)
                    .bind(t.recipients)
                    .bind(t.bytes)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The totals of `period` (a canonical key: `2026-11`, `2026-W48`, `2026-11-30`), at
    /// most `limit` rows (capped at [`MAX_REPORT_ROWS`]).
    pub async fn accounting_report(
        &self,
        period: &str,
        limit: u32,
    ) -> Result<Vec<AccountingTotalRow>, StoreError> {
        let limit = i64::from(limit.clamp(1, MAX_REPORT_ROWS));
        let rows = on_pool!(self, |pool| {
            sqlx::query_as::<_, AccountingTotalRow>(REPORT)
                .bind(period)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        Ok(rows)
    }
}
