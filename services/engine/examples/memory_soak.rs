//! Memory soak: N requests (default 10 million) over a bounded key space through the engine
//! with the in-process state, time moving 1 ms per request, sweeping as `sluice serve` does.
//! Prints live counters, sessions and resident memory along the way; the process's memory
//! must level off, not grow with the number of requests.
//!
//! `cargo run --release -p sluice-engine --example memory_soak -- 10000000`

use sluice_engine::*;
use std::sync::Arc;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-process state is synchronous"),
    }
}

fn main() {
    let total: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let text = include_str!("../../../loadtest/scenarios/embedded-10-policies.toml");
    let def: PolicySetDef = soak_policies(text);
    let set = compile(&def).unwrap_or_else(|e| panic!("{e:?}")).set;
    let clock = ManualClock::new(1_700_000_000_000);
    let state = Arc::new(MemoryState::new(
        Arc::new(clock.clone()),
        MemoryStateSettings::default(),
    ));
    let engine = Engine::new(set, state.clone(), EngineSettings::default());
    println!("requests,counters,sessions,rss_kib");
    let mut req = PolicyRequest::new(ProtocolState::Rcpt, "192.0.2.1".parse().unwrap());
    for i in 0..total {
        // 2,000 senders, 500 client IPs, 1,000 recipients; 3 recipients per message, then EOM.
        let msg = i / 4;
        if i % 4 == 3 {
            req.protocol_state = ProtocolState::EndOfMessage;
            req.size = 2_000 + (msg % 50_000);
            req.recipient = "".into();
        } else {
            req.protocol_state = ProtocolState::Rcpt;
            req.size = 0;
            req.recipient = format!("rcpt{}@example.com", (msg * 3 + i % 4) % 1_000).into();
        }
        req.sender = format!("sender{}@example.net", msg % 2_000).into();
        req.client_address = std::net::IpAddr::V4(std::net::Ipv4Addr::from(
            0xC633_6400u32 + (msg % 500) as u32,
        ));
        req.instance = format!("inst{msg}").into();
        block_on(engine.decide(&req));
        clock.advance_ms(1);
        if i % 30_000 == 0 {
            state.sweep();
        }
        if i % (total / 20).max(1) == 0 || i + 1 == total {
            println!(
                "{},{},{},{}",
                i + 1,
                state.counters(),
                state.sessions(),
                rss_kib()
            );
        }
    }
}

/// The load-test scenario's policies (a TOML policy file in the serde shape of PolicySetDef,
/// periods in plain seconds).
fn soak_policies(text: &str) -> PolicySetDef {
    toml::from_str(text).expect("loadtest/scenarios/embedded-10-policies.toml parses")
}
