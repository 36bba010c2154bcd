//! Import and export of the whole policy file through the API and the pages, over real HTTP
//! on 127.0.0.1 (SQLite): the export is what `sluice policy export` writes; a preview shows
//! the diff and the file's warnings and writes nothing; an import replaces the set, is
//! audited with the set before and after, and is refused (409) when the policies changed
//! since the preview; an invalid file is refused naming its line; viewers may look but not
//! import, domain admins may do neither; the page's apply form needs the CSRF token.

mod common;

use common::{form_encode, hidden_csrf, Admin};
use serde_json::json;
use sluice_store::AdminRole;

const PASSWORD: &str = "correct horse battery staple";

const FILE: &str = r#"
[[policy]]
name = "outbound"
priority = 10
  [[policy.member]]
  source = "@example.org"
  [[policy.quota]]
  name = "per-sender"
  track = "Sender:user@domain"
  period = "1h"
  verdict = "DEFER"
  data = "4.7.1 Slow down"
    [[policy.quota.limit]]
    type = "MessageCount"
    limit = 100
"#;

fn setup() -> (Admin, String) {
    let admin = Admin::sqlite();
    admin.account("alice", AdminRole::Admin, &[], PASSWORD);
    admin.account("vera", AdminRole::Viewer, &[], PASSWORD);
    admin.account("dora", AdminRole::DomainAdmin, &["example.org"], PASSWORD);
    let t = admin.token("ci", "alice");
    let created = admin.call(
        "POST",
        "/api/policies",
        Some(&t),
        Some(json!({"name": "inbound", "priority": 5, "members": [{"source": "any"}]})),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    (admin, t)
}

#[test]
fn export_preview_and_import_through_the_api() {
    let (admin, t) = setup();
    let t = Some(t.as_str());
    let export = admin.call("GET", "/api/policy-file", t, None);
    assert_eq!(export.status, 200, "{}", export.body);
    let exported = export.json();
    let version = exported["version"].as_i64().unwrap();
    let text = exported["text"].as_str().unwrap();
    assert!(text.contains("name = \"inbound\""), "{text}");
    let stored = admin.rt.block_on(admin.store.load()).unwrap();
    assert_eq!(text, sluice_store::policy_file::to_toml(&stored));

    // A preview writes nothing.
    let preview = admin.call(
        "POST",
        "/api/policy-file/preview",
        t,
        Some(json!({"text": FILE})),
    );
    assert_eq!(preview.status, 200, "{}", preview.body);
    let p = preview.json();
    assert_eq!(p["changed"], true);
    assert_eq!(p["version"], version);
    assert_eq!(
        (p["policies"].as_u64(), p["groups"].as_u64()),
        (Some(1), Some(0))
    );
    let diff = p["diff"].as_str().unwrap();
    assert!(diff.contains("\n-name = \"inbound\"\n"), "{diff}");
    assert!(diff.contains("\n+name = \"outbound\"\n"), "{diff}");
    assert_eq!(
        admin.rt.block_on(admin.store.version()).unwrap(),
        version,
        "a preview changed the policies"
    );

    // A stale preview is refused; the current one applies.
    let stale = admin.call(
        "PUT",
        "/api/policy-file",
        t,
        Some(json!({"text": FILE, "expected_version": version - 1})),
    );
    assert_eq!(stale.status, 409, "{}", stale.body);
    assert!(
        stale.body.contains("preview the file again"),
        "{}",
        stale.body
    );
    let import = admin.call(
        "PUT",
        "/api/policy-file",
        t,
        Some(json!({"text": FILE, "expected_version": version})),
    );
    assert_eq!(import.status, 200, "{}", import.body);
    assert_eq!(import.json()["changed"], true);
    assert!(import.json()["version"].as_i64().unwrap() > version);
    let names: Vec<String> = admin
        .rt
        .block_on(admin.store.load())
        .unwrap()
        .policies
        .iter()
        .map(|p| p.name.clone())
        .collect();
    assert_eq!(names, ["outbound"]);

    // Audited with the whole set before and after.
    let audit = admin.call("GET", "/api/audit?limit=1", t, None).json();
    let entry = &audit[0];
    assert_eq!(entry["action"], "import", "{audit}");
    assert_eq!(entry["object"], "policy-file", "{audit}");
    assert_eq!(entry["actor"], "alice");
    assert_eq!(entry["before"]["policy"][0]["name"], "inbound", "{audit}");
    assert_eq!(entry["after"]["policy"][0]["name"], "outbound", "{audit}");

    // The same file again changes nothing and adds no entry.
    let again = admin.call("PUT", "/api/policy-file", t, Some(json!({"text": FILE})));
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.json()["changed"], false);
    let audit = admin.call("GET", "/api/audit", t, None).json();
    assert_eq!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == "import")
            .count(),
        1
    );

    // An invalid file: 422 naming its line and field; nothing written.
    let bad = FILE.replace("period = \"1h\"", "period = \"1 fortnight\"");
    let refused = admin.call("PUT", "/api/policy-file", t, Some(json!({"text": bad})));
    assert_eq!(refused.status, 422, "{}", refused.body);
    let body = refused.json();
    assert_eq!(body["field"], "text");
    let message = body["error"].as_str().unwrap();
    assert!(message.contains("uploaded file:10:"), "{message}");
    assert!(message.contains("period"), "{message}");
    // Warnings are shown, not refused.
    let inert = FILE.replace(
        "    [[policy.quota.limit]]\n    type = \"MessageCount\"\n    limit = 100\n",
        "",
    );
    let warned = admin.call(
        "POST",
        "/api/policy-file/preview",
        t,
        Some(json!({"text": inert})),
    );
    assert_eq!(warned.status, 200, "{}", warned.body);
    assert!(
        !warned.json()["warnings"].as_array().unwrap().is_empty(),
        "{}",
        warned.body
    );
    admin.stop();
}

