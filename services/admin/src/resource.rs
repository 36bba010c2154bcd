//! The API's objects and how each is read from and changed in a [`PolicySetDef`]:
//! policies (by name), their members (by position), access control rules and quotas (by
//! name), a quota's limits (by position), groups (by name) and group members (by position).
//!
//! Positions are the order of the policy file (`sluice policy export`); deleting an item
//! moves the ones after it up. Every change is validated by the engine's compiler before it
//! is written ([`crate::change`]), so the ranges and formats checked here are only those the
//! compiler cannot see (unique names).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
use utoipa::ToSchema;

use crate::error::ApiError;

/// One kind of object of the API.
pub trait Resource: Send + Sync + 'static {
    /// Its JSON form (read and written).
    type Body: Serialize + DeserializeOwned + ToSchema + Clone + Send + Sync + 'static;
    /// What it is called in messages and the OpenAPI document (`policy`, `quota limit`).
    const KIND: &'static str;
    /// The path of its collection (`/api/policies/{policy}/quotas`).
    const COLLECTION: &'static str;
    /// The path of one object (`/api/policies/{policy}/quotas/{quota}`).
    const ITEM: &'static str;
    /// Whether it belongs to a policy (scoped by the policy's domains) or to groups.
    const IN_POLICY: bool;

    /// Every object under `parent` (the collection path's parameters).
    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<Self::Body>, ApiError>;
    /// One object (the item path's parameters).
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Self::Body, ApiError>;
    /// The object as the policy file writes it (with its children), for the audit trail.
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value>;
    /// Adds an object under `parent`; returns its keys.
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        body: Self::Body,
    ) -> Result<Vec<String>, ApiError>;
    /// Replaces an object's own fields (its children stay); returns its keys (a rename
    /// changes them).
    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        body: Self::Body,
    ) -> Result<Vec<String>, ApiError>;
    /// Removes an object with its children.
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError>;
    /// Enables or disables an object.
    fn set_disabled(
        def: &mut PolicySetDef,
        keys: &[String],
        disabled: bool,
    ) -> Result<(), ApiError>;
}

/// `path` with its `{parameters}` replaced by `keys`, in order, without the `/api/` prefix:
/// the object's name in the audit trail (`policies/p1/quotas/q1`).
pub fn object_name(path: &str, keys: &[String]) -> String {
    let mut keys = keys.iter();
    path.trim_start_matches("/api/")
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                keys.next().cloned().unwrap_or_default()
            } else {
                segment.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
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

fn group<'d>(def: &'d PolicySetDef, name: &str) -> Result<&'d GroupDef, ApiError> {
    def.groups
        .iter()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no group named {name:?}")))
}

fn group_mut<'d>(def: &'d mut PolicySetDef, name: &str) -> Result<&'d mut GroupDef, ApiError> {
    def.groups
        .iter_mut()
        .find(|g| g.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no group named {name:?}")))
}

fn quota<'p>(p: &'p PolicyDef, name: &str) -> Result<&'p QuotaDef, ApiError> {
    p.quotas.iter().find(|q| q.name == name).ok_or_else(|| {
        ApiError::not_found(format!("policy {:?} has no quota named {name:?}", p.name))
    })
}

fn quota_mut<'p>(p: &'p mut PolicyDef, name: &str) -> Result<&'p mut QuotaDef, ApiError> {
    let policy = p.name.clone();
    p.quotas.iter_mut().find(|q| q.name == name).ok_or_else(|| {
        ApiError::not_found(format!("policy {policy:?} has no quota named {name:?}"))
    })
}

fn rule<'p>(p: &'p PolicyDef, name: &str) -> Result<&'p AccessControlDef, ApiError> {
    p.access_control
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "policy {:?} has no access control rule named {name:?}",
                p.name
            ))
        })
}

fn rule_mut<'p>(p: &'p mut PolicyDef, name: &str) -> Result<&'p mut AccessControlDef, ApiError> {
    let policy = p.name.clone();
    p.access_control
        .iter_mut()
        .find(|a| a.name == name)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "policy {policy:?} has no access control rule named {name:?}"
            ))
        })
}

