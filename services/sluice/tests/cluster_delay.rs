//! DELAY quotas in cluster mode (issue 19): PostgreSQL, a Redis Cluster (3 primaries, 3
//! replicas), two quota services sharing the ledger of held messages in Redis, two edges,
//! and the `sluice admin` role the release agents talk to — all real processes; the policy
//! protocol over TCP, and the agents' side played over the admin role's real API
//! (`/api/held/sync`) with a real admin token. (tests/e2e/delay.sh runs the same with a real
//! Postfix and `sluice release-agent`.)
//!
//! Time is real: quotas of 2 s windows, polled with deadlines.

mod admin_support;
mod cluster_support;
mod delay_support;

use cluster_support::*;
use delay_support::{message, policy, strings, sync_body, MTA, SENDER};
use serde_json::json;
use sluice_test_support::{PolicyClient, Process};
use std::time::{Duration, Instant};

/// The admin role and its token.
struct Admin {
    port: u16,
    token: String,
}

impl Admin {
    fn api(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        admin_api(self.port, method, path, &self.token, body)
    }

    /// An agent's sync: `held` are in the MTA's hold queue.
    fn sync(&self, held: &[&str]) -> serde_json::Value {
        self.api("POST", "/api/held/sync", Some(sync_body(held)))
    }

    fn held(&self) -> Vec<serde_json::Value> {
        self.api("GET", "/api/held", None)
            .as_array()
            .unwrap()
            .clone()
    }
}

/// A cluster for DELAY: PostgreSQL with [`policy`]`(limit, extra)`, Redis Cluster, `quotas`
/// quota services, two edges, the admin role on the last quota service, and a policy
/// connection to each edge.
struct DelayCluster {
    _db: PgDb,
    cluster: Cluster,
    admin_process: Process,
    admin: Admin,
    a: PolicyClient,
    b: PolicyClient,
}

impl DelayCluster {
    /// Every process's log, for failure messages.
    fn logs(&self) -> String {
        format!("{}\n{}", self.admin_process.log(), self.cluster.logs())
    }

    async fn start(limit: u64, extra: &str, quotas: usize) -> DelayCluster {
        let db = PgDb::create();
        import(&db.url, &policy(limit, extra));
        let token = admin_support::admin_with_token(&db.url);
        let cluster = Cluster::start(
            &db.url,
            Spec {
                edges: 2,
                quotas,
                ..Spec::default()
            },
        );
        let (admin_process, port) =
            start_admin_role_on(&db.url, cluster.quota_ports[quotas - 1], &[]);
        let edge = |i: usize| ([127, 0, 0, 1], cluster.edge_ports[i]).into();
        let a = PolicyClient::connect(edge(0)).await;
        let b = PolicyClient::connect(edge(1)).await;
        DelayCluster {
            _db: db,
            cluster,
            admin_process,
            admin: Admin { port, token },
            a,
            b,
        }
    }
}

/// Syncs `held` through the admin role until `n` messages were released.
fn wait_released(
    admin: &Admin,
    held: &[&str],
    n: usize,
    secs: u64,
    logs: impl Fn() -> String,
) -> (Vec<String>, Instant) {
    delay_support::wait_released(|q| admin.sync(q), held, n, secs, logs)
}

