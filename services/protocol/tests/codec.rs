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
