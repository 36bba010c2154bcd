//! Greylisting as API resources, on the same generic routes, audit trail and checks as the
//! others ([`super::resource_routes`]):
//!
//! - a policy's greylisting settings, `/api/policies/{policy}/greylisting` (at most one per
//!   policy, so the list has zero or one entry and the item is `.../greylisting/0`); every
//!   setting is optional (unset: inherited from other matched policies, else the default);
//!   errors name the field as the policy file does (`greylisting.period`);
//! - the static whitelist, `/api/greylisting-whitelist` and `/api/greylisting-whitelist/{index}`
//!   (networks, sender domains and reverse-DNS patterns never greylisted): set-wide, so
//!   like groups it is not for domain admins.

use serde::{Deserialize, Serialize};
use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_engine::{GreylistWhitelistDef, GreylistingDef};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::resource::Resource;

/// A policy's greylisting settings (Policyd's `greylisting` row). Unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Greylisting {
    /// Greylist this policy's requests (unset: inherit; a row where nothing sets it greylists).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Seconds a new triplet is deferred (default 240).
    #[serde(default)]
    pub period: Option<u64>,
    /// How the client address is masked: `SenderIP:/N` (default `SenderIP:/24`).
    #[serde(default)]
    pub track: Option<String>,
    /// IPv6 prefix length of the triplet's network (default 64).
    #[serde(default)]
    pub ipv6_prefix: Option<u8>,
    /// Seconds a triplet that passed is kept since its last use (default 604800).
    #[serde(default)]
    pub auth_validity: Option<u64>,
    /// Seconds a triplet that never passed is kept since its last attempt (default 86400).
    #[serde(default)]
    pub unauth_validity: Option<u64>,
    /// Auto-whitelist networks whose triplets pass (default off).
    #[serde(default)]
    pub auto_whitelist: Option<bool>,
    /// Auto-whitelist look-back and entry life, seconds (default 604800).
    #[serde(default)]
    pub auto_whitelist_period: Option<u64>,
    /// Triplets needed before auto-whitelisting (default 100; 0: never).
    #[serde(default)]
    pub auto_whitelist_count: Option<u64>,
    /// Percentage of those that must have passed (default 90).
    #[serde(default)]
    pub auto_whitelist_percentage: Option<u64>,
    /// Auto-blacklist networks whose triplets never pass (default off).
    #[serde(default)]
    pub auto_blacklist: Option<bool>,
    /// Auto-blacklist look-back and entry life, seconds (default 604800).
    #[serde(default)]
    pub auto_blacklist_period: Option<u64>,
    /// Triplets needed before auto-blacklisting (default 100; 0: never).
    #[serde(default)]
    pub auto_blacklist_count: Option<u64>,
    /// Percentage of those that must never have passed (default 90).
    #[serde(default)]
    pub auto_blacklist_percentage: Option<u64>,
    /// Training mode: record and auto-whitelist, never defer or blacklist (default off).
    #[serde(default)]
    pub training: Option<bool>,
    /// Skip greylisting when the sender's SPF result is pass (default off).
    #[serde(default)]
    pub skip_spf_pass: Option<bool>,
    /// Text of a deferral (Postfix gets `451 4.7.1 <text>`).
    #[serde(default)]
    pub defer_message: Option<String>,
    /// Text of a rejection of a blacklisted network.
    #[serde(default)]
    pub blacklist_message: Option<String>,
    /// Disabled settings are ignored (new ones are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl From<&GreylistingDef> for Greylisting {
    fn from(d: &GreylistingDef) -> Self {
        let d = d.clone();
        Greylisting {
            enabled: d.enabled,
            period: d.period,
            track: d.track,
            ipv6_prefix: d.ipv6_prefix,
            auth_validity: d.auth_validity,
            unauth_validity: d.unauth_validity,
            auto_whitelist: d.auto_whitelist,
            auto_whitelist_period: d.auto_whitelist_period,
            auto_whitelist_count: d.auto_whitelist_count,
            auto_whitelist_percentage: d.auto_whitelist_percentage,
            auto_blacklist: d.auto_blacklist,
            auto_blacklist_period: d.auto_blacklist_period,
            auto_blacklist_count: d.auto_blacklist_count,
            auto_blacklist_percentage: d.auto_blacklist_percentage,
            training: d.training,
            skip_spf_pass: d.skip_spf_pass,
            defer_message: d.defer_message,
            blacklist_message: d.blacklist_message,
            disabled: d.disabled,
            comment: d.comment,
        }
    }
}

