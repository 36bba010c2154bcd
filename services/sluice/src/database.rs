//! Opening the policy database: which commands may change its schema.
//!
//! - PostgreSQL is shared by every edge and the operator's commands: only `sluice migrate`
//!   changes its schema (the Helm chart runs it as a pre-install/pre-upgrade hook). Every
//!   other command and role — `edge`, `serve`, `policy import|export|diff`,
//!   `import-policyd`, `explain` — checks the schema version at start and refuses a schema
//!   older or newer than this build (exit code 64), so they need no CREATE rights, and an
//!   edge can run with a read-only role.
//! - A SQLite file belongs to the one `sluice serve` using it and to its operator: the
//!   commands that open it create and migrate it as before (a small site upgrades by
//!   restarting `serve`), except `sluice edge`, which never changes a schema.

use sluice_store::{Store, StoreError};

/// What opening the database may do to its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// `sluice migrate`: apply pending migrations, on any database.
    Migrate,
    /// `serve` and the operator's commands: a SQLite file is created and migrated; a
    /// PostgreSQL database is only checked.
    MigrateSqlite,
    /// `edge`: only checked, whatever the database.
    Check,
}

/// Connects to `url`, migrating or checking its schema as `schema` says.
pub async fn open(url: &str, schema: Schema) -> Result<Store, StoreError> {
    let sqlite = url.trim_start().to_ascii_lowercase().starts_with("sqlite:");
    match schema {
        Schema::Migrate => Store::connect(url).await,
        Schema::MigrateSqlite if sqlite => Store::connect(url).await,
        Schema::MigrateSqlite | Schema::Check => Store::connect_checked(url).await,
    }
}

/// Whether `e` says the database's schema (or the rights on it) does not fit this build:
/// waiting does not help, the command exits with code 64.
pub fn is_schema_error(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| {
        cause
            .downcast_ref::<StoreError>()
            .is_some_and(StoreError::is_schema_error)
    })
}
