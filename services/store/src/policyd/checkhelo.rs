//! Policyd's CheckHelo tables: `checkhelo` rows become policies' `checkhelo` settings,
//! `checkhelo_blacklist` and `checkhelo_whitelist` the global lists; the state table
//! (`checkhelo_tracking`, the HELOs each client used) is counted and reported, not imported.

use std::collections::{HashMap, HashSet};

use sluice_engine::checkhelo::settings::{compile_row, parse_whitelist_entry, MAX_HELO_LEN};
use sluice_engine::model::PolicySetDef;
use sluice_engine::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
use sqlx::{AnyConnection, AssertSqlSafe};

use super::read::{flag, id, int, text, Dialect};
use super::report::{ImportReport, Skipped};
use crate::StoreError;

/// One `checkhelo` row.
#[derive(Debug, Default)]
pub(super) struct RawCheckHelo {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub use_blacklist: Option<i64>,
    pub blacklist_period: Option<i64>,
    pub use_hrp: Option<i64>,
    pub hrp_period: Option<i64>,
    pub hrp_limit: Option<i64>,
    pub reject_invalid: Option<i64>,
    pub reject_ip: Option<i64>,
    pub reject_unresolvable: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// One `checkhelo_blacklist` (`Helo`) or `checkhelo_whitelist` (`Source`) row.
#[derive(Debug, Default)]
pub(super) struct RawEntry {
    pub id: i64,
    pub value: Option<String>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Policyd's CheckHelo rows.
#[derive(Debug, Default)]
pub(super) struct RawHelo {
    pub rows: Vec<RawCheckHelo>,
    pub blacklist: Vec<RawEntry>,
    pub whitelist: Vec<RawEntry>,
    /// Rows of `checkhelo_tracking`.
    pub tracking: i64,
}

/// Reads the CheckHelo tables; a database without them has nothing to import.
pub(super) async fn read(conn: &mut AnyConnection, d: Dialect) -> Result<RawHelo, StoreError> {
    let mut raw = RawHelo::default();
    let sql = d.select(
        "checkhelo",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "i:UseBlacklist",
            "i:BlacklistPeriod",
            "i:UseHRP",
            "i:HRPPeriod",
            "i:HRPLimit",
            "i:RejectInvalid",
            "i:RejectIP",
            "i:RejectUnresolvable",
            "t:Comment",
            "i:Disabled",
        ],
    );
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            raw.rows.push(RawCheckHelo {
                id: id(&r, 0)?,
                policy_id: int(&r, 1)?,
                name: text(&r, 2)?,
                use_blacklist: int(&r, 3)?,
                blacklist_period: int(&r, 4)?,
                use_hrp: int(&r, 5)?,
                hrp_period: int(&r, 6)?,
                hrp_limit: int(&r, 7)?,
                reject_invalid: int(&r, 8)?,
                reject_ip: int(&r, 9)?,
                reject_unresolvable: int(&r, 10)?,
                comment: text(&r, 11)?,
                disabled: flag(&r, 12)?,
            });
        }
    }
    for (table, column, out) in [
        ("checkhelo_blacklist", "t:Helo", &mut raw.blacklist),
        ("checkhelo_whitelist", "t:Source", &mut raw.whitelist),
    ] {
        let sql = d.select(table, &["i:ID", column, "t:Comment", "i:Disabled"]);
        if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
            for r in rows {
                out.push(RawEntry {
                    id: id(&r, 0)?,
                    value: text(&r, 1)?,
                    comment: text(&r, 2)?,
                    disabled: flag(&r, 3)?,
                });
            }
        }
    }
    let sql = format!("SELECT {} FROM checkhelo_tracking", d.int("COUNT(*)"));
    if let Ok(row) = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *conn).await {
        raw.tracking = id(&row, 0)?;
    }
    Ok(raw)
}

/// Policyd's `Use*`/`Reject*` columns: NULL inherits, 1 is on, anything else off.
fn on(v: Option<i64>) -> Option<bool> {
    v.map(|v| v == 1)
}

/// A number column as the model's (negative: an error naming the column).
fn num(v: Option<i64>, column: &str) -> Result<Option<u64>, String> {
    v.map(|v| u64::try_from(v).map_err(|_| format!("{column} is {v} (negative)")))
        .transpose()
}

fn row_def(r: &RawCheckHelo) -> Result<CheckHeloDef, String> {
    Ok(CheckHeloDef {
        use_blacklist: on(r.use_blacklist),
        blacklist_period: num(r.blacklist_period, "BlacklistPeriod")?,
        use_hrp: on(r.use_hrp),
        hrp_period: num(r.hrp_period, "HRPPeriod")?,
        hrp_limit: num(r.hrp_limit, "HRPLimit")?,
        reject_invalid: on(r.reject_invalid),
        reject_ip: on(r.reject_ip),
        reject_unresolvable: on(r.reject_unresolvable),
        dns_failure: None,
        comment: r.comment.clone().filter(|c| !c.is_empty()),
        disabled: r.disabled,
    })
}

