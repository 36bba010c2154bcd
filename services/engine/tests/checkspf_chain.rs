//! CheckSPF on the chain, over the in-process state: what it asks for, how an SPF answer
//! becomes the verdict, how a later verdict replaces its PREPEND, and greylisting's
//! `skip_spf_pass`. The answers are given as the edge gives them (`decide_with`); the
//! evaluation over real DNS is tested in `services/sluice/tests/checkspf.rs`.

use sluice_engine::*;
use std::sync::Arc;

const T0: u64 = 1_700_000_000_000;

fn engine(def: PolicySetDef) -> Engine {
    let clock = ManualClock::new(T0);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock),
        MemoryStateSettings::default(),
    ));
    let compiled = compile(&def).unwrap_or_else(|d| panic!("{d:?}"));
    Engine::new(compiled.set, state, EngineSettings::default())
}

fn policy(name: &str, priority: i32, spf: Option<CheckSpfDef>) -> PolicyDef {
    PolicyDef {
        name: name.into(),
        priority,
        members: vec![MemberDef::default()],
        checkspf: spf,
        ..Default::default()
    }
}

fn spf(enabled: Option<bool>, reject: Option<bool>, header: Option<bool>) -> CheckSpfDef {
    CheckSpfDef {
        enabled,
        reject_failed: reject,
        add_header: header,
        ..Default::default()
    }
}

fn set(policies: Vec<PolicyDef>) -> PolicySetDef {
    PolicySetDef {
        policies,
        ..Default::default()
    }
}

fn rcpt(sender: &str) -> PolicyRequest<'static> {
    let mut r = PolicyRequest::new(ProtocolState::Rcpt, "192.0.2.7".parse().unwrap());
    r.sender = sender.to_string().into();
    r.recipient = "b@y.org".into();
    r.helo_name = "mail.x.org".into();
    r.instance = "m1".into();
    r
}

fn question(sender: &str) -> Lookup<'_> {
    Lookup::Spf {
        ip: "192.0.2.7".parse().unwrap(),
        sender: sender.into(),
        helo: "mail.x.org".into(),
    }
}

fn answers(sender: &str, result: SpfResult) -> LookupAnswers<'_> {
    let mut a = LookupAnswers::default();
    a.insert(
        question(sender),
        LookupAnswer::Spf(Arc::new(SpfAnswer {
            result,
            domain: "x.org".into(),
            explanation: None,
            header: format!("{result} (mx.test: test) client-ip=192.0.2.7;"),
        })),
    );
    a
}

/// The in-process state answers immediately: poll the future once.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-process state answers at once"),
    }
}

fn decide(e: &Engine, sender: &str, a: &LookupAnswers) -> Decision {
    block_on(e.decide_with(&rcpt(sender), a, &mut Scratch::default()))
}

#[test]
fn asks_only_when_the_merge_turns_it_on_and_the_sender_is_not_null() {
    let e = engine(set(vec![policy(
        "a",
        10,
        Some(spf(Some(true), None, None)),
    )]));
    assert_eq!(e.lookups(&rcpt("u@x.org")), vec![question("u@x.org")]);
    assert!(e.lookups(&rcpt("")).is_empty(), "null sender: not checked");
    // A higher priority number's `enabled = false` wins; an unset one inherits.
    let e = engine(set(vec![
        policy("a", 10, Some(spf(Some(true), None, None))),
        policy("b", 20, Some(spf(Some(false), None, None))),
    ]));
    assert!(e.lookups(&rcpt("u@x.org")).is_empty());
    let e = engine(set(vec![
        policy("a", 10, Some(spf(Some(true), None, None))),
        policy("b", 20, Some(spf(None, Some(true), None))),
    ]));
    assert_eq!(e.lookups(&rcpt("u@x.org")).len(), 1);
    let e = engine(set(vec![policy(
        "a",
        10,
        Some(spf(None, Some(true), None)),
    )]));
    assert!(
        e.lookups(&rcpt("u@x.org")).is_empty(),
        "UseSPF never set: off"
    );
    let mut disabled = spf(Some(true), None, None);
    disabled.disabled = true;
    let e = engine(set(vec![policy("a", 10, Some(disabled))]));
    assert!(e.lookups(&rcpt("u@x.org")).is_empty(), "a disabled row");
}

#[test]
fn results_become_policyd_verdicts() {
    let e = engine(set(vec![policy(
        "a",
        10,
        Some(spf(Some(true), Some(true), Some(true))),
    )]));
    let s = "u@x.org";
    let d = decide(&e, s, &answers(s, SpfResult::Fail));
    assert_eq!(
        d.action.to_string(),
        "REJECT Failed SPF check; x.org, Sender is not authorized to use 'u@x.org' in 'mfrom' identity"
    );
    assert_eq!(d.spf, Some("fail"));
    assert_eq!(d.verdicts[0].module, "CheckSPF");
    let d = decide(&e, s, &answers(s, SpfResult::TempError));
    assert!(
        d.action
            .to_string()
            .starts_with("DEFER Failed SPF check; x.org, Temporary error"),
        "{}",
        d.action
    );
    let d = decide(&e, s, &answers(s, SpfResult::SoftFail));
    assert_eq!(
        d.action.to_string(),
        "PREPEND Received-SPF: softfail (mx.test: test) client-ip=192.0.2.7;"
    );
    let d = decide(&e, s, &answers(s, SpfResult::Pass));
    assert_eq!(d.action, Action::Dunno);
    assert_eq!(d.spf, Some("pass"));
    // No answer (the lookup deadline passed): a temperror.
    let d = decide(&e, s, LookupAnswers::none());
    assert_eq!(d.spf, Some("temperror"));
    assert!(d.action.to_string().starts_with("DEFER Failed SPF check;"));
    // Null sender: not checked at all.
    let d = decide(&e, "", LookupAnswers::none());
    assert_eq!((d.action, d.spf), (Action::Dunno, None));
}

