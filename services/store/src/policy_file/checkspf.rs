//! The policy file's CheckSPF part: a policy's `[policy.checkspf]` table, read
//! ([`FileCheckSpf::convert`]) and written ([`write_policy`]).

use std::fmt::Write;

use serde::Deserialize;
use sluice_engine::CheckSpfDef;
use toml::Spanned;

use super::mirror::ObjSpans;

/// `[policy.checkspf]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCheckSpf {
    enabled: Option<Spanned<bool>>,
    reject_failed: Option<Spanned<bool>>,
    add_header: Option<Spanned<bool>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

fn inner<T>(v: Option<Spanned<T>>) -> Option<T> {
    v.map(Spanned::into_inner)
}

impl FileCheckSpf {
    /// Converts to the model; spans go into the policy's `spans` as `checkspf.<field>`.
    pub(super) fn convert(self, spans: &mut ObjSpans) -> CheckSpfDef {
        macro_rules! take {
            ($($f:ident),*) => {
                $(
                    if let Some(v) = &self.$f {
                        spans.fields.push((concat!("checkspf.", stringify!($f)), v.span()));
                    }
                )*
            };
        }
        take!(enabled, reject_failed, add_header);
        CheckSpfDef {
            enabled: inner(self.enabled),
            reject_failed: inner(self.reject_failed),
            add_header: inner(self.add_header),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

/// Writes a policy's `[policy.checkspf]` table (fields in a fixed order, unset ones left
/// out).
pub(super) fn write_policy(out: &mut String, c: &CheckSpfDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[policy.checkspf]\n");
    for (k, v) in [
        ("enabled", c.enabled),
        ("reject_failed", c.reject_failed),
        ("add_header", c.add_header),
    ] {
        if let Some(v) = v {
            let _ = writeln!(out, "{IN}{k} = {v}");
        }
    }
    if c.disabled {
        let _ = writeln!(out, "{IN}disabled = true");
    }
    if let Some(v) = &c.comment {
        let _ = writeln!(out, "{IN}comment = {}", toml::Value::String(v.clone()));
    }
}
