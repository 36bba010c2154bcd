//! Greylisting as operators define it (Policyd's `greylisting` and `greylisting_whitelist`
//! tables), before validation.
//!
//! Every setting of a policy's [`GreylistingDef`] is optional: as in Policyd, the settings of
//! all matched policies are merged column by column in priority order and a later (higher
//! priority number) policy's value overrides an earlier one ("unset = inherit"); what no
//! matched policy sets takes the default named on the field.

use serde::{Deserialize, Serialize};

/// A policy's greylisting settings (`[policy.greylisting]`; Policyd's `greylisting` row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreylistingDef {
    /// Greylist the requests of this policy (`UseGreylisting`). Unset: inherit; a policy
    /// with a `[greylisting]` table where nothing sets it greylists (as Policyd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Seconds a new triplet is deferred (`GreylistPeriod`; default 240).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<u64>,
    /// How the client address is masked for the triplet (`Track`): `SenderIP:/N`, N the
    /// IPv4 prefix length (default `SenderIP:/24`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<String>,
    /// The IPv6 prefix length of the triplet's network (beyond Policyd; default 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_prefix: Option<u8>,
    /// Seconds a triplet that passed is kept since its last use (`GreylistAuthValidity`;
    /// default 604 800 = 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_validity: Option<u64>,
    /// Seconds a triplet that never passed is kept since its last attempt
    /// (`GreylistUnAuthValidity`; default 86 400 = 1 day).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unauth_validity: Option<u64>,
    /// Auto-whitelist networks whose triplets pass (`UseAutoWhitelist`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_whitelist: Option<bool>,
    /// Seconds of the auto-whitelist's look-back and of an entry's life since it was last
    /// used (`AutoWhitelistPeriod`; default 604 800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_whitelist_period: Option<u64>,
    /// Triplets a network needs within the period before it can be auto-whitelisted
    /// (`AutoWhitelistCount`; default 100; 0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_whitelist_count: Option<u64>,
    /// Share (percent) of those triplets that must have passed (`AutoWhitelistPercentage`;
    /// default 90; 0: at least `auto_whitelist_count` passed triplets instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_whitelist_percentage: Option<u64>,
    /// Auto-blacklist networks whose triplets never pass (`UseAutoBlacklist`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_blacklist: Option<bool>,
    /// Seconds of the auto-blacklist's look-back and of an entry's life
    /// (`AutoBlacklistPeriod`; default 604 800).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_blacklist_period: Option<u64>,
    /// Triplets a network needs within the period before it can be auto-blacklisted
    /// (`AutoBlacklistCount`; default 100; 0: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_blacklist_count: Option<u64>,
    /// Share (percent) of those triplets that must never have passed
    /// (`AutoBlacklistPercentage`; default 90; 0: at least `auto_blacklist_count` failed
    /// triplets instead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_blacklist_percentage: Option<u64>,
    /// Training mode: record triplets and auto-whitelist, but never defer or blacklist
    /// (Policyd's global `training_mode`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<bool>,
    /// The text of a deferral (Policyd's `defer_message`; default
    /// `Greylisting in effect, please come back later`). Postfix gets `451 4.7.1 <text>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defer_message: Option<String>,
    /// The text of a rejection of a blacklisted network (Policyd's `blacklist_message`;
    /// default `Greylisting in effect, sending server blacklisted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blacklist_message: Option<String>,
    /// A disabled row is ignored.
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Do not greylist a triplet whose sender's SPF check (CheckSPF's, `docs/checkspf.md`)
    /// passes (beyond Policyd, from its wishlist; default off). The check is made for
    /// greylisting even where CheckSPF itself is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_spf_pass: Option<bool>,
}

/// One static greylisting whitelist entry (`[[greylisting_whitelist]]`; Policyd's
/// `greylisting_whitelist`): requests it matches are never greylisted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GreylistWhitelistDef {
    /// `SenderIP:<ip or CIDR>` (Policyd's only form), `SenderDomain:<domain>` (the sender's
    /// domain, exactly, or with a leading `.` any subdomain too) or `ReverseDNS:<pattern>`
    /// (the client's reverse DNS name: `*` any characters, a leading `.` a suffix match).
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
