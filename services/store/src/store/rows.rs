//! Rows of the policy tables and their assembly into a [`PolicySetDef`].
//!
//! Loading reads each table whole (children ordered by id) and assembles the tree here, so the
//! SQL stays the same for every backend and the ordering rules live in one place.

use std::collections::HashMap;

use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};

use crate::StoreError;

pub(crate) const SELECT_GROUPS: &str =
    "SELECT id, name, disabled, comment FROM policy_group ORDER BY id";
pub(crate) const SELECT_GROUP_MEMBERS: &str =
    "SELECT id, group_id, member, disabled, comment FROM policy_group_member ORDER BY id";
pub(crate) const SELECT_POLICIES: &str =
    "SELECT id, name, priority, description, disabled, monitor FROM policy ORDER BY id";
pub(crate) const SELECT_MEMBERS: &str =
    "SELECT id, policy_id, source, destination, disabled, comment FROM policy_member ORDER BY id";
pub(crate) const SELECT_ACCESS_CONTROL: &str = "SELECT id, policy_id, name, verdict, data, \
     disabled, comment FROM policy_access_control ORDER BY id";
pub(crate) const SELECT_QUOTAS: &str = "SELECT id, policy_id, name, track, period, verdict, \
     data, last_quota, disabled, comment, release, max_held, max_hold_age, on_expiry      FROM policy_quota ORDER BY id";
pub(crate) const SELECT_LIMITS: &str = "SELECT id, quota_id, kind, counter_limit, disabled, \
     comment FROM policy_quota_limit ORDER BY id";

/// Deletes children first, so it works with or without foreign-key enforcement.
pub(crate) const DELETE_ALL: [&str; 7] = [
    "DELETE FROM policy_quota_limit",
    "DELETE FROM policy_quota",
    "DELETE FROM policy_access_control",
    "DELETE FROM policy_member",
    "DELETE FROM policy",
    "DELETE FROM policy_group_member",
    "DELETE FROM policy_group",
];

pub(crate) const INSERT_GROUP: &str =
    "INSERT INTO policy_group (name, disabled, comment) VALUES ($1, $2, $3) RETURNING id";
pub(crate) const INSERT_GROUP_MEMBER: &str = "INSERT INTO policy_group_member \
     (group_id, member, disabled, comment) VALUES ($1, $2, $3, $4)";
pub(crate) const INSERT_POLICY: &str = "INSERT INTO policy (name, priority, description, \
     disabled, monitor) VALUES ($1, $2, $3, $4, $5) RETURNING id";
pub(crate) const INSERT_MEMBER: &str = "INSERT INTO policy_member (policy_id, source, \
     destination, disabled, comment) VALUES ($1, $2, $3, $4, $5)";
pub(crate) const INSERT_ACCESS_CONTROL: &str = "INSERT INTO policy_access_control (policy_id, \
     name, verdict, data, disabled, comment) VALUES ($1, $2, $3, $4, $5, $6)";
pub(crate) const INSERT_QUOTA: &str = "INSERT INTO policy_quota (policy_id, name, track, \
     period, verdict, data, last_quota, disabled, comment, release, max_held, max_hold_age, \
     on_expiry) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id";
