//! The refusal history, top senders and the alert webhook in a real `sluice serve`:
//! policy requests over TCP that get refused show up in `/api/history` and on the History
//! page (an HTML payload in the sender shown escaped), searchable; the alert webhook — a
//! real HTTP server here (axum on 127.0.0.1) — gets one POST per new key, a 500 retried,
//! the cooldown honoured; the sender counts reach `/api/top-senders` (written at the end of
//! their minute, or at shutdown); and rows older than the retention are pruned.

mod admin_support;

use admin_support::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sluice_test_support::{
    ask_blocking, free_port, http, http_get, import_policies, policies, start_front, wait_listening,
};

const PAYLOAD: &str = "<script>alert(1)</script>@evil.example";

/// A database with one policy (1 message per sender per hour, then REJECT), an admin and
/// its API token.
fn setup(dir: &std::path::Path) -> (String, String) {
    let db = format!("sqlite://{}", dir.join("policies.db").display());
    import_policies(
        BIN,
        dir,
        &policies::sender_quota("everyone", "per-sender", 1),
        &db,
    );
    let token = admin_with_token(&db);
    (db, token)
}

fn request(sender: &str, client: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={client}\nhelo_name=mx.example.net\nsender={sender}\nrecipient=rcpt@example.net\nsasl_username=\ninstance={}",
        free_port()
    )
}

fn get(port: u16, path: &str, token: &str) -> (u16, String) {
    let auth = format!("Bearer {token}");
    let r = http(port, "GET", path, &[("Authorization", &auth)], None);
    (r.status, r.body)
}

fn get_json(port: u16, path: &str, token: &str) -> serde_json::Value {
    let (status, body) = get(port, path, token);
    assert_eq!(status, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Polls `f` until it returns `Some` (at most 15 s).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A metric's value in the scrape of `metrics` (0 when absent).
fn metric(metrics: u16, line_start: &str) -> f64 {
    let (_, text) = http_get(metrics, "/metrics");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// What the webhook received: (status it answered, body).
type Received = Arc<Mutex<Vec<(u16, serde_json::Value)>>>;

/// An HTTP server on 127.0.0.1 answering the first POST with 500 and the others with 204.
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
                        let mut seen = seen.lock().unwrap();
                        let status = if seen.is_empty() { 500 } else { 204 };
                        seen.push((status, serde_json::from_str(&body).unwrap()));
                        axum::http::StatusCode::from_u16(status).unwrap()
                    }
                }),
            );
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (port, received)
}

