//! The policy model as operators define it (Policyd v2's shape), before validation.
//!
//! These are plain data: the store reads and writes them, the TOML policy file and the
//! Policyd importer produce them, and [`crate::compile`] validates them into a
//! [`crate::PolicySet`] the engine can run. Verdicts, tracks and member specs are kept as the
//! operator wrote them (strings) so that errors can point at the exact field.

use serde::{Deserialize, Serialize};

/// Everything an operator defines: groups and policies.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicySetDef {
    /// Named groups usable as `%name` in member specs.
    #[serde(default, rename = "group", skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupDef>,
    /// Policies, in any order (priority decides evaluation order).
    #[serde(default, rename = "policy", skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<PolicyDef>,
    /// Requests never greylisted (Policyd's `greylisting_whitelist`; global, as there).
    #[serde(
        default,
        rename = "greylisting_whitelist",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub greylisting_whitelist: Vec<crate::greylisting::def::GreylistWhitelistDef>,
    /// HELO names CheckHelo rejects (Policyd's `checkhelo_blacklist`; global, as there).
    #[serde(
        default,
        rename = "checkhelo_blacklist",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub checkhelo_blacklist: Vec<crate::checkhelo::def::HeloBlacklistDef>,
    /// Clients CheckHelo never checks (Policyd's `checkhelo_whitelist`; global, as there).
    #[serde(
        default,
        rename = "checkhelo_whitelist",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub checkhelo_whitelist: Vec<crate::checkhelo::def::HeloWhitelistDef>,
}

/// A policy group (`policy_groups` + `policy_group_members`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDef {
    /// Unique name, referenced as `%name`.
    pub name: String,
    /// A disabled group matches nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Members: any source/destination spec, including `!x` and `%othergroup`. OR-ed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<GroupMemberDef>,
}

/// One member of a group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMemberDef {
    /// The spec (`10.0.0.0/8`, `@example.com`, `%other`, `!x`, ...).
    pub member: String,
    /// A disabled member is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A policy (`policies`): who it applies to (members) and what it does (modules).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyDef {
    /// Unique name.
    pub name: String,
    /// Lower numbers are evaluated first (Policyd: 0 fall-through, 1–50 system, 50–100 custom).
    #[serde(default)]
    pub priority: i32,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A disabled policy never matches.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Monitor mode: evaluated and counted, the verdict logged, but Postfix gets DUNNO.
    #[serde(default, skip_serializing_if = "is_false")]
    pub monitor: bool,
    /// Who the policy applies to: a request matches when any enabled member matches.
    #[serde(default, rename = "member", skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberDef>,
    /// Access control rules (the first enabled one with a verdict decides).
    #[serde(
        default,
        rename = "access_control",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub access_control: Vec<AccessControlDef>,
    /// Quotas (rate limits).
    #[serde(default, rename = "quota", skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaDef>,
    /// Greylisting settings (merged over the matched policies, see
    /// [`crate::greylisting::def::GreylistingDef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greylisting: Option<crate::greylisting::def::GreylistingDef>,
    /// Per-message caps (largest message, most recipients; see [`crate::caps`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_caps: Option<crate::caps::def::MessageCapsDef>,
    /// CheckSPF settings (merged over the matched policies, see
    /// [`crate::checkspf::def::CheckSpfDef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkspf: Option<crate::checkspf::def::CheckSpfDef>,
    /// CheckHelo settings (merged over the matched policies, see
    /// [`crate::checkhelo::def::CheckHeloDef`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkhelo: Option<crate::checkhelo::def::CheckHeloDef>,
    /// Accounting rows (per-period counters, see
    /// [`crate::accounting::def::AccountingDef`]).
    #[serde(default, rename = "accounting", skip_serializing_if = "Vec::is_empty")]
    pub accounting: Vec<crate::accounting::def::AccountingDef>,
}

/// A policy member (`policy_members`): source and destination spec lists.
///
/// Each is a comma-separated list whose items must ALL match (AND, as in Policyd). `None`
/// or `any` matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDef {
    /// Matched against the client (IP, CIDR, hostname, SASL user) or sender address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Matched against the recipient address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// A disabled member is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// An access control rule (`access_control`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessControlDef {
    /// Name (unique within the policy).
    pub name: String,
    /// `OK`, `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER`, `REDIRECT` or `PASS`.
    pub verdict: String,
    /// Text for the verdict (`5xx text` / `4xx text` set the SMTP code), or the
    /// transport/address for FILTER/REDIRECT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// A disabled rule is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A quota (`quotas`): what to count, over which period, and what to answer when full.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaDef {
    /// Name (unique within the policy; part of the counter identity).
    pub name: String,
    /// What one counter tracks: `SenderIP:/24`, `Sender:user@domain`, `Sender:@domain`,
    /// `Sender:user@`, `Recipient:...`, `SASLUsername` or `Policy`.
    pub track: String,
    /// Window length in seconds.
    pub period: u64,
    /// `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER`, `REDIRECT`, or `DELAY` (hold the
    /// message and release it when the quota has room: docs/delay.md).
    pub verdict: String,
    /// Text for the verdict (`4xx`/`5xx` codes honoured), or FILTER/REDIRECT target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// Stop evaluating further quotas after this one.
    #[serde(default, skip_serializing_if = "is_false")]
    pub last_quota: bool,
    /// A disabled quota is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// DELAY quotas only: how held messages leave, `room` (default: as soon as the quota
    /// has room) or `paced` (evenly spread over the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// DELAY quotas only: most messages one track value may have held (default 1000);
    /// beyond it the quota answers DEFER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_held: Option<u64>,
    /// DELAY quotas only: longest a message stays held, in seconds (default a day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold_age: Option<u64>,
    /// DELAY quotas only: what happens to a message held longer, `return` (to its sender,
    /// the default) or `release`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_expiry: Option<String>,
    /// The limits; a quota without an enabled limit does nothing (and `policy check` says so).
    #[serde(default, rename = "limit", skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitDef>,
}

/// One limit of a quota (`quotas_limits`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitDef {
    /// `MessageCount`, `RecipientCount` or `MessageCumulativeSize`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Most messages / recipients / bytes admitted within any window of `period`.
    pub limit: u64,
    /// A disabled limit is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
