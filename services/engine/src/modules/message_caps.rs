//! MessageCaps on the chain: the largest message and the most recipients per message (the
//! rules, texts and keys are in [`crate::caps`]). Two steps, at two places of the chain:
//!
//! - [`SizeCap`], before Greylisting: a declared `size` above the merged size cap refuses
//!   the RCPT (`552 5.3.4`) with no state, so a message that can never be accepted is not
//!   greylisted first.
//! - [`RecipientCap`], after Greylisting and before Quotas: one `Take` of 1 on the
//!   message's recipient counter (group 0 when enforced: a recipient that a later quota or
//!   an earlier greylisting refuses is given back, and a recipient over the cap charges no
//!   quota), and one END-OF-MESSAGE record per policy whose cap applies, so
//!   END-OF-MESSAGE checks the real size and `recipient_count`
//!   ([`judge_end_of_message`]). Greylisting's op stays first in its group, as the
//!   backends require.

use super::{Flow, Judge, Module, Plan, Trace};
use crate::caps::{self, EomChecks, Merged, MODULE};
use crate::compile::PolicySet;
use crate::engine::{CounterLevel, Decision, ModuleVerdict};
use crate::state::{CounterOp, CounterReply, OpKind, Outcome};
use crate::window::WindowSpec;
use sluice_protocol::{Action, PolicyRequest};

/// The size check at RCPT (before Greylisting).
pub(crate) struct SizeCap;

/// The recipient count at RCPT and the END-OF-MESSAGE records (after Greylisting).
pub(crate) struct RecipientCap;

/// [`crate::modules::OpTag::item`] of the recipient counter's op.
const ITEM_RECIPIENTS: u32 = 0;
/// [`crate::modules::OpTag::item`] of an END-OF-MESSAGE record.
const ITEM_EOM: u32 = 1;

impl Module for SizeCap {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let merged = Merged::of(r.matched);
        if merged.is_empty() {
            return Flow::Continue;
        }
        let Some(cap) = merged.size else {
            return Flow::Continue;
        };
        let p = &r.set.policies[cap.policy];
        let monitor = r.is_monitor(p);
        let declared = r.req.size;
        if declared == 0 || declared <= cap.value {
            cx.note(|| {
                format!(
                    "MessageCaps: size cap {} bytes (policy {:?}): {}.",
                    cap.value,
                    p.name,
                    if declared == 0 {
                        "no size declared, checked at END-OF-MESSAGE".to_string()
                    } else {
                        format!("declared size {declared} bytes fits")
                    }
                )
            });
            return Flow::Continue;
        }
        let action = caps::size_action(cap.value);
        cx.note(|| {
            format!(
                "MessageCaps: size cap {} bytes (policy {:?}): declared size {declared} bytes is above it -> action={action}{}",
                cap.value,
                p.name,
                if monitor { " (monitor mode: logged only)" } else { "" }
            )
        });
        cx.decision().verdicts.push(ModuleVerdict {
            module: MODULE,
            policy: p.name.clone(),
            name: "max_message_size".into(),
            action: action.clone(),
            monitor,
            counter: None,
        });
        if monitor {
            return Flow::Continue;
        }
        cx.decide(action);
        cx.note(|| "  final verdict: the chain stops here.".into());
        Flow::Stop
    }

    fn judge(&self, _cx: &mut Judge<'_, '_>) -> Flow {
        // Decided while planning: no ops.
        Flow::Continue
    }
}

