//! CheckSPF, per-message caps, CheckHelo (with its blacklist and whitelist) and Accounting
//! through the admin API, over real HTTP on SQLite and PostgreSQL: created, read, updated,
//! disabled, enabled and deleted; validation errors naming the field; each change audited;
//! viewers change nothing; domain admins manage their own policies' settings but not the
//! set-wide HELO lists.

mod common;

use common::{hidden_csrf, Admin};
use serde_json::{json, Value};
use sluice_store::AdminRole;

const PASSWORD: &str = "a long enough admin password";

/// (action, object) of every audit entry.
fn audited(admin: &Admin, t: Option<&str>) -> Vec<(String, String)> {
    let audit = admin.call("GET", "/api/audit?limit=500", t, None).json();
    audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["object"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A per-policy settings resource at `collection` (`/api/policies/inbound/checkspf`):
/// none, create (`first`), a second create refused, PUT (`second`, replacing every field),
/// disable, enable, each `bad` body refused naming its field, viewer 403, audited, delete.
#[allow(clippy::too_many_arguments)]
fn one_per_policy(
    admin: &Admin,
    t: Option<&str>,
    viewer: &str,
    collection: &str,
    first: Value,
    second: Value,
    bad: &[(Value, &str)],
) {
    let item = format!("{collection}/0");
    let r = admin.call("GET", collection, t, None);
    assert_eq!((r.status, r.json()), (200, json!([])), "{collection}");
    assert_eq!(admin.call("GET", &item, t, None).status, 404);
    let created = admin.call("POST", collection, t, Some(first.clone()));
    assert_eq!(created.status, 201, "{collection}: {}", created.body);
    for (k, v) in first.as_object().unwrap() {
        assert_eq!(&created.json()[k], v, "{collection}: {k}");
    }
    assert_eq!(
        created.json()["disabled"],
        false,
        "new settings are enabled"
    );
    let again = admin.call("POST", collection, t, Some(first.clone()));
    assert_eq!(again.status, 409, "one per policy: {}", again.body);
    let put = admin.call("PUT", &item, t, Some(second.clone()));
    assert_eq!(put.status, 200, "{}", put.body);
    for (k, v) in second.as_object().unwrap() {
        assert_eq!(&put.json()[k], v, "{collection}: {k}");
    }
    for k in first.as_object().unwrap().keys() {
        if !second.as_object().unwrap().contains_key(k) {
            assert!(put.json()[k].is_null(), "PUT replaces every field: {k}");
        }
    }
    let off = admin.call("POST", &format!("{item}/disable"), t, None);
    assert_eq!(
        (off.status, off.json()["disabled"].clone()),
        (200, json!(true))
    );
    let on = admin.call("POST", &format!("{item}/enable"), t, None);
    assert_eq!(
        (on.status, on.json()["disabled"].clone()),
        (200, json!(false))
    );
    let listed = admin.call("GET", collection, t, None).json();
    assert_eq!(listed, json!([put.json()]));

    for (body, field) in bad {
        let r = admin.call("PUT", &item, t, Some(body.clone()));
        assert_eq!(r.status, 422, "{collection} {body}: {}", r.body);
        assert_eq!(r.json()["field"], *field, "{collection} {body}: {}", r.body);
    }
    assert_eq!(
        admin.call("GET", &item, t, None).json(),
        put.json(),
        "unchanged"
    );

    let before = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(admin.call("GET", &item, Some(viewer), None).status, 200);
    for (method, path, body) in [
        ("POST", collection.to_owned(), Some(first.clone())),
        ("PUT", item.clone(), Some(second.clone())),
        ("POST", format!("{item}/disable"), None),
        ("DELETE", item.clone(), None),
    ] {
        let r = admin.call(method, &path, Some(viewer), body);
        assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.body);
    }
    assert_eq!(admin.rt.block_on(admin.store.load()).unwrap(), before);

    let object = item.trim_start_matches("/api/").to_owned();
    let objects = audited(admin, t);
    for action in ["create", "update", "disable", "enable"] {
        assert!(
            objects.contains(&(action.to_owned(), object.clone())),
            "{action} {object} in {objects:?}"
        );
    }
    let audit = admin.call("GET", "/api/audit?limit=500", t, None).json();
    let update = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "update" && e["object"] == object.as_str())
        .unwrap();
    let (k, v) = second.as_object().unwrap().iter().next().unwrap();
    assert_eq!(&update["after"][k], v, "{update}");

    assert_eq!(admin.call("DELETE", &item, t, None).status, 204);
    assert_eq!(admin.call("GET", collection, t, None).json(), json!([]));
    assert!(audited(admin, t).contains(&("delete".to_owned(), object)));
}

