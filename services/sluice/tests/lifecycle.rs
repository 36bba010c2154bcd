//! A running `sluice` as operators treat it: SIGHUP out of habit, a policy database file
//! deleted and imported again at the same path. Real processes, real files, real TCP.

use sluice_test_support::{
    ask_blocking, free_port, output_text, start_front, start_quota, wait_listening, Process,
    RedisServer,
};
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A policy refusing all mail from senders at `domain` (`554 5.7.1 blocked`).
fn refusing(domain: &str) -> String {
    format!(
        r#"
[[policy]]
name = "block-{domain}"
priority = 10
  [[policy.member]]
  source = "@{domain}"
  destination = "any"
  [[policy.access_control]]
  name = "deny"
  verdict = "REJECT"
  data = "554 5.7.1 blocked"
"#
    )
}

fn sluice(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_METRICS_LISTEN")
        .output()
        .expect("run sluice")
}

fn import(dir: &Path, policies: &str, db: &str, server: &str) -> String {
    let file = dir.join("policies.toml");
    std::fs::write(&file, policies).unwrap();
    let out = sluice(&[
        "policy",
        "import",
        file.to_str().unwrap(),
        "--database",
        db,
        "--server",
        server,
    ]);
    assert!(out.status.success(), "import failed: {}", output_text(&out));
    output_text(&out)
}

/// One RCPT request from sender@example.net; the action word and text.
fn ask(port: u16) -> String {
    ask_blocking(
        port,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.net\nrecipient=bob@example.com\ninstance=i1",
    )
}

/// `sluice serve` on `db` with `extra` arguments: the process, its policy and metrics ports.
fn serve(db: &str, extra: &[&str]) -> (Process, u16, u16) {
    let mut args = vec!["--database", db];
    args.extend_from_slice(extra);
    let r = start_front(BIN, "sluice serve", "serve", &args);
    (r.process, r.port, r.metrics)
}

#[test]
fn sighup_never_stops_serve_and_reports_configuration_changes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import(dir.path(), &refusing("example.net"), &db, "off");
    let config = dir.path().join("serve.toml");
    std::fs::write(&config, "monitor = false\n").unwrap();
    let (mut server, port, _) = serve(&db, &["--config", config.to_str().unwrap()]);
    assert!(ask(port).starts_with("554 5.7.1 blocked"));

    for _ in 0..3 {
        server.signal("HUP");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.wait_for_log("SIGHUP: configuration unchanged",
        Duration::from_secs(10),
    );
    assert!(
        server.running(),
        "SIGHUP stopped the server:\n{}",
        server.log()
    );
    assert!(
        ask(port).starts_with("554 5.7.1 blocked"),
        "still serving after SIGHUP"
    );

    // A changed file is read, and the change reported as pending a restart.
    std::fs::write(&config, "monitor = true\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("takes effect at the next restart",
        Duration::from_secs(10),
    );
    server.wait_for_log("monitor = true", Duration::from_secs(10));
    // A broken file is reported; the running configuration stays.
    std::fs::write(&config, "monitor = \"perhaps\"\n").unwrap();
    server.signal("HUP");
    server.wait_for_log("the running configuration stays",
        Duration::from_secs(10),
    );
    assert!(server.running());
    assert!(ask(port).starts_with("554 5.7.1 blocked"));

    // SIGTERM still stops it cleanly.
    let status = server.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", server.log());
}

#[test]
fn sighup_never_stops_the_quota_service() {
    let redis = RedisServer::start();
    let started = start_quota(BIN, &redis.url());
    let (mut quota, grpc) = (started.process, started.port);
    quota.signal("HUP");
    quota.wait_for_log("SIGHUP: configuration unchanged",
        Duration::from_secs(10),
    );
    assert!(quota.running(), "{}", quota.log());
    wait_listening(grpc, Duration::from_secs(5), "quota service after SIGHUP");
    let status = quota.terminate(Duration::from_secs(20));
    assert!(status.success(), "{status}: {}", quota.log());
}

#[test]
fn a_replaced_database_file_is_picked_up_and_import_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.db");
    let db = format!("sqlite://{}", path.display());
    import(dir.path(), &refusing("example.net"), &db, "off");
    let (server, port, metrics) = serve(&db, &[]);
    assert!(ask(port).starts_with("554 5.7.1 blocked"));

    // The operator deletes the database and imports again at the same path. The new file's
    // version number may well equal the old one's.
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    server.wait_for_log("policy database file was deleted",
        Duration::from_secs(10),
    );
    assert!(
        ask(port).starts_with("554 5.7.1 blocked"),
        "the last policies stay"
    );
    let said = import(
        dir.path(),
        &refusing("example.invalid"),
        &db,
        &format!("127.0.0.1:{metrics}"),
    );
    assert!(
        said.contains(&format!(
            "The server at 127.0.0.1:{metrics} now serves version"
        )),
        "{said}"
    );
    assert_eq!(ask(port), "DUNNO", "{}", server.log());
    server.wait_for_log("file was replaced", Duration::from_secs(10));
}

#[test]
fn import_says_when_no_server_answers() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let nobody = free_port();
    let said = import(
        dir.path(),
        &refusing("example.net"),
        &db,
        &format!("127.0.0.1:{nobody}"),
    );
    assert!(
        said.contains(&format!(
            "No server answered at http://127.0.0.1:{nobody}/metrics"
        )),
        "{said}"
    );
    assert!(!said.contains("now serves"), "{said}");
}
