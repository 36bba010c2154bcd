//! The one alert sender of a cluster: a PostgreSQL session advisory lock, held on a
//! connection of its own for as long as the sender runs. Every process configured with an
//! alert webhook tries to take it; the one that holds it alerts, the others wait and try
//! again. If the holder stops or its connection breaks, PostgreSQL releases the lock and
//! another process takes it over. SQLite (one process): always held.

use sqlx::pool::PoolConnection;
use sqlx::Postgres;

use super::{Backend, Store};
use crate::StoreError;

/// The advisory lock's key: "sluice alerts" as a number (any fixed value the database's
/// other users do not take).
pub const ALERT_LOCK_KEY: i64 = 0x736c_7569_6365_0a1e;

/// The alert sender's lock, released when dropped (its connection closes).
#[derive(Debug)]
pub struct AlertLock {
    /// `None` on SQLite.
    conn: Option<PoolConnection<Postgres>>,
}

impl AlertLock {
    /// Whether the lock is still held: its connection answers (a broken connection has
    /// lost it).
    pub async fn still_held(&mut self) -> bool {
        match &mut self.conn {
            None => true,
            Some(conn) => sqlx::query_scalar::<_, i32>("SELECT 1")
                .fetch_one(&mut **conn)
                .await
                .is_ok(),
        }
    }
}

impl Store {
    /// Takes the alert sender's lock if no other process holds it (`None`: another does).
    pub async fn try_alert_lock(&self) -> Result<Option<AlertLock>, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(Some(AlertLock { conn: None })),
            Backend::Postgres(pool) => {
                let mut conn = pool.acquire().await?;
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
                    .bind(ALERT_LOCK_KEY)
                    .fetch_one(&mut *conn)
                    .await?;
                if taken {
                    // Never back to the pool: the lock lives as long as this connection.
                    Ok(Some(AlertLock { conn: Some(conn) }))
                } else {
                    Ok(None)
                }
            }
        }
    }
}
