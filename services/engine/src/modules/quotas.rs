//! Quotas: rolling-window counters per tracked key (Policyd's quotas module).
//!
//! Settings: each policy's quotas ([`crate::compile::Policy::quotas`]), each with a track
//! (what a counter is kept per), a period and limits (MessageCount, RecipientCount,
//! MessageCumulativeSize). Planning pushes, for every quota of every matched policy (up to
//! and including a quota with LastQuota), one op per limit: a message count is taken once
//! per message, a recipient count per RCPT, a size limit is checked against the declared
//! size at RCPT and recorded so END-OF-MESSAGE charges the real size. Judging turns a
//! refused op into the quota's verdict (with a retry hint on DEFER) and reports levels near
//! the limit.

use super::{Flow, Judge, Module, Plan, Request, Trace};
use crate::compile::{LimitKind, Policy, PolicySet, Quota};
use crate::engine::{CounterLevel, Decision, ModuleVerdict, QuotaRef, NEAR_LIMIT_PERCENT};
use crate::hold::{Delayed, Need};
use crate::state::{CounterOp, CounterReply, OpKind, OpResult, Outcome};
use crate::verdict::with_retry_hint;
use sluice_protocol::{Action, PolicyRequest};
use std::sync::Arc;

/// The Quotas module.
pub(crate) struct Quotas;

/// The module's name in verdicts and logs.
const NAME: &str = "Quotas";

