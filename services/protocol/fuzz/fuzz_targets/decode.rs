//! Fuzz target: arbitrary bytes, fed in arbitrary chunks, never panic the decoder or the
//! request validation, and decoding never consumes more than it was given.
//! Run: `cargo +nightly fuzz run decode` in services/protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_protocol::{Limits, PolicyRequest, RequestDecoder};

fuzz_target!(|data: &[u8]| {
    let split = data.first().map_or(1, |b| usize::from(*b).max(1));
    let mut dec = RequestDecoder::new(Limits {
        max_line_len: 512,
        max_request_len: 4096,
        max_attributes: 64,
    });
    let mut buf = Vec::new();
    for chunk in data.chunks(split) {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match dec.decode(&mut buf) {
                Ok(Some(raw)) => {
                    assert!(buf.len() < before);
                    if let Ok(req) = PolicyRequest::from_raw(&raw) {
                        let _ = req.to_protocol_text();
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
