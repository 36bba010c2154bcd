//! Accounting in the store, on real databases: its rows through the policy file and the
//! policy tables (SQLite and PostgreSQL), the per-period totals and their report (SQLite
//! and PostgreSQL), and `import-policyd` of Policyd's accounting tables (SQLite,
//! PostgreSQL, MariaDB).

mod common;

use std::path::PathBuf;

use sluice_engine::model::PolicySetDef;
use sluice_engine::AccountingDef;
use sluice_store::policy_file;
use sluice_store::policyd::{import_policyd, ImportReport};
use sluice_store::{AccountingTotal, AccountingTotalRow, Store};
use sqlx::Connection;

const FILE: &str = r#"
[[policy]]
name = "outbound"
priority = 10

  [[policy.member]]
  source = "$*"

  [[policy.accounting]]
  name = "per user"
  track = "SASLUsername"
  period = "month"
  time_zone = "Europe/Berlin"
  message_count_limit = 20000
  recipient_count_limit = 50000
  size_limit = "10GB"
  verdict = "DEFER"
  data = "Monthly volume reached"
  last_accounting = true
  comment = "the contract"

  [[policy.accounting]]
  name = "per domain"
  track = "Sender:@domain"
  period = "week"
"#;

fn parsed() -> PolicySetDef {
    policy_file::parse("p.toml", FILE)
        .expect("the file is valid")
        .def
}

#[test]
fn the_policy_file_reads_and_writes_accounting_rows() {
    let def = parsed();
    let rows = &def.policies[0].accounting;
    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0],
        AccountingDef {
            name: "per user".into(),
            track: "SASLUsername".into(),
            period: "month".into(),
            time_zone: Some("Europe/Berlin".into()),
            message_count_limit: Some(20_000),
            recipient_count_limit: Some(50_000),
            size_limit: Some(10_000_000_000),
            verdict: Some("DEFER".into()),
            data: Some("Monthly volume reached".into()),
            last_accounting: true,
            disabled: false,
            comment: Some("the contract".into()),
        }
    );
    let written = policy_file::to_toml(&def);
    assert!(written.contains("size_limit = \"10GB\""), "{written}");
    let again = policy_file::parse("again.toml", &written)
        .expect("reads back")
        .def;
    assert_eq!(again, def);
}

#[test]
fn bad_accounting_rows_are_located_in_the_file() {
    let bad = FILE.replace("period = \"week\"", "period = \"fortnight\"");
    let errs = policy_file::parse("p.toml", &bad).unwrap_err();
    let e = errs
        .iter()
        .find(|e| e.message.contains("fortnight"))
        .unwrap_or_else(|| panic!("{errs:?}"));
    assert!(e.message.contains("day, week or month"), "{}", e.message);
    assert_eq!(e.line, 25, "the second row's period: {e:?}");
    assert!(
        e.field.contains("accounting \"per domain\" > period"),
        "{e:?}"
    );
    let unknown = FILE.replace("period = \"week\"", "period = \"week\"\n  per = 3");
    let errs = policy_file::parse("p.toml", &unknown).unwrap_err();
    assert!(errs.iter().any(|e| e.message.contains("per")), "{errs:?}");
    let size = FILE.replace("\"10GB\"", "\"10 parsecs\"");
    let errs = policy_file::parse("p.toml", &size).unwrap_err();
    assert!(
        errs.iter().any(|e| e.field.contains("size_limit")),
        "{errs:?}"
    );
}

fn total(node: &str, period: &str, track: &str, m: i64, r: i64, b: i64) -> AccountingTotal {
    AccountingTotal {
        at_ms: 1_796_040_000_000,
        node: node.into(),
        policy: "outbound".into(),
        name: "per user".into(),
        period: period.into(),
        track: track.into(),
        messages: m,
        recipients: r,
        bytes: b,
    }
}

fn row(track: &str, m: i64, r: i64, b: i64) -> AccountingTotalRow {
    AccountingTotalRow {
        policy: "outbound".into(),
        name: "per user".into(),
        track: track.into(),
        messages: m,
        recipients: r,
        bytes: b,
    }
}

