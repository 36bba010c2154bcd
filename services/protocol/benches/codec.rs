//! Framing and typing of one policy request, against a baseline measured in the same run.
//!
//! `cargo bench -p sluice-protocol --bench codec`
//!
//! - `baseline/split_lines`: the least any parser does — split the bytes into lines and each
//!   line at its first `=` (std's `str::lines` and `split_once`, no caps, no copy).
//! - `decode`: [`RequestDecoder::decode`] (caps, NUL and UTF-8 checks, reused buffers).
//! - `decode_and_type`: plus [`PolicyRequest::from_raw`] (typed, validated request).
//!
//! Compare `decode` and `decode_and_type` to the baseline as ratios: absolute times depend on
//! the machine.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sluice_protocol::{PolicyRequest, RequestDecoder};
use std::hint::black_box;

/// An RCPT request as Postfix 3.7 sends it (attribute order and empty values included).
const RCPT: &str = include_str!("rcpt.txt");

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));

    group.bench_function("baseline/split_lines", |b| {
        b.iter(|| {
            let mut fields = 0usize;
            for line in black_box(RCPT).lines() {
                if let Some((name, value)) = line.split_once('=') {
                    fields += name.len() + value.len();
                }
            }
            fields
        })
    });

    let mut decoder = RequestDecoder::default();
    let mut buf = Vec::with_capacity(4096);
    group.bench_function("decode", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(RCPT).as_bytes());
            let raw = decoder.decode(&mut buf).unwrap().unwrap();
            let n = raw.len();
            decoder.recycle(raw);
            n
        })
    });

    group.bench_function("decode_and_type", |b| {
        b.iter(|| {
            buf.extend_from_slice(black_box(RCPT).as_bytes());
            let raw = decoder.decode(&mut buf).unwrap().unwrap();
            let size = PolicyRequest::from_raw(&raw).unwrap().size;
            decoder.recycle(raw);
            size
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
