//! The audit trail of the admin service: one row per change (table `admin_audit`).

use super::{Backend, Store};
use crate::StoreError;

/// A change to record: who, from where, what, and the object before and after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAudit {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The account that made the change.
    pub actor: String,
    /// Where the request came from (client IP address).
    pub client: String,
    /// What was done: `create`, `update`, `delete`, `enable`, `disable`, ...
    pub action: String,
    /// Which object: `policy/NAME`, `policy/NAME/quota/NAME`, `group/NAME`, ...
    pub object: String,
    /// The object before, as JSON (`None`: it did not exist).
    pub before: Option<String>,
    /// The object after, as JSON (`None`: it no longer exists).
    pub after: Option<String>,
}

/// A recorded change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Row id: grows with every entry.
    pub id: i64,
    /// The change.
    pub change: NewAudit,
}

/// Which audit entries to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries with a smaller id (paging backwards); `None`: from the newest.
    pub before_id: Option<i64>,
    /// Only entries by this account.
    pub actor: Option<String>,
    /// At most this many (capped at 1000).
    pub limit: u32,
}

type AuditRow = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);

pub(super) const INSERT_AUDIT: &str = "INSERT INTO admin_audit \
     (at_ms, actor, client, action, object, before_json, after_json) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

impl Store {
    /// Records one change on its own (changes of policies record theirs in the same
    /// transaction: [`Store::replace_all_audited`]).
    pub async fn record_audit(&self, entry: &NewAudit) -> Result<(), StoreError> {
        on_pool!(self, |pool| bind_audit(sqlx::query(INSERT_AUDIT), entry)
            .execute(pool)
            .await?
            .rows_affected());
        Ok(())
    }

    /// Audit entries, newest first.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        const SQL: &str = "SELECT id, at_ms, actor, client, action, object, before_json, \
             after_json FROM admin_audit WHERE ($1 IS NULL OR id < $1) \
             AND ($2 IS NULL OR actor = $2) ORDER BY id DESC LIMIT $3";
        let limit = i64::from(query.limit.min(1000));
        let rows: Vec<AuditRow> = on_pool!(self, |pool| sqlx::query_as(SQL)
            .bind(query.before_id)
            .bind(query.actor.as_deref())
            .bind(limit)
            .fetch_all(pool)
            .await?);
        Ok(rows
            .into_iter()
            .map(
                |(id, at_ms, actor, client, action, object, before, after)| AuditEntry {
                    id,
                    change: NewAudit {
                        at_ms,
                        actor,
                        client,
                        action,
                        object,
                        before,
                        after,
                    },
                },
            )
            .collect())
    }
}

/// Binds the seven columns of [`INSERT_AUDIT`].
pub(super) fn bind_audit<'q, DB: sqlx::Database>(
    query: sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>,
    e: &'q NewAudit,
) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments>
where
    i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    query
        .bind(e.at_ms)
        .bind(e.actor.as_str())
        .bind(e.client.as_str())
        .bind(e.action.as_str())
        .bind(e.object.as_str())
        .bind(e.before.as_deref())
        .bind(e.after.as_deref())
}
