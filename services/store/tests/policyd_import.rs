//! The Policyd v2 importer on real databases built from Policyd's schema and sample data
//! (shared/data/policyd-v2): SQLite file, PostgreSQL and MariaDB.

mod common;

use std::path::PathBuf;

use sluice_engine::model::{LimitDef, MemberDef, PolicySetDef};
use sluice_store::policyd::{import_policyd, ImportReport};
use sluice_store::Store;
use sqlx::Connection;

fn data_dir() -> PathBuf {
    // services/store -> repo root; shared/ sits beside the repository.
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

/// Rows beyond the sample data, to exercise every skip and rename (plain SQL for all three).
const EXTRA: &str = "
INSERT INTO policies (ID, Name, Priority, Description, Disabled) VALUES (6, 'Test', 60, NULL, 1);
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
  VALUES (10, 99, 'orphan', 'Policy', 60, 'REJECT', 0, 0);
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
  VALUES (11, 5, 'typo', 'Sendr:user@domain', 60, 'DEFER', 0, 0);
INSERT INTO quotas_limits (QuotasID, Type, CounterLimit, Disabled) VALUES (2, 'Bogus', 5, 0);
INSERT INTO quotas_limits (QuotasID, Type, CounterLimit, Disabled) VALUES (11, 'MessageCount', 1, 0);
INSERT INTO access_control (PolicyID, Name, Verdict, Data, Disabled) VALUES (5, 'block', 'reject', '550 no', 1);
INSERT INTO access_control (PolicyID, Name, Verdict, Data, Disabled) VALUES (5, 'odd', 'MAYBE', NULL, 0);
INSERT INTO greylisting (PolicyID, Name, UseGreylisting, GreylistPeriod, Track, GreylistAuthValidity,
  GreylistUnAuthValidity, UseAutoWhitelist, AutoWhitelistPeriod, AutoWhitelistCount, AutoWhitelistPercentage,
  UseAutoBlacklist, AutoBlacklistPeriod, AutoBlacklistCount, AutoBlacklistPercentage, Disabled)
  VALUES (1, 'gl', 1, 240, 'SenderIP:/24', 604800, 86400, 1, 604800, 100, 90, 1, 604800, 100, 90, 0);
INSERT INTO greylisting (PolicyID, Name, Track, Disabled) VALUES (2, 'gl2', 'SenderIP:/24', 0);
INSERT INTO greylisting (PolicyID, Name, Track, Disabled) VALUES (3, 'glbad', 'Sender:@example.org', 0);
INSERT INTO greylisting (PolicyID, Name, Track, Disabled) VALUES (99, 'glorphan', 'SenderIP:/24', 0);
INSERT INTO greylisting_whitelist (Source, Disabled) VALUES ('SenderIP:192.0.2.0/24', 0);
INSERT INTO greylisting_whitelist (Source, Disabled) VALUES ('Sender:@example.com', 0);
INSERT INTO greylisting_whitelist (Source, Disabled) VALUES ('SenderIP:300.1.1.1', 0);
INSERT INTO greylisting_tracking (TrackKey, Sender, Recipient, FirstSeen, LastUpdate, Tries, Count)
  VALUES ('SenderIP:192.0.2.0/24', 'a@x.org', 'b@y.org', 1, 1, 1, 0);
INSERT INTO checkhelo (PolicyID, Name, Disabled) VALUES (1, 'helo', 0);
INSERT INTO checkhelo (PolicyID, Name, UseBlacklist, BlacklistPeriod, UseHRP, HRPPeriod, HRPLimit,
  RejectInvalid, RejectIP, RejectUnresolvable, Disabled)
  VALUES (3, 'helo-in', 1, 3600, 1, 86400, 5, 1, 0, 1, 0);
INSERT INTO checkhelo (PolicyID, Name, UseHRP, HRPLimit, Disabled) VALUES (4, 'helo-bad', 1, 5000, 0);
INSERT INTO checkhelo (PolicyID, Name, Disabled) VALUES (4, 'helo-off', 1);
INSERT INTO checkhelo (PolicyID, Name, Disabled) VALUES (99, 'helo-orphan', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('127.0.0.1', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('[127.0.0.1]', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('localhost', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('localhost.localdomain', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('*.localdomain', 0);
INSERT INTO checkhelo_blacklist (Helo, Disabled) VALUES ('two words', 0);
INSERT INTO checkhelo_whitelist (Source, Disabled) VALUES ('SenderIP:198.51.100.0/24', 0);
INSERT INTO checkhelo_whitelist (Source, Disabled) VALUES ('Sender:@example.com', 0);
INSERT INTO checkhelo_tracking (Address, Helo, LastUpdate) VALUES ('192.0.2.1', 'a.example.org', 1);
";

fn check(report: &ImportReport) {
    let def = &report.def;
    let text = report.to_string();
    let names: Vec<&str> = def.policies.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "Default",
            "Default Outbound",
            "Default Inbound",
            "Default Internal",
            "Test",
            "Test (#6)"
        ],
        "{text}"
    );
    assert!(def.policies[5].disabled);
    assert_eq!(def.policies[1].priority, 10);
    assert_eq!(
        def.policies[0].description.as_deref(),
        Some("Default policy")
    );
    assert_eq!(
        def.policies[0].members,
        vec![MemberDef::default()],
        "NULL source/destination"
    );
    assert_eq!(
        def.policies[1].members[0].source.as_deref(),
        Some("%internal_ips,%internal_domains")
    );
    assert_eq!(def.policies[4].members[0].destination, None);

    let groups: Vec<(&str, usize)> = def
        .groups
        .iter()
        .map(|g| (g.name.as_str(), g.members.len()))
        .collect();
    assert_eq!(groups, [("internal_ips", 1), ("internal_domains", 2)]);
    assert_eq!(def.groups[1].members[1].member, "@example.com");

    // Access control: the known verdict (upper-cased, disabled kept); the unknown one skipped.
    let acl = &def.policies[4].access_control;
    assert_eq!(acl.len(), 1, "{text}");
    assert_eq!((acl[0].verdict.as_str(), acl[0].disabled), ("REJECT", true));
    assert_eq!(acl[0].data.as_deref(), Some("550 no"));

    // Quotas of the seed guide: MessageCount -> RecipientCount, bare-number Data dropped.
    let inbound = &def.policies[2];
    let user = &inbound.quotas[0];
    assert_eq!(user.name, "Limit incoming user");
    assert_eq!(user.track, "Sender:user@domain");
    assert_eq!(user.period, 3600);
    assert_eq!(user.verdict, "REJECT");
    assert_eq!(user.data, None);
    assert_eq!(
        user.comment.as_deref(),
        Some("Limit incoming mail from a user to 700 messages per hour")
    );
    assert_eq!(
        user.limits,
        vec![LimitDef {
            kind: "RecipientCount".into(),
            limit: 501,
            ..Default::default()
        }]
    );
    let quota_names: Vec<&str> = inbound.quotas.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(
        quota_names,
        [
            "Limit incoming user",
            "Limit incoming IP",
            "Incoming to user"
        ]
    );
    assert_eq!(inbound.quotas[1].track, "SenderIP:/32");
    assert_eq!(def.policies[1].quotas[0].limits[0].limit, 300);

    // Test policy: size in kB -> bytes; the Bogus limit and the typo quota skipped.
    let test = &def.policies[4];
    let quota_names: Vec<&str> = test.quotas.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(quota_names, ["Recipient quotas", "Quota on all /24s"]);
    assert_eq!(test.quotas[0].limits[1].kind, "MessageCumulativeSize");
    assert_eq!(test.quotas[0].limits[1].limit, 8000 * 1024);
    assert_eq!(test.quotas[1].limits.len(), 1);

    let skipped = |what: &str, why: &str| {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.what.contains(what) && s.why.contains(why)),
            "expected a skip of {what:?} because {why:?}:\n{text}"
        )
    };
    skipped("quota #10 \"orphan\"", "policy #99 does not exist");
    skipped("quota #11 \"typo\"", "unknown track \"Sendr:user@domain\"");
    skipped("quota limit", "unknown limit type \"Bogus\"");
    skipped("quota limit", "quota #11 does not exist or was skipped");
    skipped("access control", "unknown verdict \"MAYBE\"");
    skipped(
        "quota #6 \"Limit incoming user\" data \"501\"",
        "default text is used",
    );
    // Greylisting: settings and the SenderIP: whitelist imported, the rest reported.
    let gl = def.policies[0]
        .greylisting
        .as_ref()
        .expect("policy 1's greylisting");
    assert_eq!(
        (gl.enabled, gl.period, gl.track.as_deref()),
        (Some(true), Some(240), Some("SenderIP:/24"))
    );
    assert_eq!(
        (
            gl.auto_whitelist,
            gl.auto_whitelist_count,
            gl.auto_whitelist_percentage
        ),
        (Some(true), Some(100), Some(90))
    );
    assert_eq!(gl.auto_blacklist_period, Some(604_800));
    assert!(def.policies[1].greylisting.is_some());
    assert!(def.policies[2].greylisting.is_none());
    let whitelist: Vec<&str> = def
        .greylisting_whitelist
        .iter()
        .map(|w| w.source.as_str())
        .collect();
    assert_eq!(whitelist, ["SenderIP:192.0.2.0/24"]);
    skipped(
        "greylisting #3 \"glbad\"",
        "greylisting tracks only `SenderIP:/N`",
    );
    skipped("greylisting #4 \"glorphan\"", "policy #99 does not exist");
    skipped("\"Sender:@example.com\"", "only understands `SenderIP:`");
    skipped("\"SenderIP:300.1.1.1\"", "greylisting whitelist entry");
    skipped(
        "1 row in table greylisting_tracking",
        "greylisting state is not imported",
    );
    // CheckHelo: settings per policy, the blacklist and the whitelist; state counted.
    let helo = def.policies[2]
        .checkhelo
        .as_ref()
        .expect("policy 3's checkhelo");
    assert_eq!(
        (
            helo.use_blacklist,
            helo.blacklist_period,
            helo.use_hrp,
            helo.hrp_period,
            helo.hrp_limit
        ),
        (Some(true), Some(3600), Some(true), Some(86_400), Some(5)),
        "{text}"
    );
    assert_eq!(
        (
            helo.reject_invalid,
            helo.reject_ip,
            helo.reject_unresolvable
        ),
        (Some(true), Some(false), Some(true))
    );
    assert_eq!(
        def.policies[0].checkhelo,
        Some(Default::default()),
        "a row of NULLs inherits everything"
    );
    assert!(def.policies[3].checkhelo.is_none(), "{text}");
    let bl: Vec<&str> = def
        .checkhelo_blacklist
        .iter()
        .map(|b| b.helo.as_str())
        .collect();
    assert_eq!(
        bl,
        [
            "127.0.0.1",
            "[127.0.0.1]",
            "localhost",
            "localhost.localdomain",
            "*.localdomain"
        ],
        "{text}"
    );
    assert_eq!(def.checkhelo_whitelist.len(), 1);
    assert_eq!(
        def.checkhelo_whitelist[0].source,
        "SenderIP:198.51.100.0/24"
    );
    skipped(
        "checkhelo #3 \"helo-bad\"",
        "checkhelo.hrp_limit 5000 is out of range",
    );
    skipped("checkhelo #4 \"helo-off\"", "it is disabled");
    skipped("checkhelo #5 \"helo-orphan\"", "policy #99 does not exist");
    assert!(
        report
            .notes
            .iter()
            .any(|n| n.contains("\"*.localdomain\": `*` is a wildcard in Sluice")),
        "{text}"
    );
    skipped("\"two words\"", "not a HELO name");
    skipped(
        "\"Sender:@example.com\"",
        "the only form CheckHelo understands",
    );
    skipped(
        "1 row in table checkhelo_tracking",
        "CheckHelo state is not imported",
    );
    assert!(
        text.contains(
            "  2 policies with HELO checks\n  5 HELO blacklist entries\n  1 HELO whitelist entry\n"
        ),
        "{text}"
    );
    let data_skips = report
        .skipped
        .iter()
        .filter(|s| s.what.contains(" data "))
        .count();
    assert_eq!(data_skips, 4, "quotas 6-9 hold a bare number: {text}");

    let note = |needle: &str| {
        assert!(
            report.notes.iter().any(|n| n.contains(needle)),
            "expected a note containing {needle:?}:\n{text}"
        )
    };
    note("\"Test\" is used twice; imported as \"Test (#6)\"");
    note("MessageCount 501 counted recipients");
    note("cluebringer.conf");
    note("MessageCumulativeSize 8000 kB became 8192000 bytes");
    let recipient_notes = report
        .notes
        .iter()
        .filter(|n| n.contains("counted recipients"))
        .count();
    assert_eq!(
        recipient_notes, 6,
        "one note per converted MessageCount limit: {text}"
    );

    assert!(
        text.starts_with("Imported from Policyd v2:\n  6 policies\n"),
        "{text}"
    );
    assert!(text.contains("  6 quotas\n  7 quota limits\n"), "{text}");
    assert!(text.contains("\nSkipped ("), "{text}");
    assert!(!report.imported.is_empty());
}

/// The imported set can be stored and loaded back, in the order it was stored.
async fn store_it(def: &PolicySetDef) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("s.db").display()))
        .await
        .unwrap();
    store.replace_all(def).await.unwrap();
    assert_eq!(&store.load().await.unwrap(), def);
    store.close().await;
}

