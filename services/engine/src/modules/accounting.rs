//! Accounting: per-period counters per track key (Policyd's Accounting module, priority
//! 10: last in the chain). Settings and period maths: [`crate::accounting`].
//!
//! Planning pushes, for every accounting row of every matched policy (up to and including
//! one with LastAccounting), the ops of the current period's counters: the message count
//! (once per message), the recipient count (per RCPT, when limited), the declared size
//! checked against a size limit, and the size counter recorded for END-OF-MESSAGE. Judging
//! turns a refusal of an enforced limit into the row's verdict (a DEFER says when the
//! period ends) and reports what was counted ([`Decision::accounted`]).

use super::{Flow, Judge, Module, Plan, Trace};
use crate::accounting::period::{period_at, Period};
use crate::accounting::settings::{parse_label, AccountingRule};
use crate::accounting::Accounted;
use crate::compile::{LimitKind, Policy, PolicySet};
use crate::engine::{CounterLevel, Decision, ModuleVerdict};
use crate::state::{CounterOp, CounterReply, OpKind, OpResult, Outcome};
use crate::verdict::with_retry_hint;
use sluice_protocol::{Action, PolicyRequest};

/// The Accounting module.
pub(crate) struct Accounting;

/// The module's name in verdicts, logs and metrics.
pub(crate) const NAME: &str = "Accounting";