impl From<Greylisting> for GreylistingDef {
    fn from(g: Greylisting) -> Self {
        GreylistingDef {
            enabled: g.enabled,
            period: g.period,
            track: g.track,
            ipv6_prefix: g.ipv6_prefix,
            auth_validity: g.auth_validity,
            unauth_validity: g.unauth_validity,
            auto_whitelist: g.auto_whitelist,
            auto_whitelist_period: g.auto_whitelist_period,
            auto_whitelist_count: g.auto_whitelist_count,
            auto_whitelist_percentage: g.auto_whitelist_percentage,
            auto_blacklist: g.auto_blacklist,
            auto_blacklist_period: g.auto_blacklist_period,
            auto_blacklist_count: g.auto_blacklist_count,
            auto_blacklist_percentage: g.auto_blacklist_percentage,
            training: g.training,
            skip_spf_pass: g.skip_spf_pass,
            defer_message: g.defer_message,
            blacklist_message: g.blacklist_message,
            disabled: g.disabled,
            comment: g.comment,
        }
    }
}

/// One static greylisting whitelist entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GreylistWhitelistEntry {
    /// `SenderIP:<ip or CIDR>`, `SenderDomain:<domain>` (`.domain`: subdomains too) or
    /// `ReverseDNS:<pattern>` (`*` any characters, a leading `.` a suffix).
    pub source: String,
    /// A disabled entry is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl From<&GreylistWhitelistDef> for GreylistWhitelistEntry {
    fn from(d: &GreylistWhitelistDef) -> Self {
        GreylistWhitelistEntry {
            source: d.source.clone(),
            disabled: d.disabled,
            comment: d.comment.clone(),
        }
    }
}

impl From<GreylistWhitelistEntry> for GreylistWhitelistDef {
    fn from(e: GreylistWhitelistEntry) -> Self {
        GreylistWhitelistDef {
            source: e.source,
            disabled: e.disabled,
            comment: e.comment,
        }
    }
}

fn key(keys: &[String], i: usize) -> &str {
    keys.get(i).map_or("", String::as_str)
}

fn policy<'d>(def: &'d PolicySetDef, name: &str) -> Result<&'d PolicyDef, ApiError> {
    def.policies
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name:?}")))
}

fn policy_mut<'d>(def: &'d mut PolicySetDef, name: &str) -> Result<&'d mut PolicyDef, ApiError> {
    def.policies
        .iter_mut()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no policy named {name:?}")))
}

/// The settings of the policy at `keys` (`[policy, "0"]`), or 404.
fn settings_mut<'d>(
    def: &'d mut PolicySetDef,
    keys: &[String],
) -> Result<&'d mut GreylistingDef, ApiError> {
    let name = key(keys, 0).to_owned();
    let p = policy_mut(def, &name)?;
    match (key(keys, 1), p.greylisting.as_mut()) {
        ("0", Some(g)) => Ok(g),
        _ => Err(ApiError::not_found(format!(
            "policy {name:?} has no greylisting settings at {:?} (there is at most one, at 0)",
            key(keys, 1)
        ))),
    }
}

/// A policy's greylisting settings.
pub struct PolicyGreylisting;

impl Resource for PolicyGreylisting {
    type Body = Greylisting;
    const KIND: &'static str = "policy's greylisting settings";
    const COLLECTION: &'static str = "/api/policies/{policy}/greylisting";
    const ITEM: &'static str = "/api/policies/{policy}/greylisting/{index}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<Greylisting>, ApiError> {
        let p = policy(def, key(parent, 0))?;
        Ok(p.greylisting.iter().map(Greylisting::from).collect())
    }

    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Greylisting, ApiError> {
        let mut def = def.clone();
        settings_mut(&mut def, keys).map(|g| Greylisting::from(&*g))
    }

    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let p = def.policies.iter().find(|p| p.name == key(keys, 0))?;
        p.greylisting
            .as_ref()
            .filter(|_| key(keys, 1) == "0")
            .and_then(|g| serde_json::to_value(g).ok())
    }

    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        body: Greylisting,
    ) -> Result<Vec<String>, ApiError> {
        let name = key(parent, 0).to_owned();
        let p = policy_mut(def, &name)?;
        if p.greylisting.is_some() {
            return Err(ApiError::conflict(format!(
                "policy {name:?} has greylisting settings already: change them at /api/policies/{name}/greylisting/0"
            )));
        }
        p.greylisting = Some(body.into());
        Ok(vec![name, "0".into()])
    }

    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: Greylisting,
    ) -> Result<Vec<String>, ApiError> {
        *settings_mut(def, keys)? = body.into();
        Ok(keys.to_vec())
    }

    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        settings_mut(def, keys)?;
        policy_mut(def, key(keys, 0))?.greylisting = None;
        Ok(())
    }

    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError> {
        settings_mut(def, keys)?.disabled = disabled;
        Ok(())
    }
}

