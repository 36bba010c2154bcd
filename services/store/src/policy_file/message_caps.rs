//! The policy file's `[policy.message_caps]` table (sizes with units,
//! `max_message_size = "25MB"`), read ([`FileMessageCaps::convert`]) and written
//! ([`write_policy`]).

use std::fmt::Write;

use serde::Deserialize;
use sluice_engine::MessageCapsDef;
use toml::Spanned;

use super::export::size_text;
use super::mirror::{ConvertError, IntOrText, ObjSpans};
use super::units::parse_size;

/// `[policy.message_caps]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileMessageCaps {
    max_message_size: Option<Spanned<IntOrText>>,
    max_recipients: Option<Spanned<u64>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

impl FileMessageCaps {
    /// Converts to the model; spans go into the policy's `spans` as `message_caps.<field>`
    /// (the fields [`sluice_engine::compile`] names in its findings).
    pub(super) fn convert(
        self,
        policy_label: &str,
        spans: &mut ObjSpans,
        errors: &mut Vec<ConvertError>,
    ) -> MessageCapsDef {
        let max_message_size = self.max_message_size.map(|v| {
            let span = v.span();
            spans
                .fields
                .push(("message_caps.max_message_size", span.clone()));
            let parsed = match v.into_inner() {
                IntOrText::Int(n) => u64::try_from(n).map_err(|_| format!("{n} is negative")),
                IntOrText::Text(t) => parse_size(&t),
            };
            parsed.unwrap_or_else(|message| {
                errors.push(ConvertError {
                    span,
                    field: format!("{policy_label} > message_caps.max_message_size"),
                    message,
                });
                0
            })
        });
        if let Some(v) = &self.max_recipients {
            spans.fields.push(("message_caps.max_recipients", v.span()));
        }
        MessageCapsDef {
            max_message_size,
            max_recipients: self.max_recipients.map(Spanned::into_inner),
            disabled: self.disabled.is_some_and(Spanned::into_inner),
            comment: self.comment.map(Spanned::into_inner),
        }
    }
}

/// Writes a policy's `[policy.message_caps]` table (unset fields left out).
pub(super) fn write_policy(out: &mut String, c: &MessageCapsDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[policy.message_caps]\n");
    if let Some(v) = c.max_message_size {
        let _ = writeln!(out, "{IN}max_message_size = {}", size_text(v));
    }
    if let Some(v) = c.max_recipients {
        let _ = writeln!(out, "{IN}max_recipients = {v}");
    }
    if c.disabled {
        let _ = writeln!(out, "{IN}disabled = true");
    }
    if let Some(v) = &c.comment {
        let _ = writeln!(out, "{IN}comment = {}", toml::Value::String(v.clone()));
    }
}
