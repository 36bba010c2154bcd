//! Naming and placing findings: engine [`Location`]s and TOML errors become a byte span and
//! a field path like `policy "Inbound" > quota "per sender" > track`.

use std::fmt;
use std::ops::Range;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use sluice_engine::model::PolicySetDef;
use sluice_engine::Location;
use toml::Spanned;

use super::mirror::SpanIndex;

/// The span and field path of an engine finding. The span is `None` only if the index does
/// not cover the location (it always does for a definition parsed from the file).
pub(super) fn locate(
    def: &PolicySetDef,
    index: &SpanIndex,
    location: &Location,
) -> (Option<Range<usize>>, String) {
    fn join(base: String, field: &str) -> String {
        if field.is_empty() {
            base
        } else {
            format!("{base} > {field}")
        }
    }
    let group = |g: usize| {
        def.groups.get(g).map_or_else(
            || format!("group #{}", g + 1),
            |d| format!("group {:?}", d.name),
        )
    };
    let policy = |p: usize| {
        def.policies.get(p).map_or_else(
            || format!("policy #{}", p + 1),
            |d| format!("policy {:?}", d.name),
        )
    };
    let quota = |p: usize, q: usize| {
        let name = def.policies.get(p).and_then(|d| d.quotas.get(q));
        let q = name.map_or_else(
            || format!("quota #{}", q + 1),
            |d| format!("quota {:?}", d.name),
        );
        format!("{} > {q}", policy(p))
    };
    match *location {
        Location::Set => (None, String::new()),
        Location::Group { group: g, field } => {
            let span = index.groups.get(g).map(|s| s.obj.field(field));
            (span, join(group(g), field))
        }
        Location::GroupMember {
            group: g,
            member,
            field,
        } => {
            let span = index
                .groups
                .get(g)
                .and_then(|s| s.members.get(member))
                .map(|s| s.field(field));
            let name = def
                .groups
                .get(g)
                .and_then(|d| d.members.get(member))
                .map_or_else(
                    || format!("member #{}", member + 1),
                    |m| format!("member {:?}", m.member),
                );
            (span, join(format!("{} > {name}", group(g)), field))
        }
        Location::Policy { policy: p, field } => {
            let span = index.policies.get(p).map(|s| s.obj.field(field));
            (span, join(policy(p), field))
        }
        Location::Member {
            policy: p,
            member,
            field,
        } => {
            let span = index
                .policies
                .get(p)
                .and_then(|s| s.members.get(member))
                .map(|s| s.field(field));
            (
                span,
                join(format!("{} > member #{}", policy(p), member + 1), field),
            )
        }
        Location::AccessControl {
            policy: p,
            rule,
            field,
        } => {
            let span = index
                .policies
                .get(p)
                .and_then(|s| s.access_control.get(rule))
                .map(|s| s.field(field));
            let name = def
                .policies
                .get(p)
                .and_then(|d| d.access_control.get(rule))
                .map_or_else(
                    || format!("access_control #{}", rule + 1),
                    |a| format!("access_control {:?}", a.name),
                );
            (span, join(format!("{} > {name}", policy(p)), field))
        }
        Location::Quota {
            policy: p,
            quota: q,
            field,
        } => {
            let span = index
                .policies
                .get(p)
                .and_then(|s| s.quotas.get(q))
                .map(|s| s.obj.field(field));
            (span, join(quota(p, q), field))
        }
        Location::Limit {
            policy: p,
            quota: q,
            limit,
            field,
        } => {
            let span = index
                .policies
                .get(p)
                .and_then(|s| s.quotas.get(q))
                .and_then(|s| s.limits.get(limit))
                .map(|s| s.field(field));
            let base = format!("{} > limit #{}", quota(p, q), limit + 1);
            (span, join(base, field))
        }
        Location::Accounting {
            policy: p,
            row,
            field,
        } => {
            let span = index
                .policies
                .get(p)
                .and_then(|s| s.accounting.get(row))
                .map(|s| s.field(field));
            let name = def
                .policies
                .get(p)
                .and_then(|d| d.accounting.get(row))
                .map_or_else(
                    || format!("accounting #{}", row + 1),
                    |a| format!("accounting {:?}", a.name),
                );
            (span, join(format!("{} > {name}", policy(p)), field))
        }
    }
}

