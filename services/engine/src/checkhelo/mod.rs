//! CheckHelo (Policyd's `CheckHelo` module, with the fixes of Sluice's Part A): checks the
//! HELO/EHLO name a client gave, at RCPT.
//!
//! In Policyd's order, for the matched policies' merged settings:
//! 1. the **whitelist** (`SenderIP:` CIDRs): a client within skips every check;
//! 2. **RejectInvalid**: a bare IP (rejected with `reject_ip`), an address literal (valid),
//!    a FQDN (valid; with `reject_unresolvable` its A/AAAA and MX records are looked up
//!    through the engine's lookups, answered by the edge), anything else rejected;
//! 3. the **blacklist** (exact names and `*` patterns; Policyd's seed entries): the
//!    current HELO, and with `blacklist_period` any blacklisted HELO the address used
//!    within that real window;
//! 4. **HRP**: more than `hrp_limit` distinct HELOs from one address within the real
//!    rolling window `hrp_period` is rejected.
//!
//! 3 (with a period) and 4 need state: one [`op::HeloOp`] on the client address's record
//! in the request's batch ([`crate::state::OpKind::Helo`]), whose arithmetic lives in
//! [`record`]. Policyd's texts: `Invalid HELO/EHLO; ...`.
//!
//! Files: [`def`] (as operators write it), [`settings`] (ranges, merge, lists, the HELO's
//! form), [`record`] (the one home of the state arithmetic), [`op`] (the state op and its
//! answer), this file (plan, verdicts, explanations); the module on the chain is
//! [`crate::modules`]' `checkhelo`.

pub mod def;
pub mod op;
pub mod record;
pub mod settings;

use crate::compile::Policy;
use crate::engine::ModuleVerdict;
use crate::modules::{Lookup, LookupAnswer, LookupAnswers};
use op::{HeloOp, HeloReply};
use record::{HeloOutcome, HeloParams};
use settings::{
    blacklisted, classified, merge, whitelisted, Blacklist, CheckHelo, DnsFailure, HeloForm,
    Whitelist,
};
use sluice_protocol::{Action, PolicyRequest};
use std::sync::Arc;

/// The module's name in verdicts, logs and metrics.
pub const MODULE: &str = "CheckHelo";

/// The merged settings and who they come from (borrowed from the policy set: no
/// reference count is touched unless a verdict names the policy).
#[derive(Debug)]
pub(crate) struct Judging<'p> {
    pub settings: CheckHelo,
    /// The policy whose row decided last (highest priority number).
    pub policy: &'p Arc<str>,
    /// The policy's index in the set.
    pub policy_index: usize,
    /// Every contributing policy runs in monitor mode (or the service does).
    pub monitor: bool,
}

/// The merged settings of the matched policies; `None` when no matched policy has a
/// CheckHelo row.
pub(crate) fn judging<'p>(
    matched: &[(usize, &'p Policy)],
    monitor_all: bool,
) -> Option<Judging<'p>> {
    let settings = merge(matched.iter().filter_map(|(_, p)| p.checkhelo.as_ref()))?;
    let mut policy: Option<(usize, &'p Arc<str>)> = None;
    let mut monitor = true;
    for &(pi, p) in matched.iter().filter(|(_, p)| p.checkhelo.is_some()) {
        policy = Some((pi, &p.name));
        monitor &= p.monitor;
    }
    // Some: the merge found a row.
    let (policy_index, policy) = policy?;
    Some(Judging {
        settings,
        policy,
        policy_index,
        monitor: monitor || monitor_all,
    })
}

/// The DNS questions for `helo`: its addresses and its MX (Policyd accepted either),
/// borrowing the name.
pub fn questions(helo: &str) -> [Lookup<'_>; 2] {
    [
        Lookup::Addresses { name: helo.into() },
        Lookup::Mx {
            domain: helo.into(),
        },
    ]
}

/// The lookups a request needs: the HELO's records, when `reject_unresolvable` applies to
/// it (a FQDN of a client not whitelisted).
pub(crate) fn lookups<'a>(
    j: &Judging<'_>,
    whitelist: &Whitelist,
    req: &'a PolicyRequest<'_>,
) -> Option<[Lookup<'a>; 2]> {
    let helo = &*req.helo_name;
    if helo.is_empty()
        || !j.settings.asks_dns()
        || whitelisted(whitelist, req.client_address).is_some()
        || classified(helo) != HeloForm::Fqdn
    {
        return None;
    }
    Some(questions(helo))
}

/// Policyd's text for a HELO that is neither a FQDN nor an address literal.
pub fn invalid_text(helo: &str) -> String {
    format!("Invalid HELO/EHLO; Must be a FQDN or an address literal, not '{helo}'")
}

