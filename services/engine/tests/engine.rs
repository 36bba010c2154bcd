//! Engine behaviour over the in-process state with a manual clock (no sockets here; the
//! edge's tests drive the same engine over TCP).

use sluice_engine::*;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;

fn engine(toml_like: PolicySetDef) -> (Engine, ManualClock, Arc<MemoryState>) {
    let clock = ManualClock::new(T0);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let compiled = compile(&toml_like).unwrap_or_else(|d| panic!("{d:?}"));
    (
        Engine::new(compiled.set, state.clone(), EngineSettings::default()),
        clock,
        state,
    )
}

fn quota_policy(track: &str, kind: &str, limit: u64, verdict: &str) -> PolicySetDef {
    PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![],
        policies: vec![PolicyDef {
            name: "p".into(),
            priority: 10,
            members: vec![MemberDef::default()],
            quotas: vec![QuotaDef {
                name: "q".into(),
                track: track.into(),
                period: 3600,
                verdict: verdict.into(),
                data: Some("Too much mail".into()),
                limits: vec![LimitDef {
                    kind: kind.into(),
                    limit,
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn rcpt(sender: &str, rcpt: &str, ip: &str, instance: &str) -> PolicyRequest<'static> {
    let mut r = PolicyRequest::new(ProtocolState::Rcpt, ip.parse().unwrap());
    r.sender = sender.to_string().into();
    r.recipient = rcpt.to_string().into();
    r.instance = instance.to_string().into();
    r
}

/// The in-process state answers immediately: poll the future once.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("in-process engine future was not ready"),
    }
}

fn ask(e: &Engine, r: &PolicyRequest<'_>) -> String {
    block_on(e.decide(r)).action.to_string()
}

#[test]
fn sender_quota_admits_exactly_n_then_refuses() {
    let (e, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "MessageCount",
        3,
        "REJECT",
    ));
    for i in 0..3 {
        assert_eq!(
            ask(
                &e,
                &rcpt("a@x.org", "b@y.org", "192.0.2.1", &format!("m{i}"))
            ),
            "DUNNO"
        );
    }
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "m3")),
        "REJECT Too much mail"
    );
    // Another sender has its own counter.
    assert_eq!(
        ask(&e, &rcpt("c@x.org", "b@y.org", "192.0.2.1", "m4")),
        "DUNNO"
    );
}

#[test]
fn window_rolls_with_the_clock() {
    let (e, clock, _) = engine(quota_policy("SenderIP:/24", "RecipientCount", 2, "DEFER"));
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "m1")),
        "DUNNO"
    );
    clock.advance_secs(1800);
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.9", "m2")),
        "DUNNO"
    );
    let refused = ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.7", "m3"));
    assert!(
        refused.starts_with("DEFER Too much mail; try again in 31 minutes"),
        "{refused}"
    );
    clock.advance_secs(1800 + 60);
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.7", "m4")),
        "DUNNO"
    );
    assert!(ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.7", "m5")).starts_with("DEFER"));
}

#[test]
fn message_count_counts_messages_and_recipient_count_recipients() {
    let (msg, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "MessageCount",
        1,
        "REJECT",
    ));
    let (rc, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "RecipientCount",
        3,
        "REJECT",
    ));
    let answers = |e: &Engine| -> Vec<String> {
        (0..5)
            .map(|i| {
                ask(
                    e,
                    &rcpt("a@x.org", &format!("r{i}@y.org"), "192.0.2.1", "inst-1"),
                )
            })
            .collect()
    };
    assert_eq!(answers(&msg), vec!["DUNNO"; 5]);
    let rcs = answers(&rc);
    assert_eq!(rcs[..3], ["DUNNO", "DUNNO", "DUNNO"]);
    assert_eq!(rcs[3..], ["REJECT Too much mail", "REJECT Too much mail"]);
    // The next message is over the 1-message limit.
    assert_eq!(
        ask(&msg, &rcpt("a@x.org", "r@y.org", "192.0.2.1", "inst-2")),
        "REJECT Too much mail"
    );
}

