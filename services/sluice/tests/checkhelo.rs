//! CheckHelo over the real policy protocol, in both modes, time through a manual clock:
//! embedded (an edge with the in-process state) and cluster (an edge whose state is the
//! quota service over gRPC, whose state is a real 3-primary Redis Cluster). DNS answers come
//! from a real DNS server on 127.0.0.1 (test-support's), asked by the edge's resolver. Every
//! scenario runs in both modes, with the same expected answers (Policyd's texts).

mod state_support;

use sluice_dns::DnsConfig;
use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    compile, CheckHeloDef, Engine, EngineSettings, HeloBlacklistDef, HeloWhitelistDef, LimitDef,
    ManualClock, MemberDef, MemoryState, MemoryStateSettings, PolicyDef, PolicySetDef, QuotaDef,
};
use sluice_test_support::dns::{DnsServer, Rec};
use sluice_test_support::{rcpt, PolicyClient, RedisCluster, Request};
use state_support::Mode;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

const START_MS: u64 = 1_796_558_400_000;
const BLACKLISTED: &str = "REJECT Invalid HELO/EHLO; Blacklisted";
const HRP: &str = "REJECT Invalid HELO/EHLO; HRP limit exceeded";

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
        let started = state_support::start(mode, &clock, &format!("helo-{tag}")).await;
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
        let config = EdgeConfig {
            dns: DnsConfig {
                servers: vec![dns.addr()],
                timeout: Duration::from_millis(300),
                cache_size: 1024,
                spf_receiver: None,
            },
            ..EdgeConfig::default()
        };
        tokio::spawn(sluice_edge::run(listener, engine, config, async move {
            let _ = stopped.await;
        }));
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

fn helo_policy(h: CheckHeloDef) -> PolicySetDef {
    PolicySetDef {
        policies: vec![PolicyDef {
            name: "helo".into(),
            priority: 10,
            members: vec![MemberDef::default()],
            checkhelo: Some(h),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn req(ip: &str, helo: &str) -> Request {
    rcpt("a@x.org", "b@y.org", ip, "msg").helo(helo)
}

/// The DNS server every scenario uses.
fn dns() -> DnsServer {
    let dns = DnsServer::start();
    dns.add("mail.example.org", Rec::A("192.0.2.10".parse().unwrap()));
    dns.add("v6.example.org", Rec::Aaaa("2001:db8::10".parse().unwrap()));
    dns.add("mxonly.example.org", Rec::Mx(10, "mail.example.org".into()));
    dns.add("txtonly.example.org", Rec::Txt("hello".into()));
    dns.servfail("broken.example.org");
    dns.silent("slow.example.org");
    dns
}

async fn invalid_and_ip(mode: &Mode<'_>, dns: &DnsServer) {
    let h = CheckHeloDef {
        reject_invalid: Some(true),
        reject_ip: Some(true),
        ..Default::default()
    };
    let s = Stack::start(mode, helo_policy(h), dns, "invalid").await;
    let mut c = s.client().await;
    assert_eq!(
        c.send(&req("192.0.2.1", "localhost")).await,
        "REJECT Invalid HELO/EHLO; Must be a FQDN or an address literal, not 'localhost'"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "foo_bar!")).await,
        "REJECT Invalid HELO/EHLO; Must be a FQDN or an address literal, not 'foo_bar!'"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "192.0.2.1")).await,
        "REJECT Invalid HELO/EHLO; Must be a FQDN or an address literal, not '192.0.2.1'",
        "a bare IP with reject_ip"
    );
    assert_eq!(c.send(&req("192.0.2.1", "[192.0.2.1]")).await, "DUNNO");
    assert_eq!(
        c.send(&req("192.0.2.1", "[IPv6:2001:db8::1]")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "nowhere.example.org")).await,
        "DUNNO",
        "a FQDN, not resolved without reject_unresolvable"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "").without("helo_name")).await,
        "DUNNO",
        "no HELO: nothing to check"
    );
    let queries = dns.queries();
    assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    assert_eq!(dns.queries(), queries, "no lookup when nothing needs one");
}

