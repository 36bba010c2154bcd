//! The recipes of `docs/recipes.md`, each loaded from the page as it stands and exercised
//! over the real policy protocol (embedded mode): the docs cannot drift from what Sluice
//! does. Every snippet is marked `<!-- recipe: name -->`; a snippet without a scenario here,
//! or a scenario without its snippet, fails the test.

mod caps_support;
mod state_support;

use caps_support::{policy_file, Mode, Stack};
use sluice_test_support::{rcpt, PolicyClient, Request};
use std::collections::BTreeMap;

/// The page's snippets by recipe name.
fn recipes() -> BTreeMap<String, String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/recipes.md");
    let page = std::fs::read_to_string(path).expect("docs/recipes.md");
    let mut out = BTreeMap::new();
    let mut rest = page.as_str();
    while let Some(at) = rest.find("<!-- recipe: ") {
        let after = &rest[at + "<!-- recipe: ".len()..];
        let (name, after) = after.split_once(" -->").expect("a closed recipe marker");
        let body = after
            .trim_start()
            .strip_prefix("```toml\n")
            .unwrap_or_else(|| panic!("recipe {name}: a ```toml block must follow the marker"));
        let (toml, after) = body.split_once("\n```").expect("a closed code block");
        assert!(
            out.insert(name.to_string(), toml.to_string()).is_none(),
            "recipe {name} twice"
        );
        rest = after;
    }
    out
}

async fn start(name: &str) -> Stack {
    let all = recipes();
    let text = all
        .get(name)
        .unwrap_or_else(|| panic!("docs/recipes.md has no recipe {name:?}"));
    Stack::start(&Mode::Embedded, policy_file(text), name).await
}

/// Sends `req` as messages `first..=last` (one recipient each); returns the answers.
async fn messages(c: &mut PolicyClient, req: &Request, tag: &str, n: u32) -> Vec<String> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(
            c.send(&req.clone().set("instance", &format!("{tag}-{i}")))
                .await,
        );
    }
    out
}

fn all_dunno(answers: &[String]) -> bool {
    answers.iter().all(|a| a == "DUNNO")
}

