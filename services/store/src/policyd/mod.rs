//! The Policyd v2 ("cluebringer") importer: `sluice import-policyd`.
//!
//! Reads a Policyd v2 database (SQLite, PostgreSQL or MySQL/MariaDB; read only) and converts
//! its policies, members, groups, access control rules, quotas and limits into a
//! [`sluice_engine::PolicySetDef`], with an [`ImportReport`] saying what changed on the way:
//!
//! - Policyd's `MessageCount` counted recipients (one per RCPT): it becomes `RecipientCount`.
//! - `MessageCumulativeSize` limits are in kB in Policyd 2.1: they become bytes (× 1024).
//! - Disabled flags, priorities, names and comments are kept; duplicate names are made unique.
//! - Rows Sluice cannot use are skipped with a reason: dangling references, unknown tracks,
//!   verdicts or limit types, a quota `Data` that is a bare number (the seed guide's mistake),
//!   and rows of modules Sluice has no counterpart for.
//! - Greylisting settings and the `SenderIP:` whitelist are imported; greylisting state
//!   (triplets, auto-white/blacklist entries) is counted and reported, not imported.
//! - CheckHelo settings, its HELO blacklist and `SenderIP:` whitelist are imported; its
//!   state (`checkhelo_tracking`) is counted and reported, not imported.
//! - Amavis rules' `max_message_size` (kB, overwrite mode) becomes the policy's message size
//!   cap (bytes); the rules' other settings belong to amavisd and are not imported.
//! - CheckSPF settings (`checkspf`) are imported.
//! - Accounting rows are imported (period numbers named, `MessageCountLimit` as
//!   `recipient_count_limit`, sizes kB → bytes); `accounting_tracking` is reported, not
//!   imported.
//!
//! Writing the result is the caller's choice (`Store::replace_all(&report.def)`).

mod accounting;
mod amavis;
mod checkhelo;
mod checkspf;
mod convert;
mod greylisting;
mod read;
mod report;

use sqlx::Connection;

use crate::StoreError;
pub use report::{ImportReport, Skipped};

/// Reads the Policyd v2 database at `url` (`sqlite:`, `postgres:`, `postgresql:` or `mysql:`)
/// and converts it. Nothing is written anywhere.
pub async fn import_policyd(url: &str) -> Result<ImportReport, StoreError> {
    let dialect = read::Dialect::from_url(url)?;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await?;
    let raw = read::read_all(&mut conn, dialect).await;
    conn.close().await.ok();
    Ok(convert::convert(raw?))
}
