//! SQL metacharacters and HTML/script payloads in every free-text field of every resource
//! (names, descriptions, comments, verdict texts; fields with a syntax of their own refuse
//! them with 422 instead): stored and read back verbatim through the API and the policy
//! file, and shown escaped (never as markup) on every page that shows them, on SQLite and
//! PostgreSQL.

mod common;

use common::{form_encode, Admin};
use serde_json::json;
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";
/// Closes a quoted SQL string and an HTML attribute, opens tags and a script.
const PAYLOAD: &str =
    "a'; DROP TABLE admin_account; -- \"><script>alert(1)</script><img src=x onerror=alert(2)>";
const ESCAPED: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;";

fn payloads_everywhere(admin: Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let token = admin.token("ci", "alice");
    let t = Some(token.as_str());
    let post = |path: &str, body: serde_json::Value| {
        let r = admin.call("POST", path, t, Some(body));
        assert_eq!(r.status, 201, "POST {path}: {}", r.body);
        r.json()
    };
    let p = form_encode(PAYLOAD);
    post(
        "/api/policies",
        json!({"name": PAYLOAD, "description": PAYLOAD, "priority": 1, "members": [{"source": "@example.org", "comment": PAYLOAD}]}),
    );
    post(
        &format!("/api/policies/{p}/access-control"),
        json!({"name": PAYLOAD, "verdict": "REJECT", "data": PAYLOAD, "comment": PAYLOAD}),
    );
    post(
        &format!("/api/policies/{p}/quotas"),
        json!({"name": PAYLOAD, "track": "Sender:user@domain", "period": 60, "verdict": "DEFER", "data": PAYLOAD, "comment": PAYLOAD}),
    );
    post(
        &format!("/api/policies/{p}/quotas/{p}/limits"),
        json!({"type": "MessageCount", "limit": 5, "comment": PAYLOAD}),
    );
    post(
        "/api/groups",
        json!({"name": "internal", "comment": PAYLOAD}),
    );
    post("/api/groups", json!({"name": PAYLOAD}));
    post(
        "/api/groups/internal/members",
        json!({"member": "10.0.0.0/8", "comment": PAYLOAD}),
    );
    // Fields with a syntax of their own refuse the payload, naming the field.
    for (path, body, field) in [
        (
            format!("/api/policies/{p}/members"),
            json!({"source": PAYLOAD}),
            "members[1].source",
        ),
        (
            format!("/api/policies/{p}/quotas"),
            json!({"name": "q2", "track": PAYLOAD, "period": 60, "verdict": "DEFER"}),
            "quotas[1].track",
        ),
    ] {
        let r = admin.call("POST", &path, t, Some(body));
        assert_eq!(r.status, 422, "POST {path}: {}", r.body);
        assert!(
            r.json()["field"]
                .as_str()
                .unwrap_or("")
                .ends_with(field.rsplit('.').next().unwrap()),
            "POST {path}: {}",
            r.body
        );
    }

    // Read back verbatim: the API, the store, the policy file.
    let get = |path: &str| {
        let r = admin.call("GET", path, t, None);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    };
    let policy = get(&format!("/api/policies/{p}"));
    assert_eq!(
        (&policy["name"], &policy["description"]),
        (&json!(PAYLOAD), &json!(PAYLOAD))
    );
    assert_eq!(
        get(&format!("/api/policies/{p}/members/0"))["comment"],
        PAYLOAD
    );
    let rule = get(&format!("/api/policies/{p}/access-control/{p}"));
    assert_eq!(
        (&rule["name"], &rule["data"], &rule["comment"]),
        (&json!(PAYLOAD), &json!(PAYLOAD), &json!(PAYLOAD))
    );
    let quota = get(&format!("/api/policies/{p}/quotas/{p}"));
    assert_eq!(
        (&quota["name"], &quota["data"], &quota["comment"]),
        (&json!(PAYLOAD), &json!(PAYLOAD), &json!(PAYLOAD))
    );
    assert_eq!(
        get(&format!("/api/policies/{p}/quotas/{p}/limits/0"))["comment"],
        PAYLOAD
    );
    assert_eq!(get("/api/groups/internal")["comment"], PAYLOAD);
    assert_eq!(get(&format!("/api/groups/{p}"))["name"], PAYLOAD);
    assert_eq!(get("/api/groups/internal/members/0")["comment"], PAYLOAD);
    let accounts = admin.rt.block_on(admin.store.accounts()).unwrap();
    assert_eq!(accounts.len(), 1, "the account table is still there");
    let file = get("/api/policy-file");
    let parsed = sluice_store::policy_file::parse("export", file["text"].as_str().unwrap())
        .expect("the export reads back");
    assert_eq!(parsed.def, admin.rt.block_on(admin.store.load()).unwrap());

    // Shown escaped on every page.
    let session = admin.login("alice", PASSWORD).unwrap();
    let pages = [
        "/policies".to_owned(),
        format!("/policies/{p}"),
        "/audit".to_owned(),
        "/policy-file".to_owned(),
        format!(
            "/explain?sender={}&recipient=r%40example.org",
            form_encode(PAYLOAD)
        ),
    ];
    for page in &pages {
        let r = admin.raw("GET", page, &[("Cookie", &session)], None);
        assert_eq!(r.status, 200, "{page}: {}", r.body);
        assert!(
            !r.body.contains("<script>alert"),
            "{page}: markup from a field:\n{}",
            r.body
        );
        assert!(
            !r.body.contains("<img src=x"),
            "{page}: markup from a field"
        );
        assert!(
            r.body.contains(ESCAPED),
            "{page}: the text is not shown:\n{}",
            r.body
        );
    }
    admin.stop();
}

#[test]
fn payloads_in_every_text_field_are_kept_verbatim_and_shown_as_text() {
    payloads_everywhere(Admin::sqlite());
}

#[test]
fn postgres_payloads_in_every_text_field_are_kept_verbatim_and_shown_as_text() {
    payloads_everywhere(Admin::postgres());
}