pub(crate) const INSERT_LIMIT: &str = "INSERT INTO policy_quota_limit (quota_id, kind, \
     counter_limit, disabled, comment) VALUES ($1, $2, $3, $4, $5)";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupRow {
    pub id: i64,
    pub name: String,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GroupMemberRow {
    pub group_id: i64,
    pub member: String,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PolicyRow {
    pub id: i64,
    pub name: String,
    pub priority: i32,
    pub description: Option<String>,
    pub disabled: bool,
    pub monitor: bool,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct MemberRow {
    pub policy_id: i64,
    pub source: Option<String>,
    pub destination: Option<String>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccessControlRow {
    pub policy_id: i64,
    pub name: String,
    pub verdict: String,
    pub data: Option<String>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct QuotaRow {
    pub id: i64,
    pub policy_id: i64,
    pub name: String,
    pub track: String,
    pub period: i64,
    pub verdict: String,
    pub data: Option<String>,
    pub last_quota: bool,
    pub disabled: bool,
    pub comment: Option<String>,
    pub release: Option<String>,
    pub max_held: Option<i64>,
    pub max_hold_age: Option<i64>,
    pub on_expiry: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct LimitRow {
    pub quota_id: i64,
    pub kind: String,
    pub counter_limit: i64,
    pub disabled: bool,
    pub comment: Option<String>,
}

/// Every row of every policy table, each table ordered by id.
#[derive(Debug, Default)]
pub(crate) struct AllRows {
    pub groups: Vec<GroupRow>,
    pub group_members: Vec<GroupMemberRow>,
    pub policies: Vec<PolicyRow>,
    pub members: Vec<MemberRow>,
    pub access_control: Vec<AccessControlRow>,
    pub quotas: Vec<QuotaRow>,
    pub limits: Vec<LimitRow>,
    pub greylisting: Vec<super::greylisting_rows::GreylistingRow>,
    pub greylisting_whitelist: Vec<super::greylisting_rows::WhitelistRow>,
    pub message_caps: Vec<super::message_caps_rows::MessageCapsRow>,
    pub checkspf: Vec<super::checkspf_rows::CheckSpfRow>,
    pub skip_spf_pass: Vec<super::checkspf_rows::SkipSpfPassRow>,
    pub checkhelo: Vec<super::checkhelo_rows::CheckHeloRow>,
    pub checkhelo_blacklist: Vec<super::checkhelo_rows::BlacklistRow>,
    pub checkhelo_whitelist: Vec<super::checkhelo_rows::WhitelistRow>,
    pub accounting: Vec<super::accounting_rows::AccountingRow>,
}

impl AllRows {
    /// Builds the definition, everything in id order: the order it was stored in, so that
    /// an exported file lists things as the imported one did. Rows whose parent is gone (possible only without foreign keys) are dropped.
    pub(crate) fn assemble(self) -> Result<PolicySetDef, StoreError> {
        let mut groups: Vec<(i64, GroupDef)> = self
            .groups
            .into_iter()
            .map(|g| {
                let def = GroupDef {
                    name: g.name,
                    disabled: g.disabled,
                    comment: g.comment,
                    members: Vec::new(),
                };
                (g.id, def)
            })
            .collect();
        let group_index: HashMap<i64, usize> = groups
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (*id, i))
            .collect();
        for m in self.group_members {
            if let Some(&i) = group_index.get(&m.group_id) {
                groups[i].1.members.push(GroupMemberDef {
                    member: m.member,
                    disabled: m.disabled,
                    comment: m.comment,
                });
            }
        }

        let mut policies: Vec<PolicyDef> = Vec::with_capacity(self.policies.len());
        let mut policy_index = HashMap::new();
        for p in self.policies {
            policy_index.insert(p.id, policies.len());
            policies.push(PolicyDef {
                name: p.name,
                priority: p.priority,
                description: p.description,
                disabled: p.disabled,
                monitor: p.monitor,
                ..PolicyDef::default()
            });
        }
        for m in self.members {
            if let Some(&i) = policy_index.get(&m.policy_id) {
                policies[i].members.push(MemberDef {
                    source: m.source,
                    destination: m.destination,
                    disabled: m.disabled,
                    comment: m.comment,
                });
            }
        }
        for a in self.access_control {
            if let Some(&i) = policy_index.get(&a.policy_id) {
                policies[i].access_control.push(AccessControlDef {
                    name: a.name,
                    verdict: a.verdict,
                    data: a.data,
                    disabled: a.disabled,
                    comment: a.comment,
                });
            }
        }
        // quota id -> (policy index, quota index)
        let mut quota_index = HashMap::new();
        for q in self.quotas {
            let Some(&i) = policy_index.get(&q.policy_id) else {
                continue;
            };
            let period = u64::try_from(q.period).map_err(|_| {
                StoreError::OutOfRange(format!("quota {:?} has period {}", q.name, q.period))
            })?;
            quota_index.insert(q.id, (i, policies[i].quotas.len()));
            policies[i].quotas.push(QuotaDef {
                name: q.name,
                track: q.track,
                period,
                verdict: q.verdict,
                data: q.data,
                last_quota: q.last_quota,
                disabled: q.disabled,
                comment: q.comment,
                release: q.release,
                max_held: unsigned(q.max_held, "max_held")?,
                max_hold_age: unsigned(q.max_hold_age, "max_hold_age")?,
                on_expiry: q.on_expiry,
                limits: Vec::new(),
            });
        }
        for l in self.limits {
            let Some(&(p, q)) = quota_index.get(&l.quota_id) else {
                continue;
            };
            let limit = u64::try_from(l.counter_limit).map_err(|_| {
                StoreError::OutOfRange(format!("a quota limit is {}", l.counter_limit))
            })?;
            policies[p].quotas[q].limits.push(LimitDef {
                kind: l.kind,
                limit,
                disabled: l.disabled,
                comment: l.comment,
            });
        }

        for g in self.greylisting {
            if let Some(&i) = policy_index.get(&g.policy_id) {
                policies[i].greylisting = Some(g.into_def()?);
            }
        }
        for c in self.message_caps {
            if let Some(&i) = policy_index.get(&c.policy_id) {
                policies[i].message_caps = Some(c.into_def()?);
            }
        }
        for s in self.skip_spf_pass {
            if let Some(g) = policy_index
                .get(&s.policy_id)
                .and_then(|&i| policies[i].greylisting.as_mut())
            {
                g.skip_spf_pass = s.skip_spf_pass;
            }
        }
        for c in self.checkspf {
            if let Some(&i) = policy_index.get(&c.policy_id) {
                policies[i].checkspf = Some(c.into());
            }
        }
        for h in self.checkhelo {
            if let Some(&i) = policy_index.get(&h.policy_id) {
                policies[i].checkhelo = Some(h.into_def()?);
            }
        }
        for a in self.accounting {
            if let Some(&i) = policy_index.get(&a.policy_id) {
                policies[i].accounting.push(a.into_def()?);
            }
        }

        let groups: Vec<GroupDef> = groups.into_iter().map(|(_, g)| g).collect();
        Ok(PolicySetDef {
            groups,
            policies,
            greylisting_whitelist: self
                .greylisting_whitelist
                .into_iter()
                .map(Into::into)
                .collect(),
            checkhelo_blacklist: self
                .checkhelo_blacklist
                .into_iter()
                .map(Into::into)
                .collect(),
            checkhelo_whitelist: self
                .checkhelo_whitelist
                .into_iter()
                .map(Into::into)
                .collect(),
        })
    }
}

/// `value` as a BIGINT column value, or an error naming `what`.
pub(crate) fn to_i64(value: u64, what: impl FnOnce() -> String) -> Result<i64, StoreError> {
    i64::try_from(value)
        .map_err(|_| StoreError::OutOfRange(format!("{} is {value}, above 2^63-1", what())))
}

/// A stored optional count as the definitions hold it (negative values are refused by the
/// table's checks; one written by hand is reported).
fn unsigned(v: Option<i64>, what: &str) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        u64::try_from(v).map_err(|_| StoreError::OutOfRange(format!("a quota's {what} is {v}")))
    })
    .transpose()
}

/// [`to_i64`] of an optional value.
pub(crate) fn opt_i64(
    value: Option<u64>,
    what: impl FnOnce() -> String,
) -> Result<Option<i64>, StoreError> {
    value.map(|v| to_i64(v, what)).transpose()
}
