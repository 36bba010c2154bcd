//! The schema version: the migrations a policy database records as applied (sqlx's
//! `_sqlx_migrations` table) against the ones compiled into this build, and what to tell the
//! operator when they differ.
//!
//! Only the owner of the schema changes it ([`crate::Store::connect`], used by
//! `sluice migrate`, and by the commands that own a SQLite file); every other role checks it
//! ([`crate::Store::connect_checked`]) and refuses to run on a schema it was not built for.

use sqlx::migrate::Migrator;

use crate::StoreError;

/// One row of `_sqlx_migrations`.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub(crate) struct Applied {
    pub(crate) version: i64,
    pub(crate) description: String,
    pub(crate) success: bool,
    pub(crate) checksum: Vec<u8>,
}

/// The rows of `_sqlx_migrations`, oldest first (the table may be missing: the caller
/// passes none then).
pub(crate) const SELECT_APPLIED: &str =
    "SELECT version, description, success, checksum FROM _sqlx_migrations ORDER BY version";

/// Whether `_sqlx_migrations` exists, on PostgreSQL (in the role's search path, where sqlx
/// creates it).
pub(crate) const POSTGRES_HAS_TABLE: &str =
    "SELECT CASE WHEN to_regclass('_sqlx_migrations') IS NULL THEN 0 ELSE 1 END::BIGINT";

/// Whether `_sqlx_migrations` exists, on SQLite.
pub(crate) const SQLITE_HAS_TABLE: &str =
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'";

/// `Ok` when the database records exactly the migrations of `compiled`, each applied
/// successfully and with the same checksum; otherwise the error that says what to do.
/// [`StoreError::is_schema_behind`] tells the errors `sluice migrate` can fix.
pub(crate) fn compare(compiled: &Migrator, applied: &[Applied]) -> Result<(), StoreError> {
    let known: Vec<_> = compiled
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .collect();
    if let Some(failed) = applied.iter().find(|a| !a.success) {
        return Err(StoreError::SchemaMismatch {
            detail: format!(
                "migration {} ({}) failed part-way when it was applied",
                failed.version, failed.description
            ),
        });
    }
    let unknown: Vec<String> = applied
        .iter()
        .filter(|a| !known.iter().any(|m| m.version == a.version))
        .map(|a| label(a.version, &a.description))
        .collect();
    if !unknown.is_empty() {
        return Err(StoreError::SchemaNewer {
            unknown: unknown.join(", "),
        });
    }
    for a in applied {
        let same = known
            .iter()
            .find(|m| m.version == a.version)
            .is_some_and(|m| *m.checksum == *a.checksum);
        if !same {
            return Err(StoreError::SchemaMismatch {
                detail: format!(
                    "migration {} ({}) in the database is not the one this sluice has",
                    a.version, a.description
                ),
            });
        }
    }
    let missing: Vec<String> = known
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| label(m.version, &m.description))
        .collect();
    match (missing.is_empty(), applied.is_empty()) {
        (true, _) => Ok(()),
        (false, true) => Err(StoreError::SchemaMissing),
        (false, false) => Err(StoreError::SchemaOlder {
            missing: missing.join(", "),
        }),
    }
}

/// `2 (policy notify)`.
fn label(version: i64, description: &str) -> String {
    format!("{version} ({description})")
}

/// Whether `e` is PostgreSQL's `insufficient_privilege` (SQLSTATE 42501): `permission
/// denied for schema public`, `... for table _sqlx_migrations`.
pub(crate) fn is_denied(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("42501"))
}

/// A migration run's error, with a denied permission told apart (the role may not create
/// tables: run `sluice migrate` as the owner).
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    match e {
        MigrateError::Execute(ref inner) | MigrateError::ExecuteMigration(ref inner, _)
            if is_denied(inner) =>
        {
            StoreError::MigrateDenied {
                cause: inner.to_string(),
            }
        }
        other => StoreError::Migrate(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static POSTGRES: Migrator = sqlx::migrate!("../../migrations/postgres");

    fn applied(n: usize) -> Vec<Applied> {
        POSTGRES
            .iter()
            .take(n)
            .map(|m| Applied {
                version: m.version,
                description: m.description.to_string(),
                success: true,
                checksum: m.checksum.to_vec(),
            })
            .collect()
    }

    #[test]
    fn the_same_migrations_are_current() {
        assert!(POSTGRES.iter().count() >= 2);
        assert!(compare(&POSTGRES, &applied(usize::MAX)).is_ok());
    }

    #[test]
    fn none_applied_is_a_missing_schema() {
        let e = compare(&POSTGRES, &[]).unwrap_err();
        assert!(matches!(e, StoreError::SchemaMissing), "{e}");
        assert!(e.is_schema_behind() && e.is_schema_error());
        assert!(e.to_string().contains("run `sluice migrate`"), "{e}");
    }

    #[test]
    fn a_missing_migration_is_an_older_schema() {
        let e = compare(&POSTGRES, &applied(1)).unwrap_err();
        let text = e.to_string();
        assert!(e.is_schema_behind(), "{text}");
        assert!(text.contains("older than this sluice"), "{text}");
        assert!(text.contains("2 (policy notify)"), "{text}");
        assert!(text.contains("run `sluice migrate`"), "{text}");
    }

    #[test]
    fn an_unknown_migration_is_a_newer_schema() {
        let mut rows = applied(usize::MAX);
        rows.push(Applied {
            version: 9_999,
            description: "from the future".into(),
            success: true,
            checksum: vec![1, 2, 3],
        });
        let e = compare(&POSTGRES, &rows).unwrap_err();
        let text = e.to_string();
        assert!(!e.is_schema_behind() && e.is_schema_error(), "{text}");
        assert!(text.contains("9999 (from the future)"), "{text}");
        assert!(text.contains("upgrade"), "{text}");
    }

    #[test]
    fn a_changed_or_failed_migration_is_a_mismatch() {
        let mut rows = applied(usize::MAX);
        rows[0].checksum = vec![0; 4];
        let e = compare(&POSTGRES, &rows).unwrap_err();
        assert!(matches!(e, StoreError::SchemaMismatch { .. }), "{e}");
        assert!(!e.is_schema_behind());
        let mut rows = applied(usize::MAX);
        rows[1].success = false;
        let e = compare(&POSTGRES, &rows).unwrap_err();
        assert!(e.to_string().contains("failed part-way"), "{e}");
    }
}
