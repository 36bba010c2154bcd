//! The `sluice` binary as an operator uses it: real processes, a real SQLite file, real TCP.

use sluice_test_support::{free_port, wait_listening};
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
                "--admin-listen",
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
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender={sender}\nrecipient=bob@example.com\ninstance={instance}\n\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\n\n") {
            assert_eq!(
                s.read(&mut byte).unwrap(),
                1,
                "server closed the connection"
            );
            buf.push(byte[0]);
        }
        String::from_utf8(buf)
            .unwrap()
            .trim()
            .trim_start_matches("action=")
            .to_string()
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
    assert!(out.status.success(), "{t}");
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
}

/// The shared Policyd v2 fixtures, beside the repository (as in CI) .
fn shared_data(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/policyd-v2")
        .join(name);
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
    sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
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
        exported.contains("limit = 8192000"),
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
