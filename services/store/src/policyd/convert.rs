//! Policyd rows to a [`PolicySetDef`]: unit and meaning conversions, skips with reasons.

use std::collections::{HashMap, HashSet};

use sluice_engine::bounds;
use sluice_engine::compile::LimitKind;
use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};

use super::read::Raw;
use super::report::{ImportReport, Skipped};

const ACCESS_VERDICTS: [&str; 8] = [
    "OK", "REJECT", "DEFER", "HOLD", "DISCARD", "FILTER", "REDIRECT", "PASS",
];
const QUOTA_VERDICTS: [&str; 6] = ["DEFER", "HOLD", "REJECT", "DISCARD", "FILTER", "REDIRECT"];

/// Trimmed, `None` when empty.
pub(super) fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `base`, or `base (#id)` if taken; records the name as taken.
pub(super) fn unique(taken: &mut HashSet<String>, base: String, id: i64) -> (String, bool) {
    if taken.insert(base.clone()) {
        return (base, false);
    }
    let mut candidate = format!("{base} (#{id})");
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{base} (#{id}, {n})");
        n += 1;
    }
    (candidate, true)
}

/// Policyd's `Track` in Sluice's canonical spelling, or `None` if Policyd could not use it.
pub(super) fn canonical_track(track: &str) -> Option<String> {
    let t = track.trim();
    let (method, spec) = match t.split_once(':') {
        Some((m, s)) => (
            m.trim().to_ascii_lowercase(),
            Some(s.trim().to_ascii_lowercase()),
        ),
        None => (t.to_ascii_lowercase(), None),
    };
    match (method.as_str(), spec.as_deref()) {
        ("policy", None) => Some("Policy".into()),
        ("saslusername", _) => Some("SASLUsername".into()),
        ("senderip", Some(spec)) => {
            let bits: u8 = spec.strip_prefix('/')?.parse().ok()?;
            (bits <= 128).then(|| format!("SenderIP:/{bits}"))
        }
        ("sender", Some(spec @ ("user@domain" | "user@" | "@domain"))) => {
            Some(format!("Sender:{spec}"))
        }
        ("recipient", Some(spec @ ("user@domain" | "user@" | "@domain"))) => {
            Some(format!("Recipient:{spec}"))
        }
        _ => None,
    }
}

