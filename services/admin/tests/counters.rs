//! `/api/counters...` and the Counters page over a real in-process counter state (the one
//! `sluice serve` counts in, its clock injected): the level of a key and when it frees up,
//! who is limited now, who is close, a reset that frees the key and is audited; validation
//! errors naming the field; authorisation (no credentials 401, viewers read but may not
//! reset, a domain admin sees and resets only its domains' counters, a session without the
//! CSRF token is refused); payloads shown escaped; 503 where no counters run.

mod common;

use std::sync::Arc;

use common::{form_encode, hidden_csrf, Admin};
use serde_json::{json, Value};
use sluice_admin::AdminOptions;
use sluice_engine::compile::LimitKind;
use sluice_engine::engine::counter_key;
use sluice_engine::track::Track;
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, ManualClock, MemoryState, MemoryStateSettings, OpKind, PolicyRequest,
    State,
};
use sluice_store::AdminRole;

const PASSWORD: &str = "a long enough admin password";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

struct Setup {
    admin: Admin,
    state: Arc<MemoryState>,
    clock: Arc<ManualClock>,
}

impl Setup {
    fn new() -> Setup {
        // The counters' clock starts at the wall clock (the API dates listings by it) and
        // is moved by hand.
        let clock = Arc::new(ManualClock::new(now_ms()));
        let state = Arc::new(MemoryState::new(
            clock.clone(),
            MemoryStateSettings::default(),
        ));
        let admin = Admin::sqlite_with(AdminOptions {
            counters: Some(state.clone()),
            ..AdminOptions::default()
        });
        Setup {
            admin,
            state,
            clock,
        }
    }

    /// One message counted on `key` (limit `limit`, one-hour window); whether admitted.
    fn take(&self, key: &str, limit: u64) -> bool {
        let batch = CounterBatch {
            groups: vec![vec![CounterOp {
                key: key.into(),
                limit,
                window: WindowSpec::new(3_600_000, 60),
                kind: OpKind::Take { cost: 1 },
            }]],
            ..CounterBatch::default()
        };
        let reply = self.state.apply_in_place(&batch).unwrap().unwrap();
        reply.groups[0][0].outcome.is_admitted()
    }
}

fn ok(admin: &Admin, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
    let r = admin.call(method, path, Some(token), body);
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    r.json()
}

fn keys(rows: &Value) -> Vec<String> {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_owned())
        .collect()
}

fn sender_key(sender: &str) -> String {
    counter_key(
        "org",
        "per-sender",
        LimitKind::MessageCount,
        &format!("Sender:{sender}"),
    )
}

fn ip_key(ip: &str) -> String {
    let text = format!("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address={ip}\n");
    let req = PolicyRequest::parse_text(&text).unwrap();
    let track = Track::parse("SenderIP:/24").unwrap().key(&req);
    counter_key("wide", "per-net", LimitKind::MessageCount, &track)
}

