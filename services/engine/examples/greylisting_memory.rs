//! Greylisting memory in process: N distinct triplets (default 1 000 000) recorded through
//! a one-op greylisting batch (`State::apply`) with the in-process state, the resident memory before, after, and after
//! the sweep that reclaims them once expired. Two shapes: every triplet on a network of its
//! own (the worst case: one record per triplet), and 10 triplets per network (a network
//! sending to several recipients).
//!
//! `cargo run --release -p sluice-engine --example greylisting_memory -- 1000000` (each shape
//! in a process of its own; `-- 1000000 10` runs one).
//!
//! Memory is the server's allocator's (mimalloc), as `sluice serve` runs. The figures are in
//! docs/benchmarks.md ("Greylisting memory").

use sluice_engine::greylisting::record::triplet_field;
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

fn settled_rss_kib() -> u64 {
    std::thread::sleep(std::time::Duration::from_millis(1_200));
    rss_kib()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match f.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(v) => v,
        std::task::Poll::Pending => unreachable!("the in-process state is synchronous"),
    }
}

/// The parameters `sluice serve` would use with Policyd's defaults.
fn params() -> GreyParams {
    GreyParams {
        period_ms: 240_000,
        auth_validity_ms: 7 * 86_400_000,
        unauth_validity_ms: 86_400_000,
        awl: None,
        abl: None,
        training: false,
    }
}

fn network(i: u64) -> String {
    format!(
        "SenderIP:{}.{}.{}.0/24",
        10 + (i >> 16) % 200,
        (i >> 8) & 255,
        i & 255
    )
}

fn run(n: u64, per_network: u64) {
    let clock = ManualClock::new(1_796_558_400_000);
    let state = MemoryState::new(Arc::new(clock.clone()), MemoryStateSettings::default());
    let base = settled_rss_kib();
    for i in 0..n {
        let op = GreylistOp {
            network: network(i / per_network),
            // Typical lengths: ~20-byte sender and recipient.
            triplet: triplet_field(
                &format!("sender{i:08}@example.com"),
                &format!("rcpt{:06}@example.net", i % 1_000_000),
            ),
            params: params(),
            dry_run: false,
        };
        let reply = block_on(state.apply(&op.into_batch())).expect("in-process greylisting");
        let reply = sluice_engine::greylist_answer_in(&reply, 0, 0).expect("an answer");
        assert!(matches!(reply.outcome, GreyOutcome::Deferred { .. }));
    }
    let full = settled_rss_kib();
    let (nets, triplets) = state.greylisting_entries();
    assert_eq!(triplets as u64, n);
    let per = (full.saturating_sub(base) * 1024) as f64 / n as f64;
    println!(
        "{per_network} triplet(s) per network: {n} triplets on {nets} networks: rss {base} -> {full} KiB, {per:.0} bytes per triplet"
    );
    clock.advance_ms(86_400_000);
    let removed = state.sweep();
    let swept = settled_rss_kib();
    println!(
        "  after expiry and the sweep: {removed} entries removed, {:?} left, rss {swept} KiB ({:+} KiB from before)",
        state.greylisting_entries(),
        swept as i64 - base as i64
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: N [triplets per network]"))
        .collect();
    let n = args.first().copied().unwrap_or(1_000_000);
    match args.get(1) {
        // One shape per process: a second shape in the same process would start from the
        // first one's freed-but-kept pages.
        Some(&per) => run(n, per.max(1)),
        None => {
            let me = std::env::current_exe().expect("own path");
            for per in [1, 10] {
                let status = std::process::Command::new(&me)
                    .args([n.to_string(), per.to_string()])
                    .status()
                    .expect("run a shape");
                assert!(status.success());
            }
        }
    }
}
