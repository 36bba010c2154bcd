//! Policyd's `amavis_rules`: the one setting the policy service can enforce itself,
//! `max_message_size` (kB), becomes the policy's message size cap
//! (`[policy.message_caps] max_message_size`, bytes = kB × 1024). The other Amavis settings
//! (spam levels, banned files, bypasses, quarantine) belong to amavisd: rows with them are
//! reported, not imported.

use std::collections::{HashMap, HashSet};

use sluice_engine::model::PolicySetDef;
use sluice_engine::MessageCapsDef;
use sqlx::{AnyConnection, AssertSqlSafe};

use super::read::{flag, id, int, text, Dialect};
use super::report::{ImportReport, Skipped};
use crate::StoreError;

/// One `amavis_rules` row, the columns the import reads.
#[derive(Debug, Default)]
pub(super) struct RawAmavis {
    pub id: i64,
    pub policy_id: Option<i64>,
    pub name: Option<String>,
    /// kB.
    pub max_message_size: Option<i64>,
    /// 0 inherit, 1 merge (lists only), 2 overwrite.
    pub max_message_size_mode: Option<i64>,
    pub comment: Option<String>,
    pub disabled: bool,
}

/// Policyd's overwrite mode (`X_m = 2`): the row sets the value.
const OVERWRITE: i64 = 2;

/// Reads `amavis_rules`; a database without it (the Amavis module was not installed) has
/// nothing to import.
pub(super) async fn read(
    conn: &mut AnyConnection,
    d: Dialect,
) -> Result<Vec<RawAmavis>, StoreError> {
    let sql = d.select(
        "amavis_rules",
        &[
            "i:ID",
            "i:PolicyID",
            "t:Name",
            "i:max_message_size",
            "i:max_message_size_m",
            "t:Comment",
            "i:Disabled",
        ],
    );
    let mut out = Vec::new();
    if let Ok(rows) = sqlx::query(AssertSqlSafe(sql)).fetch_all(&mut *conn).await {
        for r in rows {
            out.push(RawAmavis {
                id: id(&r, 0)?,
                policy_id: int(&r, 1)?,
                name: text(&r, 2)?,
                max_message_size: int(&r, 3)?,
                max_message_size_mode: int(&r, 4)?,
                comment: text(&r, 5)?,
                disabled: flag(&r, 6)?,
            });
        }
    }
    Ok(out)
}

/// Converts the rows into policies' size caps, reporting what is skipped and why.
pub(super) fn convert(
    rows: Vec<RawAmavis>,
    policy_index: &HashMap<i64, usize>,
    skipped_policies: &HashSet<i64>,
    def: &mut PolicySetDef,
    report: &mut ImportReport,
) {
    for r in rows {
        let what = format!(
            "amavis rule #{} {:?}",
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
        let why_not = match (r.max_message_size_mode, r.max_message_size) {
            (Some(OVERWRITE), Some(kb)) => match cap_bytes(kb) {
                Ok(bytes) => {
                    let policy = &mut def.policies[pi];
                    let caps = policy
                        .message_caps
                        .get_or_insert_with(MessageCapsDef::default);
                    caps.max_message_size = Some(bytes);
                    if caps.comment.is_none() {
                        caps.comment = r
                            .comment
                            .clone()
                            .filter(|c| !c.trim().is_empty())
                            .or_else(|| Some(format!("from Policyd's amavis rule #{}", r.id)));
                    }
                    report.imported.push(format!(
                        "message size cap {bytes} bytes ({kb} kB, Amavis max_message_size) of policy {:?}",
                        policy.name
                    ));
                    None
                }
                Err(e) => Some(e),
            },
            (Some(OVERWRITE), None) => {
                Some("max_message_size is set to overwrite but empty".into())
            }
            _ => Some("it sets no max_message_size (mode is not overwrite)".into()),
        };
        if let Some(why) = why_not {
            report.skipped.push(Skipped {
                what,
                why: format!("{why}; its other settings belong to amavisd"),
            });
        } else {
            report.notes.push(format!(
                "amavis rule #{}: only max_message_size is imported (as a message size cap, enforced by Sluice at RCPT and END-OF-MESSAGE); its other settings belong to amavisd",
                r.id
            ));
        }
    }
}

/// A Policyd size in kB as bytes, range-checked.
fn cap_bytes(kb: i64) -> Result<u64, String> {
    let bytes = u64::try_from(kb)
        .ok()
        .and_then(|kb| kb.checked_mul(1024))
        .filter(|b| (1..=sluice_engine::bounds::MAX_SIZE_LIMIT).contains(b));
    bytes.ok_or_else(|| format!("max_message_size {kb} kB is outside 1 kB ..= 100 TB"))
}
