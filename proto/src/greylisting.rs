//! Conversions between the greylisting wire messages and the engine's [`GreylistOp`] /
//! [`GreylistReply`]. Wire → engine range-checks what the arithmetic relies on.

use crate::v1;
use crate::ConvertError;
use sluice_engine::greylisting::record::AutoList;
use sluice_engine::{GreyOutcome, GreyParams, GreylistOp, GreylistReply};

/// Longest time any greylisting duration may span on the wire: 366 days in ms (the model's
/// ranges stay far below; what a peer sends above is malformed).
const MAX_MS: u64 = 366 * 86_400_000;

/// Longest network or triplet text accepted.
const MAX_TEXT: usize = 2048;

fn auto_to_wire(l: Option<AutoList>) -> Option<v1::AutoList> {
    l.map(|l| v1::AutoList {
        period_ms: l.period_ms,
        count: l.count,
        percentage: l.percentage,
    })
}

fn bad(what: impl Into<String>) -> ConvertError {
    ConvertError::InvalidGreylist(what.into())
}

fn auto_from_wire(l: Option<v1::AutoList>) -> Result<Option<AutoList>, ConvertError> {
    let Some(l) = l else { return Ok(None) };
    if l.period_ms == 0 || l.period_ms > MAX_MS || l.percentage > 100 || l.count > 1_000_000 {
        return Err(bad(format!(
            "auto-list period {} ms, count {}, percentage {} out of range",
            l.period_ms, l.count, l.percentage
        )));
    }
    Ok(Some(AutoList {
        period_ms: l.period_ms,
        count: l.count,
        percentage: l.percentage,
    }))
}

impl From<&GreylistOp> for v1::GreylistRequest {
    fn from(op: &GreylistOp) -> Self {
        let p = &op.params;
        v1::GreylistRequest {
            network: op.network.clone(),
            triplet: op.triplet.clone(),
            period_ms: p.period_ms,
            auth_validity_ms: p.auth_validity_ms,
            unauth_validity_ms: p.unauth_validity_ms,
            auto_whitelist: auto_to_wire(p.awl),
            auto_blacklist: auto_to_wire(p.abl),
            training: p.training,
            dry_run: op.dry_run,
        }
    }
}

impl TryFrom<v1::GreylistRequest> for GreylistOp {
    type Error = ConvertError;
    fn try_from(r: v1::GreylistRequest) -> Result<Self, ConvertError> {
        if r.network.is_empty() || r.network.len() > MAX_TEXT || r.triplet.len() > MAX_TEXT {
            return Err(bad("network empty, or network or triplet too long"));
        }
        if r.triplet.matches('\n').count() != 1 {
            return Err(bad("the triplet must be sender, newline, recipient"));
        }
        for (name, v) in [
            ("period", r.period_ms),
            ("auth validity", r.auth_validity_ms),
            ("unauth validity", r.unauth_validity_ms),
        ] {
            if v > MAX_MS {
                return Err(bad(format!("{name} {v} ms out of range")));
            }
        }
        Ok(GreylistOp {
            network: r.network,
            triplet: r.triplet,
            params: GreyParams {
                period_ms: r.period_ms,
                auth_validity_ms: r.auth_validity_ms,
                unauth_validity_ms: r.unauth_validity_ms,
                awl: auto_from_wire(r.auto_whitelist)?,
                abl: auto_from_wire(r.auto_blacklist)?,
                training: r.training,
            },
            dry_run: r.dry_run,
        })
    }
}

impl From<&GreylistReply> for v1::GreylistReply {
    fn from(r: &GreylistReply) -> Self {
        use v1::greylist_reply::Outcome as W;
        let outcome = match r.outcome {
            GreyOutcome::AutoWhitelisted { until_ms } => {
                W::AutoWhitelisted(v1::GreyAutoWhitelisted { until_ms })
            }
            GreyOutcome::Blacklisted {
                until_ms,
                listed_now,
            } => W::Blacklisted(v1::GreyBlacklisted {
                until_ms,
                listed_now: listed_now.is_some(),
                total: listed_now.map_or(0, |l| l.0),
                failed: listed_now.map_or(0, |l| l.1),
            }),
            GreyOutcome::Deferred {
                first_seen_ms,
                passes_at_ms,
                tries,
            } => W::Deferred(v1::GreyDeferred {
                first_seen_ms,
                passes_at_ms,
                tries,
            }),
            GreyOutcome::Passed {
                first_seen_ms,
                training,
                auto_whitelisted_until_ms,
            } => W::Passed(v1::GreyPassed {
                first_seen_ms,
                training,
                auto_whitelisted_until_ms,
            }),
        };
        v1::GreylistReply {
            outcome: Some(outcome),
            now_ms: r.now_ms,
        }
    }
}

impl TryFrom<v1::GreylistReply> for GreylistReply {
    type Error = ConvertError;
    fn try_from(r: v1::GreylistReply) -> Result<Self, ConvertError> {
        use v1::greylist_reply::Outcome as W;
        let outcome = match r.outcome.ok_or_else(|| bad("reply without an outcome"))? {
            W::AutoWhitelisted(a) => GreyOutcome::AutoWhitelisted {
                until_ms: a.until_ms,
            },
            W::Blacklisted(b) => GreyOutcome::Blacklisted {
                until_ms: b.until_ms,
                listed_now: b.listed_now.then_some((b.total, b.failed)),
            },
            W::Deferred(d) => GreyOutcome::Deferred {
                first_seen_ms: d.first_seen_ms,
                passes_at_ms: d.passes_at_ms,
                tries: d.tries,
            },
            W::Passed(p) => GreyOutcome::Passed {
                first_seen_ms: p.first_seen_ms,
                training: p.training,
                auto_whitelisted_until_ms: p.auto_whitelisted_until_ms,
            },
        };
        Ok(GreylistReply {
            outcome,
            now_ms: r.now_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let op = GreylistOp {
            network: "SenderIP:192.0.2.0/24".into(),
            triplet: "a@x\nb@y".into(),
            params: GreyParams {
                period_ms: 240_000,
                auth_validity_ms: 1,
                unauth_validity_ms: 2,
                awl: Some(AutoList {
                    period_ms: 3,
                    count: 4,
                    percentage: 5,
                }),
                abl: None,
                training: true,
            },
            dry_run: true,
        };
        assert_eq!(GreylistOp::try_from(v1::GreylistRequest::from(&op)), Ok(op));
        for outcome in [
            GreyOutcome::AutoWhitelisted { until_ms: 9 },
            GreyOutcome::Blacklisted {
                until_ms: 9,
                listed_now: Some((3, 2)),
            },
            GreyOutcome::Deferred {
                first_seen_ms: 1,
                passes_at_ms: 2,
                tries: 3,
            },
            GreyOutcome::Passed {
                first_seen_ms: 1,
                training: false,
                auto_whitelisted_until_ms: Some(7),
            },
        ] {
            let r = GreylistReply { outcome, now_ms: 5 };
            assert_eq!(GreylistReply::try_from(v1::GreylistReply::from(&r)), Ok(r));
        }
        let mut bad = v1::GreylistRequest {
            network: "n".into(),
            triplet: "no newline".into(),
            ..Default::default()
        };
        assert!(GreylistOp::try_from(bad.clone()).is_err());
        bad.triplet = "a\nb".into();
        bad.auto_blacklist = Some(v1::AutoList {
            period_ms: 1,
            count: 1,
            percentage: 101,
        });
        assert!(GreylistOp::try_from(bad).is_err());
    }
}
