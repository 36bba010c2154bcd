//! Refusal history (table `refusal_history`) and sender counts (table `sender_counts`):
//! written in batches by the serving processes' background tasks, read by the admin
//! service, pruned in batches after the retention. Nothing here runs per request.
//!
//! The SQL built here is audited: only fixed text and `$N` placeholders are joined; every
//! value (search text, domain patterns) is bound.

use super::{Backend, Store};
use crate::StoreError;

/// One refused request, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Refusal {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Which process refused it (its `history_node`, by default the host name).
    pub node: String,
    /// The client address (`client_address`).
    pub client: String,
    /// The HELO name.
    pub helo: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The SASL user name (empty when not authenticated).
    pub sasl_user: String,
    /// The policy of the verdict that refused it.
    pub policy: String,
    /// The module of that verdict (`Quotas`, `AccessControl`, ...).
    pub module: String,
    /// The keyword of the action Postfix got (`REJECT`, `DEFER`, `450`, ...).
    pub action: String,
    /// The text of that action.
    pub text: String,
}

/// A stored refusal with its row id (ids grow with every row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRow {
    /// Row id.
    pub id: i64,
    /// The refusal.
    pub refusal: Refusal,
}

/// Which refusals to read, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only senders containing this (case-insensitive).
    pub sender: Option<String>,
    /// Only client addresses starting with this (`192.0.2.` matches the /24).
    pub client: Option<String>,
    /// Only recipients containing this (case-insensitive).
    pub recipient: Option<String>,
    /// Only rows whose sender or recipient is at one of these domains or below them
    /// (domain admins); `None`: every row. At most [`MAX_DOMAINS`] are used.
    pub domains: Option<Vec<String>>,
    /// Only rows with a smaller id (paging backwards); `None`: from the newest.
    pub before_id: Option<i64>,
    /// At most this many (capped at 1000).
    pub limit: u32,
}

/// Most domains a [`HistoryQuery`] or [`TopQuery`] filters on.
pub const MAX_DOMAINS: usize = 32;

/// One process's counts for one sender in one minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SenderCount {
    /// The minute's start, ms since the epoch.
    pub minute_ms: i64,
    /// Which process counted.
    pub node: String,
    /// The envelope sender (`<>` for the null sender).
    pub sender: String,
    /// Requests seen.
    pub requests: i64,
    /// Requests refused.
    pub refusals: i64,
}

/// Which top senders to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopQuery {
    /// Counts from this minute on (ms since the epoch).
    pub since_ms: i64,
    /// Order by refusals (and leave out senders never refused) instead of requests.
    pub refused: bool,
    /// Only senders at one of these domains or below them; `None`: every sender.
    pub domains: Option<Vec<String>>,
    /// At most this many (capped at 1000).
    pub limit: u32,
}

/// A sender's counts summed over processes and minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopSender {
    /// The envelope sender.
    pub sender: String,
    /// Requests seen.
    pub requests: i64,
    /// Requests refused.
    pub refusals: i64,
}

type Row = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
);

const COLUMNS: &str =
    "id, at_ms, node, client, helo, sender, recipient, sasl_user, policy, module, action, text";

const INSERT_REFUSAL: &str = "INSERT INTO refusal_history \
     (at_ms, node, client, helo, sender, recipient, sasl_user, policy, module, action, text) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

const INSERT_COUNT: &str = "INSERT INTO sender_counts \
     (minute_ms, node, sender, requests, refusals) VALUES ($1, $2, $3, $4, $5)";

/// `s` as a LIKE pattern matching itself (with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Appends `AND (...)` limiting `columns` to `domains` (at or below), binding patterns
/// from `$next`; returns the patterns to bind in order.
fn domain_clause(
    sql: &mut String,
    columns: &[&str],
    domains: &[String],
    next: &mut usize,
) -> Vec<String> {
    let mut binds = Vec::new();
    let mut parts = Vec::new();
    for d in domains.iter().take(MAX_DOMAINS) {
        let d = like_escape(&d.trim().trim_start_matches('@').to_lowercase());
        for col in columns {
            for pattern in [format!("%@{d}"), format!("%@%.{d}")] {
                parts.push(format!("LOWER({col}) LIKE ${} ESCAPE '\\'", *next));
                *next += 1;
                binds.push(pattern);
            }
        }
    }
    if parts.is_empty() {
        // A domain admin without domains sees nothing.
        sql.push_str(" AND 1 = 0");
    } else {
        sql.push_str(&format!(" AND ({})", parts.join(" OR ")));
    }
    binds
}

