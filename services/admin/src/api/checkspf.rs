//! CheckSPF as an API resource: a policy's CheckSPF settings,
//! `/api/policies/{policy}/checkspf` (at most one per policy, the item at `.../checkspf/0`;
//! [`super::module_slots::PolicySlot`]). Every setting is optional (unset: inherited from
//! other matched policies).

use serde::{Deserialize, Serialize};
use sluice_engine::model::PolicyDef;
use sluice_engine::CheckSpfDef;
use utoipa::ToSchema;

use super::module_slots::{ModuleBody, PolicySlot, SlotResource};

/// A policy's CheckSPF settings (Policyd's `checkspf` row). Unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckSpf {
    /// Check the sender's SPF record (`UseSPF`; unset: inherit, and CheckSPF does not run
    /// when no matched policy sets it).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Refuse `fail` and `permerror`, defer `temperror` (`RejectFailedSPF`; default off).
    #[serde(default)]
    pub reject_failed: Option<bool>,
    /// Prepend a `Received-SPF:` header to messages not refused (`AddSPFHeader`; default
    /// off).
    #[serde(default)]
    pub add_header: Option<bool>,
    /// Disabled settings are ignored (new ones are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for CheckSpf {
    type Def = CheckSpfDef;

    fn from_def(d: &CheckSpfDef) -> Self {
        let d = d.clone();
        CheckSpf {
            enabled: d.enabled,
            reject_failed: d.reject_failed,
            add_header: d.add_header,
            disabled: d.disabled,
            comment: d.comment,
        }
    }

    fn into_def(self) -> CheckSpfDef {
        CheckSpfDef {
            enabled: self.enabled,
            reject_failed: self.reject_failed,
            add_header: self.add_header,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut CheckSpfDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// Where a policy's CheckSPF settings live.
pub struct CheckSpfSlot;

impl PolicySlot for CheckSpfSlot {
    type Body = CheckSpf;
    const KIND: &'static str = "policy's CheckSPF settings";
    const COLLECTION: &'static str = "/api/policies/{policy}/checkspf";
    const ITEM: &'static str = "/api/policies/{policy}/checkspf/{index}";

    fn slot(p: &PolicyDef) -> &Option<CheckSpfDef> {
        &p.checkspf
    }

    fn slot_mut(p: &mut PolicyDef) -> &mut Option<CheckSpfDef> {
        &mut p.checkspf
    }
}

/// A policy's CheckSPF settings as a resource.
pub type PolicyCheckSpf = SlotResource<CheckSpfSlot>;
