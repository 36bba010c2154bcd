//! The policy file's greylisting parts: a policy's `[policy.greylisting]` table (periods
//! with units, `period = "4m"`) and the top-level `[[greylisting_whitelist]]` entries,
//! read ([`FileGreylisting::convert`]) and written ([`write_policy`], [`write_whitelist`]).

use std::fmt::Write;

use serde::Deserialize;
use sluice_engine::{GreylistWhitelistDef, GreylistingDef};
use toml::Spanned;

use super::export::period_text;
use super::mirror::{ConvertError, IntOrText, ObjSpans};
use super::units::parse_period;

/// `[policy.greylisting]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileGreylisting {
    enabled: Option<Spanned<bool>>,
    period: Option<Spanned<IntOrText>>,
    track: Option<Spanned<String>>,
    ipv6_prefix: Option<Spanned<u8>>,
    auth_validity: Option<Spanned<IntOrText>>,
    unauth_validity: Option<Spanned<IntOrText>>,
    auto_whitelist: Option<Spanned<bool>>,
    auto_whitelist_period: Option<Spanned<IntOrText>>,
    auto_whitelist_count: Option<Spanned<u64>>,
    auto_whitelist_percentage: Option<Spanned<u64>>,
    auto_blacklist: Option<Spanned<bool>>,
    auto_blacklist_period: Option<Spanned<IntOrText>>,
    auto_blacklist_count: Option<Spanned<u64>>,
    auto_blacklist_percentage: Option<Spanned<u64>>,
    training: Option<Spanned<bool>>,
    defer_message: Option<Spanned<String>>,
    blacklist_message: Option<Spanned<String>>,
    skip_spf_pass: Option<Spanned<bool>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

/// `[[greylisting_whitelist]]` as written.
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

impl FileGreylisting {
    /// Converts to the model; spans go into the policy's `spans` as `greylisting.<field>`
    /// (the fields [`sluice_engine::compile`] names in its findings).
    pub(super) fn convert(
        self,
        policy_label: &str,
        spans: &mut ObjSpans,
        errors: &mut Vec<ConvertError>,
    ) -> GreylistingDef {
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
        let d = GreylistingDef {
            period: period("greylisting.period", self.period),
            auth_validity: period("greylisting.auth_validity", self.auth_validity),
            unauth_validity: period("greylisting.unauth_validity", self.unauth_validity),
            auto_whitelist_period: period(
                "greylisting.auto_whitelist_period",
                self.auto_whitelist_period,
            ),
            auto_blacklist_period: period(
                "greylisting.auto_blacklist_period",
                self.auto_blacklist_period,
            ),
            ..GreylistingDef::default()
        };
        macro_rules! take {
            ($($f:ident),*) => {
                $(
                    if let Some(v) = &self.$f {
                        spans.fields.push((concat!("greylisting.", stringify!($f)), v.span()));
                    }
                )*
            };
        }
        take!(
            enabled,
            track,
            ipv6_prefix,
            auto_whitelist,
            auto_whitelist_count,
            auto_whitelist_percentage,
            auto_blacklist,
            auto_blacklist_count,
            auto_blacklist_percentage,
            training,
            defer_message,
            blacklist_message,
            skip_spf_pass
        );
        GreylistingDef {
            enabled: inner(self.enabled),
            track: inner(self.track),
            ipv6_prefix: inner(self.ipv6_prefix),
            auto_whitelist: inner(self.auto_whitelist),
            auto_whitelist_count: inner(self.auto_whitelist_count),
            auto_whitelist_percentage: inner(self.auto_whitelist_percentage),
            auto_blacklist: inner(self.auto_blacklist),
            auto_blacklist_count: inner(self.auto_blacklist_count),
            auto_blacklist_percentage: inner(self.auto_blacklist_percentage),
            training: inner(self.training),
            defer_message: inner(self.defer_message),
            blacklist_message: inner(self.blacklist_message),
            skip_spf_pass: inner(self.skip_spf_pass),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
            ..d
        }
    }
}

impl FileWhitelist {
    /// Converts to the model.
    pub(super) fn convert(self) -> GreylistWhitelistDef {
        GreylistWhitelistDef {
            source: self.source.into_inner(),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

/// Writes a policy's `[policy.greylisting]` table (fields in a fixed order, unset ones left
/// out).
pub(super) fn write_policy(out: &mut String, g: &GreylistingDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[policy.greylisting]\n");
    let b = |out: &mut String, k: &str, v: Option<bool>| {
        if let Some(v) = v {
            let _ = writeln!(out, "{IN}{k} = {v}");
        }
    };
    let n = |out: &mut String, k: &str, v: Option<u64>| {
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
    b(out, "enabled", g.enabled);
    p(out, "period", g.period);
    s(out, "track", &g.track);
    n(out, "ipv6_prefix", g.ipv6_prefix.map(u64::from));
    p(out, "auth_validity", g.auth_validity);
    p(out, "unauth_validity", g.unauth_validity);
    b(out, "auto_whitelist", g.auto_whitelist);
    p(out, "auto_whitelist_period", g.auto_whitelist_period);
    n(out, "auto_whitelist_count", g.auto_whitelist_count);
    n(
        out,
        "auto_whitelist_percentage",
        g.auto_whitelist_percentage,
    );
    b(out, "auto_blacklist", g.auto_blacklist);
    p(out, "auto_blacklist_period", g.auto_blacklist_period);
    n(out, "auto_blacklist_count", g.auto_blacklist_count);
    n(
        out,
        "auto_blacklist_percentage",
        g.auto_blacklist_percentage,
    );
    b(out, "training", g.training);
    s(out, "defer_message", &g.defer_message);
    s(out, "blacklist_message", &g.blacklist_message);
    b(out, "skip_spf_pass", g.skip_spf_pass);
    if g.disabled {
        let _ = writeln!(out, "{IN}disabled = true");
    }
    s(out, "comment", &g.comment);
}

/// Writes one `[[greylisting_whitelist]]` entry.
pub(super) fn write_whitelist(out: &mut String, w: &GreylistWhitelistDef) {
    out.push_str("[[greylisting_whitelist]]\n");
    let _ = writeln!(out, "source = {}", toml::Value::String(w.source.clone()));
    if w.disabled {
        out.push_str("disabled = true\n");
    }
    if let Some(c) = &w.comment {
        let _ = writeln!(out, "comment = {}", toml::Value::String(c.clone()));
    }
}
