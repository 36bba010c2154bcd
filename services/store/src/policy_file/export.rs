//! Writing a policy set as a policy file, in the layout of `deploy/policies.example.toml`:
//! periods and sizes with units (`"1h"`, `"10MB"`), group members inline
//! (`members = ["10.0.0.0/8", ...]`), a policy's tables indented by two spaces and a quota's
//! limits by four, fields in a fixed order and unset optional fields left out.
//!
//! Comments (`# ...`) are not part of the model and cannot be written back; the `comment`
//! and `description` fields are.

use std::fmt::Write;

use sluice_engine::model::{GroupDef, LimitDef, PolicyDef, PolicySetDef, QuotaDef};

/// The text of `def` as a policy file. Writing the result of reading this text gives the
/// same text again.
pub fn write(def: &PolicySetDef) -> String {
    let mut out = String::new();
    let mut sections = 0;
    for g in &def.groups {
        blank_line(&mut out, &mut sections);
        group(&mut out, g);
    }
    for p in &def.policies {
        blank_line(&mut out, &mut sections);
        policy(&mut out, p);
    }
    for w in &def.greylisting_whitelist {
        blank_line(&mut out, &mut sections);
        super::greylisting::write_whitelist(&mut out, w);
    }
    for b in &def.checkhelo_blacklist {
        blank_line(&mut out, &mut sections);
        super::checkhelo::write_blacklist(&mut out, b);
    }
    for w in &def.checkhelo_whitelist {
        blank_line(&mut out, &mut sections);
        super::checkhelo::write_whitelist(&mut out, w);
    }
    out
}

/// One blank line between top-level sections.
fn blank_line(out: &mut String, sections: &mut usize) {
    if *sections > 0 {
        out.push('\n');
    }
    *sections += 1;
}

/// `value` as a TOML string (quoted and escaped).
fn quoted(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

fn string(out: &mut String, indent: &str, key: &str, value: &str) {
    let _ = writeln!(out, "{indent}{key} = {}", quoted(value));
}

fn opt_string(out: &mut String, indent: &str, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        string(out, indent, key, v);
    }
}

fn flag(out: &mut String, indent: &str, key: &str, value: bool) {
    if value {
        let _ = writeln!(out, "{indent}{key} = true");
    }
}

fn group(out: &mut String, g: &GroupDef) {
    out.push_str("[[group]]\n");
    string(out, "", "name", &g.name);
    flag(out, "", "disabled", g.disabled);
    opt_string(out, "", "comment", &g.comment);
    let members: Vec<String> = g
        .members
        .iter()
        .map(|m| {
            if !m.disabled && m.comment.is_none() {
                return quoted(&m.member);
            }
            let mut t = format!("{{ member = {}", quoted(&m.member));
            if m.disabled {
                t.push_str(", disabled = true");
            }
            if let Some(c) = &m.comment {
                let _ = write!(t, ", comment = {}", quoted(c));
            }
            t.push_str(" }");
            t
        })
        .collect();
    let _ = writeln!(out, "members = [{}]", members.join(", "));
}

fn policy(out: &mut String, p: &PolicyDef) {
    out.push_str("[[policy]]\n");
    string(out, "", "name", &p.name);
    let _ = writeln!(out, "priority = {}", p.priority);
    opt_string(out, "", "description", &p.description);
    flag(out, "", "disabled", p.disabled);
    flag(out, "", "monitor", p.monitor);
    const IN: &str = "  ";
    for m in &p.members {
        let _ = write!(out, "\n{IN}[[policy.member]]\n");
        opt_string(out, IN, "source", &m.source);
        opt_string(out, IN, "destination", &m.destination);
        flag(out, IN, "disabled", m.disabled);
        opt_string(out, IN, "comment", &m.comment);
    }
    for a in &p.access_control {
        let _ = write!(out, "\n{IN}[[policy.access_control]]\n");
        string(out, IN, "name", &a.name);
        string(out, IN, "verdict", &a.verdict);
        opt_string(out, IN, "data", &a.data);
        flag(out, IN, "disabled", a.disabled);
        opt_string(out, IN, "comment", &a.comment);
    }
    for q in &p.quotas {
        quota(out, q);
    }
    if let Some(g) = &p.greylisting {
        super::greylisting::write_policy(out, g);
    }
    if let Some(c) = &p.message_caps {
        super::message_caps::write_policy(out, c);
    }
    if let Some(c) = &p.checkspf {
        super::checkspf::write_policy(out, c);
    }
    if let Some(h) = &p.checkhelo {
        super::checkhelo::write_policy(out, h);
    }
    for a in &p.accounting {
        super::accounting::write_row(out, a);
    }
}

