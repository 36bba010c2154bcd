//! Per-message caps over the real policy protocol, in both modes: embedded (the in-process
//! state) and cluster (the quota service over gRPC on a real 3-primary Redis Cluster).
//! Every scenario runs in both, with the same expected answers.

mod caps_support;
mod state_support;

use caps_support::{policy_file, Mode, Stack};
use sluice_test_support::{end_of_message, rcpt, PolicyClient, RedisCluster};

const TOO_BIG: &str = "552 5.3.4 Message size exceeds fixed limit of 10000000 bytes";

fn too_many(cap: u64) -> String {
    format!("452 4.5.3 Too many recipients (at most {cap} per message)")
}

fn too_many_at_eom(cap: u64) -> String {
    format!("554 5.5.3 Too many recipients (at most {cap} per message)")
}

const CAPS: &str = r#"
[[policy]]
name = "caps"
priority = 10
[[policy.member]]
source = "any"
[policy.message_caps]
max_message_size = "10MB"
max_recipients = 3
"#;

/// The declared size is checked at RCPT, the real one at END-OF-MESSAGE.
async fn size(mode: &Mode<'_>) {
    let s = Stack::start(mode, policy_file(CAPS), "size").await;
    let mut c = s.client().await;
    let ip = "192.0.2.1";
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", ip, "m1").size(20_000_000))
            .await,
        TOO_BIG,
        "declared size above the cap"
    );
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", ip, "m2").size(10_000_000))
            .await,
        "DUNNO",
        "declared size at the cap"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 1, 10_000_000, ip, "m2"))
            .await,
        "DUNNO",
        "real size at the cap"
    );
    // No SIZE= at RCPT: the real size decides at END-OF-MESSAGE.
    assert_eq!(c.send(&rcpt("a@x.org", "b@y.org", ip, "m3")).await, "DUNNO");
    assert_eq!(
        c.send(&end_of_message("a@x.org", 1, 10_000_001, ip, "m3"))
            .await,
        TOO_BIG,
        "real size one byte above the cap"
    );
    // A message without RCPT through Sluice has nothing recorded: nothing to check.
    assert_eq!(
        c.send(&end_of_message("a@x.org", 1, 50_000_000, ip, "never-seen"))
            .await,
        "DUNNO"
    );
}

/// A message refused at END-OF-MESSAGE for its size charges no size quota (the cap's
/// record leads the quota's in their all-or-nothing group).
async fn size_refusal_charges_no_quota(mode: &Mode<'_>) {
    let text = format!(
        "{CAPS}
[[policy.quota]]
name = \"bytes\"
track = \"Sender:user@domain\"
period = \"1h\"
verdict = \"REJECT\"
data = \"size quota\"
[[policy.quota.limit]]
type = \"MessageCumulativeSize\"
limit = \"15MB\"
"
    );
    let s = Stack::start(mode, policy_file(&text), "size-quota").await;
    let mut c = s.client().await;
    let ip = "192.0.2.2";
    async fn message(c: &mut PolicyClient, ip: &str, instance: &str, size: u64) -> String {
        assert_eq!(
            c.send(&rcpt("q@x.org", "b@y.org", ip, instance)).await,
            "DUNNO",
            "{instance} at RCPT"
        );
        c.send(&end_of_message("q@x.org", 1, size, ip, instance))
            .await
    }
    assert_eq!(message(&mut c, ip, "q1", 12_000_000).await, TOO_BIG);
    assert_eq!(message(&mut c, ip, "q2", 9_000_000).await, "DUNNO");
    assert_eq!(
        message(&mut c, ip, "q3", 5_000_000).await,
        "DUNNO",
        "14 MB of 15"
    );
    assert_eq!(
        message(&mut c, ip, "q4", 2_000_000).await,
        "REJECT size quota",
        "16 MB: the quota counted q2 and q3, not the refused q1"
    );
}