#[tokio::test]
async fn imports_a_sqlite_policyd_database() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("policyd.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("schema-sqlite.sql")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("sample-data.sql")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(EXTRA).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let report = import_policyd(&url).await.unwrap();
    check(&report);
    store_it(&report.def).await;
}

#[tokio::test]
async fn imports_a_postgres_policyd_database() {
    let db = common::PgDb::create().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("schema-postgres.sql")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("sample-data.sql")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(EXTRA).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}

#[tokio::test]
async fn imports_a_mysql_policyd_database() {
    // Policyd's MySQL schema differs from the SQLite one only in AUTO_INCREMENT.
    let schema = read("schema-sqlite.sql").replace("AUTOINCREMENT", "AUTO_INCREMENT");
    let db = common::MyDb::create().await;
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(read("sample-data.sql")))
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(EXTRA).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();

    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check(&report.unwrap());
}

#[tokio::test]
async fn refuses_other_urls_and_missing_tables() {
    let err = import_policyd("redis://localhost").await.unwrap_err();
    assert_eq!(err.kind_label(), "unsupported_url");

    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("empty.db").display()
    );
    let err = import_policyd(&url).await.unwrap_err();
    assert_eq!(
        err.kind_label(),
        "database",
        "not a Policyd database: {err}"
    );
}

