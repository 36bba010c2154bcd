//! The first hour of a new operator, with real processes: what `sluice` says when something
//! is missing or wrong (a forgotten database, PostgreSQL not listening, a missing directory,
//! a port in use), what `migrate` and a starting `serve` say, how a `SASLUsername` quota
//! treats unauthenticated mail over TCP, and `explain`'s exit status.

mod cluster_support;

use cluster_support::{ask, import, sluice, text, PgDb, BIN};
use sluice_test_support::{free_port, policies, rcpt, Process};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn edge_without_a_database_is_refused_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["edge", "--quota", "http://127.0.0.1:10033"])
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_CONFIG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(64), "{t}");
    assert!(
        t.contains("`sluice edge` needs the policy database: set `database`")
            && t.contains("--database")
            && t.contains("SLUICE_DATABASE"),
        "{t}"
    );
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "no database file created"
    );
}

#[test]
fn serve_says_where_its_default_database_is_and_hints_at_importing() {
    let dir = tempfile::tempdir().unwrap();
    let (port, metrics) = (free_port(), free_port());
    let log = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_CONFIG")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("Policy server listening") || Instant::now() >= deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = child.kill();
    let _ = child.wait();
    let file = dir.path().canonicalize().unwrap().join("sluice.db");
    assert!(file.exists(), "the default database is ./sluice.db");
    let loaded = text
        .lines()
        .find(|l| l.contains("Policies loaded"))
        .unwrap_or_else(|| panic!("no `Policies loaded` line:\n{text}"));
    assert!(
        loaded.contains(&format!("sqlite file {}", file.display()))
            && loaded.contains("policies=0"),
        "start-up line names the absolute path and the count: {loaded}"
    );
    let starting = text
        .lines()
        .find(|l| l.contains("Starting"))
        .unwrap_or_else(|| panic!("no start-up line:\n{text}"));
    assert!(
        starting.contains(&format!("127.0.0.1:{port}"))
            && starting.contains(&format!("127.0.0.1:{metrics}"))
            && starting.contains("counters=in process"),
        "every listener named: {starting}"
    );
    assert!(
        text.contains("No enabled policies") && text.contains("sluice policy import FILE"),
        "a hint to import policies:\n{text}"
    );
}

#[test]
fn postgres_not_listening_is_reported_within_seconds_with_host_and_port() {
    // A free port: nothing listens there.
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/sluice");
    let started = Instant::now();
    let out = sluice(&["migrate", "--database", &url]);
    let took = started.elapsed();
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        took < Duration::from_secs(10),
        "reported after {took:?}: {t}"
    );
    assert!(
        t.contains(&format!("cannot reach PostgreSQL at 127.0.0.1:{port}"))
            && t.contains("Connection refused")
            && t.contains("check that PostgreSQL runs and listens there"),
        "{t}"
    );
    assert!(!t.contains("pool timed out"), "{t}");
    assert_eq!(t.lines().count(), 1, "one line: {t}");
}

#[test]
fn a_missing_sqlite_directory_is_named_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let url = format!("sqlite://{}/sluice.db", missing.display());
    let out = sluice(&["policy", "export", "--database", &url]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    let said = format!("its directory {} does not exist", missing.display());
    assert_eq!(t.matches(&said).count(), 1, "{t}");
    assert!(
        t.contains(&format!("mkdir -p {}", missing.display())),
        "{t}"
    );
    assert!(!t.contains("code: 14"), "{t}");
}

#[test]
fn a_port_in_use_is_said_once_with_what_to_do() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let out = sluice(&[
        "serve",
        "--database",
        &db,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        "off",
    ]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert_eq!(
        t.matches(&format!("cannot listen on 127.0.0.1:{port}"))
            .count(),
        1,
        "{t}"
    );
    assert_eq!(t.matches("Address already in use").count(), 1, "{t}");
    assert!(t.contains("--listen"), "says what to do: {t}");
}

#[test]
fn migrate_says_what_it_applied_and_postgres_notices_stay_quiet() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = format!("sqlite://{}", dir.path().join("s.db").display());
    let pg = PgDb::create_empty();
    for url in [sqlite.as_str(), pg.url.as_str()] {
        let first = sluice(&["migrate", "--database", url]);
        let t = text(&first);
        assert!(first.status.success(), "{t}");
        assert!(t.contains(": applied ") && t.contains(" migration"), "{t}");
        let again = sluice(&["migrate", "--database", url]);
        let t = text(&again);
        assert!(again.status.success(), "{t}");
        assert!(
            t.contains("schema already up to date, nothing applied"),
            "{t}"
        );
        assert!(!t.contains("already exists, skipping"), "{t}");
        let export = sluice(&["policy", "export", "--database", url]);
        assert!(export.status.success(), "{}", text(&export));
        assert!(
            String::from_utf8_lossy(&export.stderr).trim().is_empty(),
            "nothing on stderr: {}",
            text(&export)
        );
    }
}