/// The position `key` in a list of `len` items, or 404 naming `what`.
fn position(key: &str, len: usize, what: &str) -> Result<usize, ApiError> {
    key.parse::<usize>()
        .ok()
        .filter(|&i| i < len)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {what} at position {key:?} (there are {len}, numbered from 0)"
            ))
        })
}

/// 409 unless `name` is new among `taken` (when renaming, `current` may keep its name).
fn unique<'a>(
    name: &str,
    mut taken: impl Iterator<Item = &'a str>,
    current: Option<&str>,
    what: &str,
) -> Result<(), ApiError> {
    if Some(name) != current && taken.any(|t| t == name) {
        let mut e = ApiError::conflict(format!("a {what} named {name:?} exists already"));
        e.field = Some("name".into());
        return Err(e);
    }
    Ok(())
}

fn json<T: Serialize>(value: &T) -> Option<serde_json::Value> {
    serde_json::to_value(value).ok()
}

/// A policy: who it applies to (members) and what it does (access control, quotas).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Unique name.
    pub name: String,
    /// Lower numbers are evaluated first.
    #[serde(default)]
    pub priority: i32,
    /// Free text.
    #[serde(default)]
    pub description: Option<String>,
    /// A disabled policy never matches (new policies are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Monitor mode: evaluated and counted, but Postfix gets DUNNO.
    #[serde(default)]
    pub monitor: bool,
    /// On create: the policy's first members (a domain admin's policy needs one). On update:
    /// when given, replaces the members. Never returned (see `/members`).
    #[serde(default, skip_serializing)]
    pub members: Option<Vec<Member>>,
}

/// A member of a policy: comma-separated source and destination specs, all of which must
/// match (`None` or `any`: everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Client (IP, network, hostname, `$sasl`) or sender specs.
    #[serde(default)]
    pub source: Option<String>,
    /// Recipient specs.
    #[serde(default)]
    pub destination: Option<String>,
    /// A disabled member is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// An access control rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessControl {
    /// Unique within the policy.
    pub name: String,
    /// `OK`, `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER`, `REDIRECT` or `PASS`.
    pub verdict: String,
    /// Text for the verdict, or the FILTER/REDIRECT target.
    #[serde(default)]
    pub data: Option<String>,
    /// A disabled rule is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A quota of a policy (its limits are at `/limits`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Quota {
    /// Unique within the policy.
    pub name: String,
    /// What one counter tracks: `Sender:user@domain`, `SenderIP:/24`, `SASLUsername`, ...
    pub track: String,
    /// Window length, seconds.
    pub period: u64,
    /// `REJECT`, `DEFER`, `HOLD`, `DISCARD`, `FILTER`, `REDIRECT` or `DELAY` (hold the
    /// message and release it when the quota has room: docs/delay.md).
    pub verdict: String,
    /// Text for the verdict, or the FILTER/REDIRECT target.
    #[serde(default)]
    pub data: Option<String>,
    /// Stop evaluating further quotas after this one.
    #[serde(default)]
    pub last_quota: bool,
    /// A disabled quota is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
    /// DELAY only: `room` (default) or `paced`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<String>,
    /// DELAY only: most messages held per track value (default 1000); beyond it DEFER.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_held: Option<u64>,
    /// DELAY only: longest a message stays held, seconds (default 86400).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold_age: Option<u64>,
    /// DELAY only: `return` (to the sender, default) or `release`, past `max_hold_age`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_expiry: Option<String>,
}

/// A limit of a quota.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// `MessageCount`, `RecipientCount` or `MessageCumulativeSize`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Most messages / recipients / bytes within any window of the quota's period.
    pub limit: u64,
    /// A disabled limit is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A group, used as `%name` in member specs (its members are at `/members`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Unique name.
    pub name: String,
    /// A disabled group matches nothing.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

/// A member of a group: one spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMember {
    /// The spec (`10.0.0.0/8`, `@example.com`, `%other`, `!x`, ...).
    pub member: String,
    /// A disabled member is ignored.
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl From<&PolicyDef> for Policy {
    fn from(p: &PolicyDef) -> Self {
        Policy {
            name: p.name.clone(),
            priority: p.priority,
            description: p.description.clone(),
            disabled: p.disabled,
            monitor: p.monitor,
            members: None,
        }
    }
}

impl From<&MemberDef> for Member {
    fn from(m: &MemberDef) -> Self {
        Member {
            source: m.source.clone(),
            destination: m.destination.clone(),
            disabled: m.disabled,
            comment: m.comment.clone(),
        }
    }
}

