//! A counter reset made through the `sluice admin` role reaches the edges (PostgreSQL +
//! Redis Cluster + a quota service + edges, real processes): an edge that refused a sender
//! (and remembers the refusal locally for up to 5 s) admits it again within a second of the
//! reset; an edge holding a lease of the counter forgets it (its next request is counted
//! from zero in Redis, not admitted from units charged before the reset); and the admin role
//! run with the edges' `buckets` reads their counters' levels right.

mod admin_support;
mod cluster_support;

use cluster_support::*;
use serde_json::json;
use sluice_test_support::policies::gate_and_sender_quota;
use sluice_test_support::rcpt;
use std::time::{Duration, Instant};

/// The counter of `sender` as the admin role looks it up.
fn lookup(port: u16, token: &str, sender: &str, logs: impl Fn() -> String) -> serde_json::Value {
    let found = admin_api(
        port,
        "GET",
        &format!("/api/counters?sender={sender}"),
        token,
        None,
    );
    found
        .as_array()
        .and_then(|rows| {
            rows.iter()
                .find(|r| r["track"].as_str().is_some_and(|t| t.contains(sender)))
                .cloned()
        })
        .unwrap_or_else(|| panic!("no counter of {sender}: {found}\n{}", logs()))
}

fn reset(port: u16, token: &str, key: &str) -> serde_json::Value {
    admin_api(
        port,
        "POST",
        "/api/counters/reset",
        token,
        Some(json!({ "key": key })),
    )
}

