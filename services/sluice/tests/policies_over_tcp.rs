//! Policies enforced over the real policy protocol: a real edge server on 127.0.0.1:0, a raw
//! TCP client speaking what Postfix speaks, the in-process state with a manual clock.

use sluice_engine::{
    AccessControlDef, GroupDef, GroupMemberDef, LimitDef, MemberDef, PolicyDef, PolicySetDef,
    QuotaDef,
};
use sluice_test_support::{end_of_message, rcpt, PolicyClient, Request, TestServer};

fn member(source: Option<&str>, destination: Option<&str>) -> MemberDef {
    MemberDef {
        source: source.map(Into::into),
        destination: destination.map(Into::into),
        ..Default::default()
    }
}

fn quota(
    name: &str,
    track: &str,
    kind: &str,
    limit: u64,
    verdict: &str,
    data: Option<&str>,
) -> QuotaDef {
    QuotaDef {
        name: name.into(),
        track: track.into(),
        period: 3600,
        verdict: verdict.into(),
        data: data.map(Into::into),
        limits: vec![LimitDef {
            kind: kind.into(),
            limit,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn one_policy(
    members: Vec<MemberDef>,
    quotas: Vec<QuotaDef>,
    access: Vec<AccessControlDef>,
) -> PolicySetDef {
    PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![],
        policies: vec![PolicyDef {
            name: "p".into(),
            priority: 10,
            members,
            quotas,
            access_control: access,
            ..Default::default()
        }],
    }
}

async fn answers(c: &mut PolicyClient, reqs: impl IntoIterator<Item = Request>) -> Vec<String> {
    let mut out = Vec::new();
    for r in reqs {
        out.push(c.send(&r).await);
    }
    out
}

/// N admitted, N+1 refused, for each track kind; `vary` gives request i of the same key,
/// `other` a request with a different key (which must still pass).
async fn exactly_n(track: &str, vary: impl Fn(usize) -> Request, other: Request) {
    let n = 5;
    let def = one_policy(
        vec![member(None, None)],
        vec![quota(
            "q",
            track,
            "RecipientCount",
            n as u64,
            "REJECT",
            Some("over the limit"),
        )],
        vec![],
    );
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    for i in 0..n {
        assert_eq!(
            c.send(&vary(i)).await,
            "DUNNO",
            "{track}: request {i} must pass"
        );
    }
    assert_eq!(
        c.send(&vary(n)).await,
        "REJECT over the limit",
        "{track}: request N+1"
    );
    assert_eq!(
        c.send(&vary(n + 1)).await,
        "REJECT over the limit",
        "{track}: still full"
    );
    assert_eq!(
        c.send(&other).await,
        "DUNNO",
        "{track}: another key has its own counter"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn exactly_n_per_track_kind() {
    exactly_n(
        "SenderIP:/24",
        |i| {
            rcpt(
                "a@x.org",
                "b@y.org",
                &format!("192.0.2.{}", i + 1),
                &format!("m{i}"),
            )
        },
        rcpt("a@x.org", "b@y.org", "192.0.3.1", "o"),
    )
    .await;
    exactly_n(
        "SenderIP:/32",
        |i| {
            rcpt(
                &format!("s{i}@x.org"),
                "b@y.org",
                "192.0.2.1",
                &format!("m{i}"),
            )
        },
        rcpt("a@x.org", "b@y.org", "192.0.2.2", "o"),
    )
    .await;
    exactly_n(
        "SenderIP:/64",
        |i| {
            rcpt(
                "a@x.org",
                "b@y.org",
                &format!("2001:db8:0:1::{}", i + 1),
                &format!("m{i}"),
            )
        },
        rcpt("a@x.org", "b@y.org", "2001:db8:0:2::1", "o"),
    )
    .await;
    exactly_n(
        "SenderIP:/24/48",
        |i| {
            rcpt(
                "a@x.org",
                "b@y.org",
                &format!("2001:db8:7:{i}::1"),
                &format!("m{i}"),
            )
        },
        rcpt("a@x.org", "b@y.org", "2001:db8:8::1", "o"),
    )
    .await;
    exactly_n(
        "SenderIP:/128",
        |i| rcpt("a@x.org", "b@y.org", "2001:db8::5", &format!("m{i}")),
        rcpt("a@x.org", "b@y.org", "2001:db8::6", "o"),
    )
    .await;
    exactly_n(
        "Sender:user@domain",
        |i| {
            rcpt(
                "Alice@X.org",
                "b@y.org",
                &format!("198.51.100.{i}"),
                &format!("m{i}"),
            )
        },
        rcpt("bob@x.org", "b@y.org", "192.0.2.1", "o"),
    )
    .await;
    exactly_n(
        "Sender:@domain",
        |i| {
            rcpt(
                &format!("u{i}@x.org"),
                "b@y.org",
                "192.0.2.1",
                &format!("m{i}"),
            )
        },
        rcpt("u@z.org", "b@y.org", "192.0.2.1", "o"),
    )
    .await;
    exactly_n(
        "Sender:user@",
        |i| {
            rcpt(
                &format!("alice@d{i}.org"),
                "b@y.org",
                "192.0.2.1",
                &format!("m{i}"),
            )
        },
        rcpt("bob@d.org", "b@y.org", "192.0.2.1", "o"),
    )
    .await;
    exactly_n(
        "Recipient:user@domain",
        |i| {
            rcpt(
                &format!("s{i}@x.org"),
                "b@y.org",
                "192.0.2.1",
                &format!("m{i}"),
            )
        },
        rcpt("s@x.org", "c@y.org", "192.0.2.1", "o"),
    )
    .await;
    exactly_n(
        "Recipient:@domain",
        |i| {
            rcpt(
                "s@x.org",
                &format!("r{i}@y.org"),
                "192.0.2.1",
                &format!("m{i}"),
            )
        },
        rcpt("s@x.org", "r@z.org", "192.0.2.1", "o"),
    )
    .await;
    exactly_n(
        "SASLUsername",
        |i| {
            rcpt(
                "s@x.org",
                &format!("r{i}@y.org"),
                "192.0.2.1",
                &format!("m{i}"),
            )
            .sasl("carol")
        },
        rcpt("s@x.org", "r@y.org", "192.0.2.1", "o").sasl("dave"),
    )
    .await;
}

#[tokio::test]
async fn policy_track_counts_everything_the_policy_matches() {
    let def = one_policy(
        vec![member(Some("192.0.2.0/24"), None)],
        vec![quota(
            "all",
            "Policy",
            "RecipientCount",
            3,
            "DEFER",
            Some("busy"),
        )],
        vec![],
    );
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    let got = answers(
        &mut c,
        (0..4).map(|i| {
            rcpt(
                &format!("s{i}@x.org"),
                &format!("r{i}@y.org"),
                &format!("192.0.2.{}", i + 1),
                "m",
            )
        }),
    )
    .await;
    assert_eq!(got[..3], ["DUNNO", "DUNNO", "DUNNO"]);
    assert!(
        got[3].starts_with("DEFER busy; try again in "),
        "{}",
        got[3]
    );
    assert_eq!(
        c.send(&rcpt("s@x.org", "r@y.org", "198.51.100.1", "m"))
            .await,
        "DUNNO",
        "outside the policy"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn every_quota_verdict_is_sent_as_postfix_expects() {
    for (verdict, data, expect) in [
        (
            "REJECT",
            None,
            "REJECT Policy rejection; Recipient count quota exceeded",
        ),
        ("REJECT", Some("554 5.7.1 Slow down"), "554 5.7.1 Slow down"),
        (
            "DEFER",
            Some("451 4.7.1 Slow down"),
            "451 4.7.1 Slow down; try again in 61 minutes",
        ),
        ("HOLD", Some("Review"), "HOLD Review"),
        (
            "DISCARD",
            None,
            "DISCARD Policy rejection; Recipient count quota exceeded",
        ),
        (
            "FILTER",
            Some("smtp:[127.0.0.1]:10026"),
            "FILTER smtp:[127.0.0.1]:10026",
        ),
        (
            "REDIRECT",
            Some("quarantine@example.com"),
            "REDIRECT quarantine@example.com",
        ),
    ] {
        let def = one_policy(
            vec![member(None, None)],
            vec![quota(
                "q",
                "Sender:user@domain",
                "RecipientCount",
                1,
                verdict,
                data,
            )],
            vec![],
        );
        let server = TestServer::start(def).await;
        let mut c = server.client().await;
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "1")).await,
            "DUNNO"
        );
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "2")).await,
            expect,
            "{verdict}"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn every_access_control_verdict() {
    for (verdict, data, expect) in [
        ("OK", None, "OK"),
        ("REJECT", Some("Go away"), "REJECT Go away"),
        ("REJECT", Some("550 5.7.1 Go away"), "550 5.7.1 Go away"),
        ("DEFER", Some("450 4.7.1 Later"), "450 4.7.1 Later"),
        ("HOLD", None, "HOLD"),
        ("DISCARD", Some("dropped"), "DISCARD dropped"),
        (
            "FILTER",
            Some("scan:[127.0.0.1]:10025"),
            "FILTER scan:[127.0.0.1]:10025",
        ),
        (
            "REDIRECT",
            Some("abuse@example.com"),
            "REDIRECT abuse@example.com",
        ),
        ("PASS", None, "DUNNO"),
    ] {
        let def = one_policy(
            vec![member(Some("192.0.2.0/24"), None)],
            vec![],
            vec![AccessControlDef {
                name: "ac".into(),
                verdict: verdict.into(),
                data: data.map(Into::into),
                ..Default::default()
            }],
        );
        let server = TestServer::start(def).await;
        let mut c = server.client().await;
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.9", "1")).await,
            expect,
            "{verdict}"
        );
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "203.0.113.9", "1"))
                .await,
            "DUNNO",
            "not a member"
        );
        server.shutdown().await;
    }
}