#[test]
fn counters_are_listed_looked_up_reset_and_audited() {
    let s = Setup::new();
    let admin = &s.admin;
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("vic", AdminRole::Viewer, &[], PASSWORD);
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    admin.account("olga", AdminRole::DomainAdmin, &["example.com"], PASSWORD);
    let alice = admin.token("a", "alice");
    let vic = admin.token("v", "vic");
    let dora = admin.token("d", "dora");
    let olga = admin.token("o", "olga");

    for (policy, member, quota, track, limit) in [
        ("org", "@example.org", "per-sender", "Sender:user@domain", 3),
        ("wide", "any", "per-net", "SenderIP:/24", 10),
    ] {
        ok(
            admin,
            "POST",
            "/api/policies",
            &alice,
            Some(json!({"name": policy, "priority": 10, "members": [{"source": member}]})),
        );
        ok(
            admin,
            "POST",
            &format!("/api/policies/{policy}/quotas"),
            &alice,
            Some(json!({"name": quota, "track": track, "period": 3600, "verdict": "DEFER"})),
        );
        ok(
            admin,
            "POST",
            &format!("/api/policies/{policy}/quotas/{quota}/limits"),
            &alice,
            Some(json!({"type": "MessageCount", "limit": limit})),
        );
    }

    let (busy, calm, net) = (
        sender_key("busy@example.org"),
        sender_key("calm@example.org"),
        ip_key("192.0.2.9"),
    );
    for i in 0..3 {
        assert!(s.take(&busy, 3), "message {i}");
    }
    let refused_at = now_ms();
    s.clock.set_ms(refused_at);
    assert!(!s.take(&busy, 3), "the 4th is refused");
    assert!(s.take(&calm, 3));
    for _ in 0..8 {
        assert!(s.take(&net, 10));
    }
    s.clock.advance_ms(2_000);

    // Limited now: the refused sender, full, with when it gets room again.
    let limited = ok(admin, "GET", "/api/counters/limited", &alice, None);
    assert_eq!(keys(&limited), std::slice::from_ref(&busy), "{limited}");
    let row = &limited[0];
    assert_eq!(row["policy"], "org");
    assert_eq!(row["quota"], "per-sender");
    assert_eq!(row["limit_type"], "MessageCount");
    assert_eq!(row["track"], "Sender:busy@example.org");
    assert_eq!(
        (row["used"].as_u64(), row["limit"].as_u64()),
        (Some(3), Some(3))
    );
    assert_eq!(row["percent"], 100);
    let at = row["refused_at_ms"].as_u64().unwrap();
    assert!(at >= refused_at && at <= refused_at + 10, "{row}");
    let room = row["room_at_ms"].as_u64().unwrap();
    assert!(
        room > now_ms() + 3_000_000,
        "room again after the hour: {row}"
    );

    // Close: the full one first, then the one at 80 %; the one at a third is not.
    let close = ok(admin, "GET", "/api/counters/close", &alice, None);
    assert_eq!(keys(&close), [busy.clone(), net.clone()], "{close}");
    let close90 = ok(admin, "GET", "/api/counters/close?percent=90", &alice, None);
    assert_eq!(keys(&close90), std::slice::from_ref(&busy), "{close90}");

    // Look-ups: by sender, by client address (its /24), a key counting nothing.
    let found = ok(
        admin,
        "GET",
        "/api/counters?sender=busy@example.org",
        &alice,
        None,
    );
    assert_eq!(keys(&found), std::slice::from_ref(&busy), "{found}");
    assert_eq!(found[0]["used"], 3);
    let found = ok(
        admin,
        "GET",
        "/api/counters?client_address=192.0.2.200",
        &alice,
        None,
    );
    assert_eq!(keys(&found), std::slice::from_ref(&net), "{found}");
    assert_eq!(found[0]["used"], 8);
    let found = ok(
        admin,
        "GET",
        "/api/counters?sender=nobody@example.org",
        &alice,
        None,
    );
    assert_eq!(found[0]["used"], 0);
    assert_eq!(
        found[0]["room_at_ms"].as_u64().map(|ms| ms <= now_ms()),
        Some(true)
    );

    // Validation errors name the field.
    for (path, field) in [
        ("/api/counters", "sender"),
        ("/api/counters?client_address=not-an-ip", "client_address"),
        ("/api/counters/limited?minutes=0", "minutes"),
        ("/api/counters/limited?minutes=1441", "minutes"),
        ("/api/counters/close?percent=101", "percent"),
        ("/api/counters/close?percent=0", "percent"),
    ] {
        let r = admin.call("GET", path, Some(&alice), None);
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{path}");
    }
    for (body, field) in [
        (json!({"key": "not a counter key"}), "key"),
        (json!({"key": ""}), "key"),
        (json!({"key": busy, "extra": 1}), "extra"),
        (json!({}), "key"),
    ] {
        let r = admin.call("POST", "/api/counters/reset", Some(&alice), Some(body));
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.json()["field"], field);
    }

    // Every path needs credentials.
    for (method, path) in [
        ("GET", "/api/counters?sender=busy@example.org"),
        ("GET", "/api/counters/limited"),
        ("GET", "/api/counters/close"),
        ("POST", "/api/counters/reset"),
    ] {
        let r = admin.call(method, path, None, Some(json!({"key": busy})));
        assert_eq!(r.status, 401, "{method} {path}");
    }

    // A viewer reads, and may not reset.
    assert_eq!(
        keys(&ok(admin, "GET", "/api/counters/limited", &vic, None)),
        std::slice::from_ref(&busy)
    );
    let r = admin.call(
        "POST",
        "/api/counters/reset",
        Some(&vic),
        Some(json!({"key": busy})),
    );
    assert_eq!(r.status, 403, "{}", r.body);

    // Domain admins: their domains' counters only.
    assert_eq!(
        keys(&ok(admin, "GET", "/api/counters/close", &dora, None)),
        std::slice::from_ref(&busy)
    );
    assert!(keys(&ok(admin, "GET", "/api/counters/limited", &olga, None)).is_empty());
    assert!(keys(&ok(
        admin,
        "GET",
        "/api/counters?client_address=192.0.2.9",
        &dora,
        None
    ))
    .is_empty());
    for (token, key) in [(&olga, &busy), (&dora, &net)] {
        let r = admin.call(
            "POST",
            "/api/counters/reset",
            Some(token),
            Some(json!({"key": key})),
        );
        assert_eq!(r.status, 403, "{key}: {}", r.body);
    }
    assert_eq!(s.state.counter_info(&busy, 3).used, 3, "nothing was reset");

    // A session must send its CSRF token.
    let cookie = admin.login("dora", PASSWORD).expect("dora logs in");
    let r = admin.raw(
        "POST",
        "/api/counters/reset",
        &[("Cookie", &cookie), ("Content-Type", "application/json")],
        Some(&json!({"key": busy}).to_string()),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"), "{}", r.body);
    assert_eq!(s.state.counter_info(&busy, 3).used, 3, "nothing was reset");

    // The admin resets the sender: free again, off the lists, audited.
    let done = ok(
        admin,
        "POST",
        "/api/counters/reset",
        &alice,
        Some(json!({"key": busy})),
    );
    assert_eq!(done, json!({"key": busy, "used_before": 3}));
    assert!(keys(&ok(admin, "GET", "/api/counters/limited", &alice, None)).is_empty());
    assert_eq!(
        keys(&ok(admin, "GET", "/api/counters/close", &alice, None)),
        std::slice::from_ref(&net)
    );
    assert!(s.take(&busy, 3), "the next message is admitted");
    let audit = ok(admin, "GET", "/api/audit", &alice, None);
    let entry = &audit[0];
    assert_eq!(entry["action"], "reset", "{audit}");
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["object"], format!("counters/{busy}"));
    assert_eq!(entry["before"], json!({"used": 3}));
    assert_eq!(entry["after"], json!({"used": 0}));
    s.admin.stop();
}

