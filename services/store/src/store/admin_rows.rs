//! Writing the whole policy set for the admin service: the same rows `sluice policy import`
//! writes ([`Store::replace_all`]), but only if nobody changed the set since it was read
//! (its version), and with the audit entries of the change in the same transaction: a change
//! is stored with its audit trail or not at all.

use sluice_engine::model::PolicySetDef;

use super::audit::{bind_audit, NewAudit, INSERT_AUDIT};
use super::checkhelo_rows;
use super::checkspf_rows;
use super::greylisting_rows;
use super::message_caps_rows;
use super::rows::{self, opt_i64, to_i64};
use super::{Backend, Store};
use crate::StoreError;

/// Reads the version and locks its row for the rest of the transaction (`version = version`
/// changes nothing, and no trigger watches this table).
const LOCK_VERSION: &str =
    "UPDATE policy_version SET version = version WHERE id = 1 RETURNING version";

impl Store {
    /// Replaces every policy definition with `def` (as [`Store::replace_all`]) if the set is
    /// still at `expected_version` ([`Store::version`] read before [`Store::load`]), and
    /// records `audit` in the same transaction. A set changed meanwhile is
    /// [`StoreError::Changed`] and nothing is written: read it again and redo the change.
    pub async fn replace_all_audited(
        &self,
        def: &PolicySetDef,
        expected_version: i64,
        audit: &[NewAudit],
    ) -> Result<(), StoreError> {
        self.write_all(def, Some(expected_version), audit).await
    }