fn quota(out: &mut String, q: &QuotaDef) {
    const IN: &str = "  ";
    let _ = write!(out, "\n{IN}[[policy.quota]]\n");
    string(out, IN, "name", &q.name);
    string(out, IN, "track", &q.track);
    let _ = writeln!(out, "{IN}period = {}", period_text(q.period));
    string(out, IN, "verdict", &q.verdict);
    opt_string(out, IN, "data", &q.data);
    flag(out, IN, "last_quota", q.last_quota);
    flag(out, IN, "disabled", q.disabled);
    opt_string(out, IN, "comment", &q.comment);
    opt_string(out, IN, "release", &q.release);
    if let Some(n) = q.max_held {
        let _ = writeln!(out, "{IN}max_held = {n}");
    }
    if let Some(secs) = q.max_hold_age {
        let _ = writeln!(out, "{IN}max_hold_age = {}", period_text(secs));
    }
    opt_string(out, IN, "on_expiry", &q.on_expiry);
    for l in &q.limits {
        limit(out, l);
    }
}

fn limit(out: &mut String, l: &LimitDef) {
    const IN: &str = "    ";
    let _ = writeln!(out, "{IN}[[policy.quota.limit]]");
    string(out, IN, "type", &l.kind);
    let value = if l.kind.eq_ignore_ascii_case("MessageCumulativeSize") {
        size_text(l.limit)
    } else {
        l.limit.to_string()
    };
    let _ = writeln!(out, "{IN}limit = {value}");
    flag(out, IN, "disabled", l.disabled);
    opt_string(out, IN, "comment", &l.comment);
}

/// A period in the largest unit that divides it exactly (`"1h"`, `"90m"`, `"45s"`, `"7d"`),
/// as [`super::parse_period`] reads it; weeks are written in days.
pub fn period_text(secs: u64) -> String {
    if secs == 0 {
        return "0".into();
    }
    for (unit, n) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs.is_multiple_of(n) {
            return format!("\"{}{unit}\"", secs / n);
        }
    }
    format!("\"{secs}s\"")
}

/// A size in the unit that writes it roundest — fewest digits before trailing zeros, then
/// fewest digits, then 1000-based first — of those that divide it exactly (`"10MB"`,
/// `"512KiB"`, `"8000KiB"` for 8 192 000, a Policyd limit of 8000 kB); plain bytes when no
/// unit divides it. As [`super::parse_size`] reads it.
pub fn size_text(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    const UNITS: [(&str, u64); 8] = [
        ("TB", 1_000_000_000_000),
        ("GB", 1_000_000_000),
        ("MB", 1_000_000),
        ("KB", 1_000),
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    UNITS
        .iter()
        .enumerate()
        .filter(|(_, (_, n))| bytes.is_multiple_of(*n))
        .min_by_key(|&(i, (_, n))| (significant_digits(bytes / n), (bytes / n).ilog10(), i))
        .map_or_else(
            || bytes.to_string(),
            |(_, (unit, n))| format!("\"{}{unit}\"", bytes / n),
        )
}

/// Digits of `n` without its trailing zeros (`8000` has 1, `8192` has 4).
fn significant_digits(mut n: u64) -> u32 {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n.ilog10() + 1
}

#[cfg(test)]
mod tests {
    use super::super::{parse_period, parse_size};
    use super::*;

    #[test]
    fn periods_and_sizes_read_back() {
        for secs in [0, 1, 45, 60, 90, 3600, 5400, 86_400, 604_800, 86_401] {
            let text = period_text(secs);
            assert_eq!(parse_period(text.trim_matches('"')), Ok(secs), "{text}");
        }
        assert_eq!(period_text(3600), "\"1h\"");
        assert_eq!(period_text(604_800), "\"7d\"");
        for bytes in [0, 1, 1000, 1024, 10_000_000, 524_288, 1_000_001, 1 << 40] {
            let text = size_text(bytes);
            assert_eq!(parse_size(text.trim_matches('"')), Ok(bytes), "{text}");
        }
        assert_eq!(size_text(10_000_000), "\"10MB\"");
        assert_eq!(size_text(524_288), "\"512KiB\"");
        assert_eq!(size_text(1_000_001), "1000001");
        assert_eq!(size_text(8_192_000), "\"8000KiB\"");
        assert_eq!(size_text(1_024_000), "\"1000KiB\"");
        assert_eq!(size_text(1_500_000), "\"1500KB\"");
    }
}