impl Module for Accounting {
    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let req = r.req;
        // Read once, and only when a row applies (most requests match no accounting).
        let mut now = None;
        let mut any = false;
        'policies: for &(pi, p) in r.matched {
            let monitor = r.is_monitor(p);
            for (ai, a) in p.accounting.iter().enumerate() {
                if let Some(why) = a.track.skip_reason(req) {
                    cx.note(|| {
                        format!(
                            "Accounting: policy {:?} row {:?} skipped: {why}.",
                            p.name, a.name
                        )
                    });
                    continue;
                }
                let now = *now.get_or_insert_with(|| r.clock.now_ms());
                let period = match period_at(a.kind, &a.tz, now) {
                    Ok(period) => period,
                    Err(e) => {
                        cx.note(|| {
                            format!(
                                "Accounting: policy {:?} row {:?} skipped: {e}.",
                                p.name, a.name
                            )
                        });
                        continue;
                    }
                };
                any = true;
                let g = cx.group_of(pi, monitor);
                // `<period>/<track key>`, shared by the row's counters.
                let mut tail = String::with_capacity(64);
                tail.push_str(&period.key);
                tail.push('/');
                tail.push_str(a.track.label());
                a.track.write_value(r.view, &mut tail);
                for (li, l) in a.limits.iter().enumerate() {
                    let mut key = cx.string(&l.key_head);
                    key.push_str(&tail);
                    let (item, sub) = (ai as u32, li as u32);
                    match l.kind {
                        LimitKind::MessageCount => {
                            let kind = if req.instance.is_empty() {
                                OpKind::Take { cost: 1 }
                            } else {
                                OpKind::TakeOncePerMessage
                            };
                            let op = CounterOp {
                                key,
                                limit: l.limit,
                                window: a.window,
                                kind,
                            };
                            cx.push(g, op, pi, item, sub);
                        }
                        LimitKind::RecipientCount => {
                            let op = CounterOp {
                                key,
                                limit: l.limit,
                                window: a.window,
                                kind: OpKind::Take { cost: 1 },
                            };
                            cx.push(g, op, pi, item, sub);
                        }
                        LimitKind::MessageCumulativeSize => {
                            if l.enforced {
                                let check = CounterOp {
                                    key: cx.string(&key),
                                    limit: l.limit,
                                    window: a.window,
                                    kind: OpKind::Check {
                                        cost: crate::bounds::charged_size(req.size).max(1),
                                    },
                                };
                                cx.push(g, check, pi, item, sub);
                            }
                            let label = cx.string(&a.eom_label);
                            let record = CounterOp {
                                key,
                                limit: l.limit,
                                window: a.window,
                                kind: OpKind::RecordForEom { label, group: g },
                            };
                            cx.push(g, record, pi, item, sub);
                        }
                    }
                }
                if a.last {
                    cx.note(|| {
                        format!(
                            "Accounting: row {:?} of policy {:?} is LastAccounting: later rows are skipped.",
                            a.name, p.name
                        )
                    });
                    break 'policies;
                }
            }
        }
        // Silent when no matched policy has accounting at all.
        if !any && r.matched.iter().any(|(_, p)| !p.accounting.is_empty()) {
            cx.note(|| "Accounting: none apply.".into());
        }
        Flow::Continue
    }

    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow {
        let r = cx.cx;
        let results = cx.results();
        if results.is_empty() {
            return Flow::Continue;
        }
        cx.note(|| "Accounting:".into());
        let now = r.clock.now_ms();
        let reply = cx.reply;
        let committed = |g: u32| {
            reply.groups.get(g as usize).is_some_and(|ops| {
                !ops.iter()
                    .any(|o| matches!(o.outcome, Outcome::Refused { .. }))
            })
        };
        for (tag, op, res) in results.iter() {
            let policy = &r.set.policies[tag.policy as usize];
            let rule = &policy.accounting[tag.item as usize];
            let limit = &rule.limits[tag.sub as usize];
            let monitor = r.is_monitor(policy);
            let (period_key, track) = split_tail(&op.key[limit.key_head.len()..]);
            if cx.explaining() {
                let line = describe(policy, rule, limit.kind, limit.enforced, op, res, monitor);
                cx.note(|| line);
            }
            // What the request added, for the totals: the row's message counter says
            // whether the RCPT counted.
            if limit.kind == LimitKind::MessageCount
                && !r.dry_run
                && res.outcome.is_admitted()
                && committed(tag.group)
            {
                cx.decision().accounted.push(Accounted {
                    policy: policy.name.clone(),
                    name: rule.name.clone(),
                    period: period_key.to_string(),
                    track: track.to_string(),
                    messages: u64::from(res.outcome == Outcome::Admitted),
                    recipients: 1,
                    bytes: 0,
                });
                note_result(cx.decision(), "counted");
            }
            let Outcome::Refused { .. } = res.outcome else {
                continue;
            };
            if !limit.enforced {
                continue;
            }
            let Some(action) = rule.action(limit.kind) else {
                continue;
            };
            let action = with_retry_hint(action, until_period_end(rule, period_key, now));
            cx.decision().verdicts.push(ModuleVerdict {
                module: NAME,
                policy: policy.name.clone(),
                name: rule.name.clone(),
                action: action.clone(),
                monitor,
                counter: Some(CounterLevel {
                    key: op.key.clone(),
                    used: res.used,
                    limit: op.limit,
                }),
            });
            note_result(cx.decision(), if monitor { "monitored" } else { "refused" });
            if !monitor {
                cx.decide(action);
            }
        }
        if cx.decision().action.is_final() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// Records the module's outcome for the `sluice_accounting_total{result}` metric: a
/// refusal outranks a monitored refusal, which outranks counting.
fn note_result(d: &mut Decision, result: &'static str) {
    let rank = |r: Option<&str>| match r {
        Some("refused") => 3,
        Some("monitored") => 2,
        Some("counted") => 1,
        _ => 0,
    };
    if rank(Some(result)) > rank(d.accounting) {
        d.accounting = Some(result);
    }
}

/// `(period key, track key)` of a counter key's tail after its head.
fn split_tail(tail: &str) -> (&str, &str) {
    tail.split_once('/').unwrap_or((tail, ""))
}

/// Milliseconds from `now` until the period `period_key` of `rule` ends (`None` when the
/// clock has already left it, or the time zone maths failed).
fn until_period_end(rule: &AccountingRule, period_key: &str, now: u64) -> Option<u64> {
    let p: Period = period_at(rule.kind, &rule.tz, now).ok()?;
    (p.key == period_key).then(|| u64::try_from(p.end_ms).unwrap_or(0).saturating_sub(now))
}

/// What an END-OF-MESSAGE request is judged in.
pub(crate) struct Eom<'a, 'r> {
    /// The policy set.
    pub set: &'a PolicySet,
    /// The service runs in monitor mode.
    pub monitor_all: bool,
    /// `sluice explain`: nothing was charged, nothing is reported.
    pub dry_run: bool,
    /// The engine's time (ms since the epoch).
    pub now: u64,
    /// The request.
    pub req: &'a PolicyRequest<'r>,
}

/// END-OF-MESSAGE: the accounting counters charged the message's real size (what
/// [`OpKind::RecordForEom`] recorded at RCPT, per recipient for `Recipient:` rows): the
/// bytes counted, and the verdict of an enforced size limit the message overflowed.
pub(crate) fn judge_end_of_message(
    eom: Eom<'_, '_>,
    reply: &CounterReply,
    decision: &mut Decision,
    trace: &mut Trace<'_>,
) {
    let Eom {
        set,
        monitor_all,
        dry_run,
        now,
        req,
    } = eom;
    let size = crate::bounds::charged_size(req.size);
    for eom in &reply.end_of_message {
        let Some((policy_name, row_name)) = parse_label(&eom.label) else {
            continue;
        };
        // The row may have been removed since RCPT: then there is nothing to say.
        let Some(p) = set.policies.iter().find(|p| &*p.name == policy_name) else {
            continue;
        };
        let Some(rule) = p.accounting.iter().find(|a| &*a.name == row_name) else {
            continue;
        };
        let Some(limit) = rule.limit(LimitKind::MessageCumulativeSize) else {
            continue;
        };
        let Some(tail) = eom.key.get(limit.key_head.len()..) else {
            continue;
        };
        let (period_key, track) = split_tail(tail);
        super::note(trace, || {
            format!(
                "  Accounting {:?} of policy {:?} [{period_key} {track}]: {} bytes, {}/{}: {:?}",
                rule.name, p.name, size, eom.result.used, eom.limit, eom.result.outcome
            )
        });
        let monitor = monitor_all || p.monitor;
        match eom.result.outcome {
            Outcome::Admitted | Outcome::AlreadyCounted if !dry_run => {
                decision.accounted.push(Accounted {
                    policy: p.name.clone(),
                    name: rule.name.clone(),
                    period: period_key.to_string(),
                    track: track.to_string(),
                    messages: 0,
                    recipients: 0,
                    bytes: size,
                });
                note_result(decision, "counted");
            }
            Outcome::Refused { .. } if limit.enforced => {
                let Some(action) = rule.action(LimitKind::MessageCumulativeSize) else {
                    continue;
                };
                let action = with_retry_hint(action, until_period_end(rule, period_key, now));
                decision.verdicts.push(ModuleVerdict {
                    module: NAME,
                    policy: p.name.clone(),
                    name: rule.name.clone(),
                    action: action.clone(),
                    monitor,
                    counter: Some(CounterLevel {
                        key: eom.key.clone(),
                        used: eom.result.used,
                        limit: eom.limit,
                    }),
                });
                note_result(decision, if monitor { "monitored" } else { "refused" });
                if !monitor && decision.action == Action::Dunno {
                    decision.action = action;
                }
            }
            _ => {}
        }
    }
}

fn describe(
    p: &Policy,
    rule: &AccountingRule,
    kind: LimitKind,
    enforced: bool,
    op: &CounterOp,
    res: &OpResult,
    monitor: bool,
) -> String {
    let what = match &op.kind {
        OpKind::TakeOncePerMessage => "1 message".to_string(),
        OpKind::Take { .. } if kind == LimitKind::RecipientCount => "1 recipient".into(),
        OpKind::Take { cost } => format!("{cost} message"),
        OpKind::Check { cost: 1 } => "no declared size (checked as 1 byte)".into(),
        OpKind::Check { cost } => format!("declared size {cost} bytes"),
        OpKind::RecordForEom { .. } => "size recorded for END-OF-MESSAGE".into(),
        // Not Accounting's ops (its counters are plain counters).
        OpKind::Greylist(_) => "greylisting".into(),
        OpKind::Helo(_) => "CheckHelo".into(),
    };
    let limit = if enforced {
        format!("{}/{}", res.used, op.limit)
    } else {
        format!("{} (counted, no limit)", res.used)
    };
    let outcome = match res.outcome {
        Outcome::Admitted => "counted".to_string(),
        Outcome::AlreadyCounted => "already counted for this message".into(),
        Outcome::Refused { .. } if enforced => match rule.action(kind) {
            Some(a) => format!("LIMIT REACHED -> action={a}"),
            None => "limit reached".into(),
        },
        Outcome::Refused { .. } => "refused".into(),
        Outcome::NotEvaluated => "not evaluated (an earlier limit refused)".into(),
    };
    let tail = op
        .key
        .get(rule.limit(kind).map_or(0, |l| l.key_head.len())..)
        .unwrap_or("");
    format!(
        "  policy {:?} row {:?} {} per {} ({}) [{}]: {}, level {}{}: {}",
        p.name,
        rule.name,
        kind.as_str(),
        rule.kind,
        rule.tz_name,
        tail,
        what,
        limit,
        if monitor { " (monitor mode)" } else { "" },
        outcome
    )
}
