//! The `sluice` binary as an operator uses it: real processes, a real SQLite file, real TCP.

use sluice_test_support::{ask_blocking, free_port, wait_listening};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn sluice(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .output()
        .expect("run sluice")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

struct Serve {
    child: Child,
    port: u16,
    admin: u16,
}

impl Serve {
    fn start(db: &str) -> Serve {
        let (port, admin) = (free_port(), free_port());
        let child = Command::new(BIN)
            .args([
                "serve",
                "--database",
                db,
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                &format!("127.0.0.1:{admin}"),
                "--http-explain",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start sluice serve");
        wait_listening(port, Duration::from_secs(20), "sluice serve");
        Serve { child, port, admin }
    }

    fn ask(&self, sender: &str, instance: &str) -> String {
        ask_blocking(
            self.port,
            &format!("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender={sender}\nrecipient=bob@example.com\ninstance={instance}"),
        )
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p.to_str().unwrap().to_string()
}

const BLOCK_ALL: &str = r#"
[[policy]]
name = "block"
priority = 1
  [[policy.member]]
  source = "192.0.2.0/24"
  [[policy.access_control]]
  name = "no"
  verdict = "REJECT"
  data = "Blocked by policy"
"#;

#[test]
fn check_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let bad = write(
        dir.path(),
        "bad.toml",
        "[[policy]]\nname = \"p\"\n\n  [[policy.member]]\n  source = \"10.0.0.0/33\"\n",
    );
    let out = sluice(&["policy", "check", &bad]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("bad.toml:5:"), "{t}");
    assert!(t.contains("source"), "{t}");
    assert!(t.contains("mask"), "{t}");

    let inert = write(
        dir.path(),
        "inert.toml",
        "[[policy]]\nname = \"p\"\n[[policy.member]]\nsource = \"any\"\n[[policy.quota]]\nname = \"q\"\ntrack = \"Policy\"\nperiod = 60\nverdict = \"REJECT\"\n",
    );
    let out = sluice(&["policy", "check", &inert]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("warning"), "{}", text(&out));
    assert!(!sluice(&["policy", "check", "--strict", &inert])
        .status
        .success());

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/policies.example.toml"
    );
    let out = sluice(&["policy", "check", "--strict", example]);
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn invalid_configuration_exits_64_before_listening() {
    let out = sluice(&[
        "serve",
        "--fallback-action",
        "BOUNCE",
        "--listen",
        "nonsense",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("fallback_action") && t.contains("listen \"nonsense\""),
        "all errors reported: {t}"
    );
}

#[test]
fn serve_enforces_imports_live_and_explains_with_live_counters() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let limit = write(
        dir.path(),
        "limit.toml",
        &sluice_test_support::policies::sender_quota("senders", "per sender", 2),
    );
    assert!(sluice(&["policy", "import", &limit, "--database", &db])
        .status
        .success());
    let serve = Serve::start(&db);

    assert_eq!(serve.ask("alice@example.net", "m1"), "DUNNO");
    assert_eq!(serve.ask("alice@example.net", "m2"), "DUNNO");
    assert_eq!(
        serve.ask("alice@example.net", "m3"),
        "REJECT Sender quota exceeded"
    );

    // explain asks the running server: live levels, nothing charged.
    let admin = format!("127.0.0.1:{}", serve.admin);
    let out = sluice(&[
        "explain",
        "--server",
        &admin,
        "--database",
        &db,
        "--sender",
        "alice@example.net",
        "--recipient",
        "bob@example.com",
        "--client-address",
        "192.0.2.1",
        "--instance",
        "m4",
    ]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "a refusal exits 1: {t}");
    assert!(t.contains("[match]") && t.contains("\"senders\""), "{t}");
    assert!(t.contains("level 2/2"), "live counter level shown: {t}");
    assert!(t.contains("action=REJECT Sender quota exceeded"), "{t}");
    assert_eq!(
        serve.ask("bob@example.net", "m5"),
        "DUNNO",
        "explain charged nothing for others"
    );

    // A new policy file is enforced within a second, on the same server.
    let block = write(dir.path(), "block.toml", BLOCK_ALL);
    assert!(sluice(&["policy", "import", &block, "--database", &db])
        .status
        .success());
    let imported = Instant::now();
    loop {
        let a = serve.ask("carol@example.net", "m6");
        if a == "REJECT Blocked by policy" {
            break;
        }
        assert!(
            imported.elapsed() < Duration::from_secs(1),
            "not enforced within 1 s (still {a})"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Export gives back what was imported.
    let out = sluice(&["policy", "export", "--database", &db]);
    assert!(text(&out).contains("Blocked by policy"));
}

#[test]
fn explain_offline_reads_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    let block = write(dir.path(), "block.toml", BLOCK_ALL);
    assert!(sluice(&["policy", "import", &block, "--database", &db])
        .status
        .success());
    let mut child = Command::new(BIN)
        .args(["explain", "--offline", "--stdin", "--database", &db])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"protocol_state=RCPT\nclient_address=198.51.100.7\nsender=a@b.example\nrecipient=c@d.example\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert!(
        t.contains("source item \"192.0.2.0/24\" does not match"),
        "{t}"
    );
    assert!(t.contains("Action: action=DUNNO"), "{t}");
    assert_eq!(out.status.code(), Some(0), "DUNNO exits 0: {t}");
}

/// The shared Policyd v2 fixtures, beside the repository (as in CI), or at /work/shared
/// (for a worktree elsewhere).
fn shared_data(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = [
        root.join("../shared/data/policyd-v2"),
        root.join("shared/data/policyd-v2"),
        Path::new("/work/shared/data/policyd-v2").to_path_buf(),
    ]
    .into_iter()
    .find(|d| d.join(name).exists())
    .unwrap_or_else(|| root.join("../shared/data/policyd-v2"));
    let path = dir.join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread")]
async fn import_policyd_sample_database() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("policyd.db");
    let url = format!("sqlite://{}?mode=rwc", fixture.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sql = format!(
        "{}\n{}",
        shared_data("schema-sqlite.sql"),
        shared_data("sample-data.sql")
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let from = format!("sqlite://{}", fixture.display());
    let out = sluice(&["import-policyd", "--from", &from, "--database", &db]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("RecipientCount"),
        "the MessageCount conversion is reported: {t}"
    );
    let exported = text(&sluice(&["policy", "export", "--database", &db]));
    assert!(
        exported.contains("Default Inbound") && exported.contains("internal_domains"),
        "{exported}"
    );
    assert!(
        exported.contains("limit = \"8000KiB\""),
        "kB converted to bytes: {exported}"
    );
}

#[test]
fn database_down_at_start_refuses_postfix_instead_of_hanging() {
    let (port, admin) = (free_port(), free_port());
    let dead_db = format!("postgres://postgres@127.0.0.1:{}/sluice", free_port());
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--database",
            &dead_db,
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sluice serve");
    wait_listening(admin, Duration::from_secs(20), "metrics listener");
    // Not ready, and Postfix is refused at once (its default_action applies) while the
    // service keeps retrying the database.
    for _ in 0..5 {
        let mut s = TcpStream::connect(("127.0.0.1", admin)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(s, "GET /readyz HTTP/1.0\r\n\r\n").unwrap();
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.0 503") || reply.starts_with("HTTP/1.1 503"),
            "{reply}"
        );
        let refused = TcpStream::connect(("127.0.0.1", port));
        assert!(
            refused.is_err(),
            "Postfix port must refuse while no policies are loaded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(child.try_wait().unwrap().is_none(), "keeps retrying");
    let _ = child.kill();
    let _ = child.wait();
}

/// A quota of `period` with one limit, as an operator writes it.
fn quota_file(period: &str, kind: &str, limit: &str) -> String {
    format!(
        "[[policy]]\nname = \"p\"\n\n[[policy.member]]\nsource = \"any\"\n\n\
         [[policy.quota]]\nname = \"q\"\ntrack = \"Sender:user@domain\"\nperiod = {period}\n\
         verdict = \"DEFER\"\n\n[[policy.quota.limit]]\ntype = \"{kind}\"\nlimit = {limit}\n"
    )
}

/// Issue 12: a period whose milliseconds overflow was accepted and never enforced. Every
/// such value is refused, naming the file, the line and the field; the longest allowed
/// period is accepted.
#[test]
fn check_refuses_periods_and_limits_that_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    // (period, type, limit, the line of the finding, the field, words of the message)
    let cases = [
        (
            "\"18446744073709552s\"",
            "RecipientCount",
            "100",
            10,
            "quota \"q\" > period",
            "366 days",
        ),
        (
            "9223372036854775807",
            "RecipientCount",
            "100",
            10,
            "quota \"q\" > period",
            "366 days",
        ),
        (
            "\"99999999999999999999h\"",
            "RecipientCount",
            "100",
            10,
            "quota \"q\" > period",
            "too long",
        ),
        (
            "\"366d\"",
            "RecipientCount",
            "1000000001",
            15,
            "limit #1 > limit",
            "maximum of 1,000,000,000",
        ),
        (
            "\"1d\"",
            "MessageCumulativeSize",
            "\"1000000T\"",
            15,
            "limit #1 > limit",
            "100 TB",
        ),
        (
            "0",
            "RecipientCount",
            "100",
            10,
            "quota \"q\" > period",
            "at least 1 second",
        ),
    ];
    for (i, (period, kind, limit, line, field, words)) in cases.into_iter().enumerate() {
        let name = format!("bad{i}.toml");
        let file = write(dir.path(), &name, &quota_file(period, kind, limit));
        let out = sluice(&["policy", "check", &file]);
        let t = text(&out);
        assert!(!out.status.success(), "{period} {limit}: {t}");
        assert!(
            t.contains(&format!("{name}:{line}: ")),
            "{period} {limit}: {t}"
        );
        assert!(
            t.contains(field) && t.contains(words),
            "{period} {limit}: {t}"
        );
    }

    // The longest period is fine; one second more is not.
    let ok = write(
        dir.path(),
        "ok.toml",
        &quota_file("\"366d\"", "RecipientCount", "100"),
    );
    let out = sluice(&["policy", "check", "--strict", &ok]);
    assert!(out.status.success(), "{}", text(&out));
    let over = write(
        dir.path(),
        "over.toml",
        &quota_file("31622401", "RecipientCount", "100"),
    );
    let out = sluice(&["policy", "check", &over]);
    assert!(!out.status.success());
    assert!(text(&out).contains("over.toml:10: "), "{}", text(&out));
}

/// `policy import` refuses the overflowing period and leaves the stored set as it was.
#[test]
fn import_refuses_a_period_that_cannot_hold_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let good = write(dir.path(), "good.toml", BLOCK_ALL);
    assert!(sluice(&["policy", "import", &good, "--database", &db])
        .status
        .success());
    let before = text(&sluice(&["policy", "export", "--database", &db]));
    assert!(before.contains("Blocked by policy"), "{before}");

    let bad = write(
        dir.path(),
        "bad.toml",
        &quota_file("\"18446744073709552s\"", "RecipientCount", "100"),
    );
    let out = sluice(&["policy", "import", &bad, "--database", &db]);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("bad.toml:10: ") && t.contains("period"), "{t}");
    assert!(t.contains("nothing imported"), "{t}");
    let after = text(&sluice(&["policy", "export", "--database", &db]));
    assert_eq!(after, before, "the stored set is unchanged");
}

/// `import-policyd` on a Policyd database holding a quota whose period is BIGINT's maximum:
/// that quota (and its limit) is reported as skipped, with the reason, and the rest is
/// imported; the quota that would never hold is not.
#[tokio::test(flavor = "multi_thread")]
async fn import_policyd_skips_a_quota_that_would_never_hold() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = dir.path().join("policyd.db");
    let url = format!("sqlite://{}?mode=rwc", fixture.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let sql = format!(
        "{}\n{}\n{}",
        shared_data("schema-sqlite.sql"),
        shared_data("sample-data.sql"),
        "INSERT INTO quotas (ID, PolicyID, Name, Track, Period, Verdict, LastQuota, Disabled)
           VALUES (20, 3, 'never holds', 'Sender:user@domain', 9223372036854775807, 'DEFER', 0, 0);
         INSERT INTO quotas_limits (ID, QuotasID, Type, CounterLimit, Disabled)
           VALUES (100, 20, 'MessageCount', 100, 0);"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let from = format!("sqlite://{}", fixture.display());
    let out = sluice(&["import-policyd", "--from", &from, "--database", &db]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let skipped = t.split("Skipped (").nth(1).unwrap_or_default();
    assert!(
        skipped.contains("quota #20 \"never holds\": period 9,223,372,036,854,775,807 s is longer than the maximum of 366 days"),
        "the skip and its reason are reported: {t}"
    );
    assert!(
        skipped.contains("quota limit #100: its quota #20 does not exist or was skipped"),
        "{t}"
    );
    let exported = text(&sluice(&["policy", "export", "--database", &db]));
    assert!(exported.contains("Default Inbound"), "{exported}");
    assert!(!exported.contains("never holds"), "{exported}");
    assert!(!exported.contains("9223372036854775807"), "{exported}");
}
