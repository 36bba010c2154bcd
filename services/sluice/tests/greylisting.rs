//! Greylisting over the real policy protocol, in both modes, time through a manual clock:
//! embedded (an edge with the in-process state) and cluster (an edge whose state is the
//! quota service over gRPC, whose state is a real 3-primary Redis Cluster). Every scenario
//! runs in both, with the same expected answers.

mod state_support;

use sluice_edge::{EdgeConfig, ListenAddr, Listener};
use sluice_engine::{
    compile, Engine, EngineSettings, GreylistWhitelistDef, GreylistingDef, LimitDef, ManualClock,
    MemberDef, MemoryState, MemoryStateSettings, PolicyDef, PolicySetDef, QuotaDef,
};
use sluice_test_support::{rcpt, PolicyClient, RedisCluster, Request};
use state_support::Mode;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

const DEFER: &str = "451 4.7.1 Greylisting in effect, please come back later";
const BLACKLISTED: &str = "REJECT Greylisting in effect, sending server blacklisted";
const START_MS: u64 = 1_796_558_400_000;

/// A running edge (and, in cluster mode, a quota service) for one scenario.
struct Stack {
    addr: SocketAddr,
    clock: ManualClock,
    memory: Option<Arc<MemoryState>>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Stack {
    async fn start(mode: &Mode<'_>, def: PolicySetDef, tag: &str) -> Stack {
        let clock = ManualClock::new(START_MS);
        let mut stops = Vec::new();
        let started = state_support::start(mode, &clock, &format!("grey-{tag}")).await;
        stops.extend(started.stop);
        let memory = started.memory;
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
            EdgeConfig::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        Stack {
            addr,
            clock,
            memory,
            stops,
        }
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

fn greylisting_policy(g: GreylistingDef) -> PolicySetDef {
    PolicySetDef {
        policies: vec![PolicyDef {
            name: "grey".into(),
            priority: 10,
            members: vec![MemberDef::default()],
            greylisting: Some(g),
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn period(secs: u64) -> GreylistingDef {
    GreylistingDef {
        period: Some(secs),
        ..Default::default()
    }
}

fn req(sender: &str, recipient: &str, ip: &str) -> Request {
    rcpt(sender, recipient, ip, "msg")
}

async fn first_retry_and_pass(mode: &Mode<'_>) {
    let s = Stack::start(mode, greylisting_policy(period(300)), "basic").await;
    let mut c = s.client().await;
    let r = req("a@x.org", "b@y.org", "192.0.2.10");
    assert_eq!(c.send(&r).await, DEFER, "first attempt");
    s.advance_secs(299);
    assert_eq!(c.send(&r).await, DEFER, "retry before the period");
    s.advance_secs(1);
    // Another host of the same /24 is the same triplet.
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "192.0.2.200")).await,
        "DUNNO",
        "retry after the period, from the same /24"
    );
    assert_eq!(c.send(&r).await, "DUNNO", "and again");
    assert_eq!(
        c.send(&req("a@x.org", "c@y.org", "192.0.2.10")).await,
        DEFER,
        "another recipient is another triplet"
    );
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "192.0.3.10")).await,
        DEFER,
        "another /24 is another triplet"
    );
}

async fn ipv6_slash_64(mode: &Mode<'_>) {
    let s = Stack::start(mode, greylisting_policy(period(60)), "v6").await;
    let mut c = s.client().await;
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "2001:db8:1:2::10")).await,
        DEFER
    );
    s.advance_secs(60);
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "2001:db8:1:2:ffff::99"))
            .await,
        "DUNNO",
        "same /64"
    );
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "2001:db8:1:3::10")).await,
        DEFER,
        "another /64"
    );
}

async fn expiry(mode: &Mode<'_>) {
    let g = GreylistingDef {
        period: Some(60),
        unauth_validity: Some(600),
        auth_validity: Some(3600),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "expiry").await;
    let mut c = s.client().await;
    let r = req("a@x.org", "b@y.org", "192.0.2.10");
    assert_eq!(c.send(&r).await, DEFER);
    s.advance_secs(600);
    assert_eq!(
        c.send(&r).await,
        DEFER,
        "a triplet never retried within unauth_validity is forgotten: new again"
    );
    s.advance_secs(60);
    assert_eq!(c.send(&r).await, "DUNNO");
    s.advance_secs(3599);
    assert_eq!(c.send(&r).await, "DUNNO", "used within auth_validity: kept");
    s.advance_secs(3600);
    assert_eq!(
        c.send(&r).await,
        DEFER,
        "a passed triplet idle for auth_validity is forgotten"
    );
    if let Some(m) = &s.memory {
        assert_eq!(m.greylisting_entries(), (1, 1));
        s.advance_secs(601);
        m.sweep();
        assert_eq!(
            m.greylisting_entries(),
            (0, 0),
            "idle entries are reclaimed"
        );
    }
}

