//! Who may do what, over real HTTP: every API path refuses requests without credentials
//! (the paths come from the OpenAPI document), viewers change nothing, domain admins see and
//! change only their domains' policies, sessions need their CSRF token for changes, logins
//! are throttled, and no password, hash or token ever appears in a reply.

mod common;

use std::sync::Arc;

use common::{cookie_of, hidden_csrf, Admin};
use serde_json::json;
use sluice_admin::{secret, AdminOptions};
use sluice_engine::{MemoryState, MemoryStateSettings, SystemClock};
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";
const VIEWER_PASSWORD: &str = "viewer password 12345";
const DORA_PASSWORD: &str = "dora's domain password";

/// Every (method, path) of the OpenAPI document, parameters filled in.
fn operations(admin: &Admin, token: &str) -> Vec<(String, String)> {
    let doc = admin.call("GET", "/api/openapi.json", Some(token), None);
    assert_eq!(doc.status, 200, "{}", doc.body);
    let doc = doc.json();
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let filled = path
            .replace("{policy}", "p")
            .replace("{quota}", "q")
            .replace("{rule}", "a")
            .replace("{group}", "g")
            .replace("{index}", "0")
            .replace("{id}", "1")
            .replace("{action}", "release");
        for method in ["get", "post", "put", "delete"] {
            if item.get(method).is_some() {
                ops.push((method.to_uppercase(), filled.clone()));
            }
        }
    }
    ops
}

fn setup() -> (Admin, String) {
    // With live counters (an in-process state), so the counter paths answer.
    let counters = Arc::new(MemoryState::new(
        Arc::new(SystemClock),
        MemoryStateSettings::default(),
    ));
    setup_on(Admin::sqlite_with(AdminOptions {
        counters: Some(counters),
        ..AdminOptions::default()
    }))
}

fn setup_on(admin: Admin) -> (Admin, String) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("victor", AdminRole::Viewer, &[], VIEWER_PASSWORD);
    admin.account(
        "dora",
        AdminRole::DomainAdmin,
        &["example.org"],
        DORA_PASSWORD,
    );
    let token = admin.token("ci", "alice");
    let t = Some(token.as_str());
    // One object of each kind, at the names `operations` fills in.
    for (path, body) in [
        (
            "/api/policies",
            json!({"name": "p", "members": [{"source": "any"}]}),
        ),
        (
            "/api/policies/p/quotas",
            json!({"name": "q", "track": "Sender:user@domain", "period": 60, "verdict": "DEFER"}),
        ),
        (
            "/api/policies/p/quotas/q/limits",
            json!({"type": "MessageCount", "limit": 5}),
        ),
        (
            "/api/policies/p/access-control",
            json!({"name": "a", "verdict": "OK"}),
        ),
        ("/api/groups", json!({"name": "g"})),
        ("/api/groups/g/members", json!({"member": "10.0.0.0/8"})),
        ("/api/policies/p/greylisting", json!({"period": 300})),
        (
            "/api/greylisting-whitelist",
            json!({"source": "SenderIP:192.0.2.0/24"}),
        ),
        ("/api/policies/p/checkspf", json!({"enabled": true})),
        (
            "/api/policies/p/message-caps",
            json!({"max_recipients": 50}),
        ),
        ("/api/policies/p/checkhelo", json!({"reject_invalid": true})),
        ("/api/checkhelo-blacklist", json!({"helo": "localhost"})),
        (
            "/api/checkhelo-whitelist",
            json!({"source": "SenderIP:192.0.2.0/24"}),
        ),
        (
            "/api/policies/p/accounting",
            json!({"name": "daily", "track": "Sender:user@domain", "period": "day"}),
        ),
    ] {
        let r = admin.call("POST", path, t, Some(body));
        assert_eq!(r.status, 201, "{path}: {}", r.body);
    }
    (admin, token)
}

