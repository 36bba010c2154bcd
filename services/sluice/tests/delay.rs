//! DELAY quotas in embedded mode (issue 19): a real `sluice serve` on a real SQLite database,
//! the policy protocol over TCP, and the release agents' side played over the real admin
//! API (`/api/held/sync`) with a real admin token. (tests/e2e/delay.sh runs the same with a
//! real Postfix and `sluice release-agent`.)
//!
//! Time is real: quotas of 2 s windows, polled with deadlines.

mod admin_support;
mod delay_support;

use admin_support::{admin_with_token, import_policies, BIN};
use delay_support::{message, policy, strings, sync_body, SENDER};
use sluice_test_support::{free_port, http, PolicyClient, Process};
use std::time::{Duration, Instant};

struct Server {
    _dir: tempfile::TempDir,
    db: String,
    /// `serve --redis` (the ledger then lives in Redis too).
    redis: Option<String>,
    port: u16,
    admin: u16,
    token: String,
    process: Option<Process>,
}

impl Server {
    fn new(policies: &str) -> Server {
        Self::with_redis(policies, None)
    }

    fn with_redis(policies: &str, redis: Option<String>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
        import_policies(&db, policies);
        let token = admin_with_token(&db);
        let mut s = Server {
            _dir: dir,
            db,
            redis,
            port: free_port(),
            admin: free_port(),
            token,
            process: None,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        let mut args: Vec<String> = [
            "serve",
            "--database",
            &self.db,
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--metrics-listen",
            "off",
            "--admin-listen",
            &format!("127.0.0.1:{}", self.admin),
        ]
        .map(String::from)
        .to_vec();
        if let Some(redis) = &self.redis {
            args.extend(["--redis".to_string(), redis.clone()]);
        }
        self.process = Some(Process::start("sluice serve", BIN, &args, Some(self.port)));
    }

    async fn client(&self) -> PolicyClient {
        PolicyClient::connect(([127, 0, 0, 1], self.port).into()).await
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let auth = format!("Bearer {}", self.token);
        let r = http(
            self.admin,
            method,
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body,
        );
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()
    }

    /// The agent's sync: `held` are in the hold queue, `other` elsewhere in the queue.
    fn sync(&self, held: &[&str]) -> serde_json::Value {
        let body = sync_body(held).to_string();
        self.api("POST", "/api/held/sync", Some(&body))
    }

    fn held(&self) -> Vec<serde_json::Value> {
        self.api("GET", "/api/held", None)
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Syncs `held` until `n` messages were released (see [`delay_support::wait_released`]).
fn wait_released(s: &Server, held: &[&str], n: usize, secs: u64) -> (Vec<String>, Instant) {
    delay_support::wait_released(|q| s.sync(q), held, n, secs, String::new)
}

#[tokio::test]
async fn a_full_delay_quota_holds_and_releases_in_order_as_room_comes() {
    let mut s = Server::new(&policy(2, ""));
    let mut c = s.client().await;
    let start = Instant::now();
    for i in 1..=2 {
        assert_eq!(
            message(&mut c, i).await,
            ("DUNNO".into(), "DUNNO".into()),
            "message {i} fits"
        );
    }
    // Messages 3 to 5: accepted and held (HOLD at RCPT, recorded at END-OF-MESSAGE).
    for i in 3..=5 {
        let (at_rcpt, at_end) = message(&mut c, i).await;
        assert!(
            at_rcpt.starts_with("HOLD Delayed by quota outbound"),
            "{at_rcpt}"
        );
        assert_eq!(
            at_end,
            format!(
                "HOLD Delayed by quota outbound: number {} in line, released when the quota has room",
                i - 2
            )
        );
    }
    let held = s.held();
    let ids: Vec<&str> = held
        .iter()
        .map(|m| m["queue_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["Q3", "Q4", "Q5"]);
    assert_eq!(held[0]["state"], "held");
    assert_eq!(held[0]["position"], 1);
    assert_eq!(held[2]["track"], format!("Sender:{SENDER}"));
    // Estimated departures: the first two when the window has room (both fit in it), the
    // third one window later.
    let est = |i: usize| held[i]["estimated_release_at_ms"].as_u64().unwrap();
    assert_eq!(est(0), est(1), "{held:?}");
    assert_eq!(est(2) - est(0), 2_000, "{held:?}");
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        (now_ms..now_ms + 4_000).contains(&est(0)),
        "the first within a window and the margin: {} ms from now",
        est(0) as i64 - now_ms as i64
    );
    // Nothing leaves before the window has room; then the first two, in order.
    let queue = ["Q3", "Q4", "Q5"];
    let (first, at) = wait_released(&s, &queue, 2, 10);
    assert!(
        at - start >= Duration::from_millis(1_500),
        "released after {:?}",
        at - start
    );
    assert_eq!(first, ["Q3", "Q4"]);
    // Asked again before the agent released them: the same answer, nothing charged twice
    // (Q5 still waits: the two releases filled the window).
    let again = s.sync(&queue);
    assert_eq!(strings(&again["release"]), ["Q3", "Q4"]);
    assert_eq!(again["waiting"], 1);
    // The agent released them: they leave the hold queue and the ledger.
    let answer = s.sync(&["Q5"]);
    assert_eq!(answer["forgotten"], 2);
    assert!(strings(&answer["release"]).is_empty());
    // A new message now finds the window full (the releases were charged): held too.
    let (at_rcpt, _) = message(&mut c, 6).await;
    assert!(at_rcpt.starts_with("HOLD"), "{at_rcpt}");

    // A restart keeps the ledger: Q5 and Q6 are released after it, in order.
    drop(c);
    let process = s.process.as_mut().unwrap();
    assert!(process.terminate(Duration::from_secs(15)).success());
    s.start();
    assert_eq!(s.held().len(), 2, "{:?}", s.held());
    let (next, _) = wait_released(&s, &["Q5", "Q6"], 2, 10);
    assert_eq!(next, ["Q5", "Q6"]);
    s.sync(&[]);
    assert!(s.held().is_empty());
    let log = s.process.as_mut().unwrap().log();
    assert!(log.contains("Held messages restored"), "{log}");
}

#[tokio::test]
async fn paced_releases_one_per_pace_and_a_message_deleted_by_hand_gives_its_turn_to_the_next() {
    // 2 per 2 s, paced: one release per second at most.
    let s = Server::new(&policy(2, "release = \"paced\""));
    let mut c = s.client().await;
    for i in 1..=2 {
        assert_eq!(message(&mut c, i).await.0, "DUNNO");
    }
    for i in 3..=6 {
        assert!(
            message(&mut c, i).await.1.starts_with("HOLD"),
            "message {i}"
        );
    }
    let (first, t1) = wait_released(&s, &["Q3", "Q4", "Q5", "Q6"], 1, 10);
    assert_eq!(first, ["Q3"], "paced: one at a time, in order");
    // Q3 released by the agent; Q5 deleted by hand: forgotten at once (its agent saw it
    // held before), so Q6 comes right after Q4.
    let answer = s.sync(&["Q4", "Q6"]);
    assert_eq!(answer["forgotten"], 2, "{answer}");
    let (second, t2) = wait_released(&s, &["Q4", "Q6"], 1, 10);
    assert_eq!(second, ["Q4"]);
    assert!(
        t2 - t1 >= Duration::from_millis(900),
        "paced releases {:?} apart",
        t2 - t1
    );
    let (third, t3) = wait_released(&s, &["Q6"], 1, 10);
    assert_eq!(third, ["Q6"]);
    assert!(t3 - t2 >= Duration::from_millis(900), "{:?}", t3 - t2);
    assert!(s.held().iter().all(|m| m["state"] == "releasing"));
}
#[tokio::test]
async fn operators_release_return_and_delete_and_the_cap_defers() {
    let s = Server::new(&policy(1, "max_held = 2\nmax_hold_age = \"1h\""));
    let mut c = s.client().await;
    assert_eq!(message(&mut c, 1).await.1, "DUNNO");
    for i in 2..=3 {
        assert!(
            message(&mut c, i).await.1.starts_with("HOLD"),
            "message {i}"
        );
    }
    // The queue holds its max_held: the next message is deferred, not held.
    let (_, at_end) = message(&mut c, 4).await;
    assert_eq!(
        at_end,
        "DEFER 4.7.1 Quota outbound is full and already holds 2 messages; try again later"
    );
    // Explain shows what the quota holds (charging nothing).
    let explained = s.api(
        "POST",
        "/api/explain",
        Some(
            &serde_json::json!({"sender": SENDER, "recipient": "r@dest.example", "instance": "x"})
                .to_string(),
        ),
    );
    let lines: Vec<&str> = explained["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        lines.iter().any(|l| l.starts_with(&format!(
            "Held for app/outbound/Sender:{SENDER}: 2 waiting (next out: Q2 from 127.0.0.1"
        ))),
        "{lines:#?}"
    );
    assert!(
        explained["action"].as_str().unwrap().starts_with("HOLD"),
        "{explained}"
    );
    let held = s.held();
    let id = |q: &str| {
        held.iter().find(|m| m["queue_id"] == q).unwrap()["id"]
            .as_u64()
            .unwrap()
    };
    let released = s.api("POST", &format!("/api/held/{}/release", id("Q3")), None);
    assert_eq!(released["state"], "releasing");
    let deleted = s.api("POST", &format!("/api/held/{}/delete", id("Q2")), None);
    assert_eq!(deleted["state"], "deleting");
    let answer = s.sync(&["Q2", "Q3"]);
    assert_eq!(strings(&answer["release"]), ["Q3"]);
    assert_eq!(strings(&answer["delete"]), ["Q2"]);
    // Both audited.
    let audit = s.api("GET", "/api/audit", None);
    let actions: Vec<String> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["object"].as_str().unwrap_or("").starts_with("held/"))
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        actions.contains(&"release".to_owned()) && actions.contains(&"delete".to_owned()),
        "{audit}"
    );
    // Without credentials the sync is refused.
    let r = http(
        s.admin,
        "POST",
        "/api/held/sync",
        &[("Content-Type", "application/json")],
        Some(r#"{"mta":"127.0.0.1","queue":[]}"#),
    );
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn serve_with_redis_keeps_the_ledger_in_redis_across_a_restart() {
    let redis = sluice_test_support::RedisServer::start();
    let mut s = Server::with_redis(&policy(1, ""), Some(redis.url()));
    let mut c = s.client().await;
    assert_eq!(message(&mut c, 1).await.1, "DUNNO");
    for i in 2..=3 {
        assert!(
            message(&mut c, i).await.1.starts_with("HOLD"),
            "message {i}"
        );
    }
    // Restarted: nothing of the ledger was in the process.
    drop(c);
    let process = s.process.as_mut().unwrap();
    assert!(process.terminate(Duration::from_secs(15)).success());
    s.start();
    let ids: Vec<String> = s
        .held()
        .iter()
        .map(|m| m["queue_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["Q2", "Q3"]);
    let (first, _) = wait_released(&s, &["Q2", "Q3"], 1, 10);
    assert_eq!(first, ["Q2"]);
    let (next, _) = wait_released(&s, &["Q3"], 1, 10);
    assert_eq!(next, ["Q3"]);
    s.sync(&[]);
    assert!(s.held().is_empty());
}

#[tokio::test]
async fn new_mail_waits_behind_held_mail_even_when_the_quota_has_room() {
    let s = Server::new(&policy(2, ""));
    let mut c = s.client().await;
    let start = Instant::now();
    for i in 1..=2 {
        assert_eq!(message(&mut c, i).await.1, "DUNNO", "message {i} fits");
    }
    assert!(message(&mut c, 3).await.1.starts_with("HOLD"));
    // Its agent has seen it; the window is still full, so it waits.
    let answer = s.sync(&["Q3"]);
    assert!(strings(&answer["release"]).is_empty(), "{answer}");
    // The window has room again (no agent has synced since): a new message does not take
    // it from the one that waited, it is held behind it.
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(start.elapsed()));
    let (at_rcpt, at_end) = message(&mut c, 4).await;
    assert_eq!(
        at_rcpt,
        "HOLD Delayed by quota outbound: held mail waits before it; released in turn"
    );
    assert_eq!(
        at_end,
        "HOLD Delayed by quota outbound: number 2 in line, released when the quota has room"
    );
    // The next sync releases both, in their order.
    let (released, _) = wait_released(&s, &["Q3", "Q4"], 2, 10);
    assert_eq!(released, ["Q3", "Q4"]);
}

#[tokio::test]
async fn mail_no_agent_has_seen_does_not_hold_new_mail_behind_it() {
    let s = Server::new(&policy(1, ""));
    let mut c = s.client().await;
    let start = Instant::now();
    assert_eq!(message(&mut c, 1).await.1, "DUNNO");
    assert!(message(&mut c, 2).await.1.starts_with("HOLD"));
    // No agent runs (nothing syncs): Q2 can never leave, and new mail is not held behind
    // it once the quota has room.
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(start.elapsed()));
    assert_eq!(message(&mut c, 3).await, ("DUNNO".into(), "DUNNO".into()));
}
