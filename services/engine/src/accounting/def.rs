//! Accounting as operators define it (Policyd's `accounting` table), before validation.

use serde::{Deserialize, Serialize};

/// One accounting row of a policy: what is counted per key (track), per calendar period,
/// the limits within a period and what to answer when one is reached.
///
/// Every limit is optional: a row without limits (or without a verdict) only counts, for
/// reports (`sluice accounting report`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountingDef {
    /// Name (unique within the policy; part of the counter identity and of the reports).
    pub name: String,
    /// What one counter tracks, as in quotas: `SenderIP:/24`, `Sender:user@domain`,
    /// `Sender:@domain`, `Sender:user@`, `Recipient:...`, `SASLUsername` or `Policy`.
    pub track: String,
    /// `day`, `week` (ISO 8601, Monday to Sunday) or `month`.
    pub period: String,
    /// The time zone periods are counted in (IANA name, from the bundled tz database).
    /// Default `UTC`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Most messages per period (each message counted once, whatever its recipients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_count_limit: Option<u64>,
    /// Most recipients per period (one per RCPT: Policyd's `MessageCountLimit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient_count_limit: Option<u64>,
    /// Most bytes per period (message sizes, charged at END-OF-MESSAGE; a declared SIZE
    /// that would already exceed it is refused at RCPT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_limit: Option<u64>,
    /// `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER` or `REDIRECT`; none: count only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<String>,
    /// Text for the verdict (`4xx`/`5xx` codes honoured), or the FILTER/REDIRECT target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Stop evaluating further accounting rows after this one (Policyd's
    /// `LastAccounting`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub last_accounting: bool,
    /// A disabled row is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
