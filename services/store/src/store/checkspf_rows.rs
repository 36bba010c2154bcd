//! Rows of the CheckSPF table (`migrations/*/0007_checkspf.sql`): one `policy_checkspf` row
//! per policy that has CheckSPF settings; and greylisting's `skip_spf_pass` column, read and
//! written apart from the rest of the greylisting row.

use sluice_engine::CheckSpfDef;

pub(crate) const SELECT_CHECKSPF: &str = "SELECT policy_id, enabled, reject_failed, \
     add_header, disabled, comment FROM policy_checkspf ORDER BY id";

pub(crate) const DELETE_ALL: [&str; 1] = ["DELETE FROM policy_checkspf"];

pub(crate) const INSERT_CHECKSPF: &str = "INSERT INTO policy_checkspf (policy_id, enabled, \
     reject_failed, add_header, disabled, comment) VALUES ($1, $2, $3, $4, $5, $6)";

/// Greylisting rows that set `skip_spf_pass`.
pub(crate) const SELECT_SKIP_SPF_PASS: &str = "SELECT policy_id, skip_spf_pass FROM \
     policy_greylisting WHERE skip_spf_pass IS NOT NULL ORDER BY id";

/// Sets `skip_spf_pass` on the greylisting row of policy `$2` (inserted just before).
pub(crate) const UPDATE_SKIP_SPF_PASS: &str =
    "UPDATE policy_greylisting SET skip_spf_pass = $1 WHERE policy_id = $2";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CheckSpfRow {
    pub policy_id: i64,
    pub enabled: Option<bool>,
    pub reject_failed: Option<bool>,
    pub add_header: Option<bool>,
    pub disabled: bool,
    pub comment: Option<String>,
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SkipSpfPassRow {
    pub policy_id: i64,
    pub skip_spf_pass: Option<bool>,
}

impl From<CheckSpfRow> for CheckSpfDef {
    fn from(r: CheckSpfRow) -> Self {
        CheckSpfDef {
            enabled: r.enabled,
            reject_failed: r.reject_failed,
            add_header: r.add_header,
            disabled: r.disabled,
            comment: r.comment,
        }
    }
}