impl From<Member> for MemberDef {
    fn from(m: Member) -> Self {
        MemberDef {
            source: m.source,
            destination: m.destination,
            disabled: m.disabled,
            comment: m.comment,
        }
    }
}

impl From<&AccessControlDef> for AccessControl {
    fn from(a: &AccessControlDef) -> Self {
        AccessControl {
            name: a.name.clone(),
            verdict: a.verdict.clone(),
            data: a.data.clone(),
            disabled: a.disabled,
            comment: a.comment.clone(),
        }
    }
}

impl From<AccessControl> for AccessControlDef {
    fn from(a: AccessControl) -> Self {
        AccessControlDef {
            name: a.name,
            verdict: a.verdict,
            data: a.data,
            disabled: a.disabled,
            comment: a.comment,
        }
    }
}

impl From<&QuotaDef> for Quota {
    fn from(q: &QuotaDef) -> Self {
        Quota {
            name: q.name.clone(),
            track: q.track.clone(),
            period: q.period,
            verdict: q.verdict.clone(),
            data: q.data.clone(),
            last_quota: q.last_quota,
            disabled: q.disabled,
            comment: q.comment.clone(),
            release: q.release.clone(),
            max_held: q.max_held,
            max_hold_age: q.max_hold_age,
            on_expiry: q.on_expiry.clone(),
        }
    }
}

impl Quota {
    /// Sets `q`'s own fields (its limits stay).
    fn apply(self, q: &mut QuotaDef) {
        q.name = self.name;
        q.track = self.track;
        q.period = self.period;
        q.verdict = self.verdict;
        q.data = self.data;
        q.last_quota = self.last_quota;
        q.disabled = self.disabled;
        q.comment = self.comment;
        q.release = self.release;
        q.max_held = self.max_held;
        q.max_hold_age = self.max_hold_age;
        q.on_expiry = self.on_expiry;
    }
}

impl From<&LimitDef> for Limit {
    fn from(l: &LimitDef) -> Self {
        Limit {
            kind: l.kind.clone(),
            limit: l.limit,
            disabled: l.disabled,
            comment: l.comment.clone(),
        }
    }
}

impl From<Limit> for LimitDef {
    fn from(l: Limit) -> Self {
        LimitDef {
            kind: l.kind,
            limit: l.limit,
            disabled: l.disabled,
            comment: l.comment,
        }
    }
}

impl From<&GroupMemberDef> for GroupMember {
    fn from(m: &GroupMemberDef) -> Self {
        GroupMember {
            member: m.member.clone(),
            disabled: m.disabled,
            comment: m.comment.clone(),
        }
    }
}

impl From<GroupMember> for GroupMemberDef {
    fn from(m: GroupMember) -> Self {
        GroupMemberDef {
            member: m.member,
            disabled: m.disabled,
            comment: m.comment,
        }
    }
}

/// Policies: `/api/policies/{policy}`.
pub struct Policies;
/// Members of a policy: `/api/policies/{policy}/members/{index}`.
pub struct Members;
/// Access control rules: `/api/policies/{policy}/access-control/{rule}`.
pub struct AccessRules;
/// Quotas: `/api/policies/{policy}/quotas/{quota}`.
pub struct Quotas;
/// Limits of a quota: `/api/policies/{policy}/quotas/{quota}/limits/{index}`.
pub struct Limits;
/// Groups: `/api/groups/{group}`.
pub struct Groups;
/// Members of a group: `/api/groups/{group}/members/{index}`.
pub struct GroupMembers;

