//! Accounting over the real policy protocol, in both modes, time through a manual clock:
//! embedded (an edge with the in-process state) and cluster (an edge whose state is the
//! quota service over gRPC, whose state is a real 3-primary Redis Cluster). Every scenario
//! runs in both, with the same expected answers: period rollover, a DST day, messages
//! counted once per message and recipients per RCPT, sizes charged at END-OF-MESSAGE to
//! every recipient of a `Recipient:` row (Policyd's EOM bug fixed), and verdict texts.

mod state_support;

use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    compile, AccountingDef, Engine, EngineSettings, ManualClock, MemberDef, MemoryState,
    MemoryStateSettings, PolicyDef, PolicySetDef,
};
use sluice_test_support::{end_of_message, rcpt, PolicyClient, RedisCluster};
use state_support::Mode;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// 2026-11-30T12:00:00Z, a Monday in ISO week 2026-W49.
const NOV_30_NOON: u64 = 1_796_040_000_000;
/// 2026-10-24T22:30:00Z: 00:30 on 2026-10-25 in Berlin, the day with 25 hours.
const BERLIN_OCT_25_0030: u64 = 1_792_881_000_000;
const COUNT_TEXT: &str = "Policy rejection; Message count exceeded";
const SIZE_TEXT: &str = "Policy rejection; Cumulative message size exceeded";

/// A running edge (and, in cluster mode, a quota service) for one scenario.
struct Stack {
    addr: SocketAddr,
    clock: ManualClock,
    stops: Vec<oneshot::Sender<()>>,
}

