//! In-process counters and message sessions of `sluice serve`, kept in the SQLite policy
//! database (tables `quota_counter` and `quota_session`, migration
//! `migrations/sqlite/0002_counters.sql`) so that a restart neither forgets nor
//! double-counts.
//!
//! Nothing here runs per request: the server collects changed counters
//! ([`sluice_engine::MemoryState::take_changes`]) every flush interval and hands them to
//! [`Store::write_counters`], one transaction per flush. At start it reads them back with
//! [`Store::load_counters`], page by page.
//!
//! Only SQLite keeps counters: a PostgreSQL policy database is typically shared by several
//! servers, each with counters of its own in memory, which one table cannot hold apart
//! (counters shared between servers are what the cluster mode's Redis is for). On
//! PostgreSQL [`Store::keeps_counters`] is false and these calls fail.

use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterChanges, CounterSnapshot, EomRecord, SavedSession, SessionData};
use sqlx::SqlitePool;

use super::{Backend, Store};
use crate::error::StoreError;

/// Counters upserted per statement (5 parameters each).
const ROWS_PER_STATEMENT: usize = 64;

/// Most expired rows deleted per write (a mass expiry is spread over a few flushes).
const EXPIRED_PER_WRITE: i64 = 20_000;

/// Rows read per page at start.
const LOAD_PAGE: i64 = 20_000;

const UPSERT_HEAD: &str =
    "INSERT INTO quota_counter (counter_key, period_ms, bucket_ms, buckets, expires_ms) VALUES ";
const UPSERT_TAIL: &str =
    " ON CONFLICT (counter_key) DO UPDATE SET period_ms = excluded.period_ms, \
     bucket_ms = excluded.bucket_ms, buckets = excluded.buckets, expires_ms = excluded.expires_ms";
const DELETE_COUNTER: &str = "DELETE FROM quota_counter WHERE counter_key = $1";
const DELETE_EXPIRED: &str = "DELETE FROM quota_counter WHERE counter_key IN \
     (SELECT counter_key FROM quota_counter WHERE expires_ms <= $1 LIMIT $2)";
const SELECT_PAGE: &str = "SELECT counter_key, period_ms, bucket_ms, buckets FROM quota_counter \
     WHERE counter_key > $1 AND expires_ms > $2 ORDER BY counter_key LIMIT $3";

/// What one [`Store::write_counters`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersWritten {
    /// Counters inserted or updated.
    pub upserted: usize,
    /// Rows deleted: removed counters and expired ones.
    pub deleted: u64,
}

impl Store {
    /// Whether this database keeps in-process counters across restarts (SQLite only).
    pub fn keeps_counters(&self) -> bool {
        matches!(self.backend, Backend::Sqlite(_))
    }

    pub(super) fn counters_pool(&self) -> Result<std::sync::Arc<SqlitePool>, StoreError> {
        match &self.backend {
            Backend::Sqlite(file) => Ok(file.pool()),
            Backend::Postgres(_) => Err(StoreError::UnsupportedUrl {
                scheme: "postgres".into(),
                expected: "sqlite: (only a SQLite policy database keeps in-process counters)",
            }),
        }
    }

    /// Writes counter changes in one transaction: removed keys are deleted, then changed
    /// counters inserted or replaced (one left without buckets is deleted), then up to a
    /// bounded number of rows expired at `now_ms` are deleted.
    pub async fn write_counters(
        &self,
        changes: &CounterChanges,
        now_ms: u64,
    ) -> Result<CountersWritten, StoreError> {
        let pool = self.counters_pool()?;
        let mut written = CountersWritten::default();
        let mut tx = pool.begin().await?;
        let (rows, emptied): (Vec<&CounterSnapshot>, Vec<&CounterSnapshot>) =
            changes.changed.iter().partition(|c| !c.buckets.is_empty());
        for key in changes.removed.iter().chain(emptied.iter().map(|c| &c.key)) {
            let done = sqlx::query(DELETE_COUNTER)
                .bind(key)
                .execute(&mut *tx)
                .await?;
            written.deleted += done.rows_affected();
        }
        let full = rows.len() / ROWS_PER_STATEMENT * ROWS_PER_STATEMENT;
        let (chunks, rest) = rows.split_at(full);
        let sql = upsert_sql(ROWS_PER_STATEMENT);
        for chunk in chunks.chunks(ROWS_PER_STATEMENT) {
            let mut q = sqlx::query(sql.clone());
            for c in chunk {
                q = bind_counter(q, c);
            }
            q.execute(&mut *tx).await?;
        }
        let one = upsert_sql(1);
        for c in rest {
            bind_counter(sqlx::query(one.clone()), c)
                .execute(&mut *tx)
                .await?;
        }
        written.upserted = rows.len();
        let done = sqlx::query(DELETE_EXPIRED)
            .bind(ms(now_ms))
            .bind(EXPIRED_PER_WRITE)
            .execute(&mut *tx)
            .await?;
        written.deleted += done.rows_affected();
        tx.commit().await?;
        Ok(written)
    }