async fn unresolvable(mode: &Mode<'_>, dns: &DnsServer) {
    let h = CheckHeloDef {
        reject_invalid: Some(true),
        reject_unresolvable: Some(true),
        ..Default::default()
    };
    let s = Stack::start(mode, helo_policy(h), dns, "dns").await;
    let mut c = s.client().await;
    assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    assert_eq!(c.send(&req("192.0.2.1", "v6.example.org")).await, "DUNNO");
    assert_eq!(
        c.send(&req("192.0.2.1", "mxonly.example.org")).await,
        "DUNNO",
        "an MX is enough (Policyd: A or MX)"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "nowhere.example.org")).await,
        "REJECT Invalid HELO/EHLO; No A or MX records found for 'nowhere.example.org'",
        "NXDOMAIN"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "txtonly.example.org")).await,
        "REJECT Invalid HELO/EHLO; No A or MX records found for 'txtonly.example.org'",
        "NODATA"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "broken.example.org")).await,
        "DEFER Invalid HELO/EHLO; Failure while trying to resolve 'broken.example.org'",
        "SERVFAIL is a temporary failure"
    );
    let started = Instant::now();
    assert_eq!(
        c.send(&req("192.0.2.1", "slow.example.org")).await,
        "DEFER Invalid HELO/EHLO; Failure while trying to resolve 'slow.example.org'",
        "a server that never answers is a temporary failure"
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "answered within dns_timeout_ms, inside the request deadline: {took:?}"
    );
    // Answers are cached: asking again sends no query.
    let before = dns.queries_for("mail.example.org");
    assert!(before > 0);
    for _ in 0..3 {
        assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    }
    assert_eq!(dns.queries_for("mail.example.org"), before, "cached");
    // With dns_failure = pass, a failed lookup lets the request through.
    let h = CheckHeloDef {
        reject_invalid: Some(true),
        reject_unresolvable: Some(true),
        dns_failure: Some("pass".into()),
        ..Default::default()
    };
    let s = Stack::start(mode, helo_policy(h), dns, "dnspass").await;
    let mut c = s.client().await;
    assert_eq!(
        c.send(&req("192.0.2.1", "broken.example.org")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "nowhere.example.org")).await,
        "REJECT Invalid HELO/EHLO; No A or MX records found for 'nowhere.example.org'"
    );
}

async fn blacklist_and_whitelist(mode: &Mode<'_>, dns: &DnsServer) {
    let mut def = helo_policy(CheckHeloDef {
        use_blacklist: Some(true),
        blacklist_period: Some(600),
        ..Default::default()
    });
    def.checkhelo_blacklist = HeloBlacklistDef::policyd_seed();
    def.checkhelo_blacklist.push(HeloBlacklistDef {
        helo: "*.spammer.test".into(),
        ..Default::default()
    });
    def.checkhelo_whitelist = vec![HeloWhitelistDef {
        source: "SenderIP:198.51.100.0/24".into(),
        ..Default::default()
    }];
    let s = Stack::start(mode, def, dns, "bl").await;
    let mut c = s.client().await;
    assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    assert_eq!(c.send(&req("192.0.2.1", "LOCALHOST")).await, BLACKLISTED);
    assert_eq!(
        c.send(&req("192.0.2.1", "mail.example.org")).await,
        BLACKLISTED,
        "the address used a blacklisted HELO within blacklist_period"
    );
    s.clock.advance_secs(599);
    assert_eq!(
        c.send(&req("192.0.2.1", "mail.example.org")).await,
        BLACKLISTED
    );
    s.clock.advance_secs(1);
    assert_eq!(
        c.send(&req("192.0.2.1", "mail.example.org")).await,
        "DUNNO",
        "a real window: 10 minutes later it is over"
    );
    assert_eq!(
        c.send(&req("192.0.2.2", "box.spammer.test")).await,
        BLACKLISTED,
        "wildcard"
    );
    assert_eq!(
        c.send(&req("192.0.2.3", "[127.0.0.1]")).await,
        BLACKLISTED,
        "seed"
    );
    assert_eq!(
        c.send(&req("198.51.100.7", "localhost")).await,
        "DUNNO",
        "whitelisted clients skip every check"
    );
}

