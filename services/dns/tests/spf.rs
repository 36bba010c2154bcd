//! SPF checks (`Lookup::Spf`, CheckSPF's) evaluated by `mail-auth` through the resolver,
//! against the real test DNS server on 127.0.0.1: every result, `include:` and `redirect=`
//! chains, the 10-lookup limit, `exp=`, the `Received-SPF` header, temporary failures
//! (SERVFAIL, no answer within the deadline) and caching.

use sluice_dns::{DnsConfig, Resolver};
use sluice_engine::{Lookup, LookupAnswer, SpfAnswer, SpfResult};
use sluice_test_support::dns::{DnsServer, Rec};
use std::time::{Duration, Instant};

const CLIENT: &str = "192.0.2.7";

fn resolver(dns: &DnsServer, timeout_ms: u64) -> Resolver {
    Resolver::new(&DnsConfig {
        servers: vec![dns.addr()],
        timeout: Duration::from_millis(timeout_ms),
        cache_size: 1024,
        spf_receiver: None,
    })
    .expect("resolver")
}

fn spf_of(sender: &str) -> Lookup<'_> {
    Lookup::Spf {
        ip: CLIENT.parse().unwrap(),
        sender: sender.into(),
        helo: "mail.sender.example".into(),
    }
}

async fn check(r: &Resolver, sender: &str) -> SpfAnswer {
    match r.answer(&[spf_of(sender)]).await.get(&spf_of(sender)) {
        LookupAnswer::Spf(a) => SpfAnswer::clone(a),
        other => panic!("{sender}: {other:?}"),
    }
}

fn txt(dns: &DnsServer, name: &str, record: &str) {
    dns.add(name, Rec::Txt(record.into()));
}

/// One server with a domain per case.
fn zone() -> DnsServer {
    let dns = DnsServer::start();
    txt(&dns, "pass.example", "v=spf1 ip4:192.0.2.0/24 -all");
    txt(&dns, "fail.example", "v=spf1 ip4:198.51.100.0/24 -all");
    txt(&dns, "softfail.example", "v=spf1 ip4:198.51.100.1 ~all");
    txt(&dns, "neutral.example", "v=spf1 ?all");
    dns.add("none.example", Rec::A("198.51.100.9".parse().unwrap()));
    txt(&dns, "none.example", "not an spf record");
    txt(&dns, "broken2.example", "v=spf1 ip4:not-an-address -all");
    txt(
        &dns,
        "broken3.example",
        "v=spf1 redirect=a.example redirect=b.example",
    );
    txt(
        &dns,
        "missing-include.example",
        "v=spf1 include:nowhere.example -all",
    );
    // include: a chain of two, the client listed at its end.
    txt(&dns, "inc.example", "v=spf1 include:inc1.example -all");
    txt(&dns, "inc1.example", "v=spf1 include:inc2.example -all");
    txt(&dns, "inc2.example", "v=spf1 a:out.inc2.example -all");
    dns.add("out.inc2.example", Rec::A(CLIENT.parse().unwrap()));
    // redirect=: a chain of two ending in a fail.
    txt(&dns, "red.example", "v=spf1 redirect=red1.example");
    txt(&dns, "red1.example", "v=spf1 redirect=red2.example");
    txt(&dns, "red2.example", "v=spf1 ip4:198.51.100.0/24 -all");
    // Eleven DNS-querying terms: one beyond the limit of 10.
    let many: Vec<String> = (1..=11).map(|i| format!("a:h{i}.many.example")).collect();
    txt(
        &dns,
        "many.example",
        &format!("v=spf1 {} -all", many.join(" ")),
    );
    // Exactly ten: within the limit, the tenth matches.
    let ten: Vec<String> = (1..=10).map(|i| format!("a:h{i}.ten.example")).collect();
    txt(
        &dns,
        "ten.example",
        &format!("v=spf1 {} -all", ten.join(" ")),
    );
    dns.add("h10.ten.example", Rec::A(CLIENT.parse().unwrap()));
    // exp=: the domain's own explanation of a fail.
    txt(&dns, "exp.example", "v=spf1 -all exp=why.exp.example");
    txt(
        &dns,
        "why.exp.example",
        "See https://exp.example/spf for %{d}",
    );
    dns
}

