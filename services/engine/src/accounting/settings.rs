//! Accounting rows compiled: the track, the period and its time zone, the limits with
//! their counter key heads, the verdict. Ranges are checked here, once.

use super::def::AccountingDef;
use super::period::{self, PeriodKind};
use crate::bounds;
use crate::compile::LimitKind;
use crate::track::Track;
use crate::verdict::Verdict;
use crate::window::WindowSpec;
use jiff::tz::TimeZone;
use std::sync::Arc;

/// Sub-buckets of an accounting counter's window: a counter is one calendar period (its
/// key names the period), so the window only has to outlast the period; few buckets keep a
/// counter small (in Redis too).
pub const ACCOUNTING_BUCKETS: u32 = 32;

/// What starts the END-OF-MESSAGE label of an accounting row (quota labels never do).
pub(crate) const LABEL_MARK: char = '\u{1e}';

/// A compiled accounting row.
#[derive(Debug, Clone)]
pub(crate) struct AccountingRule {
    pub name: Arc<str>,
    pub track: Track,
    pub kind: PeriodKind,
    pub tz: TimeZone,
    pub tz_name: Arc<str>,
    /// `None`: count only (limits never refuse).
    pub verdict: Option<Verdict>,
    pub data: Option<String>,
    pub last: bool,
    /// Message count (always), recipient count (when limited), size (always).
    pub limits: Vec<AcctLimit>,
    /// Names the row in END-OF-MESSAGE records.
    pub eom_label: String,
    pub window: WindowSpec,
}

/// One counter of a row.
#[derive(Debug, Clone)]
pub(crate) struct AcctLimit {
    pub kind: LimitKind,
    /// The limit the counter enforces (the maximum when it only counts).
    pub limit: u64,
    /// Whether a refusal gives the row's verdict (a limit was set and the row has one).
    pub enforced: bool,
    /// `acct/<policy>/<name>/<Kind>/`: a counter key is this, the period key, `/`, and
    /// the track key.
    pub key_head: Arc<str>,
}

impl AccountingRule {
    /// The action of a refusal by a limit of `kind`: the verdict with the data or
    /// Policyd's default text.
    pub fn action(&self, kind: LimitKind) -> Option<sluice_protocol::Action> {
        let text = match kind {
            LimitKind::MessageCumulativeSize => {
                "Policy rejection; Cumulative message size exceeded"
            }
            LimitKind::MessageCount | LimitKind::RecipientCount => {
                "Policy rejection; Message count exceeded"
            }
        };
        Some(self.verdict?.to_action(self.data.as_deref(), Some(text)))
    }

    /// The limit of `kind` of this row, if it has one.
    pub fn limit(&self, kind: LimitKind) -> Option<&AcctLimit> {
        self.limits.iter().find(|l| l.kind == kind)
    }
}

/// The END-OF-MESSAGE label of row `name` of `policy`.
pub(crate) fn label(policy: &str, name: &str) -> String {
    format!("{LABEL_MARK}{policy}\u{1f}{name}")
}

/// The policy and row names of an accounting END-OF-MESSAGE label (`None`: not one).
pub(crate) fn parse_label(label: &str) -> Option<(&str, &str)> {
    label.strip_prefix(LABEL_MARK)?.split_once('\u{1f}')
}

/// Problems found compiling a row: (field, message) errors, and warnings.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub errors: Vec<(&'static str, String)>,
    pub warnings: Vec<(&'static str, String)>,
}

