//! A SQLite policy database as a file on disk: the pool open on it, and what to do when the
//! file at its path is deleted or replaced while a server runs.
//!
//! SQLite keeps reading the file it opened, even after it was deleted, so without a check a
//! server would serve the deleted database's policies forever while `sluice policy import`
//! writes a new file at the same path. The store's watcher calls [`SqliteFile::check`] on
//! every tick: it compares the path's device and inode number with the ones opened, reopens
//! the pool on a replaced file, and reports a missing one.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};

use crate::StoreError;

/// Device and inode number: which file a path named when it was opened.
type FileId = (u64, u64);

/// What [`SqliteFile::check`] found at the database's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileCheck {
    /// The file opened is still the one at the path (or the database is in memory).
    Same,
    /// Another file is at the path now; the pool was reopened on it.
    Reopened,
    /// No file is at the path: the opened file was deleted. The pool keeps the old one.
    Missing,
}

/// The pool on a SQLite file, reopened when the file at its path is replaced.
#[derive(Debug)]
pub(crate) struct SqliteFile {
    options: SqliteConnectOptions,
    max_connections: u32,
    /// `None` for an in-memory database (nothing on disk to watch).
    path: Option<PathBuf>,
    pool: ArcSwap<SqlitePool>,
    /// Whether a replaced file is migrated (the owner) or only checked (a reader).
    migrate: bool,
    opened: Mutex<Option<FileId>>,
}

impl SqliteFile {
    /// Opens a pool on `options` (`in_memory`: one connection, nothing to watch);
    /// `migrate`: whether a file found replaced later is migrated or only checked.
    pub(crate) async fn open(
        options: SqliteConnectOptions,
        in_memory: bool,
        migrate: bool,
    ) -> Result<SqliteFile, StoreError> {
        // Each connection to an in-memory database would see its own database.
        let max_connections = if in_memory { 1 } else { 4 };
        let path = (!in_memory).then(|| options.get_filename().to_path_buf());
        let options = match &path {
            Some(path) => {
                if !path.exists() {
                    // Created once, here (when `options` allow it); the pool's connections,
                    // opened later as needed, must never create it again: a file an operator
                    // deleted would come back empty, and look replaced.
                    use sqlx::Connection;
                    sqlx::sqlite::SqliteConnection::connect_with(&options)
                        .await?
                        .close()
                        .await?;
                }
                options.create_if_missing(false)
            }
            None => options,
        };
        let pool = connect(&options, max_connections).await?;
        let opened = path.as_ref().and_then(|p| file_id(p).ok());
        Ok(SqliteFile {
            options,
            max_connections,
            path,
            pool: ArcSwap::from_pointee(pool),
            migrate,
            opened: Mutex::new(opened),
        })
    }

    /// The pool in use now.
    pub(crate) fn pool(&self) -> Arc<SqlitePool> {
        self.pool.load_full()
    }

    /// The database file's path (`None` in memory).
    pub(crate) fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// Compares the file at the path with the one opened; reopens the pool (and applies
    /// pending migrations, or for a reader checks the schema version: a replaced file of
    /// another schema is not used) when it was replaced. The old pool is closed once its
    /// connections are returned.
    pub(crate) async fn check(&self) -> Result<FileCheck, StoreError> {
        let Some(path) = &self.path else {
            return Ok(FileCheck::Same);
        };
        let now = match file_id(path) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileCheck::Missing),
            Err(source) => {
                return Err(StoreError::FileCheck {
                    path: path.clone(),
                    source,
                })
            }
        };
        if *self.opened.lock().unwrap_or_else(|p| p.into_inner()) == Some(now) {
            return Ok(FileCheck::Same);
        }
        let pool = connect(&self.options, self.max_connections).await?;
        if self.migrate {
            super::SQLITE_MIGRATIONS
                .run(&pool)
                .await
                .map_err(super::schema::migrate_error)?;
        } else {
            let applied = sqlx::query_as(super::schema::SELECT_APPLIED)
                .fetch_all(&pool)
                .await
                .unwrap_or_default();
            if let Err(e) = super::schema::compare(&super::SQLITE_MIGRATIONS, &applied) {
                pool.close().await;
                return Err(e);
            }
        }
        let old = self.pool.swap(Arc::new(pool));
        *self.opened.lock().unwrap_or_else(|p| p.into_inner()) = Some(now);
        tokio::spawn(async move { old.close().await });
        Ok(FileCheck::Reopened)
    }

    /// Closes the pool in use.
    pub(crate) async fn close(&self) {
        self.pool().close().await
    }
}

async fn connect(options: &SqliteConnectOptions, max: u32) -> Result<SqlitePool, StoreError> {
    Ok(SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(options.clone())
        .await?)
}

fn file_id(path: &std::path::Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}
