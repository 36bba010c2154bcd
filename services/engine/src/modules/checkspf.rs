//! CheckSPF on the chain, between AccessControl (and CheckHelo) and Greylisting.
//!
//! Settings: each policy's `checkspf` row ([`crate::compile::Policy::checkspf`]), merged
//! over the matched policies; the rules (merge, Policyd's result table, texts) live in
//! [`crate::checkspf`].
//!
//! Lookups: one [`super::Lookup::Spf`] for a non-null sender when the merged settings turn
//! CheckSPF on. Planning: the answer becomes the verdict (no state op): REJECT or DEFER stop
//! the chain when enforced; a PREPEND lets it go on (a later final verdict replaces it: one
//! action line per request). Judging: nothing.

use super::{Flow, Judge, Lookup, Module, Plan, Request};
use crate::checkspf as rules;
use crate::compile::Policy;
use sluice_protocol::PolicyRequest;

/// The CheckSPF module.
pub(crate) struct CheckSpf;

impl Module for CheckSpf {
    fn name(&self) -> &'static str {
        rules::MODULE
    }

    fn lookups<'q>(
        &self,
        cx: &Request<'_, '_>,
        req: &'q PolicyRequest<'_>,
        out: &mut Vec<Lookup<'q>>,
    ) {
        if rules::judging(cx.matched, cx.settings.monitor_all).is_some() {
            out.extend(rules::question(req));
        }
    }

    fn asks(&self, policy: &Policy) -> bool {
        // A row that turns it on, or one that may inherit it (the merge decides).
        policy
            .checkspf
            .as_ref()
            .is_some_and(|r| r.enabled != Some(false))
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        let Some(j) = rules::judging(r.matched, r.settings.monitor_all) else {
            return Flow::Continue;
        };
        let Some(answer) = rules::answer(r.req, r.lookups) else {
            cx.note(|| "CheckSPF: null sender: not checked.".into());
            return Flow::Continue;
        };
        cx.note(|| "CheckSPF:".into());
        cx.note(|| rules::explain(&j, &answer, r.req));
        cx.decision().spf = Some(answer.result.as_str());
        let Some(verdict) = rules::verdict(&j, &answer, &r.req.sender) else {
            return Flow::Continue;
        };
        let enforce = !verdict.monitor;
        let action = verdict.action.clone();
        cx.decision().verdicts.push(verdict);
        if !enforce {
            return Flow::Continue;
        }
        let stop = action.is_final();
        cx.decide(action);
        if stop {
            cx.note(|| "  final verdict: the chain stops here.".into());
            return Flow::Stop;
        }
        Flow::Continue
    }

    fn judge(&self, _cx: &mut Judge<'_, '_>) -> Flow {
        // Decided while planning: no ops.
        Flow::Continue
    }
}