async fn training(mode: &Mode<'_>) {
    let g = GreylistingDef {
        period: Some(300),
        training: Some(true),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "training").await;
    let mut c = s.client().await;
    let r = req("a@x.org", "b@y.org", "192.0.2.10");
    assert_eq!(c.send(&r).await, "DUNNO", "training never defers");
    assert_eq!(c.send(&r).await, "DUNNO");
}

async fn static_whitelist(mode: &Mode<'_>) {
    let mut def = greylisting_policy(period(300));
    def.greylisting_whitelist = [
        "SenderIP:198.51.100.0/24",
        "SenderDomain:.trusted.example",
        "ReverseDNS:.mail.example.net",
    ]
    .into_iter()
    .map(|s| GreylistWhitelistDef {
        source: s.into(),
        ..Default::default()
    })
    .collect();
    let s = Stack::start(mode, def, "whitelist").await;
    let mut c = s.client().await;
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "198.51.100.7")).await,
        "DUNNO",
        "CIDR"
    );
    assert_eq!(
        c.send(&req("a@mx.trusted.example", "b@y.org", "192.0.2.1"))
            .await,
        "DUNNO",
        "sender domain"
    );
    assert_eq!(
        c.send(
            &req("a@x.org", "b@y.org", "192.0.2.2")
                .set("reverse_client_name", "out-7.mail.example.net")
        )
        .await,
        "DUNNO",
        "reverse DNS"
    );
    assert_eq!(
        c.send(&req("a@x.org", "b@y.org", "192.0.2.3")).await,
        DEFER,
        "none of them"
    );
}

async fn auto_whitelist(mode: &Mode<'_>) {
    // By count: two triplets of the network passed.
    let g = GreylistingDef {
        period: Some(60),
        auto_whitelist: Some(true),
        auto_whitelist_count: Some(2),
        auto_whitelist_percentage: Some(0),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "awl-count").await;
    let mut c = s.client().await;
    for rcpt in ["r1@y.org", "r2@y.org"] {
        assert_eq!(c.send(&req("a@x.org", rcpt, "192.0.2.10")).await, DEFER);
    }
    s.advance_secs(60);
    assert_eq!(
        c.send(&req("a@x.org", "r1@y.org", "192.0.2.10")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("new@x.org", "r9@y.org", "192.0.2.11")).await,
        DEFER,
        "one passed triplet is not enough"
    );
    assert_eq!(
        c.send(&req("a@x.org", "r2@y.org", "192.0.2.10")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("other@x.org", "r8@y.org", "192.0.2.12")).await,
        "DUNNO",
        "auto-whitelisted: a new triplet of the network passes at once"
    );
    drop(s);
    // By percentage: of 3 triplets, 2 passed = 66 %: listed at 60 %; 1 of 3 is not.
    let g = GreylistingDef {
        period: Some(60),
        auto_whitelist: Some(true),
        auto_whitelist_count: Some(3),
        auto_whitelist_percentage: Some(60),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "awl-pct").await;
    let mut c = s.client().await;
    for net in ["192.0.2.10", "192.0.3.10"] {
        for rcpt in ["r1@y.org", "r2@y.org", "r3@y.org"] {
            assert_eq!(c.send(&req("a@x.org", rcpt, net)).await, DEFER);
        }
    }
    s.advance_secs(60);
    for net in ["192.0.2.10", "192.0.3.10"] {
        assert_eq!(c.send(&req("a@x.org", "r1@y.org", net)).await, "DUNNO");
    }
    assert_eq!(
        c.send(&req("a@x.org", "r2@y.org", "192.0.2.10")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("new@x.org", "r9@y.org", "192.0.2.11")).await,
        "DUNNO",
        "2 of 3 passed (66 %): auto-whitelisted"
    );
    assert_eq!(
        c.send(&req("new@x.org", "r9@y.org", "192.0.3.11")).await,
        DEFER,
        "1 of 3 passed (33 %): not listed"
    );
}

