//! A real `sluice serve` process against hostile clients (issue 12, items 3 and 6): an HTTP
//! flood on the metrics port must not take the policy port down, `POST /explain` is off
//! unless enabled, and request text cannot forge fields of the verdict log.

use sluice_test_support::{free_port, policies, Process};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Imports a policy rejecting a sender's second message.
fn import_one_per_sender(dir: &Path, db: &str) {
    let file = dir.join("policies.toml");
    std::fs::write(&file, policies::sender_quota("Limits", "per sender", 1)).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "import", file.to_str().unwrap(), "--database", db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `sluice serve` with a descriptor limit of `nofile` (soft and hard, so the process cannot
/// raise it), policies from `db`, and `extra` flags. Returns it with its policy and metrics
/// ports.
fn serve(db: &str, nofile: u32, extra: &[&str]) -> (Process, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let mut args = vec![
        "-c".to_string(),
        format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
        BIN.to_string(),
        "serve".into(),
        "--database".into(),
        db.into(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let p = Process::start_with_env(
        "sluice serve",
        "/bin/sh",
        &args,
        &[("SLUICE_LOG_FORMAT", "plain"), ("SLUICE_LOG", "info")],
        Some(port),
    );
    (p, port, metrics)
}

/// Sends one RCPT request with `helo` on a new connection (each of a new message); the
/// action.
fn ask(port: u16, sender: &str, helo: &str) -> String {
    static MESSAGES: AtomicUsize = AtomicUsize::new(0);
    let instance = MESSAGES.fetch_add(1, Ordering::Relaxed);
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("policy port accepts");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nhelo_name={helo}\nsender={sender}\nrecipient=bob@example.com\ninstance=i-{instance}\n\n"
    )
    .unwrap();
    let mut reply = String::new();
    let mut r = BufReader::new(s);
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("a reply in time");
        assert!(
            n > 0,
            "the policy port closed the connection without a reply"
        );
        if line == "\n" {
            break;
        }
        reply.push_str(&line);
    }
    reply.trim().trim_start_matches("action=").to_string()
}

/// `method path` with `body` on the metrics port: (status, body).
fn http(port: u16, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics listener");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_thousand_idle_http_connections_do_not_take_the_policy_port_down() {
    let got = rlimit::increase_nofile_limit(8_000).unwrap();
    assert!(
        got >= 4_000,
        "this test needs 4000 descriptors, the hard limit is {got}"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import_one_per_sender(dir.path(), &db);
    // The incident's limit: 2048 descriptors, fewer than the HTTP connections.
    let (mut p, port, metrics) = serve(&db, 2048, &[]);
    assert_eq!(ask(port, "before@example.com", "mx.example.net"), "DUNNO");

    let addr: SocketAddr = ([127, 0, 0, 1], metrics).into();
    let mut connects = tokio::task::JoinSet::new();
    for _ in 0..3_000 {
        connects.spawn(async move {
            // Beyond the listen backlog the kernel stops completing handshakes: those
            // attempts time out, which is the flood being held off, not a failure.
            tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect(addr))
                .await
                .ok()
                .and_then(Result::ok)
        });
    }
    let mut held = Vec::new();
    while let Some(c) = connects.join_next().await {
        held.extend(c.unwrap());
    }
    println!("{} of 3000 HTTP connections opened", held.len());
    assert!(held.len() > 64, "the flood did not get going");

    // The policy port still accepts and answers, on new connections, many times over.
    for i in 0..20 {
        let since = Instant::now();
        assert_eq!(
            tokio::task::spawn_blocking(move || ask(port, &format!("s{i}@example.com"), "mx"))
                .await
                .unwrap(),
            "DUNNO"
        );
        assert!(
            since.elapsed() < Duration::from_secs(2),
            "policy request {i} took {:?} during the HTTP flood",
            since.elapsed()
        );
    }
    assert!(p.running(), "the process died; log:\n{}", p.log());
    let log = p.log();
    assert!(
        !log.contains("Too many open files"),
        "descriptors ran out:\n{log}"
    );

    // The flood leaves: the metrics port serves again.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = tokio::task::spawn_blocking(move || {
            std::panic::catch_unwind(|| http(metrics, "GET", "/healthz", "")).ok()
        })
        .await
        .unwrap();
        if let Some((200, body)) = ok {
            assert_eq!(body, "ok\n");
            break;
        }
        assert!(Instant::now() < deadline, "/healthz never came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn explain_over_http_is_off_unless_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import_one_per_sender(dir.path(), &db);
    let body = "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=a@example.com\n";
    let (_off, _, metrics) = serve(&db, 4096, &[]);
    let (status, _) = http(metrics, "POST", "/explain", body);
    assert_eq!(status, 404, "explain is served without http_explain");
    assert_eq!(http(metrics, "GET", "/healthz", "").0, 200);
    let (_on, _, metrics) = serve(&db, 4096, &["--http-explain"]);
    let (status, text) = http(metrics, "POST", "/explain", body);
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("Limits"), "{text}");
}

