//! Accounting (Policyd v2.1's `Accounting` module): messages, recipients and bytes counted
//! per track key per calendar period (day, ISO week, month) in a time zone, with optional
//! limits and a verdict. Runs last in the chain (Policyd priority 10).
//!
//! - [`def`]: the rows as operators write them;
//! - [`period`]: the one home of the calendar maths (keys, first and next instants);
//! - `settings`: the rows compiled (ranges, counter key heads, verdict texts);
//! - the module itself (plan, judge, END-OF-MESSAGE) is `modules/accounting.rs`.
//!
//! Counters are the state store's ordinary counters: a counter's key names its period
//! (`acct/<policy>/<row>/<Kind>/<period>/<track key>`) and its window outlasts the period
//! ([`period::PeriodKind::window_ms`]), so within its period a counter never loses a
//! charge, the next period starts a new counter, and the store forgets the old one a
//! window after its last charge. Both backends (in process, Redis Cluster through the
//! quota service) therefore count accounting with the same atomic, all-or-nothing
//! arithmetic as quotas, in the request's one state call; END-OF-MESSAGE charges the real
//! size to exactly the counters recorded for the message at RCPT, so a `Recipient:` row is
//! charged once per recipient (Policyd's bug: it charged the EOM request's own, empty,
//! recipient instead).

pub mod def;
pub mod period;
pub(crate) mod settings;

pub use settings::ACCOUNTING_BUCKETS;

use std::sync::Arc;

/// Checks accounting row `d` of policy `policy` as compiling the set would: `Err` lists
/// the errors (warnings are not errors).
pub fn check_row(policy: &str, d: &def::AccountingDef) -> Result<(), Vec<String>> {
    let mut found = settings::Findings::default();
    let _ = settings::compile_row(policy, d, &mut found);
    if found.errors.is_empty() {
        Ok(())
    } else {
        Err(found.errors.into_iter().map(|(_, m)| m).collect())
    }
}

/// What one request added to one accounting counter set, for the per-period totals in the
/// policy database (reports). Only filled for charges that were made (admitted, not a
/// dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accounted {
    /// The policy.
    pub policy: Arc<str>,
    /// The accounting row.
    pub name: Arc<str>,
    /// The period key (`2026-11`, `2026-W48`, `2026-11-30`).
    pub period: String,
    /// The track key (`Sender:@example.com`).
    pub track: String,
    /// Messages added (0 or 1).
    pub messages: u64,
    /// Recipients added (0 or 1: every RCPT the row counted).
    pub recipients: u64,
    /// Bytes added (END-OF-MESSAGE).
    pub bytes: u64,
}
