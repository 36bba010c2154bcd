//! The pages as a browser uses them (plain HTTP forms, no script): log in, create a policy,
//! add a member, a quota and a limit through the forms, see the chain's warnings come and
//! go, toggle objects, and see every change in the audit page.

mod common;

use common::{form_encode, hidden_csrf, Admin};
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";

fn post_form(
    admin: &Admin,
    session: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> sluice_test_support::HttpReply {
    let body = fields
        .iter()
        .map(|(k, v)| format!("{k}={}", form_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    admin.raw(
        "POST",
        path,
        &[
            ("Cookie", session),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(&body),
    )
}

#[test]
fn a_policy_built_through_the_forms_shows_its_chain_and_warnings() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    // Pages without a session send the browser to the login page.
    let anonymous = admin.raw("GET", "/policies", &[], None);
    assert_eq!(anonymous.status, 303);
    assert_eq!(anonymous.header("location"), Some("/login"));
    assert_eq!(admin.raw("GET", "/style.css", &[], None).status, 200);

    let session = admin.login("alice", PASSWORD).unwrap();
    let list = admin.raw("GET", "/policies", &[("Cookie", &session)], None);
    assert!(list.body.contains("No policies yet."));
    let csrf = hidden_csrf(&list.body).unwrap();

    let r = post_form(
        &admin,
        &session,
        "/policies",
        &[
            ("csrf", &csrf),
            ("name", "outbound"),
            ("priority", "20"),
            ("description", ""),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), Some("/policies/outbound"));
    let page = admin.raw("GET", "/policies/outbound", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body
            .contains("No members: this policy matches nothing."),
        "{}",
        page.body
    );

    // A quota first: the chain is inert twice over (no member, no limit), and says so.
    let r = post_form(
        &admin,
        &session,
        "/policies/outbound/quotas",
        &[
            ("csrf", &csrf),
            ("name", "per-sender"),
            ("track", "Sender:user@domain"),
            ("period", "3600"),
            ("verdict", "DEFER"),
            ("data", "4.7.1 Slow down"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/policies/outbound", &[("Cookie", &session)], None);
    assert!(
        page.body.contains("has no enabled member"),
        "policy check's warning: {}",
        page.body
    );
    assert!(page.body.contains("has no enabled limit"), "{}", page.body);
    assert!(page.body.contains("No limits: this quota counts nothing."));

    let r = post_form(
        &admin,
        &session,
        "/policies/outbound/members",
        &[
            ("csrf", &csrf),
            ("source", "@example.org"),
            ("destination", ""),
            ("comment", ""),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/policies/outbound", &[("Cookie", &session)], None);
    assert!(
        !page.body.contains("has no enabled member"),
        "{}",
        page.body
    );
    assert!(page.body.contains("has no enabled limit"), "{}", page.body);

    let r = post_form(
        &admin,
        &session,
        "/policies/outbound/quotas/per-sender/limits",
        &[("csrf", &csrf), ("type", "MessageCount"), ("limit", "100")],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/policies/outbound", &[("Cookie", &session)], None);
    assert!(!page.body.contains("has no enabled limit"), "{}", page.body);
    assert!(!page.body.contains("class=\"warnings\""), "{}", page.body);

    // Disabling the limit brings the warning back.
    let r = post_form(
        &admin,
        &session,
        "/policies/outbound/toggle",
        &[
            ("csrf", &csrf),
            ("object", "quota/per-sender/limit/0"),
            ("disabled", "true"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let page = admin.raw("GET", "/policies/outbound", &[("Cookie", &session)], None);
    assert!(page.body.contains("class=\"warnings\""), "{}", page.body);

    // Invalid form input: a page naming the field, nothing stored.
    let r = post_form(
        &admin,
        &session,
        "/policies/outbound/quotas",
        &[
            ("csrf", &csrf),
            ("name", "bad"),
            ("track", "Sender:user@domain"),
            ("period", "0"),
            ("verdict", "DEFER"),
            ("data", ""),
        ],
    );
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("quotas[1].period"), "{}", r.body);

    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let p = &def.policies[0];
    assert_eq!((p.name.as_str(), p.priority), ("outbound", 20));
    assert_eq!(p.members[0].source.as_deref(), Some("@example.org"));
    assert_eq!(p.quotas.len(), 1);
    assert_eq!(p.quotas[0].data.as_deref(), Some("4.7.1 Slow down"));
    assert!(p.quotas[0].limits[0].disabled);

    let audit = admin.raw("GET", "/audit", &[("Cookie", &session)], None);
    assert_eq!(audit.status, 200);
    for object in [
        "policies/outbound",
        "policies/outbound/members/0",
        "policies/outbound/quotas/per-sender",
        "policies/outbound/quotas/per-sender/limits/0",
    ] {
        assert!(audit.body.contains(object), "{object}: {}", audit.body);
    }
    assert!(audit.body.contains("disable"));
    admin.stop();
}

/// Every add form has a "create disabled" box: ticked, the object is stored disabled (to
/// be prepared now and enabled later); unticked, enabled as before; anything else the box
/// cannot send is refused, naming the field, and nothing is stored.
#[test]
fn objects_added_through_the_forms_can_start_disabled() {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    let session = admin.login("alice", PASSWORD).unwrap();
    let list = admin.raw("GET", "/policies", &[("Cookie", &session)], None);
    assert!(
        list.body.contains(r#"name="disabled" value="true""#),
        "the new-policy form has the box: {}",
        list.body
    );
    let csrf = hidden_csrf(&list.body).unwrap();
    let post = |path: &str, fields: &[(&str, &str)]| {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let r = post_form(&admin, &session, path, &all);
        assert_eq!(r.status, 303, "{path}: {}", r.body);
    };
    let ticked = ("disabled", "true");
    post(
        "/policies",
        &[("name", "prepared"), ("priority", "30"), ticked],
    );
    post("/policies", &[("name", "live"), ("priority", "40")]);
    post(
        "/policies/live/members",
        &[("source", "@example.org"), ("destination", ""), ticked],
    );
    post("/policies/live/members", &[("source", "@example.net")]);
    post(
        "/policies/live/quotas",
        &[
            ("name", "later"),
            ("track", "Sender:user@domain"),
            ("period", "3600"),
            ("verdict", "DEFER"),
            ticked,
        ],
    );
    post(
        "/policies/live/quotas/later/limits",
        &[("type", "MessageCount"), ("limit", "100"), ticked],
    );
    post(
        "/policies/live/quotas/later/limits",
        &[("type", "RecipientCount"), ("limit", "500")],
    );
    post(
        "/policies/live/greylisting",
        &[
            ("period", "300"),
            ("track", ""),
            ("defer_message", ""),
            ticked,
        ],
    );
    post(
        "/policies/live/checkhelo",
        &[("reject_invalid", "true"), ticked],
    );
    post(
        "/greylisting-whitelist",
        &[("source", "SenderIP:192.0.2.0/24"), ticked],
    );
    post("/checkhelo-blacklist", &[("helo", "localhost"), ticked]);
    post(
        "/checkhelo-whitelist",
        &[("source", "SenderIP:198.51.100.0/24")],
    );

    let page = admin.raw("GET", "/policies/live", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.matches(r#"name="disabled" value="true""#).count() >= 3,
        "the member, quota and limit forms have the box"
    );

    // Neither the typed forms nor the module forms take what the box cannot send.
    for (path, fields) in [
        ("/policies", vec![("name", "odd"), ("disabled", "maybe")]),
        (
            "/policies/live/checkspf",
            vec![("add_header", "true"), ("disabled", "maybe")],
        ),
    ] {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(fields);
        let r = post_form(&admin, &session, path, &all);
        assert_eq!(r.status, 422, "{path}: {}", r.body);
        assert!(r.body.contains("disabled"), "{path}: {}", r.body);
    }

    let def = admin.rt.block_on(admin.store.load()).unwrap();
    let policy = |name: &str| def.policies.iter().find(|p| p.name == name).unwrap();
    assert!(policy("prepared").disabled);
    let live = policy("live");
    assert!(!live.disabled);
    assert_eq!(
        live.members.iter().map(|m| m.disabled).collect::<Vec<_>>(),
        [true, false]
    );
    assert!(live.quotas[0].disabled);
    assert_eq!(
        live.quotas[0]
            .limits
            .iter()
            .map(|l| l.disabled)
            .collect::<Vec<_>>(),
        [true, false]
    );
    assert!(live.greylisting.as_ref().unwrap().disabled);
    assert!(live.checkhelo.as_ref().unwrap().disabled);
    assert!(live.checkspf.is_none(), "the refused form stored nothing");
    assert!(def.policies.iter().all(|p| p.name != "odd"));
    assert!(def.greylisting_whitelist[0].disabled);
    assert!(def.checkhelo_blacklist[0].disabled);
    assert!(!def.checkhelo_whitelist[0].disabled);
    admin.stop();
}
