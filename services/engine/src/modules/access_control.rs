//! AccessControl: the first matched policy with a rule decides, without counter state.
//!
//! Settings: each policy's rules ([`crate::compile::Policy::access_control`]; Policyd has
//! one per policy). PASS ends the module without a verdict; a monitor-mode policy's rule is
//! logged and the next policy's rule is looked at; a final verdict (REJECT, DEFER, OK, ...)
//! stops the chain before any counter is touched.

use super::{Flow, Judge, Module, Plan};
use crate::engine::ModuleVerdict;
use crate::verdict::Verdict;

/// The AccessControl module.
pub(crate) struct AccessControl;

impl Module for AccessControl {
    fn name(&self) -> &'static str {
        "AccessControl"
    }

    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow {
        let r = cx.cx;
        cx.note(|| {
            if r.matched.iter().any(|(_, p)| !p.access_control.is_empty()) {
                "AccessControl:".into()
            } else {
                "AccessControl: no rule in the matched policies.".into()
            }
        });
        for (_, p) in r.matched {
            let Some(rule) = p.access_control.first() else {
                continue;
            };
            let monitor = r.is_monitor(p);
            cx.note(|| {
                format!(
                    "  policy {:?} rule {:?}: {} -> action={}{}",
                    p.name,
                    rule.name,
                    rule.verdict,
                    rule.verdict.to_action(rule.data.as_deref(), None),
                    if monitor {
                        " (monitor mode: logged only, next policy)"
                    } else {
                        ""
                    }
                )
            });
            if rule.verdict == Verdict::Pass && !monitor {
                // PASS ends AccessControl, and gives no verdict (its action is only shown in
                // explanations: not built otherwise).
                break;
            }
            let action = rule.verdict.to_action(rule.data.as_deref(), None);
            cx.decision().verdicts.push(ModuleVerdict {
                module: self.name(),
                policy: p.name.clone(),
                name: rule.name.clone(),
                action: action.clone(),
                monitor,
                counter: None,
            });
            if monitor {
                continue;
            }
            if action.is_final() {
                cx.decide(action);
                cx.note(|| "  final verdict: the chain stops here.".into());
                return Flow::Stop;
            }
            break;
        }
        Flow::Continue
    }

    fn judge(&self, _cx: &mut Judge<'_, '_>) -> Flow {
        // Decided while planning: no ops.
        Flow::Continue
    }
}
