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

mod locate;
mod mirror;
mod units;

use std::fmt;
use std::ops::Range;

use sluice_engine::model::PolicySetDef;
use sluice_engine::{compile, Diagnostic, Severity};

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
/// every finding, errors first.
pub fn parse(file: &str, text: &str) -> Result<ParsedFile, Vec<FileDiagnostic>> {
    let line_of = |span: Option<Range<usize>>| span.map_or(0, |s| line_at(text, s.start));
    let set: mirror::FileSet = toml::from_str(text).map_err(|e| {
        let (line, field) = match e.span() {
            Some(span) => (line_at(text, span.start), locate::path_at(text, span.start)),
            None => (0, String::new()),
        };
        vec![FileDiagnostic {
            severity: Severity::Error,
            file: file.to_owned(),
            line,
            field,
            message: e.message().trim().to_owned(),
        }]
    })?;
    let (def, index) = set.convert().map_err(|errors| {
        errors
            .into_iter()
            .map(|e| FileDiagnostic {
                severity: Severity::Error,
                file: file.to_owned(),
                line: line_of(Some(e.span)),
                field: e.field,
                message: e.message,
            })
            .collect::<Vec<_>>()
    })?;
    let to_file = |d: Diagnostic| {
        let (span, field) = locate::locate(&def, &index, &d.location);
        FileDiagnostic {
            severity: d.severity,
            file: file.to_owned(),
            line: line_of(span),
            field,
            message: d.message,
        }
    };
    match compile(&def) {
        Ok(compiled) => {
            let warnings = compiled.warnings.into_iter().map(to_file).collect();
            Ok(ParsedFile { def, warnings })
        }
        Err(findings) => {
            let mut out: Vec<FileDiagnostic> = findings.into_iter().map(to_file).collect();
            // Errors first, then by line; stable for equal keys.
            out.sort_by_key(|d| (std::cmp::Reverse(d.severity), d.line));
            Err(out)
        }
    }
}

/// Exports `def` as a policy file that [`parse`] reads back to the same definition. Periods
/// are written in seconds and sizes in bytes.
pub fn to_toml(def: &PolicySetDef) -> String {
    let body = toml::to_string(def).expect("a PolicySetDef always serializes to TOML");
    format!("# Sluice policy file (exported). Periods are in seconds, sizes in bytes.\n\n{body}")
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