/// Policyd's text for a FQDN without A or MX records.
pub fn unresolvable_text(helo: &str) -> String {
    format!("Invalid HELO/EHLO; No A or MX records found for '{helo}'")
}

/// Policyd's text for a failed lookup (a DEFER in Sluice: Policyd rejected on SERVFAIL).
pub fn dns_failure_text(helo: &str) -> String {
    format!("Invalid HELO/EHLO; Failure while trying to resolve '{helo}'")
}

/// Policyd's text for a blacklisted HELO.
pub const BLACKLISTED_TEXT: &str = "Invalid HELO/EHLO; Blacklisted";
/// Policyd's text for too many distinct HELOs.
pub const HRP_TEXT: &str = "Invalid HELO/EHLO; HRP limit exceeded";
/// The text of HRP on without its period or limit (Policyd's data error, a DEFER).
pub const MISCONFIGURED_TEXT: &str =
    "4.3.5 CheckHelo misconfigured: use_hrp needs hrp_period and hrp_limit";

/// What the checks that need no state decided.
#[derive(Debug)]
pub(crate) enum Check {
    /// No HELO name: nothing to check.
    NoHelo,
    /// The client is whitelisted by this entry.
    Whitelisted(Arc<str>),
    /// A verdict: its name (the metric label), action and the explanation.
    Refused {
        name: &'static str,
        action: Action,
        why: String,
    },
    /// Passed every check; the explanation.
    Passed(String),
    /// Run the op (in the request's batch), then judge its answer; what was checked so far.
    State(Box<HeloOp>, String),
}

/// What was checked, for the explanation: kept only while explaining (`sluice explain`);
/// serving, the lines are not even formatted.
struct Notes {
    lines: Option<Vec<String>>,
}

impl Notes {
    fn push(&mut self, line: impl FnOnce() -> String) {
        if let Some(l) = &mut self.lines {
            l.push(line());
        }
    }

    fn joined(self) -> String {
        self.lines.map(|l| l.join("; ")).unwrap_or_default()
    }
}

/// Runs the checks that need no state for `req`, with the answers to its lookups. The
/// notes of [`Check::Passed`] and [`Check::State`] are written only when `explaining`
/// (empty otherwise).
pub(crate) fn check(
    j: &Judging<'_>,
    blacklist: &Blacklist,
    whitelist: &Whitelist,
    req: &PolicyRequest<'_>,
    answers: &LookupAnswers<'_>,
    dry_run: bool,
    explaining: bool,
) -> Check {
    let s = &j.settings;
    let helo = &*req.helo_name;
    if helo.is_empty() {
        return Check::NoHelo;
    }
    if let Some(entry) = whitelisted(whitelist, req.client_address) {
        return Check::Whitelisted(entry.clone());
    }
    let mut notes = Notes {
        lines: explaining.then(Vec::new),
    };
    if s.reject_invalid {
        match classified(helo) {
            HeloForm::BareIp if s.reject_ip => {
                return Check::Refused {
                    name: "invalid",
                    action: Action::Reject(Some(invalid_text(helo))),
                    why: "a bare IP address (reject_ip)".into(),
                }
            }
            HeloForm::BareIp => notes.push(|| "a bare IP address, allowed".into()),
            HeloForm::Literal => notes.push(|| "an address literal".into()),
            HeloForm::Invalid => {
                return Check::Refused {
                    name: "invalid",
                    action: Action::Reject(Some(invalid_text(helo))),
                    why: "neither a FQDN nor an address literal".into(),
                }
            }
            HeloForm::Fqdn if !s.reject_unresolvable => notes.push(|| "a FQDN".into()),
            HeloForm::Fqdn => {
                // Found by name: no questions built (and allocated) to compare with.
                let a = answers.find(|q| matches!(q, Lookup::Addresses { name } if name == helo));
                let mx = answers.find(|q| matches!(q, Lookup::Mx { domain } if domain == helo));
                let has = |x: &LookupAnswer| match x {
                    LookupAnswer::Addresses(v) => !v.is_empty(),
                    LookupAnswer::Records(v) => !v.is_empty(),
                    _ => false,
                };
                if has(a) || has(mx) {
                    notes.push(|| format!("a FQDN that resolves ({})", describe(a, mx)));
                } else if *a == LookupAnswer::NotFound && *mx == LookupAnswer::NotFound {
                    return Check::Refused {
                        name: "unresolvable",
                        action: Action::Reject(Some(unresolvable_text(helo))),
                        why: "a FQDN without A, AAAA or MX records".into(),
                    };
                } else if s.dns_failure == DnsFailure::Defer {
                    return Check::Refused {
                        name: "dns_failure",
                        action: Action::Defer(Some(dns_failure_text(helo))),
                        why: format!(
                            "its DNS lookup failed ({}; dns_failure = defer)",
                            describe(a, mx)
                        ),
                    };
                } else {
                    notes.push(|| {
                        format!(
                            "a FQDN whose DNS lookup failed ({}; dns_failure = pass)",
                            describe(a, mx)
                        )
                    });
                }
            }
        }
    }
    let listed = if s.use_blacklist {
        blacklisted(blacklist, helo).cloned()
    } else {
        None
    };
    if let Some(entry) = &listed {
        if s.blacklist_period_secs == 0 {
            return Check::Refused {
                name: "blacklisted",
                action: Action::Reject(Some(BLACKLISTED_TEXT.into())),
                why: format!("on the HELO blacklist ({entry:?})"),
            };
        }
        notes.push(|| format!("on the HELO blacklist ({entry:?})"));
    } else if s.use_blacklist {
        notes.push(|| "not on the HELO blacklist".into());
    }
    if s.use_hrp && (s.hrp_period_secs == 0 || s.hrp_limit == 0) {
        return Check::Refused {
            name: "misconfigured",
            action: Action::Defer(Some(MISCONFIGURED_TEXT.into())),
            why: "use_hrp without hrp_period and hrp_limit".into(),
        };
    }
    let notes = notes.joined();
    if !s.needs_state() {
        return Check::Passed(notes);
    }
    let ms = |secs: u64| secs.saturating_mul(1000);
    let params = HeloParams {
        hrp_window_ms: if s.use_hrp { ms(s.hrp_period_secs) } else { 0 },
        hrp_limit: if s.use_hrp { s.hrp_limit } else { 0 },
        blacklist_ms: if s.use_blacklist {
            ms(s.blacklist_period_secs)
        } else {
            0
        },
        blacklisted_now: listed.is_some(),
    };
    Check::State(
        Box::new(HeloOp {
            address: client_key(req.client_address),
            helo: helo.into(),
            params,
            dry_run,
        }),
        notes,
    )
}

