//! Greylisting (Policyd's `Greylisting` module, with the fixes of Sluice's Part A): a
//! request's triplet — the client's network (`SenderIP:/24` for IPv4, `/64` for IPv6 by
//! default), the sender and the recipient — is deferred the first time it is seen and
//! admitted once `period` has passed; networks whose triplets pass are auto-whitelisted,
//! networks whose triplets never pass are auto-blacklisted, by count or by percentage over
//! their periods; entries expire by real TTLs (no cleanup job).
//!
//! Files:
//! - [`def`]: the settings as operators write them (policy file, database, importer);
//! - [`settings`]: validation, ranges, defaults, the per-column merge over the matched
//!   policies, the static whitelist (CIDRs, sender domains, reverse-DNS patterns), masking;
//! - [`record`]: a network's record and the one home of the decision arithmetic;
//! - [`op`]: the state op a backend runs atomically (in process: `memory/greylisting.rs`;
//!   Redis: `services/redis/src/greylisting.{rs,lua}`);
//! - this file: the rules the module uses — the settings and plan from the matched
//!   policies, the verdict from the backend's answer, and the explanation;
//! - the module itself, on the engine's chain: [`crate::modules`]' `greylisting` (its op
//!   is an [`crate::state::OpKind::Greylist`] in the request's one batch).

pub mod def;
pub mod op;
pub mod record;
pub mod settings;

use crate::compile::Policy;
use crate::engine::ModuleVerdict;
use op::{GreylistOp, GreylistReply};
use record::{AutoList, GreyOutcome, GreyParams};
use settings::{merge, network_of, Greylisting, Whitelist};
use sluice_protocol::{Action, PolicyRequest};
use std::sync::Arc;

/// The module's name in verdicts, logs and metrics.
pub const MODULE: &str = "Greylisting";

/// What greylisting does for one request, decided before any state call.
#[derive(Debug)]
pub(crate) enum Plan {
    /// A static whitelist entry matched (its text): pass.
    Whitelisted(Arc<str>),
    /// Run the op (in the request's batch), then judge its answer.
    Run(Box<GreylistOp>),
}

/// What judging a greylisting answer needs besides the op: the merged settings and who
/// they come from.
#[derive(Debug)]
pub(crate) struct Judging {
    pub settings: Greylisting,
    /// The policy whose row decided last (highest priority number).
    pub policy: Arc<str>,
    /// The policy's index in the set.
    pub policy_index: usize,
    /// Every contributing policy runs in monitor mode (or the service does).
    pub monitor: bool,
}

/// Seconds to ms.
fn ms(secs: u64) -> u64 {
    secs.saturating_mul(1000)
}

/// The merged settings of the matched policies (`(index in the set, policy)`, in
/// evaluation order); `None` when greylisting does not run (no matched policy has a row,
/// or the merge turns it off). Planning and judging both read them from here.
pub(crate) fn judging(matched: &[(usize, &Policy)], monitor_all: bool) -> Option<Judging> {
    let settings = merge(matched.iter().filter_map(|(_, p)| p.greylisting.as_ref()))?;
    if !settings.enabled {
        return None;
    }
    let mut policy: Option<(usize, Arc<str>)> = None;
    let mut monitor = true;
    for (pi, p) in matched.iter().filter(|(_, p)| p.greylisting.is_some()) {
        policy = Some((*pi, p.name.clone()));
        monitor &= p.monitor;
    }
    let (policy_index, policy) = policy.unwrap_or_else(|| (0, Arc::from("")));
    Some(Judging {
        settings,
        policy,
        policy_index,
        monitor: monitor || monitor_all,
    })
}

/// The plan for `req` given its [`judging`] settings.
pub(crate) fn plan(
    judging: &Judging,
    whitelist: &Whitelist,
    req: &PolicyRequest<'_>,
    dry_run: bool,
) -> Plan {
    let settings = &judging.settings;
    if let Some((_, text)) = whitelist.iter().find(|(e, _)| e.matches(req)) {
        return Plan::Whitelisted(text.clone());
    }
    let auto = |on: bool, period: u64, count: u64, percentage: u64| {
        on.then_some(AutoList {
            period_ms: ms(period),
            count,
            percentage,
        })
    };
    let params = GreyParams {
        period_ms: ms(settings.period_secs),
        auth_validity_ms: ms(settings.auth_validity_secs),
        unauth_validity_ms: ms(settings.unauth_validity_secs),
        awl: auto(
            settings.awl,
            settings.awl_period_secs,
            settings.awl_count,
            settings.awl_percentage,
        ),
        abl: auto(
            settings.abl,
            settings.abl_period_secs,
            settings.abl_count,
            settings.abl_percentage,
        ),
        training: settings.training,
    };
    let network = format!(
        "SenderIP:{}",
        network_of(
            req.client_address,
            settings.ipv4_prefix,
            settings.ipv6_prefix
        )
    );
    Plan::Run(Box::new(GreylistOp {
        network,
        triplet: record::triplet_field(&req.sender, &req.recipient),
        params,
        dry_run,
    }))
}