impl Resource for Policies {
    type Body = Policy;
    const KIND: &'static str = "policy";
    const COLLECTION: &'static str = "/api/policies";
    const ITEM: &'static str = "/api/policies/{policy}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, _: &[String]) -> Result<Vec<Policy>, ApiError> {
        Ok(def.policies.iter().map(Policy::from).collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Policy, ApiError> {
        policy(def, key(keys, 0)).map(Policy::from)
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        policy(def, key(keys, 0)).ok().and_then(json)
    }
    fn create(def: &mut PolicySetDef, _: &[String], b: Policy) -> Result<Vec<String>, ApiError> {
        unique(
            &b.name,
            def.policies.iter().map(|p| p.name.as_str()),
            None,
            "policy",
        )?;
        let name = b.name.clone();
        def.policies.push(PolicyDef {
            name: b.name,
            priority: b.priority,
            description: b.description,
            disabled: b.disabled,
            monitor: b.monitor,
            members: b
                .members
                .unwrap_or_default()
                .into_iter()
                .map(MemberDef::from)
                .collect(),
            ..PolicyDef::default()
        });
        Ok(vec![name])
    }
    fn update(def: &mut PolicySetDef, keys: &[String], b: Policy) -> Result<Vec<String>, ApiError> {
        let current = key(keys, 0);
        policy(def, current)?;
        unique(
            &b.name,
            def.policies.iter().map(|p| p.name.as_str()),
            Some(current),
            "policy",
        )?;
        let p = policy_mut(def, current)?;
        p.name = b.name.clone();
        p.priority = b.priority;
        p.description = b.description;
        p.disabled = b.disabled;
        p.monitor = b.monitor;
        if let Some(members) = b.members {
            p.members = members.into_iter().map(MemberDef::from).collect();
        }
        Ok(vec![b.name])
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        policy(def, key(keys, 0))?;
        def.policies.retain(|p| p.name != key(keys, 0));
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        policy_mut(def, key(keys, 0))?.disabled = d;
        Ok(())
    }
}

impl Resource for Members {
    type Body = Member;
    const KIND: &'static str = "member";
    const COLLECTION: &'static str = "/api/policies/{policy}/members";
    const ITEM: &'static str = "/api/policies/{policy}/members/{index}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<Member>, ApiError> {
        Ok(policy(def, key(parent, 0))?
            .members
            .iter()
            .map(Member::from)
            .collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Member, ApiError> {
        let p = policy(def, key(keys, 0))?;
        let i = position(key(keys, 1), p.members.len(), "member")?;
        Ok(Member::from(&p.members[i]))
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let p = policy(def, key(keys, 0)).ok()?;
        p.members
            .get(key(keys, 1).parse::<usize>().ok()?)
            .and_then(json)
    }
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        b: Member,
    ) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(parent, 0))?;
        p.members.push(b.into());
        Ok(vec![p.name.clone(), (p.members.len() - 1).to_string()])
    }
    fn update(def: &mut PolicySetDef, keys: &[String], b: Member) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), p.members.len(), "member")?;
        p.members[i] = b.into();
        Ok(keys.to_vec())
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), p.members.len(), "member")?;
        p.members.remove(i);
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), p.members.len(), "member")?;
        p.members[i].disabled = d;
        Ok(())
    }
}

impl Resource for AccessRules {
    type Body = AccessControl;
    const KIND: &'static str = "access control rule";
    const COLLECTION: &'static str = "/api/policies/{policy}/access-control";
    const ITEM: &'static str = "/api/policies/{policy}/access-control/{rule}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<AccessControl>, ApiError> {
        Ok(policy(def, key(parent, 0))?
            .access_control
            .iter()
            .map(AccessControl::from)
            .collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<AccessControl, ApiError> {
        rule(policy(def, key(keys, 0))?, key(keys, 1)).map(AccessControl::from)
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let p = policy(def, key(keys, 0)).ok()?;
        rule(p, key(keys, 1)).ok().and_then(json)
    }
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        b: AccessControl,
    ) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(parent, 0))?;
        unique(
            &b.name,
            p.access_control.iter().map(|a| a.name.as_str()),
            None,
            "access control rule",
        )?;
        let keys = vec![p.name.clone(), b.name.clone()];
        p.access_control.push(b.into());
        Ok(keys)
    }
    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        b: AccessControl,
    ) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        rule(p, key(keys, 1))?;
        unique(
            &b.name,
            p.access_control.iter().map(|a| a.name.as_str()),
            Some(key(keys, 1)),
            "access control rule",
        )?;
        let new_keys = vec![p.name.clone(), b.name.clone()];
        *rule_mut(p, key(keys, 1))? = b.into();
        Ok(new_keys)
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        rule(p, key(keys, 1))?;
        p.access_control.retain(|a| a.name != key(keys, 1));
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        rule_mut(policy_mut(def, key(keys, 0))?, key(keys, 1))?.disabled = d;
        Ok(())
    }
}