impl Module for RecipientCap {
    fn name(&self) -> &'static str {
        MODULE
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let merged = Merged::of(r.matched);
        if merged.is_empty() {
            return Flow::Continue;
        }
        let instance = &*r.req.instance;
        if instance.is_empty() {
            cx.note(|| {
                "MessageCaps: the request has no instance: recipients cannot be counted per message, and END-OF-MESSAGE cannot be checked.".into()
            });
            return Flow::Continue;
        }
        if let Some(cap) = merged.recipients {
            let p = &r.set.policies[cap.policy];
            let g = cx.group_of(cap.policy, r.is_monitor(p));
            let op = CounterOp {
                key: caps::recipients_key(&p.name, instance),
                limit: cap.value,
                window: WindowSpec::new(caps::RECIPIENT_WINDOW_MS, r.settings.buckets_per_period),
                kind: OpKind::Take { cost: 1 },
            };
            cx.push(g, op, cap.policy, ITEM_RECIPIENTS, 0);
        }
        // One record per policy whose cap won (both caps usually come from one policy).
        let winners = [merged.size, merged.recipients];
        for (i, cap) in winners.iter().enumerate() {
            let Some(cap) = cap else { continue };
            if i == 1 && merged.size.is_some_and(|s| s.policy == cap.policy) {
                continue; // Recorded with the size cap.
            }
            let checks = EomChecks {
                size: merged.size.is_some_and(|s| s.policy == cap.policy),
                recipients: merged.recipients.is_some_and(|s| s.policy == cap.policy),
            };
            let p = &r.set.policies[cap.policy];
            let g = cx.group_of(cap.policy, r.is_monitor(p));
            let limit = match merged.size {
                Some(s) if checks.size => s.value,
                // Recipients only: the size charged to the record always fits.
                _ => crate::bounds::MAX_SIZE_LIMIT,
            };
            let op = CounterOp {
                key: caps::eom_key(&p.name, instance),
                limit,
                window: caps::EOM_WINDOW,
                kind: OpKind::RecordForEom {
                    label: caps::eom_label(&p.name, checks),
                    group: g,
                },
            };
            cx.push(g, op, cap.policy, ITEM_EOM, 0);
        }
        Flow::Continue
    }

    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow {
        let r = cx.cx;
        for (tag, op, res) in cx.results().iter() {
            if tag.item != ITEM_RECIPIENTS {
                continue;
            }
            let p = &r.set.policies[tag.policy as usize];
            let monitor = r.is_monitor(p);
            let action = caps::recipients_rcpt_action(op.limit);
            cx.note(|| {
                let what = match res.outcome {
                    Outcome::Admitted | Outcome::AlreadyCounted => {
                        format!("recipient {} of at most {}: fits", res.used, op.limit)
                    }
                    Outcome::Refused { .. } => format!(
                        "{} recipients already, at most {}: REFUSED -> action={action}",
                        res.used, op.limit
                    ),
                    Outcome::NotEvaluated => {
                        "not evaluated (an earlier op of its group refused)".into()
                    }
                };
                format!(
                    "MessageCaps: recipients of this message (policy {:?}{}): {what}",
                    p.name,
                    if monitor { ", monitor mode" } else { "" }
                )
            });
            if !matches!(res.outcome, Outcome::Refused { .. }) {
                continue;
            }
            cx.decision().verdicts.push(ModuleVerdict {
                module: MODULE,
                policy: p.name.clone(),
                name: "max_recipients".into(),
                action: action.clone(),
                monitor,
                counter: Some(CounterLevel {
                    key: op.key.clone(),
                    used: res.used,
                    limit: op.limit,
                }),
            });
            if !monitor {
                cx.decide(action);
                return Flow::Stop;
            }
        }
        Flow::Continue
    }
}

/// Whether any policy of `set` has caps (END-OF-MESSAGE has something to check).
pub(crate) fn any_caps(set: &PolicySet) -> bool {
    set.policies.iter().any(|p| p.message_caps.is_some())
}

/// END-OF-MESSAGE: the caps' verdicts from the records made at RCPT (in `reply`): the real
/// size above a size cap (the record's counter refused it), `recipient_count` above a
/// recipient cap.
pub(crate) fn judge_end_of_message(
    set: &PolicySet,
    monitor_all: bool,
    req: &PolicyRequest<'_>,
    reply: &CounterReply,
    decision: &mut Decision,
    trace: &mut Trace<'_>,
) {
    for eom in &reply.end_of_message {
        let Some((name, checks)) = caps::parse_eom_label(&eom.label) else {
            continue;
        };
        // The policy may have been removed since RCPT: then there is no verdict to give.
        let Some(p) = set.policies.iter().find(|p| &*p.name == name) else {
            continue;
        };
        let monitor = monitor_all || p.monitor;
        let mut give = |what: &'static str, action: Action, counter, trace: &mut Trace<'_>| {
            super::note(trace, || {
                format!(
                    "MessageCaps at END-OF-MESSAGE (policy {:?}{}): {what} -> action={action}",
                    p.name,
                    if monitor { ", monitor mode" } else { "" }
                )
            });
            decision.verdicts.push(ModuleVerdict {
                module: MODULE,
                policy: p.name.clone(),
                name: what.into(),
                action: action.clone(),
                monitor,
                counter,
            });
            if !monitor && decision.action == Action::Dunno {
                decision.action = action;
            }
        };
        if checks.size {
            if let Outcome::Refused { .. } = eom.result.outcome {
                let counter = Some(CounterLevel {
                    key: eom.key.clone(),
                    used: crate::bounds::charged_size(req.size),
                    limit: eom.limit,
                });
                give(
                    "max_message_size",
                    caps::size_action(eom.limit),
                    counter,
                    trace,
                );
            } else {
                super::note(trace, || {
                    format!(
                        "MessageCaps at END-OF-MESSAGE (policy {:?}): size {} bytes, cap {}: {:?}",
                        p.name, req.size, eom.limit, eom.result.outcome
                    )
                });
            }
        }
        let cap = p.message_caps.and_then(|c| c.max_recipients);
        if let (true, Some(cap)) = (checks.recipients, cap) {
            if req.recipient_count > cap {
                give(
                    "max_recipients",
                    caps::recipients_eom_action(cap),
                    None,
                    trace,
                );
            } else {
                super::note(trace, || {
                    format!(
                        "MessageCaps at END-OF-MESSAGE (policy {:?}): {} recipients, cap {cap}: fits",
                        p.name, req.recipient_count
                    )
                });
            }
        }
    }
}