impl Store {
    /// Stores a batch of refusals in one transaction.
    pub async fn insert_refusals(&self, batch: &[Refusal]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for r in batch {
                sqlx::query(INSERT_REFUSAL)
                    .bind(r.at_ms)
                    .bind(&r.node)
                    .bind(&r.client)
                    .bind(&r.helo)
                    .bind(&r.sender)
                    .bind(&r.recipient)
                    .bind(&r.sasl_user)
                    .bind(&r.policy)
                    .bind(&r.module)
                    .bind(&r.action)
                    .bind(&r.text)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Refusals matching `query`, newest first.
    pub async fn history(&self, query: &HistoryQuery) -> Result<Vec<RefusalRow>, StoreError> {
        let mut sql = format!("SELECT {COLUMNS} FROM refusal_history WHERE 1 = 1");
        let mut binds: Vec<String> = Vec::new();
        let mut next = 1;
        let mut text_filter = |sql: &mut String, col: &str, value: &Option<String>, prefix| {
            if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                let v = like_escape(&v.to_lowercase());
                sql.push_str(&format!(" AND LOWER({col}) LIKE ${next} ESCAPE '\\'"));
                next += 1;
                binds.push(if prefix {
                    format!("{v}%")
                } else {
                    format!("%{v}%")
                });
            }
        };
        text_filter(&mut sql, "sender", &query.sender, false);
        text_filter(&mut sql, "client", &query.client, true);
        text_filter(&mut sql, "recipient", &query.recipient, false);
        if let Some(domains) = &query.domains {
            binds.extend(domain_clause(
                &mut sql,
                &["sender", "recipient"],
                domains,
                &mut next,
            ));
        }
        sql.push_str(&format!(
            " AND (${next} IS NULL OR id < ${next}) ORDER BY id DESC LIMIT ${}",
            next + 1
        ));
        let limit = i64::from(query.limit.clamp(1, 1000));
        let rows: Vec<Row> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone()));
            for b in &binds {
                q = q.bind(b);
            }
            q.bind(query.before_id).bind(limit).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(row).collect())
    }

    /// Refusals with an id above `after_id`, oldest first (for alerts).
    pub async fn refusals_after(
        &self,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<RefusalRow>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM refusal_history WHERE id > $1 ORDER BY id LIMIT $2");
        let limit = i64::from(limit.clamp(1, 10_000));
        let rows: Vec<Row> = on_pool!(self, |pool| sqlx::query_as(sqlx::AssertSqlSafe(
            sql.clone()
        ))
        .bind(after_id)
        .bind(limit)
        .fetch_all(pool)
        .await?);
        Ok(rows.into_iter().map(row).collect())
    }

    /// The highest refusal id stored (0 when there is none).
    pub async fn last_refusal_id(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT COALESCE(MAX(id), 0) FROM refusal_history";
        let id: i64 = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await?);
        Ok(id)
    }

    /// Deletes up to `batch` refusals and up to `batch` sender counts older than
    /// `before_ms`; returns how many rows went (call again while it returns `batch` or more).
    pub async fn prune_history(&self, before_ms: i64, batch: u32) -> Result<u64, StoreError> {
        const REFUSALS: &str = "DELETE FROM refusal_history WHERE id IN \
             (SELECT id FROM refusal_history WHERE at_ms < $1 ORDER BY id LIMIT $2)";
        const COUNTS: &str = "DELETE FROM sender_counts WHERE id IN \
             (SELECT id FROM sender_counts WHERE minute_ms < $1 ORDER BY id LIMIT $2)";
        let batch = i64::from(batch.max(1));
        let mut deleted = 0;
        for sql in [REFUSALS, COUNTS] {
            deleted += on_pool!(self, |pool| sqlx::query(sql)
                .bind(before_ms)
                .bind(batch)
                .execute(pool)
                .await?
                .rows_affected());
        }
        Ok(deleted)
    }

    /// Stores a batch of per-minute sender counts in one transaction.
    pub async fn insert_sender_counts(&self, batch: &[SenderCount]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for c in batch {
                sqlx::query(INSERT_COUNT)
                    .bind(c.minute_ms)
                    .bind(&c.node)
                    .bind(&c.sender)
                    .bind(c.requests)
                    .bind(c.refusals)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// The senders with the most requests (or refusals) since `query.since_ms`, summed over
    /// every process that counted.
    pub async fn top_senders(&self, query: &TopQuery) -> Result<Vec<TopSender>, StoreError> {
        let mut sql = String::from(
            "SELECT sender, CAST(SUM(requests) AS BIGINT), CAST(SUM(refusals) AS BIGINT) \
             FROM sender_counts WHERE minute_ms >= $1",
        );
        let mut next = 2;
        let binds = match &query.domains {
            Some(domains) => domain_clause(&mut sql, &["sender"], domains, &mut next),
            None => Vec::new(),
        };
        let order = if query.refused {
            "HAVING SUM(refusals) > 0 ORDER BY SUM(refusals) DESC, SUM(requests) DESC"
        } else {
            "ORDER BY SUM(requests) DESC, SUM(refusals) DESC"
        };
        sql.push_str(&format!(" GROUP BY sender {order}, sender LIMIT ${next}"));
        let limit = i64::from(query.limit.clamp(1, 1000));
        let rows: Vec<(String, i64, i64)> = on_pool!(self, |pool| {
            let mut q = sqlx::query_as(sqlx::AssertSqlSafe(sql.clone())).bind(query.since_ms);
            for b in &binds {
                q = q.bind(b);
            }
            q.bind(limit).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|(sender, requests, refusals)| TopSender {
                sender,
                requests,
                refusals,
            })
            .collect())
    }
}

fn row(r: Row) -> RefusalRow {
    let (id, at_ms, node, client, helo, sender, recipient, sasl_user, policy, module, action, text) =
        r;
    RefusalRow {
        id,
        refusal: Refusal {
            at_ms,
            node,
            client,
            helo,
            sender,
            recipient,
            sasl_user,
            policy,
            module,
            action,
            text,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_match_only_themselves() {
        assert_eq!(like_escape("a_b%c\\d"), "a\\_b\\%c\\\\d");
    }

    #[test]
    fn domain_clause_binds_two_patterns_per_domain_and_column() {
        let mut sql = String::new();
        let mut next = 3;
        let binds = domain_clause(&mut sql, &["sender"], &["@Example.org".into()], &mut next);
        assert_eq!(binds, ["%@example.org", "%@%.example.org"]);
        assert_eq!(next, 5);
        assert!(sql.contains("$3") && sql.contains("$4"), "{sql}");
        let mut sql = String::new();
        assert!(domain_clause(&mut sql, &["sender"], &[], &mut next).is_empty());
        assert_eq!(sql, " AND 1 = 0");
    }
}
