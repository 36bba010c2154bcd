//! The codec against real Postfix requests and against hostile bytes.

use sluice_protocol::{
    FrameError, Limits, PolicyRequest, ProtocolState, RawRequest, RequestDecoder,
};

/// The requests captured from Postfix 3.7.11 (shared/data/postfix).
fn captured() -> Vec<u8> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/postfix/captured-requests-3.7.11.txt"
    );
    let text = std::fs::read_to_string(path).expect("captured requests beside the repository");
    let mut out = Vec::new();
    for block in text.split("--- request").skip(1) {
        for line in block.lines().skip(1) {
            if line.is_empty() {
                break;
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        out.push(b'\n');
    }
    out
}

fn decode_all(dec: &mut RequestDecoder, buf: &mut Vec<u8>) -> Vec<RawRequest> {
    let mut out = Vec::new();
    while let Some(r) = dec.decode(buf).unwrap() {
        out.push(r);
    }
    out
}

#[test]
fn parses_captured_postfix_requests() {
    let mut buf = captured();
    let reqs = decode_all(&mut RequestDecoder::default(), &mut buf);
    assert_eq!(reqs.len(), 3);
    assert!(buf.is_empty());
    assert!(reqs.iter().all(|r| r.len() == 29));
    let typed: Vec<PolicyRequest<'_>> = reqs
        .iter()
        .map(|r| PolicyRequest::from_raw(r).unwrap())
        .collect();
    assert_eq!(typed[0].protocol_state, ProtocolState::Rcpt);
    assert_eq!(typed[0].recipient, "2rcpt@example.net");
    assert_eq!(typed[0].client_port, Some(39050));
    assert_eq!(typed[0].instance, typed[2].instance);
    assert_eq!(typed[2].protocol_state, ProtocolState::EndOfMessage);
    assert_eq!(typed[2].size, 208);
    assert_eq!(typed[2].recipient_count, 2);
    assert_eq!(typed[2].client_address.to_string(), "127.0.0.1");
}

#[test]
fn typing_in_place_gives_what_from_raw_gives() {
    let mut buf = captured();
    for raw in decode_all(&mut RequestDecoder::default(), &mut buf) {
        let mut req = PolicyRequest::default();
        req.apply_raw(&raw).unwrap();
        assert_eq!(req, PolicyRequest::from_raw(&raw).unwrap());
    }
    // Attributes the request lacks keep the values they had.
    let raw = RawRequest::from_pairs([("protocol_state", "RCPT"), ("client_address", "192.0.2.1")]);
    let mut req = PolicyRequest {
        helo_name: "kept.example".into(),
        ..PolicyRequest::default()
    };
    req.apply_raw(&raw).unwrap();
    assert_eq!(req.helo_name, "kept.example");
    assert_eq!(req.client_address.to_string(), "192.0.2.1");
}

#[test]
fn byte_by_byte_gives_the_same_requests() {
    let all = captured();
    let mut dec = RequestDecoder::default();
    let mut buf = Vec::new();
    let mut got = Vec::new();
    for b in &all {
        buf.push(*b);
        if let Some(r) = dec.decode(&mut buf).unwrap() {
            got.push(r);
        }
    }
    let mut whole = all.clone();
    assert_eq!(got, decode_all(&mut RequestDecoder::default(), &mut whole));
}

#[test]
fn crlf_repeats_unknown_and_lossy_values() {
    let mut buf = b"protocol_state=RCPT\r\nclient_address=::ffff:192.0.2.1\r\nsender=A@B.example\r\nsender=c@d.example\r\nx_future_attr=1\r\nhelo_name=caf\xe9\r\n\r\n".to_vec();
    let raw = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
    let req = PolicyRequest::from_raw(&raw).unwrap();
    assert_eq!(req.sender, "c@d.example", "last value wins");
    assert_eq!(
        req.client_address.to_string(),
        "192.0.2.1",
        "IPv4-mapped becomes IPv4"
    );
    assert_eq!(req.helo_name, "caf\u{fffd}", "non-UTF-8 decoded lossily");
}

#[test]
fn hostile_input_is_refused_with_a_reason() {
    let limits = Limits {
        max_line_len: 64,
        max_request_len: 256,
        max_attributes: 4,
    };
    let cases: Vec<(Vec<u8>, FrameError)> = vec![
        (
            b"no equals sign\n\n".to_vec(),
            FrameError::MalformedLine { line: 1 },
        ),
        (
            b"=value\n\n".to_vec(),
            FrameError::MalformedLine { line: 1 },
        ),
        (b"a=b\0c\n\n".to_vec(), FrameError::NulByte { line: 1 }),
        (vec![b'a'; 200], FrameError::LineTooLong { limit: 64 }),
        (
            [b"a=1\n".repeat(5), b"\n".to_vec()].concat(),
            FrameError::TooManyAttributes { limit: 4 },
        ),
        (
            // Four full-length lines, no blank line yet: 260 bytes.
            [b"a=".to_vec(), vec![b'x'; 62], b"\n".to_vec()]
                .concat()
                .repeat(4),
            FrameError::RequestTooLarge { limit: 256 },
        ),
    ];
    for (mut bytes, want) in cases {
        let got = RequestDecoder::new(limits).decode(&mut bytes);
        assert_eq!(got, Err(want.clone()), "{want}");
    }
    // A 1 MiB line fails as soon as the cap is passed, without buffering the whole line.
    let mut dec = RequestDecoder::default();
    let mut buf = b"sender=".to_vec();
    let mut failed_at = None;
    for chunk in 0..256 {
        buf.extend_from_slice(&[b'x'; 4096]);
        if dec.decode(&mut buf).is_err() {
            failed_at = Some(chunk);
            break;
        }
    }
    assert_eq!(failed_at, Some(0));
}

#[test]
fn incomplete_requests_wait_and_validation_errors_are_typed() {
    let mut buf = b"protocol_state=RCPT\nclient_address=192.0.2.1\n".to_vec();
    assert_eq!(RequestDecoder::default().decode(&mut buf), Ok(None));
    for (text, label) in [
        ("protocol_state=RCPT\n", "missing_client_address"),
        (
            "protocol_state=RCPT\nclient_address=999.1.1.1\n",
            "invalid_client_address",
        ),
        ("client_address=192.0.2.1\n", "missing_protocol_state"),
        (
            "protocol_state=SING\nclient_address=192.0.2.1\n",
            "unknown_protocol_state",
        ),
        (
            "request=junk\nprotocol_state=RCPT\nclient_address=192.0.2.1\n",
            "unsupported_request",
        ),
        (
            "protocol_state=RCPT\nclient_address=192.0.2.1\nsize=big\n",
            "invalid_number",
        ),
    ] {
        let mut buf = format!("{text}\n").into_bytes();
        let raw = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
        assert_eq!(
            PolicyRequest::from_raw(&raw).unwrap_err().kind_label(),
            label,
            "{text}"
        );
    }
}

#[test]
fn rendering_round_trips() {
    let mut buf = captured();
    let raw = RequestDecoder::default().decode(&mut buf).unwrap().unwrap();
    let req = PolicyRequest::from_raw(&raw).unwrap();
    let mut again = req.to_protocol_text().into_bytes();
    let raw2 = RequestDecoder::default()
        .decode(&mut again)
        .unwrap()
        .unwrap();
    assert_eq!(PolicyRequest::from_raw(&raw2).unwrap(), req);
}

#[test]
fn client_addresses_parse_as_the_standard_parser_does() {
    use sluice_protocol::request::parse_ip;
    use std::net::IpAddr;
    let cases = [
        "192.0.2.1",
        "0.0.0.0",
        "255.255.255.255",
        "256.1.1.1",
        "1.2.3",
        "1.2.3.4.5",
        "01.2.3.4",
        "1.2.3.04",
        "1..3.4",
        "1.2.3.4 ",
        "1.2.3.a",
        "1000.2.3.4",
        "",
        ".",
        "2001:db8::1",
        "::ffff:10.0.0.1",
    ];
    for s in cases {
        let std: Option<IpAddr> = s.trim().parse().ok().map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        });
        assert_eq!(parse_ip(s), std, "{s:?}");
    }
}

