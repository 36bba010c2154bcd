//! Accounting in the engine with the in-process state and a manual clock: monitor mode,
//! LastAccounting, all-or-nothing with Quotas, rows that only count, and what explain says.

use sluice_engine::{
    compile, AccountingDef, Engine, EngineSettings, LimitDef, ManualClock, MemberDef, MemoryState,
    MemoryStateSettings, PolicyDef, PolicyRequest, PolicySetDef, ProtocolState, QuotaDef,
};
use std::sync::Arc;

/// The in-process state answers in place: the futures are ready at once.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("pending"),
    }
}

/// 2026-11-30T12:00:00Z.
const NOW: u64 = 1_796_040_000_000;

fn engine(policies: Vec<PolicyDef>) -> (Engine, ManualClock) {
    let clock = ManualClock::new(NOW);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let set = compile(&PolicySetDef {
        policies,
        ..Default::default()
    })
    .expect("compiles")
    .set;
    let e = Engine::new(set, state, EngineSettings::default()).with_clock(Arc::new(clock.clone()));
    (e, clock)
}

fn policy(name: &str, priority: i32, rows: Vec<AccountingDef>) -> PolicyDef {
    PolicyDef {
        name: name.into(),
        priority,
        members: vec![MemberDef::default()],
        accounting: rows,
        ..Default::default()
    }
}

fn row(name: &str, limit: u64) -> AccountingDef {
    AccountingDef {
        name: name.into(),
        track: "Sender:@domain".into(),
        period: "day".into(),
        message_count_limit: Some(limit),
        verdict: Some("REJECT".into()),
        ..Default::default()
    }
}

fn rcpt(instance: &str) -> PolicyRequest<'static> {
    let mut r = PolicyRequest::new(ProtocolState::Rcpt, "192.0.2.1".parse().unwrap());
    r.sender = "a@x.org".into();
    r.recipient = "b@y.org".into();
    r.instance = instance.to_string().into();
    r
}

#[test]
fn monitor_mode_logs_the_refusal_and_answers_dunno() {
    let mut p = policy("watch", 10, vec![row("daily", 1)]);
    p.monitor = true;
    let (e, _) = engine(vec![p]);
    assert_eq!(block_on(e.decide(&rcpt("m1"))).accounting, Some("counted"));
    let d = block_on(e.decide(&rcpt("m2")));
    assert_eq!(d.action.to_string(), "DUNNO");
    assert_eq!(d.accounting, Some("monitored"));
    assert_eq!(d.verdicts.len(), 1);
    assert!(d.verdicts[0].monitor);
    assert_eq!(
        d.verdicts[0].action.to_string(),
        "REJECT Policy rejection; Message count exceeded"
    );
    assert!(d.accounted.is_empty(), "a refused request counts nothing");
}

#[test]
fn last_accounting_stops_later_rows_and_policies() {
    let mut first = row("first", 5);
    first.last_accounting = true;
    let (e, _) = engine(vec![
        policy("a", 10, vec![first, row("second", 0)]),
        policy("b", 20, vec![row("third", 0)]),
    ]);
    let d = block_on(e.decide(&rcpt("m1")));
    assert_eq!(d.action.to_string(), "DUNNO", "{d:?}");
    assert_eq!(d.accounted.len(), 1);
    assert_eq!(&*d.accounted[0].name, "first");
    let x = block_on(e.explain(&rcpt("m2"))).to_string();
    assert!(
        x.contains("row \"first\" of policy \"a\" is LastAccounting"),
        "{x}"
    );
    assert!(!x.contains("\"second\"") && !x.contains("\"third\""), "{x}");
}

#[test]
fn a_quota_refusal_charges_no_accounting_and_the_reverse() {
    let quota = QuotaDef {
        name: "q".into(),
        track: "Policy".into(),
        period: 3600,
        verdict: "DEFER".into(),
        limits: vec![LimitDef {
            kind: "MessageCount".into(),
            limit: 1,
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut p = policy("both", 10, vec![row("daily", 1)]);
    p.quotas = vec![quota];
    let (e, clock) = engine(vec![p]);
    assert_eq!(block_on(e.decide(&rcpt("m1"))).action.to_string(), "DUNNO");
    let d = block_on(e.decide(&rcpt("m2")));
    assert!(d.action.to_string().starts_with("DEFER"), "{d:?}");
    assert!(d.accounted.is_empty());
    // An hour (and a sub-bucket) later the quota has room; accounting (1 message a day)
    // refuses, and the quota's charge is given back: a later message still fits it.
    clock.advance_secs(3600 + 60);
    let d = block_on(e.decide(&rcpt("m3")));
    assert_eq!(
        d.action.to_string(),
        "REJECT Policy rejection; Message count exceeded",
        "{d:?}"
    );
    let mut other = rcpt("m4");
    other.sender = "c@z.org".into();
    assert_eq!(
        block_on(e.decide(&other)).action.to_string(),
        "DUNNO",
        "another domain's first message: the quota (1 an hour) was not charged by m3"
    );
    assert_eq!(
        block_on(e.decide(&rcpt("m5"))).action.to_string(),
        "DEFER Policy rejection; Message count quota exceeded; try again in 61 minutes",
        "and m4 was"
    );
}

#[test]
fn sasl_rows_skip_unauthenticated_mail_and_counting_rows_never_refuse() {
    let sasl = AccountingDef {
        name: "per user".into(),
        track: "SASLUsername".into(),
        period: "week".into(),
        message_count_limit: Some(0),
        verdict: Some("REJECT".into()),
        ..Default::default()
    };
    let counting = AccountingDef {
        name: "all".into(),
        track: "Policy".into(),
        period: "month".into(),
        size_limit: Some(1),
        ..Default::default()
    };
    let (e, _) = engine(vec![policy("p", 10, vec![sasl, counting])]);
    let mut big = rcpt("m1");
    big.size = 10_000_000;
    let d = block_on(e.decide(&big));
    assert_eq!(d.action.to_string(), "DUNNO", "{d:?}");
    assert_eq!(d.accounted.len(), 1);
    assert_eq!(d.accounted[0].track, "Policy");
    let x = block_on(e.explain(&big)).to_string();
    assert!(
        x.contains("row \"per user\" skipped: the mail is not authenticated"),
        "{x}"
    );
    assert!(x.contains("(counted, no limit)"), "{x}");
    let mut authed = rcpt("m2");
    authed.sasl_username = "alice".into();
    assert_eq!(
        block_on(e.decide(&authed)).action.to_string(),
        "REJECT Policy rejection; Message count exceeded",
        "a limit of 0 refuses everything it counts"
    );
}
