//! Policy storage for Sluice, and the ways policies get into it.
//!
//! Layout:
//! - [`Store`]: the policy definitions ([`sluice_engine::PolicySetDef`]) in SQLite or
//!   PostgreSQL (sqlx), with embedded migrations (`migrations/sqlite`, `migrations/postgres`)
//!   and change notification ([`Store::watch`]) driven by a trigger-maintained version counter,
//!   so even changes made directly in SQL are picked up.
//! - [`policy_file`]: the declarative TOML policy file (import/export), with errors that name
//!   file, line and field.
//! - [`policyd`]: the importer of Policyd v2 ("cluebringer") databases (SQLite, PostgreSQL,
//!   MySQL/MariaDB).
//!
//! - [`Store::write_counters`] and friends: the in-process counters and message sessions of
//!   `sluice serve`, kept in a SQLite policy database across restarts (written in the
//!   background, never per request).
//!
//! - [`Store::add_account`], [`Store::replace_all_audited`], [`Store::audit`] and friends:
//!   the admin service's accounts, tokens, sessions and audit trail, and its policy changes
//!   (checked against the version read, audited in the same transaction).
//!
//! - [`Store::insert_refusals`], [`Store::history`], [`Store::top_senders`] and friends: the
//!   refusal history and per-minute sender counts (written in batches in the background).
//!
//! Validation is `sluice_engine::compile`; this crate never decides what a policy means. It is
//! not on the request path: nothing here runs per Postfix request.
#![forbid(unsafe_code)]

mod error;
pub mod policy_file;
pub mod policyd;
mod store;

pub use error::StoreError;
pub use store::{
    default_database_url, Account, AccountingTotal, AccountingTotalRow, AdminRole, AlertLock,
    AuditEntry, AuditQuery, CounterReset, CountersWritten, FileCheck, HistoryQuery, NewAudit,
    Refusal, RefusalRow, SenderCount, Store, TokenInfo, TopQuery, TopSender,
    COUNTER_RESETS_KEEP_MS, DATABASE_ENV, DEFAULT_POLL, MAX_DOMAINS, MAX_REPORT_ROWS,
    POSTGRES_CONNECT_TIMEOUT, RESET_CHANNEL,
};