#[test]
fn viewers_look_and_domain_admins_stay_out() {
    let (admin, _) = setup();
    let viewer = admin.token("view", "vera");
    let domain = admin.token("dom", "dora");
    let v = Some(viewer.as_str());
    assert_eq!(admin.call("GET", "/api/policy-file", v, None).status, 200);
    assert_eq!(
        admin
            .call(
                "POST",
                "/api/policy-file/preview",
                v,
                Some(json!({"text": FILE}))
            )
            .status,
        200
    );
    let refused = admin.call("PUT", "/api/policy-file", v, Some(json!({"text": FILE})));
    assert_eq!(refused.status, 403, "{}", refused.body);
    let d = Some(domain.as_str());
    for (method, path, body) in [
        ("GET", "/api/policy-file", None),
        (
            "POST",
            "/api/policy-file/preview",
            Some(json!({"text": FILE})),
        ),
        ("PUT", "/api/policy-file", Some(json!({"text": FILE}))),
    ] {
        let r = admin.call(method, path, d, body);
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        assert!(r.body.contains("domain admins may not"), "{}", r.body);
    }
    // Nothing without credentials.
    for (method, path) in [
        ("GET", "/api/policy-file"),
        ("POST", "/api/policy-file/preview"),
        ("PUT", "/api/policy-file"),
    ] {
        assert_eq!(
            admin
                .call(method, path, None, Some(json!({"text": FILE})))
                .status,
            401
        );
    }
    admin.stop();
}

#[test]
fn the_page_shows_the_diff_before_applying_and_needs_the_csrf_token() {
    let (admin, _) = setup();
    let cookie = admin.login("alice", PASSWORD).unwrap();
    let page = admin.raw("GET", "/policy-file", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("Download policies.toml"),
        "{}",
        page.body
    );
    let csrf = hidden_csrf(&page.body).unwrap();
    let download = admin.raw("GET", "/policy-file/export", &[("Cookie", &cookie)], None);
    assert_eq!(download.status, 200);
    assert!(download
        .header("content-disposition")
        .unwrap()
        .contains("attachment"));
    assert!(download.body.contains("name = \"inbound\""));

    let form = format!("csrf={csrf}&text={}", form_encode(FILE));
    let headers = [
        ("Cookie", cookie.as_str()),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let preview = admin.raw("POST", "/policy-file/preview", &headers, Some(&form));
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview
            .body
            .contains("<span class=\"add\">+name = &quot;outbound&quot;</span>"),
        "{}",
        preview.body
    );
    assert!(
        preview
            .body
            .contains("<span class=\"del\">-name = &quot;inbound&quot;</span>"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("Apply these changes"));
    let version = {
        let at = preview
            .body
            .find("name=\"expected_version\" value=\"")
            .unwrap()
            + 31;
        preview.body[at..at + preview.body[at..].find('"').unwrap()].to_owned()
    };
    let stored = || {
        admin
            .rt
            .block_on(admin.store.load())
            .unwrap()
            .policies
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(stored(), ["inbound"], "a preview wrote");

    let forged = format!(
        "csrf=wrong&text={}&expected_version={version}",
        form_encode(FILE)
    );
    let r = admin.raw("POST", "/policy-file/import", &headers, Some(&forged));
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(stored(), ["inbound"]);
    let apply = format!(
        "csrf={csrf}&text={}&expected_version={version}",
        form_encode(FILE)
    );
    let r = admin.raw("POST", "/policy-file/import", &headers, Some(&apply));
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(stored(), ["outbound"]);

    // A broken file comes back with its findings and the text to fix.
    let broken = format!(
        "csrf={csrf}&text={}",
        form_encode("[[policy]]\nname = \"x\"\npriority = \"high\"\n")
    );
    let r = admin.raw("POST", "/policy-file/preview", &headers, Some(&broken));
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("uploaded file:3"), "{}", r.body);
    assert!(r.body.contains("priority = &quot;high&quot;"), "{}", r.body);
    admin.stop();
}