    /// Reads the counters still counting something at `now_ms`, `LOAD_PAGE` at a time in
    /// key order, handing each page to `page`; returns how many were read. Rows that do not
    /// decode (changed by hand) are skipped with a warning. Expired rows are left to
    /// [`Store::write_counters`], which deletes them.
    pub async fn load_counters(
        &self,
        now_ms: u64,
        mut page: impl FnMut(Vec<CounterSnapshot>),
    ) -> Result<usize, StoreError> {
        let pool = self.counters_pool()?;
        let mut after = String::new();
        let mut total = 0;
        loop {
            let rows: Vec<(String, i64, i64, Vec<u8>)> = sqlx::query_as(SELECT_PAGE)
                .bind(&after)
                .bind(ms(now_ms))
                .bind(LOAD_PAGE)
                .fetch_all(&*pool)
                .await?;
            let Some(last) = rows.last() else {
                return Ok(total);
            };
            after = last.0.clone();
            let n = rows.len();
            let counters: Vec<CounterSnapshot> = rows
                .into_iter()
                .filter_map(|(key, period_ms, bucket_ms, buckets)| {
                    let decoded = decode_counter(&key, period_ms, bucket_ms, &buckets);
                    if decoded.is_none() {
                        tracing::warn!(key, "Skipping a saved counter that does not decode");
                    }
                    decoded
                })
                .collect();
            total += counters.len();
            page(counters);
            if (n as i64) < LOAD_PAGE {
                return Ok(total);
            }
        }
    }