// The serial guard is held across awaits on purpose: each test has its own runtime, and
// the guard only keeps the other test of this file (blocked on its own thread) waiting.
#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_through_two_edges_and_released_in_order_while_a_quota_service_stops() {
    let _serial = serial();
    // The agents' admin role talks to the second quota service; the first stops below.
    let mut dc = DelayCluster::start(2, "", 2).await;
    let start = Instant::now();
    assert_eq!(
        message(&mut dc.a, 1).await,
        ("DUNNO".into(), "DUNNO".into())
    );
    assert_eq!(
        message(&mut dc.b, 2).await,
        ("DUNNO".into(), "DUNNO".into())
    );
    // Messages 3 to 6, through both edges: held, one line across the cluster.
    for i in 3..=6 {
        let c = if i % 2 == 1 { &mut dc.a } else { &mut dc.b };
        let (at_rcpt, at_end) = message(c, i).await;
        assert!(
            at_rcpt.starts_with("HOLD Delayed by quota outbound"),
            "message {i}: {at_rcpt}\n{}",
            dc.logs()
        );
        assert_eq!(
            at_end,
            format!(
                "HOLD Delayed by quota outbound: number {} in line, released when the quota has room",
                i - 2
            ),
            "{}",
            dc.logs()
        );
    }
    let held = dc.admin.held();
    let ids: Vec<&str> = held
        .iter()
        .map(|m| m["queue_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Q3", "Q4", "Q5", "Q6"]);
    assert!(held.iter().all(|m| m["mta"] == MTA), "{held:?}");
    assert_eq!(held[3]["position"], 4);
    // Estimated departures, from the counters in Redis: two per window.
    let est = |i: usize| held[i]["estimated_release_at_ms"].as_u64().unwrap();
    assert_eq!(est(1), est(0), "{held:?}");
    assert_eq!(est(3) - est(0), 2_000, "{held:?}");

    // The first quota service stops while they are held: the ledger is in Redis.
    assert!(dc.cluster.quotas[0]
        .terminate(Duration::from_secs(15))
        .success());
    let queue = ["Q3", "Q4", "Q5", "Q6"];
    let (first, at) = wait_released(&dc.admin, &queue, 2, 10, || dc.logs());
    assert!(
        at - start >= Duration::from_millis(1_500),
        "released after {:?}",
        at - start
    );
    assert_eq!(first, ["Q3", "Q4"]);
    // Asked again before the agent released them: the same answer, nothing charged twice.
    let again = dc.admin.sync(&queue);
    assert_eq!(strings(&again["release"]), ["Q3", "Q4"]);
    assert_eq!(again["waiting"], 2);
    let answer = dc.admin.sync(&["Q5", "Q6"]);
    assert_eq!(answer["forgotten"], 2, "{answer}");
    // The releases were charged in Redis, where new mail is counted: the window is full.
    let (at_rcpt, at_end) = message(&mut dc.b, 7).await;
    assert!(at_rcpt.starts_with("HOLD"), "{at_rcpt}\n{}", dc.logs());
    assert!(at_end.contains("number 3 in line"), "{at_end}");
    let (next, _) = wait_released(&dc.admin, &["Q5", "Q6", "Q7"], 3, 15, || dc.logs());
    assert_eq!(next, ["Q5", "Q6", "Q7"]);
    dc.admin.sync(&[]);
    assert!(dc.admin.held().is_empty(), "{:?}", dc.admin.held());
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_act_through_the_admin_role_and_the_cap_defers_on_every_edge() {
    let _serial = serial();
    let mut dc = DelayCluster::start(1, "max_held = 2\nmax_hold_age = \"1h\"", 1).await;
    assert_eq!(message(&mut dc.a, 1).await.1, "DUNNO", "{}", dc.logs());
    assert!(message(&mut dc.a, 2).await.1.starts_with("HOLD"));
    assert!(message(&mut dc.b, 3).await.1.starts_with("HOLD"));
    // The queue holds its max_held, counted across the edges: the next is deferred.
    assert_eq!(
        message(&mut dc.b, 4).await.1,
        "DEFER 4.7.1 Quota outbound is full and already holds 2 messages; try again later"
    );
    // Explain through the admin role shows what the quota holds.
    let explained = dc.admin.api(
        "POST",
        "/api/explain",
        Some(json!({"sender": SENDER, "recipient": "r@dest.example", "instance": "x"})),
    );
    let lines = explained["lines"].to_string();
    assert!(
        lines.contains(&format!(
            "Held for app/outbound/Sender:{SENDER}: 2 waiting (next out: Q2 from 127.0.0.1"
        )),
        "{lines}"
    );
    let held = dc.admin.held();
    let id = |q: &str| {
        held.iter().find(|m| m["queue_id"] == q).unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    // Release Q3 now (whatever the room), delete Q2: the agent is told so.
    let released = dc
        .admin
        .api("POST", &format!("/api/held/{}/release", id("Q3")), None);
    assert_eq!(released["state"], "releasing", "{released}");
    let deleted = dc
        .admin
        .api("POST", &format!("/api/held/{}/delete", id("Q2")), None);
    assert_eq!(deleted["state"], "deleting");
    let answer = dc.admin.sync(&["Q2", "Q3"]);
    assert_eq!(strings(&answer["release"]), ["Q3"], "{answer}");
    assert_eq!(strings(&answer["delete"]), ["Q2"]);
    // A number the ledger does not have.
    let auth = format!("Bearer {}", dc.admin.token);
    let missing = sluice_test_support::http(
        dc.admin.port,
        "POST",
        "/api/held/999999/release",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(missing.status, 404, "{}", missing.body);
    // Done by the agent: both leave the ledger.
    let answer = dc.admin.sync(&[]);
    assert_eq!(answer["forgotten"], 2, "{answer}");
    assert!(dc.admin.held().is_empty());
}

#[allow(clippy::await_holding_lock)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_mail_on_another_edge_waits_behind_held_mail() {
    let _serial = serial();
    let mut dc = DelayCluster::start(2, "", 1).await;
    let start = Instant::now();
    assert_eq!(message(&mut dc.a, 1).await.1, "DUNNO", "{}", dc.logs());
    assert_eq!(message(&mut dc.a, 2).await.1, "DUNNO");
    assert!(message(&mut dc.a, 3).await.1.starts_with("HOLD"));
    // Seen by its agent, still no room: it waits.
    let answer = dc.admin.sync(&["Q3"]);
    assert!(strings(&answer["release"]).is_empty(), "{answer}");
    // Room again, and no sync since: a message through the other edge is held behind Q3.
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(start.elapsed()));
    let (at_rcpt, at_end) = message(&mut dc.b, 4).await;
    assert_eq!(
        at_rcpt,
        "HOLD Delayed by quota outbound: held mail waits before it; released in turn",
        "{}",
        dc.logs()
    );
    assert!(at_end.contains("number 2 in line"), "{at_end}");
    let (released, _) = wait_released(&dc.admin, &["Q3", "Q4"], 2, 10, || dc.logs());
    assert_eq!(released, ["Q3", "Q4"]);
}