#[tokio::test]
async fn every_result_include_redirect_and_the_lookup_limit() {
    let dns = zone();
    let r = resolver(&dns, 2000);
    let cases = [
        ("u@pass.example", SpfResult::Pass),
        ("u@fail.example", SpfResult::Fail),
        ("u@softfail.example", SpfResult::SoftFail),
        ("u@neutral.example", SpfResult::Neutral),
        ("u@none.example", SpfResult::None),
        ("u@nxdomain.example", SpfResult::None),
        ("u@broken2.example", SpfResult::PermError),
        ("u@broken3.example", SpfResult::PermError),
        ("u@missing-include.example", SpfResult::PermError),
        ("u@inc.example", SpfResult::Pass),
        ("u@red.example", SpfResult::Fail),
        ("u@many.example", SpfResult::PermError),
        ("u@ten.example", SpfResult::Pass),
    ];
    for (sender, expected) in cases {
        let a = check(&r, sender).await;
        assert_eq!(a.result, expected, "{sender}: {a:?}");
        assert!(
            a.header.starts_with(expected.as_str()),
            "{sender}: the header starts with the result: {}",
            a.header
        );
    }
    let red = check(&r, "u@red.example").await;
    assert_eq!(red.domain, "red.example", "the sender's domain is reported");
    let exp = check(&r, "u@exp.example").await;
    assert_eq!(exp.result, SpfResult::Fail);
    assert_eq!(
        exp.explanation.as_deref(),
        Some("See https://exp.example/spf for exp.example")
    );
}

#[tokio::test]
async fn the_received_spf_header_is_rfc_7208_on_one_line() {
    let dns = zone();
    let r = resolver(&dns, 2000);
    let a = check(&r, "u@pass.example").await;
    let host = sluice_dns::host_name();
    assert_eq!(
        a.header,
        format!(
            "pass ({host}: domain of u@pass.example designates {CLIENT} as permitted sender) \
             receiver={host}; client-ip={CLIENT}; envelope-from=\"u@pass.example\"; \
             helo=mail.sender.example;"
        )
    );
    assert!(!a.header.contains(['\r', '\n']));
    let a = check(&r, "u@softfail.example").await;
    assert!(
        a.header.starts_with(&format!(
            "softfail ({host}: domain of u@softfail.example reports soft fail for {CLIENT}) \
             receiver={host};"
        )),
        "{}",
        a.header
    );
}

