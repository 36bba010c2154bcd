//! The resolver against the real test DNS server on 127.0.0.1 (UDP and TCP): answers,
//! NXDOMAIN/NODATA, SERVFAIL and timeouts, caching, and one deadline per request.

use sluice_dns::{Answerer, DnsConfig, Resolver};
use sluice_engine::{Lookup, LookupAnswer};
use sluice_test_support::dns::{DnsServer, Rec};
use std::net::IpAddr;
use std::time::{Duration, Instant};

fn resolver(dns: &DnsServer, timeout_ms: u64) -> Resolver {
    Resolver::new(&DnsConfig {
        servers: vec![dns.addr()],
        timeout: Duration::from_millis(timeout_ms),
        cache_size: 1024,
        spf_receiver: None,
    })
    .expect("resolver")
}

fn addresses(name: &str) -> Lookup<'_> {
    Lookup::Addresses { name: name.into() }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn records_of_every_kind_are_answered() {
    let dns = DnsServer::start();
    dns.add("mail.example.org", Rec::A("192.0.2.10".parse().unwrap()));
    dns.add(
        "mail.example.org",
        Rec::Aaaa("2001:db8::10".parse().unwrap()),
    );
    dns.add(
        "v6only.example.org",
        Rec::Aaaa("2001:db8::6".parse().unwrap()),
    );
    dns.add("example.org", Rec::Mx(20, "backup.example.org".into()));
    dns.add("example.org", Rec::Mx(10, "Mail.Example.org".into()));
    dns.add(
        "example.org",
        Rec::Txt("v=spf1 ip4:192.0.2.0/24 -all".into()),
    );
    dns.add("alias.example.org", Rec::Cname("mail.example.org".into()));
    dns.ptr(ip("192.0.2.10"), "mail.example.org");
    let long = "x".repeat(600);
    dns.add("long.example.org", Rec::Txt(long.clone()));
    let r = resolver(&dns, 1000);

    match r.answer_one(&addresses("mail.example.org")).await {
        LookupAnswer::Addresses(a) => {
            let mut a = a.to_vec();
            a.sort();
            assert_eq!(a, vec![ip("192.0.2.10"), ip("2001:db8::10")]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        r.answer_one(&addresses("v6only.example.org.")).await,
        addrs(vec![ip("2001:db8::6")])
    );
    assert_eq!(
        r.answer_one(&addresses("alias.example.org"))
            .await
            .sorted_or_self(),
        addrs(vec![ip("192.0.2.10"), ip("2001:db8::10")])
    );
    assert_eq!(
        r.answer_one(&Lookup::Mx {
            domain: "example.org".into()
        })
        .await,
        recs(vec!["mail.example.org".into(), "backup.example.org".into()])
    );
    assert_eq!(
        r.answer_one(&Lookup::Txt {
            name: "example.org".into()
        })
        .await,
        recs(vec!["v=spf1 ip4:192.0.2.0/24 -all".into()])
    );
    // Longer than one UDP answer may be: the resolver retries over TCP.
    assert_eq!(
        r.answer_one(&Lookup::Txt {
            name: "long.example.org".into()
        })
        .await,
        recs(vec![long])
    );
    assert_eq!(
        r.answer_one(&Lookup::Ptr {
            ip: ip("192.0.2.10")
        })
        .await,
        recs(vec!["mail.example.org".into()])
    );
}

/// An answer of addresses.
fn addrs(a: Vec<IpAddr>) -> LookupAnswer {
    LookupAnswer::Addresses(a.into())
}

/// An answer of records.
fn recs(r: Vec<String>) -> LookupAnswer {
    LookupAnswer::Records(r.into())
}

/// Sorts addresses so answers compare whatever order the server gave.
trait Sorted {
    fn sorted_or_self(self) -> Self;
}

impl Sorted for LookupAnswer {
    fn sorted_or_self(self) -> Self {
        match self {
            LookupAnswer::Addresses(a) => {
                let mut a = a.to_vec();
                a.sort();
                addrs(a)
            }
            other => other,
        }
    }
}

#[tokio::test]
async fn missing_names_and_types_are_not_found_and_failures_failed() {
    let dns = DnsServer::start();
    dns.add("txtonly.example.org", Rec::Txt("hello".into()));
    dns.servfail("broken.example.org");
    let r = resolver(&dns, 1000);
    assert_eq!(
        r.answer_one(&addresses("nowhere.example.org")).await,
        LookupAnswer::NotFound,
        "NXDOMAIN"
    );
    assert_eq!(
        r.answer_one(&addresses("txtonly.example.org")).await,
        LookupAnswer::NotFound,
        "NODATA"
    );
    assert_eq!(
        r.answer_one(&Lookup::Mx {
            domain: "txtonly.example.org".into()
        })
        .await,
        LookupAnswer::NotFound
    );
    assert_eq!(
        r.answer_one(&addresses("broken.example.org")).await,
        LookupAnswer::Failed,
        "SERVFAIL"
    );
    assert_eq!(
        r.answer_one(&addresses("not a name!")).await,
        LookupAnswer::NotFound,
        "an invalid name does not exist"
    );
    assert!(
        dns.queries_for("broken.example.org") >= 2,
        "A and AAAA asked"
    );
}

#[tokio::test]
async fn answers_are_cached_up_to_their_ttl() {
    let dns = DnsServer::start();
    dns.set_ttl(1);
    dns.add("cached.example.org", Rec::A("192.0.2.1".parse().unwrap()));
    let r = resolver(&dns, 1000);
    let q = addresses("cached.example.org");
    assert!(matches!(r.answer_one(&q).await, LookupAnswer::Addresses(_)));
    let after_first = dns.queries_for("cached.example.org");
    assert_eq!(after_first, 2, "A and AAAA");
    for _ in 0..5 {
        assert!(matches!(r.answer_one(&q).await, LookupAnswer::Addresses(_)));
    }
    assert_eq!(
        dns.queries_for("cached.example.org"),
        after_first,
        "answered from the cache (the NODATA for AAAA too)"
    );
    // A changed record is seen once the TTL has passed (hickory's cache reads the real
    // clock: this one wait is for its expiry, not for a policy window).
    dns.remove("cached.example.org");
    dns.add("cached.example.org", Rec::A("192.0.2.2".parse().unwrap()));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(r.answer_one(&q).await, addrs(vec![ip("192.0.2.2")]));
    assert!(dns.queries_for("cached.example.org") > after_first);
}

#[tokio::test]
async fn a_silent_server_is_a_failure_within_the_deadline_and_other_answers_stand() {
    let dns = DnsServer::start();
    dns.silent("slow.example.org");
    dns.add("fast.example.org", Rec::A("192.0.2.5".parse().unwrap()));
    let r = resolver(&dns, 300);
    let questions = [
        addresses("slow.example.org"),
        addresses("fast.example.org"),
        Lookup::Txt {
            name: "slow.example.org".into(),
        },
    ];
    let started = Instant::now();
    let answers = r.answer(&questions).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(900),
        "all questions under one deadline, asked at once: {took:?}"
    );
    assert!(took >= Duration::from_millis(250), "{took:?}");
    assert_eq!(answers.get(&questions[0]), &LookupAnswer::Failed);
    assert_eq!(answers.get(&questions[1]), &addrs(vec![ip("192.0.2.5")]));
    assert_eq!(answers.get(&questions[2]), &LookupAnswer::Failed);
}

#[tokio::test]
async fn the_answerer_builds_its_resolver_once_and_answers_every_question() {
    let dns = DnsServer::start();
    dns.add("a.example.org", Rec::A("192.0.2.7".parse().unwrap()));
    let answerer = Answerer::new(DnsConfig {
        servers: vec![dns.addr()],
        timeout: Duration::from_millis(500),
        cache_size: 16,
        spf_receiver: None,
    });
    let q = [addresses("a.example.org"), addresses("b.example.org")];
    let a = answerer.answer(&q).await;
    assert_eq!(a.get(&q[0]), &addrs(vec![ip("192.0.2.7")]));
    assert_eq!(a.get(&q[1]), &LookupAnswer::NotFound);
    let before = dns.queries();
    let again = answerer.answer(&q).await;
    assert_eq!(again, a);
    assert_eq!(dns.queries(), before, "the same resolver, and its cache");
}

#[tokio::test]
async fn answers_are_kept_in_front_of_the_resolver_and_negative_ones_too() {
    let dns = DnsServer::start();
    dns.add("kept.example.org", Rec::A("192.0.2.1".parse().unwrap()));
    dns.add("kept.example.org", Rec::Mx(10, "mx.example.org".into()));
    dns.servfail("broken.example.org");
    let r = resolver(&dns, 1000);
    let questions = [
        addresses("kept.example.org"),
        Lookup::Mx {
            domain: "kept.example.org".into(),
        },
        addresses("missing.example.org"),
        addresses("broken.example.org"),
    ];
    let first = r.answer(&questions).await;
    assert_eq!(first.get(&questions[2]), &LookupAnswer::NotFound);
    assert_eq!(first.get(&questions[3]), &LookupAnswer::Failed);
    assert_eq!(
        r.cached_answers().0,
        3,
        "the addresses, the MX and the negative answer; not the failure"
    );
    let asked = dns.queries_for("kept.example.org") + dns.queries_for("missing.example.org");
    let again = r.answer(&questions[..3]).await;
    assert_eq!(again.get(&questions[0]), first.get(&questions[0]));
    assert_eq!(again.get(&questions[1]), first.get(&questions[1]));
    assert_eq!(again.get(&questions[2]), &LookupAnswer::NotFound);
    assert_eq!(
        dns.queries_for("kept.example.org") + dns.queries_for("missing.example.org"),
        asked
    );
}
