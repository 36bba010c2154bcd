//! Rows of the CheckHelo tables (`migrations/*/0006_checkhelo.sql`): one `policy_checkhelo`
//! row per policy that has CheckHelo settings, and the global `checkhelo_blacklist` and
//! `checkhelo_whitelist`.

use sluice_engine::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};

use crate::StoreError;

pub(crate) const SELECT_CHECKHELO: &str = "SELECT policy_id, use_blacklist, blacklist_period, \
     use_hrp, hrp_period, hrp_limit, reject_invalid, reject_ip, reject_unresolvable, \
     dns_failure, disabled, comment FROM policy_checkhelo ORDER BY id";
pub(crate) const SELECT_BLACKLIST: &str =
    "SELECT helo, disabled, comment FROM checkhelo_blacklist ORDER BY id";
pub(crate) const SELECT_WHITELIST: &str =
    "SELECT source, disabled, comment FROM checkhelo_whitelist ORDER BY id";

pub(crate) const DELETE_ALL: [&str; 3] = [
    "DELETE FROM policy_checkhelo",
    "DELETE FROM checkhelo_blacklist",
    "DELETE FROM checkhelo_whitelist",
];

pub(crate) const INSERT_CHECKHELO: &str = "INSERT INTO policy_checkhelo (policy_id, \
     use_blacklist, blacklist_period, use_hrp, hrp_period, hrp_limit, reject_invalid, \
     reject_ip, reject_unresolvable, dns_failure, disabled, comment) VALUES ($1, $2, $3, $4, \
     $5, $6, $7, $8, $9, $10, $11, $12)";
pub(crate) const INSERT_BLACKLIST: &str =
    "INSERT INTO checkhelo_blacklist (helo, disabled, comment) VALUES ($1, $2, $3)";
pub(crate) const INSERT_WHITELIST: &str =
    "INSERT INTO checkhelo_whitelist (source, disabled, comment) VALUES ($1, $2, $3)";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CheckHeloRow {
    pub policy_id: i64,
    pub use_blacklist: Option<bool>,
    pub blacklist_period: Option<i64>,
    pub use_hrp: Option<bool>,
    pub hrp_period: Option<i64>,
    pub hrp_limit: Option<i64>,
    pub reject_invalid: Option<bool>,
    pub reject_ip: Option<bool>,
    pub reject_unresolvable: Option<bool>,
    pub dns_failure: Option<String>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct BlacklistRow {
    pub helo: String,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct WhitelistRow {
    pub source: String,
    pub disabled: bool,
    pub comment: Option<String>,
}

/// A stored number as the model's, or an error naming the column.
fn num(v: Option<i64>, column: &str) -> Result<Option<u64>, StoreError> {
    v.map(|v| {
        u64::try_from(v)
            .map_err(|_| StoreError::OutOfRange(format!("policy_checkhelo.{column} is {v}")))
    })
    .transpose()
}

impl CheckHeloRow {
    /// The model's definition.
    pub(crate) fn into_def(self) -> Result<CheckHeloDef, StoreError> {
        Ok(CheckHeloDef {
            use_blacklist: self.use_blacklist,
            blacklist_period: num(self.blacklist_period, "blacklist_period")?,
            use_hrp: self.use_hrp,
            hrp_period: num(self.hrp_period, "hrp_period")?,
            hrp_limit: num(self.hrp_limit, "hrp_limit")?,
            reject_invalid: self.reject_invalid,
            reject_ip: self.reject_ip,
            reject_unresolvable: self.reject_unresolvable,
            dns_failure: self.dns_failure,
            disabled: self.disabled,
            comment: self.comment,
        })
    }
}

impl From<BlacklistRow> for HeloBlacklistDef {
    fn from(r: BlacklistRow) -> Self {
        HeloBlacklistDef {
            helo: r.helo,
            disabled: r.disabled,
            comment: r.comment,
        }
    }
}

impl From<WhitelistRow> for HeloWhitelistDef {
    fn from(r: WhitelistRow) -> Self {
        HeloWhitelistDef {
            source: r.source,
            disabled: r.disabled,
            comment: r.comment,
        }
    }
}

/// The numbers of a definition as column values (BIGINT): blacklist_period, hrp_period,
/// hrp_limit.
pub(crate) fn numbers(d: &CheckHeloDef, policy: &str) -> Result<[Option<i64>; 3], StoreError> {
    let v = |x: Option<u64>, what: &str| {
        x.map(|x| super::rows::to_i64(x, || format!("checkhelo {what} of policy {policy:?}")))
            .transpose()
    };
    Ok([
        v(d.blacklist_period, "blacklist_period")?,
        v(d.hrp_period, "hrp_period")?,
        v(d.hrp_limit, "hrp_limit")?,
    ])
}
