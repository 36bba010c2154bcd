//! The policy store against real databases: a SQLite file and a fresh PostgreSQL database.

mod common;

use std::time::Duration;

use sluice_engine::model::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
use sluice_store::{Store, StoreError};
use sqlx::Connection;

/// A definition exercising every column, already in the order `load` returns.
fn sample() -> PolicySetDef {
    PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![
            GroupDef {
                name: "internal_domains".into(),
                disabled: true,
                comment: Some("ours".into()),
                members: vec![
                    GroupMemberDef {
                        member: "@example.org".into(),
                        disabled: false,
                        comment: None,
                    },
                    GroupMemberDef {
                        member: "@example.com".into(),
                        disabled: true,
                        comment: Some("old".into()),
                    },
                ],
            },
            GroupDef {
                name: "internal_ips".into(),
                members: vec![GroupMemberDef {
                    member: "10.0.0.0/8".into(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
        policies: vec![
            PolicyDef {
                name: "Default".into(),
                priority: 0,
                members: vec![MemberDef::default()],
                ..Default::default()
            },
            PolicyDef {
                greylisting: None,
                message_caps: None,
                checkspf: None,
                checkhelo: None,
                accounting: Vec::new(),
                name: "A inbound".into(),
                priority: 10,
                description: Some("from outside".into()),
                disabled: true,
                monitor: true,
                members: vec![
                    MemberDef {
                        source: Some("!%internal_ips".into()),
                        destination: Some("%internal_domains".into()),
                        disabled: true,
                        comment: Some("m".into()),
                    },
                    MemberDef {
                        source: Some("@example.net".into()),
                        destination: None,
                        ..Default::default()
                    },
                ],
                access_control: vec![AccessControlDef {
                    name: "no".into(),
                    verdict: "REJECT".into(),
                    data: Some("550 no".into()),
                    disabled: true,
                    comment: Some("c".into()),
                }],
                quotas: vec![
                    QuotaDef {
                        name: "per sender".into(),
                        track: "Sender:user@domain".into(),
                        period: 3600,
                        verdict: "DEFER".into(),
                        data: Some("slow down".into()),
                        last_quota: true,
                        disabled: true,
                        comment: Some("q".into()),
                        limits: vec![
                            LimitDef {
                                kind: "RecipientCount".into(),
                                limit: 500,
                                disabled: true,
                                comment: Some("l".into()),
                            },
                            LimitDef {
                                kind: "MessageCumulativeSize".into(),
                                limit: 10_000_000_000,
                                ..Default::default()
                            },
                        ],
                        ..Default::default()
                    },
                    QuotaDef {
                        name: "delayed".into(),
                        track: "SASLUsername".into(),
                        period: 3600,
                        verdict: "DELAY".into(),
                        release: Some("paced".into()),
                        max_held: Some(50),
                        max_hold_age: Some(7200),
                        on_expiry: Some("release".into()),
                        ..Default::default()
                    },
                    QuotaDef {
                        name: "per ip".into(),
                        track: "SenderIP:/24".into(),
                        period: 60,
                        verdict: "REJECT".into(),
                        ..Default::default()
                    },
                ],
            },
            PolicyDef {
                name: "B inbound".into(),
                priority: 10,
                ..Default::default()
            },
        ],
    }
}

async fn round_trip_and_versions(store: &Store) {
    let v0 = store.version().await.unwrap();
    assert_eq!(store.load().await.unwrap(), PolicySetDef::default());

    let def = sample();
    store.replace_all(&def).await.unwrap();
    let v1 = store.version().await.unwrap();
    assert!(v1 > v0, "replace_all bumps the version ({v0} -> {v1})");
    assert_eq!(store.load().await.unwrap(), def);

    // Loading keeps the stored order (an export lists things as the imported file did).
    let mut shuffled = def.clone();
    shuffled.groups.reverse();
    shuffled.policies.reverse();
    store.replace_all(&shuffled).await.unwrap();
    assert_eq!(store.load().await.unwrap(), shuffled);
    store.replace_all(&def).await.unwrap();

    // A failing replace (duplicate policy name) changes nothing.
    let mut bad = def.clone();
    bad.policies[2].name = "Default".into();
    let err = store.replace_all(&bad).await.expect_err("unique names");
    assert_eq!(err.kind_label(), "database");
    assert_eq!(store.load().await.unwrap(), def);

    // Values beyond BIGINT are refused, not wrapped.
    let mut huge = def.clone();
    huge.policies[1].quotas[0].limits[0].limit = u64::MAX;
    let err = store.replace_all(&huge).await.expect_err("out of range");
    assert!(matches!(err, StoreError::OutOfRange(_)), "{err}");
    assert_eq!(store.load().await.unwrap(), def);

    // Empty again.
    store.replace_all(&PolicySetDef::default()).await.unwrap();
    assert_eq!(store.load().await.unwrap(), PolicySetDef::default());
    store.replace_all(&def).await.unwrap();
}

/// A change made directly in SQL (not through the store) is seen by `version` and `watch`.
async fn direct_sql_change_is_noticed(
    store: &Store,
    mut direct: impl FnMut() -> String,
    url: &str,
) {
    let mut rx = store.watch(Duration::from_millis(20)).await.unwrap();
    let before = *rx.borrow_and_update();
    assert_eq!(before, store.version().await.unwrap());

    let sql = direct();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let done = sqlx::query(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(done.rows_affected(), 1);
    conn.close().await.unwrap();

    let after = store.version().await.unwrap();
    assert!(
        after > before,
        "direct UPDATE bumps the version ({before} -> {after})"
    );
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("watch signals within 5 s")
        .expect("watch task alive");
    assert!(*rx.borrow() >= after);
    let loaded = store.load().await.unwrap();
    assert_eq!(loaded.policies[1].quotas[0].period, 7200);
}

#[tokio::test]
async fn sqlite_round_trip_versions_and_watch() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub-policies.db");
    let url = format!("sqlite://{}", path.display());
    let store = Store::connect(&url).await.unwrap();
    assert!(path.exists(), "the file is created");
    assert_eq!(store.backend_name(), "sqlite");
    round_trip_and_versions(&store).await;
    direct_sql_change_is_noticed(
        &store,
        || "UPDATE policy_quota SET period = 7200 WHERE name = 'per sender'".into(),
        &url,
    )
    .await;

    // WAL mode, and migrations are idempotent on reconnect.
    let mode: String = {
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(mode, "wal");
    store.close().await;
    let again = Store::connect(&url).await.unwrap();
    again.migrate().await.unwrap();
    assert_eq!(again.load().await.unwrap().policies.len(), 3);
    again.close().await;
}

#[tokio::test]
async fn postgres_round_trip_versions_and_watch() {
    sqlx::any::install_default_drivers();
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    assert_eq!(store.backend_name(), "postgres");
    round_trip_and_versions(&store).await;
    direct_sql_change_is_noticed(
        &store,
        || "UPDATE policy_quota SET period = 7200 WHERE name = 'per sender'".into(),
        &db.url,
    )
    .await;
    store.migrate().await.unwrap();
    store.close().await;
    db.drop_db().await;
}

#[tokio::test]
async fn watch_survives_a_failing_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("p.db").display());
    let store = Store::connect(&url).await.unwrap();
    let mut rx = store.watch(Duration::from_millis(10)).await.unwrap();
    rx.borrow_and_update();

    // Break the database under the watcher: the version table disappears.
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("ALTER TABLE policy_version RENAME TO policy_version_gone")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(store.version().await.is_err());
    // Let the watcher fail a few times: it must not end (changed() would return Err).
    let waited = tokio::time::timeout(Duration::from_millis(200), rx.changed()).await;
    assert!(
        waited.is_err(),
        "no change signalled while failing, and the task lives on"
    );

    // Repair it with a new version: the watcher notices.
    sqlx::query("ALTER TABLE policy_version_gone RENAME TO policy_version")
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE policy_version SET version = version + 100")
        .execute(&mut conn)
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("watch recovers")
        .expect("watch task alive");
    store.close().await;
}

#[tokio::test]
async fn unsupported_url_is_refused_without_echoing_secrets() {
    let err = Store::connect("redis://user:hunter2@localhost/0")
        .await
        .unwrap_err();
    assert_eq!(err.kind_label(), "unsupported_url");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn default_database_url_is_a_local_sqlite_file() {
    // Only meaningful when the variable is not set in the test environment.
    if std::env::var_os(sluice_store::DATABASE_ENV).is_none() {
        assert_eq!(sluice_store::default_database_url(), "sqlite://sluice.db");
    }
}

/// The bundled SQLite must carry the fix for CVE-2025-6965 (3.50.2 or newer).
#[tokio::test]
async fn bundled_sqlite_is_past_cve_2025_6965() {
    use sqlx::ConnectOptions;
    let mut conn = "sqlite::memory:"
        .parse::<sqlx::sqlite::SqliteConnectOptions>()
        .unwrap()
        .connect()
        .await
        .unwrap();
    let version: String = sqlx::query_scalar("SELECT sqlite_version()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let parts: Vec<u32> = version.split('.').map(|p| p.parse().unwrap()).collect();
    assert!(
        parts.as_slice() >= [3, 50, 2].as_slice(),
        "bundled SQLite {version} is older than 3.50.2 (CVE-2025-6965)"
    );
}

/// `connect_checked` never changes a schema: a missing SQLite file is not created, an empty
/// PostgreSQL database gets no table, and both say to run `sluice migrate`; once migrated,
/// both open.
#[tokio::test]
async fn connect_checked_changes_nothing_and_says_what_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let url = format!("sqlite://{}", path.display());
    let err = Store::connect_checked(&url).await.unwrap_err();
    assert!(err.is_schema_error(), "{err}");
    assert!(err.to_string().contains("sluice migrate"), "{err}");
    assert!(!path.exists(), "not created");
    Store::connect(&url).await.unwrap().close().await;
    let store = Store::connect_checked(&url).await.unwrap();
    assert_eq!(store.migrations_applied(), 0);
    store.close().await;

    let db = common::PgDb::create().await;
    let err = Store::connect_checked(&db.url).await.unwrap_err();
    assert!(err.is_schema_behind(), "{err}");
    assert!(err.to_string().contains("no Sluice tables yet"), "{err}");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let tables: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(tables, 0, "nothing created");
    let owner = Store::connect(&db.url).await.unwrap();
    assert!(owner.migrations_applied() >= 2);
    assert_eq!(owner.migrate().await.unwrap(), 0, "nothing left to apply");
    owner.close().await;
    let reader = Store::connect_checked(&db.url).await.unwrap();
    reader.check_schema().await.unwrap();
    reader.close().await;
    conn.close().await.ok();
    db.drop_db().await;
}

/// A SQLite file an operator deletes is not created again by the store's own connections
/// (its pool opens more as work comes): the server keeps its last policies and sees the
/// file deleted, not replaced by an empty one.
#[tokio::test]
async fn a_deleted_sqlite_file_is_not_recreated_by_new_connections() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let store = Store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.version().await.unwrap();
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    // Several reads at once: the pool opens connections beyond the one it had.
    let _ = tokio::join!(
        store.version(),
        store.version(),
        store.version(),
        store.version()
    );
    assert!(
        !path.exists(),
        "a new connection created the deleted file again"
    );
    assert!(matches!(
        store.check_file().await.unwrap(),
        sluice_store::FileCheck::Missing
    ));
}
