//! The refusal history of a cluster: two edges with `history = true`, on a PostgreSQL role
//! granted only what docs/cluster.md lists (CONNECT, USAGE, SELECT, and INSERT and DELETE
//! on the two history tables with their sequences), write their refusals into one history,
//! which the admin service of a `sluice serve` on the same database shows with both edges'
//! rows; their sender counts, written at shutdown, are summed in the top senders.

mod admin_support;
mod cluster_support;

use cluster_support::*;
use sluice_test_support::policies::gate_and_sender_quota;
use sluice_test_support::{free_port, http, rcpt, start_front, wait_listening};
use std::process::Command;
use std::time::{Duration, Instant};

struct PgRole {
    name: String,
}

impl Drop for PgRole {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q"])
            .arg(PG_ADMIN_URL)
            .args(["-c", &format!("DROP ROLE IF EXISTS {}", self.name)])
            .output();
    }
}

fn api(port: u16, path: &str, token: &str) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let r = http(port, "GET", path, &[("Authorization", &auth)], None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
}

#[test]
fn two_edges_write_one_history_with_least_rights() {
    let _serial = serial();
    let role = PgRole {
        name: unique("sluice_edge_hist"),
    };
    psql(PG_ADMIN_URL, &format!("CREATE ROLE {} LOGIN", role.name));
    let db = PgDb::create();
    import(&db.url, &gate_and_sender_quota("blocked", 2));
    for sql in [
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC".to_string(),
        format!("GRANT CONNECT ON DATABASE {} TO {}", db.name, role.name),
        format!("GRANT USAGE ON SCHEMA public TO {}", role.name),
        format!(
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}",
            role.name
        ),
        format!(
            "GRANT INSERT, DELETE ON refusal_history, sender_counts TO {}",
            role.name
        ),
        format!(
            "GRANT USAGE ON SEQUENCE refusal_history_id_seq, sender_counts_id_seq TO {}",
            role.name
        ),
    ] {
        psql(&db.url, &sql);
    }
    let edge_url = format!("postgres://{}@127.0.0.1:5432/{}", role.name, db.name);
    let mut cluster = Cluster::start(
        &edge_url,
        Spec {
            edges: 2,
            quotas: 1,
            redis_cluster: false,
            edge_args: vec!["--history".into(), "true".into()],
            ..Spec::default()
        },
    );
    let (first, second) = (cluster.edge_ports[0], cluster.edge_ports[1]);
    assert_eq!(
        ask(
            first,
            &rcpt("one@example.org", "r@example.net", "192.0.2.7", "h1")
        ),
        "REJECT blocked",
        "{}",
        cluster.logs()
    );
    for (i, want) in ["DUNNO", "DUNNO", "REJECT sender quota exceeded"]
        .iter()
        .enumerate()
    {
        let req = rcpt(
            "two@example.org",
            "r@example.net",
            "198.51.100.5",
            &format!("h2{i}"),
        );
        assert_eq!(&ask(second, &req), want, "{}", cluster.logs());
    }

    // The edges' role may not change anything else.
    let denied = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg(&edge_url)
        .args(["-c", "UPDATE refusal_history SET sender = 'x'"])
        .output()
        .unwrap();
    assert!(!denied.status.success(), "UPDATE must be refused");

    // One history, both edges' refusals, read through the admin service.
    let token = admin_support::account_with_token(&db.url, "viewer");
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let _serve = start_front(
        BIN,
        "sluice serve (admin service)",
        "serve",
        &["--database", &db.url, "--admin-listen", &admin_listen],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    let start = Instant::now();
    let rows = loop {
        let rows = api(admin_port, "/api/history", &token);
        if rows.as_array().unwrap().len() >= 2 {
            break rows;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "history: {rows}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let find = |sender: &str| {
        rows.iter()
            .find(|r| r["sender"] == sender)
            .unwrap_or_else(|| panic!("{sender} in {rows:?}"))
    };
    let one = find("one@example.org");
    assert_eq!(one["module"], "AccessControl");
    assert_eq!(one["policy"], "gate");
    assert_eq!(one["client_address"], "192.0.2.7");
    let two = find("two@example.org");
    assert_eq!(two["module"], "Quotas");
    assert_eq!(two["policy"], "senders");
    assert_eq!(two["text"], "sender quota exceeded");

    // Counts are written at shutdown, and summed over the edges.
    for edge in &mut cluster.edges {
        edge.terminate(Duration::from_secs(20));
    }
    for edge in &cluster.edges {
        let log = edge.log();
        assert!(!log.contains("permission denied"), "{log}");
        assert!(!log.contains("Cannot write"), "{log}");
        assert!(!log.contains("Cannot prune"), "{log}");
    }
    let top = api(admin_port, "/api/top-senders", &token);
    assert_eq!(top[0]["sender"], "two@example.org", "{top}");
    assert_eq!(top[0]["requests"], 3);
    assert_eq!(top[0]["refusals"], 1);
    assert_eq!(top[1]["sender"], "one@example.org");
    assert_eq!(top[1]["refusals"], 1);
}
