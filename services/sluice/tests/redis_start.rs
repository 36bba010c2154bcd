//! How `sluice quota` meets Redis: started before Redis it stays up and not ready, then
//! serves verdicts end to end once Redis answers, without a restart; Redis over TLS with
//! a client certificate and an ACL user through the binary; settings that can never work
//! refused at once (exit code 64). Real processes, real Redis, real TCP.

use sluice_test_support::policies::sender_quota;
use sluice_test_support::{
    ask_blocking, http_get, import_policies, output_text, start_front, start_quota, AclUser,
    Process, RedisOptions, RedisServer, RedisTlsFiles, RoleProcess, TestPki,
};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const FALLBACK: &str = "DEFER_IF_PERMIT 4.3.0 redis start fallback";

/// One RCPT of a new message from `sender`; the action.
fn ask(port: u16, sender: &str) -> String {
    static MESSAGE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = MESSAGE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ask_blocking(
        port,
        &format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender={sender}\nrecipient=bob@example.com\ninstance=m{n}"
        ),
    )
}

/// An edge on a SQLite policy database in `dir` (3 messages per sender per hour) using
/// the quota service on `grpc`.
fn edge(dir: &std::path::Path, grpc: u16) -> RoleProcess {
    let db = format!("sqlite://{}", dir.join("policies.db").display());
    import_policies(BIN, dir, &sender_quota("senders", "per-sender", 3), &db);
    start_front(
        BIN,
        "sluice edge",
        "edge",
        &[
            "--database",
            &db,
            "--quota",
            &format!("http://127.0.0.1:{grpc}"),
            "--fallback-action",
            FALLBACK,
        ],
    )
}

/// The quota service's and the edge's logs, for failure messages.
fn logs(quota: &Process, edge: &Process) -> String {
    format!("--- quota\n{}\n--- edge\n{}", quota.log(), edge.log())
}

/// `sluice_quota_backend_up` (the gRPC health: 1 SERVING, 0 NOT_SERVING) from /metrics.
fn backend_up(metrics: u16) -> Option<f64> {
    let (_, body) = http_get(metrics, "/metrics");
    body.lines()
        .find(|l| l.starts_with("sluice_quota_backend_up "))
        .and_then(|l| l.split(' ').nth(1)?.parse().ok())
}

/// Polls `f` until it is true; panics with `what` and `log` after `limit`.
fn wait_until(limit: Duration, what: &str, log: impl Fn() -> String, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "{what}\n{}", log());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Three senders' worth of verdicts: the quota (3 per sender) admits three, refuses the
/// fourth; so the counters are really in Redis, not a fallback.
fn assert_quota_enforced(port: u16, sender: &str, log: impl Fn() -> String) {
    for i in 1..=3 {
        let a = ask(port, sender);
        assert!(
            !a.contains("REJECT") && !a.contains(FALLBACK),
            "take {i}: {a}\n{}",
            log()
        );
    }
    let a = ask(port, sender);
    assert!(
        a.contains("REJECT"),
        "the 4th message is over the quota: {a}\n{}",
        log()
    );
}

#[test]
fn a_quota_service_started_before_redis_waits_and_then_serves_without_a_restart() {
    // Redis's port, free for now: it starts 10 s after the quota service.
    let mut redis = RedisServer::start();
    let url = redis.url();
    redis.stop();

    let mut quota = start_quota(BIN, &url);
    let dir = tempfile::tempdir().unwrap();
    let front = edge(dir.path(), quota.port);

    // Up and listening, not ready: /readyz says so, the gRPC health is NOT_SERVING, and
    // the edge answers its fallback action.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        let running = quota.process.running();
        let logs = || logs(&quota.process, &front.process);
        assert!(running, "the quota service exited\n{}", logs());
        let (status, body) = http_get(quota.metrics, "/readyz");
        assert_eq!(status, 503, "{body}\n{}", logs());
        assert_eq!(backend_up(quota.metrics), Some(0.0), "{}", logs());
        assert_eq!(ask(front.port, "early@example.net"), FALLBACK);
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs = || logs(&quota.process, &front.process);
    // Each failed attempt is not logged: the same failure at most every 30 s.
    let complaints = quota
        .process
        .log()
        .matches("Redis does not answer yet")
        .count();
    assert!(
        (1..=2).contains(&complaints),
        "{complaints} warnings\n{}",
        logs()
    );

    redis.restart();
    wait_until(Duration::from_secs(30), "quota never ready", logs, || {
        http_get(quota.metrics, "/readyz").0 == 200
    });
    quota
        .process
        .wait_for_log("Connected to Redis", Duration::from_secs(10));
    wait_until(
        Duration::from_secs(30),
        "health never SERVING",
        logs,
        || backend_up(quota.metrics) == Some(1.0),
    );
    // The edge finds the endpoint up again by itself and verdicts come from Redis.
    wait_until(
        Duration::from_secs(30),
        "edge still on fallback",
        logs,
        || !ask(front.port, "probe@example.net").contains(FALLBACK),
    );
    assert_quota_enforced(front.port, "late@example.net", logs);
    assert!(quota.process.running());
}

