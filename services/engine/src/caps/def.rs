//! A policy's per-message caps as operators write them (`[policy.message_caps]`).

use serde::{Deserialize, Serialize};

/// Per-message caps of a policy. Unset fields inherit from the matched policies with lower
/// priority numbers (see [`crate::caps`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCapsDef {
    /// Largest message in bytes (1 ..= 100 TB): refused at RCPT when the declared size is
    /// above it, at END-OF-MESSAGE when the real size is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<u64>,
    /// Most recipients of one message (1 ..= 1,000,000): the recipient after it is
    /// refused at RCPT; at END-OF-MESSAGE a `recipient_count` above it refuses the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_recipients: Option<u64>,
    /// Disabled caps are ignored (and inherit nothing).
    #[serde(default, skip_serializing_if = "is_false")]
    pub disabled: bool,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}
