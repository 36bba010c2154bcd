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
//! (`type` − `decode`) / N its typing cost (`PolicyRequest::from_raw`). The request is the
//! 33-attribute RCPT of the `codec` criterion bench.

use sluice_protocol::{PolicyRequest, RequestDecoder};
use std::hint::black_box;

const RCPT: &str = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n\
client_address=10.1.3.77\nclient_name=mail.client.example\nclient_port=41234\n\
reverse_client_name=mail.client.example\nserver_address=192.0.2.1\nserver_port=25\n\
helo_name=mail.client.example\nsender=user41@domain1.example\nrecipient=rcpt17@dest17.example\n\
recipient_count=0\nqueue_id=\nstress=\nsize=12345\netrn_domain=\nencryption_protocol=\n\
encryption_cipher=\nencryption_keysize=0\nsasl_method=\nsasl_username=\nsasl_sender=\n\
ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n\
client_implementation=\npolicy_context=\ncompatibility_level=3.6\nmail_version=3.7.11\n\
instance=1a2b.3c4d5e.17\n\n";

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
        Mode::Type => PolicyRequest::from_raw(&raw).expect("typed").size,
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