#[test]
fn refusals_reach_the_history_the_webhook_and_the_top_senders() {
    let dir = tempfile::tempdir().unwrap();
    let (db, token) = setup(dir.path());
    let (hook_port, received) = webhook();
    let hook = format!("http://127.0.0.1:{hook_port}/hook");
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let mut serve = start_front(
        BIN,
        "sluice serve with history and alerts",
        "serve",
        &[
            "--database",
            &db,
            "--admin-listen",
            &admin_listen,
            "--alert-webhook",
            &hook,
            "--alert-cooldown-secs",
            "3600",
        ],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    // The alert task starts from the refusals stored when it starts: give it its first tick.
    std::thread::sleep(Duration::from_millis(1500));

    // Each sender's first message is admitted, the next ones refused.
    let ask = |sender: &str, client: &str| ask_blocking(serve.port, &request(sender, client));
    assert_eq!(ask(PAYLOAD, "192.0.2.7"), "DUNNO");
    assert!(ask(PAYLOAD, "192.0.2.7").starts_with("REJECT"));
    assert_eq!(ask("b@example.org", "192.0.2.7"), "DUNNO");
    assert!(ask("b@example.org", "192.0.2.7").starts_with("REJECT"));
    assert!(ask("b@example.org", "198.51.100.9").starts_with("REJECT"));
    // The third refusal of b, from the same client: every key is in its cooldown.
    assert!(ask("b@example.org", "198.51.100.9").starts_with("REJECT"));

    let all = wait_for("4 refusals in /api/history", || {
        let rows = get_json(admin_port, "/api/history", &token);
        (rows.as_array().unwrap().len() == 4).then_some(rows)
    });
    let rows = all.as_array().unwrap();
    let newest = &rows[0];
    assert_eq!(newest["sender"], "b@example.org", "newest first: {all}");
    assert_eq!(newest["client_address"], "198.51.100.9");
    assert_eq!(newest["helo_name"], "mx.example.net");
    assert_eq!(newest["recipient"], "rcpt@example.net");
    assert_eq!(newest["policy"], "everyone");
    assert_eq!(newest["module"], "Quotas");
    assert_eq!(newest["action"], "REJECT");
    assert_eq!(newest["text"], "Sender quota exceeded");
    assert_eq!(rows[3]["sender"], PAYLOAD, "stored verbatim");
    assert!(rows[0]["id"].as_i64() > rows[1]["id"].as_i64());

    // Searches and paging.
    let count = |path: &str| get_json(admin_port, path, &token).as_array().unwrap().len();
    assert_eq!(count("/api/history?sender=EXAMPLE.org"), 3);
    assert_eq!(count("/api/history?client=198.51.100."), 2);
    assert_eq!(count("/api/history?client=192.0.2.7&sender=b%40"), 1);
    assert_eq!(count("/api/history?recipient=nobody"), 0);
    assert_eq!(count("/api/history?sender=%25"), 0, "% is not a wildcard");
    let oldest_id = rows[3]["id"].as_i64().unwrap();
    assert_eq!(count(&format!("/api/history?before_id={oldest_id}")), 0);
    assert_eq!(count("/api/history?limit=2"), 2);
    let (status, body) = get(admin_port, "/api/history?limit=0", &token);
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("\"field\":\"limit\""), "{body}");
    let unauthenticated = http(admin_port, "GET", "/api/history", &[], None);
    assert_eq!(unauthenticated.status, 401);

    // The page shows the payload escaped, never as markup.
    let (status, page) = get(admin_port, "/history", &token);
    assert_eq!(status, 200);
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;@evil.example"),
        "{page}"
    );
    assert!(!page.contains("<script>"), "{page}");
    let (_, page) = get(admin_port, "/history?sender=b%40example", &token);
    assert!(page.contains("198.51.100.9") && !page.contains("evil.example"));

    // The webhook: refusal 1 alerts sender and client (answered 500, then retried);
    // refusal 2 alerts b; refusal 3 alerts client 198.51.100.9; refusal 4 nothing.
    let posts = wait_for("4 webhook POSTs", || {
        let r = received.lock().unwrap().clone();
        (r.len() >= 4).then_some(r)
    });
    std::thread::sleep(Duration::from_secs(2));
    let posts_now = received.lock().unwrap().clone();
    assert_eq!(posts_now.len(), 4, "no more alerts: {posts_now:?}");
    assert_eq!(posts[0].0, 500);
    let retried = &posts[0].1["refusal"]["id"];
    assert!(
        posts[1..]
            .iter()
            .any(|(s, b)| *s == 204 && &b["refusal"]["id"] == retried),
        "the alert answered 500 is sent again: {posts:?}"
    );
    let keys: Vec<String> = posts[1..]
        .iter()
        .flat_map(|(_, b)| b["keys"].as_array().unwrap().clone())
        .map(|k| {
            format!(
                "{}={}",
                k["kind"].as_str().unwrap(),
                k["value"].as_str().unwrap()
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    let mut want = vec![
        "client_address=192.0.2.7".to_string(),
        "client_address=198.51.100.9".to_string(),
        "sender=b@example.org".to_string(),
        format!("sender={PAYLOAD}"),
    ];
    want.sort();
    assert_eq!(sorted, want, "each key once: {posts:?}");
    let first = &posts[0].1;
    assert_eq!(first["event"], "first_refusal");
    assert_eq!(first["cooldown_secs"], 3600);
    assert_eq!(first["refusal"]["action"], "REJECT");
    assert_eq!(
        metric(serve.metrics, "sluice_alerts_total{result=\"sent\"}"),
        3.0
    );
    assert_eq!(
        metric(serve.metrics, "sluice_alerts_total{result=\"suppressed\"}"),
        4.0
    );
    assert_eq!(
        metric(
            serve.metrics,
            "sluice_history_records_total{result=\"written\"}"
        ),
        4.0
    );

    // Sender counts are written when their minute ends, and at shutdown.
    serve.process.terminate(Duration::from_secs(20));
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let _serve = start_front(
        BIN,
        "sluice serve again",
        "serve",
        &["--database", &db, "--admin-listen", &admin_listen],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    let top = get_json(admin_port, "/api/top-senders?window=day", &token);
    assert_eq!(top[0]["sender"], "b@example.org", "{top}");
    assert_eq!(top[0]["requests"], 4);
    assert_eq!(top[0]["refusals"], 3);
    assert_eq!(top[1]["sender"], PAYLOAD);
    assert_eq!(top[1]["requests"], 2);
    let refused = get_json(admin_port, "/api/top-senders?refused=true&limit=1", &token);
    assert_eq!(refused.as_array().unwrap().len(), 1);
    assert_eq!(refused[0]["sender"], "b@example.org");
    let (status, body) = get(admin_port, "/api/top-senders?window=week", &token);
    assert_eq!(status, 422, "{body}");
    let (status, page) = get(admin_port, "/top-senders?window=day", &token);
    assert_eq!(status, 200);
    assert!(page.contains("&lt;script&gt;alert(1)"), "{page}");
    assert!(!page.contains("<script>"));
    let spec = get_json(admin_port, "/api/openapi.json", &token);
    assert!(spec["paths"]["/api/history"]["get"].is_object());
    assert!(spec["paths"]["/api/top-senders"]["get"].is_object());
}

#[test]
fn refusals_older_than_the_retention_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (db, token) = setup(dir.path());
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let serve = start_front(
        BIN,
        "sluice serve with a 2 s retention",
        "serve",
        &[
            "--database",
            &db,
            "--admin-listen",
            &admin_listen,
            "--history-retention-secs",
            "2",
        ],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    assert_eq!(
        ask_blocking(serve.port, &request("a@example.org", "192.0.2.1")),
        "DUNNO"
    );
    assert!(ask_blocking(serve.port, &request("a@example.org", "192.0.2.1")).starts_with("REJECT"));
    let stored = Instant::now();
    wait_for("the refusal in the history", || {
        let rows = get_json(admin_port, "/api/history", &token);
        (rows.as_array().unwrap().len() == 1).then_some(())
    });
    wait_for("the refusal pruned", || {
        let rows = get_json(admin_port, "/api/history", &token);
        rows.as_array().unwrap().is_empty().then_some(())
    });
    assert!(
        stored.elapsed() >= Duration::from_millis(1500),
        "pruned before its retention"
    );
    // The counter is raised just after the DELETE commits: wait for it, don't race it.
    wait_for("the pruned row counted", || {
        (metric(serve.metrics, "sluice_history_pruned_total") >= 1.0).then_some(())
    });
}

#[test]
fn history_off_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (db, token) = setup(dir.path());
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let serve = start_front(
        BIN,
        "sluice serve without history",
        "serve",
        &[
            "--database",
            &db,
            "--admin-listen",
            &admin_listen,
            "--history",
            "false",
        ],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    ask_blocking(serve.port, &request("a@example.org", "192.0.2.1"));
    assert!(ask_blocking(serve.port, &request("a@example.org", "192.0.2.1")).starts_with("REJECT"));
    std::thread::sleep(Duration::from_secs(2));
    let rows = get_json(admin_port, "/api/history", &token);
    assert!(rows.as_array().unwrap().is_empty(), "{rows}");
}