#[test]
fn a_sasl_quota_counts_authenticated_mail_per_user_and_skips_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    import(
        &db,
        &policies::quota_policy(
            "outbound",
            "per user",
            "SASLUsername",
            "MessageCount",
            2,
            "REJECT",
            "5.7.1 Too many messages from this user",
        ),
    );
    let (port, metrics) = (free_port(), free_port());
    let _serve = Process::start(
        "serve",
        BIN,
        &args(&[
            "serve",
            "--database",
            &db,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics}"),
            "--http-explain",
        ]),
        Some(port),
    );
    let reject = "REJECT 5.7.1 Too many messages from this user";
    // Unauthenticated mail (inbound, say) is not counted: Policyd gave it one shared
    // counter, and the third message of anyone would have been refused.
    for i in 0..5 {
        let r = rcpt(
            "x@example.net",
            "bob@example.com",
            "192.0.2.1",
            &format!("u{i}"),
        );
        assert_eq!(ask(port, &r), "DUNNO", "unauthenticated message {i}");
    }
    // Authenticated mail is counted per user.
    for i in 0..2 {
        let r = rcpt(
            "alice@example.com",
            "x@example.net",
            "10.0.0.1",
            &format!("a{i}"),
        );
        assert_eq!(ask(port, &r.sasl("alice")), "DUNNO", "alice's message {i}");
    }
    let r = rcpt("alice@example.com", "x@example.net", "10.0.0.1", "a2");
    assert_eq!(ask(port, &r.sasl("alice")), reject);
    let r = rcpt("bob@example.com", "x@example.net", "10.0.0.2", "b0");
    assert_eq!(
        ask(port, &r.sasl("bob")),
        "DUNNO",
        "bob has his own counter"
    );
    let r = rcpt("x@example.net", "bob@example.com", "192.0.2.1", "u5");
    assert_eq!(ask(port, &r), "DUNNO", "still not counted");

    // explain says so, and its exit status is the verdict.
    let server = format!("127.0.0.1:{metrics}");
    let explain = |extra: &[&str]| {
        let mut a = vec![
            "explain",
            "--server",
            &server,
            "--database",
            &db,
            "--sender",
            "alice@example.com",
            "--recipient",
            "x@example.net",
            "--client-address",
            "10.0.0.1",
        ];
        a.extend_from_slice(extra);
        sluice(&a)
    };
    let out = explain(&[]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "DUNNO exits 0: {t}");
    assert!(
        t.contains("quota \"per user\" skipped: the mail is not authenticated"),
        "{t}"
    );
    assert!(
        !t.lines().any(|l| l.trim_end() == "AccessControl:"),
        "no empty heading: {t}"
    );
    let out = explain(&["--sasl-username", "alice", "--instance", "a3"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a refusal exits 1: {t}");
    assert!(
        t.contains("[SASLUsername:alice]") && t.contains("level 2/2"),
        "{t}"
    );
    assert!(t.contains(&format!("Action: action={reject}")), "{t}");
    // Nothing to explain from: exit 2.
    let missing = format!("sqlite://{}/none/s.db", dir.path().display());
    let out = sluice(&[
        "explain",
        "--offline",
        "--database",
        &missing,
        "--client-address",
        "192.0.2.1",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread")]
async fn import_policyd_says_what_changed_for_sasl_quotas() {
    // Policyd v2's own tables (its SQLite schema), the ones the import reads.
    let schema = "CREATE TABLE policies (ID INTEGER PRIMARY KEY AUTOINCREMENT, Name VARCHAR(255) NOT NULL, Priority SMALLINT NOT NULL,
  Description TEXT, Disabled SMALLINT NOT NULL DEFAULT 0);
CREATE TABLE policy_members (ID INTEGER PRIMARY KEY AUTOINCREMENT, PolicyID INTEGER, Source TEXT, Destination TEXT,
  Comment VARCHAR(1024), Disabled SMALLINT NOT NULL DEFAULT 0);
CREATE TABLE policy_groups (ID INTEGER PRIMARY KEY AUTOINCREMENT, Name VARCHAR(255) NOT NULL, Disabled SMALLINT NOT NULL DEFAULT 0,
  Comment VARCHAR(1024), UNIQUE (Name));
CREATE TABLE policy_group_members (ID INTEGER PRIMARY KEY AUTOINCREMENT, PolicyGroupID INTEGER, Member VARCHAR(255) NOT NULL,
  Disabled SMALLINT NOT NULL DEFAULT 0, Comment VARCHAR(1024));
CREATE TABLE access_control (ID INTEGER PRIMARY KEY AUTOINCREMENT, PolicyID INTEGER, Name VARCHAR(255) NOT NULL,
  Verdict VARCHAR(255), Data TEXT, Comment VARCHAR(1024), Disabled SMALLINT NOT NULL DEFAULT 0);
CREATE TABLE quotas (ID INTEGER PRIMARY KEY AUTOINCREMENT, PolicyID INTEGER, Name VARCHAR(255) NOT NULL,
  Track VARCHAR(255) NOT NULL, Period BIGINT, Verdict VARCHAR(255), Data TEXT, LastQuota SMALLINT NOT NULL DEFAULT 0,
  Comment VARCHAR(1024), Disabled SMALLINT NOT NULL DEFAULT 0);
CREATE TABLE quotas_limits (ID INTEGER PRIMARY KEY AUTOINCREMENT, QuotasID INTEGER, Type VARCHAR(255), CounterLimit BIGINT,
  Comment VARCHAR(1024), Disabled SMALLINT NOT NULL DEFAULT 0);";
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("policyd.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", fixture.display()))
        .await
        .unwrap();
    let rows = "INSERT INTO policies (ID, Name, Priority, Description, Disabled) VALUES (1, 'Outbound', 10, '', 0);
INSERT INTO policy_members (PolicyID, Source, Destination, Disabled) VALUES (1, 'any', 'any', 0);
INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, Data, LastQuota, Comment, Disabled) VALUES
 (1, 1, 'Per user', 'SASLUsername', 3600, 'REJECT', NULL, 0, NULL, 0);
INSERT INTO quotas_limits (QuotasID, Type, CounterLimit, Disabled) VALUES (1, 'MessageCount', 100, 0);";
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("{schema}\n{rows}")))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let from = format!("sqlite://{}", fixture.display());
    let out = sluice(&["import-policyd", "--from", &from, "--dry-run"]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("changed: policy \"Outbound\" quota \"Per user\" tracks SASLUsername")
            && t.contains("unauthenticated mail skips this quota"),
        "{t}"
    );
}
