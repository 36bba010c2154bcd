//! Greylisting on the chain, between AccessControl and Quotas.
//!
//! Settings: each policy's greylisting row ([`crate::compile::Policy::greylisting`]),
//! merged over the matched policies, and the set's static whitelist; the rules (merge,
//! ranges, record arithmetic, explanations) live in [`crate::greylisting`].
//!
//! Planning: nothing to do when no matched policy greylists; a whitelisted request passes
//! without state; otherwise one [`OpKind::Greylist`] op goes into the request's batch,
//! first in its group (group 0 when enforced: pushed before Quotas' ops, so a deferred or
//! blacklisted triplet keeps every enforced quota from charging; a group of its own in
//! monitor mode, so a triplet only watched never blocks a quota).
//!
//! Judging: the backend's answer ([`DetailAnswer::Greylist`]) gives the verdict (451 4.7.1
//! for a deferral, REJECT for a blacklisted network) and the explanation; an enforced
//! verdict stops the chain.

use super::{Flow, Judge, Lookup, Module, Plan, Request, SpfResult};
use crate::compile::Policy;
use crate::greylisting::{self as rules, Plan as GreyPlan};
use crate::state::{DetailAnswer, OpKind};
use sluice_protocol::PolicyRequest;

/// The Greylisting module.
pub(crate) struct Greylisting;

/// The group key [`Plan::group_of`] gets for a monitor-mode greylisting op: no policy has
/// this index, so the op gets a group of its own.
const OWN_GROUP: usize = usize::MAX;

impl Module for Greylisting {
    fn name(&self) -> &'static str {
        rules::MODULE
    }

    fn lookups<'q>(
        &self,
        cx: &Request<'_, '_>,
        req: &'q PolicyRequest<'_>,
        out: &mut Vec<Lookup<'q>>,
    ) {
        // `skip_spf_pass`: the sender's SPF result (the same question as CheckSPF's, asked
        // once).
        if rules::judging(cx.matched, cx.settings.monitor_all)
            .is_some_and(|j| j.settings.skip_spf_pass)
        {
            out.extend(crate::checkspf::question(req));
        }
    }

    fn asks(&self, policy: &Policy) -> bool {
        policy
            .greylisting
            .as_ref()
            .is_some_and(|r| r.skip_spf_pass == Some(true))
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let Some(judging) = rules::judging(r.matched, r.settings.monitor_all) else {
            return Flow::Continue;
        };
        if judging.settings.skip_spf_pass
            && crate::checkspf::answer(r.req, r.lookups)
                .is_some_and(|a| a.result == SpfResult::Pass)
        {
            cx.note(|| {
                "Greylisting: the sender's SPF result is pass (skip_spf_pass): pass.".into()
            });
            cx.decision().greylisting = Some("spf_pass");
            return Flow::Continue;
        }
        let op = match rules::plan(&judging, &r.set.grey_whitelist, r.req, r.dry_run) {
            GreyPlan::Whitelisted(entry) => {
                cx.note(|| format!("Greylisting: whitelisted by {entry:?}: pass."));
                cx.decision().greylisting = Some("whitelisted");
                return Flow::Continue;
            }
            GreyPlan::Run(op) => op,
        };
        let group = if judging.monitor {
            cx.group_of(OWN_GROUP, true)
        } else {
            0
        };
        let op = op.into_counter_op();
        cx.push(group, op, judging.policy_index, 0, 0);
        Flow::Continue
    }

    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow {
        let results = cx.results();
        let Some((tag, op, _)) = results.first() else {
            return Flow::Continue;
        };
        let (OpKind::Greylist(op), Some(DetailAnswer::Greylist(reply))) =
            (&op.kind, cx.detail(tag))
        else {
            return Flow::Continue;
        };
        let r = cx.cx;
        let Some(judging) = rules::judging(r.matched, r.settings.monitor_all) else {
            return Flow::Continue;
        };
        cx.note(|| "Greylisting:".into());
        cx.note(|| rules::explain(&judging, op, reply));
        cx.decision().greylisting = Some(reply.outcome.label());
        let Some(verdict) = rules::verdict(&judging, reply) else {
            return Flow::Continue;
        };
        let enforce = !verdict.monitor;
        let action = verdict.action.clone();
        cx.decision().verdicts.push(verdict);
        if !enforce {
            return Flow::Continue;
        }
        cx.decide(action);
        cx.note(|| "  final verdict: the chain stops here.".into());
        Flow::Stop
    }
}
