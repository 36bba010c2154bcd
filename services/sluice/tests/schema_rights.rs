//! Migrations are their own step: edges run with a read-only PostgreSQL role (CONNECT,
//! USAGE, SELECT) on a schema `sluice migrate` created as the owner, answer over TCP and pick
//! up the owner's policy changes; `sluice migrate` as the read-only role fails saying what
//! to do; an edge refuses a schema older or newer than itself (exit code 64).

mod cluster_support;

use cluster_support::*;
use sluice_test_support::policies::gate_and_sender_quota;
use sluice_test_support::{free_port, rcpt, Process, Request};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

/// A login role on the shared PostgreSQL, dropped on drop (after the databases it was
/// granted rights in: declare it before them).
struct PgRole {
    name: String,
}

impl PgRole {
    fn create() -> PgRole {
        let name = unique("sluice_reader");
        psql(PG_ADMIN_URL, &format!("CREATE ROLE {name} LOGIN"));
        PgRole { name }
    }

    /// `db`'s URL as this role (the test server trusts local connections).
    fn url(&self, db: &PgDb) -> String {
        format!("postgres://{}@127.0.0.1:5432/{}", self.name, db.name)
    }
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q"])
            .arg(PG_ADMIN_URL)
            .args(["-c", &format!("DROP ROLE IF EXISTS {}", self.name)])
            .output();
    }
}

fn request(sender: &str, ip: &str, n: &mut u32) -> Request {
    *n += 1;
    rcpt(sender, "r@example.net", ip, &format!("ro{n}"))
}