/// Builds the definition and the report from Policyd rows.
pub(super) fn convert(mut raw: Raw) -> ImportReport {
    let mut report = ImportReport::default();
    let mut def = PolicySetDef::default();

    // Policies: Policyd ID -> index in def.policies.
    let mut policy_index: HashMap<i64, usize> = HashMap::new();
    // Policies left out (their members, rules and quotas are left out with them).
    let mut skipped_policies: HashSet<i64> = HashSet::new();
    let mut names = HashSet::new();
    for p in raw.policies {
        let base = non_empty(p.name).unwrap_or_else(|| format!("policy #{}", p.id));
        let priority = match bounds::check_priority(p.priority).map(|()| i32::try_from(p.priority))
        {
            Ok(Ok(priority)) => priority,
            Ok(Err(_)) | Err(_) => {
                report.skipped.push(Skipped {
                    what: format!("policy #{} {base:?}", p.id),
                    why: format!(
                        "its priority {} is outside {}..={} (Policyd's SMALLINT): its \
                         place among the policies is unknown, so it is left out with its \
                         members, rules and quotas",
                        p.priority,
                        bounds::MIN_PRIORITY,
                        bounds::MAX_PRIORITY
                    ),
                });
                skipped_policies.insert(p.id);
                continue;
            }
        };
        let (name, renamed) = unique(&mut names, base.clone(), p.id);
        if renamed {
            report.notes.push(format!(
                "policy #{}: the name {base:?} is used twice; imported as {name:?}",
                p.id
            ));
        }
        report.imported.push(format!(
            "policy {name:?} (Policyd #{}, priority {priority}{})",
            p.id,
            if p.disabled { ", disabled" } else { "" }
        ));
        policy_index.insert(p.id, def.policies.len());
        def.policies.push(PolicyDef {
            name,
            priority,
            description: non_empty(p.description),
            disabled: p.disabled,
            ..PolicyDef::default()
        });
    }
    let missing_policy = |what: String, policy_id: Option<i64>| Skipped {
        what,
        why: missing_policy_reason(policy_id, &skipped_policies),
    };

    for m in raw.members {
        let Some(&i) = m.policy_id.and_then(|id| policy_index.get(&id)) else {
            report.skipped.push(missing_policy(
                format!("policy member #{}", m.id),
                m.policy_id,
            ));
            continue;
        };
        let policy = &mut def.policies[i];
        report
            .imported
            .push(format!("member #{} of policy {:?}", m.id, policy.name));
        policy.members.push(MemberDef {
            source: non_empty(m.source),
            destination: non_empty(m.destination),
            disabled: m.disabled,
            comment: non_empty(m.comment),
        });
    }

    let mut group_index: HashMap<i64, usize> = HashMap::new();
    let mut group_names = HashSet::new();
    for g in raw.groups {
        let base = non_empty(g.name).unwrap_or_else(|| format!("group{}", g.id));
        let (name, renamed) = unique(&mut group_names, base.clone(), g.id);
        if renamed {
            report.notes.push(format!(
                "group #{}: the name {base:?} is used twice; imported as {name:?} \
                 (members referring to %{base} now mean the first one)",
                g.id
            ));
        }
        report
            .imported
            .push(format!("group {name:?} (Policyd #{})", g.id));
        group_index.insert(g.id, def.groups.len());
        def.groups.push(GroupDef {
            name,
            disabled: g.disabled,
            comment: non_empty(g.comment),
            members: Vec::new(),
        });
    }
    for m in raw.group_members {
        let what = format!("group member #{}", m.id);
        let Some(&i) = m.group_id.and_then(|id| group_index.get(&id)) else {
            let why = match m.group_id {
                Some(id) => format!("its group #{id} does not exist"),
                None => "it belongs to no group (PolicyGroupID is NULL)".into(),
            };
            report.skipped.push(Skipped { what, why });
            continue;
        };
        let Some(member) = non_empty(m.member) else {
            report.skipped.push(Skipped {
                what,
                why: "the member is empty".into(),
            });
            continue;
        };
        report.imported.push(format!(
            "member {member:?} of group {:?}",
            def.groups[i].name
        ));
        def.groups[i].members.push(GroupMemberDef {
            member,
            disabled: m.disabled,
            comment: non_empty(m.comment),
        });
    }

    let mut rule_names: HashMap<usize, HashSet<String>> = HashMap::new();
    for a in raw.access_control {
        let base = non_empty(a.name).unwrap_or_else(|| format!("access control #{}", a.id));
        let what = format!("access control #{} {base:?}", a.id);
        let Some(&i) = a.policy_id.and_then(|id| policy_index.get(&id)) else {
            report.skipped.push(missing_policy(what, a.policy_id));
            continue;
        };
        let Some(verdict) = non_empty(a.verdict).map(|v| v.to_ascii_uppercase()) else {
            report.skipped.push(Skipped {
                what,
                why: "it has no verdict; Policyd ignored it (no_verdict)".into(),
            });
            continue;
        };
        if !ACCESS_VERDICTS.contains(&verdict.as_str()) {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "unknown verdict {verdict:?}; Policyd answered DEFER for it (invalid_verdict)"
                ),
            });
            continue;
        }
        let policy = &mut def.policies[i];
        let (name, renamed) = unique(rule_names.entry(i).or_default(), base.clone(), a.id);
        if renamed {
            report.notes.push(format!(
                "{what}: the name is used twice in policy {:?}; imported as {name:?}",
                policy.name
            ));
        }
        report.imported.push(format!(
            "access control {name:?} of policy {:?}",
            policy.name
        ));
        policy.access_control.push(AccessControlDef {
            name,
            verdict,
            data: non_empty(a.data),
            disabled: a.disabled,
            comment: non_empty(a.comment),
        });
    }
    for p in &def.policies {
        let enabled = p.access_control.iter().filter(|a| !a.disabled).count();
        if enabled > 1 {
            report.notes.push(format!(
                "policy {:?} has {enabled} enabled access control rules: Policyd used one of \
                 them (unspecified which), Sluice uses the first by Policyd ID",
                p.name
            ));
        }
    }

    // Quotas: Policyd ID -> (policy index, quota index).
    let mut quota_index: HashMap<i64, (usize, usize)> = HashMap::new();
    let mut quota_names: HashMap<usize, HashSet<String>> = HashMap::new();
    for q in raw.quotas {
        let base = non_empty(q.name).unwrap_or_else(|| format!("quota #{}", q.id));
        let what = format!("quota #{} {base:?}", q.id);
        let Some(&i) = q.policy_id.and_then(|id| policy_index.get(&id)) else {
            report.skipped.push(missing_policy(what, q.policy_id));
            continue;
        };
        let track_text = q.track.unwrap_or_default();
        let Some(track) = canonical_track(&track_text) else {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "unknown track {track_text:?} (Policyd answered DEFER for it); expected \
                     SenderIP:/N, Sender:user@domain|user@|@domain, Recipient:..., \
                     SASLUsername or Policy"
                ),
            });
            continue;
        };
        let period = match q.period.map(u64::try_from) {
            Some(Ok(p)) if p > 0 => p,
            _ => {
                report.skipped.push(Skipped {
                    what,
                    why: format!(
                        "its period {} is not a positive number of seconds",
                        q.period
                            .map_or_else(|| "NULL".to_owned(), |p| p.to_string())
                    ),
                });
                continue;
            }
        };
        if let Err(e) = bounds::check_period(period) {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "{e}: a quota over such a period is not a rate limit (Sluice refuses it \
                     rather than keep a window it cannot count); its limits are skipped too"
                ),
            });
            continue;
        }
        let Some(verdict) = non_empty(q.verdict).map(|v| v.to_ascii_uppercase()) else {
            report.skipped.push(Skipped {
                what,
                why: "it has no verdict; Policyd counted but never refused (no_verdict)".into(),
            });
            continue;
        };
        if !QUOTA_VERDICTS.contains(&verdict.as_str()) {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "unknown verdict {verdict:?}; Policyd answered DEFER for it (invalid_verdict)"
                ),
            });
            continue;
        }
        let mut data = non_empty(q.data);
        if let Some(d) = data
            .as_deref()
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
        {
            report.skipped.push(Skipped {
                what: format!("{what} data {d:?}"),
                why: "a bare number: Policyd would have sent it to the client as the reject \
                      text; dropped, so the default text is used (the limit is in the limits)"
                    .into(),
            });
            data = None;
        }
        let policy = &mut def.policies[i];
        let (name, renamed) = unique(quota_names.entry(i).or_default(), base.clone(), q.id);
        if renamed {
            report.notes.push(format!(
                "{what}: the name is used twice in policy {:?}; imported as {name:?}",
                policy.name
            ));
        }
        report
            .imported
            .push(format!("quota {name:?} of policy {:?}", policy.name));
        quota_index.insert(q.id, (i, policy.quotas.len()));
        policy.quotas.push(QuotaDef {
            name,
            track,
            period,
            verdict,
            data,
            last_quota: q.last_quota,
            disabled: q.disabled,
            comment: non_empty(q.comment),
            limits: Vec::new(),
            ..QuotaDef::default()
        });
    }

    for l in raw.limits {
        let what = format!("quota limit #{}", l.id);
        let Some(&(p, qi)) = l.quota_id.and_then(|id| quota_index.get(&id)) else {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "its quota #{} does not exist or was skipped",
                    l.quota_id
                        .map_or_else(|| "NULL".into(), |id| id.to_string())
                ),
            });
            continue;
        };
        let Some(counter) = l.counter_limit.and_then(|c| u64::try_from(c).ok()) else {
            report.skipped.push(Skipped {
                what,
                why: format!(
                    "its CounterLimit {:?} is not a number >= 0",
                    l.counter_limit
                ),
            });
            continue;
        };
        let policy_name = def.policies[p].name.clone();
        let quota = &mut def.policies[p].quotas[qi];
        let place = format!("quota {:?} of policy {policy_name:?}", quota.name);
        let kind_text = l.kind.unwrap_or_default();
        // Policyd's MessageCount counted recipients; its sizes are in kB.
        let (kind, limit) = match kind_text.trim().to_ascii_lowercase().as_str() {
            "messagecount" => (LimitKind::RecipientCount, Some(counter)),
            "messagecumulativesize" => {
                (LimitKind::MessageCumulativeSize, counter.checked_mul(1024))
            }
            _ => {
                report.skipped.push(Skipped {
                    what: format!("{what} of {place}"),
                    why: format!(
                        "unknown limit type {kind_text:?}; expected MessageCount or \
                         MessageCumulativeSize"
                    ),
                });
                continue;
            }
        };
        // The engine's range: a limit outside it never holds (or overflows the arithmetic).
        let policyd = match kind {
            LimitKind::MessageCumulativeSize => format!("{kind_text} CounterLimit {counter} kB"),
            LimitKind::MessageCount | LimitKind::RecipientCount => {
                format!("{kind_text} CounterLimit {counter}")
            }
        };
        let checked = limit
            .ok_or_else(|| {
                format!(
                    "{} limit {counter} kB is above the maximum of 100 TB",
                    kind.as_str()
                )
            })
            .and_then(|n| {
                bounds::check_limit(kind, n)
                    .map(|()| n)
                    .map_err(|e| format!("{e} (Policyd's {policyd})"))
            });
        let limit = match checked {
            Ok(n) => n,
            Err(why) => {
                report.skipped.push(Skipped {
                    what: format!("{what} of {place}"),
                    why: format!("{why}; the quota's other limits are imported"),
                });
                continue;
            }
        };
        report.notes.push(match kind {
            LimitKind::MessageCumulativeSize => {
                format!("{place}: MessageCumulativeSize {counter} kB became {limit} bytes")
            }
            LimitKind::MessageCount | LimitKind::RecipientCount => format!(
                "{place}: Policyd's MessageCount {counter} counted recipients (one per \
                 RCPT); imported as RecipientCount {counter} to keep that behaviour"
            ),
        });
        let kind = kind.as_str();
        report
            .imported
            .push(format!("{kind} limit {limit} of {place}"));
        quota.limits.push(LimitDef {
            kind: kind.into(),
            limit,
            disabled: l.disabled,
            comment: non_empty(l.comment),
        });
    }

    super::greylisting::convert(
        std::mem::take(&mut raw.greylisting),
        &policy_index,
        &skipped_policies,
        &mut def,
        &mut report,
    );
    super::checkspf::convert(
        std::mem::take(&mut raw.checkspf),
        &policy_index,
        &skipped_policies,
        &mut def,
        &mut report,
    );

    super::checkhelo::convert(
        std::mem::take(&mut raw.checkhelo),
        &policy_index,
        &skipped_policies,
        &mut def,
        &mut report,
    );

    super::amavis::convert(
        std::mem::take(&mut raw.amavis),
        &policy_index,
        &skipped_policies,
        &mut def,
        &mut report,
    );

    super::accounting::convert(
        std::mem::take(&mut raw.accounting),
        &policy_index,
        &skipped_policies,
        &mut def,
        &mut report,
    );

    match sluice_engine::compile(&def) {
        Ok(compiled) => {
            for w in compiled.warnings {
                report.notes.push(format!("check: {w}"));
            }
        }
        Err(findings) => {
            for f in findings {
                report.notes.push(format!("check: {f}"));
            }
        }
    }
    report.def = def;
    report
}

