//! Conversions between the CheckHelo wire messages and the engine's [`HeloOp`] /
//! [`HeloReply`]. Wire → engine range-checks what the arithmetic relies on.

use crate::v1;
use crate::ConvertError;
use sluice_engine::checkhelo::settings::{MAX_HELO_LEN, MAX_HRP_LIMIT, MAX_PERIOD_SECS};
use sluice_engine::{HeloOp, HeloOutcome, HeloParams, HeloReply};

/// Longest window on the wire: the model's longest period, in ms.
const MAX_MS: u64 = MAX_PERIOD_SECS * 1000;

fn bad(what: impl Into<String>) -> ConvertError {
    ConvertError::InvalidHelo(what.into())
}

impl From<&HeloOp> for v1::HeloRequest {
    fn from(op: &HeloOp) -> Self {
        let p = &op.params;
        v1::HeloRequest {
            address: op.address.clone(),
            helo: op.helo.clone(),
            hrp_window_ms: p.hrp_window_ms,
            hrp_limit: p.hrp_limit,
            blacklist_ms: p.blacklist_ms,
            blacklisted_now: p.blacklisted_now,
            dry_run: op.dry_run,
        }
    }
}

impl TryFrom<v1::HeloRequest> for HeloOp {
    type Error = ConvertError;
    fn try_from(r: v1::HeloRequest) -> Result<Self, ConvertError> {
        if r.address.is_empty() || r.address.len() > 64 {
            return Err(bad("the client address is empty or too long"));
        }
        // Postfix limits a HELO name to a protocol line; the record keeps it lower-cased.
        if r.helo.is_empty() || r.helo.len() > 4 * MAX_HELO_LEN {
            return Err(bad("the HELO is empty or too long"));
        }
        if r.hrp_window_ms > MAX_MS || r.blacklist_ms > MAX_MS || r.hrp_limit > MAX_HRP_LIMIT {
            return Err(bad(format!(
                "window {} ms, blacklist {} ms or limit {} out of range",
                r.hrp_window_ms, r.blacklist_ms, r.hrp_limit
            )));
        }
        Ok(HeloOp {
            address: r.address,
            helo: r.helo,
            params: HeloParams {
                hrp_window_ms: r.hrp_window_ms,
                hrp_limit: r.hrp_limit,
                blacklist_ms: r.blacklist_ms,
                blacklisted_now: r.blacklisted_now,
            },
            dry_run: r.dry_run,
        })
    }
}

impl From<&HeloReply> for v1::HeloReply {
    fn from(r: &HeloReply) -> Self {
        use v1::helo_reply::Kind;
        let (kind, distinct, until_ms) = match r.outcome {
            HeloOutcome::Passed { distinct } => (Kind::Passed, distinct, 0),
            HeloOutcome::Blacklisted { until_ms } => (Kind::Blacklisted, 0, until_ms),
            HeloOutcome::HrpExceeded { distinct } => (Kind::HrpExceeded, distinct, 0),
        };
        v1::HeloReply {
            kind: kind as i32,
            distinct,
            until_ms,
            now_ms: r.now_ms,
        }
    }
}

impl TryFrom<v1::HeloReply> for HeloReply {
    type Error = ConvertError;
    fn try_from(r: v1::HeloReply) -> Result<Self, ConvertError> {
        use v1::helo_reply::Kind;
        let outcome = match Kind::try_from(r.kind) {
            Ok(Kind::Passed) => HeloOutcome::Passed {
                distinct: r.distinct,
            },
            Ok(Kind::Blacklisted) => HeloOutcome::Blacklisted {
                until_ms: r.until_ms,
            },
            Ok(Kind::HrpExceeded) => HeloOutcome::HrpExceeded {
                distinct: r.distinct,
            },
            _ => return Err(bad(format!("unknown checkhelo outcome {}", r.kind))),
        };
        Ok(HeloReply {
            outcome,
            now_ms: r.now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_and_replies_round_trip_and_bad_ones_are_refused() {
        let op = HeloOp {
            address: "192.0.2.1".into(),
            helo: "Mail.Example.org".into(),
            params: HeloParams {
                hrp_window_ms: 60_000,
                hrp_limit: 3,
                blacklist_ms: 1000,
                blacklisted_now: true,
            },
            dry_run: true,
        };
        assert_eq!(HeloOp::try_from(v1::HeloRequest::from(&op)).unwrap(), op);
        for outcome in [
            HeloOutcome::Passed { distinct: 2 },
            HeloOutcome::Blacklisted { until_ms: 99 },
            HeloOutcome::HrpExceeded { distinct: 4 },
        ] {
            let r = HeloReply { outcome, now_ms: 7 };
            assert_eq!(HeloReply::try_from(v1::HeloReply::from(&r)).unwrap(), r);
        }
        let mut w = v1::HeloRequest::from(&op);
        w.hrp_limit = MAX_HRP_LIMIT + 1;
        assert!(HeloOp::try_from(w).is_err());
        let mut w = v1::HeloRequest::from(&op);
        w.address.clear();
        assert!(HeloOp::try_from(w).is_err());
        assert!(HeloReply::try_from(v1::HeloReply::default()).is_err());
    }
}
