//! Rows of `policy_accounting` (`migrations/*/0008_accounting.sql`): the accounting rows of
//! each policy.

use sluice_engine::AccountingDef;

use crate::StoreError;

pub(crate) const SELECT_ACCOUNTING: &str = "SELECT policy_id, name, track, period, time_zone, \
     message_count_limit, recipient_count_limit, size_limit, verdict, data, last_accounting, \
     disabled, comment FROM policy_accounting ORDER BY id";

pub(crate) const DELETE_ALL: &str = "DELETE FROM policy_accounting";

pub(crate) const INSERT_ACCOUNTING: &str = "INSERT INTO policy_accounting (policy_id, name, \
     track, period, time_zone, message_count_limit, recipient_count_limit, size_limit, \
     verdict, data, last_accounting, disabled, comment) VALUES ($1, $2, $3, $4, $5, $6, $7, \
     $8, $9, $10, $11, $12, $13)";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountingRow {
    pub policy_id: i64,
    pub name: String,
    pub track: String,
    pub period: String,
    pub time_zone: Option<String>,
    pub message_count_limit: Option<i64>,
    pub recipient_count_limit: Option<i64>,
    pub size_limit: Option<i64>,
    pub verdict: Option<String>,
    pub data: Option<String>,
    pub last_accounting: bool,
    pub disabled: bool,
    pub comment: Option<String>,
}

fn num(v: Option<i64>, column: &str) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| StoreError::OutOfRange(format!("policy_accounting.{column} is {v}")))
    })
    .transpose()
}

impl AccountingRow {
    /// The model's definition.
    pub(crate) fn into_def(self) -> Result<AccountingDef, StoreError> {
        Ok(AccountingDef {
            name: self.name,
            track: self.track,
            period: self.period,
            time_zone: self.time_zone,
            message_count_limit: num(self.message_count_limit, "message_count_limit")?,
            recipient_count_limit: num(self.recipient_count_limit, "recipient_count_limit")?,
            size_limit: num(self.size_limit, "size_limit")?,
            verdict: self.verdict,
            data: self.data,
            last_accounting: self.last_accounting,
            disabled: self.disabled,
            comment: self.comment,
        })
    }
}

/// The limits of `a` as BIGINT column values: message count, recipient count, size.
pub(crate) fn limits(a: &AccountingDef, policy: &str) -> Result<[Option<i64>; 3], StoreError> {
    let v = |x: Option<u64>, what: &str| {
        x.map(|x| {
            super::rows::to_i64(x, || {
                format!("{what} of accounting {:?} of policy {policy:?}", a.name)
            })
        })
        .transpose()
    };
    Ok([
        v(a.message_count_limit, "message_count_limit")?,
        v(a.recipient_count_limit, "recipient_count_limit")?,
        v(a.size_limit, "size_limit")?,
    ])
}
