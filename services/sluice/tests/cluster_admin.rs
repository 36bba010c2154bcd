//! The `sluice admin` role in a cluster (PostgreSQL + Redis Cluster + a quota service + two
//! edges, real processes): changes made through its REST API reach both edges within a
//! second (an access-control verdict changed; a quota switched off and on again, its
//! counters shared by the edges), each is in the audit trail, `/readyz` says the database
//! answers, SIGHUP does not stop it and SIGTERM does (exit 0), no token is in its log, and
//! the role refuses a database without the schema (exit code 64).

mod admin_support;
mod cluster_support;

use cluster_support::*;
use serde_json::json;
use sluice_test_support::policies::gate_and_sender_quota;
use sluice_test_support::{free_port, http_get, rcpt, Process, Request};
use std::io::Write;
use std::time::{Duration, Instant};

/// A running `sluice admin` role: (process, admin port, metrics port).
fn start_admin_role(db: &str) -> (Process, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let args: Vec<String> = [
        "admin",
        "--database",
        db,
        "--admin-listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let process = Process::start("sluice admin", BIN, &args, Some(port));
    (process, port, metrics)
}

/// Polls every edge until each answers `expected` for the request `probe` makes; returns
/// the time from `since`. Panics after `limit`.
fn until_all_answer(
    cluster: &Cluster,
    since: Instant,
    expected: &str,
    limit: Duration,
    mut probe: impl FnMut() -> Request,
) -> Duration {
    let mut pending = cluster.edge_ports.clone();
    let mut last = String::new();
    while !pending.is_empty() {
        pending.retain(|&port| {
            last = ask(port, &probe());
            last != expected
        });
        if pending.is_empty() {
            break;
        }
        assert!(
            since.elapsed() < limit,
            "edges {pending:?} still answer {last:?} instead of {expected:?} after {:?}\n{}",
            since.elapsed(),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    since.elapsed()
}

#[test]
fn changes_made_through_the_admin_role_reach_both_edges_within_a_second() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked v1", 2));
    let token = admin_support::admin_with_token(&db.url);
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 2,
            quotas: 1,
            ..Spec::default()
        },
    );
    let (mut admin, port, metrics) = start_admin_role(&db.url);
    // Ready once the database answers (it listens before).
    let start = Instant::now();
    loop {
        let (status, body) = http_get(metrics, "/readyz");
        if status == 200 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not ready after 20 s: {status} {body}\n{}",
            admin.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut n = 0;
    let mut gate = || {
        n += 1;
        rcpt(
            "g@example.org",
            "r@example.net",
            "192.0.2.1",
            &format!("g{n}"),
        )
    };
    for &edge in &cluster.edge_ports {
        assert_eq!(ask(edge, &gate()), "REJECT blocked v1");
    }
    let second = Duration::from_secs(1);

    // An access-control verdict changed through the API.
    admin_api(
        port,
        "PUT",
        "/api/policies/gate/access-control/block",
        &token,
        Some(json!({"name": "block", "verdict": "REJECT", "data": "blocked by the admin role"})),
    );
    let took = until_all_answer(
        &cluster,
        Instant::now(),
        "REJECT blocked by the admin role",
        Duration::from_secs(10),
        &mut gate,
    );
    assert!(
        took <= second,
        "the change took {took:?} to reach both edges"
    );
    eprintln!("the change: both edges after {took:?}");

    // A quota over its limit, switched off and on through the API; its counter is the
    // edges' shared one (in Redis, behind the quota service).
    let mut m = 0;
    let mut sender = || {
        m += 1;
        rcpt(
            "busy@example.org",
            "r@example.net",
            "198.51.100.5",
            &format!("s{m}"),
        )
    };
    let edges = &cluster.edge_ports;
    assert_eq!(ask(edges[0], &sender()), "DUNNO");
    assert_eq!(ask(edges[1], &sender()), "DUNNO");
    for &edge in edges {
        assert_eq!(ask(edge, &sender()), "REJECT sender quota exceeded");
    }
    admin_api(
        port,
        "POST",
        "/api/policies/senders/quotas/per-sender/disable",
        &token,
        Some(json!({})),
    );
    let took = until_all_answer(
        &cluster,
        Instant::now(),
        "DUNNO",
        Duration::from_secs(10),
        &mut sender,
    );
    assert!(
        took <= second,
        "disabling took {took:?} to reach both edges"
    );
    eprintln!("disabling: both edges after {took:?}");
    admin_api(
        port,
        "POST",
        "/api/policies/senders/quotas/per-sender/enable",
        &token,
        Some(json!({})),
    );
    let took = until_all_answer(
        &cluster,
        Instant::now(),
        "REJECT sender quota exceeded",
        Duration::from_secs(10),
        &mut sender,
    );
    assert!(took <= second, "enabling took {took:?} to reach both edges");
    eprintln!("enabling: both edges after {took:?}");

    // Each change is in the audit trail, as made by alice from 127.0.0.1.
    let audit = admin_api(port, "GET", "/api/audit?limit=10", &token, None);
    let entries = audit.as_array().cloned().unwrap_or_default();
    let actions: Vec<String> = entries
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap_or(""),
                e["object"].as_str().unwrap_or("")
            )
        })
        .collect();
    for expected in [
        "update policies/gate/access-control/block",
        "disable policies/senders/quotas/per-sender",
        "enable policies/senders/quotas/per-sender",
    ] {
        assert!(
            actions.iter().any(|a| a == expected),
            "{expected} in {actions:?}\n{audit}"
        );
    }
    assert!(
        entries
            .iter()
            .all(|e| e["actor"] == "alice" && e["client"] == "127.0.0.1"),
        "{audit}"
    );
    assert!(!admin.log().contains(&token), "the token is in the log");

    // SIGHUP never stops it; SIGTERM does, cleanly.
    admin.signal("HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(http_get(metrics, "/readyz").0, 200, "{}", admin.log());
    admin.wait_for_log("SIGHUP", Duration::from_secs(10));
    let status = admin.terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", admin.log());
}