    /// Replaces the saved message sessions with `sessions` (at a clean stop).
    pub async fn save_sessions(&self, sessions: &[SavedSession]) -> Result<(), StoreError> {
        let pool = self.counters_pool()?;
        let mut tx = pool.begin().await?;
        sqlx::query("DELETE FROM quota_session")
            .execute(&mut *tx)
            .await?;
        for s in sessions {
            sqlx::query(
                "INSERT INTO quota_session (instance, expires_ms, data) VALUES ($1, $2, $3)",
            )
            .bind(&s.session.instance)
            .bind(ms(s.expires_ms))
            .bind(encode_session(&s.session))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Reads the saved message sessions not expired at `now_ms` and deletes them all (they
    /// live in memory from now on; the next clean stop saves them again).
    pub async fn take_sessions(&self, now_ms: u64) -> Result<Vec<SavedSession>, StoreError> {
        let pool = self.counters_pool()?;
        let mut tx = pool.begin().await?;
        let rows: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT instance, expires_ms, data FROM quota_session WHERE expires_ms > $1",
        )
        .bind(ms(now_ms))
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM quota_session")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(rows
            .into_iter()
            .filter_map(|(instance, expires_ms, data)| {
                let session = decode_session(instance, &data);
                if session.is_none() {
                    tracing::warn!("Skipping a saved message session that does not decode");
                }
                Some(SavedSession {
                    session: session?,
                    expires_ms: u64::try_from(expires_ms).ok()?,
                })
            })
            .collect())
    }
}

/// Milliseconds as a column value (times since the epoch fit easily).
fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// An upsert of `rows` counters. Anonymous `?` parameters: SQLite looks a named one up by
/// walking the statement's list of names, which for a statement of hundreds of parameters
/// cost more than the write itself. Built from this module's constant fragments only, so it
/// is asserted safe for sqlx's dynamic-SQL check (and cheap to clone per statement).
fn upsert_sql(rows: usize) -> sqlx::SqlStr {
    let mut sql = String::from(UPSERT_HEAD);
    for r in 0..rows {
        if r > 0 {
            sql.push_str(", ");
        }
        sql.push_str("(?, ?, ?, ?, ?)");
    }
    sql.push_str(UPSERT_TAIL);
    sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(sql))
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_counter<'q>(q: Query<'q>, c: &'q CounterSnapshot) -> Query<'q> {
    q.bind(&c.key)
        .bind(ms(c.window.period_ms))
        .bind(ms(c.window.bucket_ms))
        .bind(encode_buckets(&c.buckets))
        .bind(ms(c.expires_ms()))
}

/// Buckets as little-endian `(index, count)` pairs, 16 bytes each.
pub(crate) fn encode_buckets(buckets: &[(u64, u64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(buckets.len() * 16);
    for &(j, c) in buckets {
        out.extend_from_slice(&j.to_le_bytes());
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

fn decode_counter(
    key: &str,
    period_ms: i64,
    bucket_ms: i64,
    buckets: &[u8],
) -> Option<CounterSnapshot> {
    let (period_ms, bucket_ms) = (
        u64::try_from(period_ms).ok()?,
        u64::try_from(bucket_ms).ok()?,
    );
    if period_ms == 0 || bucket_ms == 0 || !buckets.len().is_multiple_of(16) {
        return None;
    }
    let buckets = buckets
        .chunks_exact(16)
        .map(|b| {
            let (j, c) = b.split_at(8);
            (u64_le(j), u64_le(c))
        })
        .collect();
    Some(CounterSnapshot {
        key: key.to_string(),
        window: WindowSpec {
            period_ms,
            bucket_ms,
        },
        buckets,
    })
}

fn u64_le(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(b);
    u64::from_le_bytes(a)
}

/// Layout version of an encoded session.
const SESSION_FORMAT: u8 = 1;

/// A session's charges and records: a format byte, then the number of charged keys (u32)
/// and each key, then the number of records (u32) and each record (key, limit u64,
/// period_ms u64, bucket_ms u64, label, group u32); strings are a u32 length and UTF-8
/// bytes; integers little-endian.
pub(crate) fn encode_session(s: &SessionData) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u32).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = vec![SESSION_FORMAT];
    out.extend_from_slice(&(s.charged.len() as u32).to_le_bytes());
    for k in &s.charged {
        put_str(&mut out, k);
    }
    out.extend_from_slice(&(s.records.len() as u32).to_le_bytes());
    for r in &s.records {
        put_str(&mut out, &r.key);
        out.extend_from_slice(&r.limit.to_le_bytes());
        out.extend_from_slice(&r.window.period_ms.to_le_bytes());
        out.extend_from_slice(&r.window.bucket_ms.to_le_bytes());
        put_str(&mut out, &r.label);
        out.extend_from_slice(&r.group.to_le_bytes());
    }
    out
}

pub(crate) fn decode_session(instance: String, data: &[u8]) -> Option<SessionData> {
    struct Reader<'a>(&'a [u8]);
    impl Reader<'_> {
        fn take(&mut self, n: usize) -> Option<&[u8]> {
            if self.0.len() < n {
                return None;
            }
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            Some(head)
        }
        fn u32(&mut self) -> Option<u32> {
            let mut a = [0u8; 4];
            a.copy_from_slice(self.take(4)?);
            Some(u32::from_le_bytes(a))
        }
        fn u64(&mut self) -> Option<u64> {
            Some(u64_le(self.take(8)?))
        }
        fn str(&mut self) -> Option<String> {
            let n = self.u32()? as usize;
            String::from_utf8(self.take(n)?.to_vec()).ok()
        }
    }
    let mut r = Reader(data);
    if r.take(1)? != [SESSION_FORMAT] {
        return None;
    }
    let n = r.u32()?;
    let mut charged = Vec::new();
    for _ in 0..n {
        charged.push(r.str()?);
    }
    let n = r.u32()?;
    let mut records = Vec::new();
    for _ in 0..n {
        let key = r.str()?;
        let limit = r.u64()?;
        let (period_ms, bucket_ms) = (r.u64()?, r.u64()?);
        if period_ms == 0 || bucket_ms == 0 {
            return None;
        }
        let label = r.str()?;
        let group = r.u32()?;
        records.push(EomRecord {
            key,
            limit,
            window: WindowSpec {
                period_ms,
                bucket_ms,
            },
            label,
            group,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some(SessionData {
        instance,
        charged,
        records,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_and_buckets_round_trip_and_damage_is_refused() {
        let s = SessionData {
            instance: "I1".into(),
            charged: vec!["p/q/MessageCount/Sender:a@x".into(), "é".into()],
            records: vec![EomRecord {
                key: "p/q/MessageCumulativeSize/Sender:a@x".into(),
                limit: 10_000_000,
                window: WindowSpec::new(3_600_000, 60),
                label: "p\u{1f}q".into(),
                group: 2,
            }],
        };
        let data = encode_session(&s);
        assert_eq!(decode_session("I1".into(), &data), Some(s.clone()));
        for cut in 0..data.len() {
            assert_eq!(
                decode_session("I1".into(), &data[..cut]),
                None,
                "cut at {cut}"
            );
        }
        let mut longer = data.clone();
        longer.push(0);
        assert_eq!(decode_session("I1".into(), &longer), None);
        let empty = SessionData {
            instance: "I2".into(),
            ..SessionData::default()
        };
        assert_eq!(
            decode_session("I2".into(), &encode_session(&empty)),
            Some(empty)
        );

        let buckets = [(28_000_000, 3), (28_000_001, u64::MAX)];
        let blob = encode_buckets(&buckets);
        let c = decode_counter("k", 3_600_000, 60_000, &blob).unwrap();
        assert_eq!(c.buckets, buckets);
        assert_eq!(c.expires_ms(), 28_000_002 * 60_000 + 3_600_000);
        assert!(decode_counter("k", 3_600_000, 60_000, &blob[..15]).is_none());
        assert!(decode_counter("k", 0, 60_000, &blob).is_none());
        assert!(decode_counter("k", 3_600_000, -1, &blob).is_none());
    }

    #[test]
    fn upserts_have_five_parameters_a_row() {
        assert_eq!(
            upsert_sql(2),
            format!("{UPSERT_HEAD}(?, ?, ?, ?, ?), (?, ?, ?, ?, ?){UPSERT_TAIL}")
        );
    }
}
