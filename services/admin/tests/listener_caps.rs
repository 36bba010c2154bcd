//! The admin API with listener member specs and message caps, over real HTTP on 127.0.0.1
//! (SQLite): members with `server_port=` / `policy_context=` are accepted and bad values
//! refused naming the field; `[policy.message_caps]` goes through the policy-file import and
//! export; `POST /api/explain` takes the listener attributes and `recipient_count`.

mod common;

use common::Admin;
use serde_json::json;
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";

const FILE: &str = r#"[[policy]]
name = "submission"
priority = 20

  [[policy.member]]
  source = "server_port=587"

  [[policy.member]]
  source = "policy_context=submission"

  [policy.message_caps]
  max_message_size = "25MB"
  max_recipients = 2
"#;

#[test]
fn listener_specs_and_caps_through_the_api() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let token = admin.token("ci", "alice");
    let t = Some(token.as_str());

    let import = admin.call("PUT", "/api/policy-file", t, Some(json!({"text": FILE})));
    assert_eq!(import.status, 200, "{}", import.body);
    let export = admin.call("GET", "/api/policy-file", t, None);
    let text = export.json()["text"].as_str().unwrap().to_string();
    assert!(text.contains("max_recipients = 2"), "{text}");
    assert!(text.contains("max_message_size = \"25MB\""), "{text}");
    assert!(text.contains("source = \"server_port=587\""), "{text}");

    // A member with a listener spec; a bad port is refused naming the field.
    let ok = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "smtps", "priority": 30, "members": [{"source": "server_port=465, $*"}]})),
    );
    assert_eq!(ok.status, 201, "{}", ok.body);
    let bad = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "bad", "members": [{"source": "server_port=99999"}]})),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("port number"), "{}", bad.body);

    // Explain with the listener's attributes.
    let e = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(
            json!({"sender": "a@example.org", "recipient": "b@example.net",
                    "instance": "m1", "server_port": "587", "size": 30000000}),
        ),
    );
    assert_eq!(e.status, 200, "{}", e.body);
    let e = e.json();
    assert_eq!(
        e["action"], "552 5.3.4 Message size exceeds fixed limit of 25000000 bytes",
        "{e}"
    );
    let e = admin
        .call(
            "POST",
            "/api/explain",
            t,
            Some(
                json!({"sender": "a@example.org", "recipient": "b@example.net",
                        "instance": "m2", "policy_context": "submission"}),
            ),
        )
        .json();
    assert_eq!(e["action"], "DUNNO", "{e}");
    assert!(
        e["lines"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("recipient 1 of at most 2: fits")),
        "{e}"
    );
    let refused = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"sender": "a@example.org", "server_port": "x"})),
    );
    assert_eq!(refused.status, 422, "{}", refused.body);
    admin.stop();
}