#[test]
fn a_reset_reaches_an_edge_that_remembers_the_refusal_within_a_second() {
    let _serial = serial();
    let db = PgDb::create();
    // Recipients, not messages: a message count is taken once per message, which the
    // memo never answers (only the quota service knows whether the message was counted).
    import(
        &db.url,
        &quota_policy(
            "senders",
            "Sender:user@domain",
            "RecipientCount",
            2,
            "REJECT",
            "sender quota exceeded",
        ),
    );
    let token = admin_support::admin_with_token(&db.url);
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 2,
            quotas: 1,
            ..Spec::default()
        },
    );
    let (admin, port) = start_admin_role(&db.url, &cluster, &[]);
    let logs = || format!("{}\n{}", admin.log(), cluster.logs());
    let mut m = 0;
    let busy = "busy@example.org";
    let mut sender = || {
        m += 1;
        rcpt(busy, "r@example.net", "198.51.100.5", &format!("s{m}"))
    };
    let (a, b) = (cluster.edge_ports[0], cluster.edge_ports[1]);
    assert_eq!(ask(b, &sender()), "DUNNO");
    assert_eq!(ask(b, &sender()), "DUNNO");
    let key = lookup(port, &token, busy, logs)["key"]
        .as_str()
        .unwrap()
        .to_owned();

    // Each round: edge A asks the quota service, is refused, and remembers the refusal for
    // 5 s (its over-limit memo: the following requests are refused locally, never charging);
    // edge B too, at the end of the round before. Then the admin role resets the counter,
    // and both edges must admit the sender again within a second. Two rounds: the edges
    // follow every reset, not only their first.
    for round in 0..2 {
        assert_eq!(ask(a, &sender()), "REJECT sender quota exceeded");
        assert_eq!(
            ask(a, &sender()),
            "REJECT sender quota exceeded",
            "answered from the memo"
        );
        let done = reset(port, &token, &key);
        assert_eq!(done["used_before"], 2, "{done}");
        let reset_at = Instant::now();
        for (name, edge) in [("A", a), ("B", b)] {
            loop {
                let answer = ask(edge, &sender());
                if answer == "DUNNO" {
                    break;
                }
                assert_eq!(answer, "REJECT sender quota exceeded");
                assert!(
                    reset_at.elapsed() < Duration::from_secs(1),
                    "round {round}: edge {name} still refuses {:?} after the reset\n{}",
                    reset_at.elapsed(),
                    logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            eprintln!(
                "round {round}: edge {name} admits {:?} after the reset",
                reset_at.elapsed()
            );
        }
        // Counted from zero again: one admitted on each edge, the limit (2) is reached.
        assert_eq!(ask(b, &sender()), "REJECT sender quota exceeded");
    }
    assert!(
        cluster
            .logs()
            .contains("forgot its local over-limit memo and lease"),
        "{}",
        cluster.logs()
    );
}

#[test]
fn a_reset_makes_an_edge_forget_its_lease_of_the_counter() {
    let _serial = serial();
    let db = PgDb::create();
    // Room for leases: at most 1/64 of the limit each.
    import(&db.url, &gate_and_sender_quota("blocked v1", 1000));
    let token = admin_support::admin_with_token(&db.url);
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 1,
            quotas: 1,
            ..Spec::default()
        },
    );
    let (admin, port) = start_admin_role(&db.url, &cluster, &[]);
    let logs = || format!("{}\n{}", admin.log(), cluster.logs());
    let edge = cluster.edge_ports[0];
    let mut m = 0;
    let busy = "leased@example.org";
    let mut sender = || {
        m += 1;
        rcpt(busy, "r@example.net", "198.51.100.5", &format!("l{m}"))
    };
    // The first message of a counter gets no lease; later ones do: Redis then holds more
    // than was admitted (the units charged ahead for the edge).
    let mut sent = 0;
    let start = Instant::now();
    let level = loop {
        assert_eq!(ask(edge, &sender()), "DUNNO");
        sent += 1;
        let used = lookup(port, &token, busy, logs)["used"].as_u64().unwrap();
        if used > sent {
            break used;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no lease granted after {sent} messages (level {used})\n{}",
            logs()
        );
    };
    eprintln!("{sent} messages admitted, level {level}: a lease is held");
    let key = lookup(port, &token, busy, logs)["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let done = reset(port, &token, &key);
    assert_eq!(done["used_before"], level, "{done}");
    // The edge says when it has applied the reset (polled, with a deadline).
    let reset_at = Instant::now();
    let applied = format!("key={key}");
    while !cluster.edges.iter().any(|e| {
        e.log()
            .lines()
            .any(|l| l.contains(&applied) && l.contains("held=true"))
    }) {
        assert!(
            reset_at.elapsed() < Duration::from_secs(1),
            "the edge did not apply the reset within a second\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Its next message is counted in Redis (the lease of units charged before the reset is
    // gone), not admitted locally from it.
    assert_eq!(ask(edge, &sender()), "DUNNO");
    let used = lookup(port, &token, busy, logs)["used"].as_u64().unwrap();
    assert!(
        used >= 1,
        "the message after the reset was not counted: level {used}\n{}",
        logs()
    );
}

#[test]
fn the_admin_role_reads_levels_with_the_edges_buckets() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked v1", 5));
    let token = admin_support::admin_with_token(&db.url);
    // 6 sub-buckets of 10 minutes: read with 60 of one minute, every bucket index the edges
    // wrote would be taken for one older than the window (level 0).
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 1,
            quotas: 1,
            edge_args: vec![
                "--buckets".into(),
                "6".into(),
                "--lease-multiple".into(),
                "0".into(),
            ],
            ..Spec::default()
        },
    );
    let (admin, port) = start_admin_role(&db.url, &cluster, &["--buckets", "6"]);
    let logs = || format!("{}\n{}", admin.log(), cluster.logs());
    let edge = cluster.edge_ports[0];
    let busy = "six@example.org";
    for n in 0..3 {
        let answer = ask(
            edge,
            &rcpt(busy, "r@example.net", "198.51.100.5", &format!("b{n}")),
        );
        assert_eq!(answer, "DUNNO");
    }
    let row = lookup(port, &token, busy, logs);
    assert_eq!(
        (&row["used"], &row["limit"]),
        (&json!(3), &json!(5)),
        "{row}"
    );
    // The window frees up when its newest 10-minute bucket leaves it: within the hour.
    let empty_in = row["empty_at_ms"].as_u64().unwrap() as i64
        - std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
    assert!(
        (3_000_000..=4_300_000).contains(&empty_in),
        "empty in {empty_in} ms: {row}"
    );
    let done = reset(port, &token, row["key"].as_str().unwrap());
    assert_eq!(done["used_before"], 3, "{done}");
}