impl Stack {
    async fn start(mode: &Mode<'_>, def: PolicySetDef, start_ms: u64, tag: &str) -> Stack {
        let clock = ManualClock::new(start_ms);
        let mut stops = Vec::new();
        let started = state_support::start(mode, &clock, &format!("acct-{tag}")).await;
        stops.extend(started.stop);
        let state = started.state;
        let set = compile(&def).expect("policies compile").set;
        let engine = Arc::new(
            Engine::new(set, state, EngineSettings::default()).with_clock(Arc::new(clock.clone())),
        );
        let listener = Listener::bind(&ListenAddr::Tcp(SocketAddr::from(([127, 0, 0, 1], 0))))
            .await
            .unwrap();
        let ListenAddr::Tcp(addr) = listener.local_addr().unwrap() else {
            unreachable!()
        };
        let (stop, stopped) = oneshot::channel::<()>();
        stops.push(stop);
        tokio::spawn(sluice_edge::run(
            listener,
            engine,
            EdgeConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Stack { addr, clock, stops }
    }

    async fn client(&self) -> PolicyClient {
        PolicyClient::connect(self.addr).await
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

fn policy(rows: Vec<AccountingDef>) -> PolicySetDef {
    PolicySetDef {
        policies: vec![PolicyDef {
            name: "acct".into(),
            priority: 10,
            members: vec![MemberDef::default()],
            accounting: rows,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn row(track: &str, period: &str) -> AccountingDef {
    AccountingDef {
        name: "row".into(),
        track: track.into(),
        period: period.into(),
        verdict: Some("REJECT".into()),
        ..Default::default()
    }
}

/// Messages are counted once each, whatever their recipients; the next month starts from
/// zero.
async fn messages_per_month_and_rollover(mode: &Mode<'_>) {
    let mut r = row("Sender:@domain", "month");
    r.message_count_limit = Some(2);
    let s = Stack::start(mode, policy(vec![r]), NOV_30_NOON, "month").await;
    let mut c = s.client().await;
    let ip = "192.0.2.10";
    for (i, to) in ["a@y.org", "b@y.org", "c@y.org"].iter().enumerate() {
        assert_eq!(
            c.send(&rcpt("u@x.org", to, ip, "m1")).await,
            "DUNNO",
            "message 1, recipient {i}"
        );
    }
    assert_eq!(c.send(&rcpt("v@x.org", "a@y.org", ip, "m2")).await, "DUNNO");
    let refused = format!("REJECT {COUNT_TEXT}");
    assert_eq!(
        c.send(&rcpt("w@x.org", "a@y.org", ip, "m3")).await,
        refused,
        "a third message from x.org in November"
    );
    assert_eq!(
        c.send(&rcpt("w@x.org", "a@y.org", ip, "m3")).await,
        refused,
        "a refusal counts nothing: still refused"
    );
    assert_eq!(
        c.send(&rcpt("u@other.org", "a@y.org", ip, "m4")).await,
        "DUNNO",
        "another domain is another key"
    );
    if let Mode::Cluster(cluster) = mode {
        // One hash-tagged key per counter (track key and period in the tag), kept for the
        // window (32 days for a month) plus a sub-bucket, then forgotten by Redis.
        let key = format!(
            "acct-month-{}:{{acct/acct/row/MessageCount/2026-11/Sender:@x.org}}:w",
            std::process::id()
        );
        let out = std::process::Command::new("redis-cli")
            .args(["-c", "-p", &cluster.node(0).port.to_string(), "PTTL", &key])
            .output()
            .expect("redis-cli");
        let ttl: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let day = 86_400_000;
        assert!((32 * day..=33 * day).contains(&ttl), "PTTL {key} = {ttl}");
    }
    // 2026-11-30T23:59:59Z: still November.
    s.clock.set_ms(1_796_083_199_000);
    assert_eq!(c.send(&rcpt("w@x.org", "a@y.org", ip, "m5")).await, refused);
    s.clock.advance_secs(1);
    assert_eq!(
        c.send(&rcpt("w@x.org", "a@y.org", ip, "m5")).await,
        "DUNNO",
        "December starts from zero"
    );
}

/// Policyd's `MessageCountLimit` counted recipients: `recipient_count_limit` does that;
/// DEFER says when the period ends.
async fn recipients_per_week_with_defer(mode: &Mode<'_>) {
    let mut r = row("SASLUsername", "week");
    r.recipient_count_limit = Some(3);
    r.verdict = Some("DEFER".into());
    let s = Stack::start(mode, policy(vec![r]), NOV_30_NOON, "week").await;
    let mut c = s.client().await;
    let sasl = |to: &str, inst: &str| {
        rcpt("u@x.org", to, "192.0.2.10", inst).set("sasl_username", "alice")
    };
    assert_eq!(c.send(&sasl("a@y.org", "m1")).await, "DUNNO");
    assert_eq!(c.send(&sasl("b@y.org", "m1")).await, "DUNNO");
    assert_eq!(c.send(&sasl("c@y.org", "m2")).await, "DUNNO");
    // Monday noon: the ISO week ends in 6.5 days.
    assert_eq!(
        c.send(&sasl("d@y.org", "m2")).await,
        format!("DEFER {COUNT_TEXT}; try again in 156 hours")
    );
    assert_eq!(
        c.send(&rcpt("u@x.org", "d@y.org", "192.0.2.10", "m3"))
            .await,
        "DUNNO",
        "unauthenticated mail is not counted by a SASLUsername row"
    );
    // Sunday 2026-12-06 23:59:59Z, then Monday: 2026-W50.
    s.clock
        .set_ms(NOV_30_NOON + 6 * 86_400_000 + 12 * 3_600_000 - 1000);
    assert!(c.send(&sasl("d@y.org", "m4")).await.starts_with("DEFER"));
    s.clock.advance_secs(1);
    assert_eq!(c.send(&sasl("d@y.org", "m4")).await, "DUNNO", "a new week");
}

/// A day in Europe/Berlin on the autumn DST change lasts 25 hours: 24 hours after its
/// first message it is still the same day.
async fn a_25_hour_day(mode: &Mode<'_>) {
    let mut r = row("Sender:user@domain", "day");
    r.time_zone = Some("Europe/Berlin".into());
    r.message_count_limit = Some(1);
    let s = Stack::start(mode, policy(vec![r]), BERLIN_OCT_25_0030, "dst").await;
    let mut c = s.client().await;
    let ip = "192.0.2.10";
    assert_eq!(c.send(&rcpt("u@x.org", "a@y.org", ip, "m1")).await, "DUNNO");
    s.clock.advance_secs(24 * 3600);
    assert_eq!(
        c.send(&rcpt("u@x.org", "a@y.org", ip, "m2")).await,
        format!("REJECT {COUNT_TEXT}"),
        "23:30 in Berlin, still 2026-10-25 (it would be a new day in UTC)"
    );
    s.clock.advance_secs(3600);
    assert_eq!(
        c.send(&rcpt("u@x.org", "a@y.org", ip, "m3")).await,
        "DUNNO",
        "2026-10-26 in Berlin"
    );
}

/// END-OF-MESSAGE charges the real size to the counter of every recipient of the message
/// (Policyd charged the EOM request's own recipient, which is empty there, so no
/// recipient's bucket ever grew); the declared size is checked at RCPT; a message whose
/// real size overflows the limit is refused at END-OF-MESSAGE.
async fn sizes_per_recipient_at_end_of_message(mode: &Mode<'_>) {
    let mut r = row("Recipient:user@domain", "day");
    r.size_limit = Some(1500);
    let s = Stack::start(mode, policy(vec![r]), NOV_30_NOON, "eom").await;
    let mut c = s.client().await;
    let ip = "192.0.2.10";
    assert_eq!(c.send(&rcpt("u@x.org", "a@y.org", ip, "m1")).await, "DUNNO");
    assert_eq!(c.send(&rcpt("u@x.org", "b@y.org", ip, "m1")).await, "DUNNO");
    assert_eq!(
        c.send(&end_of_message("u@x.org", 2, 1000, ip, "m1")).await,
        "DUNNO"
    );
    let declared = |to: &str, inst: &str| rcpt("u@x.org", to, ip, inst).set("size", "600");
    let refused = format!("REJECT {SIZE_TEXT}");
    assert_eq!(
        c.send(&declared("a@y.org", "m2")).await,
        refused,
        "a@ was charged 1000 bytes at END-OF-MESSAGE"
    );
    assert_eq!(
        c.send(&declared("b@y.org", "m2")).await,
        refused,
        "so was b@, the message's other recipient"
    );
    assert_eq!(
        c.send(&declared("c@y.org", "m2")).await,
        "DUNNO",
        "c@ was not a recipient"
    );
    assert_eq!(
        c.send(&end_of_message("u@x.org", 1, 2000, ip, "m2")).await,
        refused,
        "the real size overflows c@'s limit"
    );
    assert_eq!(
        c.send(&declared("c@y.org", "m3")).await,
        "DUNNO",
        "the refused message charged nothing"
    );
}

/// A row without a verdict only counts; a refusal by another module in the same request
/// (a later limit of an enforced row) charges nothing.
async fn counting_rows_never_refuse(mode: &Mode<'_>) {
    let counting = AccountingDef {
        name: "all".into(),
        track: "Policy".into(),
        period: "day".into(),
        message_count_limit: Some(1),
        ..Default::default()
    };
    let s = Stack::start(mode, policy(vec![counting]), NOV_30_NOON, "count").await;
    let mut c = s.client().await;
    for i in 0..5 {
        assert_eq!(
            c.send(&rcpt("u@x.org", "a@y.org", "192.0.2.10", &format!("m{i}")))
                .await,
            "DUNNO"
        );
    }
}

async fn all_scenarios(mode: Mode<'_>) {
    messages_per_month_and_rollover(&mode).await;
    recipients_per_week_with_defer(&mode).await;
    a_25_hour_day(&mode).await;
    sizes_per_recipient_at_end_of_message(&mode).await;
    counting_rows_never_refuse(&mode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_embedded() {
    all_scenarios(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounting_cluster() {
    let cluster = RedisCluster::start(3, 0);
    all_scenarios(Mode::Cluster(&cluster)).await;
}

/// What the engine hands the totals writer, and what `sluice explain` says.
#[tokio::test]
async fn decisions_carry_the_totals_and_explain_shows_the_levels() {
    let clock = ManualClock::new(NOV_30_NOON);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let mut r = row("Recipient:@domain", "month");
    r.recipient_count_limit = Some(10);
    let set = compile(&policy(vec![r])).unwrap().set;
    let engine =
        Engine::new(set, state, EngineSettings::default()).with_clock(Arc::new(clock.clone()));
    let mut req = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "192.0.2.10".parse().unwrap(),
    );
    req.sender = "u@x.org".into();
    req.recipient = "a@y.org".into();
    req.instance = "m1".into();
    let d = engine.decide(&req).await;
    assert_eq!(d.accounting, Some("counted"));
    assert_eq!(d.accounted.len(), 1);
    let a = &d.accounted[0];
    assert_eq!(
        (&*a.policy, &*a.name, a.period.as_str(), a.track.as_str()),
        ("acct", "row", "2026-11", "Recipient:@y.org")
    );
    assert_eq!((a.messages, a.recipients, a.bytes), (1, 1, 0));
    req.recipient = "b@y.org".into();
    let d = engine.decide(&req).await;
    assert_eq!(
        (d.accounted[0].messages, d.accounted[0].recipients),
        (0, 1),
        "the same domain key: the message was counted already"
    );
    req.recipient = "c@y.org".into();
    let e = engine.explain(&req).await.to_string();
    assert!(
        e.contains("row \"row\" RecipientCount per month (UTC) [2026-11/Recipient:@y.org]: 1 recipient, level 3/10"),
        "{e}"
    );
    let mut eom = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::EndOfMessage,
        "192.0.2.10".parse().unwrap(),
    );
    eom.instance = "m1".into();
    eom.size = 5000;
    let d = engine.decide(&eom).await;
    assert_eq!(d.action.to_string(), "DUNNO");
    assert_eq!(
        d.accounted.len(),
        1,
        "one recipient domain: one size counter"
    );
    assert_eq!(d.accounted[0].bytes, 5000);
}
