//! The policy file as written: a mirror of the model with spans on every field, friendlier
//! value forms (`period = "1h"`, `limit = "10MB"`, `members = ["10.0.0.0/8"]`), and its
//! conversion into a [`PolicySetDef`] plus a [`SpanIndex`] for locating findings.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
use toml::Spanned;

use super::units::{parse_period, parse_size};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileSet {
    #[serde(default)]
    group: Vec<Spanned<FileGroup>>,
    #[serde(default)]
    policy: Vec<Spanned<FilePolicy>>,
    #[serde(default)]
    greylisting_whitelist: Vec<Spanned<super::greylisting::FileWhitelist>>,
    #[serde(default)]
    checkhelo_blacklist: Vec<Spanned<super::checkhelo::FileBlacklist>>,
    #[serde(default)]
    checkhelo_whitelist: Vec<Spanned<super::checkhelo::FileWhitelist>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroup {
    name: Spanned<String>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
    #[serde(default)]
    members: Vec<Spanned<FileGroupMember>>,
}

/// `"10.0.0.0/8"` or `{ member = "10.0.0.0/8", disabled = true, comment = "..." }`.
enum FileGroupMember {
    Plain(String),
    Table(FileGroupMemberTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGroupMemberTable {
    member: Spanned<String>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePolicy {
    name: Spanned<String>,
    priority: Option<Spanned<i32>>,
    description: Option<Spanned<String>>,
    disabled: Option<Spanned<bool>>,
    monitor: Option<Spanned<bool>>,
    #[serde(default)]
    member: Vec<Spanned<FileMember>>,
    #[serde(default)]
    access_control: Vec<Spanned<FileAccessControl>>,
    #[serde(default)]
    quota: Vec<Spanned<FileQuota>>,
    greylisting: Option<Spanned<super::greylisting::FileGreylisting>>,
    message_caps: Option<Spanned<super::message_caps::FileMessageCaps>>,
    checkspf: Option<Spanned<super::checkspf::FileCheckSpf>>,
    checkhelo: Option<Spanned<super::checkhelo::FileCheckHelo>>,
    #[serde(default)]
    accounting: Vec<Spanned<super::accounting::FileAccounting>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMember {
    source: Option<Spanned<String>>,
    destination: Option<Spanned<String>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAccessControl {
    name: Spanned<String>,
    verdict: Spanned<String>,
    data: Option<Spanned<String>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileQuota {
    name: Spanned<String>,
    track: Spanned<String>,
    period: Spanned<IntOrText>,
    verdict: Spanned<String>,
    data: Option<Spanned<String>>,
    last_quota: Option<Spanned<bool>>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
    release: Option<Spanned<String>>,
    max_held: Option<Spanned<u64>>,
    max_hold_age: Option<Spanned<IntOrText>>,
    on_expiry: Option<Spanned<String>>,
    #[serde(default)]
    limit: Vec<Spanned<FileLimit>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimit {
    #[serde(rename = "type")]
    kind: Spanned<String>,
    limit: Spanned<IntOrText>,
    disabled: Option<Spanned<bool>>,
    comment: Option<Spanned<String>>,
}

/// A number, or a string with a unit.
pub(super) enum IntOrText {
    Int(i64),
    Text(String),
}

impl<'de> Deserialize<'de> for IntOrText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number or a string with a unit")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrText, E> {
                Ok(IntOrText::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrText, E> {
                i64::try_from(v)
                    .map(IntOrText::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrText, E> {
                Ok(IntOrText::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for FileGroupMember {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FileGroupMember;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a member spec (string) or a table with `member`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<FileGroupMember, E> {
                Ok(FileGroupMember::Plain(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<FileGroupMember, A::Error> {
                FileGroupMemberTable::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(FileGroupMember::Table)
            }
        }
        d.deserialize_any(V)
    }
}

/// Where one object and its scalar fields are in the file (byte ranges).
#[derive(Debug, Default, Clone)]
pub(super) struct ObjSpans {
    pub whole: Range<usize>,
    pub fields: Vec<(&'static str, Range<usize>)>,
}

impl ObjSpans {
    pub(super) fn new(whole: Range<usize>) -> Self {
        ObjSpans {
            whole,
            fields: Vec::new(),
        }
    }

    fn add<T>(&mut self, name: &'static str, value: &Spanned<T>) {
        self.fields.push((name, value.span()));
    }

    fn add_opt<T>(&mut self, name: &'static str, value: &Option<Spanned<T>>) {
        if let Some(v) = value {
            self.add(name, v);
        }
    }

    /// The span of `field`, or of the whole object when the field is not written.
    pub fn field(&self, field: &str) -> Range<usize> {
        let field = if field == "kind" { "type" } else { field };
        self.fields
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(_, span)| span.clone())
            .unwrap_or_else(|| self.whole.clone())
    }
}

/// Spans of a quota and of its limits.
#[derive(Debug, Default)]
pub(super) struct QuotaSpans {
    pub obj: ObjSpans,
    pub limits: Vec<ObjSpans>,
}

/// Spans of a policy and of its children.
#[derive(Debug, Default)]
pub(super) struct PolicySpans {
    pub obj: ObjSpans,
    pub members: Vec<ObjSpans>,
    pub access_control: Vec<ObjSpans>,
    pub quotas: Vec<QuotaSpans>,
    pub accounting: Vec<ObjSpans>,
}

/// Spans of a group and of its members.
#[derive(Debug, Default)]
pub(super) struct GroupSpans {
    pub obj: ObjSpans,
    pub members: Vec<ObjSpans>,
}

/// Where every object of the converted definition came from, indexed like the definition.
#[derive(Debug, Default)]
pub(super) struct SpanIndex {
    pub groups: Vec<GroupSpans>,
    pub policies: Vec<PolicySpans>,
}

/// A conversion problem: where, which field (path as shown to operators), what.
pub(super) struct ConvertError {
    pub span: Range<usize>,
    pub field: String,
    pub message: String,
}

fn text(v: Option<Spanned<String>>) -> Option<String> {
    v.map(Spanned::into_inner)
}

fn flag(v: Option<Spanned<bool>>) -> bool {
    v.is_some_and(Spanned::into_inner)
}

impl FileSet {
    /// Converts to the model, collecting every value error (periods, sizes, counts); a value
    /// in error is converted as 0.
    pub(super) fn convert(self) -> (PolicySetDef, SpanIndex, Vec<ConvertError>) {
        let mut errors = Vec::new();
        let mut def = PolicySetDef::default();
        let mut index = SpanIndex::default();

        for group in self.group {
            let span = group.span();
            let g = group.into_inner();
            let mut spans = GroupSpans {
                obj: ObjSpans::new(span),
                members: Vec::new(),
            };
            spans.obj.add("name", &g.name);
            spans.obj.add_opt("disabled", &g.disabled);
            spans.obj.add_opt("comment", &g.comment);
            let mut members = Vec::with_capacity(g.members.len());
            for m in g.members {
                let mut obj = ObjSpans::new(m.span());
                members.push(match m.into_inner() {
                    FileGroupMember::Plain(member) => {
                        obj.fields.push(("member", obj.whole.clone()));
                        GroupMemberDef {
                            member,
                            ..GroupMemberDef::default()
                        }
                    }
                    FileGroupMember::Table(t) => {
                        obj.add("member", &t.member);
                        obj.add_opt("disabled", &t.disabled);
                        obj.add_opt("comment", &t.comment);
                        GroupMemberDef {
                            member: t.member.into_inner(),
                            disabled: flag(t.disabled),
                            comment: text(t.comment),
                        }
                    }
                });
                spans.members.push(obj);
            }
            def.groups.push(GroupDef {
                name: g.name.into_inner(),
                disabled: flag(g.disabled),
                comment: text(g.comment),
                members,
            });
            index.groups.push(spans);
        }

        for policy in self.policy {
            let span = policy.span();
            let p = policy.into_inner();
            let label = format!("policy {:?}", p.name.get_ref());
            let mut spans = PolicySpans {
                obj: ObjSpans::new(span),
                ..PolicySpans::default()
            };
            spans.obj.add("name", &p.name);
            spans.obj.add_opt("priority", &p.priority);
            spans.obj.add_opt("description", &p.description);
            spans.obj.add_opt("disabled", &p.disabled);
            spans.obj.add_opt("monitor", &p.monitor);
            let mut out = PolicyDef {
                name: p.name.into_inner(),
                priority: p.priority.map(Spanned::into_inner).unwrap_or(0),
                description: text(p.description),
                disabled: flag(p.disabled),
                monitor: flag(p.monitor),
                ..PolicyDef::default()
            };
            for m in p.member {
                let mut obj = ObjSpans::new(m.span());
                let m = m.into_inner();
                obj.add_opt("source", &m.source);
                obj.add_opt("destination", &m.destination);
                obj.add_opt("disabled", &m.disabled);
                obj.add_opt("comment", &m.comment);
                out.members.push(MemberDef {
                    source: text(m.source),
                    destination: text(m.destination),
                    disabled: flag(m.disabled),
                    comment: text(m.comment),
                });
                spans.members.push(obj);
            }
            for a in p.access_control {
                let mut obj = ObjSpans::new(a.span());
                let a = a.into_inner();
                obj.add("name", &a.name);
                obj.add("verdict", &a.verdict);
                obj.add_opt("data", &a.data);
                obj.add_opt("disabled", &a.disabled);
                obj.add_opt("comment", &a.comment);
                out.access_control.push(AccessControlDef {
                    name: a.name.into_inner(),
                    verdict: a.verdict.into_inner(),
                    data: text(a.data),
                    disabled: flag(a.disabled),
                    comment: text(a.comment),
                });
                spans.access_control.push(obj);
            }
            for q in p.quota {
                let (quota, quota_spans) = convert_quota(q, &label, &mut errors);
                out.quotas.push(quota);
                spans.quotas.push(quota_spans);
            }
            if let Some(g) = p.greylisting {
                out.greylisting = Some(g.into_inner().convert(&label, &mut spans.obj, &mut errors));
            }
            if let Some(c) = p.message_caps {
                out.message_caps =
                    Some(c.into_inner().convert(&label, &mut spans.obj, &mut errors));
            }
            if let Some(c) = p.checkspf {
                out.checkspf = Some(c.into_inner().convert(&mut spans.obj));
            }
            if let Some(h) = p.checkhelo {
                out.checkhelo = Some(h.into_inner().convert(&label, &mut spans.obj, &mut errors));
            }
            for a in p.accounting {
                let mut obj = ObjSpans::new(a.span());
                out.accounting
                    .push(a.into_inner().convert(&label, &mut obj, &mut errors));
                spans.accounting.push(obj);
            }
            def.policies.push(out);
            index.policies.push(spans);
        }
        for w in self.greylisting_whitelist {
            def.greylisting_whitelist.push(w.into_inner().convert());
        }
        for b in self.checkhelo_blacklist {
            def.checkhelo_blacklist.push(b.into_inner().convert());
        }
        for w in self.checkhelo_whitelist {
            def.checkhelo_whitelist.push(w.into_inner().convert());
        }

        (def, index, errors)
    }
}

fn convert_quota(
    q: Spanned<FileQuota>,
    policy_label: &str,
    errors: &mut Vec<ConvertError>,
) -> (QuotaDef, QuotaSpans) {
    let mut spans = QuotaSpans {
        obj: ObjSpans::new(q.span()),
        limits: Vec::new(),
    };
    let q = q.into_inner();
    let label = format!("{policy_label} > quota {:?}", q.name.get_ref());
    for (name, v) in [
        ("name", &q.name),
        ("track", &q.track),
        ("verdict", &q.verdict),
    ] {
        spans.obj.add(name, v);
    }
    spans.obj.add("period", &q.period);
    spans.obj.add_opt("data", &q.data);
    spans.obj.add_opt("last_quota", &q.last_quota);
    spans.obj.add_opt("disabled", &q.disabled);
    spans.obj.add_opt("comment", &q.comment);
    spans.obj.add_opt("release", &q.release);
    spans.obj.add_opt("max_held", &q.max_held);
    spans.obj.add_opt("max_hold_age", &q.max_hold_age);
    spans.obj.add_opt("on_expiry", &q.on_expiry);
    let max_hold_age = q.max_hold_age.map(|age| {
        let span = age.span();
        match age.into_inner() {
            IntOrText::Int(n) => {
                u64::try_from(n).map_err(|_| format!("max_hold_age {n} is negative"))
            }
            IntOrText::Text(t) => parse_period(&t),
        }
        .unwrap_or_else(|message| {
            errors.push(ConvertError {
                span,
                field: format!("{label} > max_hold_age"),
                message,
            });
            0
        })
    });

    let period_span = q.period.span();
    let period = match q.period.into_inner() {
        IntOrText::Int(n) => u64::try_from(n).map_err(|_| format!("period {n} is negative")),
        IntOrText::Text(t) => parse_period(&t),
    }
    .unwrap_or_else(|message| {
        errors.push(ConvertError {
            span: period_span,
            field: format!("{label} > period"),
            message,
        });
        0
    });

    let mut limits = Vec::with_capacity(q.limit.len());
    for (i, l) in q.limit.into_iter().enumerate() {
        let mut obj = ObjSpans::new(l.span());
        let l = l.into_inner();
        obj.add("type", &l.kind);
        obj.add("limit", &l.limit);
        obj.add_opt("disabled", &l.disabled);
        obj.add_opt("comment", &l.comment);
        let is_size = l
            .kind
            .get_ref()
            .eq_ignore_ascii_case("MessageCumulativeSize");
        let limit_span = l.limit.span();
        let value = match l.limit.into_inner() {
            IntOrText::Int(n) => u64::try_from(n).map_err(|_| format!("limit {n} is negative")),
            IntOrText::Text(t) if is_size => parse_size(&t),
            IntOrText::Text(t) => Err(format!(
                "limit {t:?} must be a whole number for a {} limit (units like \"10MB\" are \
                 for MessageCumulativeSize)",
                l.kind.get_ref()
            )),
        }
        .unwrap_or_else(|message| {
            errors.push(ConvertError {
                span: limit_span,
                field: format!("{label} > limit #{} > limit", i + 1),
                message,
            });
            0
        });
        limits.push(LimitDef {
            kind: l.kind.into_inner(),
            limit: value,
            disabled: flag(l.disabled),
            comment: text(l.comment),
        });
        spans.limits.push(obj);
    }

    let quota = QuotaDef {
        name: q.name.into_inner(),
        track: q.track.into_inner(),
        period,
        verdict: q.verdict.into_inner(),
        data: text(q.data),
        last_quota: flag(q.last_quota),
        disabled: flag(q.disabled),
        comment: text(q.comment),
        release: text(q.release),
        max_held: q.max_held.map(Spanned::into_inner),
        max_hold_age,
        on_expiry: text(q.on_expiry),
        limits,
    };
    (quota, spans)
}
