//! Policyd's greylisting tables: `greylisting` rows become policies' `greylisting`
//! settings, `greylisting_whitelist` the static whitelist; the state tables (triplets,
//! auto-whitelist and auto-blacklist entries) are counted and reported, not imported.

use std::collections::{HashMap, HashSet};

use sluice_engine::greylisting::settings::{compile_row, parse_whitelist_entry};
use sluice_engine::model::PolicySetDef;
use sluice_engine::{GreylistWhitelistDef, GreylistingDef};
use sqlx::{AnyConnection, AssertSqlSafe};

use super::read::{flag, id, int, text, Dialect};
use super::report::{ImportReport, Skipped};
use crate::StoreError;

/// One `greylisting` row.
#[derive(Debug, Default)]
pub(super) struct RawGreylisting {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub use_greylisting: Option<i64>,
    pub period: Option<i64>,
    pub track: Option<String>,
    pub auth_validity: Option<i64>,
    pub unauth_validity: Option<i64>,
    pub use_awl: Option<i64>,
    pub awl_period: Option<i64>,
    pub awl_count: Option<i64>,
    pub awl_percentage: Option<i64>,
    pub use_abl: Option<i64>,
    pub abl_period: Option<i64>,
    pub abl_count: Option<i64>,
    pub abl_percentage: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// One `greylisting_whitelist` row.
#[derive(Debug, Default)]
pub(super) struct RawWhitelist {
    pub id: i64,
    pub source: Option<String>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Policyd's greylisting rows.
#[derive(Debug, Default)]
pub(super) struct RawGrey {
    pub rows: Vec<RawGreylisting>,
    pub whitelist: Vec<RawWhitelist>,
    /// (state table, rows) with rows.
    pub state: Vec<(&'static str, i64)>,
}

/// Greylisting state tables: counted for the report only.
const STATE_TABLES: [&str; 3] = [
    "greylisting_tracking",
    "greylisting_autowhitelist",
    "greylisting_autoblacklist",
];

/// Reads the greylisting tables; a database without them has nothing to import.
pub(super) async fn read(conn: &mut AnyConnection, d: Dialect) -> Result<RawGrey, StoreError> {
    let mut raw = RawGrey::default();
    let sql = d.select(
        "greylisting",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "i:UseGreylisting",
            "i:GreylistPeriod",
            "t:Track",
            "i:GreylistAuthValidity",
            "i:GreylistUnAuthValidity",
            "i:UseAutoWhitelist",
            "i:AutoWhitelistPeriod",
            "i:AutoWhitelistCount",
            "i:AutoWhitelistPercentage",
            "i:UseAutoBlacklist",
            "i:AutoBlacklistPeriod",
            "i:AutoBlacklistCount",
            "i:AutoBlacklistPercentage",
            "t:Comment",
            "i:Disabled",
        ],
    );
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            raw.rows.push(RawGreylisting {
                id: id(&r, 0)?,
                policy_id: int(&r, 1)?,
                name: text(&r, 2)?,
                use_greylisting: int(&r, 3)?,
                period: int(&r, 4)?,
                track: text(&r, 5)?,
                auth_validity: int(&r, 6)?,
                unauth_validity: int(&r, 7)?,
                use_awl: int(&r, 8)?,
                awl_period: int(&r, 9)?,
                awl_count: int(&r, 10)?,
                awl_percentage: int(&r, 11)?,
                use_abl: int(&r, 12)?,
                abl_period: int(&r, 13)?,
                abl_count: int(&r, 14)?,
                abl_percentage: int(&r, 15)?,
                comment: text(&r, 16)?,
                disabled: flag(&r, 17)?,
            });
        }
    }
    let sql = d.select(
        "greylisting_whitelist",
        &["i:ID", "t:Source", "t:Comment", "i:Disabled"],
    );
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            raw.whitelist.push(RawWhitelist {
                id: id(&r, 0)?,
                source: text(&r, 1)?,
                comment: text(&r, 2)?,
                disabled: flag(&r, 3)?,
            });
        }
    }
    for table in STATE_TABLES {
        let sql = format!("SELECT {} FROM {table}", d.int("COUNT(*)"));
        if let Ok(row) = sqlx::query(AssertSqlSafe(sql)).fetch_one(&mut *conn).await {
            let n = id(&row, 0)?;
            if n > 0 {
                raw.state.push((table, n));
            }
        }
    }
    Ok(raw)
}

/// Policyd's `Use*` columns: NULL inherits, 1 is on, anything else off.
fn use_flag(v: Option<i64>) -> Option<bool> {
    v.map(|v| v == 1)
}

