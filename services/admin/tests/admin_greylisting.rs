//! Greylisting through the admin API and pages, over real HTTP on SQLite and PostgreSQL: a
//! policy's settings and the static whitelist created, read, updated, disabled, enabled and
//! deleted; validation errors naming the field; each change audited; viewers change
//! nothing; domain admins manage their own policies' settings but not the set-wide
//! whitelist; the policy page shows the settings in the chain; payloads shown escaped.

mod common;

use common::{hidden_csrf, Admin};
use serde_json::json;
use sluice_store::AdminRole;

const PASSWORD: &str = "a long enough admin password";

fn greylisting_resources(admin: Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("vic", AdminRole::Viewer, &[], PASSWORD);
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    let a = admin.token("a", "alice");
    let t = Some(a.as_str());
    let vic = admin.token("v", "vic");
    let dora = admin.token("d", "dora");
    let r = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "inbound", "members": [{"source": "any"}]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);

    // A policy's settings: none, then one.
    let r = admin.call("GET", "/api/policies/inbound/greylisting", t, None);
    assert_eq!((r.status, r.json()), (200, json!([])));
    assert_eq!(
        admin
            .call("GET", "/api/policies/inbound/greylisting/0", t, None)
            .status,
        404
    );
    let created = admin.call(
        "POST",
        "/api/policies/inbound/greylisting",
        t,
        Some(json!({"period": 300, "track": "SenderIP:/24", "defer_message": "<b>later</b>'; --"})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let body = created.json();
    assert_eq!(body["period"], 300);
    assert_eq!(body["defer_message"], "<b>later</b>'; --");
    assert_eq!(body["disabled"], false, "new settings are enabled");
    assert!(body["auto_whitelist"].is_null(), "unset stays unset");
    let again = admin.call(
        "POST",
        "/api/policies/inbound/greylisting",
        t,
        Some(json!({"period": 60})),
    );
    assert_eq!(
        again.status, 409,
        "one set of settings per policy: {}",
        again.body
    );
    let put = admin.call(
        "PUT",
        "/api/policies/inbound/greylisting/0",
        t,
        Some(json!({"period": 120, "auto_whitelist": true, "auto_whitelist_count": 10})),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["auto_whitelist_count"], 10);
    assert!(put.json()["track"].is_null(), "PUT replaces every field");
    let off = admin.call(
        "POST",
        "/api/policies/inbound/greylisting/0/disable",
        t,
        None,
    );
    assert_eq!(
        (off.status, off.json()["disabled"].clone()),
        (200, json!(true))
    );
    let on = admin.call(
        "POST",
        "/api/policies/inbound/greylisting/0/enable",
        t,
        None,
    );
    assert_eq!(
        (on.status, on.json()["disabled"].clone()),
        (200, json!(false))
    );
    let stored = admin.rt.block_on(admin.store.load()).unwrap();
    let g = stored.policies[0].greylisting.as_ref().unwrap();
    assert_eq!((g.period, g.auto_whitelist), (Some(120), Some(true)));

    // Validation errors name the field.
    for (body, field) in [
        (json!({"period": 99_999_999_999u64}), "greylisting.period"),
        (json!({"track": "Sender:user@domain"}), "greylisting.track"),
        (json!({"perod": 60}), "perod"),
        (json!({"period": "soon"}), "period"),
    ] {
        let r = admin.call(
            "PUT",
            "/api/policies/inbound/greylisting/0",
            t,
            Some(body.clone()),
        );
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
    }

    // The whitelist.
    let r = admin.call(
        "POST",
        "/api/greylisting-whitelist",
        t,
        Some(json!({"source": "SenderIP:192.0.2.0/24", "comment": "partner"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.call(
        "POST",
        "/api/greylisting-whitelist",
        t,
        Some(json!({"source": "SenderDomain:.example.net"})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    for source in ["SenderIP:not-an-ip", "Somewhere:else", ""] {
        let r = admin.call(
            "POST",
            "/api/greylisting-whitelist",
            t,
            Some(json!({"source": source})),
        );
        assert_eq!(r.status, 422, "{source}: {}", r.body);
        assert_eq!(r.json()["field"], "source");
    }
    let list = admin
        .call("GET", "/api/greylisting-whitelist", t, None)
        .json();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    let r = admin.call(
        "PUT",
        "/api/greylisting-whitelist/1",
        t,
        Some(json!({"source": "ReverseDNS:*.example.net"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = admin.call("POST", "/api/greylisting-whitelist/0/disable", t, None);
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(
        admin
            .call("GET", "/api/greylisting-whitelist/2", t, None)
            .status,
        404
    );
    assert_eq!(
        admin
            .call("DELETE", "/api/greylisting-whitelist/0", t, None)
            .status,
        204
    );
    let list = admin
        .call("GET", "/api/greylisting-whitelist", t, None)
        .json();
    assert_eq!(
        list,
        json!([{"source": "ReverseDNS:*.example.net", "disabled": false, "comment": null}])
    );

    // Viewers read and change nothing; domain admins: their own policies only, and no
    // whitelist.
    let before = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(
        admin
            .call(
                "GET",
                "/api/policies/inbound/greylisting/0",
                Some(&vic),
                None
            )
            .status,
        200
    );
    for (method, path, body) in [
        (
            "PUT",
            "/api/policies/inbound/greylisting/0",
            Some(json!({"period": 1})),
        ),
        ("POST", "/api/policies/inbound/greylisting/0/disable", None),
        ("DELETE", "/api/policies/inbound/greylisting/0", None),
        (
            "POST",
            "/api/greylisting-whitelist",
            Some(json!({"source": "SenderIP:10.0.0.1"})),
        ),
    ] {
        for (who, token) in [("viewer", &vic), ("domain admin", &dora)] {
            let r = admin.call(method, path, Some(token), body.clone());
            assert_eq!(r.status, 403, "{who}: {method} {path}: {}", r.body);
        }
    }
    assert_eq!(
        admin
            .call("GET", "/api/greylisting-whitelist", Some(&dora), None)
            .status,
        403
    );
    assert_eq!(admin.rt.block_on(admin.store.load()).unwrap(), before);
    let own = admin.call(
        "POST",
        "/api/policies",
        Some(&dora),
        Some(json!({"name": "org", "members": [{"source": "@example.org"}]})),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    let r = admin.call(
        "POST",
        "/api/policies/org/greylisting",
        Some(&dora),
        Some(json!({"enabled": true})),
    );
    assert_eq!(
        r.status, 201,
        "a domain admin greylists their own policy: {}",
        r.body
    );

    // Audited: who, what, before and after.
    let audit = admin.call("GET", "/api/audit?limit=100", t, None).json();
    let objects: Vec<(String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (action, object) in [
        ("create", "policies/inbound/greylisting/0"),
        ("update", "policies/inbound/greylisting/0"),
        ("disable", "policies/inbound/greylisting/0"),
        ("enable", "policies/inbound/greylisting/0"),
        ("create", "greylisting-whitelist/0"),
        ("delete", "greylisting-whitelist/0"),
        ("create", "policies/org/greylisting/0"),
    ] {
        assert!(
            objects.contains(&(action.to_owned(), object.to_owned())),
            "{action} {object} in {objects:?}"
        );
    }
    let update = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "update" && e["object"] == "policies/inbound/greylisting/0")
        .unwrap();
    assert_eq!(update["before"]["period"], 300);
    assert_eq!(update["after"]["period"], 120);

    // Delete, then the policy has none.
    assert_eq!(
        admin
            .call("DELETE", "/api/policies/inbound/greylisting/0", t, None)
            .status,
        204
    );
    assert_eq!(
        admin
            .call("GET", "/api/policies/inbound/greylisting", t, None)
            .json(),
        json!([])
    );
    admin.stop();
}

#[test]
fn sqlite_greylisting_resources() {
    greylisting_resources(Admin::sqlite());
}

#[test]
fn postgres_greylisting_resources() {
    greylisting_resources(Admin::postgres());
}

#[test]
fn the_policy_page_shows_greylisting_in_its_chain() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let session = admin.login("alice", PASSWORD).unwrap();
    let a = admin.token("a", "alice");
    let r = admin.call(
        "POST",
        "/api/policies",
        Some(&a),
        Some(json!({"name": "inbound", "members": [{"source": "any"}]})),
    );
    assert_eq!(r.status, 201);
    let page = admin.raw("GET", "/policies/inbound", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("No greylisting settings"),
        "{}",
        page.body
    );
    let csrf = hidden_csrf(&page.body).unwrap();
    let form = format!(
        "csrf={csrf}&period=90&track=&defer_message={}",
        common::form_encode("<script>x</script>")
    );
    let form_headers = [
        ("Cookie", session.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let r = admin.raw(
        "POST",
        "/policies/inbound/greylisting",
        &form_headers,
        Some(&form),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/policies/inbound", &[("Cookie", &session)], None);
    let body = &page.body;
    let (access, grey, quotas) = (
        body.find("2. Access control").unwrap(),
        body.find("<h2 class=\"greylisting\">").unwrap(),
        body.find("3. Quotas").unwrap(),
    );
    assert!(access < grey && grey < quotas, "in chain order");
    assert!(body.contains("90 s"), "{body}");
    assert!(body.contains("inherited, else 604800 s"), "{body}");
    assert!(!body.contains("<script>x"), "escaped");
    assert!(body.contains("&lt;script&gt;x&lt;/script&gt;"), "{body}");
    // Disabled from its button.
    let r = admin.raw(
        "POST",
        "/policies/inbound/greylisting/toggle",
        &form_headers,
        Some(&format!("csrf={csrf}&disabled=true")),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert!(def.policies[0].greylisting.as_ref().unwrap().disabled);

    // The whitelist page: add an entry, a bad one is refused naming the field.
    let r = admin.raw(
        "POST",
        "/greylisting-whitelist",
        &form_headers,
        Some(&format!(
            "csrf={csrf}&source=SenderIP%3A192.0.2.0%2F24&comment=partner"
        )),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = admin.raw(
        "POST",
        "/greylisting-whitelist",
        &form_headers,
        Some(&format!("csrf={csrf}&source=nonsense")),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("source"), "{}", r.body);
    let r = admin.raw(
        "POST",
        "/greylisting-whitelist",
        &form_headers,
        Some("csrf=wrong&source=SenderIP%3A10.0.0.1"),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    let page = admin.raw(
        "GET",
        "/greylisting-whitelist",
        &[("Cookie", &session)],
        None,
    );
    assert!(page.body.contains("SenderIP:192.0.2.0/24"), "{}", page.body);
    assert!(page.body.contains("partner"));
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(def.greylisting_whitelist.len(), 1);
    admin.stop();
}
