//! The policy store: a SQLite or PostgreSQL database holding one [`PolicySetDef`].

mod accounting_rows;
mod checkhelo_rows;
mod checkspf_rows;
mod connect;
mod counters;
mod greylisting_rows;
mod held;
mod message_caps_rows;
mod rows;
mod schema;
mod sqlite_file;
mod watch;

pub use accounting_totals::{AccountingTotal, AccountingTotalRow, MAX_REPORT_ROWS};
pub use connect::POSTGRES_CONNECT_TIMEOUT;
pub use counter_resets::{CounterReset, KEEP_MS as COUNTER_RESETS_KEEP_MS, RESET_CHANNEL};
pub use counters::CountersWritten;
pub use sqlite_file::FileCheck;
pub use watch::DEFAULT_POLL;

use std::str::FromStr;

use sluice_engine::model::PolicySetDef;
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
use std::sync::Arc;
use tokio::sync::Notify;

use crate::error::url_scheme;
use crate::StoreError;
use rows::AllRows;

/// The environment variable naming the policy database (read only by
/// [`default_database_url`]).
pub const DATABASE_ENV: &str = "SLUICE_DATABASE";

/// The policy database used when none is given: the value of `SLUICE_DATABASE` if set and not
/// empty, else `sqlite://sluice.db` (a file in the working directory, created on first use).
pub fn default_database_url() -> String {
    match std::env::var(DATABASE_ENV) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => "sqlite://sluice.db".to_owned(),
    }
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A connection pool to the policy database. Cheap to clone (clones share the pool).
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    /// Wakes the change watcher for an immediate check ([`Store::check_now`]).
    check: Arc<Notify>,
    /// Migrations applied when connecting.
    migrations_applied: usize,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(Arc<sqlite_file::SqliteFile>),
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the backend's pool (the SQL is the same for both).
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.backend {
            Backend::Sqlite(file) => {
                let pool = file.pool();
                let $pool: &sqlx::SqlitePool = &pool;
                $body
            }
            Backend::Postgres($pool) => $body,
        }
    };
}

mod accounting_totals;
mod accounts;
mod admin_rows;
mod alert_lock;
mod audit;
mod counter_resets;
mod history;

pub use accounts::{Account, AdminRole, TokenInfo};
pub use alert_lock::AlertLock;
pub use audit::{AuditEntry, AuditQuery, NewAudit};
pub use history::{
    HistoryQuery, Refusal, RefusalRow, SenderCount, TopQuery, TopSender, MAX_DOMAINS,
};

/// What connecting does to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemaUse {
    /// Apply pending migrations (the owner: `sluice migrate`, a server owning its SQLite
    /// file); a missing SQLite file is created.
    Migrate,
    /// Change nothing: fail unless the schema is exactly this build's.
    Check,
}