#[tokio::test]
async fn access_control_ok_stops_the_chain_before_quotas() {
    let mut def = one_policy(
        vec![member(None, None)],
        vec![quota("q", "Policy", "RecipientCount", 0, "REJECT", None)],
        vec![],
    );
    def.policies.push(PolicyDef {
        name: "whitelist".into(),
        priority: 5,
        members: vec![member(Some("$*"), None)],
        access_control: vec![AccessControlDef {
            name: "ok".into(),
            verdict: "OK".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "1").sasl("alice"))
            .await,
        "OK"
    );
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "2")).await,
        "REJECT Policy rejection; Recipient count quota exceeded"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn window_rolls_over_with_the_clock() {
    let def = one_policy(
        vec![member(None, None)],
        vec![quota(
            "q",
            "Sender:user@domain",
            "MessageCount",
            10,
            "DEFER",
            Some("wait"),
        )],
        vec![],
    );
    let server = TestServer::start(def).await;
    let clock = server.clock().clone();
    let mut c = server.client().await;
    // 10 messages spread over the first half hour.
    for i in 0..10 {
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", &format!("m{i}")))
                .await,
            "DUNNO"
        );
        clock.advance_secs(180);
    }
    // At 30 min: full. No boundary reset at the top of any hour either.
    let refused = c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "x1")).await;
    assert_eq!(
        refused, "DEFER wait; try again in 31 minutes",
        "the first message leaves the window at 60 min (+1 sub-bucket)"
    );
    clock.advance_secs(29 * 60);
    assert!(c
        .send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "x2"))
        .await
        .starts_with("DEFER"));
    clock.advance_secs(2 * 60);
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "x3")).await,
        "DUNNO",
        "one slot is free again"
    );
    assert!(
        c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "x4"))
            .await
            .starts_with("DEFER"),
        "and only one"
    );
    clock.advance_secs(3 * 3600);
    for i in 0..10 {
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", &format!("n{i}")))
                .await,
            "DUNNO"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn message_count_versus_recipient_count_on_a_five_recipient_message() {
    let def = one_policy(
        vec![member(None, None)],
        vec![
            quota(
                "messages",
                "Sender:user@domain",
                "MessageCount",
                2,
                "REJECT",
                Some("too many messages"),
            ),
            quota(
                "recipients",
                "Sender:@domain",
                "RecipientCount",
                7,
                "REJECT",
                Some("too many recipients"),
            ),
        ],
        vec![],
    );
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    let message = |inst: &str| {
        (0..5)
            .map(move |i| rcpt("a@x.org", &format!("r{i}@y.org"), "192.0.2.1", inst))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        answers(&mut c, message("m1")).await,
        vec!["DUNNO"; 5],
        "one message, five recipients"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 5, 1000, "192.0.2.1", "m1"))
            .await,
        "DUNNO"
    );
    // Second message: recipient count reaches 7 at its 2nd recipient.
    let got = answers(&mut c, message("m2")).await;
    assert_eq!(
        got,
        [
            "DUNNO",
            "DUNNO",
            "REJECT too many recipients",
            "REJECT too many recipients",
            "REJECT too many recipients"
        ]
    );
    // Third message from another user of the domain: the message limit is per sender address,
    // the recipient limit per domain (full).
    assert_eq!(
        c.send(&rcpt("b@x.org", "r@y.org", "192.0.2.1", "m3")).await,
        "REJECT too many recipients"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn size_quota_charged_at_end_of_message() {
    let def = one_policy(
        vec![member(None, None)],
        vec![quota(
            "bytes",
            "Sender:user@domain",
            "MessageCumulativeSize",
            10_000,
            "DEFER",
            Some("452 4.5.3 Size quota"),
        )],
        vec![],
    );
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    // Declared SIZE too large: refused at RCPT already.
    assert!(c
        .send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "big").size(20_000))
        .await
        .starts_with("452 4.5.3 Size quota"));
    // Three recipients, 4,000 bytes: charged once per message at END-OF-MESSAGE.
    for r in ["r1@y.org", "r2@y.org", "r3@y.org"] {
        assert_eq!(
            c.send(&rcpt("a@x.org", r, "192.0.2.1", "m1").size(4_000))
                .await,
            "DUNNO"
        );
    }
    assert_eq!(
        c.send(&end_of_message("a@x.org", 3, 4_000, "192.0.2.1", "m1"))
            .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "m2").size(4_000))
            .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 1, 4_000, "192.0.2.1", "m2"))
            .await,
        "DUNNO"
    );
    // 8,000 used: a declared 3,000 is refused at RCPT; an undeclared one passes RCPT but is
    // refused at end-of-data when its real size would exceed the limit.
    assert!(c
        .send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "m3").size(3_000))
        .await
        .starts_with("452"));
    assert_eq!(
        c.send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "m4")).await,
        "DUNNO"
    );
    assert!(c
        .send(&end_of_message("a@x.org", 1, 3_000, "192.0.2.1", "m4"))
        .await
        .starts_with("452 4.5.3 Size quota; try again in"));
    // The refused message charged nothing: 2,000 still fit.
    assert_eq!(
        c.send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "m5")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&end_of_message("a@x.org", 1, 2_000, "192.0.2.1", "m5"))
            .await,
        "DUNNO"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn all_or_nothing_across_two_limits() {
    let def = one_policy(
        vec![member(None, None)],
        vec![
            quota(
                "sender",
                "Sender:user@domain",
                "RecipientCount",
                3,
                "REJECT",
                Some("sender full"),
            ),
            quota(
                "ip",
                "SenderIP:/32",
                "RecipientCount",
                4,
                "REJECT",
                Some("ip full"),
            ),
        ],
        vec![],
    );
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    let got = answers(
        &mut c,
        (0..3).map(|i| rcpt("a@x.org", "r@y.org", "192.0.2.1", &i.to_string())),
    )
    .await;
    assert_eq!(got, vec!["DUNNO"; 3]);
    // The sender is full: these refusals must not charge the IP counter...
    for _ in 0..5 {
        assert_eq!(
            c.send(&rcpt("a@x.org", "r@y.org", "192.0.2.1", "x")).await,
            "REJECT sender full"
        );
    }
    // ... so the IP still has exactly one slot.
    assert_eq!(
        c.send(&rcpt("b@x.org", "r@y.org", "192.0.2.1", "y")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&rcpt("c@x.org", "r@y.org", "192.0.2.1", "z")).await,
        "REJECT ip full"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn groups_nesting_negation_sasl_and_hostnames() {
    let group = |name: &str, members: &[&str]| GroupDef {
        name: name.into(),
        members: members
            .iter()
            .map(|m| GroupMemberDef {
                member: m.to_string(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    let ac = |verdict: &str, data: &str| {
        vec![AccessControlDef {
            name: "ac".into(),
            verdict: verdict.into(),
            data: Some(data.into()),
            ..Default::default()
        }]
    };
    let def = PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![
            group("lan", &["10.0.0.0/8", "2001:db8:aaaa::/48"]),
            group("partners", &["@partner.example", ".relay.partner.example"]),
            group("trusted", &["%lan", "%partners"]),
            group("our_domains", &["@example.com", "@example.org"]),
        ],
        policies: vec![
            PolicyDef {
                name: "authenticated".into(),
                priority: 1,
                members: vec![member(Some("$*"), None)],
                access_control: ac("REJECT", "authenticated rule"),
                ..Default::default()
            },
            PolicyDef {
                name: "hostnames".into(),
                priority: 2,
                members: vec![
                    member(Some(".bad.example,!%trusted"), None),
                    member(Some("mx*.spam.example"), None),
                ],
                access_control: ac("REJECT", "hostname rule"),
                ..Default::default()
            },
            PolicyDef {
                name: "relay".into(),
                priority: 3,
                members: vec![member(Some("!%trusted"), Some("!%our_domains"))],
                access_control: ac("REJECT", "relaying denied"),
                ..Default::default()
            },
            PolicyDef {
                name: "null sender".into(),
                priority: 4,
                members: vec![member(Some("@"), Some("postmaster@*"))],
                access_control: ac("HOLD", "bounce to postmaster"),
                ..Default::default()
            },
        ],
    };
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    let host = |r: Request, name: &str| r.set("reverse_client_name", name);
    // SASL: any authenticated user.
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@example.com", "192.0.2.1", "1").sasl("Alice"))
            .await,
        "REJECT authenticated rule"
    );
    // Hostname suffix, unless trusted through nested groups (IP in %lan via %trusted).
    assert_eq!(
        c.send(&host(
            rcpt("a@x.org", "b@example.com", "192.0.2.1", "1"),
            "mx.bad.example"
        ))
        .await,
        "REJECT hostname rule"
    );
    assert_eq!(
        c.send(&host(
            rcpt("a@x.org", "b@example.com", "10.1.2.3", "1"),
            "mx.bad.example"
        ))
        .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&host(
            rcpt("a@partner.example", "b@example.com", "192.0.2.1", "1"),
            "mx.bad.example"
        ))
        .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&host(
            rcpt("a@x.org", "b@example.com", "192.0.2.1", "1"),
            "mx7.spam.example"
        ))
        .await,
        "REJECT hostname rule"
    );
    assert_eq!(
        c.send(&host(
            rcpt("a@x.org", "b@example.com", "192.0.2.1", "1"),
            "bad.example"
        ))
        .await,
        "DUNNO",
        "suffix means below the domain"
    );
    // Negation on both sides: untrusted client to a foreign domain is relaying.
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@elsewhere.net", "192.0.2.1", "1"))
            .await,
        "REJECT relaying denied"
    );
    assert_eq!(
        c.send(&rcpt(
            "a@x.org",
            "b@elsewhere.net",
            "2001:db8:aaaa:1::1",
            "1"
        ))
        .await,
        "DUNNO",
        "IPv6 in the nested lan group"
    );
    assert_eq!(
        c.send(&host(
            rcpt("a@x.org", "b@elsewhere.net", "192.0.2.1", "1"),
            "smtp.relay.partner.example"
        ))
        .await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&rcpt("a@x.org", "b@example.org", "192.0.2.1", "1"))
            .await,
        "DUNNO",
        "inbound is fine"
    );
    // Null sender.
    assert_eq!(
        c.send(&rcpt("", "postmaster@example.com", "192.0.2.1", "1"))
            .await,
        "HOLD bounce to postmaster"
    );
    assert_eq!(
        c.send(&rcpt("", "bob@example.com", "192.0.2.1", "1")).await,
        "DUNNO"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn monitor_mode_logs_but_answers_dunno() {
    let mut def = one_policy(
        vec![member(None, None)],
        vec![quota(
            "q",
            "Sender:user@domain",
            "RecipientCount",
            1,
            "REJECT",
            None,
        )],
        vec![],
    );
    def.policies[0].monitor = true;
    let server = TestServer::start(def).await;
    let mut c = server.client().await;
    for i in 0..3 {
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", &i.to_string()))
                .await,
            "DUNNO"
        );
    }
    server.shutdown().await;
}

/// Issue 12: a quota whose period overflowed admitted 301 of 301 requests against a limit
/// of 100. A quota of the longest period allowed (366 days) enforces its limit exactly:
/// N admitted, the N+1-th refused, and still refused a day later and just before the
/// period ends; room returns once the period (and one sub-bucket) has passed.
#[tokio::test]
async fn the_longest_period_enforces_its_limit_exactly() {
    let n = 100;
    let mut q = quota(
        "yearly",
        "Sender:user@domain",
        "MessageCount",
        n as u64,
        "DEFER",
        Some("yearly quota"),
    );
    q.period = sluice_engine::bounds::MAX_PERIOD_SECS;
    let server = TestServer::start(one_policy(vec![member(None, None)], vec![q], vec![])).await;
    let clock = server.clock().clone();
    let mut c = server.client().await;
    let mut admitted = 0;
    for i in 0..301 {
        let answer = c
            .send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", &format!("m{i}")))
            .await;
        if answer == "DUNNO" {
            admitted += 1;
        } else {
            assert!(
                answer.starts_with("DEFER yearly quota; try again in "),
                "{answer}"
            );
        }
        if i == n {
            assert_ne!(answer, "DUNNO", "message N+1 must be refused");
        }
    }
    assert_eq!(admitted, n, "exactly N of 301 admitted");

    clock.advance_secs(86_400);
    let refused = c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "d1")).await;
    assert!(refused.starts_with("DEFER yearly quota"), "{refused}");
    // Just before the period has passed since the burst: still full.
    clock.advance_secs(sluice_engine::bounds::MAX_PERIOD_SECS - 86_400 - 1);
    let refused = c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "d2")).await;
    assert!(refused.starts_with("DEFER yearly quota"), "{refused}");
    // A period and a sub-bucket (1/60 of it) later: room for N again.
    clock.advance_secs(sluice_engine::bounds::MAX_PERIOD_SECS / 60 + 2);
    for i in 0..n {
        assert_eq!(
            c.send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", &format!("n{i}")))
                .await,
            "DUNNO",
            "message {i} of the next period"
        );
    }
    assert!(c
        .send(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "n-over"))
        .await
        .starts_with("DEFER"));
    server.shutdown().await;
}