/// A valid body for the collection `path` is in (or is).
fn body_for(path: &str) -> serde_json::Value {
    if path.starts_with("/api/policy-file") {
        return json!({"text": "[[policy]]\nname = \"zz\"\n"});
    }
    if path.starts_with("/api/held/sync") {
        return json!({"mta": "127.0.0.1", "queue": []});
    }
    if path.starts_with("/api/counters") {
        return json!({"key": "p/q/MessageCount/Sender:a@example.org"});
    }
    if path.starts_with("/api/greylisting-whitelist") {
        return json!({"source": "SenderDomain:example.net"});
    }
    if path.contains("/greylisting") {
        return json!({"period": 60});
    }
    if path.contains("/checkspf") {
        return json!({"reject_failed": true});
    }
    if path.contains("/message-caps") {
        return json!({"max_message_size": 1000000});
    }
    if path.starts_with("/api/checkhelo-blacklist") {
        return json!({"helo": "*.localdomain"});
    }
    if path.starts_with("/api/checkhelo-whitelist") {
        return json!({"source": "SenderIP:10.0.0.0/8"});
    }
    if path.contains("/checkhelo") {
        return json!({"reject_ip": true});
    }
    if path.contains("/accounting") {
        return json!({"name": "weekly", "track": "SASLUsername", "period": "week"});
    }
    let segments: Vec<&str> = path.split('/').collect();
    let kind = segments
        .iter()
        .rev()
        .find(|s| {
            [
                "members",
                "quotas",
                "limits",
                "access-control",
                "policies",
                "groups",
            ]
            .contains(s)
        })
        .copied()
        .unwrap_or("");
    match kind {
        "members" if path.starts_with("/api/groups") => json!({"member": "192.0.2.0/24"}),
        "members" => json!({"source": "@example.org"}),
        "quotas" => {
            json!({"name": "q", "track": "Sender:user@domain", "period": 120, "verdict": "DEFER"})
        }
        "limits" => json!({"type": "MessageCount", "limit": 9}),
        "access-control" => json!({"name": "a", "verdict": "OK"}),
        _ => json!({"name": "zz"}),
    }
}

#[test]
fn every_api_path_refuses_requests_without_credentials() {
    let (admin, token) = setup();
    let ops = operations(&admin, &token);
    assert_eq!(
        ops.len(),
        15 * 7 + 7 + 4 + 1 + 3,
        "15 resources x (list, create, get, put, delete, enable, disable), audit, explain, the policy file (export, preview, import), history, top senders, the counters (look-up, limited now, close, reset), the accounting report and held messages (list, act, sync)"
    );
    let bad_token = secret::new_token().unwrap();
    for (method, path) in &ops {
        let body = body_for(path).to_string();
        let none = admin.raw(
            method,
            path,
            &[("Content-Type", "application/json")],
            Some(&body),
        );
        assert_eq!(none.status, 401, "{method} {path}: {}", none.body);
        assert_eq!(none.header("www-authenticate"), Some("Bearer"));
        let bad = admin.call(method, path, Some(&bad_token), Some(body_for(path)));
        assert_eq!(bad.status, 401, "{method} {path} with an unknown token");
        let forged = admin.raw(
            method,
            path,
            &[("Cookie", "sluice_session=0123abcd")],
            Some(&body),
        );
        assert_eq!(forged.status, 401, "{method} {path} with a made-up session");
    }
    let doc = admin.raw("GET", "/api/openapi.json", &[], None);
    assert_eq!(doc.status, 401);
    // Nothing changed.
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(def.policies[0].name, "p");
    assert_eq!(def.groups.len(), 1);
    // A revoked token is refused from then on.
    admin.rt.block_on(admin.store.revoke_token("ci")).unwrap();
    assert_eq!(
        admin
            .call("GET", "/api/policies", Some(&token), None)
            .status,
        401
    );
    admin.stop();
}

#[test]
fn viewers_read_everything_and_change_nothing() {
    let (admin, token) = setup();
    let viewer = admin.token("ro", "victor");
    let before = admin.rt.block_on(admin.store.load()).unwrap();
    for (method, path) in operations(&admin, &token) {
        let r = admin.call(&method, &path, Some(&viewer), Some(body_for(&path)));
        if path == "/api/explain" || path == "/api/counters" || path == "/api/accounting/report" {
            // Explaining, looking up counters and reporting change nothing: viewers may (here
            // without the fields they need).
            assert_eq!(r.status, 422, "{method} {path}: {}", r.body);
        } else if path == "/api/held" {
            // Readable by viewers; this server keeps no ledger of held messages.
            assert_eq!(r.status, 503, "{method} {path}: {}", r.body);
        } else if method == "GET" || path == "/api/policy-file/preview" {
            // Nor does previewing an import.
            assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        } else {
            assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
            assert!(r.json()["error"].as_str().unwrap().contains("viewer"));
        }
    }
    assert_eq!(admin.rt.block_on(admin.store.load()).unwrap(), before);
    admin.stop();
}