/// The static greylisting whitelist.
pub struct GreylistWhitelist;

/// 422 naming `source` when the entry is not valid.
fn check_entry(entry: &GreylistWhitelistDef) -> Result<(), ApiError> {
    let probe = GreylistWhitelistDef {
        disabled: false,
        ..entry.clone()
    };
    sluice_engine::greylisting::settings::compile_whitelist(std::slice::from_ref(&probe))
        .map(|_| ())
        .map_err(|errs| {
            ApiError::invalid(
                "source",
                errs.into_iter()
                    .map(|(_, m)| m)
                    .next()
                    .unwrap_or_else(|| "invalid whitelist entry".into()),
            )
        })
}

/// 422 naming `source` when an entry other than `except` has the same source (the stores
/// keep each source once).
fn check_unique(
    def: &PolicySetDef,
    entry: &GreylistWhitelistDef,
    except: Option<usize>,
) -> Result<(), ApiError> {
    match def
        .greylisting_whitelist
        .iter()
        .enumerate()
        .find(|(i, e)| Some(*i) != except && e.source == entry.source)
    {
        Some((i, _)) => Err(ApiError::invalid(
            "source",
            format!(
                "{:?} is listed already, at /api/greylisting-whitelist/{i}: change that entry instead",
                entry.source
            ),
        )),
        None => Ok(()),
    }
}

fn entry_position(def: &PolicySetDef, keys: &[String]) -> Result<usize, ApiError> {
    let len = def.greylisting_whitelist.len();
    key(keys, 0)
        .parse::<usize>()
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no greylisting whitelist entry at position {:?} (there are {len}, numbered from 0)",
                key(keys, 0)
            ))
        })
}

impl Resource for GreylistWhitelist {
    type Body = GreylistWhitelistEntry;
    const KIND: &'static str = "greylisting whitelist entry";
    const COLLECTION: &'static str = "/api/greylisting-whitelist";
    const ITEM: &'static str = "/api/greylisting-whitelist/{index}";
    const IN_POLICY: bool = false;

    fn list(def: &PolicySetDef, _: &[String]) -> Result<Vec<GreylistWhitelistEntry>, ApiError> {
        Ok(def
            .greylisting_whitelist
            .iter()
            .map(GreylistWhitelistEntry::from)
            .collect())
    }

    fn get(def: &PolicySetDef, keys: &[String]) -> Result<GreylistWhitelistEntry, ApiError> {
        let i = entry_position(def, keys)?;
        Ok((&def.greylisting_whitelist[i]).into())
    }

    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let i = entry_position(def, keys).ok()?;
        serde_json::to_value(&def.greylisting_whitelist[i]).ok()
    }

    fn create(
        def: &mut PolicySetDef,
        _: &[String],
        body: GreylistWhitelistEntry,
    ) -> Result<Vec<String>, ApiError> {
        let entry: GreylistWhitelistDef = body.into();
        check_entry(&entry)?;
        check_unique(def, &entry, None)?;
        def.greylisting_whitelist.push(entry);
        Ok(vec![(def.greylisting_whitelist.len() - 1).to_string()])
    }

    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: GreylistWhitelistEntry,
    ) -> Result<Vec<String>, ApiError> {
        let i = entry_position(def, keys)?;
        let entry: GreylistWhitelistDef = body.into();
        check_entry(&entry)?;
        check_unique(def, &entry, Some(i))?;
        def.greylisting_whitelist[i] = entry;
        Ok(keys.to_vec())
    }

    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let i = entry_position(def, keys)?;
        def.greylisting_whitelist.remove(i);
        Ok(())
    }

    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError> {
        let i = entry_position(def, keys)?;
        def.greylisting_whitelist[i].disabled = disabled;
        Ok(())
    }
}