/// Any TOML document, with spans on every key and value; used only to name the field a
/// TOML/serde error points at.
enum Loose {
    Table(Vec<(Spanned<String>, Spanned<Loose>)>),
    Array(Vec<Spanned<Loose>>),
    Text(String),
    Other,
}

impl<'de> Deserialize<'de> for Loose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Loose;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any TOML value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Loose, E> {
                Ok(Loose::Other)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Loose, E> {
                Ok(Loose::Text(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Loose::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Spanned<String>>()? {
                    let value = map.next_value()?;
                    entries.push((key, value));
                }
                Ok(Loose::Table(entries))
            }
        }
        d.deserialize_any(V)
    }
}

fn contains(span: &Range<usize>, at: usize) -> bool {
    span.start <= at && at < span.end.max(span.start + 1)
}

/// The field path at byte offset `at` of `text` (empty if the text is not even TOML).
pub(super) fn path_at(text: &str, at: usize) -> String {
    let Ok(root) = toml::from_str::<Loose>(text) else {
        return String::new();
    };
    let mut parts = Vec::new();
    walk(&root, at, &mut parts);
    parts.join(" > ")
}

fn walk(node: &Loose, at: usize, parts: &mut Vec<String>) {
    let Loose::Table(entries) = node else {
        return;
    };
    if let Some((key, _)) = entries.iter().find(|(k, _)| contains(&k.span(), at)) {
        parts.push(key.get_ref().clone());
        return;
    }
    // A value containing `at`; else the table-like value whose header comes last before
    // `at` (spans of `[[x]]` tables cover only their header, not the body below it).
    let entry = entries
        .iter()
        .find(|(_, v)| contains(&v.span(), at))
        .or_else(|| {
            entries
                .iter()
                .filter(|(_, v)| is_table_like(v.get_ref()) && v.span().start <= at)
                .max_by_key(|(_, v)| v.span().start)
        });
    let Some((key, value)) = entry else {
        return;
    };
    let label = if key.get_ref() == "members" {
        "member"
    } else {
        key.get_ref().as_str()
    };
    match value.get_ref() {
        Loose::Array(items) => {
            let item = items
                .iter()
                .enumerate()
                .find(|(_, item)| contains(&item.span(), at))
                .or_else(|| {
                    items
                        .iter()
                        .enumerate()
                        .filter(|(_, item)| item.span().start <= at)
                        .max_by_key(|(_, item)| item.span().start)
                });
            let Some((i, item)) = item else {
                parts.push(key.get_ref().clone());
                return;
            };
            parts.push(element_label(label, i, item.get_ref()));
            walk(item.get_ref(), at, parts);
        }
        Loose::Table(_) => {
            parts.push(key.get_ref().clone());
            walk(value.get_ref(), at, parts);
        }
        _ => parts.push(key.get_ref().clone()),
    }
}

fn is_table_like(v: &Loose) -> bool {
    match v {
        Loose::Table(_) => true,
        Loose::Array(items) => {
            !items.is_empty() && items.iter().all(|i| matches!(i.get_ref(), Loose::Table(_)))
        }
        _ => false,
    }
}

/// `policy "Inbound"` for a table with a name, `member "10.0.0.0/8"` for a plain string,
/// else `limit #2`.
fn element_label(label: &str, i: usize, item: &Loose) -> String {
    match item {
        Loose::Text(s) => format!("{label} {s:?}"),
        Loose::Table(entries) => entries
            .iter()
            .find(|(k, _)| k.get_ref() == "name")
            .and_then(|(_, v)| match v.get_ref() {
                Loose::Text(name) => Some(format!("{label} {name:?}")),
                _ => None,
            })
            .unwrap_or_else(|| format!("{label} #{}", i + 1)),
        _ => format!("{label} #{}", i + 1),
    }
}