#[test]
fn the_admin_role_refuses_a_database_without_the_schema() {
    let _serial = serial();
    let db = PgDb::create_empty();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let out = sluice(&[
        "admin",
        "--database",
        &db.url,
        "--admin-listen",
        &listen,
        "--metrics-listen",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("run `sluice migrate`"),
        "{}",
        text(&out)
    );
}

/// One HTTPS/1.1 GET of `path` on 127.0.0.1:`port`, trusting the CA in `ca_file`; the reply.
fn https_get(port: u16, ca_file: &std::path::Path, path: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    use std::io::Read;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reply = Vec::new();
    let _ = tls.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn the_admin_role_serves_https_with_its_certificate_and_secure_cookies() {
    let _serial = serial();
    let db = PgDb::create();
    let pki = sluice_test_support::TestPki::new("admin role test CA");
    let files = pki.server("admin", &["127.0.0.1"]);
    let (port, metrics) = (free_port(), free_port());
    let args: Vec<String> = [
        "admin",
        "--database",
        &db.url,
        "--admin-listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
        "--admin-tls-cert-file",
        files.cert.to_str().unwrap(),
        "--admin-tls-key-file",
        files.key.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let admin = Process::start("sluice admin (TLS)", BIN, &args, Some(port));
    let start = Instant::now();
    while http_get(metrics, "/readyz").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", admin.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let reply = https_get(port, pki.ca_file(), "/login");
    assert!(
        reply.starts_with("HTTP/1.1 200"),
        "{reply}\n{}",
        admin.log()
    );
    let cookie = reply
        .lines()
        .find(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie: sluice_login=")
        })
        .unwrap_or_else(|| panic!("no login cookie: {reply}"));
    assert!(cookie.contains("; Secure"), "{cookie}");
    admin.wait_for_log("tls=true", Duration::from_secs(10));
}

/// `GET path` with the token until `done` accepts the JSON answer; panics after 20 s.
fn api_until(
    port: u16,
    path: &str,
    token: &str,
    log: impl Fn() -> String,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let start = Instant::now();
    loop {
        let answer = admin_api(port, "GET", path, token, None);
        if done(&answer) {
            return answer;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "GET {path}: still {answer}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_with_redis_cluster_lists_resets_and_looks_up_live_counters() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked v1", 2));
    let token = admin_support::admin_with_token(&db.url);
    let redis = sluice_test_support::RedisCluster::start(3, 1);
    let (port, admin, metrics) = (free_port(), free_port(), free_port());
    let args: Vec<String> = [
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--database",
        &db.url,
        "--redis",
        &redis.urls().join(","),
        "--redis-timeout-ms",
        "2000",
        "--redis-wait-timeout-ms",
        "1000",
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let serve = Process::start("sluice serve --redis", BIN, &args, Some(port));
    let start = Instant::now();
    while http_get(metrics, "/readyz").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", serve.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut m = 0;
    let mut sender = |who: &str| {
        m += 1;
        rcpt(who, "r@example.net", "198.51.100.5", &format!("s{m}"))
    };
    let busy = "busy@example.org";
    assert_eq!(ask(port, &sender(busy)), "DUNNO");
    assert_eq!(ask(port, &sender(busy)), "DUNNO");
    assert_eq!(ask(port, &sender(busy)), "REJECT sender quota exceeded");
    assert_eq!(ask(port, &sender("quiet@example.org")), "DUNNO");

    // Looked up: the level and the limit, read from Redis.
    let found = admin_api(
        admin,
        "GET",
        &format!("/api/counters?sender={busy}"),
        &token,
        None,
    );
    let rows = found.as_array().cloned().unwrap_or_default();
    let row = rows
        .iter()
        .find(|r| r["track"].as_str().is_some_and(|t| t.contains(busy)))
        .unwrap_or_else(|| panic!("no counter of {busy}: {found}\n{}", serve.log()));
    assert_eq!(
        (&row["used"], &row["limit"]),
        (&json!(2), &json!(2)),
        "{row}"
    );
    let key = row["key"].as_str().unwrap().to_owned();

    // Limited now (the index is written off the reply path: polled) and close to a limit.
    let limited = api_until(
        admin,
        "/api/counters/limited?minutes=5",
        &token,
        || serve.log(),
        |a| {
            a.as_array()
                .is_some_and(|rows| rows.iter().any(|r| r["key"] == key))
        },
    );
    let rows = limited.as_array().unwrap();
    assert_eq!(rows.len(), 1, "only the refused sender: {limited}");
    assert!(rows[0]["refused_at_ms"].as_u64().is_some(), "{limited}");
    let close = admin_api(admin, "GET", "/api/counters/close", &token, None);
    assert!(
        close
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["key"] == key)),
        "{close}"
    );

    // Reset: audited, gone from the listing, and the next request is admitted.
    let done = admin_api(
        admin,
        "POST",
        "/api/counters/reset",
        &token,
        Some(json!({ "key": key })),
    );
    assert_eq!(done["used_before"], 2, "{done}");
    let limited = admin_api(
        admin,
        "GET",
        "/api/counters/limited?minutes=5",
        &token,
        None,
    );
    assert_eq!(limited, json!([]), "{limited}");
    assert_eq!(ask(port, &sender(busy)), "DUNNO");
    let audit = admin_api(admin, "GET", "/api/audit?limit=5", &token, None);
    assert!(
        audit.as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["action"] == "reset" && e["object"] == format!("counters/{key}"))),
        "{audit}"
    );
}