#[test]
fn every_recipe_has_a_scenario() {
    let names: Vec<String> = recipes().into_keys().collect();
    assert_eq!(
        names,
        [
            "internal-recipients-only",
            "monitor-first",
            "outbound-per-user-and-domain",
            "recipients-per-message",
            "submission-vs-inbound",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_per_user_and_domain() {
    let s = start("outbound-per-user-and-domain").await;
    let mut c = s.client().await;
    let from = |user: &str| {
        rcpt(
            &format!("{user}@example.com"),
            "x@elsewhere.example",
            "198.51.100.1",
            "",
        )
        .sasl(&format!("{user}@example.com"))
    };
    let user_limit = "451 4.7.1 Too many messages from your account; try again in ";
    let domain_limit = "451 4.7.1 Too many messages from your domain; try again in ";
    // 50 messages an hour per login: the 51st waits.
    assert!(all_dunno(&messages(&mut c, &from("u1"), "u1", 50).await));
    let over = c.send(&from("u1").set("instance", "u1-51")).await;
    assert!(over.starts_with(user_limit), "{over}");
    // 200 an hour for the domain: three more logins send 150, then only 0 remain.
    for u in ["u2", "u3", "u4"] {
        assert!(all_dunno(&messages(&mut c, &from(u), u, 50).await), "{u}");
    }
    let over = c.send(&from("u5").set("instance", "u5-1")).await;
    assert!(over.starts_with(domain_limit), "{over}");
    // Unauthenticated mail is not outbound: not limited here.
    let inbound = rcpt("a@example.net", "u1@example.com", "203.0.113.9", "in-1");
    assert_eq!(c.send(&inbound).await, "DUNNO");
    // An hour later there is room again.
    s.clock.advance_secs(3600 + 60);
    assert_eq!(c.send(&from("u1").set("instance", "u1-52")).await, "DUNNO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_recipients_only() {
    let s = start("internal-recipients-only").await;
    let mut c = s.client().await;
    let refused = "554 5.7.1 You may only send mail to internal recipients";
    let send =
        |login: &str, to: &str| rcpt("intern1@example.com", to, "198.51.100.2", "m").sasl(login);
    assert_eq!(
        c.send(&send("intern1@example.com", "boss@example.com"))
            .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&send("intern1@example.com", "x@example.org")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&send("intern1@example.com", "x@gmail.example"))
            .await,
        refused
    );
    assert_eq!(
        c.send(&send("scanner@example.com", "x@sub.example.com"))
            .await,
        refused
    );
    assert_eq!(
        c.send(&send("boss@example.com", "x@gmail.example")).await,
        "DUNNO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submission_vs_inbound() {
    let s = start("submission-vs-inbound").await;
    let mut c = s.client().await;
    let inbound =
        rcpt("a@example.net", "u@example.com", "203.0.113.7", "").set("server_port", "25");
    let submit = |port: &str| {
        rcpt("u@example.com", "a@example.net", "203.0.113.7", "")
            .sasl("u@example.com")
            .set("server_port", port)
    };
    // Submission: 100 an hour per login, on 587 and 465 together.
    assert!(all_dunno(
        &messages(&mut c, &submit("587"), "s587", 60).await
    ));
    assert!(all_dunno(
        &messages(&mut c, &submit("465"), "s465", 40).await
    ));
    let over = c.send(&submit("587").set("instance", "s-101")).await;
    assert!(
        over.starts_with("DEFER Policy rejection; Message count quota exceeded"),
        "{over}"
    );
    // Inbound from the same address has its own, larger limit per /24.
    assert!(all_dunno(&messages(&mut c, &inbound, "in", 300).await));
    let over = c
        .send(
            &inbound
                .clone()
                .set("client_address", "203.0.113.200")
                .set("instance", "in-301"),
        )
        .await;
    assert!(
        over.starts_with("DEFER Policy rejection; Message count quota exceeded"),
        "{over}"
    );
    // Another port (a relay listener on 2525) is neither.
    assert_eq!(
        c.send(&submit("2525").set("instance", "other")).await,
        "DUNNO"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recipients_per_message() {
    let s = start("recipients-per-message").await;
    let mut c = s.client().await;
    let to = |n: u32| format!("r{n}@example.net");
    let user =
        |n: u32| rcpt("a@example.com", &to(n), "198.51.100.3", "msg-a").sasl("a@example.com");
    for n in 1..=50 {
        assert_eq!(c.send(&user(n)).await, "DUNNO", "recipient {n}");
    }
    assert_eq!(
        c.send(&user(51)).await,
        "452 4.5.3 Too many recipients (at most 50 per message)"
    );
    let news = |n: u32| {
        rcpt("news@example.com", &to(n), "198.51.100.3", "msg-n").sasl("newsletter@example.com")
    };
    for n in 1..=1000 {
        assert_eq!(c.send(&news(n)).await, "DUNNO", "newsletter recipient {n}");
    }
    assert_eq!(
        c.send(&news(1001)).await,
        "452 4.5.3 Too many recipients (at most 1000 per message)"
    );
    // The size cap is inherited by the newsletter.
    assert_eq!(
        c.send(&news(1).set("instance", "msg-n2").size(26_000_000))
            .await,
        "552 5.3.4 Message size exceeds fixed limit of 25000000 bytes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_first() {
    let text = recipes()["monitor-first"].clone();
    let s = Stack::start(&Mode::Embedded, policy_file(&text), "monitor").await;
    let mut c = s.client().await;
    let send = rcpt("u@example.com", "x@example.net", "198.51.100.4", "").sasl("u@example.com");
    // 250 messages: all go through while the limit is only watched...
    assert!(all_dunno(&messages(&mut c, &send, "m", 250).await));
    // ...and the 251st would have been refused: the decision carries a monitor verdict.
    let mut req = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "198.51.100.4".parse().unwrap(),
    );
    req.sender = "u@example.com".into();
    req.recipient = "x@example.net".into();
    req.sasl_username = "u@example.com".into();
    req.instance = "m-251".into();
    let d = s.engine.decide(&req).await;
    assert_eq!(d.action.to_string(), "DUNNO");
    let v = d.verdicts.first().expect("a monitor-mode verdict");
    assert!(v.monitor && v.module == "Quotas", "{v:?}");
    assert!(v.action.to_string().starts_with("DEFER"), "{v:?}");
    // Enforced: the recipe without its `monitor` line refuses the 201st.
    let enforced = text.replace("monitor = true\n", "");
    assert_ne!(enforced, text);
    let s = Stack::start(&Mode::Embedded, policy_file(&enforced), "enforced").await;
    let mut c = s.client().await;
    assert!(all_dunno(&messages(&mut c, &send, "e", 200).await));
    let over = c.send(&send.clone().set("instance", "e-201")).await;
    assert!(over.starts_with("DEFER"), "{over}");
}
