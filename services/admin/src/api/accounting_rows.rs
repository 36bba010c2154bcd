//! Accounting as an API resource: a policy's accounting rows,
//! `/api/policies/{policy}/accounting` and `.../accounting/{index}` (several per policy,
//! addressed by position; [`super::module_slots::PolicyRows`]). Errors name the field as
//! the engine does (`accounting[0].period`).

use serde::{Deserialize, Serialize};
use sluice_engine::model::PolicyDef;
use sluice_engine::AccountingDef;
use utoipa::ToSchema;

use super::module_slots::{ModuleBody, PolicyRows, RowsResource};

/// One accounting row: what is counted per key, per calendar period, and the limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountingRow {
    /// Name (unique within the policy).
    pub name: String,
    /// What one counter tracks, as in quotas (`Sender:user@domain`, `SASLUsername`, ...).
    pub track: String,
    /// `day`, `week` (ISO 8601) or `month`.
    pub period: String,
    /// IANA time zone the periods are counted in (default `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
    /// Most messages per period.
    #[serde(default)]
    pub message_count_limit: Option<u64>,
    /// Most recipients per period.
    #[serde(default)]
    pub recipient_count_limit: Option<u64>,
    /// Most bytes per period.
    #[serde(default)]
    pub size_limit: Option<u64>,
    /// `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER` or `REDIRECT`; none: count only.
    #[serde(default)]
    pub verdict: Option<String>,
    /// Text for the verdict, or the FILTER/REDIRECT target.
    #[serde(default)]
    pub data: Option<String>,
    /// Stop evaluating further accounting rows after this one.
    #[serde(default)]
    pub last_accounting: bool,
    /// A disabled row is ignored (new rows are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for AccountingRow {
    type Def = AccountingDef;

    fn from_def(d: &AccountingDef) -> Self {
        let d = d.clone();
        AccountingRow {
            name: d.name,
            track: d.track,
            period: d.period,
            time_zone: d.time_zone,
            message_count_limit: d.message_count_limit,
            recipient_count_limit: d.recipient_count_limit,
            size_limit: d.size_limit,
            verdict: d.verdict,
            data: d.data,
            last_accounting: d.last_accounting,
            disabled: d.disabled,
            comment: d.comment,
        }
    }

    fn into_def(self) -> AccountingDef {
        AccountingDef {
            name: self.name,
            track: self.track,
            period: self.period,
            time_zone: self.time_zone,
            message_count_limit: self.message_count_limit,
            recipient_count_limit: self.recipient_count_limit,
            size_limit: self.size_limit,
            verdict: self.verdict,
            data: self.data,
            last_accounting: self.last_accounting,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut AccountingDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// Where a policy's accounting rows live.
pub struct AccountingRowsSlot;

impl PolicyRows for AccountingRowsSlot {
    type Body = AccountingRow;
    const KIND: &'static str = "accounting row";
    const COLLECTION: &'static str = "/api/policies/{policy}/accounting";
    const ITEM: &'static str = "/api/policies/{policy}/accounting/{index}";

    fn rows(p: &PolicyDef) -> &Vec<AccountingDef> {
        &p.accounting
    }

    fn rows_mut(p: &mut PolicyDef) -> &mut Vec<AccountingDef> {
        &mut p.accounting
    }
}

/// A policy's accounting rows as a resource.
pub type PolicyAccounting = RowsResource<AccountingRowsSlot>;