async fn hrp(mode: &Mode<'_>, dns: &DnsServer) {
    let def = helo_policy(CheckHeloDef {
        use_hrp: Some(true),
        hrp_period: Some(3600),
        hrp_limit: Some(2),
        ..Default::default()
    });
    let s = Stack::start(mode, def, dns, "hrp").await;
    let mut c = s.client().await;
    assert_eq!(c.send(&req("192.0.2.1", "a.example.org")).await, "DUNNO");
    s.clock.advance_secs(60);
    assert_eq!(c.send(&req("192.0.2.1", "b.example.org")).await, "DUNNO");
    assert_eq!(
        c.send(&req("192.0.2.1", "A.Example.org")).await,
        "DUNNO",
        "the same HELO again (case does not matter)"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "c.example.org")).await,
        HRP,
        "the third distinct HELO within the hour (limit 2: strictly more is refused)"
    );
    assert_eq!(
        c.send(&req("2001:db8::1", "c.example.org")).await,
        "DUNNO",
        "another address has its own count"
    );
    // a, b and c were last used at +60 s (c too: a refused HELO is still recorded, as
    // Policyd tracked every HELO first); they leave the window an hour after.
    s.clock.advance_secs(3599);
    assert_eq!(
        c.send(&req("192.0.2.1", "d.example.org")).await,
        HRP,
        "a, b and c were used within the hour"
    );
    s.clock.advance_secs(1);
    assert_eq!(
        c.send(&req("192.0.2.1", "d.example.org")).await,
        "DUNNO",
        "a real rolling window: old HELOs no longer count (Policyd counted them for ever)"
    );
}

async fn rejection_charges_no_quota(mode: &Mode<'_>, dns: &DnsServer) {
    let mut def = helo_policy(CheckHeloDef {
        use_blacklist: Some(true),
        blacklist_period: Some(600),
        ..Default::default()
    });
    def.checkhelo_blacklist = HeloBlacklistDef::policyd_seed();
    def.policies[0].quotas = vec![QuotaDef {
        name: "q".into(),
        track: "SenderIP:/32".into(),
        period: 3600,
        verdict: "REJECT".into(),
        data: Some("over the limit".into()),
        limits: vec![LimitDef {
            kind: "RecipientCount".into(),
            limit: 2,
            ..Default::default()
        }],
        ..Default::default()
    }];
    let s = Stack::start(mode, def, dns, "quota").await;
    let mut c = s.client().await;
    assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    for _ in 0..3 {
        assert_eq!(c.send(&req("192.0.2.1", "localhost")).await, BLACKLISTED);
    }
    s.clock.advance_secs(600);
    assert_eq!(
        c.send(&req("192.0.2.1", "mail.example.org")).await,
        "DUNNO",
        "the rejections charged nothing: the quota's second recipient"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "mail.example.org")).await,
        "REJECT over the limit"
    );
}