fn module_resources(admin: Admin) {
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

    one_per_policy(
        &admin,
        t,
        &vic,
        "/api/policies/inbound/checkspf",
        json!({"enabled": true, "reject_failed": true, "comment": "<b>spf</b>'; --"}),
        json!({"enabled": true, "add_header": true}),
        &[
            (json!({"enabled": "yes"}), "enabled"),
            (json!({"reject_faild": true}), "reject_faild"),
        ],
    );
    one_per_policy(
        &admin,
        t,
        &vic,
        "/api/policies/inbound/message-caps",
        json!({"max_message_size": 10_000_000, "max_recipients": 100}),
        json!({"max_recipients": 20}),
        &[
            (json!({"max_recipients": 0}), "message_caps.max_recipients"),
            (
                json!({"max_message_size": 0}),
                "message_caps.max_message_size",
            ),
            (json!({"max_recipients": -1}), "max_recipients"),
        ],
    );
    one_per_policy(
        &admin,
        t,
        &vic,
        "/api/policies/inbound/checkhelo",
        json!({"use_blacklist": true, "reject_invalid": true, "dns_failure": "pass"}),
        json!({"use_hrp": true, "hrp_period": 3600, "hrp_limit": 3}),
        &[
            (
                json!({"use_hrp": true, "hrp_period": 60, "hrp_limit": 0}),
                "checkhelo.hrp_limit",
            ),
            (json!({"dns_failure": "maybe"}), "checkhelo.dns_failure"),
            (json!({"hrp_period": 0}), "checkhelo.hrp_period"),
        ],
    );

    // The HELO lists: set-wide.
    for (list, good, other, bad, field) in [
        (
            "/api/checkhelo-blacklist",
            json!({"helo": "localhost", "comment": "seed"}),
            json!({"helo": "*.localdomain"}),
            vec![json!({"helo": ""}), json!({"helo": "two words"})],
            "helo",
        ),
        (
            "/api/checkhelo-whitelist",
            json!({"source": "SenderIP:192.0.2.0/24", "comment": "partner"}),
            json!({"source": "SenderIP:2001:db8::/32"}),
            vec![
                json!({"source": "SenderIP:not-an-ip"}),
                json!({"source": "SenderDomain:example.net"}),
            ],
            "source",
        ),
    ] {
        let r = admin.call("POST", list, t, Some(good.clone()));
        assert_eq!(r.status, 201, "{list}: {}", r.body);
        assert_eq!(r.json()["disabled"], false);
        let r = admin.call("POST", list, t, Some(other.clone()));
        assert_eq!(r.status, 201, "{list}: {}", r.body);
        for body in &bad {
            let r = admin.call("POST", list, t, Some(body.clone()));
            assert_eq!(r.status, 422, "{list} {body}: {}", r.body);
            assert_eq!(r.json()["field"], field, "{list} {body}: {}", r.body);
            let r = admin.call("PUT", &format!("{list}/0"), t, Some(body.clone()));
            assert_eq!(r.status, 422, "{list} {body}: {}", r.body);
        }
        let r = admin.call("POST", list, t, Some(json!({"helo": "x", "source": "y"})));
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(
            admin
                .call("GET", list, t, None)
                .json()
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // Each entry once (the stores keep it unique).
        let r = admin.call("PUT", &format!("{list}/1"), t, Some(good.clone()));
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.json()["field"], field, "{}", r.body);
        let r = admin.call("POST", list, t, Some(good.clone()));
        assert_eq!(r.status, 422, "{}", r.body);
        let r = admin.call("PUT", &format!("{list}/0"), t, Some(good.clone()));
        assert_eq!(r.status, 200, "the entry itself: {}", r.body);
        let r = admin.call("POST", &format!("{list}/0/disable"), t, None);
        assert_eq!(r.json()["disabled"], true);
        assert_eq!(admin.call("GET", &format!("{list}/2"), t, None).status, 404);
        for (who, token) in [("viewer", &vic), ("domain admin", &dora)] {
            let r = admin.call("POST", list, Some(token), Some(other.clone()));
            assert_eq!(r.status, 403, "{who} {list}: {}", r.body);
            let r = admin.call("DELETE", &format!("{list}/0"), Some(token), None);
            assert_eq!(r.status, 403, "{who} {list}: {}", r.body);
        }
        assert_eq!(admin.call("GET", list, Some(&dora), None).status, 403);
        assert_eq!(admin.call("GET", list, Some(&vic), None).status, 200);
        assert_eq!(
            admin.call("DELETE", &format!("{list}/0"), t, None).status,
            204
        );
        let mut left = other.clone();
        left["disabled"] = json!(false);
        if left.get("comment").is_none() {
            left["comment"] = Value::Null;
        }
        assert_eq!(admin.call("GET", list, t, None).json(), json!([left]));
        let object = format!("{}/0", list.trim_start_matches("/api/"));
        let objects = audited(&admin, t);
        for action in ["create", "disable", "delete"] {
            assert!(
                objects.contains(&(action.to_owned(), object.clone())),
                "{action} {object} in {objects:?}"
            );
        }
    }
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(def.checkhelo_blacklist.len(), 1);
    assert_eq!(def.checkhelo_whitelist[0].source, "SenderIP:2001:db8::/32");

    // Accounting rows: several per policy, by position.
    let rows = "/api/policies/inbound/accounting";
    assert_eq!(admin.call("GET", rows, t, None).json(), json!([]));
    let r = admin.call(
        "POST",
        rows,
        t,
        Some(
            json!({"name": "daily", "track": "Sender:user@domain", "period": "day",
            "message_count_limit": 100, "verdict": "REJECT", "data": "<i>too many</i>"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        (r.json()["name"].clone(), r.json()["disabled"].clone()),
        (json!("daily"), json!(false))
    );
    let r = admin.call(
        "POST",
        rows,
        t,
        Some(
            json!({"name": "monthly", "track": "SASLUsername", "period": "month",
            "time_zone": "Europe/Berlin"}),
        ),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.call("GET", &format!("{rows}/1"), t, None);
    assert_eq!(r.json()["time_zone"], "Europe/Berlin");
    let r = admin.call(
        "PUT",
        &format!("{rows}/0"),
        t,
        Some(json!({"name": "daily", "track": "Sender:@domain", "period": "week"})),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["verdict"].is_null(), "PUT replaces every field");
    for (body, field) in [
        (
            json!({"name": "daily", "track": "Sender:user@domain", "period": "fortnight"}),
            "accounting[0].period",
        ),
        (
            json!({"name": "daily", "track": "Nowhere", "period": "day"}),
            "accounting[0].track",
        ),
        (
            json!({"name": "daily", "track": "SASLUsername", "period": "day", "time_zone": "Mars/Olympus"}),
            "accounting[0].time_zone",
        ),
        (
            json!({"name": "monthly", "track": "SASLUsername", "period": "day"}),
            "accounting[1].name", // the engine names the later of the two
        ),
        (json!({"track": "SASLUsername", "period": "day"}), "name"),
    ] {
        let r = admin.call("PUT", &format!("{rows}/0"), t, Some(body.clone()));
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        assert_eq!(r.json()["field"], field, "{body}: {}", r.body);
    }
    let r = admin.call("POST", &format!("{rows}/1/disable"), t, None);
    assert_eq!(r.json()["disabled"], true);
    assert_eq!(admin.call("GET", &format!("{rows}/2"), t, None).status, 404);
    let before = admin.rt.block_on(admin.store.load()).unwrap();
    for (method, path) in [
        ("POST", rows.to_owned()),
        ("PUT", format!("{rows}/0")),
        ("POST", format!("{rows}/0/enable")),
        ("DELETE", format!("{rows}/0")),
    ] {
        let r = admin.call(
            method,
            &path,
            Some(&vic),
            Some(json!({"name": "v", "track": "SASLUsername", "period": "day"})),
        );
        assert_eq!(r.status, 403, "viewer {method} {path}: {}", r.body);
    }
    assert_eq!(admin.rt.block_on(admin.store.load()).unwrap(), before);
    assert_eq!(
        admin.call("DELETE", &format!("{rows}/0"), t, None).status,
        204
    );
    let left = admin.call("GET", rows, t, None).json();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["name"], "monthly");
    let objects = audited(&admin, t);
    for (action, object) in [
        ("create", "policies/inbound/accounting/0"),
        ("create", "policies/inbound/accounting/1"),
        ("update", "policies/inbound/accounting/0"),
        ("disable", "policies/inbound/accounting/1"),
        ("delete", "policies/inbound/accounting/0"),
    ] {
        assert!(
            objects.contains(&(action.to_owned(), object.to_owned())),
            "{action} {object} in {objects:?}"
        );
    }

    // Domain admins: their own policies' modules, not others'.
    let own = admin.call(
        "POST",
        "/api/policies",
        Some(&dora),
        Some(json!({"name": "org", "members": [{"source": "@example.org"}]})),
    );
    assert_eq!(own.status, 201, "{}", own.body);
    for (path, body) in [
        ("/api/policies/org/checkspf", json!({"enabled": true})),
        (
            "/api/policies/org/message-caps",
            json!({"max_recipients": 5}),
        ),
        ("/api/policies/org/checkhelo", json!({"reject_ip": true})),
        (
            "/api/policies/org/accounting",
            json!({"name": "d", "track": "Sender:user@domain", "period": "day"}),
        ),
    ] {
        let r = admin.call("POST", path, Some(&dora), Some(body.clone()));
        assert_eq!(r.status, 201, "own policy {path}: {}", r.body);
        let other = path.replace("/org/", "/inbound/");
        let r = admin.call("POST", &other, Some(&dora), Some(body));
        assert_eq!(r.status, 403, "other policy {other}: {}", r.body);
    }
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let org = def.policies.iter().find(|p| p.name == "org").unwrap();
    assert_eq!(org.message_caps.as_ref().unwrap().max_recipients, Some(5));
    assert_eq!(org.checkhelo.as_ref().unwrap().reject_ip, Some(true));
    assert_eq!(org.accounting.len(), 1);
    admin.stop();
}

#[test]
fn sqlite_module_resources() {
    module_resources(Admin::sqlite());
}

#[test]
fn postgres_module_resources() {
    module_resources(Admin::postgres());
}

#[test]
fn the_policy_page_shows_the_modules_in_chain_order_and_their_forms_change_them() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("vic", AdminRole::Viewer, &[], PASSWORD);
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
    for none in [
        "No message caps",
        "No CheckHelo settings",
        "No CheckSPF settings",
    ] {
        assert!(page.body.contains(none), "{none}: {}", page.body);
    }
    let csrf = hidden_csrf(&page.body).unwrap();
    let form_headers = [
        ("Cookie", session.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let post = |path: &str, form: String| admin.raw("POST", path, &form_headers, Some(&form));
    let script = common::form_encode("<script>x</script>");
    for (path, form) in [
        (
            "/policies/inbound/message-caps",
            format!("csrf={csrf}&max_message_size=&max_recipients=25&comment={script}"),
        ),
        (
            "/policies/inbound/checkhelo",
            format!("csrf={csrf}&use_blacklist=true&reject_invalid=false&dns_failure=&comment="),
        ),
        (
            "/policies/inbound/checkspf",
            format!("csrf={csrf}&enabled=true&reject_failed=&add_header=true"),
        ),
        (
            "/policies/inbound/accounting",
            format!("csrf={csrf}&name=daily&track=Sender%3Auser%40domain&period=day&message_count_limit=500&verdict=&data={script}"),
        ),
    ] {
        let r = post(path, form);
        assert_eq!(r.status, 303, "{path}: {}", r.body);
    }
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let p = &def.policies[0];
    let caps = p.message_caps.as_ref().unwrap();
    assert_eq!(
        (caps.max_message_size, caps.max_recipients),
        (None, Some(25))
    );
    assert_eq!(caps.comment.as_deref(), Some("<script>x</script>"));
    let helo = p.checkhelo.as_ref().unwrap();
    assert_eq!(
        (
            helo.use_blacklist,
            helo.reject_invalid,
            helo.dns_failure.as_deref()
        ),
        (Some(true), Some(false), None)
    );
    let spf = p.checkspf.as_ref().unwrap();
    assert_eq!(
        (spf.enabled, spf.reject_failed, spf.add_header),
        (Some(true), None, Some(true))
    );
    assert_eq!(p.accounting[0].message_count_limit, Some(500));
    assert_eq!(p.accounting[0].verdict, None);

    let page = admin.raw("GET", "/policies/inbound", &[("Cookie", &session)], None);
    let body = &page.body;
    let at = |needle: &str| {
        body.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {body}"))
    };
    let order = [
        at("2. Access control"),
        at("<h2 class=\"message-caps\">"),
        at("<h2 class=\"checkhelo\">"),
        at("<h2 class=\"checkspf\">"),
        at("<h2 class=\"greylisting\">"),
        at("3. Quotas"),
        at("<h2 class=\"accounting\">"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "chain order: {order:?}"
    );
    assert!(body.contains("inherited, else unlimited (bytes)"), "{body}");
    assert!(body.contains("<div class=\"card checkhelo\">"), "{body}");
    assert!(body.contains("<form class=\"add accounting\""), "{body}");
    assert!(
        !body.contains("\" class=\"add"),
        "one class attribute: {body}"
    );
    assert!(body.contains(">25<"), "{body}");
    assert!(!body.contains("<script>x"), "escaped");
    assert!(body.contains("&lt;script&gt;x&lt;/script&gt;"), "{body}");

    // Bad input names the field; a forged form is refused; nothing changes.
    let before = admin.rt.block_on(admin.store.load()).unwrap();
    let r = post(
        "/policies/inbound/accounting",
        format!("csrf={csrf}&name=weekly&track=SASLUsername&period=fortnight"),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("accounting[1].period"), "{}", r.body);
    let r = post(
        "/policies/inbound/accounting",
        format!("csrf={csrf}&name=weekly&track=SASLUsername&period=week&size_limit=lots"),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("size_limit"), "{}", r.body);
    let r = post(
        "/policies/inbound/checkspf/toggle",
        "csrf=wrong&disabled=true".into(),
    );
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(admin.rt.block_on(admin.store.load()).unwrap(), before);

    // Toggle and delete from their buttons.
    let r = post(
        "/policies/inbound/checkspf/toggle",
        format!("csrf={csrf}&disabled=true"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = post(
        "/policies/inbound/accounting/0/toggle",
        format!("csrf={csrf}&disabled=true"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = post(
        "/policies/inbound/message-caps/delete",
        format!("csrf={csrf}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let p = &def.policies[0];
    assert!(p.checkspf.as_ref().unwrap().disabled);
    assert!(p.accounting[0].disabled);
    assert!(p.message_caps.is_none());
    let r = post(
        "/policies/inbound/accounting/0/delete",
        format!("csrf={csrf}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(admin.rt.block_on(admin.store.load()).unwrap().policies[0]
        .accounting
        .is_empty());

    // The HELO lists page: add to both lists, a bad entry names the field, toggle, delete.
    let r = post(
        "/checkhelo-blacklist",
        format!("csrf={csrf}&helo=localhost&comment={script}"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = post(
        "/checkhelo-whitelist",
        format!("csrf={csrf}&source=SenderIP%3A192.0.2.0%2F24"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let r = post(
        "/checkhelo-whitelist",
        format!("csrf={csrf}&source=nonsense"),
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("source"), "{}", r.body);
    let r = post(
        "/checkhelo-blacklist",
        format!("csrf={csrf}&helo=localhost"),
    );
    assert_eq!(r.status, 422, "a duplicate: {}", r.body);
    let r = post(
        "/checkhelo-whitelist/0/toggle",
        format!("csrf={csrf}&disabled=true"),
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/checkhelo-lists", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("SenderIP:192.0.2.0/24"), "{}", page.body);
    assert!(
        page.body.contains("&lt;script&gt;x&lt;/script&gt;"),
        "{}",
        page.body
    );
    assert!(page.body.contains("HELO lists"), "{}", page.body);
    let def = admin.rt.block_on(admin.store.load()).unwrap();
    assert!(def.checkhelo_whitelist[0].disabled);
    let r = post("/checkhelo-blacklist/0/delete", format!("csrf={csrf}"));
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(admin
        .rt
        .block_on(admin.store.load())
        .unwrap()
        .checkhelo_blacklist
        .is_empty());

    // A viewer sees the page without forms.
    let vic = admin.login("vic", PASSWORD).unwrap();
    let page = admin.raw("GET", "/policies/inbound", &[("Cookie", &vic)], None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<h2 class=\"checkhelo\">"));
    assert!(!page.body.contains("/checkspf/toggle"), "{}", page.body);
    admin.stop();
}

/// Numbers at the edge of `u64` in every numeric field: a clear 422 naming the field, or
/// stored and read back exactly; never a database error.
fn huge_numbers(admin: Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let a = admin.token("a", "alice");
    let t = Some(a.as_str());
    let r = admin.call(
        "POST",
        "/api/policies",
        t,
        Some(json!({"name": "p", "members": [{"source": "any"}]})),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let acct = json!({"name": "a", "track": "SASLUsername", "period": "day"});
    for (collection, base, fields) in [
        (
            "/api/policies/p/message-caps",
            json!({}),
            vec!["max_message_size", "max_recipients"],
        ),
        (
            "/api/policies/p/checkhelo",
            json!({}),
            vec!["blacklist_period", "hrp_period", "hrp_limit"],
        ),
        (
            "/api/policies/p/accounting",
            acct,
            vec!["message_count_limit", "recipient_count_limit", "size_limit"],
        ),
    ] {
        for field in fields {
            for disabled in [false, true] {
                for n in [u64::MAX, i64::MAX as u64 + 1] {
                    let mut body = base.clone();
                    body[field] = json!(n);
                    body["disabled"] = json!(disabled);
                    let r = admin.call("POST", collection, t, Some(body.clone()));
                    match r.status {
                        422 => assert!(
                            r.json()["field"].as_str().unwrap().ends_with(field),
                            "{collection} {body}: {}",
                            r.body
                        ),
                        201 => {
                            let item = format!("{collection}/0");
                            let got = admin.call("GET", &item, t, None).json();
                            assert_eq!(got[field], json!(n), "{collection} {body}");
                            assert_eq!(admin.call("DELETE", &item, t, None).status, 204);
                        }
                        s => panic!("{collection} {body}: {s} {}", r.body),
                    }
                }
            }
        }
    }
    admin.stop();
}

#[test]
fn sqlite_huge_numbers_are_refused_or_kept() {
    huge_numbers(Admin::sqlite());
}

#[test]
fn postgres_huge_numbers_are_refused_or_kept() {
    huge_numbers(Admin::postgres());
}

/// Each set-wide list keeps an entry once: a second one is a 422 naming the field, not a
/// database error (SQLite and PostgreSQL both keep them unique).
fn duplicates(admin: Admin) {
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let a = admin.token("a", "alice");
    let t = Some(a.as_str());
    for (list, body, field) in [
        (
            "/api/greylisting-whitelist",
            json!({"source": "SenderIP:10.0.0.1"}),
            "source",
        ),
        (
            "/api/checkhelo-blacklist",
            json!({"helo": "localhost"}),
            "helo",
        ),
        (
            "/api/checkhelo-whitelist",
            json!({"source": "SenderIP:10.0.0.1"}),
            "source",
        ),
    ] {
        assert_eq!(admin.call("POST", list, t, Some(body.clone())).status, 201);
        let r = admin.call("POST", list, t, Some(body.clone()));
        assert_eq!(
            (r.status, r.json()["field"].clone()),
            (422, json!(field)),
            "{list}: {}",
            r.body
        );
        assert_eq!(
            admin
                .call("GET", list, t, None)
                .json()
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
    admin.stop();
}

#[test]
fn sqlite_list_entries_are_kept_once() {
    duplicates(Admin::sqlite());
}

#[test]
fn postgres_list_entries_are_kept_once() {
    duplicates(Admin::postgres());
}
