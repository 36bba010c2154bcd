//! CheckSPF over the real policy protocol, in both modes, against the real test DNS server
//! on 127.0.0.1 (no mock resolver): embedded (an edge with the in-process state) and
//! cluster (an edge whose state is the quota service over gRPC, whose state is a real
//! 3-primary Redis Cluster). Policyd's verdicts and texts for every SPF result, include and
//! redirect chains, the lookup limit, temporary failures within the lookup deadline, the
//! `Received-SPF` header, a PREPEND replaced by greylisting, and greylisting's
//! `skip_spf_pass`. Time through a manual clock.

mod state_support;

use sluice_dns::DnsConfig;
use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    compile, CheckSpfDef, Engine, EngineSettings, GreylistingDef, ManualClock, MemberDef,
    MemoryState, MemoryStateSettings, PolicyDef, PolicySetDef,
};
use sluice_test_support::dns::{DnsServer, Rec};
use sluice_test_support::{rcpt, PolicyClient, RedisCluster, Request};
use state_support::Mode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const START_MS: u64 = 1_796_558_400_000;
const DNS_TIMEOUT_MS: u64 = 400;
const CLIENT: &str = "192.0.2.7";
const GREY_DEFER: &str = "451 4.7.1 Greylisting in effect, please come back later";

/// A running edge (and, in cluster mode, a quota service) for one scenario.
struct Stack {
    addr: SocketAddr,
    clock: ManualClock,
    stops: Vec<oneshot::Sender<()>>,
}

impl Stack {
    async fn start(mode: &Mode<'_>, def: PolicySetDef, dns: &DnsServer, tag: &str) -> Stack {
        let clock = ManualClock::new(START_MS);
        let mut stops = Vec::new();
        let started = state_support::start(mode, &clock, &format!("spf-{tag}")).await;
        stops.extend(started.stop);
        let state = started.state;
        let set = compile(&def).expect("policies compile").set;
        let engine = Arc::new(Engine::new(set, state, EngineSettings::default()));
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
            EdgeConfig {
                dns: DnsConfig {
                    servers: vec![dns.addr()],
                    timeout: Duration::from_millis(DNS_TIMEOUT_MS),
                    cache_size: 1024,
                    spf_receiver: None,
                },
                ..EdgeConfig::default()
            },
            async move {
                let _ = stopped.await;
            },
        ));
        Stack { addr, clock, stops }
    }

    async fn client(&self) -> PolicyClient {
        PolicyClient::connect(self.addr).await
    }

    fn advance_secs(&self, secs: u64) {
        self.clock.advance_secs(secs);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
    }
}

/// The sender domains of every case.
fn zone() -> DnsServer {
    let dns = DnsServer::start();
    let txt = |name: &str, rec: &str| dns.add(name, Rec::Txt(rec.into()));
    txt("pass.example", "v=spf1 ip4:192.0.2.0/24 -all");
    txt("fail.example", "v=spf1 ip4:198.51.100.0/24 -all");
    txt("softfail.example", "v=spf1 ~all");
    txt("neutral.example", "v=spf1 ?all");
    dns.add("none.example", Rec::A("198.51.100.9".parse().unwrap()));
    txt("bad.example", "v=spf1 ip4:not-an-address -all");
    txt("inc.example", "v=spf1 include:inc1.example -all");
    txt("inc1.example", "v=spf1 include:inc2.example -all");
    txt("inc2.example", "v=spf1 a:out.inc2.example -all");
    dns.add("out.inc2.example", Rec::A(CLIENT.parse().unwrap()));
    txt("red.example", "v=spf1 redirect=red1.example");
    txt("red1.example", "v=spf1 redirect=fail.example");
    let many: Vec<String> = (1..=11).map(|i| format!("a:h{i}.many.example")).collect();
    txt("many.example", &format!("v=spf1 {} -all", many.join(" ")));
    dns.servfail("servfail.example");
    dns.silent("silent.example");
    dns
}