/// Every set field of `later` overrides `into`'s (Policyd's merge, within one policy).
fn overlay(into: &mut CheckHeloDef, later: CheckHeloDef) {
    macro_rules! over {
        ($($f:ident),*) => { $( if later.$f.is_some() { into.$f = later.$f; } )* };
    }
    over!(
        use_blacklist,
        blacklist_period,
        use_hrp,
        hrp_period,
        hrp_limit,
        reject_invalid,
        reject_ip,
        reject_unresolvable,
        comment
    );
}

/// Adds the CheckHelo rows to `def` (policies by Policyd ID in `policy_index`).
pub(super) fn convert(
    raw: RawHelo,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    def: &mut PolicySetDef,
    report: &mut ImportReport,
) {
    let mut windows = false;
    for r in raw.rows {
        let what = format!("checkhelo #{} {:?}", r.id, r.name.as_deref().unwrap_or(""));
        let Some(pi) = super::convert::row_policy(
            &what,
            r.policy_id,
            r.disabled,
            policy_index,
            skipped_policies,
            report,
        ) else {
            continue;
        };
        let Some(d) =
            super::convert::valid_row(&what, row_def(&r), |d| compile_row(d).map(drop), report)
        else {
            continue;
        };
        windows |= d.blacklist_period.is_some() || d.hrp_period.is_some();
        let policy = &mut def.policies[pi];
        super::convert::place_settings(
            &policy.name,
            &mut policy.checkhelo,
            d,
            ("checkhelo", &what),
            overlay,
            report,
        );
    }
    if windows {
        report.notes.push(
            "checkhelo: BlacklistPeriod and HRPPeriod are real windows in Sluice (the last N \
             seconds); Policyd compared them with timestamps, so everything still tracked \
             counted: expect fewer HRP and blacklist rejections for old HELOs"
                .into(),
        );
    }
    let mut seen = HashSet::new();
    for b in raw.blacklist {
        let what = format!("checkhelo blacklist #{}", b.id);
        let Some(helo) = b
            .value
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        else {
            report.skipped.push(Skipped {
                what,
                why: "its Helo is empty".into(),
            });
            continue;
        };
        if helo.len() > MAX_HELO_LEN || helo.contains(char::is_whitespace) {
            report.skipped.push(Skipped {
                what: format!("{what} {helo:?}"),
                why: "not a HELO name (spaces, or longer than 255 bytes)".into(),
            });
            continue;
        }
        if helo.contains('*') {
            report.notes.push(format!(
                "{what} {helo:?}: `*` is a wildcard in Sluice (Policyd compared exactly)"
            ));
        }
        if !seen.insert(helo.to_lowercase()) {
            report.skipped.push(Skipped {
                what: format!("{what} {helo:?}"),
                why: "a duplicate of an earlier entry (Sluice compares case-insensitively)".into(),
            });
            continue;
        }
        report.imported.push(format!("{what} {helo:?}"));
        def.checkhelo_blacklist.push(HeloBlacklistDef {
            helo,
            disabled: b.disabled,
            comment: b.comment.filter(|c| !c.is_empty()),
        });
    }
    let mut seen = HashSet::new();
    for w in raw.whitelist {
        let what = format!("checkhelo whitelist #{}", w.id);
        let Some(source) = w
            .value
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        else {
            report.skipped.push(Skipped {
                what,
                why: "its Source is empty".into(),
            });
            continue;
        };
        if let Err(e) = parse_whitelist_entry(&source) {
            report.skipped.push(Skipped {
                what: format!("{what} {source:?}"),
                why: format!("{e} (Policyd answered DEFER for requests it was checked against)"),
            });
            continue;
        }
        if !seen.insert(source.to_ascii_lowercase()) {
            report.skipped.push(Skipped {
                what: format!("{what} {source:?}"),
                why: "a duplicate of an earlier entry".into(),
            });
            continue;
        }
        report.imported.push(format!("{what} {source:?}"));
        def.checkhelo_whitelist.push(HeloWhitelistDef {
            source,
            disabled: w.disabled,
            comment: w.comment.filter(|c| !c.is_empty()),
        });
    }
    if raw.tracking > 0 {
        let n = raw.tracking;
        report.skipped.push(Skipped {
            what: format!(
                "{n} row{} in table checkhelo_tracking",
                if n == 1 { "" } else { "s" }
            ),
            why: "CheckHelo state is not imported: Sluice keeps the HELOs each client used in \
                  process or in Redis, expiring by their windows; HRP counts start afresh"
                .into(),
        });
    }
}
