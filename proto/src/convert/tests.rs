use super::*;
use prost::Message;

fn window() -> WindowSpec {
    WindowSpec::new(3_600_000, 60)
}

fn sample_batch() -> CounterBatch {
    CounterBatch {
        instance: "1A2B3C.ABCDE".into(),
        dry_run: true,
        groups: vec![
            vec![
                CounterOp {
                    key: "p/q/MessageCount/sender@example.com".into(),
                    limit: 1000,
                    window: window(),
                    kind: OpKind::TakeOncePerMessage,
                },
                CounterOp {
                    key: "p/q/RecipientCount/sender@example.com".into(),
                    limit: 5000,
                    window: window(),
                    kind: OpKind::Take { cost: 1 },
                },
                CounterOp {
                    key: "p/q/MessageCumulativeSize/sender@example.com".into(),
                    limit: 10_000_000,
                    window: WindowSpec::new(60_000, 7),
                    kind: OpKind::Check { cost: 12_345 },
                },
                CounterOp {
                    key: "p/q/MessageCumulativeSize/sender@example.com".into(),
                    limit: 10_000_000,
                    window: WindowSpec::new(60_000, 7),
                    kind: OpKind::RecordForEom {
                        label: "p\u{1f}q".into(),
                        group: 0,
                    },
                },
            ],
            vec![],
            vec![CounterOp {
                key: "monitor/q/RecipientCount/10.0.0.1".into(),
                limit: 0,
                window: window(),
                kind: OpKind::Take { cost: 0 },
            }],
        ],
        end_of_message: Some(98_765),
    }
}

fn sample_reply() -> CounterReply {
    let r = |outcome, used| OpResult { outcome, used };
    CounterReply {
        groups: vec![
            vec![
                r(Outcome::AlreadyCounted, 7),
                r(Outcome::Admitted, 8),
                r(
                    Outcome::Refused {
                        retry_after_ms: Some(61_000),
                    },
                    9_999_999,
                ),
                r(Outcome::NotEvaluated, 0),
            ],
            vec![],
            vec![r(
                Outcome::Refused {
                    retry_after_ms: None,
                },
                0,
            )],
            vec![r(
                Outcome::Refused {
                    retry_after_ms: Some(0),
                },
                3,
            )],
        ],
        end_of_message: vec![EomResult {
            label: "p\u{1f}q".into(),
            key: "p/q/MessageCumulativeSize/s".into(),
            limit: 10,
            result: r(Outcome::Admitted, 10),
        }],
        details: Vec::new(),
    }
}

/// Through the message types and through encoded bytes.
fn via_wire_batch(b: &CounterBatch) -> CounterBatch {
    let bytes = v1::ApplyRequest::from(b).encode_to_vec();
    let decoded = v1::ApplyRequest::decode(bytes.as_slice()).unwrap();
    CounterBatch::try_from(decoded).unwrap()
}

fn via_wire_reply(r: &CounterReply) -> CounterReply {
    let bytes = v1::ApplyReply::from(r).encode_to_vec();
    let decoded = v1::ApplyReply::decode(bytes.as_slice()).unwrap();
    CounterReply::try_from(decoded).unwrap()
}

#[test]
fn batches_round_trip() {
    let b = sample_batch();
    assert_eq!(via_wire_batch(&b), b);
    let empty = CounterBatch::default();
    assert_eq!(via_wire_batch(&empty), empty);
    // `None` and `Some(0)` stay distinct.
    let zero = CounterBatch {
        end_of_message: Some(0),
        ..CounterBatch::default()
    };
    assert_eq!(via_wire_batch(&zero), zero);
}

#[test]
fn replies_round_trip() {
    let r = sample_reply();
    assert_eq!(via_wire_reply(&r), r);
    assert_eq!(
        via_wire_reply(&CounterReply::default()),
        CounterReply::default()
    );
}

#[test]
fn an_op_without_kind_is_rejected() {
    let mut req = v1::ApplyRequest::from(&sample_batch());
    req.groups[0].ops[1].kind = None;
    assert_eq!(
        CounterBatch::try_from(req),
        Err(ConvertError::MissingKind {
            key: "p/q/RecipientCount/sender@example.com".into()
        })
    );
}

#[test]
fn invalid_windows_are_rejected() {
    // The last two: 3,600 sub-buckets of an hour (above the cap of counters in Redis), and a
    // period above 366 days.
    for (period_ms, bucket_ms) in [
        (0, 0),
        (60_000, 0),
        (0, 1),
        (1_000, 1_001),
        (3_600_000, 1_000),
        (40_000_000_000, 400_000_000),
    ] {
        let mut req = v1::ApplyRequest::from(&sample_batch());
        req.groups[2].ops[0].period_ms = period_ms;
        req.groups[2].ops[0].bucket_ms = bucket_ms;
        assert!(
            matches!(
                CounterBatch::try_from(req),
                Err(ConvertError::InvalidWindow { .. })
            ),
            "{period_ms}/{bucket_ms}"
        );
    }
}