/// The recipient after the cap is refused at RCPT with 452 4.5.3; each message counts on
/// its own; END-OF-MESSAGE checks `recipient_count`.
async fn recipients(mode: &Mode<'_>) {
    let s = Stack::start(mode, policy_file(CAPS), "rcpt").await;
    let mut c = s.client().await;
    let ip = "192.0.2.3";
    for n in 1..=3 {
        let to = format!("r{n}@y.org");
        assert_eq!(
            c.send(&rcpt("a@x.org", &to, ip, "big")).await,
            "DUNNO",
            "recipient {n}"
        );
    }
    for n in 4..=5 {
        let to = format!("r{n}@y.org");
        assert_eq!(
            c.send(&rcpt("a@x.org", &to, ip, "big")).await,
            too_many(3),
            "recipient {n}"
        );
    }
    // Another message (another instance) starts from zero, on another connection too.
    let mut other = s.client().await;
    assert_eq!(
        other.send(&rcpt("a@x.org", "r1@y.org", ip, "small")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 3, 1000, ip, "big")).await,
        "DUNNO",
        "END-OF-MESSAGE with the 3 accepted recipients"
    );
    // The count at END-OF-MESSAGE is checked too (a transaction whose RCPTs were not all
    // counted: here, Postfix reports 5 where Sluice saw 1).
    assert_eq!(
        other
            .send(&end_of_message("a@x.org", 5, 1000, ip, "small"))
            .await,
        too_many_at_eom(3)
    );
    // Time passing does not free a message's recipients within its transaction (an hour).
    assert_eq!(
        c.send(&rcpt("a@x.org", "r1@y.org", ip, "slow")).await,
        "DUNNO"
    );
    s.clock.advance_secs(600);
    assert_eq!(
        c.send(&rcpt("a@x.org", "r2@y.org", ip, "slow")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&rcpt("a@x.org", "r3@y.org", ip, "slow")).await,
        "DUNNO"
    );
    s.clock.advance_secs(600);
    assert_eq!(
        c.send(&rcpt("a@x.org", "r4@y.org", ip, "slow")).await,
        too_many(3)
    );
}

/// A recipient refused by a later module (a quota) is not counted against the cap; one
/// refused by the cap charges no quota.
async fn refused_recipients_are_not_counted(mode: &Mode<'_>) {
    let text = r#"
[[policy]]
name = "caps"
[[policy.member]]
source = "any"
[policy.message_caps]
max_recipients = 2
[[policy.quota]]
name = "per recipient"
track = "Recipient:user@domain"
period = "1h"
verdict = "REJECT"
data = "recipient quota"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 1
"#;
    let s = Stack::start(mode, policy_file(text), "refused").await;
    let mut c = s.client().await;
    let ip = "192.0.2.4";
    assert_eq!(c.send(&rcpt("a@x.org", "x@y.org", ip, "m1")).await, "DUNNO");
    let send = |to: &str| rcpt("a@x.org", to, ip, "m2");
    assert_eq!(c.send(&send("x@y.org")).await, "REJECT recipient quota");
    assert_eq!(c.send(&send("y@y.org")).await, "DUNNO");
    assert_eq!(
        c.send(&send("z@y.org")).await,
        "DUNNO",
        "the recipient the quota refused was not counted"
    );
    assert_eq!(c.send(&send("w@y.org")).await, too_many(2));
    // w was refused by the cap: its quota was not charged.
    assert_eq!(c.send(&rcpt("a@x.org", "w@y.org", ip, "m3")).await, "DUNNO");
    // A recipient cap without a size cap: END-OF-MESSAGE checks the count only, whatever
    // the size.
    assert_eq!(
        c.send(&end_of_message("a@x.org", 2, 90_000_000_000, ip, "m2"))
            .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 3, 1000, ip, "m1")).await,
        too_many_at_eom(2)
    );
}

/// Caps merge over the matched policies: a more specific policy (higher priority number)
/// overrides the default's cap, field by field.
async fn overrides(mode: &Mode<'_>) {
    let text = r#"
[[policy]]
name = "default"
priority = 0
[[policy.member]]
source = "any"
[policy.message_caps]
max_recipients = 2
max_message_size = "10MB"

[[policy]]
name = "newsletter"
priority = 50
[[policy.member]]
source = "$newsletter@x.org"
[policy.message_caps]
max_recipients = 4
"#;
    let s = Stack::start(mode, policy_file(text), "override").await;
    let mut c = s.client().await;
    let ip = "192.0.2.5";
    let user = |to: &str, i: &str| rcpt("a@x.org", to, ip, i);
    let news = |to: &str, i: &str| rcpt("n@x.org", to, ip, i).sasl("newsletter@x.org");
    assert_eq!(c.send(&user("1@y.org", "u")).await, "DUNNO");
    assert_eq!(c.send(&user("2@y.org", "u")).await, "DUNNO");
    assert_eq!(c.send(&user("3@y.org", "u")).await, too_many(2));
    for n in 1..=4 {
        assert_eq!(
            c.send(&news(&format!("{n}@y.org"), "n")).await,
            "DUNNO",
            "newsletter recipient {n}"
        );
    }
    assert_eq!(c.send(&news("5@y.org", "n")).await, too_many(4));
    // The size cap is inherited from the default.
    assert_eq!(
        c.send(&news("1@y.org", "n2").size(10_000_001)).await,
        TOO_BIG
    );
}

