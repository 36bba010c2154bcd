//! Validation findings: errors that stop a policy set from loading, and warnings about
//! definitions that load but do nothing (the "whole chain" confusions of Policyd).

use std::fmt;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Loads, but probably not what the operator meant.
    Warning,
    /// Cannot load.
    Error,
}

/// Where in a [`crate::PolicySetDef`] a finding is. Indexes are positions in the definition's
/// vectors; `field` is the field name as written in the policy file (`source`, `track`, ...),
/// or `""` for the object as a whole. The TOML layer maps these to file lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The policy set as a whole.
    Set,
    /// `group[group].field`.
    Group {
        /// Index in `groups`.
        group: usize,
        /// Field name.
        field: &'static str,
    },
    /// `group[group].members[member].field`.
    GroupMember {
        /// Index in `groups`.
        group: usize,
        /// Index in the group's `members`.
        member: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].field`.
    Policy {
        /// Index in `policies`.
        policy: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].member[member].field`.
    Member {
        /// Index in `policies`.
        policy: usize,
        /// Index in the policy's `members`.
        member: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].access_control[rule].field`.
    AccessControl {
        /// Index in `policies`.
        policy: usize,
        /// Index in the policy's `access_control`.
        rule: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].quota[quota].field`.
    Quota {
        /// Index in `policies`.
        policy: usize,
        /// Index in the policy's `quotas`.
        quota: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].quota[quota].limit[limit].field`.
    Limit {
        /// Index in `policies`.
        policy: usize,
        /// Index in the policy's `quotas`.
        quota: usize,
        /// Index in the quota's `limits`.
        limit: usize,
        /// Field name.
        field: &'static str,
    },
    /// `policy[policy].accounting[row].field`.
    Accounting {
        /// Index in `policies`.
        policy: usize,
        /// Index in the policy's `accounting`.
        row: usize,
        /// Field name.
        field: &'static str,
    },
}

/// One validation finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where.
    pub location: Location,
    /// What, in words an operator understands (names the object).
    pub message: String,
}

impl Diagnostic {
    /// An error at `location`.
    pub fn error(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            location,
            message: message.into(),
        }
    }

    /// A warning at `location`.
    pub fn warning(location: Location, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            location,
            message: message.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{sev}: {}", self.message)
    }
}