#[test]
fn size_is_refused_early_and_charged_at_end_of_message() {
    let (e, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "MessageCumulativeSize",
        1000,
        "REJECT",
    ));
    let mut r = rcpt("a@x.org", "b@y.org", "192.0.2.1", "i1");
    r.size = 2000;
    assert_eq!(
        ask(&e, &r),
        "REJECT Too much mail",
        "declared SIZE over the limit"
    );
    r.size = 0;
    r.recipient = "c@y.org".into();
    assert_eq!(ask(&e, &r), "DUNNO");
    r.recipient = "d@y.org".into();
    assert_eq!(ask(&e, &r), "DUNNO");
    let mut eom = rcpt("a@x.org", "", "192.0.2.1", "i1");
    eom.protocol_state = ProtocolState::EndOfMessage;
    eom.size = 600;
    assert_eq!(
        ask(&e, &eom),
        "DUNNO",
        "charged once per message, not per recipient"
    );
    let mut r2 = rcpt("a@x.org", "b@y.org", "192.0.2.1", "i2");
    r2.size = 500;
    assert_eq!(ask(&e, &r2), "REJECT Too much mail", "600 + 500 > 1000");
    r2.size = 300;
    assert_eq!(ask(&e, &r2), "DUNNO");
    eom.instance = "i2".into();
    eom.size = 500;
    assert_eq!(
        ask(&e, &eom),
        "REJECT Too much mail",
        "refused at end-of-data rather than exceeded"
    );
}

#[test]
fn all_or_nothing_across_two_limits() {
    let mut def = quota_policy("Sender:user@domain", "RecipientCount", 5, "REJECT");
    def.policies[0].quotas.push(QuotaDef {
        name: "ip".into(),
        track: "SenderIP:/32".into(),
        period: 3600,
        verdict: "DEFER".into(),
        data: Some("IP limit".into()),
        limits: vec![LimitDef {
            kind: "RecipientCount".into(),
            limit: 2,
            ..Default::default()
        }],
        ..Default::default()
    });
    let (e, _, state) = engine(def);
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "1")),
        "DUNNO"
    );
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "2")),
        "DUNNO"
    );
    for _ in 0..5 {
        assert!(
            ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "3")).starts_with("DEFER IP limit")
        );
    }
    // The refused requests charged nothing to the sender counter: 3 more fit from another IP.
    for i in 0..3 {
        assert_eq!(
            ask(
                &e,
                &rcpt("a@x.org", "b@y.org", &format!("192.0.2.{}", 10 + i), "x")
            ),
            "DUNNO"
        );
    }
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.50", "x")),
        "REJECT Too much mail"
    );
    assert!(state.counters() >= 2);
}