/// Compiles row `d` of `policy` (`None` when it has errors, listed in `out`).
pub(crate) fn compile_row(
    policy: &str,
    d: &AccountingDef,
    out: &mut Findings,
) -> Option<AccountingRule> {
    let what = format!("policy {policy:?} accounting {:?}", d.name);
    let start = out.errors.len();
    if d.name.trim().is_empty() {
        out.errors.push((
            "name",
            format!("policy {policy:?}: accounting name is empty"),
        ));
    }
    let track = Track::parse(&d.track)
        .map_err(|e| out.errors.push(("track", format!("{what}: {e}"))))
        .ok();
    let kind = PeriodKind::parse(&d.period);
    if kind.is_none() {
        out.errors.push((
            "period",
            format!("{what}: unknown period {:?} (day, week or month)", d.period),
        ));
    }
    let tz_name = d.time_zone.as_deref().unwrap_or("UTC").trim().to_string();
    let tz = period::time_zone(&tz_name)
        .map_err(|e| out.errors.push(("time_zone", format!("{what}: {e}"))))
        .ok();
    let verdict = match d
        .verdict
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    {
        None => None,
        Some(v) => match Verdict::parse(v) {
            Some(Verdict::Ok | Verdict::Pass) | None => {
                out.errors.push((
                    "verdict",
                    format!("{what}: unknown accounting verdict {v:?} (REJECT, DEFER, HOLD, DISCARD, FILTER, REDIRECT, or none to count only)"),
                ));
                None
            }
            Some(v) => Some(v),
        },
    };
    if let Some(v) = verdict {
        if v.needs_data() && d.data.as_deref().is_none_or(|t| t.trim().is_empty()) {
            out.errors
                .push(("data", format!("{what}: {v} needs data (the target)")));
        }
    }
    let limits_set = [
        (
            LimitKind::MessageCount,
            d.message_count_limit,
            "message_count_limit",
        ),
        (
            LimitKind::RecipientCount,
            d.recipient_count_limit,
            "recipient_count_limit",
        ),
        (LimitKind::MessageCumulativeSize, d.size_limit, "size_limit"),
    ];
    for (kind, value, field) in limits_set {
        if let Some(v) = value {
            if let Err(e) = bounds::check_limit(kind, v) {
                out.errors.push((field, format!("{what}: {e}")));
            } else if v == 0 && verdict.is_some() {
                out.warnings.push((
                    field,
                    format!(
                        "{what}: {} limit 0 refuses everything it counts",
                        kind.as_str()
                    ),
                ));
            }
        }
    }
    let any_limit = limits_set.iter().any(|(_, v, _)| v.is_some());
    if !d.disabled && any_limit && verdict.is_none() {
        out.warnings.push((
            "verdict",
            format!("{what} has limits but no verdict: it only counts and never refuses"),
        ));
    } else if !d.disabled && !any_limit && verdict.is_some() {
        out.warnings.push((
            "verdict",
            format!("{what} has a verdict but no limit: it only counts and never refuses"),
        ));
    }
    if out.errors.len() > start {
        return None;
    }
    let (track, kind, tz) = (track?, kind?, tz?);
    let mut limits = Vec::with_capacity(3);
    for (lk, value, _) in limits_set {
        if lk == LimitKind::RecipientCount && value.is_none() {
            continue;
        }
        let enforced = verdict.is_some() && value.is_some();
        let limit = match value {
            Some(v) if enforced => v,
            _ => bounds::max_limit(lk),
        };
        let head = format!(
            "acct/{}",
            crate::engine::counter_key(policy, &d.name, lk, "")
        );
        limits.push(AcctLimit {
            kind: lk,
            limit,
            enforced,
            key_head: head.into(),
        });
    }
    Some(AccountingRule {
        name: d.name.as_str().into(),
        track,
        kind,
        tz,
        tz_name: tz_name.into(),
        verdict,
        data: d.data.clone(),
        last: d.last_accounting,
        limits,
        eom_label: label(policy, &d.name),
        window: WindowSpec::new(kind.window_ms(), ACCOUNTING_BUCKETS),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def() -> AccountingDef {
        AccountingDef {
            name: "outbound".into(),
            track: "Sender:@domain".into(),
            period: "month".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_counting_row_has_unreachable_limits() {
        let mut f = Findings::default();
        let r = compile_row("p", &def(), &mut f).unwrap();
        assert!(f.errors.is_empty() && f.warnings.is_empty());
        let kinds: Vec<_> = r.limits.iter().map(|l| (l.kind, l.enforced)).collect();
        assert_eq!(
            kinds,
            [
                (LimitKind::MessageCount, false),
                (LimitKind::MessageCumulativeSize, false)
            ]
        );
        assert_eq!(&*r.limits[0].key_head, "acct/p/outbound/MessageCount/");
        assert_eq!(r.limits[0].limit, bounds::MAX_COUNT_LIMIT);
        assert!(r.action(LimitKind::MessageCount).is_none());
        assert_eq!(parse_label(&r.eom_label), Some(("p", "outbound")));
        assert_eq!(parse_label("p\u{1f}q"), None, "a quota's label");
    }

    #[test]
    fn limits_verdicts_and_texts() {
        let mut d = def();
        d.verdict = Some("reject".into());
        d.recipient_count_limit = Some(10);
        d.size_limit = Some(1000);
        let mut f = Findings::default();
        let r = compile_row("p", &d, &mut f).unwrap();
        assert_eq!(r.limits.len(), 3);
        assert!(!r.limit(LimitKind::MessageCount).unwrap().enforced);
        assert_eq!(r.limit(LimitKind::RecipientCount).unwrap().limit, 10);
        assert_eq!(
            r.action(LimitKind::RecipientCount).unwrap().to_string(),
            "REJECT Policy rejection; Message count exceeded"
        );
        assert_eq!(
            r.action(LimitKind::MessageCumulativeSize)
                .unwrap()
                .to_string(),
            "REJECT Policy rejection; Cumulative message size exceeded"
        );
        d.data = Some("554 Too much this month".into());
        let r = compile_row("p", &d, &mut Findings::default()).unwrap();
        assert_eq!(
            r.action(LimitKind::MessageCount).unwrap().to_string(),
            "554 Too much this month"
        );
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let mut d = def();
        d.period = "fortnight".into();
        d.time_zone = Some("Europe/Atlantis".into());
        d.verdict = Some("OK".into());
        d.message_count_limit = Some(u64::MAX);
        let mut f = Findings::default();
        assert!(compile_row("p", &d, &mut f).is_none());
        let fields: Vec<_> = f.errors.iter().map(|e| e.0).collect();
        assert_eq!(
            fields,
            ["period", "time_zone", "verdict", "message_count_limit"]
        );
        assert!(f.errors[1].1.contains("Europe/Atlantis"), "{:?}", f.errors);
    }
}
