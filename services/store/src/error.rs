//! The crate's one error type.

use thiserror::Error;

/// Everything that can go wrong in the store, the importer or the policy file export.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database URL has a scheme this operation does not support. Only the scheme is
    /// kept: the URL may hold a password.
    #[error("unsupported database URL scheme {scheme:?}: expected {expected}")]
    UnsupportedUrl {
        /// The scheme as given (text before the first `:`).
        scheme: String,
        /// What this operation accepts.
        expected: &'static str,
    },
    /// PostgreSQL could not be reached within the connect timeout.
    #[error("cannot reach PostgreSQL at {address} (waited {waited_secs} s: {cause}): check that PostgreSQL runs and listens there (listen_addresses and port in postgresql.conf) and that the host and port in the database URL are right")]
    Unreachable {
        /// `host:port` or the Unix socket path tried.
        address: String,
        /// How long connecting was tried.
        waited_secs: u64,
        /// What a plain connection attempt got (`Connection refused (os error 111)`, ...).
        cause: String,
    },
    /// The directory a SQLite database file would be created in does not exist.
    #[error("cannot open the SQLite database {}: its directory {} does not exist: create it (mkdir -p {}) or give another path (--database sqlite:///path/to/sluice.db)", file.display(), directory.display(), directory.display())]
    MissingDirectory {
        /// The missing directory.
        directory: std::path::PathBuf,
        /// The database file.
        file: std::path::PathBuf,
    },
    /// The database answered with an error or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema migrations failed.
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value does not fit the column (e.g. a limit above 2^63-1) or a stored value does not
    /// fit the model (e.g. a negative period written directly in SQL).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// The database holds no Sluice schema yet (no migration recorded).
    #[error("the policy database has no Sluice tables yet: run `sluice migrate` on it with a database role that may create tables (the owner of the database), then start again")]
    SchemaMissing,
    /// The database's schema lacks migrations this build has.
    #[error("the policy database's schema is older than this sluice (migrations {missing} not applied): run `sluice migrate` on it with a database role that may create tables (the owner of the database), then start again")]
    SchemaOlder {
        /// The migrations not applied, `version (description)`, comma-separated.
        missing: String,
    },
    /// The database records migrations this build does not know.
    #[error("the policy database's schema is newer than this sluice (migrations {unknown} unknown to it): this sluice is older than the schema: upgrade it to the version that migrated the database")]
    SchemaNewer {
        /// The unknown migrations, `version (description)`, comma-separated.
        unknown: String,
    },
    /// A recorded migration failed, or differs from this build's.
    #[error("the policy database's schema is not one this sluice knows: {detail}: run the sluice version that migrated it, or restore the database from a backup")]
    SchemaMismatch {
        /// Which migration, and how.
        detail: String,
    },
    /// The database role may not change the schema (PostgreSQL `insufficient_privilege`).
    #[error("the database role may not change the schema ({cause}): run `sluice migrate` as the role that owns the policy database (or one granted CREATE on its schema); edges and other readers need only CONNECT, USAGE and SELECT")]
    MigrateDenied {
        /// The database's message.
        cause: String,
    },
    /// The database role may not read the schema version (PostgreSQL
    /// `insufficient_privilege`).
    #[error("the database role may not read the policy database ({cause}): grant it SELECT on every table of the policy schema (GRANT SELECT ON ALL TABLES IN SCHEMA public TO the role; docs/cluster.md, \"A read-only database role\")")]
    ReadDenied {
        /// The database's message.
        cause: String,
    },
    /// A SQLite policy database that must exist (a role that does not create it) does not.
    #[error("no policy database at {}: create it with `sluice migrate --database sqlite://{}` (or `sluice policy import FILE` on it)", path.display(), path.display())]
    NoDatabaseFile {
        /// The missing file.
        path: std::path::PathBuf,
    },
    /// The SQLite database file's path cannot be examined (permissions on its directory?).
    #[error("cannot examine the policy database file {path}: {source}")]
    FileCheck {
        /// The database file.
        path: std::path::PathBuf,
        /// Why `stat` failed.
        source: std::io::Error,
    },
}

impl StoreError {
    /// A short, bounded label for metrics (`errors_total{kind}`).
    pub fn kind_label(&self) -> &'static str {
        match self {
            StoreError::UnsupportedUrl { .. } => "unsupported_url",
            StoreError::Database(_) => "database",
            StoreError::Unreachable { .. } => "unreachable",
            StoreError::MissingDirectory { .. } => "missing_directory",
            StoreError::Migrate(_) => "migrate",
            StoreError::OutOfRange(_) => "out_of_range",
            StoreError::FileCheck { .. } => "file_check",
            StoreError::SchemaMissing
            | StoreError::SchemaOlder { .. }
            | StoreError::SchemaNewer { .. }
            | StoreError::SchemaMismatch { .. } => "schema",
            StoreError::MigrateDenied { .. } | StoreError::ReadDenied { .. } => "denied",
            StoreError::NoDatabaseFile { .. } => "no_database_file",
        }
    }

    /// Whether the database's schema (or the rights on it) does not fit this build: a
    /// configuration problem that waiting does not fix. A role refuses to start on it (exit
    /// code 64) instead of retrying.
    pub fn is_schema_error(&self) -> bool {
        matches!(
            self,
            StoreError::SchemaMissing
                | StoreError::SchemaOlder { .. }
                | StoreError::SchemaNewer { .. }
                | StoreError::SchemaMismatch { .. }
                | StoreError::MigrateDenied { .. }
                | StoreError::ReadDenied { .. }
                | StoreError::NoDatabaseFile { .. }
        )
    }

    /// Whether the schema lacks migrations this build has (`sluice migrate` fixes it).
    pub fn is_schema_behind(&self) -> bool {
        matches!(
            self,
            StoreError::SchemaMissing | StoreError::SchemaOlder { .. }
        )
    }

    /// Whether trying again later may succeed (the database was unreachable or busy), as
    /// opposed to an error in the request or the data.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Unreachable { .. }
                | StoreError::Database(
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Tls(_)
                )
        )
    }
}

/// The scheme of a database URL (text before the first `:`), lower-cased.
pub(crate) fn url_scheme(url: &str) -> String {
    url.split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_distinct_and_retryability_is_classified() {
        let unsupported = StoreError::UnsupportedUrl {
            scheme: "redis".into(),
            expected: "sqlite: or postgres:",
        };
        assert_eq!(unsupported.kind_label(), "unsupported_url");
        assert!(!unsupported.is_retryable());
        let down = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert_eq!(down.kind_label(), "database");
        assert!(down.is_retryable());
        let range = StoreError::OutOfRange("x".into());
        assert_eq!(range.kind_label(), "out_of_range");
        assert!(!range.is_retryable());
        assert_eq!(url_scheme("PostgreSQL://u:secret@h/db"), "postgresql");
        assert!(!unsupported.to_string().contains("secret"));
    }
}
