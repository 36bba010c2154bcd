//! `/api/history` and `/api/top-senders` over rows stored through the store (as the serving
//! processes' writers store them), on SQLite and PostgreSQL: newest first, searches with SQL
//! metacharacters taken literally, paging, and a domain admin seeing only rows of its
//! domains (sender or recipient at them or below them).

mod common;

use common::Admin;
use sluice_store::{AdminRole, Refusal, SenderCount};

const PASSWORD: &str = "a long enough admin password";

fn refusal(at_ms: i64, sender: &str, recipient: &str, client: &str) -> Refusal {
    Refusal {
        at_ms,
        node: "n1".into(),
        client: client.into(),
        helo: "mx".into(),
        sender: sender.into(),
        recipient: recipient.into(),
        policy: "p".into(),
        module: "Quotas".into(),
        action: "DEFER".into(),
        text: "4.7.1 Slow down".into(),
        ..Refusal::default()
    }
}

fn senders(admin: &Admin, path: &str, token: &str) -> Vec<String> {
    let r = admin.call("GET", path, Some(token), None);
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    r.json()
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["sender"].as_str().unwrap().to_string())
        .collect()
}

fn scoped_history(admin: Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    let alice = admin.token("a", "alice");
    let dora = admin.token("d", "dora");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let rows = [
        refusal(now - 5000, "a@example.org", "x@other.net", "192.0.2.1"),
        refusal(now - 4000, "b@other.net", "y@mail.example.org", "192.0.2.2"),
        refusal(now - 3000, "c@other.net", "z@other.net", "198.51.100.1"),
        refusal(
            now - 2000,
            "d@notexample.org",
            "z@other.net",
            "198.51.100.2",
        ),
        refusal(
            now - 1000,
            "'; DROP TABLE refusal_history; --%_@evil.net",
            "q@other.net",
            "192.0.2.3",
        ),
    ];
    admin
        .rt
        .block_on(admin.store.insert_refusals(&rows))
        .unwrap();
    let minute = now - now.rem_euclid(60_000);
    let counts = |node: &str, sender: &str, requests, refusals| SenderCount {
        minute_ms: minute,
        node: node.into(),
        sender: sender.into(),
        requests,
        refusals,
    };
    admin
        .rt
        .block_on(admin.store.insert_sender_counts(&[
            counts("n1", "a@example.org", 10, 0),
            counts("n2", "a@example.org", 5, 1),
            counts("n1", "c@other.net", 12, 7),
            counts("n2", "b@sub.example.org", 1, 1),
        ]))
        .unwrap();

    assert_eq!(
        senders(&admin, "/api/history", &alice),
        [
            "'; DROP TABLE refusal_history; --%_@evil.net",
            "d@notexample.org",
            "c@other.net",
            "b@other.net",
            "a@example.org"
        ]
    );
    assert_eq!(
        senders(&admin, "/api/history?sender=%25_", &alice),
        ["'; DROP TABLE refusal_history; --%_@evil.net"],
        "% and _ are taken literally"
    );
    assert_eq!(
        senders(&admin, "/api/history?sender=%27%3B%20DROP", &alice).len(),
        1
    );
    assert_eq!(
        senders(&admin, "/api/history?client=198.51.100.", &alice),
        ["d@notexample.org", "c@other.net"]
    );
    assert_eq!(
        senders(&admin, "/api/history?recipient=EXAMPLE.ORG", &alice),
        ["b@other.net"]
    );
    let page = admin
        .call("GET", "/api/history?limit=2", Some(&alice), None)
        .json();
    let last = page[1]["id"].as_i64().unwrap();
    assert_eq!(
        senders(
            &admin,
            &format!("/api/history?limit=2&before_id={last}"),
            &alice
        ),
        ["c@other.net", "b@other.net"]
    );

    // A domain admin: its domains and subdomains, by sender or recipient; not
    // notexample.org.
    assert_eq!(
        senders(&admin, "/api/history", &dora),
        ["b@other.net", "a@example.org"]
    );
    assert_eq!(
        senders(&admin, "/api/history?client=198.51.100.", &dora),
        Vec::<String>::new()
    );

    // Top senders: summed over processes; a domain admin sees its senders only.
    let top = admin
        .call("GET", "/api/top-senders", Some(&alice), None)
        .json();
    assert_eq!(top[0]["sender"], "a@example.org");
    assert_eq!(top[0]["requests"], 15);
    assert_eq!(top[0]["refusals"], 1);
    assert_eq!(
        senders(&admin, "/api/top-senders?refused=true", &alice),
        ["c@other.net", "a@example.org", "b@sub.example.org"],
        "ties by refusals ordered by requests"
    );
    assert_eq!(
        senders(&admin, "/api/top-senders", &dora),
        ["a@example.org", "b@sub.example.org"]
    );
    let page = admin.call("GET", "/top-senders", Some(&dora), None);
    assert_eq!(page.status, 200);
    assert!(!page.body.contains("c@other.net"), "{}", page.body);
    let page = admin.call("GET", "/history", Some(&alice), None);
    assert!(page.body.contains("&#39;; DROP TABLE") || page.body.contains("'; DROP TABLE"));

    // Pruning in batches: everything older than now + 1 s goes, the tables stay.
    let deleted = admin
        .rt
        .block_on(admin.store.prune_history(now + 1000, 2))
        .unwrap();
    assert_eq!(deleted, 4, "two refusals and two counts per call");
    while admin
        .rt
        .block_on(admin.store.prune_history(now + 1000, 2))
        .unwrap()
        > 0
    {}
    assert!(senders(&admin, "/api/history", &alice).is_empty());
    assert!(senders(&admin, "/api/top-senders", &alice).is_empty());
    admin.stop();
}

#[test]
fn history_on_sqlite() {
    scoped_history(Admin::sqlite());
}

#[test]
fn history_on_postgres() {
    scoped_history(Admin::postgres());
}