/// The action for an outcome: `451 4.7.1 <defer text>` for a deferral, `REJECT <blacklist
/// text>` for a blacklisted network, `None` (pass: the chain goes on) otherwise.
pub fn action_for(outcome: &GreyOutcome, s: &Greylisting) -> Option<Action> {
    match outcome {
        GreyOutcome::Deferred { .. } => Some(Action::Code {
            code: 451,
            text: format!("4.7.1 {}", s.defer_message),
        }),
        GreyOutcome::Blacklisted { .. } => {
            Some(Action::Reject(Some(s.blacklist_message.to_string())))
        }
        _ => None,
    }
}

/// The verdict of a run (deferral or rejection), for the decision's log.
pub(crate) fn verdict(run: &Judging, reply: &GreylistReply) -> Option<ModuleVerdict> {
    let action = action_for(&reply.outcome, &run.settings)?;
    Some(ModuleVerdict {
        module: MODULE,
        policy: run.policy.clone(),
        name: Arc::from(reply.outcome.label()),
        action,
        monitor: run.monitor,
        counter: None,
    })
}

/// `n` ms as a short duration ("45 s", "3 min", "2 h 5 min", "7 days").
pub fn human_duration(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..=89 => format!("{s} s"),
        90..=5399 => format!("{} min", s.div_ceil(60)),
        5400..=172_799 => {
            let m = s.div_ceil(60);
            if m.is_multiple_of(60) {
                format!("{} h", m / 60)
            } else {
                format!("{} h {} min", m / 60, m % 60)
            }
        }
        _ => format!("{} days", s / 86_400),
    }
}

/// `ms` since the epoch as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The explanation line of a run's answer.
pub(crate) fn explain(run: &Judging, op: &GreylistOp, reply: &GreylistReply) -> String {
    let now = reply.now_ms;
    let triplet = op.triplet.replace('\n', "> to=<");
    let head = format!(
        "  policy {:?}: {} from=<{}>{}",
        run.policy,
        op.network,
        triplet,
        if run.settings.training {
            " (training mode)"
        } else {
            ""
        }
    );
    let tail = match action_for(&reply.outcome, &run.settings) {
        Some(a) => format!(
            " -> action={a}{}",
            if run.monitor {
                " (monitor mode: logged only)"
            } else {
                ""
            }
        ),
        None => " -> pass".into(),
    };
    let what = match reply.outcome {
        GreyOutcome::AutoWhitelisted { until_ms } => {
            format!("client auto-whitelisted until {}", utc(until_ms))
        }
        GreyOutcome::Blacklisted {
            until_ms,
            listed_now: None,
        } => format!("client auto-blacklisted until {}", utc(until_ms)),
        GreyOutcome::Blacklisted {
            until_ms,
            listed_now: Some((total, failed)),
        } => format!(
            "client would be auto-blacklisted now ({failed} of {total} triplets never passed) until {}",
            utc(until_ms)
        ),
        GreyOutcome::Deferred {
            first_seen_ms,
            passes_at_ms,
            tries,
        } => {
            if tries == 1 && first_seen_ms == now {
                format!(
                    "triplet not seen before, passes in {}",
                    human_duration(passes_at_ms - now)
                )
            } else {
                format!(
                    "triplet first seen {} ago, passes in {} ({} deferred so far)",
                    human_duration(now - first_seen_ms),
                    human_duration(passes_at_ms - now),
                    tries - 1
                )
            }
        }
        GreyOutcome::Passed {
            first_seen_ms,
            training,
            auto_whitelisted_until_ms,
        } => {
            let mut s = if first_seen_ms == now {
                "triplet not seen before".to_string()
            } else {
                format!(
                    "triplet first seen {} ago, period of {} passed",
                    human_duration(now - first_seen_ms),
                    human_duration(ms(run.settings.period_secs))
                )
            };
            if training {
                s.push_str("; training mode lets it through");
            }
            if let Some(u) = auto_whitelisted_until_ms {
                s.push_str(&format!("; client auto-whitelisted until {}", utc(u)));
            }
            s
        }
    };
    format!("{head}: {what}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_dates() {
        assert_eq!(human_duration(45_000), "45 s");
        assert_eq!(human_duration(180_000), "3 min");
        assert_eq!(human_duration(2 * 3_600_000 + 300_000), "2 h 5 min");
        assert_eq!(human_duration(7 * 86_400_000), "7 days");
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(1_796_558_400_000), "2026-12-06 12:00:00 UTC");
    }
}
