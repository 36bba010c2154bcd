//! CheckSPF (Policyd's `CheckSPF` module): the sender's SPF record checked against the
//! client's address, and the result turned into a verdict by Policyd's table (§2.5 of the
//! semantics): with `reject_failed`, `fail` and `permerror` are refused and `temperror`
//! deferred (`Failed SPF check; <reason>`); otherwise, with `add_header`, every result but
//! `pass` prepends a `Received-SPF:` header (RFC 7208 §9.1); otherwise the chain goes on.
//!
//! The check itself is not done here (the engine does no I/O): the module asks for it as a
//! [`Lookup::Spf`] and the caller answers with an SPF implementation over its resolver
//! (`services/dns/src/spf.rs`), within the request's lookup deadline. A check that did not
//! finish (no answer, a failed lookup) counts as `temperror`.
//!
//! Files: [`def`] (the settings as operators write them); this file (merge, verdict,
//! explanation); the module on the chain is `modules/checkspf.rs`.

pub mod def;

use crate::compile::Policy;
use crate::engine::ModuleVerdict;
use crate::modules::{Lookup, LookupAnswer, LookupAnswers, SpfAnswer, SpfResult};
use def::CheckSpfDef;
use sluice_protocol::{Action, PolicyRequest};
use std::borrow::Cow;
use std::sync::Arc;

/// The module's name in verdicts, logs and metrics.
pub const MODULE: &str = "CheckSPF";

/// The prefix of Policyd's refusal and deferral texts.
pub const FAILED_TEXT: &str = "Failed SPF check";

/// The merged settings of the matched policies, and who they come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Judging<'p> {
    /// `RejectFailedSPF`.
    pub reject_failed: bool,
    /// `AddSPFHeader`.
    pub add_header: bool,
    /// The last policy with a CheckSPF row (highest priority number).
    /// Borrowed from the policy set: no reference count is touched unless a verdict names
    /// it.
    pub policy: &'p Arc<str>,
    /// Every contributing policy runs in monitor mode (or the service does).
    pub monitor: bool,
}

/// The per-column merge of the matched policies' rows (evaluation order: a later row's set
/// column wins); `None` when no row is there or `enabled` does not end up on.
pub(crate) fn judging<'p>(
    matched: &[(usize, &'p Policy)],
    monitor_all: bool,
) -> Option<Judging<'p>> {
    let mut merged = CheckSpfDef::default();
    let mut policy: Option<&'p Arc<str>> = None;
    let mut monitor = true;
    for &(_, p) in matched {
        let Some(row) = &p.checkspf else { continue };
        if row.enabled.is_some() {
            merged.enabled = row.enabled;
        }
        if row.reject_failed.is_some() {
            merged.reject_failed = row.reject_failed;
        }
        if row.add_header.is_some() {
            merged.add_header = row.add_header;
        }
        policy = Some(&p.name);
        monitor &= p.monitor;
    }
    let policy = policy?;
    if merged.enabled != Some(true) {
        return None;
    }
    Some(Judging {
        reject_failed: merged.reject_failed == Some(true),
        add_header: merged.add_header == Some(true),
        policy,
        monitor: monitor || monitor_all,
    })
}

/// The SPF question for `req`: `None` for the null sender (Policyd checks only a non-null
/// sender).
pub(crate) fn question<'a>(req: &'a PolicyRequest<'_>) -> Option<Lookup<'a>> {
    if req.sender.is_empty() {
        return None;
    }
    Some(Lookup::Spf {
        ip: req.client_address,
        sender: Cow::Borrowed(&req.sender),
        helo: Cow::Borrowed(&req.helo_name),
    })
}

/// The answer to `req`'s SPF question: the caller's, or a `temperror` made here when the
/// check failed or was not answered (in time). `None` for the null sender.
pub(crate) fn answer<'a>(
    req: &PolicyRequest<'_>,
    answers: &'a LookupAnswers<'_>,
) -> Option<Cow<'a, SpfAnswer>> {
    if req.sender.is_empty() {
        return None;
    }
    // Found by its inputs: no question built (and allocated) to compare with.
    let asked = answers.find(|q| {
        matches!(q, Lookup::Spf { ip, sender, helo }
            if *ip == req.client_address && **sender == *req.sender && **helo == *req.helo_name)
    });
    Some(match asked {
        LookupAnswer::Spf(a) => Cow::Borrowed(&**a),
        _ => Cow::Owned(unfinished(req)),
    })
}

/// A `temperror` answer for a check that did not finish (its header has no `receiver`,
/// which RFC 7208 §9.1 allows).
fn unfinished(req: &PolicyRequest<'_>) -> SpfAnswer {
    let domain = sender_domain(&req.sender).to_string();
    let helo = if req.helo_name.is_empty() {
        "unknown"
    } else {
        &req.helo_name
    };
    SpfAnswer {
        result: SpfResult::TempError,
        header: format!(
            "temperror (SPF check of domain of {} did not finish in time) client-ip={}; \
             envelope-from=\"{}\"; helo={};",
            req.sender, req.client_address, req.sender, helo
        ),
        domain,
        explanation: None,
    }
}

/// The domain part of an address (the whole text when it has no `@`).
fn sender_domain(sender: &str) -> &str {
    sender.rsplit_once('@').map_or(sender, |(_, d)| d)
}

