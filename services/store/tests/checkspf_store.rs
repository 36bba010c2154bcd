//! CheckSPF settings in the store: `[policy.checkspf]` and greylisting's `skip_spf_pass` in
//! the policy file (read, written back identically, stored and loaded on SQLite and
//! PostgreSQL: migration 0007), and `sluice import-policyd` of Policyd's `checkspf` table
//! from real SQLite, PostgreSQL and MariaDB databases built from Policyd's schema.

mod common;

use std::path::PathBuf;

use sluice_engine::CheckSpfDef;
use sluice_store::policy_file::{parse, to_toml};
use sluice_store::policyd::{import_policyd, ImportReport};
use sluice_store::Store;
use sqlx::Connection;

const FILE: &str = r#"[[policy]]
name = "inbound"
priority = 10

  [[policy.member]]
  destination = "@example.org"

  [policy.greylisting]
  period = "4m"
  skip_spf_pass = true

  [policy.checkspf]
  enabled = true
  reject_failed = true
  add_header = false

[[policy]]
name = "quiet"
priority = 20

  [policy.checkspf]
  add_header = true
  comment = "inherits enabled"
"#;

async fn round_trip(url: &str, def: &sluice_engine::PolicySetDef) {
    let store = Store::connect(url).await.unwrap();
    store.replace_all(def).await.unwrap();
    assert_eq!(&store.load().await.unwrap(), def);
    store.close().await;
}

#[tokio::test]
async fn policy_file_read_written_stored_and_loaded() {
    let def = parse("p.toml", FILE)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .def;
    assert_eq!(
        def.policies[0].checkspf,
        Some(CheckSpfDef {
            enabled: Some(true),
            reject_failed: Some(true),
            add_header: Some(false),
            ..Default::default()
        })
    );
    let quiet = def.policies[1].checkspf.as_ref().unwrap();
    assert_eq!((quiet.enabled, quiet.add_header), (None, Some(true)));
    assert_eq!(
        def.policies[0].greylisting.as_ref().unwrap().skip_spf_pass,
        Some(true)
    );
    assert_eq!(to_toml(&def), FILE, "written back: the same text");

    let dir = tempfile::tempdir().unwrap();
    round_trip(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &def,
    )
    .await;
    let pg = common::PgDb::create().await;
    round_trip(&pg.url, &def).await;
    pg.drop_db().await;
}

#[test]
fn unknown_fields_are_refused() {
    let bad = FILE.replace("add_header = false", "add_headers = false");
    let err = match parse("p.toml", &bad) {
        Ok(_) => panic!("accepted an unknown field"),
        Err(e) => format!("{e:?}"),
    };
    assert!(err.contains("add_headers"), "{err}");
}

fn data_dir() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    for candidate in [
        root.join("../shared/data/policyd-v2"),
        root.join("shared/data/policyd-v2"),
    ] {
        if candidate.join("sample-data.sql").exists() {
            return candidate;
        }
    }
    PathBuf::from("/work/shared/data/policyd-v2")
}

fn read(name: &str) -> String {
    let path = data_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `checkspf` rows: one per case (plain SQL for all three databases).
const ROWS: &str = "
INSERT INTO checkspf (PolicyID, Name, UseSPF, RejectFailedSPF, AddSPFHeader, Comment, Disabled)
  VALUES (1, 'spf', 1, 0, 1, 'check all', 0);
INSERT INTO checkspf (PolicyID, Name, UseSPF, RejectFailedSPF, AddSPFHeader, Disabled)
  VALUES (3, 'inbound', NULL, 1, NULL, 0);
INSERT INTO checkspf (PolicyID, Name, UseSPF, RejectFailedSPF, AddSPFHeader, Disabled)
  VALUES (3, 'inbound2', 2, NULL, 0, 0);
INSERT INTO checkspf (PolicyID, Name, UseSPF, Disabled) VALUES (4, 'off', 1, 1);
INSERT INTO checkspf (PolicyID, Name, UseSPF, Disabled) VALUES (99, 'orphan', 1, 0);
";

fn check(report: &ImportReport) {
    let text = report.to_string();
    let p = |name: &str| {
        report
            .def
            .policies
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("policy {name}: {text}"))
    };
    assert_eq!(
        p("Default").checkspf,
        Some(CheckSpfDef {
            enabled: Some(true),
            reject_failed: Some(false),
            add_header: Some(true),
            comment: Some("check all".into()),
            ..Default::default()
        }),
        "{text}"
    );
    // Two rows of one policy merged in ID order: UseSPF=2 is off (only 1 is on).
    assert_eq!(
        p("Default Inbound").checkspf,
        Some(CheckSpfDef {
            enabled: Some(false),
            reject_failed: Some(true),
            add_header: Some(false),
            ..Default::default()
        }),
        "{text}"
    );
    assert_eq!(p("Default Internal").checkspf, None, "disabled row: {text}");
    let skipped = |what: &str, why: &str| {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.what.contains(what) && s.why.contains(why)),
            "expected {what:?} skipped because {why:?}:\n{text}"
        )
    };
    skipped("checkspf #4 \"off\"", "disabled");
    skipped("checkspf #5 \"orphan\"", "policy #99 does not exist");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("several checkspf rows")),
        "{text}"
    );
    assert!(text.contains("  2 policies with CheckSPF\n"), "{text}");
    assert!(
        !text.contains("table checkspf"),
        "checkspf is no longer an unsupported table: {text}"
    );
}

/// Runs Policyd's schema, its sample data and [`ROWS`] on a fresh connection of type `$conn`.
macro_rules! fill {
    ($conn:ty, $url:expr, $schema:expr) => {{
        let mut conn = <$conn>::connect($url).await.unwrap();
        for sql in [$schema, read("sample-data.sql"), ROWS.to_string()] {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }
        conn.close().await.unwrap();
    }};
}

#[tokio::test]
async fn imports_checkspf_from_sqlite_postgres_and_mysql() {
    // SQLite.
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("policyd.db").display()
    );
    fill!(sqlx::SqliteConnection, &url, read("schema-sqlite.sql"));
    let report = import_policyd(&url).await.unwrap();
    check(&report);
    round_trip(
        &format!("sqlite://{}", dir.path().join("s.db").display()),
        &report.def,
    )
    .await;

    // PostgreSQL.
    let db = common::PgDb::create().await;
    fill!(sqlx::PgConnection, &db.url, read("schema-postgres.sql"));
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());

    // MariaDB: Policyd's MySQL schema differs from the SQLite one only in AUTO_INCREMENT.
    let db = common::MyDb::create().await;
    fill!(
        sqlx::MySqlConnection,
        &db.url,
        read("schema-sqlite.sql").replace("AUTOINCREMENT", "AUTO_INCREMENT")
    );
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}
