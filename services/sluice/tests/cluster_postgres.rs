//! Policies in PostgreSQL, in cluster mode: a change made with `sluice policy import` or
//! directly in SQL is enforced by every edge within 1 s, and edges keep serving the last
//! policy set while PostgreSQL is down (a private server, stopped and started by the test),
//! picking up changes once it is back.

mod cluster_support;

use cluster_support::*;
use sluice_test_support::policies::gate_and_sender_quota;
use sluice_test_support::{rcpt, PrivatePostgres, Request};
use std::time::{Duration, Instant};

const BLOCKED: &str = "192.0.2.1";
const OTHER: &str = "198.51.100.5";

fn probe(ip: &str, n: &mut u32) -> Request {
    *n += 1;
    rcpt("pg@example.org", "r@example.net", ip, &format!("p{n}"))
}

/// Polls every edge (every 10 ms) until each answers `expected`; returns when the last one
/// did, measured from `since`. Panics after `limit`.
fn enforced_by_all(
    cluster: &Cluster,
    since: Instant,
    ip: &str,
    expected: &str,
    limit: Duration,
    n: &mut u32,
) -> Duration {
    let mut pending: Vec<u16> = cluster.edge_ports.clone();
    let mut last = String::new();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for &port in &pending {
            last = ask(port, &probe(ip, n));
            if last != expected {
                still.push(port);
            }
        }
        pending = still;
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
fn policy_changes_reach_every_edge_within_one_second() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked v1", 1000));
    let cluster = Cluster::start(&db.url, Spec::default());
    let mut n = 0;
    let second = Duration::from_secs(1);
    for &port in &cluster.edge_ports {
        assert_eq!(ask(port, &probe(BLOCKED, &mut n)), "REJECT blocked v1");
        assert_eq!(ask(port, &probe(OTHER, &mut n)), "DUNNO");
    }

    // Through the CLI.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v2.toml");
    std::fs::write(&file, gate_and_sender_quota("blocked v2", 1000)).unwrap();
    let out = sluice(&[
        "policy",
        "import",
        file.to_str().unwrap(),
        "--database",
        &db.url,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let t_import = enforced_by_all(
        &cluster,
        Instant::now(),
        BLOCKED,
        "REJECT blocked v2",
        second,
        &mut n,
    );

    // Directly in SQL: a quota limit lowered to nothing...
    psql(&db.url, "UPDATE policy_quota_limit SET counter_limit = 0");
    let t_limit = enforced_by_all(
        &cluster,
        Instant::now(),
        OTHER,
        "REJECT sender quota exceeded",
        second,
        &mut n,
    );
    // ...and a policy disabled.
    psql(
        &db.url,
        "UPDATE policy SET disabled = TRUE WHERE name = 'gate'",
    );
    let t_disable = enforced_by_all(
        &cluster,
        Instant::now(),
        BLOCKED,
        "REJECT sender quota exceeded",
        second,
        &mut n,
    );
    eprintln!("enforced by all edges after: import {t_import:?}, SQL limit {t_limit:?}, SQL disable {t_disable:?}");
}

#[test]
fn edges_serve_the_last_policies_while_postgresql_is_down() {
    let _serial = serial();
    let mut pg = PrivatePostgres::start();
    pg.psql("postgres", "CREATE DATABASE sluice");
    let url = pg.url("sluice");
    migrate(&url);
    import(&url, &gate_and_sender_quota("blocked v1", 1000));
    let spec = Spec {
        request_deadline_ms: 1000,
        quota_deadline_ms: 500,
        redis_timeout_ms: 250,
        ..Spec::default()
    };
    let deadline = Duration::from_millis(spec.request_deadline_ms);
    let cluster = Cluster::start(&url, spec);
    let mut n = 0;
    for &port in &cluster.edge_ports {
        assert_eq!(ask(port, &probe(BLOCKED, &mut n)), "REJECT blocked v1");
    }

    pg.stop();
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "PostgreSQL is down"
    );
    // Several reload polls fail meanwhile; the edges keep answering, on time, with the
    // policies they had.
    let down = Instant::now();
    while down.elapsed() < Duration::from_secs(3) {
        for &port in &cluster.edge_ports {
            for (ip, expected) in [(BLOCKED, "REJECT blocked v1"), (OTHER, "DUNNO")] {
                let sent = Instant::now();
                let a = ask(port, &probe(ip, &mut n));
                let took = sent.elapsed();
                assert_eq!(a, expected, "while PostgreSQL is down\n{}", cluster.logs());
                assert!(
                    took < deadline,
                    "answer took {took:?} while PostgreSQL is down"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    pg.start_server();
    import(&url, &gate_and_sender_quota("blocked v2", 1000));
    let picked_up = enforced_by_all(
        &cluster,
        Instant::now(),
        BLOCKED,
        "REJECT blocked v2",
        Duration::from_secs(15),
        &mut n,
    );
    eprintln!(
        "after PostgreSQL came back, a new import was enforced by all edges in {picked_up:?}"
    );
    drop(cluster);
    pg.stop();
}