#[test]
fn numbers_parse_as_the_standard_parser_does() {
    let req = |size: &str, port: &str| {
        let raw = RawRequest::from_pairs([
            ("protocol_state", "RCPT"),
            ("client_address", "192.0.2.1"),
            ("size", size),
            ("client_port", port),
        ]);
        PolicyRequest::from_raw(&raw).map(|r| (r.size, r.client_port))
    };
    assert_eq!(req("", ""), Ok((0, None)));
    assert_eq!(req("0", "0"), Ok((0, None)));
    assert_eq!(req("1234567", "25"), Ok((1_234_567, Some(25))));
    assert_eq!(req(" 42 ", "65535"), Ok((42, Some(65535))));
    assert_eq!(
        req("18446744073709551615", "1"),
        Ok((u64::MAX, Some(1))),
        "the largest size still parses"
    );
    assert!(req("18446744073709551616", "1").is_err());
    assert!(req("12x", "1").is_err());
    assert!(req("1", "65536").is_err(), "a port over 16 bits is refused");
}

#[test]
fn typed_requests_borrow_lower_case_values_and_can_be_detached() {
    let raw = RawRequest::from_pairs([
        ("protocol_state", "RCPT"),
        ("client_address", "192.0.2.1"),
        ("sender", "user@example.com"),
        ("recipient", "Ärger@Example.COM"),
        ("helo_name", "MX.Example.net"),
    ]);
    let req = PolicyRequest::from_raw(&raw).unwrap();
    assert!(
        matches!(req.sender, std::borrow::Cow::Borrowed(_)),
        "an already lower-case value is not copied"
    );
    assert_eq!(req.recipient, "ärger@example.com", "non-ASCII letters too");
    assert_eq!(req.helo_name, "MX.Example.net", "HELO keeps its case");
    let owned: PolicyRequest<'static> = req.clone().into_owned();
    drop(raw);
    assert_eq!(owned.recipient, "ärger@example.com");
    assert_eq!(owned.sender, "user@example.com");
}

