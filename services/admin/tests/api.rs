//! The admin service's JSON API over real HTTP on 127.0.0.1, on SQLite and PostgreSQL:
//! every resource created, read, updated, enabled, disabled and deleted; validation errors
//! naming the field; each change in the audit trail with who, where from, before and after;
//! the policies as `sluice policy export` would see them.

mod common;

use common::{form_encode, Admin};
use serde_json::{json, Value};
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";

fn crud_and_audit(admin: &Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let t = admin.token("ci", "alice");
    let t = Some(t.as_str());

    // Policies.
    let created = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "outbound", "priority": 20, "description": "mail we send"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.json(),
        json!({"name": "outbound", "priority": 20, "description": "mail we send", "disabled": false, "monitor": false})
    );
    let list = admin.call("GET", "/api/policies", t, None);
    assert_eq!(list.status, 200);
    assert_eq!(list.json().as_array().unwrap().len(), 1);
    let dup = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "outbound"})),
    );
    assert_eq!(dup.status, 409, "{}", dup.body);
    assert_eq!(dup.json()["field"], "name");

    // Members (by position).
    let m = admin.call(
        "POST",
        "/api/policies/outbound/members",
        t,
        Some(json!({"source": "@example.org", "comment": "ours"})),
    );
    assert_eq!(m.status, 201, "{}", m.body);
    let m2 = admin.call(
        "POST",
        "/api/policies/outbound/members",
        t,
        Some(json!({"source": "10.0.0.0/8"})),
    );
    assert_eq!(m2.status, 201, "{}", m2.body);
    let put = admin.call(
        "PUT",
        "/api/policies/outbound/members/1",
        t,
        Some(json!({"source": "192.168.0.0/16", "destination": "any"})),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["source"], "192.168.0.0/16");
    assert_eq!(
        admin
            .call("GET", "/api/policies/outbound/members/1", t, None)
            .json()["destination"],
        "any"
    );
    assert_eq!(
        admin
            .call("GET", "/api/policies/outbound/members/7", t, None)
            .status,
        404
    );
    assert_eq!(
        admin
            .call("DELETE", "/api/policies/outbound/members/1", t, None)
            .status,
        204
    );
    assert_eq!(
        admin
            .call("GET", "/api/policies/outbound/members", t, None)
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Quotas and limits.
    let q = admin.call(
        "POST",
        "/api/policies/outbound/quotas",
        t,
        Some(json!({"name": "per-sender", "track": "Sender:user@domain", "period": 3600, "verdict": "DEFER", "data": "4.7.1 Slow down"})),
    );
    assert_eq!(q.status, 201, "{}", q.body);
    let l = admin.call(
        "POST",
        "/api/policies/outbound/quotas/per-sender/limits",
        t,
        Some(json!({"type": "MessageCount", "limit": 100})),
    );
    assert_eq!(l.status, 201, "{}", l.body);
    assert_eq!(
        l.json(),
        json!({"type": "MessageCount", "limit": 100, "disabled": false, "comment": null})
    );
    let q2 = admin.call(
        "PUT",
        "/api/policies/outbound/quotas/per-sender",
        t,
        Some(json!({"name": "per-sender", "track": "Sender:user@domain", "period": 7200, "verdict": "DEFER"})),
    );
    assert_eq!(q2.status, 200, "{}", q2.body);
    assert_eq!(
        admin
            .call(
                "GET",
                "/api/policies/outbound/quotas/per-sender/limits",
                t,
                None
            )
            .json()
            .as_array()
            .unwrap()
            .len(),
        1,
        "updating a quota keeps its limits"
    );
    let off = admin.call(
        "POST",
        "/api/policies/outbound/quotas/per-sender/limits/0/disable",
        t,
        None,
    );
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["disabled"], true);
    let on = admin.call(
        "POST",
        "/api/policies/outbound/quotas/per-sender/limits/0/enable",
        t,
        None,
    );
    assert_eq!(on.json()["disabled"], false);

    // Access control.
    let a = admin.call(
        "POST",
        "/api/policies/outbound/access-control",
        t,
        Some(json!({"name": "deny", "verdict": "REJECT", "data": "5.7.1 No"})),
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        admin
            .call(
                "POST",
                "/api/policies/outbound/access-control/deny/disable",
                t,
                None
            )
            .json()["disabled"],
        true
    );
    assert_eq!(
        admin
            .call(
                "DELETE",
                "/api/policies/outbound/access-control/deny",
                t,
                None
            )
            .status,
        204
    );

    // Groups and their members.
    let g = admin.call("POST", "/api/groups", t, Some(json!({"name": "internal"})));
    assert_eq!(g.status, 201, "{}", g.body);
    let gm = admin.call(
        "POST",
        "/api/groups/internal/members",
        t,
        Some(json!({"member": "10.0.0.0/8"})),
    );
    assert_eq!(gm.status, 201, "{}", gm.body);
    assert_eq!(
        admin
            .call("GET", "/api/groups/internal/members/0", t, None)
            .json()["member"],
        "10.0.0.0/8"
    );
    assert_eq!(
        admin
            .call(
                "PUT",
                "/api/groups/internal",
                t,
                Some(json!({"name": "internal", "comment": "LAN"}))
            )
            .json()["comment"],
        "LAN"
    );

    // The stored set, as edges load it.
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let p = &def.policies[0];
    assert_eq!(
        (p.name.as_str(), p.members.len(), p.quotas.len()),
        ("outbound", 1, 1)
    );
    assert_eq!(p.quotas[0].period, 7200);
    assert_eq!(p.quotas[0].limits[0].limit, 100);
    assert!(p.access_control.is_empty());
    assert_eq!(def.groups[0].members[0].member, "10.0.0.0/8");

    // Renaming a policy, disabling it, deleting it with its children.
    let renamed = admin.call(
        "PUT",
        "/api/policies/outbound",
        t,
        Some(json!({"name": "out", "priority": 20})),
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(
        admin.call("GET", "/api/policies/outbound", t, None).status,
        404
    );
    assert_eq!(
        admin
            .call("POST", "/api/policies/out/disable", t, None)
            .json()["disabled"],
        true
    );
    assert_eq!(
        admin
            .call("DELETE", "/api/groups/internal/members/0", t, None)
            .status,
        204
    );
    assert_eq!(
        admin.call("DELETE", "/api/groups/internal", t, None).status,
        204
    );
    assert_eq!(
        admin.call("DELETE", "/api/policies/out", t, None).status,
        204
    );
    assert!(admin
        .rt
        .block_on(admin.store.load())
        .unwrap()
        .policies
        .is_empty());

    // The audit trail: every change, newest first, with who, where from, before and after.
    let audit = admin.call("GET", "/api/audit?limit=1000", t, None);
    assert_eq!(audit.status, 200, "{}", audit.body);
    let entries = audit.json();
    let entries = entries.as_array().unwrap();
    let summary: Vec<String> = entries
        .iter()
        .rev()
        .map(|e| {
            format!(
                "{} {}",
                e["action"].as_str().unwrap(),
                e["object"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            "create policies/outbound",
            "create policies/outbound/members/0",
            "create policies/outbound/members/1",
            "update policies/outbound/members/1",
            "delete policies/outbound/members/1",
            "create policies/outbound/quotas/per-sender",
            "create policies/outbound/quotas/per-sender/limits/0",
            "update policies/outbound/quotas/per-sender",
            "disable policies/outbound/quotas/per-sender/limits/0",
            "enable policies/outbound/quotas/per-sender/limits/0",
            "create policies/outbound/access-control/deny",
            "disable policies/outbound/access-control/deny",
            "delete policies/outbound/access-control/deny",
            "create groups/internal",
            "create groups/internal/members/0",
            "update groups/internal",
            "update policies/out",
            "disable policies/out",
            "delete groups/internal/members/0",
            "delete groups/internal",
            "delete policies/out",
        ],
        "refused changes (the duplicate) are not audited"
    );
    for e in entries {
        assert_eq!(e["actor"], "alice");
        assert_eq!(e["client"], "127.0.0.1");
        assert!(e["at_ms"].as_i64().unwrap() > 1_700_000_000_000);
    }
    let quota_update = entries
        .iter()
        .find(|e| e["action"] == "update" && e["object"] == "policies/outbound/quotas/per-sender")
        .unwrap();
    assert_eq!(quota_update["before"]["period"], 3600);
    assert_eq!(quota_update["after"]["period"], 7200);
    let deleted = entries
        .iter()
        .find(|e| e["object"] == "policies/out" && e["action"] == "delete")
        .unwrap();
    assert_eq!(deleted["after"], Value::Null);
    assert_eq!(
        deleted["before"]["name"], "out",
        "the whole policy before: {deleted}"
    );
    let created = entries
        .iter()
        .find(|e| e["object"] == "policies/outbound" && e["action"] == "create")
        .unwrap();
    assert_eq!(created["before"], Value::Null);
}

#[test]
fn sqlite_crud_of_every_resource_with_audit() {
    let admin = Admin::sqlite();
    crud_and_audit(&admin);
    admin.stop();
}

#[test]
fn postgres_crud_of_every_resource_with_audit() {
    let admin = Admin::postgres();
    crud_and_audit(&admin);
    admin.stop();
}

#[test]
fn validation_errors_name_the_field() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let token = admin.token("ci", "alice");
    let t = Some(token.as_str());
    admin.call("POST", "/api/policies", t, Some(json!({"name": "p"})));
    admin.call(
        "POST",
        "/api/policies/p/quotas",
        t,
        Some(json!({"name": "q", "track": "Sender:user@domain", "period": 60, "verdict": "DEFER"})),
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/api/policies", json!({"priority": 1}), "name"),
        (
            "/api/policies",
            json!({"name": "x", "colour": "red"}),
            "colour",
        ),
        (
            "/api/policies",
            json!({"name": "x", "priority": "high"}),
            "priority",
        ),
        ("/api/policies", json!({"name": ""}), "name"),
        (
            "/api/policies",
            json!({"name": "x", "priority": 100000}),
            "priority",
        ),
        (
            "/api/policies/p/members",
            json!({"source": "300.1.1.1"}),
            "members[0].source",
        ),
        (
            "/api/policies/p/members",
            json!({"destination": "10.0.0.0/8"}),
            "members[0].destination",
        ),
        (
            "/api/policies/p/quotas",
            json!({"name": "z", "track": "Sender:user@domain", "period": 0, "verdict": "DEFER"}),
            "quotas[1].period",
        ),
        (
            "/api/policies/p/quotas",
            json!({"name": "z", "track": "Nonsense", "period": 60, "verdict": "DEFER"}),
            "quotas[1].track",
        ),
        (
            "/api/policies/p/quotas",
            json!({"name": "z", "track": "Sender:user@domain", "period": 60, "verdict": "MAYBE"}),
            "quotas[1].verdict",
        ),
        (
            "/api/policies/p/quotas/q/limits",
            json!({"type": "Bogus", "limit": 5}),
            "quotas[0].limits[0].type",
        ),
        (
            "/api/policies/p/quotas/q/limits",
            json!({"type": "MessageCount", "limit": -1}),
            "limit",
        ),
        (
            "/api/policies/p/access-control",
            json!({"name": "a", "verdict": "PERHAPS"}),
            "access_control[0].verdict",
        ),
        (
            "/api/groups",
            json!({"name": "g", "disabled": "no"}),
            "disabled",
        ),
    ];
    for (path, body, field) in cases {
        let r = admin.call("POST", path, t, Some(body.clone()));
        assert_eq!(r.status, 422, "{path} {body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{path} {body}: {}", r.body);
        assert!(!r.json()["error"].as_str().unwrap().is_empty());
    }
    let not_json = admin.raw(
        "POST",
        "/api/policies",
        &[("Authorization", &format!("Bearer {token}"))],
        Some("name=x"),
    );
    assert_eq!(not_json.status, 422, "{}", not_json.body);
    // Nothing invalid was stored, nor audited.
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(def.policies.len(), 1);
    assert_eq!(def.policies[0].quotas.len(), 1);
    assert!(def.policies[0].members.is_empty() && def.groups.is_empty());
    let audit = admin.call("GET", "/api/audit", t, None).json();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    admin.stop();
}

#[test]
fn sql_and_html_payloads_are_stored_and_shown_verbatim() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let t = admin.token("ci", "alice");
    let t = Some(t.as_str());
    let name = "x'); DROP TABLE policy; -- <script>alert(1)</script>";
    let text = "\"><img src=x onerror=alert(2)> ' OR 1=1 --";
    let created = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": name, "description": text})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let path = format!("/api/policies/{}", form_encode(name));
    let got = admin.call("GET", &path, t, None);
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.json()["name"], name);
    assert_eq!(got.json()["description"], text);
    let m = admin.call(
        "POST",
        &format!("{path}/members"),
        t,
        Some(json!({"source": "@example.org", "comment": text})),
    );
    assert_eq!(m.status, 201, "{}", m.body);
    let q = admin.call(
        "POST",
        &format!("{path}/quotas"),
        t,
        Some(json!({"name": text, "track": "Sender:user@domain", "period": 60, "verdict": "DEFER", "data": "4.7.1 <b>slow</b>"})),
    );
    assert_eq!(q.status, 201, "{}", q.body);
    let stored = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(stored.policies[0].name, name, "the policy table survived");
    assert_eq!(stored.policies[0].quotas[0].name, text);

    // The pages escape it: the text is there, no tag is.
    let session = admin.login("alice", PASSWORD).unwrap();
    for page in [
        "/policies".to_owned(),
        format!("/policies/{}", form_encode(name)),
        "/audit".to_owned(),
    ] {
        let r = admin.raw("GET", &page, &[("Cookie", &session)], None);
        assert_eq!(r.status, 200, "{page}: {}", r.body);
        assert!(!r.body.contains("<script>alert"), "{page}: {}", r.body);
        assert!(!r.body.contains("<img src=x"), "{page}");
        assert!(!r.body.contains("<b>slow"), "{page}");
        assert!(
            r.body.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{page}: {}",
            r.body
        );
        assert!(r.body.contains("DROP TABLE policy"), "{page}");
    }
    admin.stop();
}