/// A monitor-mode policy's cap is logged, not enforced; its counter is its own.
async fn monitor(mode: &Mode<'_>) {
    let text = CAPS.replace("priority = 10\n", "priority = 10\nmonitor = true\n");
    assert_ne!(text, CAPS);
    let s = Stack::start(mode, policy_file(&text), "monitor").await;
    let mut c = s.client().await;
    let ip = "192.0.2.6";
    for n in 1..=4 {
        let to = format!("r{n}@y.org");
        assert_eq!(c.send(&rcpt("a@x.org", &to, ip, "mon")).await, "DUNNO");
    }
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", ip, "mon2").size(20_000_000))
            .await,
        "DUNNO"
    );
    let mut req =
        sluice_engine::PolicyRequest::new(sluice_engine::ProtocolState::Rcpt, ip.parse().unwrap());
    req.sender = "a@x.org".into();
    req.recipient = "r5@y.org".into();
    req.instance = "mon".into();
    let d = s.engine.decide(&req).await;
    assert_eq!(d.action.to_string(), "DUNNO");
    let v = d.verdicts.first().expect("the monitor-mode verdict");
    assert!(v.monitor && v.module == "MessageCaps", "{v:?}");
    assert_eq!(v.action.to_string(), too_many(3));
}

async fn all_scenarios(mode: Mode<'_>) {
    monitor(&mode).await;
    size(&mode).await;
    size_refusal_charges_no_quota(&mode).await;
    recipients(&mode).await;
    refused_recipients_are_not_counted(&mode).await;
    overrides(&mode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_caps_embedded() {
    all_scenarios(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_caps_cluster() {
    let cluster = RedisCluster::start(3, 0);
    all_scenarios(Mode::Cluster(&cluster)).await;
    two_edges(&cluster).await;
}

/// Cluster mode: a message whose requests reach two edges (Postfix reconnected to another
/// one) is counted as one message: the recipient counter lives in Redis, shared by the
/// edges.
async fn two_edges(cluster: &RedisCluster) {
    let mut s = Stack::start(&Mode::Cluster(cluster), policy_file(CAPS), "two-edges").await;
    let other = s.another_edge().await;
    let mut a = s.client().await;
    let mut b = PolicyClient::connect(other).await;
    let ip = "192.0.2.7";
    let to = |n: u32| format!("r{n}@y.org");
    assert_eq!(a.send(&rcpt("a@x.org", &to(1), ip, "m")).await, "DUNNO");
    assert_eq!(b.send(&rcpt("a@x.org", &to(2), ip, "m")).await, "DUNNO");
    assert_eq!(a.send(&rcpt("a@x.org", &to(3), ip, "m")).await, "DUNNO");
    assert_eq!(b.send(&rcpt("a@x.org", &to(4), ip, "m")).await, too_many(3));
    // END-OF-MESSAGE on the second edge: the size cap it recorded at RCPT applies.
    assert_eq!(
        b.send(&end_of_message("a@x.org", 3, 10_000_001, ip, "m"))
            .await,
        TOO_BIG
    );
}

/// Out-of-range caps are refused with the file's line and the field.
#[test]
fn out_of_range_caps_name_the_line_and_field() {
    for (field, value, what) in [
        ("max_recipients", "0", "outside 1..=1000000"),
        ("max_recipients", "1000001", "outside 1..=1000000"),
        ("max_message_size", "0", "outside 1 byte"),
        ("max_message_size", "\"101TB\"", "outside 1 byte ..= 100 TB"),
        ("max_message_size", "\"100000000TB\"", "too large"),
    ] {
        let text = format!(
            "[[policy]]\nname = \"p\"\n[[policy.member]]\nsource = \"any\"\n[policy.message_caps]\n{field} = {value}\n"
        );
        let findings =
            sluice_store::policy_file::parse("caps.toml", &text).expect_err("must be refused");
        let all = findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(all.contains("caps.toml:6"), "{field}={value}: {all}");
        assert!(
            all.contains(field) && all.contains(what),
            "{field}={value}: {all}"
        );
    }
}

/// `explain` shows the caps, and the policy file round-trips them.
#[tokio::test]
async fn explain_and_export_show_the_caps() {
    let def = policy_file(CAPS);
    let exported = sluice_store::policy_file::to_toml(&def);
    assert!(
        exported.contains("max_message_size = \"10MB\""),
        "{exported}"
    );
    assert!(exported.contains("max_recipients = 3"), "{exported}");
    assert_eq!(policy_file(&exported), def);
    let s = Stack::start(&Mode::Embedded, def, "explain").await;
    let mut req = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "192.0.2.9".parse().unwrap(),
    );
    req.sender = "a@x.org".into();
    req.recipient = "b@y.org".into();
    req.instance = "e1".into();
    req.size = 20_000_000;
    let e = s.engine.explain(&req).await.to_string();
    assert!(
        e.contains("MessageCaps: size cap 10000000 bytes (policy \"caps\"): declared size 20000000 bytes is above it"),
        "{e}"
    );
    req.size = 0;
    let e = s.engine.explain(&req).await.to_string();
    assert!(
        e.contains("MessageCaps: recipients of this message (policy \"caps\"): recipient 1 of at most 3: fits"),
        "{e}"
    );
}