#[test]
fn monitor_mode_logs_only() {
    let mut p = policy("a", 10, Some(spf(Some(true), Some(true), None)));
    p.monitor = true;
    let e = engine(set(vec![p]));
    let d = decide(&e, "u@x.org", &answers("u@x.org", SpfResult::Fail));
    assert_eq!(d.action, Action::Dunno);
    assert!(d.verdicts[0].monitor);
    assert!(d.verdicts[0]
        .action
        .to_string()
        .starts_with("REJECT Failed SPF check"));
}

fn greylisting(skip: Option<bool>) -> GreylistingDef {
    GreylistingDef {
        period: Some(60),
        skip_spf_pass: skip,
        ..Default::default()
    }
}

#[test]
fn a_later_final_verdict_replaces_the_prepend() {
    let mut p = policy("a", 10, Some(spf(Some(true), None, Some(true))));
    p.greylisting = Some(greylisting(None));
    let e = engine(set(vec![p]));
    let s = "u@x.org";
    let d = decide(&e, s, &answers(s, SpfResult::SoftFail));
    assert_eq!(
        d.action.to_string(),
        "451 4.7.1 Greylisting in effect, please come back later",
        "one action line: greylisting's deferral replaces the PREPEND"
    );
    assert_eq!(
        d.verdicts.len(),
        2,
        "both verdicts are logged: {:?}",
        d.verdicts
    );
    let x = block_on(e.explain(&rcpt(s))).to_string();
    assert!(x.contains("CheckSPF:"), "{x}");
    assert!(
        x.contains("(the earlier action=PREPEND Received-SPF: temperror"),
        "explain names the dropped PREPEND: {x}"
    );
}

#[test]
fn greylisting_skips_a_pass_only_when_asked() {
    let s = "u@x.org";
    // Off (the default): no SPF question, the triplet is greylisted.
    let mut p = policy("a", 10, None);
    p.greylisting = Some(greylisting(None));
    let e = engine(set(vec![p]));
    assert!(e.lookups(&rcpt(s)).is_empty());
    let d = decide(&e, s, &answers(s, SpfResult::Pass));
    assert!(d.action.to_string().starts_with("451 4.7.1"));
    // On: one question (CheckSPF off here), a pass skips, anything else greylists.
    let mut p = policy("a", 10, None);
    p.greylisting = Some(greylisting(Some(true)));
    let e = engine(set(vec![p]));
    assert_eq!(e.lookups(&rcpt(s)), vec![question(s)]);
    let d = decide(&e, s, &answers(s, SpfResult::Pass));
    assert_eq!(d.action, Action::Dunno);
    assert_eq!(d.greylisting, Some("spf_pass"));
    assert_eq!(d.spf, None, "CheckSPF itself did not run");
    let d = decide(&e, "v@x.org", &answers("v@x.org", SpfResult::SoftFail));
    assert!(d.action.to_string().starts_with("451 4.7.1"));
    let d = decide(&e, "w@x.org", LookupAnswers::none());
    assert!(
        d.action.to_string().starts_with("451 4.7.1"),
        "no answer: greylisted"
    );
    // With CheckSPF on too: still one question.
    let mut p = policy("a", 10, Some(spf(Some(true), None, None)));
    p.greylisting = Some(greylisting(Some(true)));
    let e = engine(set(vec![p]));
    assert_eq!(e.lookups(&rcpt(s)).len(), 1);
}

#[test]
fn policies_matched_for_the_lookups_are_carried_to_the_decision_of_the_same_set_only() {
    let e = engine(set(vec![policy(
        "a",
        10,
        Some(spf(Some(true), Some(true), None)),
    )]));
    let s = "u@x.org";
    let fail = answers(s, SpfResult::Fail);
    // Carried: the decision is the one matched afresh.
    let mut scratch = Scratch::default();
    assert_eq!(e.lookups_reusing(&rcpt(s), &mut scratch), vec![question(s)]);
    let carried = block_on(e.decide_with(&rcpt(s), &fail, &mut scratch));
    assert_eq!(carried, decide(&e, s, &fail));
    assert!(carried.action.to_string().starts_with("REJECT"));
    // The set replaced between the two steps: what was matched on the old set is not
    // used (the new set has no policy at all: an index carried over would not exist).
    assert_eq!(e.lookups_reusing(&rcpt(s), &mut scratch).len(), 1);
    e.replace_policies(compile(&set(Vec::new())).unwrap().set);
    let d = block_on(e.decide_with(&rcpt(s), &fail, &mut scratch));
    assert_eq!(d.action, Action::Dunno);
    assert!(d.verdicts.is_empty());
}
