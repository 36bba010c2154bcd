//! CheckSPF as operators define it (Policyd's `checkspf` table), before merging.
//!
//! Every setting is optional: as in Policyd, the rows of all matched policies are merged
//! column by column in priority order, and a later (higher priority number) policy's value
//! overrides an earlier one ("unset = inherit").

use serde::{Deserialize, Serialize};

/// A policy's CheckSPF settings (`[policy.checkspf]`; Policyd's `checkspf` row).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckSpfDef {
    /// Check the sender's SPF record (`UseSPF`). Unset: inherit; when no matched policy
    /// sets it, CheckSPF does not run (Policyd acts only on `UseSPF=1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Refuse a `fail` or `permerror` (`REJECT Failed SPF check; ...`) and defer a
    /// `temperror` (`DEFER Failed SPF check; ...`) (`RejectFailedSPF`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reject_failed: Option<bool>,
    /// Prepend a `Received-SPF:` header (RFC 7208 §9.1) to messages not refused
    /// (`AddSPFHeader`; default off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_header: Option<bool>,
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
