//! Policyd's accounting tables: `accounting` rows become policies' accounting rows;
//! `accounting_tracking` (the current periods' counters) is counted and reported, not
//! imported.
//!
//! Conversions: `AccountingPeriod` 0/1/2 becomes `day`/`week`/`month`; Policyd's
//! `MessageCountLimit` counted recipients (one per RCPT) and becomes
//! `recipient_count_limit`; `MessageCumulativeSizeLimit` is in kB and becomes bytes
//! (× 1024); NULL or 0 is no limit; an empty verdict counts only. Policyd counted in the
//! server's local time: the rows get `time_zone = "UTC"` unless set afterwards, which the
//! report says.

use std::collections::{HashMap, HashSet};

use sluice_engine::model::PolicySetDef;
use sluice_engine::AccountingDef;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::convert::{canonical_track, non_empty, unique};
use super::read::{flag, id, int, text, Dialect};
use super::report::{ImportReport, Skipped};
use crate::StoreError;

/// One `accounting` row.
#[derive(Debug, Default)]
pub(super) struct RawAccounting {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub track: Option<String>,
    pub period: Option<i64>,
    pub count_limit: Option<i64>,
    pub size_limit_kb: Option<i64>,
    pub verdict: Option<String>,
    pub data: Option<String>,
    pub last: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Policyd's accounting rows, and the rows of its tracking table.
#[derive(Debug, Default)]
pub(super) struct RawAcct {
    pub rows: Vec<RawAccounting>,
    pub tracking: i64,
}

/// Reads the accounting tables; a database without them (Policyd 2.0) has nothing to
/// import.
pub(super) async fn read(conn: &mut AnyConnection, d: Dialect) -> Result<RawAcct, StoreError> {
    let mut raw = RawAcct::default();
    let sql = d.select(
        "accounting",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "t:Track",
            "i:AccountingPeriod",
            "i:MessageCountLimit",
            "i:MessageCumulativeSizeLimit",
            "t:Verdict",
            "t:Data",
            "i:LastAccounting",
            "t:Comment",
            "i:Disabled",
        ],
    );
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            raw.rows.push(RawAccounting {
                id: id(&r, 0)?,
                policy_id: int(&r, 1)?,
                name: text(&r, 2)?,
                track: text(&r, 3)?,
                period: int(&r, 4)?,
                count_limit: int(&r, 5)?,
                size_limit_kb: int(&r, 6)?,
                verdict: text(&r, 7)?,
                data: text(&r, 8)?,
                last: int(&r, 9)?,
                comment: text(&r, 10)?,
                disabled: flag(&r, 11)?,
            });
        }
    }
    let sql = format!("SELECT {} FROM accounting_tracking", d.int("COUNT(*)"));
    if let Ok(row) = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *conn).await {
        raw.tracking = id(&row, 0)?;
    }
    Ok(raw)
}

/// A limit column: NULL, 0 or negative is "no limit" (Policyd tests `> 0`).
fn limit(v: Option<i64>) -> Option<u64> {
    v.and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0)
}

/// The row as Sluice's, or why it cannot be.
fn row_def(
    r: &RawAccounting,
    name: String,
    notes: &mut Vec<String>,
    what: &str,
) -> Result<AccountingDef, String> {
    let track_text = r.track.as_deref().unwrap_or("");
    let track = canonical_track(track_text).ok_or_else(|| {
        format!("Policyd cannot use its track {track_text:?} either (it answers DEFER)")
    })?;
    let period = match r.period {
        Some(0) => "day",
        Some(1) => "week",
        Some(2) => "month",
        other => {
            return Err(format!(
                "AccountingPeriod {} is none of 0 (day), 1 (week), 2 (month)",
                other.map_or("NULL".into(), |p| p.to_string())
            ))
        }
    };
    let recipient_count_limit = limit(r.count_limit);
    if let Some(n) = recipient_count_limit {
        notes.push(format!(
            "{what}: Policyd's MessageCountLimit {n} counted recipients (one per RCPT); \
             imported as recipient_count_limit {n} to keep that behaviour"
        ));
    }
    let size_limit = match limit(r.size_limit_kb) {
        None => None,
        Some(kb) => {
            let bytes = kb
                .checked_mul(1024)
                .ok_or_else(|| format!("MessageCumulativeSizeLimit {kb} kB is out of range"))?;
            notes.push(format!(
                "{what}: MessageCumulativeSizeLimit {kb} kB became size_limit {bytes} bytes"
            ));
            Some(bytes)
        }
    };
    Ok(AccountingDef {
        name,
        track,
        period: period.into(),
        time_zone: None,
        message_count_limit: None,
        recipient_count_limit,
        size_limit,
        verdict: non_empty(r.verdict.clone()).map(|v| v.to_ascii_uppercase()),
        data: non_empty(r.data.clone()),
        last_accounting: r.last.is_some_and(|l| l != 0),
        disabled: r.disabled,
        comment: non_empty(r.comment.clone()),
    })
}

/// Adds the accounting rows to `def` (policies by Policyd ID in `policy_index`).
pub(super) fn convert(
    raw: RawAcct,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    def: &mut PolicySetDef,
    report: &mut ImportReport,
) {
    let mut names: HashMap<usize, HashSet<String>> = HashMap::new();
    let mut imported = 0;
    for r in raw.rows {
        let base = non_empty(r.name.clone()).unwrap_or_else(|| format!("accounting {}", r.id));
        let what = format!("accounting #{} {base:?}", r.id);
        let Some(pi) = super::convert::row_policy(
            &what,
            r.policy_id,
            false,
            policy_index,
            skipped_policies,
            report,
        ) else {
            continue;
        };
        let taken = names.entry(pi).or_default();
        let (name, renamed) = unique(taken, base.clone(), r.id);
        let mut notes = Vec::new();
        let d = row_def(&r, name.clone(), &mut notes, &what).and_then(|d| {
            sluice_engine::accounting::check_row(&def.policies[pi].name, &d)
                .map(|()| d)
                .map_err(|errs| errs.join("; "))
        });
        let d = match d {
            Ok(d) => d,
            Err(why) => {
                report.skipped.push(Skipped { what, why });
                continue;
            }
        };
        if renamed {
            report.notes.push(format!(
                "{what}: another accounting row of the policy has this name: renamed {name:?}"
            ));
        }
        report.notes.extend(notes);
        let policy = &mut def.policies[pi];
        report
            .imported
            .push(format!("{what} (policy {:?})", policy.name));
        policy.accounting.push(d);
        imported += 1;
    }
    if imported > 0 {
        report.notes.push(
            "accounting: Policyd counted periods in the server's local time; the imported \
             rows count in UTC: set `time_zone` (e.g. \"Europe/Berlin\") in their \
             [[policy.accounting]] tables if yours is another"
                .into(),
        );
    }
    if raw.tracking > 0 {
        let n = raw.tracking;
        report.skipped.push(Skipped {
            what: format!(
                "{n} row{} in table accounting_tracking",
                if n == 1 { "" } else { "s" }
            ),
            why: "accounting counters are not imported: Sluice keeps the current periods' \
                  counters in process or in Redis, so every limit starts from zero in the \
                  period of the switch"
                .into(),
        });
    }
}
