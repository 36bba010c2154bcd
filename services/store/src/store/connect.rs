//! Opening the policy database with errors that say what failed and what to do: PostgreSQL
//! that cannot be reached within a few seconds is named by host and port, with what a plain
//! connection attempt there gets; a SQLite file whose directory is missing names it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use crate::StoreError;

/// How long connecting to PostgreSQL may take before the store reports it unreachable.
pub const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens the pool on PostgreSQL: fails within [`POSTGRES_CONNECT_TIMEOUT`] when the server
/// cannot be reached, naming host and port and why ([`StoreError::Unreachable`]). Server
/// notices below WARNING (`relation "_sqlx_migrations" already exists, skipping` on every
/// start) are not sent.
pub(super) async fn postgres(url: &str) -> Result<PgPool, StoreError> {
    let options = PgConnectOptions::from_str(url)?.options([("client_min_messages", "warning")]);
    let host = options.get_host().to_owned();
    let port = options.get_port();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(POSTGRES_CONNECT_TIMEOUT)
        .connect_with(options)
        .await;
    match pool {
        Ok(pool) => Ok(pool),
        Err(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)) => {
            let (address, cause) = probe(&host, port).await;
            Err(StoreError::Unreachable {
                address,
                waited_secs: POSTGRES_CONNECT_TIMEOUT.as_secs(),
                cause,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Where PostgreSQL was looked for (`host:port` or the Unix socket path) and what a plain
/// connection attempt there gets, for [`StoreError::Unreachable`].
async fn probe(host: &str, port: u16) -> (String, String) {
    if host.starts_with('/') {
        let path = format!("{host}/.s.PGSQL.{port}");
        let cause = match tokio::net::UnixStream::connect(&path).await {
            Ok(_) => "the socket accepts connections, but no PostgreSQL session started".into(),
            Err(e) => e.to_string(),
        };
        return (path, cause);
    }
    let address = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let attempt = tokio::time::timeout(
        Duration::from_secs(2),
        tokio::net::TcpStream::connect(address.as_str()),
    )
    .await;
    let cause = match attempt {
        Ok(Ok(_)) => "the port accepts connections, but no PostgreSQL session started".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer to a TCP connection attempt within 2 s".into(),
    };
    (address, cause)
}

/// Fails with [`StoreError::MissingDirectory`] when the directory a SQLite file would be
/// created in does not exist (SQLite itself only says "unable to open database file").
pub(super) fn check_sqlite_directory(file: &std::path::Path) -> Result<(), StoreError> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(StoreError::MissingDirectory {
                directory: dir.to_path_buf(),
                file: file.to_path_buf(),
            })
        }
        _ => Ok(()),
    }
}
