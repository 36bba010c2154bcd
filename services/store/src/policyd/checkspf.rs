//! Policyd's `checkspf` table: each row becomes its policy's `checkspf` settings
//! (`UseSPF`, `RejectFailedSPF`, `AddSPFHeader`; NULL inherits, 1 is on, anything else off).

use std::collections::{HashMap, HashSet};

use sluice_engine::model::PolicySetDef;
use sluice_engine::CheckSpfDef;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::read::{flag, id, int, text, Dialect};
use super::report::ImportReport;
use crate::StoreError;

/// One `checkspf` row.
#[derive(Debug, Default)]
pub(super) struct RawCheckSpf {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    pub use_spf: Option<i64>,
    pub reject_failed: Option<i64>,
    pub add_header: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Reads the `checkspf` table; a database without it has nothing to import.
pub(super) async fn read(
    conn: &mut AnyConnection,
    d: Dialect,
) -> Result<Vec<RawCheckSpf>, StoreError> {
    let sql = d.select(
        "checkspf",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "i:UseSPF",
            "i:RejectFailedSPF",
            "i:AddSPFHeader",
            "t:Comment",
            "i:Disabled",
        ],
    );
    let mut out = Vec::new();
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            out.push(RawCheckSpf {
                id: id(&r, 0)?,
                policy_id: int(&r, 1)?,
                name: text(&r, 2)?,
                use_spf: int(&r, 3)?,
                reject_failed: int(&r, 4)?,
                add_header: int(&r, 5)?,
                comment: text(&r, 6)?,
                disabled: flag(&r, 7)?,
            });
        }
    }
    Ok(out)
}

/// Policyd's `Use*`-style columns: NULL inherits, 1 is on, anything else off.
fn on(v: Option<i64>) -> Option<bool> {
    v.map(|v| v == 1)
}

/// Adds the `checkspf` rows to `def` (policies by Policyd ID in `policy_index`).
pub(super) fn convert(
    raw: Vec<RawCheckSpf>,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    def: &mut PolicySetDef,
    report: &mut ImportReport,
) {
    for r in raw {
        let what = format!("checkspf #{} {:?}", r.id, r.name.as_deref().unwrap_or(""));
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
        let d = CheckSpfDef {
            enabled: on(r.use_spf),
            reject_failed: on(r.reject_failed),
            add_header: on(r.add_header),
            disabled: false,
            comment: r.comment.filter(|c| !c.is_empty()),
        };
        let policy = &mut def.policies[pi];
        super::convert::place_settings(
            &policy.name,
            &mut policy.checkspf,
            d,
            ("checkspf", &what),
            |existing, d| {
                existing.enabled = d.enabled.or(existing.enabled);
                existing.reject_failed = d.reject_failed.or(existing.reject_failed);
                existing.add_header = d.add_header.or(existing.add_header);
                existing.comment = d.comment.or(existing.comment.take());
            },
            report,
        );
    }
}