/// A number column as the model's (negative: an error naming the column).
fn secs(v: Option<i64>, column: &str) -> Result<Option<u64>, String> {
    v.map(|v| u64::try_from(v).map_err(|_| format!("{column} is {v} (negative)")))
        .transpose()
}

fn row_def(r: &RawGreylisting) -> Result<GreylistingDef, String> {
    Ok(GreylistingDef {
        enabled: use_flag(r.use_greylisting),
        period: secs(r.period, "GreylistPeriod")?,
        track: r.track.clone().filter(|t| !t.trim().is_empty()),
        ipv6_prefix: None,
        auth_validity: secs(r.auth_validity, "GreylistAuthValidity")?,
        unauth_validity: secs(r.unauth_validity, "GreylistUnAuthValidity")?,
        auto_whitelist: use_flag(r.use_awl),
        auto_whitelist_period: secs(r.awl_period, "AutoWhitelistPeriod")?,
        auto_whitelist_count: secs(r.awl_count, "AutoWhitelistCount")?,
        auto_whitelist_percentage: secs(r.awl_percentage, "AutoWhitelistPercentage")?,
        auto_blacklist: use_flag(r.use_abl),
        auto_blacklist_period: secs(r.abl_period, "AutoBlacklistPeriod")?,
        auto_blacklist_count: secs(r.abl_count, "AutoBlacklistCount")?,
        auto_blacklist_percentage: secs(r.abl_percentage, "AutoBlacklistPercentage")?,
        comment: r.comment.clone().filter(|c| !c.is_empty()),
        disabled: r.disabled,
        ..GreylistingDef::default()
    })
}

/// Every set field of `later` overrides `into`'s (Policyd's merge, within one policy).
fn overlay(into: &mut GreylistingDef, later: GreylistingDef) {
    macro_rules! over {
        ($($f:ident),*) => { $( if later.$f.is_some() { into.$f = later.$f; } )* };
    }
    over!(
        enabled,
        period,
        track,
        auth_validity,
        unauth_validity,
        auto_whitelist,
        auto_whitelist_period,
        auto_whitelist_count,
        auto_whitelist_percentage,
        auto_blacklist,
        auto_blacklist_period,
        auto_blacklist_count,
        auto_blacklist_percentage,
        comment
    );
}

/// Adds the greylisting rows to `def` (policies by Policyd ID in `policy_index`).
pub(super) fn convert(
    raw: RawGrey,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    def: &mut PolicySetDef,
    report: &mut ImportReport,
) {
    let mut rows = 0;
    for r in raw.rows {
        let what = format!(
            "greylisting #{} {:?}",
            r.id,
            r.name.as_deref().unwrap_or("")
        );
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
        let policy = &mut def.policies[pi];
        super::convert::place_settings(
            &policy.name,
            &mut policy.greylisting,
            d,
            ("greylisting", &what),
            overlay,
            report,
        );
        rows += 1;
    }
    if rows > 0 {
        report.notes.push(
            "greylisting: `training_mode`, `defer_message` and `blacklist_message` live in \
             cluebringer.conf, not in the database: set `training`, `defer_message` and \
             `blacklist_message` in the [policy.greylisting] table of your lowest-priority \
             policy if yours differ from the defaults"
                .into(),
        );
    }
    let mut seen = HashSet::new();
    for w in raw.whitelist {
        let what = format!("greylisting whitelist #{}", w.id);
        let Some(source) = w
            .source
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
        else {
            report.skipped.push(Skipped {
                what,
                why: "its Source is empty".into(),
            });
            continue;
        };
        let is_ip = source
            .split_once(':')
            .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("SenderIP"));
        if !is_ip {
            report.skipped.push(Skipped {
                what: format!("{what} {source:?}"),
                why: "Policyd only understands `SenderIP:` entries and ignored this one; write \
                      it as `SenderDomain:` or `ReverseDNS:` in the policy file if it was meant \
                      to work"
                    .into(),
            });
            continue;
        }
        if let Err(e) = parse_whitelist_entry(&source) {
            report.skipped.push(Skipped {
                what: format!("{what} {source:?}"),
                why: e,
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
        def.greylisting_whitelist.push(GreylistWhitelistDef {
            source,
            disabled: w.disabled,
            comment: w.comment.filter(|c| !c.is_empty()),
        });
    }
    for (table, n) in raw.state {
        report.skipped.push(Skipped {
            what: format!("{n} row{} in table {table}", if n == 1 { "" } else { "s" }),
            why: "greylisting state is not imported: Sluice keeps triplets and \
                  auto-white/blacklist entries in process or in Redis, expiring by TTL; \
                  known triplets are greylisted once more after the switch"
                .into(),
        });
    }
}