/// Splits a verdict line into its `name=value` fields: `, ` separates fields except inside
/// double quotes (where `\` escapes the next character).
fn fields(line: &str) -> Vec<String> {
    let (mut out, mut field) = (Vec::new(), String::new());
    let (mut quoted, mut escaped) = (false, false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        field.push(c);
        if escaped {
            escaped = false;
        } else if quoted && c == '\\' {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if !quoted && c == ',' && chars.peek() == Some(&' ') {
            chars.next();
            field.pop();
            out.push(std::mem::take(&mut field));
        }
    }
    out.push(field);
    out
}

#[test]
fn a_forged_helo_stays_one_field_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import_one_per_sender(dir.path(), &db);
    let (p, port, _) = serve(&db, 4096, &[]);
    let forged = "evil, action=OK, policy=Forged";
    assert_eq!(ask(port, "mallory@example.com", forged), "DUNNO");
    assert_eq!(
        ask(port, "mallory@example.com", forged),
        "REJECT Sender quota exceeded"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let line = loop {
        let log = p.log();
        if let Some(l) = log.lines().find(|l| l.contains("module=Quotas")) {
            break l.to_string();
        }
        assert!(Instant::now() < deadline, "no verdict line in:\n{log}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let verdict = &line[line.find("module=").unwrap()..];
    let fields = fields(verdict);
    let named = |name: &str| -> Vec<&String> {
        fields
            .iter()
            .filter(|f| f.split_once('=').map(|(n, _)| n) == Some(name))
            .collect()
    };
    assert_eq!(
        named("helo"),
        [&format!("helo=\"{forged}\"")],
        "the HELO is one quoted field: {line}"
    );
    assert_eq!(named("action"), [&"action=reject".to_string()], "{line}");
    assert_eq!(named("policy"), [&"policy=Limits".to_string()], "{line}");
    assert_eq!(
        named("quota"),
        [&"quota=\"per sender\"".to_string()],
        "{line}"
    );
}

#[test]
fn a_client_over_its_connection_cap_loses_its_oldest_idle_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import_one_per_sender(dir.path(), &db);
    let (_p, port, metrics) = serve(&db, 4096, &["--max-connections-per-client", "2"]);
    let mut oldest = TcpStream::connect(("127.0.0.1", port)).unwrap();
    oldest
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let _second = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // A third connection from the same address: the oldest idle one is closed, the new one
    // is served.
    assert_eq!(ask(port, "new@example.com", "mx"), "DUNNO");
    let mut byte = [0u8; 1];
    assert_eq!(
        oldest.read(&mut byte).expect("closed, not timed out"),
        0,
        "the oldest idle connection was closed"
    );
    let (_, scrape) = http(metrics, "GET", "/metrics", "");
    assert!(
        scrape.contains("sluice_connections_shed_total{reason=\"max_connections_per_client\"} 1"),
        "{scrape}"
    );
}
