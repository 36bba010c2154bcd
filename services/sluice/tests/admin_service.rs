//! The admin service in a real `sluice serve`: accounts and tokens made with `sluice admin`
//! (passwords on standard input, never as flags), a policy created through the REST API
//! over 127.0.0.1 that then limits real policy requests over TCP (N admitted, N+1
//! deferred), a quota disabled through the API that stops limiting, and no secret in the
//! server's log.

mod admin_support;

use admin_support::*;
use std::time::Duration;

use serde_json::json;
use sluice_test_support::{
    ask_blocking, free_port, http, output_text, start_front, wait_listening,
};

fn api(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let body = body.to_string();
    let r = http(
        port,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        Some(&body),
    );
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    r.json()
}

fn request(sender: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nsender={sender}\nrecipient=rcpt@example.net\ninstance={}",
        free_port()
    )
}

#[test]
fn a_policy_made_through_the_api_limits_a_running_serve() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());

    let token = admin_with_token(&db);

    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let mut serve = start_front(
        BIN,
        "sluice serve with the admin service",
        "serve",
        &["--database", &db, "--admin-listen", &admin_listen],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    assert_eq!(ask_blocking(serve.port, &request("a@example.org")), "DUNNO");

    api(
        admin_port,
        "POST",
        "/api/policies",
        &token,
        json!({
            "name": "limit-senders", "priority": 10, "members": [{"source": "@example.org"}]
        }),
    );
    api(
        admin_port,
        "POST",
        "/api/policies/limit-senders/quotas",
        &token,
        json!({
            "name": "per-sender", "track": "Sender:user@domain", "period": 3600,
            "verdict": "DEFER", "data": "4.7.1 Too many messages"
        }),
    );
    api(
        admin_port,
        "POST",
        "/api/policies/limit-senders/quotas/per-sender/limits",
        &token,
        json!({
            "type": "MessageCount", "limit": 3
        }),
    );
    wait_until_served(serve.metrics, &db);

    // Explain asks the running engine and charges nothing: five explanations, then the
    // three messages the limit admits are still admitted.
    for _ in 0..5 {
        let e = api(
            admin_port,
            "POST",
            "/api/explain",
            &token,
            json!({"sender": "b@example.org"}),
        );
        assert_eq!(e["action"], "DUNNO", "{e}");
        assert_eq!(e["live_counters"], true);
        assert!(e.to_string().contains("limit-senders"), "{e}");
    }
    for i in 0..3 {
        assert_eq!(
            ask_blocking(serve.port, &request("b@example.org")),
            "DUNNO",
            "message {i}"
        );
    }
    let refused = ask_blocking(serve.port, &request("b@example.org"));
    assert!(
        refused.starts_with("DEFER 4.7.1 Too many messages"),
        "the 4th: {refused}"
    );
    assert_eq!(
        ask_blocking(serve.port, &request("c@example.com")),
        "DUNNO",
        "not a member"
    );

    // Disabling the quota through the API stops the limiting.
    api(
        admin_port,
        "POST",
        "/api/policies/limit-senders/quotas/per-sender/disable",
        &token,
        json!({}),
    );
    wait_until_served(serve.metrics, &db);
    assert_eq!(ask_blocking(serve.port, &request("b@example.org")), "DUNNO");

    // The audit trail has the four changes.
    let audit = http(
        admin_port,
        "GET",
        "/api/audit",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    )
    .json();
    assert_eq!(audit.as_array().unwrap().len(), 4, "{audit}");

    serve.process.terminate(Duration::from_secs(10));
    let log = serve.process.log();
    assert!(log.contains("Admin service listening"), "{log}");
    assert!(log.contains("Admin change"), "{log}");
    for secret in [PASSWORD, token.as_str(), "$argon2"] {
        assert!(!log.contains(secret), "a secret in the log: {log}");
    }
}

#[test]
fn accounts_and_tokens_are_managed_on_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());
    let add = |args: &[&str], stdin: &str| {
        let mut all = vec!["admin", "user", "add"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--database", &db]);
        sluice_with_stdin(&all, stdin)
    };
    let out = add(&["alice", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert!(out.status.success(), "{}", output_text(&out));
    let out = add(&["bob", "--role", "viewer"], "short\n");
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("at least 12 characters"),
        "{}",
        output_text(&out)
    );
    let out = add(
        &["dora", "--role", "domain-admin"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        output_text(&out).contains("needs at least one --domain"),
        "{}",
        output_text(&out)
    );
    let out = add(
        &["vic", "--role", "viewer", "--domain", "example.org"],
        &format!("{PASSWORD}\n"),
    );
    assert!(
        output_text(&out).contains("only for --role domain-admin"),
        "{}",
        output_text(&out)
    );
    let out = add(
        &["dora", "--role", "domain-admin", "--domain", "Example.ORG"],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let out = add(&["alice", "--role", "admin"], &format!("{PASSWORD}\n"));
    assert!(
        output_text(&out).contains("exists already"),
        "{}",
        output_text(&out)
    );
    // No password flag exists.
    let out = sluice_with_stdin(
        &[
            "admin",
            "user",
            "add",
            "eve",
            "--role",
            "admin",
            "--password",
            "x",
            "--database",
            &db,
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));

    let out = sluice_with_stdin(&["admin", "user", "list", "--database", &db], "");
    let list = String::from_utf8(out.stdout).unwrap();
    assert_eq!(list, "alice\tadmin\ndora\tdomain-admin\texample.org\n");

    let out = sluice_with_stdin(
        &[
            "admin",
            "token",
            "add",
            "ci",
            "--user",
            "alice",
            "--database",
            &db,
        ],
        "",
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let out = sluice_with_stdin(
        &[
            "admin",
            "token",
            "add",
            "ci2",
            "--user",
            "nobody",
            "--database",
            &db,
        ],
        "",
    );
    assert!(
        output_text(&out).contains("no account named \"nobody\""),
        "{}",
        output_text(&out)
    );
    let out = sluice_with_stdin(&["admin", "token", "list", "--database", &db], "");
    let listed = output_text(&out);
    assert_eq!(listed, "ci\talice\n");
    assert!(!listed.contains(&token));
    let out = sluice_with_stdin(&["admin", "token", "revoke", "ci", "--database", &db], "");
    assert!(out.status.success(), "{}", output_text(&out));
    let out = sluice_with_stdin(&["admin", "token", "revoke", "ci", "--database", &db], "");
    assert!(!out.status.success());

    let out = sluice_with_stdin(
        &["admin", "user", "passwd", "alice", "--database", &db],
        "another long password\n",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let out = sluice_with_stdin(&["admin", "user", "remove", "dora", "--database", &db], "");
    assert!(out.status.success(), "{}", output_text(&out));
    let out = sluice_with_stdin(&["admin", "user", "list", "--database", &db], "");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "alice\tadmin\n");
}