#[tokio::test]
async fn servfail_and_silence_are_temperrors_within_the_deadline() {
    let dns = zone();
    dns.servfail("servfail.example");
    dns.silent("silent.example");
    txt(
        &dns,
        "inc-silent.example",
        "v=spf1 include:silent.example -all",
    );
    let r = resolver(&dns, 400);
    assert_eq!(
        check(&r, "u@servfail.example").await.result,
        SpfResult::TempError
    );
    for sender in ["u@silent.example", "u@inc-silent.example"] {
        let started = Instant::now();
        let answers = r.answer(&[spf_of(sender)]).await;
        let took = started.elapsed();
        assert!(took < Duration::from_millis(1500), "{sender}: {took:?}");
        match answers.get(&spf_of(sender)) {
            // The checker's own deadline, or the request's around it: both a temporary
            // failure for CheckSPF.
            LookupAnswer::Spf(a) => assert_eq!(a.result, SpfResult::TempError, "{sender}"),
            LookupAnswer::Failed => {}
            other => panic!("{sender}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn answers_are_cached() {
    let dns = zone();
    let r = resolver(&dns, 2000);
    assert_eq!(check(&r, "u@inc.example").await.result, SpfResult::Pass);
    let asked = dns.queries();
    assert!(asked >= 4, "the chain was resolved: {asked} queries");
    for _ in 0..5 {
        assert_eq!(check(&r, "v@inc.example").await.result, SpfResult::Pass);
    }
    assert_eq!(
        dns.queries(),
        asked,
        "later checks are answered from the cache"
    );
}

#[tokio::test]
async fn results_are_cached_per_domain_until_the_first_answer_expires() {
    let dns = DnsServer::start();
    // Short TTLs, so that expiry is seen (the caches read the real clock, as hickory's).
    dns.set_ttl(3);
    txt(
        &dns,
        "cached.example",
        "v=spf1 include:inc.cached.example -all",
    );
    txt(&dns, "inc.cached.example", "v=spf1 ip4:192.0.2.0/24 -all");
    let r = resolver(&dns, 2000);
    let first = check(&r, "u@cached.example").await;
    assert_eq!(first.result, SpfResult::Pass);
    let asked = dns.queries();
    assert!(asked >= 2, "the record and its include were read: {asked}");
    assert_eq!(r.cached_answers().1, 1, "one result, for the domain");
    // The same inputs (another sender of the domain: its records read no sender macro):
    // nothing asked, the same result, the header naming this request's sender.
    let again = check(&r, "v@cached.example").await;
    assert_eq!(dns.queries(), asked, "answered from the cached result");
    assert_eq!(r.cached_answers().1, 1, "no result of its own");
    assert_eq!(
        (again.result, &again.domain, &again.explanation),
        (first.result, &first.domain, &first.explanation)
    );
    assert!(
        again.header.contains("envelope-from=\"v@cached.example\"")
            || again.header.contains("envelope-from=v@cached.example"),
        "{}",
        again.header
    );
    // Past the TTL the check is made again, and sees the changed record.
    dns.remove("inc.cached.example");
    txt(
        &dns,
        "inc.cached.example",
        "v=spf1 ip4:198.51.100.0/24 -all",
    );
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(check(&r, "u@cached.example").await.result, SpfResult::Fail);
    assert!(dns.queries() > asked, "asked again");
}

#[tokio::test]
async fn a_record_reading_the_local_part_is_cached_per_sender_and_temperrors_are_not() {
    let dns = DnsServer::start();
    txt(
        &dns,
        "macro.example",
        "v=spf1 exists:%{l}.allowed.macro.example -all",
    );
    dns.add(
        "u.allowed.macro.example",
        Rec::A("127.0.0.2".parse().unwrap()),
    );
    dns.servfail("servfail.example");
    let r = resolver(&dns, 2000);
    assert_eq!(check(&r, "u@macro.example").await.result, SpfResult::Pass);
    // Not the first sender's cached result: this local part is not allowed.
    assert_eq!(check(&r, "w@macro.example").await.result, SpfResult::Fail);
    let asked = dns.queries();
    assert_eq!(check(&r, "u@macro.example").await.result, SpfResult::Pass);
    assert_eq!(check(&r, "w@macro.example").await.result, SpfResult::Fail);
    assert_eq!(dns.queries(), asked, "each sender's result cached");
    let held = r.cached_answers().1;
    assert_eq!(
        check(&r, "u@servfail.example").await.result,
        SpfResult::TempError
    );
    assert_eq!(r.cached_answers().1, held, "a temperror is not kept");
}

#[tokio::test]
async fn the_receiver_is_the_configured_one() {
    let dns = zone();
    let r = Resolver::new(&DnsConfig {
        servers: vec![dns.addr()],
        timeout: Duration::from_millis(2000),
        spf_receiver: Some("mx1.receiver.test".into()),
        ..DnsConfig::default()
    })
    .expect("resolver");
    let a = check(&r, "u@pass.example").await;
    assert!(
        a.header
            .starts_with("pass (mx1.receiver.test: domain of u@pass.example designates")
            && a.header.contains("receiver=mx1.receiver.test;"),
        "{}",
        a.header
    );
}
