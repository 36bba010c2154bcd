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
    /// The policy set changed between reading it and writing a change based on it.
    #[error("the policies were changed by someone else meanwhile (version {expected} became {found}): reload and make the change again")]
    Changed {
        /// The version the change was based on.
        expected: i64,
        /// The version found when writing.
        found: i64,
    },
    /// An admin account of that name exists already.
    #[error("an account named {0:?} exists already (sluice admin user list shows them; sluice admin user passwd changes a password)")]
    AccountExists(String),
    /// No admin account of that name.
    #[error("no account named {0:?} (sluice admin user list shows them)")]
    NoSuchAccount(String),
    /// An API token of that name exists already.
    #[error("a token named {0:?} exists already: pick another name, or revoke it first (sluice admin token revoke NAME)")]
    TokenExists(String),
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
            StoreError::Changed { .. } => "changed",
            StoreError::AccountExists(_) => "account_exists",
            StoreError::NoSuchAccount(_) => "no_such_account",
            StoreError::TokenExists(_) => "token_exists",
        }
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