fn policy(spf: Option<CheckSpfDef>, grey: Option<GreylistingDef>) -> PolicySetDef {
    PolicySetDef {
        policies: vec![PolicyDef {
            name: "inbound".into(),
            priority: 10,
            members: vec![MemberDef::default()],
            checkspf: spf,
            greylisting: grey,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn spf(reject_failed: bool, add_header: bool) -> Option<CheckSpfDef> {
    Some(CheckSpfDef {
        enabled: Some(true),
        reject_failed: Some(reject_failed),
        add_header: Some(add_header),
        ..Default::default()
    })
}

fn req(sender: &str) -> Request {
    rcpt(sender, "b@y.org", CLIENT, "msg").helo("mail.sender.example")
}

fn refused(word: &str, domain: &str, what: &str) -> String {
    format!("{word} Failed SPF check; {domain}, {what}")
}

async fn policyd_verdicts(mode: &Mode<'_>, dns: &DnsServer) {
    let s = Stack::start(mode, policy(spf(true, true), None), dns, "verdicts").await;
    let mut c = s.client().await;
    let host = sluice_dns::host_name();
    assert_eq!(c.send(&req("u@pass.example")).await, "DUNNO", "pass");
    assert_eq!(
        c.send(&req("u@inc.example")).await,
        "DUNNO",
        "include chain: pass"
    );
    let not_authorized =
        |s: &str| format!("Sender is not authorized to use '{s}' in 'mfrom' identity");
    assert_eq!(
        c.send(&req("u@fail.example")).await,
        refused("REJECT", "fail.example", &not_authorized("u@fail.example")),
    );
    assert_eq!(
        c.send(&req("u@red.example")).await,
        refused("REJECT", "red.example", &not_authorized("u@red.example")),
        "redirect chain: fail"
    );
    let perm = "Permanent error in processing the SPF record (an invalid record, or more \
                than 10 DNS lookups or 2 void lookups)";
    assert_eq!(
        c.send(&req("u@many.example")).await,
        refused("REJECT", "many.example", perm),
        "11 DNS-querying terms: permerror"
    );
    assert_eq!(
        c.send(&req("u@bad.example")).await,
        refused("REJECT", "bad.example", perm)
    );
    let temp = "Temporary error while looking up the SPF record (a DNS failure or timeout)";
    assert_eq!(
        c.send(&req("u@servfail.example")).await,
        refused("DEFER", "servfail.example", temp),
        "SERVFAIL: temperror"
    );
    let started = Instant::now();
    assert_eq!(
        c.send(&req("u@silent.example")).await,
        refused("DEFER", "silent.example", temp),
        "no answer: temperror"
    );
    assert!(
        started.elapsed() < Duration::from_millis(DNS_TIMEOUT_MS * 3),
        "answered within the lookup deadline: {:?}",
        started.elapsed()
    );
    // Not refused: the header, RFC 7208 §9.1, on one line.
    assert_eq!(
        c.send(&req("u@softfail.example")).await,
        format!(
            "PREPEND Received-SPF: softfail ({host}: domain of u@softfail.example reports soft \
             fail for {CLIENT}) receiver={host}; client-ip={CLIENT}; \
             envelope-from=\"u@softfail.example\"; helo=mail.sender.example;"
        )
    );
    for (sender, result) in [("u@neutral.example", "neutral"), ("u@none.example", "none")] {
        let got = c.send(&req(sender)).await;
        assert!(
            got.starts_with(&format!("PREPEND Received-SPF: {result} ({host}: ")),
            "{sender}: {got}"
        );
        assert!(
            got.contains(&format!("envelope-from=\"{sender}\"")),
            "{got}"
        );
    }
    // The null sender is not checked (as Policyd).
    assert_eq!(c.send(&req("")).await, "DUNNO");
    drop(s);

    // Without reject_failed: a fail or a temperror is only a header; without add_header
    // either, nothing.
    let s = Stack::start(mode, policy(spf(false, true), None), dns, "header").await;
    let mut c = s.client().await;
    for (sender, result) in [
        ("u@fail.example", "fail"),
        ("u@servfail.example", "temperror"),
        ("u@many.example", "permerror"),
    ] {
        let got = c.send(&req(sender)).await;
        assert!(
            got.starts_with(&format!("PREPEND Received-SPF: {result} (")),
            "{sender}: {got}"
        );
    }
    assert_eq!(c.send(&req("u@pass.example")).await, "DUNNO");
    drop(s);
    let s = Stack::start(mode, policy(spf(false, false), None), dns, "quiet").await;
    let mut c = s.client().await;
    for sender in ["u@fail.example", "u@softfail.example", "u@servfail.example"] {
        assert_eq!(c.send(&req(sender)).await, "DUNNO", "{sender}");
    }
}

async fn greylisting_and_spf(mode: &Mode<'_>, dns: &DnsServer) {
    let grey = |skip: Option<bool>| {
        Some(GreylistingDef {
            period: Some(60),
            skip_spf_pass: skip,
            ..Default::default()
        })
    };
    // A PREPEND is replaced by greylisting's deferral (one action line).
    let s = Stack::start(mode, policy(spf(false, true), grey(None)), dns, "prepend").await;
    let mut c = s.client().await;
    assert_eq!(c.send(&req("u@softfail.example")).await, GREY_DEFER);
    assert_eq!(
        c.send(&req("u@pass.example")).await,
        GREY_DEFER,
        "skip_spf_pass off (the default): a pass is greylisted too"
    );
    drop(s);
    // skip_spf_pass: a pass is let through without a triplet; anything else is greylisted.
    let s = Stack::start(mode, policy(None, grey(Some(true))), dns, "skip").await;
    let mut c = s.client().await;
    assert_eq!(
        c.send(&req("u@pass.example")).await,
        "DUNNO",
        "SPF pass: not greylisted"
    );
    assert_eq!(
        c.send(&req("u@inc.example")).await,
        "DUNNO",
        "include chain pass"
    );
    assert_eq!(c.send(&req("u@fail.example")).await, GREY_DEFER);
    assert_eq!(c.send(&req("u@softfail.example")).await, GREY_DEFER);
    assert_eq!(
        c.send(&req("u@servfail.example")).await,
        GREY_DEFER,
        "a check that failed greylists as usual"
    );
    s.advance_secs(60);
    assert_eq!(
        c.send(&req("u@fail.example")).await,
        "DUNNO",
        "retried after the period"
    );
}

async fn all_scenarios(mode: Mode<'_>) {
    let dns = zone();
    policyd_verdicts(&mode, &dns).await;
    greylisting_and_spf(&mode, &dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkspf_embedded() {
    all_scenarios(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkspf_cluster() {
    let cluster = RedisCluster::start(3, 0);
    all_scenarios(Mode::Cluster(&cluster)).await;
}

/// `sluice explain`'s path (`Engine::lookups`, the resolver, `Engine::explain_with`): the
/// merged settings, the SPF result from the real DNS server and the action.
#[tokio::test]
async fn explain_shows_the_spf_result_and_the_action() {
    let dns = zone();
    let state = Arc::new(MemoryState::new(
        Arc::new(ManualClock::new(START_MS)),
        MemoryStateSettings::default(),
    ));
    let set = compile(&policy(spf(true, false), None)).unwrap().set;
    let engine = Engine::new(set, state, EngineSettings::default());
    let resolver = sluice_dns::Resolver::new(&DnsConfig {
        servers: vec![dns.addr()],
        timeout: Duration::from_millis(DNS_TIMEOUT_MS),
        cache_size: 64,
        spf_receiver: None,
    })
    .unwrap();
    let mut parsed = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        CLIENT.parse().unwrap(),
    );
    parsed.sender = "u@fail.example".into();
    parsed.recipient = "b@y.org".into();
    parsed.helo_name = "mail.sender.example".into();
    let questions = engine.lookups(&parsed);
    assert_eq!(questions.len(), 1, "{questions:?}");
    let answers = resolver.answer(&questions).await;
    let e = engine.explain_with(&parsed, &answers).await.to_string();
    assert!(
        e.contains(
            "CheckSPF:\n  policy \"inbound\" (reject_failed=true, add_header=false): SPF of \
             fail.example for client 192.0.2.7 is fail -> action=REJECT Failed SPF check; \
             fail.example, Sender is not authorized to use 'u@fail.example' in 'mfrom' identity"
        ),
        "{e}"
    );
    assert!(e.contains("final verdict: the chain stops here."), "{e}");
}
