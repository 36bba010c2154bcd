//! One change to the policies: read the set at its version, edit it, check the caller's
//! scope before and after, validate the result with the engine's compiler (the one home of
//! every format and range: `sluice_engine::compile` and `sluice_engine::bounds`), and write
//! it with its audit entry in one transaction, only if nobody changed the set meanwhile
//! (else read again and redo, twice at most, then 409).

use sluice_engine::diagnostic::Location;
use sluice_engine::model::PolicySetDef;
use sluice_engine::{compile, Severity};
use sluice_store::{NewAudit, StoreError};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::resource::{object_name, Resource};
use crate::{now_ms, scope, AppState};

/// What a change does, for the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A new object.
    Create,
    /// An object's fields replaced.
    Update,
    /// An object removed.
    Delete,
    /// An object enabled.
    Enable,
    /// An object disabled.
    Disable,
}

impl Action {
    /// The word stored in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
            Action::Enable => "enable",
            Action::Disable => "disable",
        }
    }
}

/// Attempts before a change that keeps meeting concurrent changes gives up with 409.
const ATTEMPTS: usize = 3;

/// Applies `edit` to the policies as `caller` and returns the changed object's keys
/// (`keys`: the object's keys before, or its parent's for a create).
pub async fn apply<R: Resource>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    keys: &[String],
    edit: impl Fn(&mut PolicySetDef) -> Result<Vec<String>, ApiError>,
) -> Result<Vec<String>, ApiError> {
    caller.may_change()?;
    if !R::IN_POLICY {
        scope::check_groups(&caller.account)?;
    }
    let _one_at_a_time = state.write_lock.lock().await;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let version = state.store.version().await?;
        let old = state.store.load().await?;
        let mut new = old.clone();
        let after_keys = edit(&mut new)?;
        if R::IN_POLICY {
            check_policy_scope(caller, &old, keys.first())?;
            let after_policy = after_keys.first().or(if action == Action::Delete {
                keys.first()
            } else {
                None
            });
            check_policy_scope(caller, &new, after_policy)?;
        }
        validate(&new)?;
        let created = action == Action::Create;
        let deleted = action == Action::Delete;
        let before = (!created).then(|| R::snapshot(&old, keys)).flatten();
        let after = (!deleted).then(|| R::snapshot(&new, &after_keys)).flatten();
        let object_keys = if deleted { keys } else { &after_keys };
        let entry = NewAudit {
            at_ms: now_ms(),
            actor: caller.account.name.clone(),
            client: caller.client.clone(),
            action: action.as_str().to_owned(),
            object: object_name(R::ITEM, object_keys),
            before: before.map(|v| v.to_string()),
            after: after.map(|v| v.to_string()),
        };
        match state
            .store
            .replace_all_audited(&new, version, &[entry])
            .await
        {
            Ok(()) => {
                tracing::info!(
                    account = %caller.account.name,
                    client = %caller.client,
                    action = action.as_str(),
                    object = %object_name(R::ITEM, object_keys),
                    "Admin change"
                );
                return Ok(after_keys);
            }
            Err(StoreError::Changed { .. }) if attempt < ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// 403 when the policy called `name` exists in `def` and is outside the caller's domains.
fn check_policy_scope(
    caller: &Caller,
    def: &PolicySetDef,
    name: Option<&String>,
) -> Result<(), ApiError> {
    let Some(name) = name else { return Ok(()) };
    match def.policies.iter().find(|p| &p.name == name) {
        Some(p) => scope::check_policy(&caller.account, p),
        None => Ok(()),
    }
}

/// 422 naming the field of the first error the engine's compiler finds in `def`.
pub fn validate(def: &PolicySetDef) -> Result<(), ApiError> {
    let Err(findings) = compile(def) else {
        return Ok(());
    };
    match findings.iter().find(|d| d.severity == Severity::Error) {
        Some(d) => Err(ApiError::invalid(
            field_name(&d.location),
            d.message.clone(),
        )),
        None => Ok(()),
    }
}

/// The field a finding is about (`period`, `limits[0].limit`), relative to its policy or
/// group.
pub fn field_name(location: &Location) -> String {
    match location {
        Location::Set => String::new(),
        Location::Group { field, .. } | Location::Policy { field, .. } => (*field).to_owned(),
        Location::GroupMember { member, field, .. } => format!("members[{member}].{field}"),
        Location::Member { member, field, .. } => format!("members[{member}].{field}"),
        Location::AccessControl { rule, field, .. } => format!("access_control[{rule}].{field}"),
        Location::Quota { quota, field, .. } => format!("quotas[{quota}].{field}"),
        Location::Limit {
            quota,
            limit,
            field,
            ..
        } => format!("quotas[{quota}].limits[{limit}].{field}"),
        Location::Accounting { row, field, .. } => format!("accounting[{row}].{field}"),
    }
    .trim_end_matches('.')
    .to_owned()
}
