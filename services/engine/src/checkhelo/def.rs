//! CheckHelo as operators define it (Policyd's `checkhelo`, `checkhelo_blacklist` and
//! `checkhelo_whitelist` tables), before validation.
//!
//! Every setting of a policy's [`CheckHeloDef`] is optional: as in Policyd, the settings of
//! all matched policies are merged column by column in priority order and a later (higher
//! priority number) policy's value overrides an earlier one ("unset = inherit"); what no
//! matched policy sets takes the default named on the field.

use serde::{Deserialize, Serialize};

/// A policy's CheckHelo settings (`[policy.checkhelo]`; Policyd's `checkhelo` row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckHeloDef {
    /// Reject clients that used a blacklisted HELO (`UseBlacklist`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_blacklist: Option<bool>,
    /// Seconds a client stays rejected after using a blacklisted HELO (`BlacklistPeriod`;
    /// default 0: only the current HELO counts). A real window (Policyd's bug fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklist_period: Option<u64>,
    /// HELO randomisation prevention (`UseHRP`; default off): reject a client that used more
    /// than `hrp_limit` distinct HELOs within `hrp_period`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_hrp: Option<bool>,
    /// The HRP window, seconds (`HRPPeriod`; required with `use_hrp`). A real rolling
    /// window (Policyd's bug fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrp_period: Option<u64>,
    /// Distinct HELOs a client may use within `hrp_period` (`HRPLimit`; required with
    /// `use_hrp`); one more is rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hrp_limit: Option<u64>,
    /// Reject a HELO that is neither a FQDN nor an address literal (`RejectInvalid`;
    /// default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_invalid: Option<bool>,
    /// With `reject_invalid`: reject a bare IP address as HELO (`RejectIP`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_ip: Option<bool>,
    /// With `reject_invalid`: reject a FQDN without A, AAAA or MX records
    /// (`RejectUnresolvable`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_unresolvable: Option<bool>,
    /// What a failed DNS lookup (SERVFAIL, timeout) gives with `reject_unresolvable`:
    /// `defer` (default: `DEFER Invalid HELO/EHLO; Failure while trying to resolve
    /// '<helo>'`, Postfix retries later) or `pass` (the check is skipped). Beyond Policyd,
    /// which rejected on SERVFAIL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_failure: Option<String>,
    /// A disabled row is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// One HELO blacklist entry (`[[checkhelo_blacklist]]`; Policyd's `checkhelo_blacklist`):
/// a HELO name, exactly (case-insensitively), or a pattern with `*` (any characters), e.g.
/// `*.localdomain` (beyond Policyd, which compared exactly).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeloBlacklistDef {
    /// The HELO name or pattern.
    pub helo: String,
    /// A disabled entry is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

impl HeloBlacklistDef {
    /// Policyd's seed entries (its schema inserts them): `127.0.0.1`, `[127.0.0.1]`,
    /// `localhost`, `localhost.localdomain`.
    pub fn policyd_seed() -> Vec<HeloBlacklistDef> {
        [
            "127.0.0.1",
            "[127.0.0.1]",
            "localhost",
            "localhost.localdomain",
        ]
        .into_iter()
        .map(|h| HeloBlacklistDef {
            helo: h.into(),
            disabled: false,
            comment: Some("Policyd's seed entry".into()),
        })
        .collect()
    }
}

/// One CheckHelo whitelist entry (`[[checkhelo_whitelist]]`; Policyd's
/// `checkhelo_whitelist`): clients it matches skip every HELO check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeloWhitelistDef {
    /// `SenderIP:<ip or CIDR>` (Policyd's only form).
    pub source: String,
    /// A disabled entry is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
