//! CheckHelo on the chain, between AccessControl and CheckSPF.
//!
//! Settings: each policy's CheckHelo row ([`crate::compile::Policy::checkhelo`]), merged
//! over the matched policies, and the set's HELO blacklist and whitelist; the rules live in
//! [`crate::checkhelo`].
//!
//! Lookups: the HELO's A/AAAA and MX records, when `reject_unresolvable` applies.
//! Planning: the checks that need no state give their verdict here (invalid, unresolvable,
//! DNS failure, a blacklisted HELO without a period); blacklist memory and HRP push one
//! [`OpKind::Helo`] op, first of CheckHelo's place in its group (group 0 when enforced:
//! before Greylisting's and Quotas' ops, so a rejected HELO charges nothing; a group of
//! its own in monitor mode).
//! Judging: the backend's answer ([`DetailAnswer::Helo`]) gives the verdict.

use super::{Flow, Judge, Lookup, Module, Plan, Request};
use crate::checkhelo::{self as rules, Check};
use crate::compile::Policy;
use crate::state::{DetailAnswer, OpKind};
use sluice_protocol::PolicyRequest;

/// The CheckHelo module.
pub(crate) struct CheckHelo;

/// The group key [`Plan::group_of`] gets for a monitor-mode CheckHelo op: no policy has
/// this index (and Greylisting uses `usize::MAX`), so the op gets a group of its own.
const OWN_GROUP: usize = usize::MAX - 1;

impl Module for CheckHelo {
    fn name(&self) -> &'static str {
        rules::MODULE
    }

    fn lookups<'q>(
        &self,
        cx: &Request<'_, '_>,
        req: &'q PolicyRequest<'_>,
        out: &mut Vec<Lookup<'q>>,
    ) {
        let Some(j) = rules::judging(cx.matched, cx.settings.monitor_all) else {
            return;
        };
        if let Some(q) = rules::lookups(&j, &cx.set.helo_whitelist, req) {
            out.extend(q);
        }
    }

    fn asks(&self, policy: &Policy) -> bool {
        policy
            .checkhelo
            .as_ref()
            .is_some_and(|r| r.reject_unresolvable == Some(true))
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let Some(j) = rules::judging(r.matched, r.settings.monitor_all) else {
            return Flow::Continue;
        };
        match rules::check(
            &j,
            &r.set.helo_blacklist,
            &r.set.helo_whitelist,
            r.req,
            r.lookups,
            r.dry_run,
            cx.explaining(),
        ) {
            Check::NoHelo => {
                cx.note(|| "CheckHelo: no HELO name: nothing to check.".into());
                Flow::Continue
            }
            Check::Whitelisted(entry) => {
                cx.note(|| format!("CheckHelo: client whitelisted by {entry:?}: pass."));
                cx.decision().checkhelo = Some("whitelisted");
                Flow::Continue
            }
            Check::Passed(notes) => {
                cx.note(|| {
                    format!(
                        "CheckHelo: policy {:?}: HELO '{}': {notes} -> pass",
                        j.policy, r.req.helo_name
                    )
                });
                cx.decision().checkhelo = Some("passed");
                Flow::Continue
            }
            Check::Refused { name, action, why } => {
                cx.note(|| {
                    format!(
                        "CheckHelo: policy {:?}: HELO '{}': {why} -> action={action}{}",
                        j.policy,
                        r.req.helo_name,
                        if j.monitor {
                            " (monitor mode: logged only)"
                        } else {
                            ""
                        }
                    )
                });
                cx.decision().checkhelo = Some(name);
                cx.decision()
                    .verdicts
                    .push(rules::verdict(&j, name, action.clone()));
                if j.monitor {
                    return Flow::Continue;
                }
                cx.decide(action);
                cx.note(|| "  final verdict: the chain stops here.".into());
                Flow::Stop
            }
            Check::State(op, notes) => {
                if !notes.is_empty() {
                    cx.note(|| format!("CheckHelo: HELO '{}': {notes}", r.req.helo_name));
                }
                let group = if j.monitor {
                    cx.group_of(OWN_GROUP, true)
                } else {
                    0
                };
                cx.push(group, op.into_counter_op(), j.policy_index, 0, 0);
                Flow::Continue
            }
        }
    }

    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow {
        let results = cx.results();
        let Some((tag, op, _)) = results.first() else {
            return Flow::Continue;
        };
        let (OpKind::Helo(op), Some(DetailAnswer::Helo(reply))) = (&op.kind, cx.detail(tag)) else {
            return Flow::Continue;
        };
        let r = cx.cx;
        let Some(j) = rules::judging(r.matched, r.settings.monitor_all) else {
            return Flow::Continue;
        };
        cx.note(|| "CheckHelo:".into());
        cx.note(|| rules::explain(&j, op, reply));
        cx.decision().checkhelo = Some(reply.outcome.label());
        let Some(action) = rules::action_for(&reply.outcome) else {
            return Flow::Continue;
        };
        cx.decision()
            .verdicts
            .push(rules::verdict(&j, reply.outcome.label(), action.clone()));
        if j.monitor {
            return Flow::Continue;
        }
        cx.decide(action);
        cx.note(|| "  final verdict: the chain stops here.".into());
        Flow::Stop
    }
}