impl Store {
    /// Connects to `url` (`sqlite:`, `postgres:` or `postgresql:`) and applies pending
    /// migrations: for the owner of the schema (`sluice migrate`, and the commands that own a
    /// SQLite file). A SQLite file is created if missing and put in WAL mode. A schema newer
    /// than this build, or one it does not know, is refused ([`StoreError::is_schema_error`]);
    /// a role that may not create tables gets [`StoreError::MigrateDenied`] when migrations
    /// are pending.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Store::open(url, SchemaUse::Migrate).await
    }

    /// Connects to `url` without changing the schema, for roles that only use the tables
    /// (edges, and every command on a shared PostgreSQL database but `sluice migrate`):
    /// fails with a schema error ([`StoreError::is_schema_error`]) unless the database
    /// records exactly the migrations compiled into this build. A SQLite file must exist.
    /// Needs only CONNECT and SELECT rights (and whatever the caller then does).
    pub async fn connect_checked(url: &str) -> Result<Store, StoreError> {
        Store::open(url, SchemaUse::Check).await
    }

    async fn open(url: &str, schema: SchemaUse) -> Result<Store, StoreError> {
        let backend = match url_scheme(url).as_str() {
            "sqlite" => {
                let in_memory = url.contains(":memory:");
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(schema == SchemaUse::Migrate)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true);
                if !in_memory {
                    connect::check_sqlite_directory(options.get_filename())?;
                    let path = options.get_filename();
                    if schema == SchemaUse::Check && !path.exists() {
                        return Err(StoreError::NoDatabaseFile {
                            path: path.to_path_buf(),
                        });
                    }
                }
                let migrate = schema == SchemaUse::Migrate;
                let file = sqlite_file::SqliteFile::open(options, in_memory, migrate).await?;
                Backend::Sqlite(Arc::new(file))
            }
            "postgres" | "postgresql" => Backend::Postgres(connect::postgres(url).await?),
            scheme => {
                return Err(StoreError::UnsupportedUrl {
                    scheme: scheme.to_owned(),
                    expected: "sqlite:, postgres: or postgresql:",
                })
            }
        };
        let mut store = Store {
            backend,
            check: Arc::new(Notify::new()),
            migrations_applied: 0,
        };
        let checked = match schema {
            SchemaUse::Migrate => store.migrate().await.map(|n| store.migrations_applied = n),
            SchemaUse::Check => store.check_schema().await,
        };
        if let Err(e) = checked {
            store.close().await;
            return Err(e);
        }
        Ok(store)
    }

    /// How many schema migrations [`Store::connect`] applied (0: the schema was up to date).
    pub fn migrations_applied(&self) -> usize {
        self.migrations_applied
    }

    /// Asks the change watcher ([`Store::watch`]) to check now instead of at its next tick
    /// (on SIGHUP, say). Does nothing without a watcher.
    pub fn check_now(&self) {
        self.check.notify_one();
    }

    /// For a SQLite file: whether the file at its path is still the one open, reopening a
    /// replaced file (see [`FileCheck`]). Always [`FileCheck::Same`] for PostgreSQL and
    /// in-memory databases.
    pub async fn check_file(&self) -> Result<FileCheck, StoreError> {
        match &self.backend {
            Backend::Sqlite(file) => file.check().await,
            Backend::Postgres(_) => Ok(FileCheck::Same),
        }
    }

    /// The SQLite database file, if this store is one.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.backend {
            Backend::Sqlite(file) => file.path(),
            Backend::Postgres(_) => None,
        }
    }

    /// Applies pending schema migrations (idempotent; [`Store::connect`] already does it)
    /// and returns how many were applied (0: the schema was up to date, and nothing was
    /// sent that needs more than SELECT rights). A schema newer than this build, or one it
    /// does not know, is refused before anything runs.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let before = self.applied_migrations().await?;
        match schema::compare(self.migrator(), &before) {
            Ok(()) => return Ok(0),
            Err(e) if e.is_schema_behind() => {}
            Err(e) => return Err(e),
        }
        let run = match &self.backend {
            Backend::Sqlite(file) => SQLITE_MIGRATIONS.run(&*file.pool()).await,
            Backend::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        run.map_err(schema::migrate_error)?;
        let after = self.applied_migrations().await?;
        let successes = |rows: &[schema::Applied]| rows.iter().filter(|a| a.success).count();
        Ok(successes(&after).saturating_sub(successes(&before)))
    }

    /// Checks that the database records exactly the migrations compiled into this build,
    /// changing nothing (see [`Store::connect_checked`]).
    pub async fn check_schema(&self) -> Result<(), StoreError> {
        let applied = self.applied_migrations().await?;
        schema::compare(self.migrator(), &applied)
    }

    /// The migrations compiled in for this backend.
    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.backend {
            Backend::Sqlite(_) => &SQLITE_MIGRATIONS,
            Backend::Postgres(_) => &POSTGRES_MIGRATIONS,
        }
    }

    /// The rows of `_sqlx_migrations` (none when the table does not exist yet). A role
    /// without SELECT on it gets [`StoreError::ReadDenied`].
    async fn applied_migrations(&self) -> Result<Vec<schema::Applied>, StoreError> {
        let has_table = match self.backend {
            Backend::Sqlite(_) => schema::SQLITE_HAS_TABLE,
            Backend::Postgres(_) => schema::POSTGRES_HAS_TABLE,
        };
        let read = async {
            let exists: i64 = on_pool!(self, |pool| sqlx::query_scalar(has_table)
                .fetch_one(pool)
                .await?);
            if exists == 0 {
                return Ok(Vec::new());
            }
            let rows: Vec<schema::Applied> = on_pool!(self, |pool| {
                sqlx::query_as(schema::SELECT_APPLIED)
                    .fetch_all(pool)
                    .await?
            });
            Ok::<_, sqlx::Error>(rows)
        };
        read.await.map_err(|e| match e {
            e if schema::is_denied(&e) => StoreError::ReadDenied {
                cause: e.to_string(),
            },
            e => StoreError::Database(e),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// The change counter: it grows with every change of any policy table, whoever made it.
    pub async fn version(&self) -> Result<i64, StoreError> {
        const SQL: &str = "SELECT version FROM policy_version WHERE id = 1";
        let version: i64 = on_pool!(self, |pool| sqlx::query_scalar(SQL).fetch_one(pool).await?);
        Ok(version)
    }

    /// Reads the whole policy set, every object in insertion (id) order: the order of the
    /// file it was imported from. (Evaluation order is the engine's: by priority.)
    pub async fn load(&self) -> Result<PolicySetDef, StoreError> {
        let rows = on_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let rows = AllRows {
                groups: sqlx::query_as(rows::SELECT_GROUPS)
                    .fetch_all(&mut *tx)
                    .await?,
                group_members: sqlx::query_as(rows::SELECT_GROUP_MEMBERS)
                    .fetch_all(&mut *tx)
                    .await?,
                policies: sqlx::query_as(rows::SELECT_POLICIES)
                    .fetch_all(&mut *tx)
                    .await?,
                members: sqlx::query_as(rows::SELECT_MEMBERS)
                    .fetch_all(&mut *tx)
                    .await?,
                access_control: sqlx::query_as(rows::SELECT_ACCESS_CONTROL)
                    .fetch_all(&mut *tx)
                    .await?,
                quotas: sqlx::query_as(rows::SELECT_QUOTAS)
                    .fetch_all(&mut *tx)
                    .await?,
                limits: sqlx::query_as(rows::SELECT_LIMITS)
                    .fetch_all(&mut *tx)
                    .await?,
                greylisting: sqlx::query_as(greylisting_rows::SELECT_GREYLISTING)
                    .fetch_all(&mut *tx)
                    .await?,
                greylisting_whitelist: sqlx::query_as(greylisting_rows::SELECT_WHITELIST)
                    .fetch_all(&mut *tx)
                    .await?,
                message_caps: sqlx::query_as(message_caps_rows::SELECT)
                    .fetch_all(&mut *tx)
                    .await?,
                checkspf: sqlx::query_as(checkspf_rows::SELECT_CHECKSPF)
                    .fetch_all(&mut *tx)
                    .await?,
                skip_spf_pass: sqlx::query_as(checkspf_rows::SELECT_SKIP_SPF_PASS)
                    .fetch_all(&mut *tx)
                    .await?,
                checkhelo: sqlx::query_as(checkhelo_rows::SELECT_CHECKHELO)
                    .fetch_all(&mut *tx)
                    .await?,
                checkhelo_blacklist: sqlx::query_as(checkhelo_rows::SELECT_BLACKLIST)
                    .fetch_all(&mut *tx)
                    .await?,
                checkhelo_whitelist: sqlx::query_as(checkhelo_rows::SELECT_WHITELIST)
                    .fetch_all(&mut *tx)
                    .await?,
                accounting: sqlx::query_as(accounting_rows::SELECT_ACCOUNTING)
                    .fetch_all(&mut *tx)
                    .await?,
            };
            tx.commit().await?;
            rows
        });
        rows.assemble()
    }

    /// Replaces every policy definition with `def`, in one transaction: readers see the old
    /// set or the new one, never a mix. Unique names are enforced by the schema (a violation
    /// is a [`StoreError::Database`] and changes nothing); validate with
    /// `sluice_engine::compile` first for friendly messages.
    pub async fn replace_all(&self, def: &PolicySetDef) -> Result<(), StoreError> {
        self.write_all(def, None, &[]).await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        match &self.backend {
            Backend::Sqlite(file) => file.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}
