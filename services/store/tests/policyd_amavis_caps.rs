//! `sluice import-policyd` of Amavis rules' `max_message_size` into message size caps, from
//! SQLite, PostgreSQL and MariaDB: Policyd's schema and sample data (shared/data/policyd-v2)
//! plus an `amavis_rules` table (Policyd's amavis.tsql, the columns the import reads, with
//! a few of the others it leaves to amavisd).

mod common;

use sluice_store::policyd::{import_policyd, ImportReport};
use sluice_store::Store;
use sqlx::Connection;
use std::path::PathBuf;

fn read(name: &str) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let candidates = [
        root.join("../shared/data/policyd-v2").join(name),
        root.join("shared/data/policyd-v2").join(name),
        PathBuf::from("/work/shared/data/policyd-v2").join(name),
    ];
    let path = candidates
        .iter()
        .find(|p| p.exists())
        .unwrap_or(&candidates[2]);
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `amavis_rules` as Policyd's amavis.tsql defines it (the columns used here), and rows:
/// the seed rule (policy 1, 100000 kB, overwrite), a rule that inherits the size, a
/// disabled one, an orphan and an out-of-range size.
fn amavis(serial: &str) -> String {
    format!(
        "
CREATE TABLE amavis_rules (
  ID {serial},
  PolicyID INTEGER,
  Name VARCHAR(255) NOT NULL,
  bypass_banned_checks SMALLINT, bypass_banned_checks_m SMALLINT NOT NULL DEFAULT 0,
  max_message_size BIGINT, max_message_size_m SMALLINT NOT NULL DEFAULT 0,
  Comment VARCHAR(1024),
  Disabled SMALLINT NOT NULL DEFAULT 0
);
INSERT INTO amavis_rules (PolicyID, Name, bypass_banned_checks, bypass_banned_checks_m,
  max_message_size, max_message_size_m, Comment, Disabled)
  VALUES (1, 'Default system amavis policy', 1, 2, 100000, 2, NULL, 0);
INSERT INTO amavis_rules (PolicyID, Name, max_message_size, max_message_size_m, Disabled)
  VALUES (2, 'inherits', 5000, 0, 0);
INSERT INTO amavis_rules (PolicyID, Name, max_message_size, max_message_size_m, Disabled)
  VALUES (3, 'off', 5000, 2, 1);
INSERT INTO amavis_rules (PolicyID, Name, max_message_size, max_message_size_m, Disabled)
  VALUES (99, 'orphan', 5000, 2, 0);
INSERT INTO amavis_rules (PolicyID, Name, max_message_size, max_message_size_m, Disabled)
  VALUES (4, 'huge', 9000000000000, 2, 0);
"
    )
}

fn check(report: &ImportReport) {
    let caps: Vec<(&str, Option<u64>)> = report
        .def
        .policies
        .iter()
        .filter_map(|p| {
            p.message_caps
                .as_ref()
                .map(|c| (p.name.as_str(), c.max_message_size))
        })
        .collect();
    assert_eq!(caps, [("Default", Some(102_400_000))], "{report}");
    let skipped = |name: &str| {
        report
            .skipped
            .iter()
            .find(|s| s.what.contains(name))
            .map(|s| s.why.clone())
            .unwrap_or_else(|| panic!("{name} not reported: {report}"))
    };
    assert!(skipped("inherits").contains("no max_message_size"));
    assert!(skipped("\"off\"").contains("disabled"));
    assert!(skipped("orphan").contains("#99 does not exist"));
    assert!(skipped("huge").contains("outside 1 kB"));
    assert!(
        report
            .imported
            .iter()
            .any(|i| i.contains("102400000 bytes (100000 kB")),
        "{report}"
    );
    // The result compiles and is stored as it is.
    sluice_engine::compile(&report.def).expect("the imported set compiles");
}

async fn store_it(report: &ImportReport) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.replace_all(&report.def).await.unwrap();
    assert_eq!(store.load().await.unwrap(), report.def);
    store.close().await;
}

#[tokio::test]
async fn from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("p.db").display());
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        read("schema-sqlite.sql"),
        read("sample-data.sql"),
        amavis("INTEGER PRIMARY KEY AUTOINCREMENT"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let report = import_policyd(&url).await.unwrap();
    check(&report);
    store_it(&report).await;
}

#[tokio::test]
async fn from_postgres() {
    let db = common::PgDb::create().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        read("schema-postgres.sql"),
        read("sample-data.sql"),
        amavis("SERIAL PRIMARY KEY"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}

#[tokio::test]
async fn from_mysql() {
    let db = common::MyDb::create().await;
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    for sql in [
        read("schema-sqlite.sql").replace("AUTOINCREMENT", "AUTO_INCREMENT"),
        read("sample-data.sql"),
        amavis("INTEGER PRIMARY KEY AUTO_INCREMENT"),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}