#[test]
fn unknown_outcomes_and_missing_eom_results_are_rejected() {
    for bad in [0, 5, -1] {
        let mut reply = v1::ApplyReply::from(&sample_reply());
        reply.groups[0].results[0].outcome = bad;
        assert_eq!(
            CounterReply::try_from(reply),
            Err(ConvertError::UnknownOutcome(bad))
        );
    }
    let mut reply = v1::ApplyReply::from(&sample_reply());
    reply.end_of_message[0].result = None;
    assert!(matches!(
        CounterReply::try_from(reply),
        Err(ConvertError::MissingEomResult { .. })
    ));
}

#[test]
fn lease_returns_and_sessions_round_trip() {
    let r = LeaseReturn {
        key: "p/q/RecipientCount/a@b.c".into(),
        window: WindowSpec::new(60_000, 7),
        units: 17,
        charged_at_ms: 1_700_000_012_345,
    };
    let bytes = v1::LeaseReturn::from(&r).encode_to_vec();
    let wire = v1::LeaseReturn::decode(&bytes[..]).unwrap();
    assert_eq!(LeaseReturn::try_from(wire).unwrap(), r);

    let s = SessionData {
        instance: "1A2B3C.ABCDE".into(),
        charged: vec!["p/q/MessageCount/a@b.c".into(), "x".into()],
        records: vec![
            EomRecord {
                key: "p/q/MessageCumulativeSize/a@b.c".into(),
                limit: 10_000_000,
                window: window(),
                label: "p\u{1f}q".into(),
                group: 2,
            },
            EomRecord {
                key: "k2".into(),
                limit: 1,
                window: WindowSpec::new(60_000, 7),
                label: String::new(),
                group: 0,
            },
        ],
    };
    let bytes = v1::SessionData::from(&s).encode_to_vec();
    let wire = v1::SessionData::decode(&bytes[..]).unwrap();
    assert_eq!(SessionData::try_from(wire).unwrap(), s);
}

#[test]
fn lease_returns_and_records_with_invalid_windows_are_rejected() {
    let mut r = v1::LeaseReturn {
        key: "k".into(),
        period_ms: 60_000,
        bucket_ms: 0,
        units: 1,
        charged_at_ms: 1,
    };
    assert!(matches!(
        LeaseReturn::try_from(r.clone()),
        Err(ConvertError::InvalidWindow { .. })
    ));
    r.bucket_ms = 120_000;
    assert!(LeaseReturn::try_from(r).is_err());
    let s = v1::SessionData {
        instance: "i".into(),
        charged: vec![],
        records: vec![v1::EomRecord {
            key: "k".into(),
            limit: 1,
            period_ms: 0,
            bucket_ms: 1,
            label: String::new(),
            group: 0,
        }],
    };
    assert!(matches!(
        SessionData::try_from(s),
        Err(ConvertError::InvalidWindow { .. })
    ));
}

/// A greylisting op travels in its group (`Op.greylist`), its answer in `details`; an op
/// whose key is not its network is refused.
#[test]
fn greylisting_ops_and_details_round_trip() {
    use sluice_engine::greylisting::record::GreyParams;
    use sluice_engine::{GreyOutcome, GreylistOp, GreylistReply};
    let grey = GreylistOp {
        network: "SenderIP:192.0.2.0/24".into(),
        triplet: "a@x.org\nb@y.org".into(),
        params: GreyParams {
            period_ms: 240_000,
            auth_validity_ms: 1,
            unauth_validity_ms: 2,
            awl: None,
            abl: None,
            training: false,
        },
        dry_run: false,
    };
    let mut b = sample_batch();
    b.groups[2].insert(0, Box::new(grey.clone()).into_counter_op());
    assert_eq!(via_wire_batch(&b), b);

    let mut r = sample_reply();
    r.details.push(OpDetail {
        group: 2,
        index: 0,
        answer: DetailAnswer::Greylist(GreylistReply {
            outcome: GreyOutcome::Deferred {
                first_seen_ms: 1,
                passes_at_ms: 240_001,
                tries: 1,
            },
            now_ms: 1,
        }),
    });
    assert_eq!(via_wire_reply(&r), r);

    let mut wire = v1::ApplyRequest::from(&b);
    wire.groups[2].ops[0].key = "SenderIP:198.51.100.0/24".into();
    assert!(matches!(
        CounterBatch::try_from(wire),
        Err(ConvertError::InvalidGreylist(_))
    ));
}