impl Module for Quotas {
    fn name(&self) -> &'static str {
        NAME
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let req = r.req;
        let mut any = false;
        'policies: for &(pi, p) in r.matched {
            let monitor = r.is_monitor(p);
            for (qi, q) in p.quotas.iter().enumerate() {
                if let Some(why) = q.track.skip_reason(req) {
                    cx.note(|| {
                        format!(
                            "Quotas: policy {:?} quota {:?} skipped: {why} (its LastQuota, if set, does not apply either).",
                            p.name, q.name
                        )
                    });
                    continue;
                }
                // A DELAY quota counts all-or-nothing on its own: when it is full the
                // message is held, and the request's other ops stand.
                let delaying = q.delay.is_some() && !monitor;
                let g = if delaying {
                    cx.own_group()
                } else {
                    cx.group_of(pi, monitor)
                };
                let window = q.window(r.settings.buckets_per_period);
                // Held mail waits in this DELAY quota's queue: the message waits behind it
                // (its ops are planned with a limit of 0, so they refuse and charge
                // nothing; judging tells the two refusals apart by the compiled limit).
                let mut behind_held = false;
                // The first limit's key is rendered from the request; the others reuse its
                // track value.
                let mut first_key: Option<(u32, usize)> = None;
                for (li, l) in q.limits.iter().enumerate() {
                    any = true;
                    let mut key = cx.string(&l.key_head);
                    match first_key {
                        None => {
                            q.track.write_value(r.view, &mut key);
                            let track_at = l.key_head.len() - q.track.label().len();
                            behind_held =
                                delaying && r.waiting.waits(&p.name, &q.name, &key[track_at..]);
                            if behind_held {
                                cx.note(|| {
                                    format!(
                                        "Quotas: held mail waits in DELAY quota {:?} of policy {:?}: this message waits behind it.",
                                        q.name, p.name
                                    )
                                });
                            }
                        }
                        Some((first, head_len)) => {
                            key.push_str(&cx.op(g, first).key[head_len..]);
                        }
                    }
                    let limit = if behind_held { 0 } else { l.limit };
                    let (item, sub) = (qi as u32, li as u32);
                    let first_op = match l.kind {
                        LimitKind::MessageCount => {
                            let op = CounterOp {
                                key,
                                limit,
                                window,
                                kind: message_count_kind(req),
                            };
                            cx.push(g, op, pi, item, sub)
                        }
                        LimitKind::RecipientCount => {
                            let op = CounterOp {
                                key,
                                limit,
                                window,
                                kind: OpKind::Take { cost: 1 },
                            };
                            cx.push(g, op, pi, item, sub)
                        }
                        LimitKind::MessageCumulativeSize => {
                            let check = CounterOp {
                                key: cx.string(&key),
                                limit,
                                window,
                                kind: OpKind::Check {
                                    cost: size_check_cost(req),
                                },
                            };
                            let first = cx.push(g, check, pi, item, sub);
                            let label = cx.string(&q.eom_label);
                            let record = CounterOp {
                                key,
                                limit: l.limit,
                                window,
                                kind: OpKind::RecordForEom { label, group: g },
                            };
                            cx.push(g, record, pi, item, sub);
                            first
                        }
                    };
                    if first_key.is_none() {
                        first_key = Some((first_op, l.key_head.len()));
                    }
                }
                if q.last_quota {
                    break 'policies;
                }
            }
        }
        if !any {
            cx.note(|| "Quotas: none apply.".into());
        }
        Flow::Continue
    }

    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow {
        let r = cx.cx;
        let results = cx.results();
        if results.is_empty() {
            return Flow::Continue;
        }
        if cx.explaining() {
            cx.note(|| "Quotas:".into());
            if let Some((q, p)) = last_quota(r) {
                cx.note(|| {
                    format!("  quota {q:?} of policy {p:?} is LastQuota: later quotas are skipped.")
                });
            }
        }
        for (tag, op, res) in results.iter() {
            if matches!(op.kind, OpKind::RecordForEom { .. }) {
                continue;
            }
            let is_refused = matches!(res.outcome, Outcome::Refused { .. });
            let is_near = res.outcome == Outcome::Admitted
                && op.limit > 0
                && res.used.saturating_mul(100) >= op.limit.saturating_mul(NEAR_LIMIT_PERCENT)
                && !matches!(op.kind, OpKind::Check { .. });
            let report = cx.reports_admitted()
                && res.outcome == Outcome::Admitted
                && !matches!(op.kind, OpKind::Check { .. });
            if !cx.explaining() && !is_refused && !is_near && !report {
                // The usual case: nothing to report, no need to know the op's quota.
                continue;
            }
            let c = counted(r, tag.policy, tag.item, tag.sub);
            if cx.explaining() && c.quota.delay.is_some() {
                let queue = format!(
                    "{}/{}/{}",
                    c.policy.name,
                    c.quota.name,
                    op.key.get(c.prefix_len..).unwrap_or_default()
                );
                if !cx.decision().delay_queues.contains(&queue) {
                    cx.decision().delay_queues.push(queue);
                }
            }
            let state = cx.state();
            cx.note(|| {
                let mut line = describe_op(op, res, &c);
                if let Some(units) = state.leased_unused(&op.key) {
                    line.push_str(&format!(
                        " (the level includes {units} units charged ahead as this edge's lease and not used yet: {} used)",
                        res.used.saturating_sub(units)
                    ));
                }
                line
            });
            let level = || CounterLevel {
                key: op.key.clone(),
                used: res.used,
                limit: op.limit,
            };
            if is_near {
                cx.decision().near_limit.push(QuotaRef {
                    policy: c.policy.name.clone(),
                    quota: c.quota.name.clone(),
                });
            }
            if report {
                cx.decision().admitted.push(ModuleVerdict {
                    module: NAME,
                    policy: c.policy.name.clone(),
                    name: c.quota.name.clone(),
                    action: Action::Dunno,
                    monitor: c.monitor,
                    counter: Some(level()),
                });
            }
            if let Outcome::Refused { retry_after_ms } = res.outcome {
                let delay = c.quota.delay.filter(|_| !c.monitor);
                let action = match delay {
                    Some(_) => delay_action(c.quota, retry_after_ms, op.limit < c.limit),
                    None => quota_action(c.quota, c.kind, retry_after_ms),
                };
                if let Some(settings) = delay {
                    // The quota's whole group was undone: the message needs every charge
                    // of it when it leaves, against the quota's own limits.
                    let needs = results
                        .iter()
                        .filter(|(t, _, _)| t.group == tag.group)
                        .filter_map(|(t, op, res)| {
                            need_of(op, res, counted(r, t.policy, t.item, t.sub).limit)
                        })
                        .collect();
                    let track = op.key.get(c.prefix_len..).unwrap_or_default().to_string();
                    add_delayed(
                        cx.decision(),
                        Delayed {
                            policy: c.policy.name.clone(),
                            quota: c.quota.name.clone(),
                            track,
                            settings,
                            needs,
                        },
                    );
                }
                cx.decision().verdicts.push(ModuleVerdict {
                    module: NAME,
                    policy: c.policy.name.clone(),
                    name: c.quota.name.clone(),
                    action: action.clone(),
                    monitor: c.monitor,
                    counter: Some(level()),
                });
                if !c.monitor {
                    cx.decide(action);
                }
            }
        }
        if cx.decision().action.is_final() {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

/// The quota with LastQuota that ended planning (its name and its policy's), for the
/// explanation.
fn last_quota(r: &Request<'_, '_>) -> Option<(Arc<str>, Arc<str>)> {
    r.matched
        .iter()
        .flat_map(|(_, p)| p.quotas.iter().map(move |q| (p, q)))
        .filter(|(_, q)| q.track.skip_reason(r.req).is_none())
        .find(|(_, q)| q.last_quota)
        .map(|(p, q)| (q.name.clone(), p.name.clone()))
}

/// A quota limit an op counts for, resolved from its tag.
struct Counted<'a> {
    policy: &'a Policy,
    quota: &'a Quota,
    kind: LimitKind,
    /// The limit as compiled (an op planned behind held mail has 0).
    limit: u64,
    /// The limit's key prefix length: the op's key after it is the track key.
    prefix_len: usize,
    monitor: bool,
}

fn counted<'a>(r: &Request<'a, '_>, policy: u32, quota: u32, limit: u32) -> Counted<'a> {
    let policy = &r.set.policies[policy as usize];
    let quota = &policy.quotas[quota as usize];
    let limit = &quota.limits[limit as usize];
    Counted {
        policy,
        quota,
        kind: limit.kind,
        limit: limit.limit,
        prefix_len: limit.key_head.len() - quota.track.label().len(),
        monitor: r.is_monitor(policy),
    }
}

/// END-OF-MESSAGE: the verdicts of the size quotas charged the message's real size (what
/// [`OpKind::RecordForEom`] recorded at RCPT), from the counter call's `reply`.
pub(crate) fn judge_end_of_message(
    set: &PolicySet,
    monitor_all: bool,
    req: &PolicyRequest<'_>,
    reply: &CounterReply,
    decision: &mut Decision,
    trace: &mut Trace<'_>,
) {
    super::note(trace, || {
        format!(
            "END-OF-MESSAGE: charging {} bytes to the size quotas recorded at RCPT:",
            req.size
        )
    });
    if reply.end_of_message.is_empty() {
        super::note(trace, || "  none recorded for this instance.".into());
    }
    for eom in &reply.end_of_message {
        if crate::accounting::settings::parse_label(&eom.label).is_some() {
            // Accounting's (its own END-OF-MESSAGE step explains them).
            continue;
        }
        super::note(trace, || {
            format!(
                "  {} {}/{}: {:?}",
                eom.key, eom.result.used, eom.limit, eom.result.outcome
            )
        });
        let Outcome::Refused { retry_after_ms } = eom.result.outcome else {
            continue;
        };
        let Some((policy_name, quota_name)) = eom.label.split_once('\u{1f}') else {
            continue;
        };
        // The quota may have been removed since RCPT: then there is no verdict to give.
        let Some((p, q)) = set.find_quota(policy_name, quota_name) else {
            continue;
        };
        let monitor = monitor_all || p.monitor;
        let delay = q.delay.filter(|_| !monitor);
        let action = match delay {
            Some(_) => delay_action(q, retry_after_ms, false),
            None => quota_action(q, LimitKind::MessageCumulativeSize, retry_after_ms),
        };
        if let Some(settings) = delay {
            // The real size did not fit: the message is held until it does.
            let prefix_len = q
                .limits
                .iter()
                .find(|l| l.kind == LimitKind::MessageCumulativeSize)
                .map_or(0, |l| l.key_head.len() - q.track.label().len());
            add_delayed(
                decision,
                Delayed {
                    policy: p.name.clone(),
                    quota: q.name.clone(),
                    track: eom.key.get(prefix_len..).unwrap_or_default().to_string(),
                    settings,
                    needs: vec![Need {
                        key: eom.key.clone(),
                        limit: eom.limit,
                        period_ms: q.window.period_ms,
                        bucket_ms: q.window.bucket_ms,
                        cost: 0,
                        per_recipient: false,
                    }],
                },
            );
        }
        decision.verdicts.push(ModuleVerdict {
            module: NAME,
            policy: p.name.clone(),
            name: q.name.clone(),
            action: action.clone(),
            monitor,
            counter: Some(CounterLevel {
                key: eom.key.clone(),
                used: eom.result.used,
                limit: eom.limit,
            }),
        });
        if !monitor && decision.action == Action::Dunno {
            decision.action = action;
        }
    }
}

/// The identity of one counter: policy, quota, limit type and track key.
pub fn counter_key(policy: &str, quota: &str, kind: LimitKind, track_key: &str) -> String {
    fn push_escaped(out: &mut String, s: &str) {
        if s.contains(['/', '%']) {
            out.push_str(&s.replace('%', "%25").replace('/', "%2F"));
        } else {
            out.push_str(s);
        }
    }
    let kind = kind.as_str();
    let mut key =
        String::with_capacity(policy.len() + quota.len() + kind.len() + track_key.len() + 3);
    push_escaped(&mut key, policy);
    key.push('/');
    push_escaped(&mut key, quota);
    key.push('/');
    key.push_str(kind);
    key.push('/');
    key.push_str(track_key);
    key
}

/// The END-OF-MESSAGE label of a quota (policy and quota names).
pub(crate) fn quota_label(policy: &str, quota: &str) -> String {
    format!("{policy}\u{1f}{quota}")
}

/// The charge a DELAY quota's op stands for when its message leaves: a message (unless an
/// earlier RCPT counted it), a recipient, or the size (0 here: the real size is known at
/// END-OF-MESSAGE).
fn need_of(op: &CounterOp, res: &OpResult, limit: u64) -> Option<Need> {
    // (A quota's plain takes are its recipient counts: a message count is taken once per
    // message when the request names one.)
    let (cost, per_recipient) = match op.kind {
        OpKind::TakeOncePerMessage if res.outcome == Outcome::AlreadyCounted => return None,
        OpKind::TakeOncePerMessage => (1, false),
        OpKind::Take { cost } => (cost, true),
        OpKind::Check { .. } => (0, false),
        _ => return None,
    };
    Some(Need {
        key: op.key.clone(),
        limit,
        period_ms: op.window.period_ms,
        bucket_ms: op.window.bucket_ms,
        cost,
        per_recipient,
    })
}

/// Adds a DELAY quota's refusal to the decision: the first one names the queue the message
/// waits in, later ones add their needs (the message leaves when all fit).
fn add_delayed(decision: &mut Decision, d: Delayed) {
    match &mut decision.delayed {
        None => decision.delayed = Some(Box::new(d)),
        Some(first) => first.needs.extend(d.needs),
    }
}

/// What a full DELAY quota answers at RCPT: hold the message (its data, or a text saying
/// when the quota has room again, or that held mail waits before it: `behind_held`).
fn delay_action(q: &Quota, retry_after_ms: Option<u64>, behind_held: bool) -> Action {
    let text = match (
        q.data.as_deref().filter(|d| !d.trim().is_empty()),
        retry_after_ms,
    ) {
        (Some(d), _) => d.to_string(),
        (None, _) if behind_held => format!(
            "Delayed by quota {}: held mail waits before it; released in turn",
            q.name
        ),
        (None, Some(ms)) => format!(
            "Delayed by quota {}: released when it has room (room again in {})",
            q.name,
            crate::verdict::retry_hint(ms).trim_start_matches("try again in ")
        ),
        (None, None) => format!("Delayed by quota {}: released when it has room", q.name),
    };
    Action::Hold(Some(text))
}

/// What a message count does: once per message when the request names its message.
fn message_count_kind(req: &PolicyRequest<'_>) -> OpKind {
    if req.instance.is_empty() {
        OpKind::Take { cost: 1 }
    } else {
        OpKind::TakeOncePerMessage
    }
}

/// What a size check tests: the declared size (1 byte when none is declared), capped above
/// every allowed limit ([`crate::bounds::charged_size`]).
fn size_check_cost(req: &PolicyRequest<'_>) -> u64 {
    crate::bounds::charged_size(req.size).max(1)
}

/// The action a refused quota gives: its verdict and data (or the default text), with a
/// retry hint on DEFER.
fn quota_action(q: &Quota, kind: LimitKind, retry_after_ms: Option<u64>) -> Action {
    let action = q
        .verdict
        .to_action(q.data.as_deref(), Some(kind.default_text()));
    with_retry_hint(action, retry_after_ms)
}

fn describe_op(op: &CounterOp, res: &OpResult, r: &Counted<'_>) -> String {
    let what = match (&op.kind, r.kind) {
        (OpKind::Check { cost: 1 }, _) => "no declared size (checked as 1 byte)".into(),
        (OpKind::Check { cost }, _) => format!("declared size {cost} bytes"),
        (OpKind::TakeOncePerMessage, _) => "1 message".into(),
        (_, LimitKind::RecipientCount) => "1 recipient".into(),
        (OpKind::Take { cost }, _) => format!("cost {cost}"),
        (OpKind::RecordForEom { .. }, _) => "recorded for END-OF-MESSAGE".into(),
        // Not a Quotas op (Quotas never pushes one).
        (OpKind::Greylist(_), _) => "greylisting".into(),
        (OpKind::Helo(_), _) => "checkhelo".into(),
    };
    let outcome = match res.outcome {
        Outcome::Admitted => "fits".to_string(),
        Outcome::AlreadyCounted => "already counted for this message".to_string(),
        Outcome::Refused {
            retry_after_ms: Some(ms),
        } => {
            format!(
                "REFUSED ({}) -> action={}",
                crate::verdict::retry_hint(ms),
                quota_action(r.quota, r.kind, Some(ms))
            )
        }
        Outcome::Refused {
            retry_after_ms: None,
        } => {
            format!(
                "REFUSED (can never fit) -> action={}",
                quota_action(r.quota, r.kind, None)
            )
        }
        Outcome::NotEvaluated => "not evaluated (an earlier limit refused)".to_string(),
    };
    format!(
        "  policy {:?} quota {:?} {} [{}]: {}, level {}/{} per {}s{}: {}",
        r.policy.name,
        r.quota.name,
        r.kind.as_str(),
        op.key.get(r.prefix_len..).unwrap_or(""),
        what,
        res.used,
        op.limit,
        r.quota.period_ms / 1000,
        if r.monitor { " (monitor mode)" } else { "" },
        outcome
    )
}