#[test]
fn access_control_verdicts_and_chain() {
    for (verdict, data, expect) in [
        ("REJECT", Some("550 5.7.1 Go away"), "550 5.7.1 Go away"),
        ("REJECT", None, "REJECT"),
        ("DEFER", Some("Later"), "DEFER Later"),
        ("HOLD", Some("Check"), "HOLD Check"),
        ("DISCARD", None, "DISCARD"),
        (
            "FILTER",
            Some("smtp:[127.0.0.1]:10025"),
            "FILTER smtp:[127.0.0.1]:10025",
        ),
        (
            "REDIRECT",
            Some("abuse@example.com"),
            "REDIRECT abuse@example.com",
        ),
        ("OK", None, "OK"),
        ("PASS", None, "DUNNO"),
    ] {
        let def = PolicySetDef {
            greylisting_whitelist: Vec::new(),
            checkhelo_blacklist: Vec::new(),
            checkhelo_whitelist: Vec::new(),
            groups: vec![],
            policies: vec![PolicyDef {
                name: "p".into(),
                members: vec![MemberDef {
                    source: Some("192.0.2.0/24".into()),
                    ..Default::default()
                }],
                access_control: vec![AccessControlDef {
                    name: "ac".into(),
                    verdict: verdict.into(),
                    data: data.map(Into::into),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let (e, _, _) = engine(def);
        assert_eq!(
            ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "1")),
            expect,
            "{verdict}"
        );
        assert_eq!(
            ask(&e, &rcpt("a@x.org", "b@y.org", "198.51.100.1", "1")),
            "DUNNO"
        );
    }
}

/// What a connection keeps between requests (its scratch: buffers and the source memo)
/// never leaks into another request's counting: a source side or policy set seen in between
/// by a request that counted nothing must not let the old sender's keys or the old set's
/// quota be charged.
#[test]
fn a_connection_s_scratch_never_charges_another_source_side_or_policy_set() {
    // One recipient per sender (RecipientCount 1, by sender); recipients in blocked.example
    // are refused before any quota.
    let mut def = quota_policy("Sender:user@domain", "RecipientCount", 1, "DEFER");
    def.policies.insert(
        0,
        PolicyDef {
            name: "blocked".into(),
            priority: 5,
            members: vec![MemberDef {
                destination: Some("@blocked.example".into()),
                ..Default::default()
            }],
            access_control: vec![AccessControlDef {
                name: "deny".into(),
                verdict: "REJECT".into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    );
    let (e, _, _) = engine(def.clone());
    let mut scratch = Scratch::for_connection();
    let mut ask_on = |r: &PolicyRequest<'_>| {
        block_on(e.decide_reusing(r, &mut scratch))
            .action
            .to_string()
    };
    let ip = "192.0.2.1";
    assert_eq!(ask_on(&rcpt("a@x.org", "r1@y.org", ip, "m")), "DUNNO");
    // Another sender: refused by AccessControl, counting nothing.
    assert_eq!(
        ask_on(&rcpt("b@x.org", "r2@blocked.example", ip, "m")),
        "REJECT"
    );
    // The same sender as the last request, the same policies and message as the first:
    // its own sender's first recipient.
    assert_eq!(ask_on(&rcpt("b@x.org", "r3@y.org", ip, "m")), "DUNNO");
    assert!(ask_on(&rcpt("b@x.org", "r4@y.org", ip, "m")).starts_with("DEFER"));

    // The same request on a new set (the quota renamed): a new counter.
    def.policies[1].quotas[0].name = "q2".into();
    e.replace_policies(compile(&def).unwrap().set);
    assert_eq!(ask_on(&rcpt("b@x.org", "r5@y.org", ip, "m")), "DUNNO");
}

/// A message's later RCPTs reuse its first RCPT's batch: keys that depend on the recipient
/// are its own.
#[test]
fn a_reused_batch_counts_each_recipient_on_its_own_key() {
    let (e, _, _) = engine(quota_policy(
        "Recipient:user@domain",
        "RecipientCount",
        1,
        "DEFER",
    ));
    let mut scratch = Scratch::for_connection();
    let mut ask_on = |to: &str| {
        let r = rcpt("a@x.org", to, "192.0.2.1", "m");
        block_on(e.decide_reusing(&r, &mut scratch))
            .action
            .to_string()
    };
    assert_eq!(ask_on("r1@y.org"), "DUNNO");
    assert_eq!(ask_on("r2@y.org"), "DUNNO");
    assert!(ask_on("r1@y.org").starts_with("DEFER"));
    assert!(ask_on("r2@y.org").starts_with("DEFER"));
    assert_eq!(ask_on("r3@y.org"), "DUNNO");
}

/// Kept batches brought up to date in place decide like batches built afresh: one engine
/// decides with one connection's scratch, another with fresh buffers, over messages whose
/// senders, clients, sizes, instances and recipients vary while the same policies match.
#[test]
fn reused_batches_decide_like_fresh_ones() {
    let def: PolicySetDef = toml::from_str(
        r#"
[[policy]]
name = "all"
priority = 10
[[policy.member]]
destination = "any"
[[policy.quota]]
name = "per-sender"
track = "Sender:user@domain"
period = 3600
verdict = "DEFER"
[[policy.quota.limit]]
type = "MessageCount"
limit = 3
[[policy.quota.limit]]
type = "RecipientCount"
limit = 5
[[policy.quota]]
name = "per-network"
track = "SenderIP:/24"
period = 3600
verdict = "DEFER"
[[policy.quota.limit]]
type = "MessageCount"
limit = 4
[[policy.quota]]
name = "size"
track = "Sender:@domain"
period = 60
verdict = "DEFER"
[[policy.quota.limit]]
type = "MessageCumulativeSize"
limit = 30000
[[policy.quota]]
name = "per-recipient"
track = "Recipient:user@domain"
period = 3600
verdict = "DEFER"
[[policy.quota.limit]]
type = "RecipientCount"
limit = 2
"#,
    )
    .unwrap();
    let (reusing, reusing_clock, _) = engine(def.clone());
    let (fresh, fresh_clock, _) = engine(def);
    let mut scratch = Scratch::for_connection();
    let mut refused = 0;
    for msg in 0..30u32 {
        let instance = if msg % 5 == 0 {
            String::new()
        } else {
            format!("i{msg}")
        };
        let sender = format!("u{}@d{}.example", msg % 4, msg % 2);
        let ip = format!("10.0.{}.{msg}", msg % 3);
        let mut requests = Vec::new();
        for i in 0..=msg % 3 {
            let to = format!("r{}@x.example", (msg + i) % 4);
            requests.push(rcpt(&sender, &to, &ip, &instance));
        }
        let mut eom = rcpt(&sender, "", &ip, &instance);
        eom.protocol_state = ProtocolState::EndOfMessage;
        requests.push(eom);
        for mut r in requests {
            r.size = [0, 9_000, 20_000][msg as usize % 3];
            let a = block_on(reusing.decide_reusing(&r, &mut scratch));
            let b = block_on(fresh.decide(&r));
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "message {msg}: {r:?}");
            refused += usize::from(a.action != Action::Dunno);
            reusing_clock.advance_ms(1_000);
            fresh_clock.advance_ms(1_000);
        }
    }
    // The limits bind: a counter charged wrongly would show.
    assert!(refused >= 10, "{refused}");
}

#[test]
fn monitor_mode_counts_but_answers_dunno() {
    let mut def = quota_policy("Sender:user@domain", "RecipientCount", 1, "REJECT");
    def.policies[0].monitor = true;
    let (e, _, _) = engine(def);
    assert_eq!(
        ask(&e, &rcpt("a@x.org", "b@y.org", "192.0.2.1", "1")),
        "DUNNO"
    );
    let d = block_on(e.decide(&rcpt("a@x.org", "b@y.org", "192.0.2.1", "2")));
    assert_eq!(d.action, Action::Dunno);
    assert_eq!(d.verdicts.len(), 1);
    assert!(d.verdicts[0].monitor);
    assert_eq!(d.verdicts[0].action.to_string(), "REJECT Too much mail");
}

#[test]
fn explain_charges_nothing_and_says_why() {
    let (e, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "RecipientCount",
        1,
        "REJECT",
    ));
    let r = rcpt("a@x.org", "b@y.org", "192.0.2.1", "1");
    let x = block_on(e.explain(&r));
    let text = x.to_string();
    assert!(text.contains("[match]"), "{text}");
    assert!(text.contains("Sender:a@x.org"), "{text}");
    assert!(text.contains("level 1/1"), "{text}");
    assert_eq!(ask(&e, &r), "DUNNO", "explain did not charge");
    assert!(block_on(e.explain(&r)).to_string().contains("REFUSED"));
}

#[test]
fn compile_reports_errors_and_warnings() {
    let mut def = quota_policy("SenderIP", "MessageCount", 3, "BOUNCE");
    def.policies[0].members[0].source = Some("10.0.0.0/33".into());
    def.groups.push(GroupDef {
        name: "a".into(),
        members: vec![GroupMemberDef {
            member: "%b".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    def.groups.push(GroupDef {
        name: "b".into(),
        members: vec![GroupMemberDef {
            member: "%a".into(),
            ..Default::default()
        }],
        ..Default::default()
    });
    let errs = compile(&def).unwrap_err();
    let text: Vec<String> = errs.iter().map(|d| d.message.clone()).collect();
    let all = text.join("\n");
    assert!(all.contains("bad IPv4 mask"), "{all}");
    assert!(all.contains("needs a mask"), "{all}");
    assert!(all.contains("unknown quota verdict"), "{all}");
    assert!(all.contains("group loop"), "{all}");

    let mut inert = quota_policy("SenderIP:/24", "MessageCount", 3, "REJECT");
    inert.policies[0].quotas[0].limits.clear();
    let warnings = compile(&inert).unwrap().warnings;
    assert!(
        warnings
            .iter()
            .any(|w| w.message.contains("no enabled limit")),
        "{warnings:?}"
    );
}

#[test]
fn idle_counters_and_abandoned_sessions_are_reclaimed() {
    let mut def = quota_policy("Sender:user@domain", "MessageCount", 1_000_000, "REJECT");
    def.policies[0].quotas[0].period = 600;
    let (e, clock, state) = engine(def);
    // 50,000 requests over a bounded key space of 100 senders: counters stay at 100.
    for i in 0..50_000u64 {
        ask(
            &e,
            &rcpt(
                &format!("s{}@x.org", i % 100),
                "r@y.org",
                "192.0.2.1",
                &format!("m{i}"),
            ),
        );
        clock.advance_ms(10);
    }
    assert_eq!(state.counters(), 100);
    // Messages that never reached END-OF-MESSAGE hold sessions until their TTL.
    assert!(state.sessions() > 0);
    clock.advance_secs(601);
    state.sweep();
    assert_eq!(state.counters(), 0, "idle past their period");
    // A session lives for its longest window (here 10 minutes and a 10 s sub-bucket) from
    // its last change, at least 10 minutes: the last messages' are still there.
    assert!(
        state.sessions() > 0,
        "sessions live as long as their windows"
    );
    clock.advance_secs(10 * 60);
    state.sweep();
    assert_eq!(state.sessions(), 0);
    // END-OF-MESSAGE forgets the session at once.
    ask(&e, &rcpt("a@x.org", "r@y.org", "192.0.2.1", "done"));
    let mut eom = rcpt("a@x.org", "", "192.0.2.1", "done");
    eom.protocol_state = ProtocolState::EndOfMessage;
    ask(&e, &eom);
    assert_eq!(state.sessions(), 0);
}

/// The attack of issue 12: a quota whose period overflowed was shown "per 0s" and admitted
/// 301 of 301 requests against a limit of 100. The longest period allowed holds exactly,
/// and one second more is refused before it can be installed.
#[test]
fn the_longest_period_holds_and_a_longer_one_is_refused() {
    let mut def = quota_policy("Policy", "RecipientCount", 100, "DEFER");
    def.policies[0].quotas[0].period = bounds::MAX_PERIOD_SECS;
    let (e, clock, _) = engine(def.clone());
    let r = rcpt("a@example.com", "b@example.net", "192.0.2.1", "i");
    let explained = block_on(e.explain(&r)).to_string();
    assert!(
        explained.contains("1/100 per 31622400s: fits"),
        "{explained}"
    );
    let mut admitted = 0;
    for _ in 0..301 {
        if ask(&e, &r) == "DUNNO" {
            admitted += 1;
        }
        clock.advance_secs(60);
    }
    assert_eq!(admitted, 100);
    // 300 minutes later the window still holds all 100.
    assert!(ask(&e, &r).starts_with("DEFER Too much mail"));

    for period in [
        bounds::MAX_PERIOD_SECS + 1,
        18_446_744_073_709_552,
        9_223_372_036_854_775_807,
    ] {
        def.policies[0].quotas[0].period = period;
        let findings = compile(&def).expect_err("refused");
        assert!(
            findings.iter().any(|d| d.severity == Severity::Error
                && d.location
                    == Location::Quota {
                        policy: 0,
                        quota: 0,
                        field: "period"
                    }),
            "{period}: {findings:?}"
        );
    }
}

/// A declared or real size beyond every allowed limit is refused without overflowing any
/// sum, however large the number Postfix sends.
#[test]
fn huge_message_sizes_never_overflow_a_size_quota() {
    let (e, _, _) = engine(quota_policy(
        "Sender:user@domain",
        "MessageCumulativeSize",
        bounds::MAX_SIZE_LIMIT,
        "REJECT",
    ));
    let mut r = rcpt("a@example.com", "b@example.net", "192.0.2.1", "m1");
    r.size = u64::MAX;
    assert_eq!(ask(&e, &r), "REJECT Too much mail");
    r.size = 1000;
    assert_eq!(ask(&e, &r), "DUNNO");
    let mut eom = r.clone();
    eom.protocol_state = ProtocolState::EndOfMessage;
    eom.size = u64::MAX;
    assert_eq!(ask(&e, &eom), "REJECT Too much mail");
    // The next message fills the window exactly.
    r.instance = "m2".into();
    assert_eq!(ask(&e, &r), "DUNNO");
    eom.instance = "m2".into();
    eom.size = bounds::MAX_SIZE_LIMIT;
    assert_eq!(ask(&e, &eom), "DUNNO");
    r.instance = "m3".into();
    r.size = 0;
    assert_eq!(ask(&e, &r), "REJECT Too much mail", "the window is full");
}

/// A SASLUsername quota counts authenticated mail per user and skips unauthenticated mail,
/// also when the requests of one connection (one reused scratch) alternate between the two
/// (the batch's shape depends on whether the request is authenticated).
#[test]
fn sasl_quota_skips_unauthenticated_mail_on_a_reused_connection() {
    let (e, _, _) = engine(quota_policy("SASLUsername", "RecipientCount", 2, "REJECT"));
    let mut scratch = Scratch::default();
    let mut on_connection = |r: &PolicyRequest<'_>| {
        block_on(e.decide_reusing(r, &mut scratch))
            .action
            .to_string()
    };
    let with = |user: &str, i: usize| {
        let mut r = rcpt("a@x.org", &format!("r{i}@y.org"), "192.0.2.1", "m1");
        r.sasl_username = user.to_string().into();
        r
    };
    let mut got = Vec::new();
    for i in 0..4 {
        got.push(on_connection(&with("", i)));
        got.push(on_connection(&with("alice", i)));
    }
    got.push(on_connection(&with("bob", 9)));
    assert_eq!(
        got,
        [
            "DUNNO",
            "DUNNO",
            "DUNNO",
            "DUNNO",
            "DUNNO",
            "REJECT Too much mail",
            "DUNNO",
            "REJECT Too much mail",
            "DUNNO"
        ]
    );
    let x = block_on(e.explain(&with("", 5))).to_string();
    assert!(
        x.contains("quota \"q\" skipped: the mail is not authenticated"),
        "{x}"
    );
    assert!(x.contains("Action: action=DUNNO"), "{x}");
}

/// An explanation has no heading without lines under it: no policies, no access control.
#[test]
fn explanations_have_no_empty_headings() {
    let empty = PolicySetDef {
        greylisting_whitelist: Vec::new(),
        checkhelo_blacklist: Vec::new(),
        checkhelo_whitelist: Vec::new(),
        groups: vec![],
        policies: vec![],
    };
    let (e, _, _) = engine(empty);
    let r = rcpt("a@x.org", "b@y.org", "192.0.2.1", "m1");
    let x = block_on(e.explain(&r)).to_string();
    assert!(x.contains("Policies: none in the policy set"), "{x}");
    let (e, _, _) = engine(quota_policy("Policy", "RecipientCount", 5, "DEFER"));
    let x = block_on(e.explain(&r)).to_string();
    let lines: Vec<&str> = x.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if l.ends_with(':') {
            let next = lines.get(i + 1).copied().unwrap_or("");
            assert!(
                next.starts_with("  "),
                "heading {l:?} has nothing under it:\n{x}"
            );
        }
    }
    assert!(
        x.contains("AccessControl: no rule in the matched policies."),
        "{x}"
    );
}