#[test]
fn recycled_requests_do_not_leak_into_the_next_one() {
    // A long request, then a short one: the short one reuses the long one's buffers.
    let mut all = captured();
    all.extend_from_slice(b"protocol_state=RCPT\nclient_address=192.0.2.9\n\n");
    let mut fresh = all.clone();
    let want = decode_all(&mut RequestDecoder::default(), &mut fresh);
    let mut dec = RequestDecoder::default();
    let mut got = Vec::new();
    while let Some(raw) = dec.decode(&mut all).unwrap() {
        got.push(raw.clone());
        dec.recycle(raw);
    }
    assert_eq!(got, want);
    assert_eq!(got.last().unwrap().len(), 2);
}

/// Random requests (names and values of every length across the decoder's 64-byte chunks,
/// `=` inside values, `\r\n` line ends, stray blank lines, NULs and non-UTF-8 values) framed
/// in one go and in random pieces give what a plain line-by-line reading gives.
#[test]
fn random_requests_frame_as_plain_line_splitting_does() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let alphabet = b"ab=_.\xe9\r0";
    for _ in 0..3000 {
        let mut stream = Vec::new();
        let mut expected: Vec<Result<Vec<(String, String)>, FrameError>> = Vec::new();
        for _ in 0..1 + next(3) {
            if next(4) == 0 {
                stream.push(b'\n');
            }
            let mut pairs = Vec::new();
            let lines = 1 + next(6);
            let mut error = None;
            for line_no in 1..=lines {
                let name: Vec<u8> = (0..1 + next(20))
                    .map(|_| b"abc_"[next(4) as usize])
                    .collect();
                let value: Vec<u8> = (0..next(40))
                    .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                    .collect();
                let nul = next(40) == 0;
                stream.extend_from_slice(&name);
                stream.push(b'=');
                stream.extend_from_slice(&value);
                if nul {
                    stream.push(0);
                    error.get_or_insert(FrameError::NulByte {
                        line: line_no as usize,
                    });
                }
                let crlf = next(3) == 0;
                stream.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
                let mut value = value;
                if !crlf && value.last() == Some(&b'\r') {
                    value.pop();
                }
                pairs.push((
                    String::from_utf8(name).unwrap(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
            stream.push(b'\n');
            let failed = error.is_some();
            expected.push(error.map_or(Ok(pairs), Err));
            if failed {
                break;
            }
        }
        let frame = |pieces: &mut dyn FnMut() -> usize| {
            let mut dec = RequestDecoder::default();
            let (mut buf, mut at, mut got) = (Vec::new(), 0, Vec::new());
            while at < stream.len() {
                let end = (at + pieces()).min(stream.len());
                buf.extend_from_slice(&stream[at..end]);
                at = end;
                loop {
                    match dec.decode(&mut buf) {
                        Ok(Some(r)) => got.push(Ok(r
                            .attributes()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<Vec<_>>())),
                        Ok(None) => break,
                        Err(e) => {
                            got.push(Err(e));
                            return got;
                        }
                    }
                }
            }
            got
        };
        assert_eq!(frame(&mut || usize::MAX), expected, "{stream:?}");
        let mut piece_seed = 0x2545_f491_4f6c_dd1d ^ (stream.len() as u64);
        let mut pieces = || {
            piece_seed ^= piece_seed << 13;
            piece_seed ^= piece_seed >> 7;
            piece_seed ^= piece_seed << 17;
            1 + (piece_seed % 37) as usize
        };
        assert_eq!(frame(&mut pieces), expected, "{stream:?}");
    }
}
