//! The policy file's CheckHelo parts: a policy's `[policy.checkhelo]` table (periods with
//! units, `hrp_period = "1h"`) and the top-level `[[checkhelo_blacklist]]` and
//! `[[checkhelo_whitelist]]` entries, read ([`FileCheckHelo::convert`]) and written
//! ([`write_policy`], [`write_blacklist`], [`write_whitelist`]).

use std::fmt::Write;

use serde::Deserialize;
use sluice_engine::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
use toml::Spanned;

use super::export::period_text;
use super::mirror::{ConvertError, IntOrText, ObjSpans};
use super::units::parse_period;

/// `[policy.checkhelo]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileCheckHelo {
    use_blacklist: Option<Spanned<bool>>,
    blacklist_period: Option<Spanned<IntOrText>>,
    use_hrp: Option<Spanned<bool>>,
    hrp_period: Option<Spanned<IntOrText>>,
    hrp_limit: Option<Spanned<u64>>,
    reject_invalid: Option<Spanned<bool>>,
    reject_ip: Option<Spanned<bool>>,
    reject_unresolvable: Option<Spanned<bool>>,
    dns_failure: Option<Spanned<String>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

/// `[[checkhelo_blacklist]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileBlacklist {
    helo: Spanned<String>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

/// `[[checkhelo_whitelist]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileWhitelist {
    source: Spanned<String>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

fn inner<T>(v: Option<Spanned<T>>) -> Option<T> {
    v.map(Spanned::into_inner)
}

impl FileCheckHelo {
    /// Converts to the model; spans go into the policy's `spans` as `checkhelo.<field>`
    /// (the fields [`sluice_engine::compile`] names in its findings).
    pub(super) fn convert(
        self,
        policy_label: &str,
        spans: &mut ObjSpans,
        errors: &mut Vec<ConvertError>,
    ) -> CheckHeloDef {
        let mut period = |name: &'static str, v: Option<Spanned<IntOrText>>| -> Option<u64> {
            let v = v?;
            let span = v.span();
            spans.fields.push((name, span.clone()));
            let parsed = match v.into_inner() {
                IntOrText::Int(n) => u64::try_from(n).map_err(|_| format!("{n} is negative")),
                IntOrText::Text(t) => parse_period(&t),
            };
            match parsed {
                Ok(n) => Some(n),
                Err(message) => {
                    errors.push(ConvertError {
                        span,
                        field: format!("{policy_label} > {name}"),
                        message,
                    });
                    Some(0)
                }
            }
        };
        let blacklist_period = period("checkhelo.blacklist_period", self.blacklist_period);
        let hrp_period = period("checkhelo.hrp_period", self.hrp_period);
        macro_rules! take {
            ($($f:ident),*) => {
                $(
                    if let Some(v) = &self.$f {
                        spans.fields.push((concat!("checkhelo.", stringify!($f)), v.span()));
                    }
                )*
            };
        }
        take!(
            use_blacklist,
            use_hrp,
            hrp_limit,
            reject_invalid,
            reject_ip,
            reject_unresolvable,
            dns_failure
        );
        CheckHeloDef {
            use_blacklist: inner(self.use_blacklist),
            blacklist_period,
            use_hrp: inner(self.use_hrp),
            hrp_period,
            hrp_limit: inner(self.hrp_limit),
            reject_invalid: inner(self.reject_invalid),
            reject_ip: inner(self.reject_ip),
            reject_unresolvable: inner(self.reject_unresolvable),
            dns_failure: inner(self.dns_failure),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

impl FileBlacklist {
    /// Converts to the model.
    pub(super) fn convert(self) -> HeloBlacklistDef {
        HeloBlacklistDef {
            helo: self.helo.into_inner(),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

impl FileWhitelist {
    /// Converts to the model.
    pub(super) fn convert(self) -> HeloWhitelistDef {
        HeloWhitelistDef {
            source: self.source.into_inner(),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

/// Writes a policy's `[policy.checkhelo]` table (fields in a fixed order, unset ones left
/// out).
pub(super) fn write_policy(out: &mut String, h: &CheckHeloDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[policy.checkhelo]\n");
    let b = |out: &mut String, k: &str, v: Option<bool>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{IN}{k} = {v}");
        }
    };
    let p = |out: &mut String, k: &str, v: Option<u64>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{IN}{k} = {}", period_text(v));
        }
    };
    let s = |out: &mut String, k: &str, v: &Option<String>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{IN}{k} = {}", toml::Value::String(v.clone()));
        }
    };
    b(out, "use_blacklist", h.use_blacklist);
    p(out, "blacklist_period", h.blacklist_period);
    b(out, "use_hrp", h.use_hrp);
    p(out, "hrp_period", h.hrp_period);
    if let Some(l) = h.hrp_limit {
        let _ = writeln!(out, "{IN}hrp_limit = {l}");
    }
    b(out, "reject_invalid", h.reject_invalid);
    b(out, "reject_ip", h.reject_ip);
    b(out, "reject_unresolvable", h.reject_unresolvable);
    s(out, "dns_failure", &h.dns_failure);
    if h.disabled {
        let _ = writeln!(out, "{IN}disabled = true");
    }
    s(out, "comment", &h.comment);
}

fn entry(
    out: &mut String,
    table: &str,
    key: &str,
    value: &str,
    disabled: bool,
    comment: &Option<String>,
) {
    let _ = writeln!(out, "[[{table}]]");
    let _ = writeln!(out, "{key} = {}", toml::Value::String(value.to_string()));
    if disabled {
        out.push_str("disabled = true\n");
    }
    if let Some(c) = comment {
        let _ = writeln!(out, "comment = {}", toml::Value::String(c.clone()));
    }
}

/// Writes one `[[checkhelo_blacklist]]` entry.
pub(super) fn write_blacklist(out: &mut String, b: &HeloBlacklistDef) {
    entry(
        out,
        "checkhelo_blacklist",
        "helo",
        &b.helo,
        b.disabled,
        &b.comment,
    );
}

/// Writes one `[[checkhelo_whitelist]]` entry.
pub(super) fn write_whitelist(out: &mut String, w: &HeloWhitelistDef) {
    entry(
        out,
        "checkhelo_whitelist",
        "source",
        &w.source,
        w.disabled,
        &w.comment,
    );
}