#[test]
fn explain_without_an_engine_evaluates_the_stored_policies_charging_nothing() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    let token = admin.token("ci", "alice");
    let t = Some(token.as_str());
    let r = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(
            json!({"name": "block <org>", "priority": 5, "members": [{"source": "@example.org"}]}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.call(
        "POST",
        "/api/policies/block%20%3Corg%3E/access-control",
        t,
        Some(json!({"name": "deny", "verdict": "REJECT", "data": "5.7.1 <not> here"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    let refused = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"sender": "a@example.org"})),
    );
    assert_eq!(refused.status, 200, "{}", refused.body);
    let e = refused.json();
    assert_eq!(e["action"], "REJECT 5.7.1 <not> here");
    assert_eq!(e["live_counters"], false);
    assert!(
        e["lines"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().contains("block <org>")),
        "{e}"
    );
    let passes = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"sender": "a@example.com"})),
    );
    assert_eq!(passes.json()["action"], "DUNNO");
    let text = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"text": "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.9\nsender=x@example.org"})),
    );
    assert_eq!(text.json()["action"], "REJECT 5.7.1 <not> here");

    // A line break in a field would add attributes: refused, naming the field.
    let injected = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"sender": "a@example.com\nsasl_username=admin"})),
    );
    assert_eq!(injected.status, 422, "{}", injected.body);
    assert_eq!(injected.json()["field"], "sender");
    let bad = admin.call(
        "POST",
        "/api/explain",
        t,
        Some(json!({"client_address": "not-an-ip"})),
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.json()["field"], "request");

    // Domain admins may not: an explanation shows every policy a request matches.
    let dora = admin.token("dora-cli", "dora");
    assert_eq!(
        admin
            .call(
                "POST",
                "/api/explain",
                Some(&dora),
                Some(json!({"sender": "a@example.org"}))
            )
            .status,
        403
    );

    // The page: the form, and the explanation escaped.
    let session = admin.login("alice", PASSWORD).unwrap();
    let empty = admin.raw("GET", "/explain", &[("Cookie", &session)], None);
    assert_eq!(empty.status, 200);
    assert!(!empty.body.contains("Action: "));
    let page = admin.raw(
        "GET",
        "/explain?sender=a%40example.org&size=",
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("REJECT 5.7.1 &lt;not&gt; here"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<not>"));
    assert!(page.body.contains("Counters shown at zero"));
    // Nothing was audited: explaining changes nothing.
    let audit = admin.call("GET", "/api/audit", t, None).json();
    assert_eq!(audit.as_array().unwrap().len(), 2);
    admin.stop();
}
