//! What the history adds to each request on the request path: [`HistorySink::record`].
//!
//! `cargo bench -p sluice-edge --bench history_sink`
//!
//! - `admitted/known_sender`: a request admitted, its sender already in the minute's table
//!   (the usual case: a lock, a clock read, a hash lookup).
//! - `admitted/new_sender_table_full`: a new sender with the table full (1000 senders):
//!   the worst case, a scan for the sender with the fewest requests.
//! - `refused`: a refused request: the above plus a record copied into the queue (drained
//!   by the benchmark, as the writer would).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_edge::history_sink::HistorySink;
use sluice_engine::engine::Decision;
use sluice_protocol::{Action, PolicyRequest, ProtocolState};
use std::hint::black_box;

fn decision(action: Action) -> Decision {
    Decision {
        action,
        ..Decision::dunno()
    }
}

fn sink(c: &mut Criterion) {
    let mut group = c.benchmark_group("history_sink");
    group.throughput(Throughput::Elements(1));
    let mut req = PolicyRequest::new(ProtocolState::Rcpt, "192.0.2.1".parse().unwrap());
    req.sender = "someone@example.org".into();
    req.recipient = "rcpt@example.net".into();
    req.helo_name = "mx.example.net".into();
    let dunno = decision(Action::Dunno);
    let reject = decision(Action::Reject(Some("5.7.1 Sender quota exceeded".into())));

    let (s, _rx) = HistorySink::new(1000, 1000);
    group.bench_function("admitted/known_sender", |b| {
        b.iter(|| s.record(black_box(&req), black_box(&dunno)))
    });

    let (s, _rx) = HistorySink::new(1000, 1000);
    let senders: Vec<String> = (0..100_000).map(|i| format!("s{i}@example.org")).collect();
    let mut i = 0;
    group.bench_function("admitted/new_sender_table_full", |b| {
        b.iter(|| {
            let mut r = req.clone();
            r.sender = senders[i % senders.len()].as_str().into();
            i += 1;
            s.record(black_box(&r), black_box(&dunno))
        })
    });

    let (s, mut rx) = HistorySink::new(1000, 1000);
    group.bench_function("refused", |b| {
        b.iter(|| {
            s.record(black_box(&req), black_box(&reject));
            black_box(rx.queue.try_recv().ok())
        })
    });
    group.finish();
}

criterion_group!(benches, sink);
criterion_main!(benches);
