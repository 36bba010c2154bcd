//! CheckHelo as API resources ([`super::module_slots`]):
//!
//! - a policy's CheckHelo settings, `/api/policies/{policy}/checkhelo` (at most one per
//!   policy, the item at `.../checkhelo/0`); every setting optional (unset: inherited);
//!   errors name the field as the policy file does (`checkhelo.hrp_limit`);
//! - the HELO blacklist, `/api/checkhelo-blacklist/{index}` (names or `*` patterns), and
//!   the CheckHelo whitelist, `/api/checkhelo-whitelist/{index}` (`SenderIP:<ip or CIDR>`):
//!   set-wide, so like groups they are not for domain admins.

use serde::{Deserialize, Serialize};
use sluice_engine::checkhelo::settings::{compile_blacklist, compile_row, compile_whitelist};
use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_engine::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
use utoipa::ToSchema;

use super::module_slots::{ListResource, ModuleBody, PolicySlot, SetList, SlotResource};
use crate::error::ApiError;

/// A policy's CheckHelo settings (Policyd's `checkhelo` row). Unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckHelo {
    /// Reject clients that used a blacklisted HELO (default off).
    #[serde(default)]
    pub use_blacklist: Option<bool>,
    /// Seconds a client stays rejected after a blacklisted HELO (default 0).
    #[serde(default)]
    pub blacklist_period: Option<u64>,
    /// HELO randomisation prevention (default off).
    #[serde(default)]
    pub use_hrp: Option<bool>,
    /// The HRP window, seconds (required with `use_hrp`).
    #[serde(default)]
    pub hrp_period: Option<u64>,
    /// Distinct HELOs a client may use within `hrp_period` (required with `use_hrp`).
    #[serde(default)]
    pub hrp_limit: Option<u64>,
    /// Reject a HELO that is neither a FQDN nor an address literal (default off).
    #[serde(default)]
    pub reject_invalid: Option<bool>,
    /// With `reject_invalid`: reject a bare IP address as HELO (default off).
    #[serde(default)]
    pub reject_ip: Option<bool>,
    /// With `reject_invalid`: reject a FQDN without A, AAAA or MX records (default off).
    #[serde(default)]
    pub reject_unresolvable: Option<bool>,
    /// A failed DNS lookup with `reject_unresolvable`: `defer` (default) or `pass`.
    #[serde(default)]
    pub dns_failure: Option<String>,
    /// Disabled settings are ignored (new ones are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for CheckHelo {
    type Def = CheckHeloDef;

    fn from_def(d: &CheckHeloDef) -> Self {
        let d = d.clone();
        CheckHelo {
            use_blacklist: d.use_blacklist,
            blacklist_period: d.blacklist_period,
            use_hrp: d.use_hrp,
            hrp_period: d.hrp_period,
            hrp_limit: d.hrp_limit,
            reject_invalid: d.reject_invalid,
            reject_ip: d.reject_ip,
            reject_unresolvable: d.reject_unresolvable,
            dns_failure: d.dns_failure,
            disabled: d.disabled,
            comment: d.comment,
        }
    }

    fn into_def(self) -> CheckHeloDef {
        CheckHeloDef {
            use_blacklist: self.use_blacklist,
            blacklist_period: self.blacklist_period,
            use_hrp: self.use_hrp,
            hrp_period: self.hrp_period,
            hrp_limit: self.hrp_limit,
            reject_invalid: self.reject_invalid,
            reject_ip: self.reject_ip,
            reject_unresolvable: self.reject_unresolvable,
            dns_failure: self.dns_failure,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut CheckHeloDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// Where a policy's CheckHelo settings live.
pub struct CheckHeloSlot;

impl PolicySlot for CheckHeloSlot {
    type Body = CheckHelo;
    const KIND: &'static str = "policy's CheckHelo settings";
    const COLLECTION: &'static str = "/api/policies/{policy}/checkhelo";
    const ITEM: &'static str = "/api/policies/{policy}/checkhelo/{index}";

    fn slot(p: &PolicyDef) -> &Option<CheckHeloDef> {
        &p.checkhelo
    }

    fn slot_mut(p: &mut PolicyDef) -> &mut Option<CheckHeloDef> {
        &mut p.checkhelo
    }

    /// The row's ranges, checked when disabled too (the compiler skips disabled rows, and
    /// the stores cannot hold every `u64`): enabling it later must not fail.
    fn check(settings: &CheckHeloDef) -> Result<(), ApiError> {
        compile_row(settings).map(|_| ()).map_err(|errs| {
            let (field, msg) = errs
                .into_iter()
                .next()
                .unwrap_or(("checkhelo", "invalid CheckHelo settings".into()));
            ApiError::invalid(field, msg)
        })
    }
}

/// A policy's CheckHelo settings as a resource.
pub type PolicyCheckHelo = SlotResource<CheckHeloSlot>;

/// One HELO blacklist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeloBlacklistEntry {
    /// The HELO name (compared case-insensitively) or a pattern with `*`
    /// (`*.localdomain`).
    pub helo: String,
    /// A disabled entry is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for HeloBlacklistEntry {
    type Def = HeloBlacklistDef;

    fn from_def(d: &HeloBlacklistDef) -> Self {
        HeloBlacklistEntry {
            helo: d.helo.clone(),
            disabled: d.disabled,
            comment: d.comment.clone(),
        }
    }

    fn into_def(self) -> HeloBlacklistDef {
        HeloBlacklistDef {
            helo: self.helo,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut HeloBlacklistDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// The HELO blacklist.
pub struct HeloBlacklistList;

impl SetList for HeloBlacklistList {
    type Body = HeloBlacklistEntry;
    const KIND: &'static str = "CheckHelo blacklist entry";
    const COLLECTION: &'static str = "/api/checkhelo-blacklist";
    const ITEM: &'static str = "/api/checkhelo-blacklist/{index}";
    const KEY_FIELD: &'static str = "helo";

    fn key_of(entry: &HeloBlacklistDef) -> &str {
        &entry.helo
    }

    fn entries(def: &PolicySetDef) -> &Vec<HeloBlacklistDef> {
        &def.checkhelo_blacklist
    }

    fn entries_mut(def: &mut PolicySetDef) -> &mut Vec<HeloBlacklistDef> {
        &mut def.checkhelo_blacklist
    }

    fn check(entry: &HeloBlacklistDef) -> Result<(), ApiError> {
        compile_blacklist(std::slice::from_ref(entry))
            .map(|_| ())
            .map_err(|errs| first_error("helo", errs))
    }
}

/// The HELO blacklist as a resource.
pub type HeloBlacklist = ListResource<HeloBlacklistList>;

/// One CheckHelo whitelist entry: clients it matches skip every HELO check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeloWhitelistEntry {
    /// `SenderIP:<ip or CIDR>`.
    pub source: String,
    /// A disabled entry is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for HeloWhitelistEntry {
    type Def = HeloWhitelistDef;

    fn from_def(d: &HeloWhitelistDef) -> Self {
        HeloWhitelistEntry {
            source: d.source.clone(),
            disabled: d.disabled,
            comment: d.comment.clone(),
        }
    }

    fn into_def(self) -> HeloWhitelistDef {
        HeloWhitelistDef {
            source: self.source,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut HeloWhitelistDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// The CheckHelo whitelist.
pub struct HeloWhitelistList;

impl SetList for HeloWhitelistList {
    type Body = HeloWhitelistEntry;
    const KIND: &'static str = "CheckHelo whitelist entry";
    const COLLECTION: &'static str = "/api/checkhelo-whitelist";
    const ITEM: &'static str = "/api/checkhelo-whitelist/{index}";
    const KEY_FIELD: &'static str = "source";

    fn key_of(entry: &HeloWhitelistDef) -> &str {
        &entry.source
    }

    fn entries(def: &PolicySetDef) -> &Vec<HeloWhitelistDef> {
        &def.checkhelo_whitelist
    }

    fn entries_mut(def: &mut PolicySetDef) -> &mut Vec<HeloWhitelistDef> {
        &mut def.checkhelo_whitelist
    }

    fn check(entry: &HeloWhitelistDef) -> Result<(), ApiError> {
        compile_whitelist(std::slice::from_ref(entry))
            .map(|_| ())
            .map_err(|errs| first_error("source", errs))
    }
}

/// The CheckHelo whitelist as a resource.
pub type HeloWhitelist = ListResource<HeloWhitelistList>;

/// 422 naming `field` with the first finding's message.
fn first_error(field: &str, errs: Vec<(usize, String)>) -> ApiError {
    ApiError::invalid(
        field,
        errs.into_iter()
            .map(|(_, m)| m)
            .next()
            .unwrap_or_else(|| "invalid entry".into()),
    )
}