/// Policyd's `<reason>`: the domain's explanation when it gives one, then what the check
/// found (`<domain>, <text>`, as Policyd shows Mail::SPF's local explanation).
pub fn reason(a: &SpfAnswer, sender: &str) -> String {
    let local = match a.result {
        SpfResult::Fail => {
            format!("Sender is not authorized to use '{sender}' in 'mfrom' identity")
        }
        SpfResult::PermError => "Permanent error in processing the SPF record (an invalid \
             record, or more than 10 DNS lookups or 2 void lookups)"
            .into(),
        SpfResult::TempError => {
            "Temporary error while looking up the SPF record (a DNS failure or timeout)".into()
        }
        SpfResult::SoftFail => {
            format!("Sender is probably not authorized to use '{sender}' in 'mfrom' identity")
        }
        SpfResult::Neutral => format!(
            "Domain does not state whether sender is authorized to use '{sender}' in 'mfrom' \
             identity"
        ),
        SpfResult::Pass => format!("Sender is authorized to use '{sender}' in 'mfrom' identity"),
        SpfResult::None => "No applicable sender policy available".into(),
    };
    match &a.explanation {
        Some(e) if !e.is_empty() => format!("{e}; {}, {local}", a.domain),
        _ => format!("{}, {local}", a.domain),
    }
}

/// Policyd's table (§2.5): the action for a result, or `None` when the chain goes on
/// without a word.
pub fn action_for(
    a: &SpfAnswer,
    sender: &str,
    reject_failed: bool,
    add_header: bool,
) -> Option<Action> {
    let refuse = |a: &SpfAnswer| Some(format!("{FAILED_TEXT}; {}", reason(a, sender)));
    match a.result {
        SpfResult::Pass => None,
        SpfResult::Fail | SpfResult::PermError if reject_failed => Some(Action::Reject(refuse(a))),
        SpfResult::TempError if reject_failed => Some(Action::Defer(refuse(a))),
        _ if add_header => Some(Action::Prepend(format!("Received-SPF: {}", a.header))),
        _ => None,
    }
}

/// The verdict of a check (for the decision's log), or `None` when nothing is said.
pub(crate) fn verdict(j: &Judging<'_>, a: &SpfAnswer, sender: &str) -> Option<ModuleVerdict> {
    let action = action_for(a, sender, j.reject_failed, j.add_header)?;
    Some(ModuleVerdict {
        module: MODULE,
        policy: Arc::clone(j.policy),
        name: Arc::from(a.result.as_str()),
        action,
        monitor: j.monitor,
        counter: None,
    })
}

/// The explanation line of a check.
pub(crate) fn explain(j: &Judging<'_>, a: &SpfAnswer, req: &PolicyRequest<'_>) -> String {
    let tail = match action_for(a, &req.sender, j.reject_failed, j.add_header) {
        Some(action) => format!(
            " -> action={action}{}",
            if j.monitor {
                " (monitor mode: logged only)"
            } else {
                ""
            }
        ),
        None => " -> pass".into(),
    };
    format!(
        "  policy {:?} (reject_failed={}, add_header={}): SPF of {} for client {} is {}{tail}",
        j.policy,
        j.reject_failed,
        j.add_header,
        if a.domain.is_empty() {
            sender_domain(&req.sender)
        } else {
            &a.domain
        },
        req.client_address,
        a.result,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(result: SpfResult) -> SpfAnswer {
        SpfAnswer {
            result,
            domain: "example.org".into(),
            explanation: None,
            header: format!("{result} (test) client-ip=192.0.2.1;"),
        }
    }

    #[test]
    fn policyd_result_table() {
        use SpfResult::*;
        let s = "user@example.org";
        // (result, reject+header, reject only, header only, neither) as action keywords.
        let table = [
            (Pass, "-", "-", "-", "-"),
            (Fail, "REJECT", "REJECT", "PREPEND", "-"),
            (SoftFail, "PREPEND", "-", "PREPEND", "-"),
            (Neutral, "PREPEND", "-", "PREPEND", "-"),
            (PermError, "REJECT", "REJECT", "PREPEND", "-"),
            (TempError, "DEFER", "DEFER", "PREPEND", "-"),
            (None, "PREPEND", "-", "PREPEND", "-"),
        ];
        let word = |a: Option<Action>| match a {
            Some(a) => a.to_string().split(' ').next().unwrap().to_string(),
            Option::None => "-".into(),
        };
        for (r, both, reject, header, neither) in table {
            let a = answer(r);
            assert_eq!(word(action_for(&a, s, true, true)), both, "{r}");
            assert_eq!(word(action_for(&a, s, true, false)), reject, "{r}");
            assert_eq!(word(action_for(&a, s, false, true)), header, "{r}");
            assert_eq!(word(action_for(&a, s, false, false)), neither, "{r}");
        }
    }

    #[test]
    fn texts() {
        let mut a = answer(SpfResult::Fail);
        assert_eq!(
            action_for(&a, "u@example.org", true, false)
                .unwrap()
                .to_string(),
            "REJECT Failed SPF check; example.org, Sender is not authorized to use \
             'u@example.org' in 'mfrom' identity"
        );
        a.explanation = Some("See https://example.org/spf".into());
        assert_eq!(
            reason(&a, "u@example.org"),
            "See https://example.org/spf; example.org, Sender is not authorized to use \
             'u@example.org' in 'mfrom' identity"
        );
        let t = answer(SpfResult::SoftFail);
        assert_eq!(
            action_for(&t, "u@example.org", false, true)
                .unwrap()
                .to_string(),
            "PREPEND Received-SPF: softfail (test) client-ip=192.0.2.1;"
        );
    }
}
