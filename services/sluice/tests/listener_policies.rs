//! Per-listener policies over the real policy protocol: member specs on `server_port`,
//! `server_address` and `policy_context`, so one Sluice treats port 25, 465 and 587
//! differently.

mod caps_support;
mod state_support;

use caps_support::{policy_file, Mode, Stack};
use sluice_test_support::{rcpt, Request};

const SET: &str = r#"
[[group]]
name = "submission_ports"
members = ["server_port=587", "server_port=465"]

[[policy]]
name = "inbound"
priority = 10
[[policy.member]]
source = "server_port=25, !policy_context=submission"
[[policy.access_control]]
name = "tag"
verdict = "PASS"
[[policy.quota]]
name = "per client"
track = "SenderIP:/32"
period = "1h"
verdict = "REJECT"
data = "inbound limit"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 1

[[policy]]
name = "submission"
priority = 20
[[policy.member]]
source = "%submission_ports"
[[policy.member]]
source = "policy_context=submission"
[[policy.quota]]
name = "per user"
track = "SASLUsername"
period = "1h"
verdict = "REJECT"
data = "submission limit"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 3

[[policy]]
name = "backup mx address"
priority = 30
[[policy.member]]
source = "server_address=192.0.2.53/32"
[[policy.access_control]]
name = "refuse"
verdict = "REJECT"
data = "not a relay for you"
"#;

fn on(port: &str, req: Request) -> Request {
    req.set("server_port", port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_25_465_and_587_get_their_own_policies() {
    let s = Stack::start(&Mode::Embedded, policy_file(SET), "listener").await;
    let mut c = s.client().await;
    let inbound = |i: &str| rcpt("a@x.org", "b@y.org", "198.51.100.7", i);
    let submit = |i: &str| rcpt("u@y.org", "b@x.org", "198.51.100.7", i).sasl("u@y.org");

    // Port 25: one recipient per hour for this client.
    assert_eq!(c.send(&on("25", inbound("1"))).await, "DUNNO");
    assert_eq!(
        c.send(&on("25", inbound("2"))).await,
        "REJECT inbound limit"
    );
    // Port 587 and 465 (through the group): three per hour per user, shared.
    assert_eq!(c.send(&on("587", submit("3"))).await, "DUNNO");
    assert_eq!(c.send(&on("465", submit("4"))).await, "DUNNO");
    assert_eq!(c.send(&on("587", submit("5"))).await, "DUNNO");
    assert_eq!(
        c.send(&on("465", submit("6"))).await,
        "REJECT submission limit"
    );
    // policy_context (Postfix 3.1+) names the listener whatever its port: the submission
    // policy applies, the inbound one (port 25 but not this context) does not.
    let ctx = |r: Request| on("25", r).set("policy_context", "Submission");
    assert_eq!(c.send(&ctx(submit("7"))).await, "REJECT submission limit");
    assert_eq!(
        c.send(&ctx(rcpt("a@x.org", "b@y.org", "198.51.100.8", "8")))
            .await,
        "DUNNO",
        "another client on port 25 with the submission context is not inbound"
    );
    // A request without server_port (an old Postfix) matches no port spec.
    assert_eq!(c.send(&inbound("9").without("server_port")).await, "DUNNO");
    // server_address: the listener's address.
    assert_eq!(
        c.send(&on("2525", inbound("10")).set("server_address", "192.0.2.53"))
            .await,
        "REJECT not a relay for you"
    );
    assert_eq!(
        c.send(&on("2525", inbound("11")).set("server_address", "192.0.2.54"))
            .await,
        "DUNNO"
    );
}

#[tokio::test]
async fn explain_says_which_listener_spec_matched() {
    let s = Stack::start(&Mode::Embedded, policy_file(SET), "explain").await;
    let mut req = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "198.51.100.7".parse().unwrap(),
    );
    req.sender = "a@x.org".into();
    req.recipient = "b@y.org".into();
    req.server_port = Some(587);
    let e = s.engine.explain(&req).await.to_string();
    assert!(e.contains("listener port 587"), "{e}");
    assert!(
        e.contains("[match]      20 \"submission\": member 1: source \"%submission_ports\""),
        "{e}"
    );
    assert!(
        e.contains(
            "[no match]   10 \"inbound\": member 1: source item \"server_port=25\" does not match"
        ),
        "{e}"
    );
}

#[test]
fn listener_specs_are_source_specs_with_checked_values() {
    for (spec, side, what) in [
        ("server_port=70000", "source", "port number"),
        ("server_port=25", "destination", "source spec"),
        ("server_address=10.0.0.0/40", "source", "server_address"),
        ("policy_context=", "source", "needs a value"),
        (
            "client_port=25",
            "source",
            "server_port=, server_address= and policy_context=",
        ),
    ] {
        let text = format!("[[policy]]\nname = \"p\"\n[[policy.member]]\n{side} = \"{spec}\"\n");
        let findings =
            sluice_store::policy_file::parse("l.toml", &text).expect_err("must be refused");
        let all = findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("l.toml:4") && all.contains(what),
            "{spec}: {all}"
        );
    }
    // Export writes them back as written.
    let def = policy_file(SET);
    assert_eq!(policy_file(&sluice_store::policy_file::to_toml(&def)), def);
}

/// The CLI end to end: `sluice policy import` stores the listener specs and the caps
/// (SQLite), and `sluice explain --server-port/--policy-context/--recipient-count` evaluates
/// them from the database.
#[test]
fn import_then_explain_from_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_sluice");
    let sluice = |args: &[&str]| {
        let out = std::process::Command::new(bin)
            .args(args)
            .env_remove("SLUICE_DATABASE")
            .env_remove("SLUICE_METRICS_LISTEN")
            .output()
            .expect("run sluice");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let file = dir.path().join("p.toml");
    let set = format!(
        "{SET}\n[[policy]]\nname = \"caps\"\n[[policy.member]]\nsource = \"policy_context=submission\"\n[policy.message_caps]\nmax_recipients = 2\n"
    );
    std::fs::write(&file, set).unwrap();
    let (code, text) = sluice(&[
        "policy",
        "import",
        file.to_str().unwrap(),
        "--database",
        &db,
        "--server",
        "off",
    ]);
    assert_eq!(code, Some(0), "{text}");
    let explain = |extra: &[&str]| {
        let mut a = vec![
            "explain",
            "--offline",
            "--database",
            &db,
            "--sender",
            "a@x.org",
            "--recipient",
            "b@y.org",
            "--client-address",
            "192.0.2.1",
            "--instance",
            "i1",
        ];
        a.extend_from_slice(extra);
        sluice(&a)
    };
    let (code, text) = explain(&["--server-address", "192.0.2.53", "--server-port", "2525"]);
    assert_eq!(code, Some(1), "refused: {text}");
    assert!(
        text.contains("listener port 2525 address 192.0.2.53"),
        "{text}"
    );
    assert!(text.contains("action=REJECT not a relay for you"), "{text}");
    let (code, text) = explain(&["--policy-context", "submission"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.contains(
            "recipients of this message (policy \"caps\"): recipient 1 of at most 2: fits"
        ),
        "{text}"
    );
    let (code, text) = explain(&[
        "--policy-context",
        "submission",
        "--protocol-state",
        "END-OF-MESSAGE",
        "--recipient-count",
        "3",
    ]);
    // Offline, nothing was recorded at RCPT for the message: END-OF-MESSAGE has nothing
    // to check, and says so.
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("END-OF-MESSAGE"), "{text}");
}