impl Resource for Quotas {
    type Body = Quota;
    const KIND: &'static str = "quota";
    const COLLECTION: &'static str = "/api/policies/{policy}/quotas";
    const ITEM: &'static str = "/api/policies/{policy}/quotas/{quota}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<Quota>, ApiError> {
        Ok(policy(def, key(parent, 0))?
            .quotas
            .iter()
            .map(Quota::from)
            .collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Quota, ApiError> {
        quota(policy(def, key(keys, 0))?, key(keys, 1)).map(Quota::from)
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let p = policy(def, key(keys, 0)).ok()?;
        quota(p, key(keys, 1)).ok().and_then(json)
    }
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        b: Quota,
    ) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(parent, 0))?;
        unique(
            &b.name,
            p.quotas.iter().map(|q| q.name.as_str()),
            None,
            "quota",
        )?;
        let keys = vec![p.name.clone(), b.name.clone()];
        let mut q = QuotaDef::default();
        b.apply(&mut q);
        p.quotas.push(q);
        Ok(keys)
    }
    fn update(def: &mut PolicySetDef, keys: &[String], b: Quota) -> Result<Vec<String>, ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        quota(p, key(keys, 1))?;
        unique(
            &b.name,
            p.quotas.iter().map(|q| q.name.as_str()),
            Some(key(keys, 1)),
            "quota",
        )?;
        let new_keys = vec![p.name.clone(), b.name.clone()];
        b.apply(quota_mut(p, key(keys, 1))?);
        Ok(new_keys)
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let p = policy_mut(def, key(keys, 0))?;
        quota(p, key(keys, 1))?;
        p.quotas.retain(|q| q.name != key(keys, 1));
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        quota_mut(policy_mut(def, key(keys, 0))?, key(keys, 1))?.disabled = d;
        Ok(())
    }
}

impl Resource for Limits {
    type Body = Limit;
    const KIND: &'static str = "quota limit";
    const COLLECTION: &'static str = "/api/policies/{policy}/quotas/{quota}/limits";
    const ITEM: &'static str = "/api/policies/{policy}/quotas/{quota}/limits/{index}";
    const IN_POLICY: bool = true;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<Limit>, ApiError> {
        let q = quota(policy(def, key(parent, 0))?, key(parent, 1))?;
        Ok(q.limits.iter().map(Limit::from).collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Limit, ApiError> {
        let q = quota(policy(def, key(keys, 0))?, key(keys, 1))?;
        let i = position(key(keys, 2), q.limits.len(), "limit")?;
        Ok(Limit::from(&q.limits[i]))
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let q = quota(policy(def, key(keys, 0)).ok()?, key(keys, 1)).ok()?;
        q.limits
            .get(key(keys, 2).parse::<usize>().ok()?)
            .and_then(json)
    }
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        b: Limit,
    ) -> Result<Vec<String>, ApiError> {
        let q = quota_mut(policy_mut(def, key(parent, 0))?, key(parent, 1))?;
        q.limits.push(b.into());
        Ok(vec![
            key(parent, 0).to_owned(),
            key(parent, 1).to_owned(),
            (q.limits.len() - 1).to_string(),
        ])
    }
    fn update(def: &mut PolicySetDef, keys: &[String], b: Limit) -> Result<Vec<String>, ApiError> {
        let q = quota_mut(policy_mut(def, key(keys, 0))?, key(keys, 1))?;
        let i = position(key(keys, 2), q.limits.len(), "limit")?;
        q.limits[i] = b.into();
        Ok(keys.to_vec())
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let q = quota_mut(policy_mut(def, key(keys, 0))?, key(keys, 1))?;
        let i = position(key(keys, 2), q.limits.len(), "limit")?;
        q.limits.remove(i);
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        let q = quota_mut(policy_mut(def, key(keys, 0))?, key(keys, 1))?;
        let i = position(key(keys, 2), q.limits.len(), "limit")?;
        q.limits[i].disabled = d;
        Ok(())
    }
}

impl Resource for Groups {
    type Body = Group;
    const KIND: &'static str = "group";
    const COLLECTION: &'static str = "/api/groups";
    const ITEM: &'static str = "/api/groups/{group}";
    const IN_POLICY: bool = false;

