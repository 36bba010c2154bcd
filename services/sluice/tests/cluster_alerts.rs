//! Alerts sent by the `sluice admin` role in a cluster (real PostgreSQL, real processes):
//! two admin roles configured with the same webhook share one database; exactly one holds
//! the alert lock and sends, the other stands by. Refusals stored by the edges (written
//! here straight into `refusal_history`, as the edges' history writers do) alert once per
//! key, whoever stored them; when the sender stops, the other takes over and alerts on the
//! refusals stored from then on, still once.

mod admin_support;
mod cluster_support;

use cluster_support::*;
use sluice_test_support::{free_port, Process};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the webhook received.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// An HTTP server on 127.0.0.1 answering every POST with 204.
fn webhook() -> (u16, Received) {
    let received: Received = Arc::default();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/hook",
                axum::routing::post(move |body: String| {
                    let seen = seen.clone();
                    async move {
                        seen.lock()
                            .unwrap()
                            .push(serde_json::from_str(&body).unwrap());
                        axum::http::StatusCode::NO_CONTENT
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (port, received)
}

fn start_admin(db: &str, hook: &str, name: &str) -> Process {
    let port = free_port();
    let args: Vec<String> = [
        "admin",
        "--database",
        db,
        "--admin-listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        "off",
        "--alert-webhook",
        hook,
        "--alert-cooldown-secs",
        "3600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Process::start(name, admin_support::BIN, &args, Some(port))
}

/// Stores a refusal as an edge's history writer does.
fn refusal(db: &str, node: &str, sender: &str, client: &str) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    psql(
        db,
        &format!(
            "INSERT INTO refusal_history (at_ms, node, client, helo, sender, recipient, sasl_user, policy, module, action, text) \
             VALUES ({now}, '{node}', '{client}', 'mx', '{sender}', 'r@example.net', '', 'p', 'Quotas', 'DEFER', '4.7.1 Slow down')"
        ),
    );
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

const SENDS: &str = "This process sends the alerts";
const STANDS_BY: &str = "stands by";

#[test]
fn one_admin_role_sends_the_alerts_and_the_other_takes_over() {
    let _serial = serial();
    let db = PgDb::create();
    let (port, received) = webhook();
    let hook = format!("http://127.0.0.1:{port}/hook");
    let a = start_admin(&db.url, &hook, "sluice admin a");
    let b = start_admin(&db.url, &hook, "sluice admin b");
    let a_sends = wait_for(
        "one sender and one standby",
        Duration::from_secs(20),
        || {
            let (la, lb) = (a.log(), b.log());
            match (la.contains(SENDS), lb.contains(SENDS)) {
                (true, true) => panic!("two alert senders:\n{la}\n{lb}"),
                (true, false) if lb.contains(STANDS_BY) => Some(true),
                (false, true) if la.contains(STANDS_BY) => Some(false),
                _ => None,
            }
        },
    );
    let (sender, standby) = if a_sends { (a, b) } else { (b, a) };
    // Its first look at the history is in the same tick as taking the lock.
    std::thread::sleep(Duration::from_millis(500));

    // Two edges' refusals: one alert per key (the second refusal's keys are both cooled
    // down), whichever edge stored them.
    refusal(&db.url, "edge-1", "a@example.org", "192.0.2.7");
    refusal(&db.url, "edge-2", "a@example.org", "192.0.2.7");
    let posts = wait_for("the first alert", Duration::from_secs(15), || {
        let r = received.lock().unwrap().clone();
        (!r.is_empty()).then_some(r)
    });
    std::thread::sleep(Duration::from_secs(3));
    let posts_now = received.lock().unwrap().clone();
    assert_eq!(posts_now.len(), 1, "one alert, one sender: {posts_now:?}");
    assert_eq!(posts[0]["refusal"]["node"], "edge-1");
    let kinds: Vec<_> = posts[0]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["sender", "client_address"]);

    // The sender stops: the standby takes the lock over and alerts from then on.
    drop(sender);
    wait_for("the take-over", Duration::from_secs(20), || {
        standby.log().contains(SENDS).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    refusal(&db.url, "edge-1", "b@example.org", "198.51.100.9");
    let posts = wait_for(
        "the alert after the take-over",
        Duration::from_secs(15),
        || {
            let r = received.lock().unwrap().clone();
            (r.len() >= 2).then_some(r)
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(received.lock().unwrap().len(), 2, "{posts:?}");
    assert_eq!(posts[1]["refusal"]["sender"], "b@example.org");
}