/// Why a row of `policy_id` has no policy to go to: its policy was skipped, does not exist,
/// or is NULL.
fn missing_policy_reason(policy_id: Option<i64>, skipped_policies: &HashSet<i64>) -> String {
    match policy_id {
        Some(id) if skipped_policies.contains(&id) => format!("its policy #{id} was skipped"),
        Some(id) => format!("its policy #{id} does not exist"),
        None => "it belongs to no policy (PolicyID is NULL)".into(),
    }
}

/// A module's settings row of Policyd as Sluice's (`row`), checked by the engine's rules
/// (`check`); `None`, with the reason in the report, when a column is out of range or the
/// engine refuses the settings (Policyd answered DEFER for such a row: a data error).
pub(super) fn valid_row<D>(
    what: &str,
    row: Result<D, String>,
    check: impl FnOnce(&D) -> Result<(), Vec<(&'static str, String)>>,
    report: &mut ImportReport,
) -> Option<D> {
    let checked = row.and_then(|d| {
        check(&d).map(|()| d).map_err(|errs| {
            errs.into_iter()
                .map(|(_, m)| m)
                .collect::<Vec<_>>()
                .join("; ")
        })
    });
    match checked {
        Ok(d) => Some(d),
        Err(why) => {
            report.skipped.push(Skipped {
                what: what.to_owned(),
                why: format!("{why}: Policyd would answer DEFER (data error) for it"),
            });
            None
        }
    }
}

/// Puts a module's settings row (`what`, of `module`) in its policy's `slot`: the first as
/// it is, a later one of the same policy merged over it by `overlay` (its set columns win,
/// as Policyd's merge in ID order does), with a note; the row counts as imported.
pub(super) fn place_settings<D>(
    policy: &str,
    slot: &mut Option<D>,
    d: D,
    (module, what): (&str, &str),
    overlay: impl FnOnce(&mut D, D),
    report: &mut ImportReport,
) {
    match slot {
        Some(existing) => {
            report.notes.push(format!(
                "{what}: policy {policy:?} has several {module} rows; merged in ID order (a \
                 later row's set columns win, as Policyd's merge does)"
            ));
            overlay(existing, d);
        }
        None => *slot = Some(d),
    }
    report.imported.push(format!("{what} (policy {policy:?})"));
}

/// The index in the set's policies of a module row's policy (the row `what`); `None`, with
/// the reason in the report, when it has none or the row is `disabled` (Policyd ignores
/// disabled rows too).
pub(super) fn row_policy(
    what: &str,
    policy_id: Option<i64>,
    disabled: bool,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    report: &mut ImportReport,
) -> Option<usize> {
    let why = match policy_id.and_then(|id| policy_index.get(&id)) {
        None => missing_policy_reason(policy_id, skipped_policies),
        Some(_) if disabled => "it is disabled (Policyd ignores it too)".into(),
        Some(&pi) => return Some(pi),
    };
    report.skipped.push(Skipped {
        what: what.to_owned(),
        why,
    });
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_are_canonicalised_or_refused() {
        assert_eq!(
            canonical_track("senderip:/24").as_deref(),
            Some("SenderIP:/24")
        );
        assert_eq!(
            canonical_track("Sender:User@Domain").as_deref(),
            Some("Sender:user@domain")
        );
        assert_eq!(
            canonical_track("Recipient:@domain").as_deref(),
            Some("Recipient:@domain")
        );
        assert_eq!(
            canonical_track("SASLUsername").as_deref(),
            Some("SASLUsername")
        );
        assert_eq!(canonical_track("policy").as_deref(), Some("Policy"));
        for bad in [
            "SenderIP",
            "SenderIP:/200",
            "Sender",
            "Sendr:user@domain",
            "Helo",
            "",
        ] {
            assert_eq!(canonical_track(bad), None, "{bad:?}");
        }
    }

    use super::super::read::{RawLimit, RawMember, RawPolicy, RawQuota};

    fn policy(id: i64, priority: i64) -> RawPolicy {
        RawPolicy {
            id,
            name: Some(format!("p{id}")),
            priority,
            ..Default::default()
        }
    }

    fn quota(id: i64, policy_id: i64, period: i64) -> RawQuota {
        RawQuota {
            id,
            policy_id: Some(policy_id),
            name: Some(format!("q{id}")),
            track: Some("Sender:user@domain".into()),
            period: Some(period),
            verdict: Some("DEFER".into()),
            ..Default::default()
        }
    }

    fn limit(id: i64, quota_id: i64, kind: &str, counter: i64) -> RawLimit {
        RawLimit {
            id,
            quota_id: Some(quota_id),
            kind: Some(kind.into()),
            counter_limit: Some(counter),
            ..Default::default()
        }
    }

    /// Every number outside the engine's ranges is skipped with the reason; what is left
    /// compiles, and nothing in it can overflow.
    #[test]
    fn out_of_range_numbers_are_skipped_with_the_reason() {
        let max = bounds::MAX_PERIOD_SECS as i64;
        let raw = Raw {
            policies: vec![policy(1, 10), policy(2, 40_000), policy(3, -32_768)],
            members: vec![
                RawMember {
                    id: 1,
                    policy_id: Some(1),
                    ..Default::default()
                },
                RawMember {
                    id: 2,
                    policy_id: Some(2),
                    ..Default::default()
                },
            ],
            quotas: vec![
                quota(1, 1, max),
                quota(2, 1, max + 1),
                quota(3, 1, i64::MAX),
                quota(4, 2, 60),
                quota(5, 1, 0),
            ],
            limits: vec![
                limit(1, 1, "MessageCount", 100),
                limit(2, 2, "MessageCount", 100),
                limit(3, 3, "MessageCount", 100),
                limit(4, 1, "MessageCumulativeSize", 97_656_250_000),
                limit(5, 1, "MessageCumulativeSize", 97_656_250_001),
                limit(6, 1, "MessageCumulativeSize", i64::MAX),
                limit(7, 1, "MessageCount", 1_000_000_001),
                limit(8, 1, "MessageCount", i64::MAX),
            ],
            ..Default::default()
        };
        let report = convert(raw);
        let text = report.to_string();
        let skipped = |what: &str, why: &str| {
            assert!(
                report
                    .skipped
                    .iter()
                    .any(|s| s.what.starts_with(what) && s.why.contains(why)),
                "expected a skip of {what:?} because {why:?}:\n{text}"
            )
        };
        skipped(
            "policy #2 \"p2\"",
            "priority 40000 is outside -32768..=32767",
        );
        skipped("policy member #2", "its policy #2 was skipped");
        skipped("quota #4", "its policy #2 was skipped");
        skipped(
            "quota #2 \"q2\"",
            "period 31,622,401 s is longer than the maximum of 366 days",
        );
        skipped(
            "quota #3 \"q3\"",
            "period 9,223,372,036,854,775,807 s is longer than the maximum of 366 days",
        );
        skipped("quota #5 \"q5\"", "period 0 is not a positive number");
        skipped("quota limit #2", "quota #2 does not exist or was skipped");
        skipped("quota limit #3", "quota #3 does not exist or was skipped");
        skipped(
            "quota limit #5 of quota \"q1\"",
            "above the maximum of 100 TB (100,000,000,000,000 bytes) (Policyd's MessageCumulativeSize CounterLimit 97656250001 kB)",
        );
        skipped(
            "quota limit #6 of quota \"q1\"",
            "limit 9223372036854775807 kB is above the maximum of 100 TB",
        );
        skipped(
            "quota limit #7 of quota \"q1\"",
            "RecipientCount limit 1,000,000,001 is above the maximum of 1,000,000,000",
        );
        skipped("quota limit #8 of quota \"q1\"", "above the maximum");

        let names: Vec<_> = report
            .def
            .policies
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["p1", "p3"], "{text}");
        assert_eq!(report.def.policies[1].priority, -32_768);
        let quotas = &report.def.policies[0].quotas;
        assert_eq!(quotas.len(), 1, "{text}");
        assert_eq!(quotas[0].period, bounds::MAX_PERIOD_SECS);
        let limits: Vec<(&str, u64)> = quotas[0]
            .limits
            .iter()
            .map(|l| (l.kind.as_str(), l.limit))
            .collect();
        assert_eq!(
            limits,
            [
                ("RecipientCount", 100),
                ("MessageCumulativeSize", 100_000_000_000_000)
            ]
        );
        let compiled = sluice_engine::compile(&report.def).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
    }

    #[test]
    fn names_are_made_unique() {
        let mut taken = HashSet::new();
        assert_eq!(unique(&mut taken, "a".into(), 1), ("a".into(), false));
        assert_eq!(unique(&mut taken, "a".into(), 2), ("a (#2)".into(), true));
        assert_eq!(
            unique(&mut taken, "a".into(), 2),
            ("a (#2, 2)".into(), true)
        );
    }
}
