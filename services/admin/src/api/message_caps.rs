//! Per-message caps as an API resource: a policy's caps,
//! `/api/policies/{policy}/message-caps` (at most one per policy, the item at
//! `.../message-caps/0`; [`super::module_slots::PolicySlot`]). Unset caps inherit; ranges
//! are the engine's (errors name `message_caps.max_message_size`).

use serde::{Deserialize, Serialize};
use sluice_engine::model::PolicyDef;
use sluice_engine::MessageCapsDef;
use utoipa::ToSchema;

use super::module_slots::{ModuleBody, PolicySlot, SlotResource};

/// A policy's per-message caps. Unset fields inherit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageCaps {
    /// Largest message in bytes (1 ..= 100 TB): refused at RCPT when the declared size is
    /// above it, at END-OF-MESSAGE when the real size is.
    #[serde(default)]
    pub max_message_size: Option<u64>,
    /// Most recipients of one message (1 ..= 1,000,000).
    #[serde(default)]
    pub max_recipients: Option<u64>,
    /// Disabled caps are ignored (new ones are enabled unless this says otherwise).
    #[serde(default)]
    pub disabled: bool,
    /// Free text.
    #[serde(default)]
    pub comment: Option<String>,
}

impl ModuleBody for MessageCaps {
    type Def = MessageCapsDef;

    fn from_def(d: &MessageCapsDef) -> Self {
        let d = d.clone();
        MessageCaps {
            max_message_size: d.max_message_size,
            max_recipients: d.max_recipients,
            disabled: d.disabled,
            comment: d.comment,
        }
    }

    fn into_def(self) -> MessageCapsDef {
        MessageCapsDef {
            max_message_size: self.max_message_size,
            max_recipients: self.max_recipients,
            disabled: self.disabled,
            comment: self.comment,
        }
    }

    fn set_disabled(d: &mut MessageCapsDef, disabled: bool) {
        d.disabled = disabled;
    }
}

/// Where a policy's caps live.
pub struct MessageCapsSlot;

impl PolicySlot for MessageCapsSlot {
    type Body = MessageCaps;
    const KIND: &'static str = "policy's message caps";
    const COLLECTION: &'static str = "/api/policies/{policy}/message-caps";
    const ITEM: &'static str = "/api/policies/{policy}/message-caps/{index}";

    fn slot(p: &PolicyDef) -> &Option<MessageCapsDef> {
        &p.message_caps
    }

    fn slot_mut(p: &mut PolicyDef) -> &mut Option<MessageCapsDef> {
        &mut p.message_caps
    }
}

/// A policy's per-message caps as a resource.
pub type PolicyMessageCaps = SlotResource<MessageCapsSlot>;