async fn all_scenarios(mode: Mode<'_>) {
    let dns = dns();
    invalid_and_ip(&mode, &dns).await;
    unresolvable(&mode, &dns).await;
    blacklist_and_whitelist(&mode, &dns).await;
    hrp(&mode, &dns).await;
    rejection_charges_no_quota(&mode, &dns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkhelo_embedded() {
    all_scenarios(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkhelo_cluster() {
    let cluster = RedisCluster::start(3, 0);
    all_scenarios(Mode::Cluster(&cluster)).await;
}

#[tokio::test]
async fn explain_answers_the_lookups_and_shows_the_checks() {
    let dns = dns();
    let clock = ManualClock::new(START_MS);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let def = helo_policy(CheckHeloDef {
        reject_invalid: Some(true),
        reject_unresolvable: Some(true),
        use_hrp: Some(true),
        hrp_period: Some(3600),
        hrp_limit: Some(3),
        ..Default::default()
    });
    let engine = Engine::new(compile(&def).unwrap().set, state, EngineSettings::default());
    let answerer = sluice_dns::Answerer::new(DnsConfig {
        servers: vec![dns.addr()],
        ..DnsConfig::default()
    });
    let mut parsed = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "192.0.2.10".parse().unwrap(),
    );
    parsed.sender = "a@x.org".into();
    parsed.recipient = "b@y.org".into();
    parsed.helo_name = "mail.example.org".into();
    let questions = engine.lookups(&parsed);
    assert_eq!(questions.len(), 2, "A/AAAA and MX: {questions:?}");
    let answers = answerer.answer(&questions).await;
    let e = engine.explain_with(&parsed, &answers).await.to_string();
    assert!(
        e.contains("a FQDN that resolves (A/AAAA: 192.0.2.10, MX: none)"),
        "{e}"
    );
    assert!(
        e.contains("1 distinct HELO(s) within 60 min (limit 3) -> pass"),
        "{e}"
    );
    assert!(
        e.ends_with("Action: action=DUNNO\n") || e.contains("Action: action=DUNNO"),
        "{e}"
    );
    let d = engine
        .decide_with(&parsed, &answers, &mut Default::default())
        .await;
    assert_eq!(d.checkhelo, Some("passed"));
    parsed.helo_name = "nowhere.example.org".into();
    let answers = answerer.answer(&engine.lookups(&parsed)).await;
    let e = engine.explain_with(&parsed, &answers).await.to_string();
    assert!(
        e.contains("a FQDN without A, AAAA or MX records -> action=REJECT Invalid HELO/EHLO; No A or MX records found for 'nowhere.example.org'"),
        "{e}"
    );
    // Without answers (a caller that did not ask), the check fails safe: a temporary
    // failure, never a rejection.
    let d = engine.decide(&parsed).await;
    assert_eq!(
        d.action.to_string(),
        "DEFER Invalid HELO/EHLO; Failure while trying to resolve 'nowhere.example.org'"
    );
}

/// The real binary: `sluice serve` with `--dns-servers` pointing at the test DNS server
/// answers CheckHelo from the policy database, and `sluice explain` (through the server's
/// `POST /explain`) shows the lookup's answer.
#[tokio::test]
async fn serve_reads_dns_servers_and_explain_answers_lookups() {
    const BIN: &str = env!("CARGO_BIN_EXE_sluice");
    let dns = dns();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("p.db").display());
    sluice_test_support::import_policies(
        BIN,
        dir.path(),
        r#"[[policy]]
name = "helo"
priority = 10

  [[policy.member]]

  [policy.checkhelo]
  reject_invalid = true
  reject_unresolvable = true
"#,
        &db,
    );
    let dns_addr = dns.addr().to_string();
    let serve = sluice_test_support::start_front(
        BIN,
        "sluice serve",
        "serve",
        &[
            "--database",
            &db,
            "--dns-servers",
            &dns_addr,
            "--dns-timeout-ms",
            "300",
            "--http-explain",
        ],
    );
    let mut c = PolicyClient::connect(SocketAddr::from(([127, 0, 0, 1], serve.port))).await;
    assert_eq!(c.send(&req("192.0.2.1", "mail.example.org")).await, "DUNNO");
    assert_eq!(
        c.send(&req("192.0.2.1", "nowhere.example.org")).await,
        "REJECT Invalid HELO/EHLO; No A or MX records found for 'nowhere.example.org'"
    );
    assert_eq!(
        c.send(&req("192.0.2.1", "slow.example.org")).await,
        "DEFER Invalid HELO/EHLO; Failure while trying to resolve 'slow.example.org'"
    );
    let server = format!("127.0.0.1:{}", serve.metrics);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(BIN)
            .args([
                "explain",
                "--server",
                &server,
                "--sender",
                "a@x.org",
                "--recipient",
                "b@y.org",
                "--client-address",
                "192.0.2.1",
                "--helo",
                "mail.example.org",
            ])
            .output()
            .expect("run sluice explain")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("a FQDN that resolves (A/AAAA: 192.0.2.10, MX: none) -> pass"),
        "{text}"
    );
}