/// Runs `sluice edge` on `db` (with a quota service that is never called) until it exits;
/// panics if it still runs after 30 s. Returns the exit status and the log.
fn edge_exit(db: &str) -> (ExitStatus, String) {
    let args: Vec<String> = [
        "edge",
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics-listen",
        "off",
        "--database",
        db,
        "--quota",
        &format!("http://127.0.0.1:{}", free_port()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut edge = Process::start("edge", BIN, &args, None);
    let status = edge.wait_exit(Duration::from_secs(30));
    (status, edge.log())
}

#[test]
fn edges_run_with_a_read_only_role_and_migrate_needs_the_owner() {
    let _serial = serial();
    let reader = PgRole::create();
    let db = PgDb::create_empty();
    let ro = reader.url(&db);
    // What a DBA grants an edge: connect, see the schema, read its tables (those created
    // later by the owner too). PostgreSQL 15 no longer lets PUBLIC create in `public`; older
    // servers did, so it is taken away here for the test to mean the same everywhere.
    for sql in [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT CONNECT ON DATABASE {} TO {}", db.name, reader.name),
        format!("GRANT USAGE ON SCHEMA public TO {}", reader.name),
        format!(
            "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT SELECT ON TABLES TO {}",
            reader.name
        ),
    ] {
        psql(&db.url, &sql);
    }

    // The read-only role cannot create the schema, and is told who can.
    let out = sluice(&["migrate", "--database", &ro]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(64), "{t}");
    assert!(t.contains("permission denied for schema public"), "{t}");
    assert!(
        t.contains("run `sluice migrate` as the role that owns the policy database"),
        "{t}"
    );
    assert_eq!(t.lines().count(), 1, "one line: {t}");
    assert_eq!(
        psql(
            &db.url,
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .trim(),
        "0",
        "nothing created"
    );

    // The owner migrates and imports; the reader's `migrate` then has nothing to do and
    // needs no rights for that; an import, which writes, is refused to it.
    migrate(&db.url);
    import(&db.url, &gate_and_sender_quota("blocked v1", 2));
    let out = sluice(&["migrate", "--database", &ro]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("schema already up to date, nothing applied"));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, gate_and_sender_quota("blocked by the reader", 2)).unwrap();
    let out = sluice(&[
        "policy",
        "import",
        file.to_str().unwrap(),
        "--database",
        &ro,
        "--server",
        "off",
    ]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("permission denied for table"),
        "{}",
        text(&out)
    );

    // Two edges on the read-only role answer verdicts, counters included.
    let cluster = Cluster::start(
        &ro,
        Spec {
            edges: 2,
            quotas: 1,
            redis_cluster: false,
            ..Spec::default()
        },
    );
    let mut n = 0;
    for &port in &cluster.edge_ports {
        assert_eq!(
            ask(port, &request("a@example.org", "192.0.2.7", &mut n)),
            "REJECT blocked v1",
            "{}",
            cluster.logs()
        );
    }
    let (first, second) = (cluster.edge_ports[0], cluster.edge_ports[1]);
    let sender = "counted@example.org";
    assert_eq!(
        ask(first, &request(sender, "198.51.100.5", &mut n)),
        "DUNNO"
    );
    assert_eq!(
        ask(second, &request(sender, "198.51.100.5", &mut n)),
        "DUNNO"
    );
    assert_eq!(
        ask(first, &request(sender, "198.51.100.5", &mut n)),
        "REJECT sender quota exceeded"
    );

    // The owner changes the policies; both edges pick the change up.
    import(&db.url, &gate_and_sender_quota("blocked v2", 2));
    let since = Instant::now();
    for &port in &cluster.edge_ports {
        loop {
            let answer = ask(port, &request("a@example.org", "192.0.2.7", &mut n));
            if answer == "REJECT blocked v2" {
                break;
            }
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "edge on {port} still answers {answer:?}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    for edge in &cluster.edges {
        assert!(!edge.log().contains("permission denied"), "{}", edge.log());
    }
}

#[test]
fn an_edge_refuses_a_schema_older_or_newer_than_itself() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked", 2));
    let newest = psql(&db.url, "SELECT MAX(version) FROM _sqlx_migrations");
    let newest = newest.trim();

    // Older: the newest migration is missing (its record kept aside, to be put back: a
    // migration need not be re-runnable).
    psql(
        &db.url,
        &format!(
            "CREATE TABLE newest_migration AS SELECT * FROM _sqlx_migrations WHERE version = {newest}; \
             DELETE FROM _sqlx_migrations WHERE version = {newest}"
        ),
    );
    let (status, log) = edge_exit(&db.url);
    assert_eq!(status.code(), Some(64), "{log}");
    assert!(log.contains("older than this sluice"), "{log}");
    assert!(log.contains("run `sluice migrate`"), "{log}");
    assert!(log.contains(&format!("migrations {newest} (")), "{log}");
    // `sluice serve` on PostgreSQL does not migrate either.
    let out = sluice(&[
        "serve",
        "--database",
        &db.url,
        "--listen",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics-listen",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("older than this sluice"),
        "{}",
        text(&out)
    );

    // Newer: a migration this build does not know was applied.
    psql(
        &db.url,
        "INSERT INTO _sqlx_migrations SELECT * FROM newest_migration; DROP TABLE newest_migration",
    );
    psql(
        &db.url,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer sluice', TRUE, '\\x00', 0)",
    );
    let (status, log) = edge_exit(&db.url);
    assert_eq!(status.code(), Some(64), "{log}");
    assert!(log.contains("newer than this sluice"), "{log}");
    assert!(
        log.contains("99990101000000 (from a newer sluice)"),
        "{log}"
    );
    assert!(log.contains("upgrade it"), "{log}");
    // `sluice migrate` of this (older) build changes nothing and says the same.
    let out = sluice(&["migrate", "--database", &db.url]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("upgrade it"), "{}", text(&out));
}

#[test]
fn an_edge_keeps_retrying_an_unreachable_database() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/sluice");
    let listen = free_port();
    let args: Vec<String> = [
        "edge",
        "--listen",
        &format!("127.0.0.1:{listen}"),
        "--metrics-listen",
        "off",
        "--database",
        &url,
        "--quota",
        &format!("http://127.0.0.1:{}", free_port()),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut edge = Process::start("edge", BIN, &args, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while edge
        .log()
        .matches("Cannot load policies yet, retrying")
        .count()
        < 2
    {
        assert!(edge.running(), "the edge exited: {}", edge.log());
        assert!(Instant::now() < deadline, "{}", edge.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(edge.running(), "{}", edge.log());
}