/// Rows and totals on one store: the rows round-trip through the policy tables, the totals
/// of several batches and processes are summed per period.
async fn rows_and_totals(store: &Store) {
    let def = parsed();
    store.replace_all(&def).await.unwrap();
    assert_eq!(store.load().await.unwrap(), def, "accounting rows stored");
    let v = store.version().await.unwrap();
    let mut changed = def.clone();
    changed.policies[0].accounting[1].disabled = true;
    store.replace_all(&changed).await.unwrap();
    assert!(
        store.version().await.unwrap() > v,
        "a change bumps the version"
    );

    store
        .insert_accounting_totals(&[
            total("a", "2026-11", "SASLUsername:alice", 3, 5, 1000),
            total("a", "2026-11", "SASLUsername:bob", 10, 10, 0),
            total("b", "2026-11", "SASLUsername:alice", 1, 1, i64::MAX / 4),
            total("a", "2026-12", "SASLUsername:alice", 7, 7, 7),
        ])
        .await
        .unwrap();
    store
        .insert_accounting_totals(&[total("a", "2026-11", "SASLUsername:alice", 1, 2, 3)])
        .await
        .unwrap();
    let report = store.accounting_report("2026-11", 100).await.unwrap();
    assert_eq!(
        report,
        vec![
            row("SASLUsername:bob", 10, 10, 0),
            row("SASLUsername:alice", 5, 8, 1003 + i64::MAX / 4),
        ],
        "summed over batches and processes, most messages first"
    );
    assert_eq!(
        store.accounting_report("2026-11", 1).await.unwrap().len(),
        1
    );
    assert_eq!(
        store.accounting_report("2026-12", 100).await.unwrap(),
        vec![row("SASLUsername:alice", 7, 7, 7)]
    );
    assert!(store
        .accounting_report("2026-W48", 100)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn rows_and_totals_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    rows_and_totals(&store).await;
    store.close().await;
}

#[tokio::test]
async fn rows_and_totals_on_postgres() {
    let db = common::PgDb::create().await;
    let store = Store::connect(&db.url).await.unwrap();
    rows_and_totals(&store).await;
    store.close().await;
    db.drop_db().await;
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

/// Policyd accounting rows: every conversion and every reason to skip (plain SQL for all
/// three databases).
const ACCOUNTING: &str = "
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, MessageCountLimit,
  MessageCumulativeSizeLimit, Verdict, Data, LastAccounting, Comment, Disabled)
  VALUES (1, 2, 'monthly', 'sasluSername', 2, 1000, 8000, 'reject', '', 1, 'per user', 0);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, MessageCountLimit,
  MessageCumulativeSizeLimit, Verdict, LastAccounting, Disabled)
  VALUES (2, 2, 'monthly', 'Sender:@domain', 0, NULL, 0, NULL, 0, 0);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, Verdict, LastAccounting, Disabled)
  VALUES (3, 3, 'weekly', 'Recipient:user@domain', 1, 'DEFER', 0, 1);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, LastAccounting, Disabled)
  VALUES (4, 3, 'odd period', 'Policy', 7, 0, 0);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, LastAccounting, Disabled)
  VALUES (5, 3, 'bad track', 'Sendr:@domain', 0, 0, 0);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, LastAccounting, Disabled)
  VALUES (6, 99, 'orphan', 'Policy', 0, 0, 0);
INSERT INTO accounting (ID, PolicyID, Name, Track, AccountingPeriod, Verdict, LastAccounting, Disabled)
  VALUES (7, 3, 'bad verdict', 'Policy', 0, 'MAYBE', 0, 0);
INSERT INTO accounting_tracking (AccountingID, TrackKey, PeriodKey, LastUpdate, MessageCount, MessageCumulativeSize)
  VALUES (1, 'SASLUsername:alice', '2026-11', 1, 5, 100);
";

fn check(report: &ImportReport) {
    let text = report.to_string();
    let out = &report.def.policies[1];
    assert_eq!(out.name, "Default Outbound");
    assert_eq!(
        out.accounting,
        vec![
            AccountingDef {
                name: "monthly".into(),
                track: "SASLUsername".into(),
                period: "month".into(),
                recipient_count_limit: Some(1000),
                size_limit: Some(8000 * 1024),
                verdict: Some("REJECT".into()),
                last_accounting: true,
                comment: Some("per user".into()),
                ..Default::default()
            },
            AccountingDef {
                name: "monthly (#2)".into(),
                track: "Sender:@domain".into(),
                period: "day".into(),
                ..Default::default()
            },
        ],
        "{text}"
    );
    let inbound = &report.def.policies[2].accounting;
    assert_eq!(inbound.len(), 1, "{text}");
    assert_eq!(
        (inbound[0].period.as_str(), inbound[0].disabled),
        ("week", true),
        "disabled rows are kept disabled"
    );
    let skipped = |what: &str, why: &str| {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.what.contains(what) && s.why.contains(why)),
            "{what}: {why}\n{text}"
        );
    };
    skipped("accounting #4 \"odd period\"", "AccountingPeriod 7");
    skipped("accounting #5 \"bad track\"", "track \"Sendr:@domain\"");
    skipped("accounting #6 \"orphan\"", "policy #99 does not exist");
    skipped("accounting #7 \"bad verdict\"", "MAYBE");
    skipped("1 row in table accounting_tracking", "not imported");
    assert!(text.contains("  3 accounting rows\n"), "{text}");
    let note = |s: &str| assert!(report.notes.iter().any(|n| n.contains(s)), "{s}\n{text}");
    note("MessageCountLimit 1000 counted recipients");
    note("MessageCumulativeSizeLimit 8000 kB became size_limit 8192000 bytes");
    note("renamed \"monthly (#2)\"");
    note("count in UTC");
    assert!(
        !report
            .skipped
            .iter()
            .any(|s| s.what.contains("table accounting\n")
                || s.what.ends_with("in table accounting")),
        "accounting is no longer an unsupported module\n{text}"
    );
}

async fn load_sql(conn: &mut sqlx::AnyConnection, schema: String) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("sample-data.sql")))
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::raw_sql(ACCOUNTING).execute(&mut *conn).await.unwrap();
}

#[tokio::test]
async fn imports_policyd_accounting_from_sqlite() {
    sqlx::any::install_default_drivers();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("policyd.db").display()
    );
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    load_sql(&mut conn, read("schema-sqlite.sql")).await;
    conn.close().await.unwrap();
    let report = import_policyd(&url).await.unwrap();
    check(&report);
    // And it stores.
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.replace_all(&report.def).await.unwrap();
    assert_eq!(store.load().await.unwrap(), report.def);
    store.close().await;
}

#[tokio::test]
async fn imports_policyd_accounting_from_postgres() {
    sqlx::any::install_default_drivers();
    let db = common::PgDb::create().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    load_sql(&mut conn, read("schema-postgres.sql")).await;
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}

#[tokio::test]
async fn imports_policyd_accounting_from_mysql() {
    sqlx::any::install_default_drivers();
    let schema = read("schema-sqlite.sql").replace("AUTOINCREMENT", "AUTO_INCREMENT");
    let db = common::MyDb::create().await;
    let mut conn = sqlx::AnyConnection::connect(&db.url).await.unwrap();
    load_sql(&mut conn, schema).await;
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}