#[test]
fn the_admin_role_reads_and_resets_live_counters_through_the_quota_service() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked v1", 2));
    let token = admin_support::admin_with_token(&db.url);
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 2,
            quotas: 1,
            ..Spec::default()
        },
    );
    let (admin, port) = cluster_support::start_admin_role(&db.url, &cluster, &[]);
    let logs = || format!("{}\n{}", admin.log(), cluster.logs());

    // Refused on edge A (through the quota service, which indexes the refusal).
    let mut m = 0;
    let busy = "busy@example.org";
    let mut sender = || {
        m += 1;
        rcpt(busy, "r@example.net", "198.51.100.5", &format!("s{m}"))
    };
    let (a, b) = (cluster.edge_ports[0], cluster.edge_ports[1]);
    assert_eq!(ask(a, &sender()), "DUNNO");
    assert_eq!(ask(a, &sender()), "DUNNO");
    assert_eq!(ask(a, &sender()), "REJECT sender quota exceeded");
    assert_eq!(ask(b, &sender()), "REJECT sender quota exceeded");

    let found = admin_api(
        port,
        "GET",
        &format!("/api/counters?sender={busy}"),
        &token,
        None,
    );
    let row = found
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["track"].as_str().is_some_and(|t| t.contains(busy)))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no counter of {busy}: {found}\n{}", logs()));
    assert_eq!(
        (&row["used"], &row["limit"]),
        (&json!(2), &json!(2)),
        "{row}"
    );
    let key = row["key"].as_str().unwrap().to_owned();
    let limited = api_until(port, "/api/counters/limited?minutes=5", &token, logs, |a| {
        a.as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["key"] == key))
    });
    assert_eq!(limited.as_array().unwrap().len(), 1, "{limited}");

    // Reset through the API: the counter is empty, off the listing, and both edges admit
    // again (each forgets what it holds of the counter within a second: polled, never
    // charging; cluster_admin_resets.rs holds them to the second).
    let done = admin_api(
        port,
        "POST",
        "/api/counters/reset",
        &token,
        Some(json!({ "key": key })),
    );
    assert_eq!(done["used_before"], 2, "{done}");
    let limited = admin_api(port, "GET", "/api/counters/limited?minutes=5", &token, None);
    assert_eq!(limited, json!([]), "{limited}");
    let reset_at = Instant::now();
    let mut admitted = Vec::new();
    for edge in [a, b] {
        loop {
            let answer = ask(edge, &sender());
            if answer == "DUNNO" {
                admitted.push(reset_at.elapsed());
                break;
            }
            assert_eq!(answer, "REJECT sender quota exceeded");
            assert!(
                reset_at.elapsed() < Duration::from_secs(7),
                "edge {edge} still refuses {:?} after the reset\n{}",
                reset_at.elapsed(),
                logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    eprintln!("after the reset: admitted on both edges after {admitted:?}");
    // The limit holds again from zero: both admissions counted, the next one refused.
    assert_eq!(ask(b, &sender()), "REJECT sender quota exceeded");
    let audit = admin_api(port, "GET", "/api/audit?limit=5", &token, None);
    assert!(
        audit.as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["action"] == "reset" && e["object"] == format!("counters/{key}"))),
        "{audit}"
    );
}