async fn auto_blacklist(mode: &Mode<'_>) {
    // By count: three triplets never retried.
    let g = GreylistingDef {
        period: Some(60),
        auto_blacklist: Some(true),
        auto_blacklist_count: Some(3),
        auto_blacklist_percentage: Some(0),
        auto_blacklist_period: Some(3600),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "abl-count").await;
    let mut c = s.client().await;
    for rcpt in ["r1@y.org", "r2@y.org", "r3@y.org"] {
        assert_eq!(c.send(&req("spam@x.org", rcpt, "203.0.113.5")).await, DEFER);
    }
    assert_eq!(
        c.send(&req("spam@x.org", "r4@y.org", "203.0.113.5")).await,
        BLACKLISTED,
        "a fourth new triplet: 3 of 3 never passed"
    );
    s.advance_secs(60);
    assert_eq!(
        c.send(&req("spam@x.org", "r1@y.org", "203.0.113.6")).await,
        BLACKLISTED,
        "listed: even a known triplet past its period"
    );
    s.advance_secs(3600);
    assert_eq!(
        c.send(&req("spam@x.org", "r1@y.org", "203.0.113.6")).await,
        "DUNNO",
        "the entry expired with its period"
    );
    drop(s);
    // By percentage: of 2 triplets, 1 never passed = 50 %.
    let g = GreylistingDef {
        period: Some(60),
        auto_blacklist: Some(true),
        auto_blacklist_count: Some(2),
        auto_blacklist_percentage: Some(50),
        ..Default::default()
    };
    let s = Stack::start(mode, greylisting_policy(g), "abl-pct").await;
    let mut c = s.client().await;
    for rcpt in ["r1@y.org", "r2@y.org"] {
        assert_eq!(c.send(&req("s@x.org", rcpt, "203.0.113.5")).await, DEFER);
    }
    s.advance_secs(60);
    assert_eq!(
        c.send(&req("s@x.org", "r1@y.org", "203.0.113.5")).await,
        "DUNNO"
    );
    assert_eq!(
        c.send(&req("s@x.org", "r3@y.org", "203.0.113.5")).await,
        BLACKLISTED,
        "1 of 2 never passed: 50 %"
    );
}

/// A deferred attempt charges no quota of its policy (the greylisting op leads the batch
/// group the quota's ops follow): with a limit of 1 recipient, the retry after the period
/// is still admitted, and only the next one is refused.
async fn deferral_charges_no_quota(mode: &Mode<'_>) {
    let mut set = greylisting_policy(period(60));
    set.policies[0].quotas = vec![QuotaDef {
        name: "one".into(),
        track: "Sender:user@domain".into(),
        period: 3600,
        verdict: "REJECT".into(),
        data: Some("over the limit".into()),
        limits: vec![LimitDef {
            kind: "RecipientCount".into(),
            limit: 1,
            ..Default::default()
        }],
        ..Default::default()
    }];
    let s = Stack::start(mode, set, "quota").await;
    let mut c = s.client().await;
    let r = req("q@x.org", "b@y.org", "192.0.2.77");
    assert_eq!(c.send(&r).await, DEFER, "first attempt: deferred");
    assert_eq!(c.send(&r).await, DEFER, "retry before the period: deferred");
    s.advance_secs(60);
    assert_eq!(
        c.send(&r).await,
        "DUNNO",
        "after the period: the deferrals charged nothing, the quota admits"
    );
    assert_eq!(
        c.send(&r).await,
        "REJECT over the limit",
        "the quota counted the admitted attempt"
    );
}

async fn all_scenarios(mode: Mode<'_>) {
    deferral_charges_no_quota(&mode).await;
    first_retry_and_pass(&mode).await;
    ipv6_slash_64(&mode).await;
    expiry(&mode).await;
    training(&mode).await;
    static_whitelist(&mode).await;
    auto_whitelist(&mode).await;
    auto_blacklist(&mode).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_embedded() {
    all_scenarios(Mode::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greylisting_cluster() {
    let cluster = RedisCluster::start(3, 0);
    all_scenarios(Mode::Cluster(&cluster)).await;
}

#[tokio::test]
async fn explain_shows_the_triplet_and_the_auto_whitelist() {
    let clock = ManualClock::new(START_MS);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let g = GreylistingDef {
        period: Some(300),
        auto_whitelist: Some(true),
        auto_whitelist_count: Some(1),
        auto_whitelist_percentage: Some(0),
        ..Default::default()
    };
    let set = compile(&greylisting_policy(g)).unwrap().set;
    let engine = Engine::new(set, state, EngineSettings::default());
    let mut parsed = sluice_engine::PolicyRequest::new(
        sluice_engine::ProtocolState::Rcpt,
        "192.0.2.10".parse().unwrap(),
    );
    parsed.sender = "a@x.org".into();
    parsed.recipient = "b@y.org".into();
    let first = engine.decide(&parsed).await;
    assert_eq!(first.action.to_string(), DEFER);
    assert_eq!(first.greylisting, Some("deferred"));
    clock.advance_secs(180);
    let e = engine.explain(&parsed).await.to_string();
    assert!(
        e.contains("triplet first seen 3 min ago, passes in 2 min"),
        "{e}"
    );
    clock.advance_secs(120);
    let pass = engine.decide(&parsed).await;
    assert_eq!(pass.action.to_string(), "DUNNO");
    let e = engine.explain(&parsed).await.to_string();
    assert!(
        e.contains("client auto-whitelisted until 2026-12-13 12:05:00 UTC"),
        "{e}"
    );
}