/// Numbers a Policyd database can hold but no quota can enforce (issue 12): a period of
/// BIGINT's maximum (its milliseconds wrapped and the quota admitted everything), a period
/// one second over 366 days, and limits above the engine's maxima. Beside them, the
/// longest valid period and the largest valid size.
const OUT_OF_RANGE: &str = "
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
  VALUES (20, 3, 'never holds', 'Sender:user@domain', 9223372036854775807, 'DEFER', 0, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (100, 20, 'MessageCount', 100, 0);
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
  VALUES (21, 3, 'a day too long', 'Sender:@domain', 31622401, 'DEFER', 0, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (101, 21, 'MessageCount', 100, 0);
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
  VALUES (22, 3, 'yearly', 'Sender:@domain', 31622400, 'DEFER', 0, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (102, 22, 'MessageCount', 9223372036854775807, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (103, 22, 'MessageCount', 1000, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (104, 22, 'MessageCumulativeSize', 9223372036854775807, 0);
INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled) VALUES (105, 22, 'MessageCumulativeSize', 97656250000, 0);
";

fn check_out_of_range(report: &ImportReport) {
    let text = report.to_string();
    let skipped = |what: &str, why: &str| {
        assert!(
            report
                .skipped
                .iter()
                .any(|s| s.what.starts_with(what) && s.why.contains(why)),
            "expected a skip of {what:?} because {why:?}:\n{text}"
        )
    };
    skipped(
        "quota #20 \"never holds\"",
        "period 9,223,372,036,854,775,807 s is longer than the maximum of 366 days",
    );
    skipped(
        "quota limit #100",
        "quota #20 does not exist or was skipped",
    );
    skipped(
        "quota #21 \"a day too long\"",
        "period 31,622,401 s is longer than the maximum of 366 days",
    );
    skipped(
        "quota limit #101",
        "quota #21 does not exist or was skipped",
    );
    skipped(
        "quota limit #102 of quota \"yearly\"",
        "RecipientCount limit 9,223,372,036,854,775,807 is above the maximum of 1,000,000,000",
    );
    skipped(
        "quota limit #104 of quota \"yearly\"",
        "limit 9223372036854775807 kB is above the maximum of 100 TB",
    );
    assert!(text.contains("\nSkipped ("), "{text}");

    let inbound = &report.def.policies[2];
    assert_eq!(inbound.name, "Default Inbound");
    let quotas: Vec<(&str, u64)> = inbound
        .quotas
        .iter()
        .map(|q| (q.name.as_str(), q.period))
        .collect();
    assert_eq!(
        quotas,
        [
            ("Limit incoming user", 3600),
            ("Limit incoming IP", 3600),
            ("Incoming to user", 3600),
            ("yearly", 31_622_400),
        ],
        "{text}"
    );
    let yearly: Vec<(&str, u64)> = inbound.quotas[3]
        .limits
        .iter()
        .map(|l| (l.kind.as_str(), l.limit))
        .collect();
    assert_eq!(
        yearly,
        [
            ("RecipientCount", 1000),
            ("MessageCumulativeSize", 100_000_000_000_000)
        ]
    );
    // What is imported validates, so `sluice import-policyd` writes it.
    sluice_engine::compile(&report.def).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
}

#[tokio::test]
async fn out_of_range_numbers_are_skipped_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("policyd.db").display()
    );
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        read("schema-sqlite.sql"),
        read("sample-data.sql"),
        OUT_OF_RANGE.into(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    check_out_of_range(&import_policyd(&url).await.unwrap());
}

#[tokio::test]
async fn out_of_range_numbers_are_skipped_postgres() {
    let db = common::PgDb::create().await;
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for sql in [
        read("schema-postgres.sql"),
        read("sample-data.sql"),
        OUT_OF_RANGE.into(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check_out_of_range(&report.unwrap());
}

#[tokio::test]
async fn out_of_range_numbers_are_skipped_mysql() {
    let db = common::MyDb::create().await;
    let mut conn = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    for sql in [
        read("schema-sqlite.sql").replace("AUTOINCREMENT", "AUTO_INCREMENT"),
        read("sample-data.sql"),
        OUT_OF_RANGE.into(),
    ] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
    let report = import_policyd(&db.url).await;
    db.drop_db().await;
    check_out_of_range(&report.unwrap());
}
