//! The policy file's accounting rows: a policy's `[[policy.accounting]]` tables (sizes
//! with units, `size_limit = "10GB"`), read ([`FileAccounting::convert`]) and written
//! ([`write_row`]).

use std::fmt::Write;

use serde::Deserialize;
use sluice_engine::AccountingDef;
use toml::Spanned;

use super::export::size_text;
use super::mirror::{ConvertError, IntOrText, ObjSpans};
use super::units::parse_size;

/// `[[policy.accounting]]` as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileAccounting {
    name: Spanned<String>,
    track: Spanned<String>,
    period: Spanned<String>,
    time_zone: Option<Spanned<String>>,
    message_count_limit: Option<Spanned<u64>>,
    recipient_count_limit: Option<Spanned<u64>>,
    size_limit: Option<Spanned<IntOrText>>,
    verdict: Option<Spanned<String>>,
    data: Option<Spanned<String>>,
    last_accounting: Option<Spanned<bool>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

fn inner<T>(v: Option<Spanned<T>>) -> Option<T> {
    v.map(Spanned::into_inner)
}

impl FileAccounting {
    /// Converts to the model; the fields' spans go into the row's `spans` (the fields
    /// [`sluice_engine::compile`] names in its findings).
    pub(super) fn convert(
        self,
        policy_label: &str,
        spans: &mut ObjSpans,
        errors: &mut Vec<ConvertError>,
    ) -> AccountingDef {
        macro_rules! take {
            ($($f:ident),*) => {
                $( spans.fields.push((stringify!($f), self.$f.span())); )*
            };
        }
        macro_rules! take_opt {
            ($($f:ident),*) => {
                $( if let Some(v) = &self.$f { spans.fields.push((stringify!($f), v.span())); } )*
            };
        }
        take!(name, track, period);
        take_opt!(
            time_zone,
            message_count_limit,
            recipient_count_limit,
            size_limit,
            verdict,
            data,
            last_accounting,
            disabled,
            comment
        );
        let label = format!("{policy_label} > accounting {:?}", self.name.get_ref());
        let size_limit = self.size_limit.map(|v| {
            let span = v.span();
            let parsed = match v.into_inner() {
                IntOrText::Int(n) => {
                    u64::try_from(n).map_err(|_| format!("size_limit {n} is negative"))
                }
                IntOrText::Text(t) => parse_size(&t),
            };
            parsed.unwrap_or_else(|message| {
                errors.push(ConvertError {
                    span,
                    field: format!("{label} > size_limit"),
                    message,
                });
                0
            })
        });
        AccountingDef {
            name: self.name.into_inner(),
            track: self.track.into_inner(),
            period: self.period.into_inner(),
            time_zone: inner(self.time_zone),
            message_count_limit: inner(self.message_count_limit),
            recipient_count_limit: inner(self.recipient_count_limit),
            size_limit,
            verdict: inner(self.verdict),
            data: inner(self.data),
            last_accounting: inner(self.last_accounting).unwrap_or(false),
            disabled: inner(self.disabled).unwrap_or(false),
            comment: inner(self.comment),
        }
    }
}

/// Writes one `[[policy.accounting]]` table (fields in a fixed order, unset ones left
/// out).
pub(super) fn write_row(out: &mut String, a: &AccountingDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[[policy.accounting]]\n");
    let s = |out: &mut String, k: &str, v: &str| {
        let _ = writeln!(out, "{IN}{k} = {}", toml::Value::String(v.to_string()));
    };
    s(out, "name", &a.name);
    s(out, "track", &a.track);
    s(out, "period", &a.period);
    if let Some(tz) = &a.time_zone {
        s(out, "time_zone", tz);
    }
    if let Some(n) = a.message_count_limit {
        let _ = writeln!(out, "{IN}message_count_limit = {n}");
    }
    if let Some(n) = a.recipient_count_limit {
        let _ = writeln!(out, "{IN}recipient_count_limit = {n}");
    }
    if let Some(n) = a.size_limit {
        let _ = writeln!(out, "{IN}size_limit = {}", size_text(n));
    }
    if let Some(v) = &a.verdict {
        s(out, "verdict", v);
    }
    if let Some(d) = &a.data {
        s(out, "data", d);
    }
    if a.last_accounting {
        let _ = writeln!(out, "{IN}last_accounting = true");
    }
    if a.disabled {
        let _ = writeln!(out, "{IN}disabled = true");
    }
    if let Some(c) = &a.comment {
        s(out, "comment", c);
    }
}