    fn list(def: &PolicySetDef, _: &[String]) -> Result<Vec<Group>, ApiError> {
        Ok(def
            .groups
            .iter()
            .map(|g| Group {
                name: g.name.clone(),
                disabled: g.disabled,
                comment: g.comment.clone(),
            })
            .collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<Group, ApiError> {
        let g = group(def, key(keys, 0))?;
        Ok(Group {
            name: g.name.clone(),
            disabled: g.disabled,
            comment: g.comment.clone(),
        })
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        group(def, key(keys, 0)).ok().and_then(json)
    }
    fn create(def: &mut PolicySetDef, _: &[String], b: Group) -> Result<Vec<String>, ApiError> {
        unique(
            &b.name,
            def.groups.iter().map(|g| g.name.as_str()),
            None,
            "group",
        )?;
        let keys = vec![b.name.clone()];
        def.groups.push(GroupDef {
            name: b.name,
            disabled: b.disabled,
            comment: b.comment,
            members: Vec::new(),
        });
        Ok(keys)
    }
    fn update(def: &mut PolicySetDef, keys: &[String], b: Group) -> Result<Vec<String>, ApiError> {
        group(def, key(keys, 0))?;
        unique(
            &b.name,
            def.groups.iter().map(|g| g.name.as_str()),
            Some(key(keys, 0)),
            "group",
        )?;
        let g = group_mut(def, key(keys, 0))?;
        g.name = b.name.clone();
        g.disabled = b.disabled;
        g.comment = b.comment;
        Ok(vec![b.name])
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        group(def, key(keys, 0))?;
        def.groups.retain(|g| g.name != key(keys, 0));
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        group_mut(def, key(keys, 0))?.disabled = d;
        Ok(())
    }
}

impl Resource for GroupMembers {
    type Body = GroupMember;
    const KIND: &'static str = "group member";
    const COLLECTION: &'static str = "/api/groups/{group}/members";
    const ITEM: &'static str = "/api/groups/{group}/members/{index}";
    const IN_POLICY: bool = false;

    fn list(def: &PolicySetDef, parent: &[String]) -> Result<Vec<GroupMember>, ApiError> {
        Ok(group(def, key(parent, 0))?
            .members
            .iter()
            .map(GroupMember::from)
            .collect())
    }
    fn get(def: &PolicySetDef, keys: &[String]) -> Result<GroupMember, ApiError> {
        let g = group(def, key(keys, 0))?;
        let i = position(key(keys, 1), g.members.len(), "group member")?;
        Ok(GroupMember::from(&g.members[i]))
    }
    fn snapshot(def: &PolicySetDef, keys: &[String]) -> Option<serde_json::Value> {
        let g = group(def, key(keys, 0)).ok()?;
        g.members
            .get(key(keys, 1).parse::<usize>().ok()?)
            .and_then(json)
    }
    fn create(
        def: &mut PolicySetDef,
        parent: &[String],
        b: GroupMember,
    ) -> Result<Vec<String>, ApiError> {
        let g = group_mut(def, key(parent, 0))?;
        g.members.push(b.into());
        Ok(vec![g.name.clone(), (g.members.len() - 1).to_string()])
    }
    fn update(
        def: &mut PolicySetDef,
        keys: &[String],
        b: GroupMember,
    ) -> Result<Vec<String>, ApiError> {
        let g = group_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), g.members.len(), "group member")?;
        g.members[i] = b.into();
        Ok(keys.to_vec())
    }
    fn delete(def: &mut PolicySetDef, keys: &[String]) -> Result<(), ApiError> {
        let g = group_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), g.members.len(), "group member")?;
        g.members.remove(i);
        Ok(())
    }
    fn set_disabled(def: &mut PolicySetDef, keys: &[String], d: bool) -> Result<(), ApiError> {
        let g = group_mut(def, key(keys, 0))?;
        let i = position(key(keys, 1), g.members.len(), "group member")?;
        g.members[i].disabled = d;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::object_name;

    #[test]
    fn object_names_fill_the_path() {
        let keys = vec!["p".to_owned(), "q".to_owned(), "0".to_owned()];
        assert_eq!(
            object_name(
                "/api/policies/{policy}/quotas/{quota}/limits/{index}",
                &keys
            ),
            "policies/p/quotas/q/limits/0"
        );
    }
}