#[test]
fn the_quota_service_reaches_a_tls_redis_with_a_client_certificate_as_an_acl_user() {
    let pki = TestPki::new("Redis test CA");
    let client = pki.client("sluice");
    let options = RedisOptions {
        password: None,
        acl_user: Some(AclUser {
            name: "sluice".into(),
            password: "acl-pw".into(),
            rules: std::iter::once("~sluice:*".to_string())
                .chain(sluice_redis::REDIS_COMMANDS.iter().map(|c| format!("+{c}")))
                .collect(),
        }),
        tls: Some(RedisTlsFiles {
            ca_file: pki.ca_file().to_path_buf(),
            server: pki.server("redis", &["redis.internal"]),
            client: client.clone(),
            auth_clients: true,
        }),
    };
    let redis = RedisServer::start_with(&options);
    let url = redis.url_as("sluice", "acl-pw");
    let grpc = sluice_test_support::free_port();
    let metrics = sluice_test_support::free_port();
    let ca = pki.ca_file().display().to_string();
    let (cert, key) = (
        client.cert.display().to_string(),
        client.key.display().to_string(),
    );
    let quota = Process::start(
        "sluice quota",
        BIN,
        &[
            "quota".to_string(),
            "--redis".into(),
            url.clone(),
            "--grpc-listen".into(),
            format!("127.0.0.1:{grpc}"),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics}"),
            "--redis-tls-ca-file".into(),
            ca.clone(),
            "--redis-tls-cert-file".into(),
            cert.clone(),
            "--redis-tls-key-file".into(),
            key.clone(),
            "--redis-tls-server-name".into(),
            "redis.internal".into(),
        ],
        Some(grpc),
    );
    let dir = tempfile::tempdir().unwrap();
    let front = edge(dir.path(), grpc);
    let logs = || logs(&quota, &front.process);
    wait_until(Duration::from_secs(30), "quota never ready", logs, || {
        http_get(metrics, "/readyz").0 == 200
    });
    wait_until(
        Duration::from_secs(30),
        "edge still on fallback",
        logs,
        || !ask(front.port, "probe@example.net").contains(FALLBACK),
    );
    assert_quota_enforced(front.port, "tls@example.net", logs);
    assert!(!quota.log().contains("acl-pw"), "no password in the log");

    // --check-config reads the TLS files: a missing one is refused, exit code 64.
    let check = |extra: &[&str]| {
        let out = Command::new(BIN)
            .args([
                "quota",
                "--check-config",
                "--redis",
                &url,
                "--grpc-listen",
                "127.0.0.1:1",
            ])
            .args(extra)
            .env_remove("SLUICE_CONFIG")
            .output()
            .unwrap();
        (out.status.code(), output_text(&out))
    };
    let (code, text) = check(&["--redis-tls-ca-file", &ca]);
    assert_eq!(code, Some(0), "{text}");
    assert!(!text.contains("acl-pw"), "{text}");
    let (code, text) = check(&["--redis-tls-ca-file", "/nonexistent/ca.pem"]);
    assert_eq!(code, Some(64), "{text}");
    assert!(text.contains("/nonexistent/ca.pem"), "{text}");
    let (code, text) = check(&["--redis-tls-cert-file", &cert]);
    assert_eq!(code, Some(64), "a certificate without its key: {text}");
    assert!(text.contains("redis_tls_key_file"), "{text}");
    // TLS settings with plain redis:// URLs are a mistake too.
    let plain = url.replace("rediss://", "redis://");
    let out = Command::new(BIN)
        .args([
            "quota",
            "--check-config",
            "--redis",
            &plain,
            "--redis-tls-ca-file",
            &ca,
        ])
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("rediss://"),
        "{}",
        output_text(&out)
    );
    // And so is a URL that cannot be parsed, without a password in the message.
    let out = Command::new(BIN)
        .args([
            "quota",
            "--check-config",
            "--redis",
            "redis://u:pw-secret@host:notaport",
        ])
        .env_remove("SLUICE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains("pw-secret"),
        "{}",
        output_text(&out)
    );
}
