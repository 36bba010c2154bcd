//! Rows of the greylisting tables (`migrations/*/0004_greylisting.sql`): one
//! `policy_greylisting` row per policy that has greylisting settings, and the global
//! `greylisting_whitelist`.

use sluice_engine::{GreylistWhitelistDef, GreylistingDef};

use crate::StoreError;

pub(crate) const SELECT_GREYLISTING: &str = "SELECT policy_id, enabled, period, track, \
     ipv6_prefix, auth_validity, unauth_validity, auto_whitelist, auto_whitelist_period, \
     auto_whitelist_count, auto_whitelist_percentage, auto_blacklist, auto_blacklist_period, \
     auto_blacklist_count, auto_blacklist_percentage, training, defer_message, \
     blacklist_message, disabled, comment FROM policy_greylisting ORDER BY id";
pub(crate) const SELECT_WHITELIST: &str =
    "SELECT source, disabled, comment FROM greylisting_whitelist ORDER BY id";

pub(crate) const DELETE_ALL: [&str; 2] = [
    "DELETE FROM policy_greylisting",
    "DELETE FROM greylisting_whitelist",
];

pub(crate) const INSERT_GREYLISTING: &str = "INSERT INTO policy_greylisting (policy_id, \
     enabled, period, track, ipv6_prefix, auth_validity, unauth_validity, auto_whitelist, \
     auto_whitelist_period, auto_whitelist_count, auto_whitelist_percentage, auto_blacklist, \
     auto_blacklist_period, auto_blacklist_count, auto_blacklist_percentage, training, \
     defer_message, blacklist_message, disabled, comment) VALUES ($1, $2, $3, $4, $5, $6, \
     $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)";
pub(crate) const INSERT_WHITELIST: &str =
    "INSERT INTO greylisting_whitelist (source, disabled, comment) VALUES ($1, $2, $3)";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct GreylistingRow {
    pub policy_id: i64,
    pub enabled: Option<bool>,
    pub period: Option<i64>,
    pub track: Option<String>,
    pub ipv6_prefix: Option<i16>,
    pub auth_validity: Option<i64>,
    pub unauth_validity: Option<i64>,
    pub auto_whitelist: Option<bool>,
    pub auto_whitelist_period: Option<i64>,
    pub auto_whitelist_count: Option<i64>,
    pub auto_whitelist_percentage: Option<i64>,
    pub auto_blacklist: Option<bool>,
    pub auto_blacklist_period: Option<i64>,
    pub auto_blacklist_count: Option<i64>,
    pub auto_blacklist_percentage: Option<i64>,
    pub training: Option<bool>,
    pub defer_message: Option<String>,
    pub blacklist_message: Option<String>,
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
            .map_err(|_| StoreError::OutOfRange(format!("policy_greylisting.{column} is {v}")))
    })
    .transpose()
}

impl GreylistingRow {
    /// The model's definition.
    pub(crate) fn into_def(self) -> Result<GreylistingDef, StoreError> {
        Ok(GreylistingDef {
            enabled: self.enabled,
            period: num(self.period, "period")?,
            track: self.track,
            ipv6_prefix: self
                .ipv6_prefix
                .map(|p| {
                    u8::try_from(p).map_err(|_| {
                        StoreError::OutOfRange(format!("policy_greylisting.ipv6_prefix is {p}"))
                    })
                })
                .transpose()?,
            auth_validity: num(self.auth_validity, "auth_validity")?,
            unauth_validity: num(self.unauth_validity, "unauth_validity")?,
            auto_whitelist: self.auto_whitelist,
            auto_whitelist_period: num(self.auto_whitelist_period, "auto_whitelist_period")?,
            auto_whitelist_count: num(self.auto_whitelist_count, "auto_whitelist_count")?,
            auto_whitelist_percentage: num(
                self.auto_whitelist_percentage,
                "auto_whitelist_percentage",
            )?,
            auto_blacklist: self.auto_blacklist,
            auto_blacklist_period: num(self.auto_blacklist_period, "auto_blacklist_period")?,
            auto_blacklist_count: num(self.auto_blacklist_count, "auto_blacklist_count")?,
            auto_blacklist_percentage: num(
                self.auto_blacklist_percentage,
                "auto_blacklist_percentage",
            )?,
            training: self.training,
            defer_message: self.defer_message,
            blacklist_message: self.blacklist_message,
            disabled: self.disabled,
            comment: self.comment,
            // Its own column, read apart (`checkspf_rows.rs`).
            skip_spf_pass: None,
        })
    }
}

impl From<WhitelistRow> for GreylistWhitelistDef {
    fn from(r: WhitelistRow) -> Self {
        GreylistWhitelistDef {
            source: r.source,
            disabled: r.disabled,
            comment: r.comment,
        }
    }
}

/// The numbers of a definition as column values (BIGINT), in [`INSERT_GREYLISTING`]'s
/// order of the numeric columns: period, auth_validity, unauth_validity,
/// auto_whitelist_period, auto_whitelist_count, auto_whitelist_percentage,
/// auto_blacklist_period, auto_blacklist_count, auto_blacklist_percentage.
pub(crate) fn numbers(d: &GreylistingDef, policy: &str) -> Result<[Option<i64>; 9], StoreError> {
    let v = |x: Option<u64>, what: &str| {
        x.map(|x| super::rows::to_i64(x, || format!("greylisting {what} of policy {policy:?}")))
            .transpose()
    };
    Ok([
        v(d.period, "period")?,
        v(d.auth_validity, "auth_validity")?,
        v(d.unauth_validity, "unauth_validity")?,
        v(d.auto_whitelist_period, "auto_whitelist_period")?,
        v(d.auto_whitelist_count, "auto_whitelist_count")?,
        v(d.auto_whitelist_percentage, "auto_whitelist_percentage")?,
        v(d.auto_blacklist_period, "auto_blacklist_period")?,
        v(d.auto_blacklist_count, "auto_blacklist_count")?,
        v(d.auto_blacklist_percentage, "auto_blacklist_percentage")?,
    ])
}
