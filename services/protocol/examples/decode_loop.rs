//! Frames (and optionally types) one RCPT request N times, for instruction counts under
//! callgrind, which repeat exactly from run to run (wall-clock time on a shared machine does
//! not):
//!
//! ```text
//! cargo build --release -p sluice-protocol --example decode_loop
//! for mode in none decode type; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$mode \
//!     target/release/examples/decode_loop $mode 100000
//! done
//! ```
//!
//! (total of `decode` − total of `none`) / N is the framing cost of one request, and
//! (`type` − `decode`) / N its typing cost (`PolicyRequest::apply_raw` into a fresh request,
//! as connections do). The request is the 33-attribute RCPT of the `codec` criterion bench.

use sluice_protocol::{PolicyRequest, RequestDecoder};
use std::hint::black_box;

/// The RCPT request of the `codec` bench.
const RCPT: &str = include_str!("../benches/rcpt.txt");

/// What each round does besides filling the buffer.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Nothing: the loop's own cost.
    None,
    /// Frame the request.
    Decode,
    /// Frame and type it.
    Type,
}

#[inline(never)]
fn round(mode: Mode, decoder: &mut RequestDecoder, buf: &mut Vec<u8>) -> u64 {
    if mode == Mode::None {
        return 0;
    }
    let raw = decoder
        .decode(buf)
        .expect("a valid request")
        .expect("a whole request");
    let out = match mode {
        Mode::Type => {
            let mut req = PolicyRequest::default();
            req.apply_raw(&raw).expect("typed");
            req.size
        }
        _ => raw.len() as u64,
    };
    decoder.recycle(raw);
    out
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = match args.next().as_deref() {
        Some("decode") => Mode::Decode,
        Some("type") => Mode::Type,
        Some("none") => Mode::None,
        _ => {
            eprintln!("usage: decode_loop none|decode|type [ROUNDS]");
            std::process::exit(2);
        }
    };
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let mut decoder = RequestDecoder::default();
    let mut buf = Vec::with_capacity(4096);
    let mut total = 0u64;
    for _ in 0..rounds {
        buf.extend_from_slice(black_box(RCPT).as_bytes());
        total = total.wrapping_add(round(mode, &mut decoder, &mut buf));
        buf.clear();
    }
    println!("{total}");
}