/// The record's name for a client address (IPv4-mapped IPv6 as IPv4).
pub fn client_key(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
        v4 => v4.to_string(),
    }
}

/// A lookup's answers, shortly.
fn describe(a: &LookupAnswer, mx: &LookupAnswer) -> String {
    let one = |x: &LookupAnswer| match x {
        LookupAnswer::Addresses(v) => v
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        LookupAnswer::Records(v) => v.join(" "),
        LookupAnswer::NotFound => "none".into(),
        LookupAnswer::Failed => "failed".into(),
        LookupAnswer::Unanswered => "not asked".into(),
        LookupAnswer::Spf(s) => s.result.to_string(),
    };
    format!("A/AAAA: {}, MX: {}", one(a), one(mx))
}

/// The action for a state answer: REJECT for a blacklisted address or too many HELOs.
pub fn action_for(outcome: &HeloOutcome) -> Option<Action> {
    match outcome {
        HeloOutcome::Blacklisted { .. } => Some(Action::Reject(Some(BLACKLISTED_TEXT.into()))),
        HeloOutcome::HrpExceeded { .. } => Some(Action::Reject(Some(HRP_TEXT.into()))),
        HeloOutcome::Passed { .. } => None,
    }
}

/// A verdict of this module, for the decision's log.
pub(crate) fn verdict(j: &Judging<'_>, name: &'static str, action: Action) -> ModuleVerdict {
    ModuleVerdict {
        module: MODULE,
        policy: Arc::clone(j.policy),
        name: Arc::from(name),
        action,
        monitor: j.monitor,
        counter: None,
    }
}

/// The explanation of a state answer.
pub(crate) fn explain(j: &Judging<'_>, op: &HeloOp, reply: &HeloReply) -> String {
    let s = &j.settings;
    let what = match reply.outcome {
        HeloOutcome::Blacklisted { until_ms } => format!(
            "client used a blacklisted HELO: blacklisted until {}",
            crate::greylisting::utc(until_ms)
        ),
        HeloOutcome::HrpExceeded { distinct } => format!(
            "{distinct} distinct HELOs within {} (limit {})",
            crate::greylisting::human_duration(s.hrp_period_secs.saturating_mul(1000)),
            s.hrp_limit
        ),
        HeloOutcome::Passed { distinct } if s.use_hrp => format!(
            "{distinct} distinct HELO(s) within {} (limit {})",
            crate::greylisting::human_duration(s.hrp_period_secs.saturating_mul(1000)),
            s.hrp_limit
        ),
        HeloOutcome::Passed { .. } => "not blacklisted".into(),
    };
    let tail = match action_for(&reply.outcome) {
        Some(a) => format!(
            " -> action={a}{}",
            if j.monitor {
                " (monitor mode: logged only)"
            } else {
                ""
            }
        ),
        None => " -> pass".into(),
    };
    format!(
        "  policy {:?}: client {} HELO '{}': {what}{tail}",
        j.policy, op.address, op.helo
    )
}