#[test]
fn domain_admins_see_and_change_only_their_domains() {
    let (admin, token) = setup();
    let dora = admin.token("dora-cli", "dora");
    let d = Some(dora.as_str());
    // Not in their domains: alice's policy `p` (member `any`) and the groups.
    assert_eq!(admin.call("GET", "/api/policies/p", d, None).status, 403);
    assert_eq!(
        admin.call("GET", "/api/policies/p/members", d, None).status,
        403
    );
    assert_eq!(
        admin
            .call("POST", "/api/policies/p/disable", d, None)
            .status,
        403
    );
    assert_eq!(admin.call("DELETE", "/api/policies/p", d, None).status, 403);
    assert_eq!(admin.call("GET", "/api/groups", d, None).status, 403);
    assert_eq!(
        admin
            .call("POST", "/api/groups", d, Some(json!({"name": "mine"})))
            .status,
        403
    );
    assert_eq!(
        admin.call("GET", "/api/policies", d, None).json(),
        json!([])
    );
    // A policy needs a member in their domains.
    let bare = admin.call("POST", "/api/policies", d, Some(json!({"name": "bare"})));
    assert_eq!(bare.status, 403, "{}", bare.body);
    let other = admin.call(
        "POST",
        "/api/policies",
        d,
        Some(json!({"name": "theirs", "members": [{"source": "@example.com"}]})),
    );
    assert_eq!(other.status, 403, "{}", other.body);
    let own = admin.call(
        "POST",
        "/api/policies",
        d,
        Some(json!({"name": "org-out", "members": [{"source": "@example.org"}]})),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    let q = admin.call(
        "POST",
        "/api/policies/org-out/quotas",
        d,
        Some(json!({"name": "q", "track": "Sender:user@domain", "period": 60, "verdict": "DEFER"})),
    );
    assert_eq!(q.status, 201, "{}", q.body);
    // A member reaching beyond the domain would take the policy out of their hands.
    let wide = admin.call(
        "POST",
        "/api/policies/org-out/members",
        d,
        Some(json!({"source": "10.0.0.0/8"})),
    );
    assert_eq!(wide.status, 403, "{}", wide.body);
    let list = admin.call("GET", "/api/policies", d, None).json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["name"], "org-out");
    // Their audit trail is their own changes.
    let audit = admin.call("GET", "/api/audit", d, None).json();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    assert!(audit
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["actor"] == "dora"));
    // The admin sees both.
    assert_eq!(
        admin
            .call("GET", "/api/policies", Some(&token), None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        2
    );
    admin.stop();
}

#[test]
fn sessions_need_their_csrf_token_for_changes() {
    sessions_and_csrf(setup());
}

#[test]
fn postgres_sessions_need_their_csrf_token_for_changes() {
    sessions_and_csrf(setup_on(Admin::postgres()));
}

