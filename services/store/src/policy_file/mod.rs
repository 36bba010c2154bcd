//! The declarative TOML policy file: `sluice policy import|export|check`.
//!
//! The format is the serde shape of [`PolicySetDef`]:
//!
//! ```toml
//! [[group]]
//! name = "internal_ips"
//! members = ["10.0.0.0/8", "192.168.0.0/16"]   # or [[group.members]] tables with `member`
//!
//! [[policy]]
//! name = "Inbound"
//! priority = 10
//!
//! [[policy.member]]
//! source = "!%internal_ips"
//! destination = "@example.com"
//!
//! [[policy.quota]]
//! name = "per sender"
//! track = "Sender:user@domain"
//! period = "1h"              # or seconds: 3600; units s, m, h, d, w
//! verdict = "DEFER"
//!
//! [[policy.quota.limit]]
//! type = "MessageCumulativeSize"
//! limit = "10MB"             # or bytes; KB/MB/GB are 1000-based, KiB/MiB/GiB 1024-based
//! ```
//!
//! Unknown fields are errors. Every finding — TOML syntax, wrong types, bad units, and the
//! engine's validation ([`sluice_engine::compile`]) — names the file, line and field.

mod accounting;
mod checkhelo;
mod checkspf;
mod diff;
mod export;
mod greylisting;
mod locate;
mod message_caps;
mod mirror;
mod sections;
mod units;

use std::fmt;
use std::ops::Range;

use sluice_engine::model::PolicySetDef;
use sluice_engine::{compile, Severity};

pub use diff::diff;
pub use export::{period_text, size_text};
pub use units::{parse_period, parse_size};

/// One finding in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDiagnostic {
    /// Error (the file cannot be loaded) or warning.
    pub severity: Severity,
    /// The file name as given to [`parse`].
    pub file: String,
    /// 1-based line; 0 when the finding is about the file as a whole.
    pub line: usize,
    /// Path of the field, like `policy "Inbound" > quota "per sender" > track`; may be empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileDiagnostic {
    /// `policies.toml:14: policy "Inbound" > quota "per sender" > track: unknown track ...`,
    /// with `warning: ` before the field for warnings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        f.write_str(": ")?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// A policy file that loads.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// The definition, in file order.
    pub def: PolicySetDef,
    /// Findings that do not stop loading (inert quotas, empty groups, ...).
    pub warnings: Vec<FileDiagnostic>,
}

/// Parses and validates a policy file. `file` is only used in messages. On failure returns
/// every finding, errors first, then by line.
///
/// Every finding it can: all value errors (periods, sizes) and all of the engine's
/// validation findings at once. A TOML error (syntax, unknown field, wrong type) stops the
/// reading of its top-level `[[group]]` or `[[policy]]` section only: each section is then
/// read on its own, one error reported per broken section, and the other sections are
/// still validated together (leaving out findings about groups whose section is broken).
pub fn parse(file: &str, text: &str) -> Result<ParsedFile, Vec<FileDiagnostic>> {
    match toml::from_str::<mirror::FileSet>(text) {
        Ok(set) => validate(file, text, set, &[]),
        Err(e) => Err(read_by_section(file, text, e)),
    }
}

/// Converts and compiles a read file. `broken_groups` names groups left out because their
/// section could not be read: findings that mention them are dropped.
fn validate(
    file: &str,
    text: &str,
    set: mirror::FileSet,
    broken_groups: &[String],
) -> Result<ParsedFile, Vec<FileDiagnostic>> {
    let line_of = |span: Option<Range<usize>>| span.map_or(0, |s| line_at(text, s.start));
    let diag = |severity, span, field, message| FileDiagnostic {
        severity,
        file: file.to_owned(),
        line: line_of(span),
        field,
        message,
    };
    let (def, index, convert_errors) = set.convert();
    // A value in error was converted as 0: the engine's finding about it says the same thing.
    let bad_spans: Vec<Range<usize>> = convert_errors.iter().map(|e| e.span.clone()).collect();
    let mut out: Vec<FileDiagnostic> = convert_errors
        .into_iter()
        .map(|e| diag(Severity::Error, Some(e.span), e.field, e.message))
        .collect();
    let findings = match compile(&def) {
        Ok(compiled) => compiled.warnings,
        Err(findings) => findings,
    };
    for d in findings {
        if broken_groups
            .iter()
            .any(|g| d.message.contains(&format!("%{g}")))
        {
            continue;
        }
        let (span, field) = locate::locate(&def, &index, &d.location);
        if span.as_ref().is_some_and(|s| bad_spans.contains(s)) {
            continue;
        }
        out.push(diag(d.severity, span, field, d.message));
    }
    if out.iter().any(|d| d.severity == Severity::Error) {
        sort(&mut out);
        return Err(out);
    }
    Ok(ParsedFile { def, warnings: out })
}

/// Errors first, then by line; stable for equal keys.
fn sort(findings: &mut [FileDiagnostic]) {
    findings.sort_by_key(|d| (std::cmp::Reverse(d.severity), d.line));
}

/// The finding for a TOML error in `text`.
fn toml_error(file: &str, text: &str, e: &toml::de::Error) -> FileDiagnostic {
    let (line, field) = match e.span() {
        Some(span) => (line_at(text, span.start), locate::path_at(text, span.start)),
        None => (0, String::new()),
    };
    FileDiagnostic {
        severity: Severity::Error,
        file: file.to_owned(),
        line,
        field,
        message: with_field_hint(e.message().trim()),
    }
}

/// serde's "unknown field `descriptoin`, expected one of `name`, ..." with
/// "; did you mean `description`?" when one of the expected fields is close.
fn with_field_hint(message: &str) -> String {
    let hint = (|| {
        let rest = message.strip_prefix("unknown field `")?;
        let (field, expected) = rest.split_once('`')?;
        let candidates = expected.split('`').skip(1).step_by(2);
        sluice_engine::suggest::closest(field, candidates)
    })();
    match hint {
        Some(best) => format!("{message}; did you mean `{best}`?"),
        None => message.to_owned(),
    }
}

/// After a TOML error in the whole file: reads each top-level section on its own, reports
/// each broken one, and validates the others together.
fn read_by_section(file: &str, text: &str, first: toml::de::Error) -> Vec<FileDiagnostic> {
    let sections = sections::split(text);
    let mut out = Vec::new();
    let mut good = Vec::new();
    let mut broken_groups = Vec::new();
    for section in &sections {
        let alone = sections::keep(text, std::slice::from_ref(&section.lines));
        match toml::from_str::<mirror::FileSet>(&alone) {
            Ok(_) => good.push(section.lines.clone()),
            Err(e) => {
                out.push(toml_error(file, &alone, &e));
                if section.is_group {
                    broken_groups.extend(sections::name_of(&text[section.lines.clone()]));
                }
            }
        }
    }
    if out.is_empty() {
        // Every section reads on its own but not together: report the file's own error.
        return vec![toml_error(file, text, &first)];
    }
    let rest = sections::keep(text, &good);
    if let Ok(set) = toml::from_str::<mirror::FileSet>(&rest) {
        match validate(file, &rest, set, &broken_groups) {
            Ok(parsed) => out.extend(parsed.warnings),
            Err(findings) => out.extend(findings),
        }
    }
    sort(&mut out);
    out
}

/// Exports `def` as a policy file that [`parse`] reads back to the same definition, in the
/// layout of `deploy/policies.example.toml` (see `docs/policies.md`). Comments are not kept: the
/// database has no place for them.
pub fn to_toml(def: &PolicySetDef) -> String {
    export::write(def)
}

/// 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
