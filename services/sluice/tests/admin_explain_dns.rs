//! The admin service's Explain answers the DNS lookups of the request, as the policy
//! listeners do (issue 18): a real `sluice serve` with its admin service, a real DNS server
//! on 127.0.0.1, a CheckHelo policy that rejects HELO names that do not resolve.

mod admin_support;

use admin_support::{admin_with_token, import_policies, BIN};
use sluice_test_support::dns::{DnsServer, Rec};
use sluice_test_support::{free_port, http, Process};

const POLICY: &str = r#"
[[policy]]
name = "inbound"
priority = 10
  [[policy.member]]
  destination = "@example.com"
  [policy.checkhelo]
  reject_invalid = true
  reject_unresolvable = true
"#;

#[test]
fn explain_in_the_admin_service_answers_dns() {
    let dns = DnsServer::start();
    dns.add("mail.example.org", Rec::A("192.0.2.10".parse().unwrap()));
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    import_policies(&db, POLICY);
    let token = admin_with_token(&db);
    let (port, admin) = (free_port(), free_port());
    let args: Vec<String> = [
        "serve",
        "--database",
        &db,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        "off",
        "--admin-listen",
        &format!("127.0.0.1:{admin}"),
        "--dns-servers",
        &dns.addr().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let server = Process::start("sluice serve", BIN, &args, Some(port));
    let explain = |helo: &str| {
        let auth = format!("Bearer {token}");
        let body = serde_json::json!({
            "sender": "a@example.net",
            "recipient": "b@example.com",
            "client_address": "192.0.2.7",
            "helo_name": helo,
        })
        .to_string();
        let r = http(
            admin,
            "POST",
            "/api/explain",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            Some(&body),
        );
        assert_eq!(r.status, 200, "{}\n{}", r.body, server.log());
        r.json()
    };
    // Resolves: passes. Does not resolve (the DNS server answers NXDOMAIN): rejected, as the
    // policy listener would; without the answers both would look unanswered.
    let resolved = explain("mail.example.org");
    assert_eq!(resolved["action"], "DUNNO", "{resolved}");
    let unresolved = explain("nowhere.example.org");
    assert!(
        unresolved["action"].as_str().unwrap().starts_with("REJECT"),
        "{unresolved}"
    );
    assert!(
        dns.queries_for("nowhere.example.org") > 0,
        "the admin service asked the DNS server"
    );
}
