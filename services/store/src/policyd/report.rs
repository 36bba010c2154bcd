//! What an import did, in words an operator can check.

use std::fmt;

use sluice_engine::model::PolicySetDef;

/// Something the importer left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// The object (`quota #7 "Limit incoming IP"`, `3 greylisting rules`, ...).
    pub what: String,
    /// Why it was left out, and what that means for behaviour.
    pub why: String,
}

/// The result of reading a Policyd v2 database.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// The imported definition (write it with `Store::replace_all`).
    pub def: PolicySetDef,
    /// One line per imported object (`policy "Default" (Policyd #1)`, ...).
    pub imported: Vec<String>,
    /// Objects left out, each with a reason.
    pub skipped: Vec<Skipped>,
    /// Conversions and renames the operator should know about (unit changes, counters that
    /// change name, duplicate names made unique, validation findings).
    pub notes: Vec<String>,
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl fmt::Display for ImportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let def = &self.def;
        let group_members: usize = def.groups.iter().map(|g| g.members.len()).sum();
        let members: usize = def.policies.iter().map(|p| p.members.len()).sum();
        let rules: usize = def.policies.iter().map(|p| p.access_control.len()).sum();
        let quotas: usize = def.policies.iter().map(|p| p.quotas.len()).sum();
        let limits: usize = def
            .policies
            .iter()
            .flat_map(|p| &p.quotas)
            .map(|q| q.limits.len())
            .sum();
        writeln!(f, "Imported from Policyd v2:")?;
        for line in [
            plural(def.policies.len(), "policy", "policies"),
            plural(members, "policy member", "policy members"),
            plural(def.groups.len(), "group", "groups"),
            plural(group_members, "group member", "group members"),
            plural(rules, "access control rule", "access control rules"),
            plural(quotas, "quota", "quotas"),
            plural(limits, "quota limit", "quota limits"),
            plural(
                def.policies
                    .iter()
                    .filter(|p| p.greylisting.is_some())
                    .count(),
                "policy with greylisting",
                "policies with greylisting",
            ),
            plural(
                def.greylisting_whitelist.len(),
                "greylisting whitelist entry",
                "greylisting whitelist entries",
            ),
            plural(
                def.policies.iter().filter(|p| p.checkspf.is_some()).count(),
                "policy with CheckSPF",
                "policies with CheckSPF",
            ),
            plural(
                def.policies
                    .iter()
                    .filter(|p| p.checkhelo.is_some())
                    .count(),
                "policy with HELO checks",
                "policies with HELO checks",
            ),
            plural(
                def.checkhelo_blacklist.len(),
                "HELO blacklist entry",
                "HELO blacklist entries",
            ),
            plural(
                def.checkhelo_whitelist.len(),
                "HELO whitelist entry",
                "HELO whitelist entries",
            ),
            plural(
                def.policies.iter().map(|p| p.accounting.len()).sum(),
                "accounting row",
                "accounting rows",
            ),
        ] {
            writeln!(f, "  {line}")?;
        }
        if !self.notes.is_empty() {
            writeln!(f, "Notes ({}):", self.notes.len())?;
            for note in &self.notes {
                writeln!(f, "  - {note}")?;
            }
        }
        if !self.skipped.is_empty() {
            writeln!(f, "Skipped ({}):", self.skipped.len())?;
            for s in &self.skipped {
                writeln!(f, "  - {}: {}", s.what, s.why)?;
            }
        }
        Ok(())
    }
}