#[test]
fn postgres_domain_admins_and_viewers() {
    let (admin, _token) = setup_on(Admin::postgres());
    let viewer = admin.token("ro", "victor");
    let dora = admin.token("dora-cli", "dora");
    assert_eq!(
        admin
            .call("GET", "/api/policies", Some(&viewer), None)
            .status,
        200
    );
    assert_eq!(
        admin
            .call("POST", "/api/policies/p/disable", Some(&viewer), None)
            .status,
        403
    );
    assert_eq!(
        admin
            .call("GET", "/api/policies/p", Some(&dora), None)
            .status,
        403
    );
    let own = admin.call(
        "POST",
        "/api/policies",
        Some(&dora),
        Some(json!({"name": "org-out", "members": [{"source": "@example.org"}]})),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    assert_eq!(
        admin
            .call("GET", "/api/policies", Some(&dora), None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );
    admin.stop();
}

fn sessions_and_csrf((admin, _token): (Admin, String)) {
    let session = admin.login("alice", PASSWORD).unwrap();
    // The login reply's cookie attributes.
    let page = admin.raw("GET", "/policies", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    let csrf = hidden_csrf(&page.body).expect("forms carry the CSRF token");
    let body = json!({"name": "via-session"}).to_string();
    let json_cookie = [
        ("Cookie", session.as_str()),
        ("Content-Type", "application/json"),
    ];
    let none = admin.raw("POST", "/api/policies", &json_cookie, Some(&body));
    assert_eq!(none.status, 403, "{}", none.body);
    assert!(none.json()["error"].as_str().unwrap().contains("CSRF"));
    let wrong = admin.raw(
        "POST",
        "/api/policies",
        &[json_cookie[0], json_cookie[1], ("X-CSRF-Token", "0000")],
        Some(&body),
    );
    assert_eq!(wrong.status, 403);
    let right = admin.raw(
        "POST",
        "/api/policies",
        &[
            json_cookie[0],
            json_cookie[1],
            ("X-CSRF-Token", csrf.as_str()),
        ],
        Some(&body),
    );
    assert_eq!(right.status, 201, "{}", right.body);
    // Reads need no token.
    assert_eq!(
        admin
            .raw("GET", "/api/policies", &[json_cookie[0]], None)
            .status,
        200
    );
    // Forms: the toggle without, with a wrong, and with the right token.
    let form = |csrf: &str| format!("csrf={csrf}&object=policy&disabled=true");
    let form_headers = [
        ("Cookie", session.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = admin.raw(
        "POST",
        "/policies/p/toggle",
        &form_headers,
        Some("object=policy&disabled=true"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let r = admin.raw(
        "POST",
        "/policies/p/toggle",
        &form_headers,
        Some(&form("bad")),
    );
    assert_eq!(r.status, 403);
    assert!(!admin.rt.block_on(admin.store.load()).unwrap().policies[0].disabled);
    let r = admin.raw(
        "POST",
        "/policies/p/toggle",
        &form_headers,
        Some(&form(&csrf)),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(admin.rt.block_on(admin.store.load()).unwrap().policies[0].disabled);
    // Logging out ends the session.
    let out = admin.raw(
        "POST",
        "/logout",
        &form_headers,
        Some(&format!("csrf={csrf}")),
    );
    assert_eq!(out.status, 303);
    assert_eq!(
        admin
            .raw("GET", "/api/policies", &[json_cookie[0]], None)
            .status,
        401
    );
    assert_eq!(
        admin
            .raw("GET", "/policies", &[json_cookie[0]], None)
            .status,
        303
    );
    admin.stop();
}

#[test]
fn login_sets_a_strict_http_only_cookie_and_refuses_forged_forms() {
    let (admin, _token) = setup();
    let form = admin.raw("GET", "/login", &[], None);
    let csrf = hidden_csrf(&form.body).unwrap();
    let login_cookie = cookie_of(&form, "sluice_login").unwrap();
    let body = format!(
        "name=alice&password={}&csrf={csrf}",
        common::form_encode(PASSWORD)
    );
    // Without the form's cookie (a form posted from another site): refused.
    let forged = admin.raw(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(&body),
    );
    assert_eq!(forged.status, 403, "{}", forged.body);
    assert!(cookie_of(&forged, "sluice_session").is_none());
    let ok = admin.raw(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &login_cookie),
        ],
        Some(&body),
    );
    assert_eq!(ok.status, 303, "{}", ok.body);
    let set = ok
        .headers_named("set-cookie")
        .into_iter()
        .find(|c| c.starts_with("sluice_session="))
        .unwrap()
        .to_owned();
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    assert_eq!(ok.header("location"), Some("/policies"));
    // Wrong password, unknown account: the same answer.
    let wrong = admin.login("alice", "not the password at all").unwrap_err();
    let nobody = admin
        .login("nobody", "not the password at all")
        .unwrap_err();
    assert_eq!((wrong.status, nobody.status), (401, 401));
    assert!(wrong.body.contains("Wrong account name or password"));
    assert!(nobody.body.contains("Wrong account name or password"));
    admin.stop();
}

#[test]
fn login_throttling_engages_after_repeated_failures() {
    let (admin, _token) = setup();
    for i in 0..sluice_admin::throttle::MAX_FAILURES {
        let r = admin.login("alice", "wrong password number x").unwrap_err();
        assert_eq!(r.status, 401, "attempt {i}");
    }
    // Now even the right password is refused, for the account and from this address.
    let r = admin.login("alice", PASSWORD).unwrap_err();
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.header("retry-after").is_some());
    assert!(r.body.contains("Too many failed logins"));
    let other = admin.login("victor", VIEWER_PASSWORD).unwrap_err();
    assert_eq!(other.status, 429, "the client address is throttled too");
    admin.stop();
}

#[test]
fn no_password_hash_or_token_in_any_reply() {
    let (admin, token) = setup();
    let viewer = admin.token("ro", "victor");
    let session = admin.login("alice", PASSWORD).unwrap();
    for (method, path) in operations(&admin, &token) {
        admin.call(&method, &path, Some(&token), Some(body_for(&path)));
    }
    for page in ["/policies", "/policies/p", "/audit", "/login"] {
        admin.raw("GET", page, &[("Cookie", &session)], None);
    }
    let accounts = admin.rt.block_on(admin.store.accounts()).unwrap();
    let mut secrets: Vec<String> = vec![
        PASSWORD.into(),
        VIEWER_PASSWORD.into(),
        DORA_PASSWORD.into(),
        token.clone(),
        viewer.clone(),
        secret::digest(&token),
        "$argon2".into(),
    ];
    secrets.extend(accounts.iter().map(|a| a.password_hash.clone()));
    let session_value = session.split_once('=').unwrap().1.to_owned();
    let replies = admin.replies.borrow();
    assert!(replies.len() > 50);
    for r in replies.iter() {
        for s in &secrets {
            assert!(
                !r.body.contains(s.as_str()),
                "a secret in a reply: {}",
                r.body
            );
        }
        // The session cookie appears only in the login reply's Set-Cookie header.
        assert!(!r.body.contains(&session_value));
    }
    drop(replies);
    admin.stop();
}
