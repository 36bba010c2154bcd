//! Memory soak: N requests (default 10 million) over a bounded key space through the engine
//! with the in-process state, time moving 1 ms per request, sweeping as `sluice serve` does.
//! Prints live counters, sessions and resident memory along the way; the process's memory
//! must level off, not grow with the number of requests.
//!
//! `cargo run --release -p sluice-engine --example memory_soak -- 10000000`
//!
//! `... --example memory_soak -- keys 2000000` instead measures what N distinct keys cost:
//! N counters (one sub-bucket each, as fresh keys of an attack have), the resident memory
//! before and after the sweep that reclaims them once idle; the same for N message
//! sessions; and N refused requests on N new keys (which must leave nothing).
//!
//! Memory is the server's allocator's (mimalloc), as `sluice serve` runs.

use sluice_engine::window::WindowSpec;
use sluice_engine::*;
use std::sync::Arc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("keys") {
        let n = args
            .get(1)
            .and_then(|a| a.parse().ok())
            .unwrap_or(2_000_000);
        return keys(n);
    }
    let total: u64 = args
        .first()
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

const HOUR: u64 = 3_600_000;

/// A counter key as the engine renders it (~60 bytes).
fn counter_key(i: u64) -> String {
    format!("outbound/per-sender/MessageCount/Sender:user{i:08}@example.com")
}

fn one(groups: Vec<Vec<CounterOp>>, instance: String) -> CounterBatch {
    CounterBatch {
        instance,
        groups,
        ..CounterBatch::default()
    }
}

/// Resident memory in KiB, past the allocator's delay before it returns freed pages
/// (mimalloc's `purge_delay`, 1 s).
fn settled_rss_kib() -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    rss_kib()
}

fn keys(n: u64) {
    let clock = ManualClock::new(1_700_000_040_000);
    // As `sluice serve` runs with a SQLite database: changes tracked for the writer.
    let settings = MemoryStateSettings {
        track_changes: true,
        ..MemoryStateSettings::default()
    };
    let state = MemoryState::new(Arc::new(clock.clone()), settings);
    let window = WindowSpec::new(HOUR, 60);
    let op = |key: String, limit: u64, kind: OpKind| CounterOp {
        key,
        limit,
        window,
        kind,
    };
    let mut reply = CounterReply::default();
    let report = |what: &str, base: u64, rss: u64, count: u64| {
        let per = (rss.saturating_sub(base) * 1024) as f64 / count.max(1) as f64;
        println!(
            "{what}: rss {rss} KiB ({:+} KiB, {per:.0} bytes each over {count}), counters {}, \
             counter capacity {}, sessions {}, session capacity {}",
            rss as i64 - base as i64,
            state.counters(),
            state.counter_capacity(),
            state.sessions(),
            state.session_capacity()
        );
    };
    let base = settled_rss_kib();
    report("start", base, base, 1);

    // N counters, one sub-bucket each.
    for i in 0..n {
        let b = one(
            vec![vec![op(counter_key(i), 100, OpKind::Take { cost: 1 })]],
            String::new(),
        );
        state.apply_in_place_into(&b, &mut reply);
    }
    let full = settled_rss_kib();
    report("counters", base, full, n);
    // What the background writer collects (freed once written).
    let changes = state.take_changes();
    println!("collected {} changed counters", changes.changed.len());
    drop(changes);
    let collected = settled_rss_kib();
    report("after collecting the changes", base, collected, n);
    clock.advance_ms(HOUR + 2 * 60_000);
    let removed = state.sweep();
    println!("swept {removed}");
    report("after the sweep", base, settled_rss_kib(), n);
    // The allocator returns freed pages to the system as it goes on working: what the
    // server shows once it has served some more requests.
    let traffic = |state: &MemoryState, reply: &mut CounterReply| {
        for i in 0..200_000u64 {
            let b = one(
                vec![vec![op(
                    counter_key(i % 1_000),
                    u64::MAX,
                    OpKind::Take { cost: 1 },
                )]],
                String::new(),
            );
            state.apply_in_place_into(&b, reply);
        }
    };
    traffic(&state, &mut reply);
    let swept = settled_rss_kib();
    report(
        "after the sweep and 200,000 requests on 1,000 keys",
        base,
        swept,
        n,
    );

    // N refused requests on N new keys: nothing is kept.
    for i in 0..n {
        let b = one(
            vec![vec![op(counter_key(n + i), 0, OpKind::Take { cost: 1 })]],
            String::new(),
        );
        state.apply_in_place_into(&b, &mut reply);
    }
    report("refused requests", swept, settled_rss_kib(), n);

    // N message sessions (a once-per-message charge and a size record each, on shared
    // counters: the sessions alone).
    let before = settled_rss_kib();
    for i in 0..n {
        let b = one(
            vec![vec![
                op(
                    "p/q/MessageCount/Policy".into(),
                    u64::MAX,
                    OpKind::TakeOncePerMessage,
                ),
                op(
                    "p/s/MessageCumulativeSize/Policy".into(),
                    u64::MAX,
                    OpKind::RecordForEom {
                        label: "p\u{1f}s".into(),
                        group: 0,
                    },
                ),
            ]],
            format!("{:016X}", 0x1234_5678_0000_0000u64 + i),
        );
        state.apply_in_place_into(&b, &mut reply);
    }
    let with_sessions = settled_rss_kib();
    report("sessions", before, with_sessions, n);
    clock.advance_ms(2 * HOUR);
    state.sweep();
    report("after the sessions' sweep", before, settled_rss_kib(), n);
    traffic(&state, &mut reply);
    report(
        "after the sessions' sweep and 200,000 requests",
        before,
        settled_rss_kib(),
        n,
    );
}
