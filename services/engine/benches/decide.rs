//! The engine deciding requests with in-process counters, against a baseline measured in
//! the same run.
//!
//! `cargo bench -p sluice-engine --bench decide`
//!
//! Policies: `loadtest/scenarios/embedded-10-policies.toml` (10 policies, 5 quotas), the set
//! `loadtest/run.sh` measures over TCP. Requests: a fixed cycle of messages (3 RCPTs and an
//! END-OF-MESSAGE each) from 300 senders, 250 client networks and 400 recipients.
//!
//! - `baseline/no_policies`: the same requests against an empty policy set (the engine's
//!   fixed cost: nothing matches, nothing is counted).
//! - `ten_policies/fresh_buffers`: [`Engine::decide`], new buffers for every request.
//! - `ten_policies/reused_buffers`: [`Engine::decide_reusing`] with one [`Scratch`], as an
//!   edge connection does.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_engine::*;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

const POLICIES: &str = include_str!("../../../loadtest/scenarios/embedded-10-policies.toml");

/// The in-process state answers immediately: one poll completes a decision.
fn now<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => panic!("the in-process state is synchronous"),
    }
}

fn engine(def: &PolicySetDef) -> Engine {
    let set = compile(def).unwrap_or_else(|e| panic!("{e:?}")).set;
    let state = Arc::new(MemoryState::new(
        Arc::new(SystemClock),
        MemoryStateSettings::default(),
    ));
    Engine::new(set, state, EngineSettings::default())
}

fn requests() -> Vec<PolicyRequest<'static>> {
    let mut out = Vec::new();
    for msg in 0..1_000u32 {
        let s = msg * 7919 % 300;
        let sender = format!("user{s}@domain{}.example", s % 40);
        let client = IpAddr::V4(Ipv4Addr::new(
            10,
            (s % 4) as u8,
            (msg % 8) as u8,
            1 + (msg % 250) as u8,
        ));
        let instance = format!("{msg:x}.{:x}", msg * 31);
        for state in [
            ProtocolState::Rcpt,
            ProtocolState::Rcpt,
            ProtocolState::Rcpt,
            ProtocolState::EndOfMessage,
        ] {
            let mut r = PolicyRequest::new(state, client);
            r.sender = sender.clone().into();
            r.instance = instance.clone().into();
            r.size = 1_000 + u64::from(msg) * 37 % 200_000;
            if state == ProtocolState::Rcpt {
                let n = (msg * 13 + out.len() as u32) % 400;
                r.recipient = format!("rcpt{n}@dest{}.example", n % 25).into();
            }
            if s < 30 {
                r.sasl_username = format!("user{s}").into();
            }
            out.push(r);
        }
    }
    out
}

fn decide(c: &mut Criterion) {
    let ten: PolicySetDef = toml::from_str(POLICIES).expect("the load-test policies parse");
    let requests = requests();
    let mut group = c.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));

    let empty = engine(&PolicySetDef::default());
    let mut i = 0;
    group.bench_function("baseline/no_policies", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            now(empty.decide(&requests[i])).action
        })
    });

    let fresh = engine(&ten);
    group.bench_function("ten_policies/fresh_buffers", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            now(fresh.decide(&requests[i])).action
        })
    });

    let reused = engine(&ten);
    let mut scratch = Scratch::default();
    group.bench_function("ten_policies/reused_buffers", |b| {
        b.iter(|| {
            i = (i + 1) % requests.len();
            now(reused.decide_reusing(&requests[i], &mut scratch)).action
        })
    });
    group.finish();
}

criterion_group!(benches, decide);
criterion_main!(benches);