#[test]
fn the_counters_page_lists_resets_and_escapes() {
    let s = Setup::new();
    let admin = &s.admin;
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    admin.account("vic", AdminRole::Viewer, &[], PASSWORD);
    let dora = admin.token("d", "dora");
    ok(
        admin,
        "POST",
        "/api/policies",
        &dora,
        Some(json!({"name": "org", "members": [{"source": "@example.org"}]})),
    );
    ok(
        admin,
        "POST",
        "/api/policies/org/quotas",
        &dora,
        Some(
            json!({"name": "per-sender", "track": "Sender:user@domain", "period": 3600, "verdict": "DEFER"}),
        ),
    );
    ok(
        admin,
        "POST",
        "/api/policies/org/quotas/per-sender/limits",
        &dora,
        Some(json!({"type": "MessageCount", "limit": 1})),
    );
    let payload = "<script>alert(1)</script>'--@example.org";
    let key = sender_key(&payload.to_ascii_lowercase());
    assert!(s.take(&key, 1));
    assert!(!s.take(&key, 1));

    let cookie = admin.login("dora", PASSWORD).unwrap();
    let page = admin.raw("GET", "/counters", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Limited now"), "{}", page.body);
    assert!(!page.body.contains("<script>"), "escaped: {}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("action=\"/counters/reset\""),
        "a Reset button"
    );
    let looked = admin.raw(
        "GET",
        &format!("/counters?sender={}", form_encode(payload)),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(looked.status, 200, "{}", looked.body);
    assert!(
        !looked.body.contains("<script>"),
        "escaped: {}",
        looked.body
    );
    assert!(looked.body.contains("1 / 1"), "{}", looked.body);

    // Wrong CSRF token: refused, nothing reset.
    let form = format!("csrf=wrong&key={}", form_encode(&key));
    let r = admin.raw(
        "POST",
        "/counters/reset",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&form),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(s.state.counter_info(&key, 1).used, 1);

    // With the page's token: reset, back to the page with a notice.
    let csrf = hidden_csrf(&page.body).unwrap();
    let form = format!("csrf={csrf}&key={}", form_encode(&key));
    let r = admin.raw(
        "POST",
        "/counters/reset",
        &[
            ("Cookie", &cookie),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&form),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.headers_named("location").pop().unwrap();
    assert!(to.starts_with("/counters?reset="), "{to}");
    assert_eq!(s.state.counter_info(&key, 1).used, 0);
    let after = admin.raw("GET", to, &[("Cookie", &cookie)], None);
    assert!(
        after
            .body
            .contains("reset: its next request starts from zero"),
        "{}",
        after.body
    );
    assert!(after.body.contains("Nobody was refused"), "{}", after.body);

    // A viewer sees no Reset button.
    assert!(s.take(&key, 1));
    assert!(!s.take(&key, 1));
    let vic = admin.login("vic", PASSWORD).unwrap();
    let page = admin.raw("GET", "/counters", &[("Cookie", &vic)], None);
    assert!(page.body.contains("Limited now"));
    assert!(
        !page.body.contains("action=\"/counters/reset\""),
        "{}",
        page.body
    );
    s.admin.stop();
}

#[test]
fn without_running_counters_the_api_says_so() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let alice = admin.token("a", "alice");
    for path in [
        "/api/counters/limited",
        "/api/counters/close",
        "/api/counters?sender=a@b.c",
    ] {
        let r = admin.call("GET", path, Some(&alice), None);
        assert_eq!(r.status, 503, "{path}: {}", r.body);
        assert!(
            r.body.contains("live counters are not available"),
            "{}",
            r.body
        );
    }
    admin.stop();
}