    /// Replaces every definition with `def` in one transaction, after checking the version
    /// (when `expected_version` is given) and writing `audit`.
    pub(super) async fn write_all(
        &self,
        def: &PolicySetDef,
        expected_version: Option<i64>,
        audit: &[NewAudit],
    ) -> Result<(), StoreError> {
        on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // Takes the version row's lock (PostgreSQL) or the write lock (SQLite) first, so
            // that no other writer changes the set between this check and the commit.
            let version: i64 = sqlx::query_scalar(LOCK_VERSION).fetch_one(&mut *tx).await?;
            if let Some(expected) = expected_version {
                if version != expected {
                    return Err(StoreError::Changed {
                        expected,
                        found: version,
                    });
                }
            }
            for entry in audit {
                bind_audit(sqlx::query(INSERT_AUDIT), entry)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(message_caps_rows::DELETE_ALL)
                .execute(&mut *tx)
                .await?;
            for &sql in [super::accounting_rows::DELETE_ALL]
                .iter()
                .chain(&checkspf_rows::DELETE_ALL)
                .chain(&checkhelo_rows::DELETE_ALL)
                .chain(&greylisting_rows::DELETE_ALL)
                .chain(&rows::DELETE_ALL)
            {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
            for group in &def.groups {
                let id: i64 = sqlx::query_scalar(rows::INSERT_GROUP)
                    .bind(&group.name)
                    .bind(group.disabled)
                    .bind(&group.comment)
                    .fetch_one(&mut *tx)
                    .await?;
                for m in &group.members {
                    sqlx::query(rows::INSERT_GROUP_MEMBER)
                        .bind(id)
                        .bind(&m.member)
                        .bind(m.disabled)
                        .bind(&m.comment)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for policy in &def.policies {
                let id: i64 = sqlx::query_scalar(rows::INSERT_POLICY)
                    .bind(&policy.name)
                    .bind(policy.priority)
                    .bind(&policy.description)
                    .bind(policy.disabled)
                    .bind(policy.monitor)
                    .fetch_one(&mut *tx)
                    .await?;
                for m in &policy.members {
                    sqlx::query(rows::INSERT_MEMBER)
                        .bind(id)
                        .bind(&m.source)
                        .bind(&m.destination)
                        .bind(m.disabled)
                        .bind(&m.comment)
                        .execute(&mut *tx)
                        .await?;
                }
                for a in &policy.access_control {
                    sqlx::query(rows::INSERT_ACCESS_CONTROL)
                        .bind(id)
                        .bind(&a.name)
                        .bind(&a.verdict)
                        .bind(&a.data)
                        .bind(a.disabled)
                        .bind(&a.comment)
                        .execute(&mut *tx)
                        .await?;
                }
                for q in &policy.quotas {
                    let period = to_i64(q.period, || format!("the period of quota {:?}", q.name))?;
                    let quota_id: i64 = sqlx::query_scalar(rows::INSERT_QUOTA)
                        .bind(id)
                        .bind(&q.name)
                        .bind(&q.track)
                        .bind(period)
                        .bind(&q.verdict)
                        .bind(&q.data)
                        .bind(q.last_quota)
                        .bind(q.disabled)
                        .bind(&q.comment)
                        .bind(&q.release)
                        .bind(opt_i64(q.max_held, || {
                            format!("max_held of quota {:?}", q.name)
                        })?)
                        .bind(opt_i64(q.max_hold_age, || {
                            format!("max_hold_age of quota {:?}", q.name)
                        })?)
                        .bind(&q.on_expiry)
                        .fetch_one(&mut *tx)
                        .await?;
                    for l in &q.limits {
                        let limit = to_i64(l.limit, || format!("a limit of quota {:?}", q.name))?;
                        sqlx::query(rows::INSERT_LIMIT)
                            .bind(quota_id)
                            .bind(&l.kind)
                            .bind(limit)
                            .bind(l.disabled)
                            .bind(&l.comment)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                if let Some(g) = &policy.greylisting {
                    let n = greylisting_rows::numbers(g, &policy.name)?;
                    sqlx::query(greylisting_rows::INSERT_GREYLISTING)
                        .bind(id)
                        .bind(g.enabled)
                        .bind(n[0])
                        .bind(&g.track)
                        .bind(g.ipv6_prefix.map(i16::from))
                        .bind(n[1])
                        .bind(n[2])
                        .bind(g.auto_whitelist)
                        .bind(n[3])
                        .bind(n[4])
                        .bind(n[5])
                        .bind(g.auto_blacklist)
                        .bind(n[6])
                        .bind(n[7])
                        .bind(n[8])
                        .bind(g.training)
                        .bind(&g.defer_message)
                        .bind(&g.blacklist_message)
                        .bind(g.disabled)
                        .bind(&g.comment)
                        .execute(&mut *tx)
                        .await?;
                    if g.skip_spf_pass.is_some() {
                        sqlx::query(checkspf_rows::UPDATE_SKIP_SPF_PASS)
                            .bind(g.skip_spf_pass)
                            .bind(id)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
                if let Some(c) = &policy.checkspf {
                    sqlx::query(checkspf_rows::INSERT_CHECKSPF)
                        .bind(id)
                        .bind(c.enabled)
                        .bind(c.reject_failed)
                        .bind(c.add_header)
                        .bind(c.disabled)
                        .bind(&c.comment)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(c) = &policy.message_caps {
                    let n = message_caps_rows::numbers(c, &policy.name)?;
                    sqlx::query(message_caps_rows::INSERT)
                        .bind(id)
                        .bind(n[0])
                        .bind(n[1])
                        .bind(c.disabled)
                        .bind(&c.comment)
                        .execute(&mut *tx)
                        .await?;
                }
                if let Some(h) = &policy.checkhelo {
                    let n = checkhelo_rows::numbers(h, &policy.name)?;
                    sqlx::query(checkhelo_rows::INSERT_CHECKHELO)
                        .bind(id)
                        .bind(h.use_blacklist)
                        .bind(n[0])
                        .bind(h.use_hrp)
                        .bind(n[1])
                        .bind(n[2])
                        .bind(h.reject_invalid)
                        .bind(h.reject_ip)
                        .bind(h.reject_unresolvable)
                        .bind(&h.dns_failure)
                        .bind(h.disabled)
                        .bind(&h.comment)
                        .execute(&mut *tx)
                        .await?;
                }
                for a in &policy.accounting {
                    let n = super::accounting_rows::limits(a, &policy.name)?;
                    sqlx::query(super::accounting_rows::INSERT_ACCOUNTING)
                        .bind(id)
                        .bind(&a.name)
                        .bind(&a.track)
                        .bind(&a.period)
                        .bind(&a.time_zone)
                        .bind(n[0])
                        .bind(n[1])
                        .bind(n[2])
                        .bind(&a.verdict)
                        .bind(&a.data)
                        .bind(a.last_accounting)
                        .bind(a.disabled)
                        .bind(&a.comment)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            for w in &def.greylisting_whitelist {
                sqlx::query(greylisting_rows::INSERT_WHITELIST)
                    .bind(&w.source)
                    .bind(w.disabled)
                    .bind(&w.comment)
                    .execute(&mut *tx)
                    .await?;
            }
            for b in &def.checkhelo_blacklist {
                sqlx::query(checkhelo_rows::INSERT_BLACKLIST)
                    .bind(&b.helo)
                    .bind(b.disabled)
                    .bind(&b.comment)
                    .execute(&mut *tx)
                    .await?;
            }
            for w in &def.checkhelo_whitelist {
                sqlx::query(checkhelo_rows::INSERT_WHITELIST)
                    .bind(&w.source)
                    .bind(w.disabled)
                    .bind(&w.comment)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
