//! Conversions between the wire messages and the engine's batch types.
//!
//! Engine → wire never fails. Wire → engine validates what the engine relies on (every op
//! has a kind, windows are non-empty, every outcome is known) and fails with
//! [`ConvertError`] otherwise: a malformed peer must not reach the counter arithmetic.

use crate::v1;
use sluice_engine::bounds::check_redis_window;
use sluice_engine::state::EomResult;
use sluice_engine::window::WindowSpec;
use sluice_engine::{
    CounterBatch, CounterOp, CounterReply, DetailAnswer, EomRecord, LeaseReturn, OpDetail, OpKind,
    OpResult, Outcome, SessionData,
};

/// A wire message the engine types cannot represent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// An op without a kind.
    #[error("op {key:?} has no kind")]
    MissingKind {
        /// The op's key.
        key: String,
    },
    /// A window no valid setting produces: a zero period or bucket, a bucket wider than the
    /// period, a period above 366 days, or more sub-buckets than counters in Redis may have
    /// (`sluice_engine::bounds::check_redis_window`).
    #[error(
        "op {key:?} has an invalid window (period {period_ms} ms, bucket {bucket_ms} ms): {reason}"
    )]
    InvalidWindow {
        /// The op's key.
        key: String,
        /// The period sent.
        period_ms: u64,
        /// The bucket width sent.
        bucket_ms: u64,
        /// Why it is refused.
        reason: String,
    },
    /// An unknown or unspecified outcome.
    #[error("unknown outcome {0}")]
    UnknownOutcome(i32),
    /// A live-counter request out of range (`crate::counters`).
    #[error("invalid live-counter request: {0}")]
    Invalid(String),
    /// A greylisting op or reply out of range or incomplete.
    #[error("invalid greylisting message: {0}")]
    InvalidGreylist(String),
    /// A CheckHelo op or answer out of range.
    #[error("invalid checkhelo op: {0}")]
    InvalidHelo(String),
    /// A held-message call out of range or unreadable (`crate::held`).
    #[error("invalid held-message call: {0}")]
    InvalidHeld(String),
    /// An END-OF-MESSAGE result without its result.
    #[error("END-OF-MESSAGE result for {key:?} has no result")]
    MissingEomResult {
        /// The counter's key.
        key: String,
    },
}

impl From<&CounterBatch> for v1::ApplyRequest {
    fn from(b: &CounterBatch) -> Self {
        v1::ApplyRequest {
            instance: b.instance.clone(),
            dry_run: b.dry_run,
            groups: b
                .groups
                .iter()
                .map(|ops| v1::OpGroup {
                    ops: ops.iter().map(op_to_wire).collect(),
                })
                .collect(),
            end_of_message_size: b.end_of_message,
        }
    }
}

/// The wire form of one op (asking for no lease).
pub fn op_to_wire(op: &CounterOp) -> v1::Op {
    use v1::op::Kind;
    let kind = match &op.kind {
        OpKind::Take { cost } => Kind::Take(v1::Take { cost: *cost }),
        OpKind::TakeOncePerMessage => Kind::TakeOncePerMessage(v1::TakeOncePerMessage {}),
        OpKind::Check { cost } => Kind::Check(v1::Check { cost: *cost }),
        OpKind::RecordForEom { label, group } => Kind::RecordForEom(v1::RecordForEom {
            label: label.clone(),
            group: *group,
        }),
        OpKind::Greylist(grey) => Kind::Greylist(v1::GreylistRequest::from(&**grey)),
        OpKind::Helo(helo) => Kind::Helo(v1::HeloRequest::from(&**helo)),
    };
    v1::Op {
        key: op.key.clone(),
        limit: op.limit,
        period_ms: op.window.period_ms,
        bucket_ms: op.window.bucket_ms,
        kind: Some(kind),
        lease: 0,
    }
}

impl TryFrom<v1::ApplyRequest> for CounterBatch {
    type Error = ConvertError;

    fn try_from(r: v1::ApplyRequest) -> Result<Self, ConvertError> {
        Ok(CounterBatch {
            instance: r.instance,
            dry_run: r.dry_run,
            groups: r
                .groups
                .into_iter()
                .map(|g| g.ops.into_iter().map(op_from_wire).collect())
                .collect::<Result<_, _>>()?,
            end_of_message: r.end_of_message_size,
        })
    }
}

fn op_from_wire(op: v1::Op) -> Result<CounterOp, ConvertError> {
    use v1::op::Kind;
    if let Err(reason) = check_redis_window(op.period_ms, op.bucket_ms) {
        return Err(ConvertError::InvalidWindow {
            key: op.key,
            period_ms: op.period_ms,
            bucket_ms: op.bucket_ms,
            reason,
        });
    }
    let kind = match op.kind {
        Some(Kind::Take(t)) => OpKind::Take { cost: t.cost },
        Some(Kind::TakeOncePerMessage(_)) => OpKind::TakeOncePerMessage,
        Some(Kind::Check(c)) => OpKind::Check { cost: c.cost },
        Some(Kind::RecordForEom(r)) => OpKind::RecordForEom {
            label: r.label,
            group: r.group,
        },
        Some(Kind::Greylist(g)) => {
            let grey = sluice_engine::GreylistOp::try_from(g)?;
            if grey.network != op.key {
                return Err(ConvertError::InvalidGreylist(
                    "the op's key must be its network".into(),
                ));
            }
            OpKind::Greylist(Box::new(grey))
        }
        Some(Kind::Helo(h)) => {
            let helo = sluice_engine::HeloOp::try_from(h)?;
            if helo.address != op.key {
                return Err(ConvertError::InvalidHelo(
                    "the op's key must be its client address".into(),
                ));
            }
            OpKind::Helo(Box::new(helo))
        }
        None => return Err(ConvertError::MissingKind { key: op.key }),
    };
    Ok(CounterOp {
        key: op.key,
        limit: op.limit,
        window: WindowSpec {
            period_ms: op.period_ms,
            bucket_ms: op.bucket_ms,
        },
        kind,
    })
}

impl From<&CounterReply> for v1::ApplyReply {
    fn from(r: &CounterReply) -> Self {
        v1::ApplyReply {
            groups: r
                .groups
                .iter()
                .map(|g| v1::ResultGroup {
                    results: g.iter().map(result_to_wire).collect(),
                })
                .collect(),
            end_of_message: r
                .end_of_message
                .iter()
                .map(|e| v1::EomResult {
                    label: e.label.clone(),
                    key: e.key.clone(),
                    limit: e.limit,
                    result: Some(result_to_wire(&e.result)),
                })
                .collect(),
            session_found: false,
            details: r
                .details
                .iter()
                .map(|d| v1::OpDetail {
                    group: d.group,
                    index: d.index,
                    answer: Some(match &d.answer {
                        DetailAnswer::Greylist(g) => {
                            v1::op_detail::Answer::Greylist(v1::GreylistReply::from(g))
                        }
                        DetailAnswer::Helo(h) => {
                            v1::op_detail::Answer::Helo(v1::HeloReply::from(h))
                        }
                    }),
                })
                .collect(),
        }
    }
}

fn result_to_wire(r: &OpResult) -> v1::OpResult {
    let (outcome, retry_after_ms) = match r.outcome {
        Outcome::Admitted => (v1::Outcome::Admitted, None),
        Outcome::AlreadyCounted => (v1::Outcome::AlreadyCounted, None),
        Outcome::Refused { retry_after_ms } => (v1::Outcome::Refused, retry_after_ms),
        Outcome::NotEvaluated => (v1::Outcome::NotEvaluated, None),
    };
    v1::OpResult {
        outcome: outcome as i32,
        used: r.used,
        retry_after_ms,
        ..Default::default()
    }
}

impl TryFrom<v1::ApplyReply> for CounterReply {
    type Error = ConvertError;

    fn try_from(r: v1::ApplyReply) -> Result<Self, ConvertError> {
        Ok(CounterReply {
            groups: r
                .groups
                .into_iter()
                .map(|g| g.results.iter().map(result_from_wire).collect())
                .collect::<Result<_, _>>()?,
            end_of_message: r
                .end_of_message
                .into_iter()
                .map(|e| {
                    let result = match &e.result {
                        Some(r) => result_from_wire(r)?,
                        None => return Err(ConvertError::MissingEomResult { key: e.key }),
                    };
                    Ok(EomResult {
                        label: e.label,
                        key: e.key,
                        limit: e.limit,
                        result,
                    })
                })
                .collect::<Result<_, _>>()?,
            details: r
                .details
                .into_iter()
                .map(|d| {
                    let answer = match d.answer {
                        Some(v1::op_detail::Answer::Greylist(g)) => {
                            DetailAnswer::Greylist(sluice_engine::GreylistReply::try_from(g)?)
                        }
                        Some(v1::op_detail::Answer::Helo(h)) => {
                            DetailAnswer::Helo(sluice_engine::HeloReply::try_from(h)?)
                        }
                        None => {
                            return Err(ConvertError::InvalidGreylist(
                                "a detail without an answer".into(),
                            ))
                        }
                    };
                    Ok(OpDetail {
                        group: d.group,
                        index: d.index,
                        answer,
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

fn result_from_wire(r: &v1::OpResult) -> Result<OpResult, ConvertError> {
    let outcome = match v1::Outcome::try_from(r.outcome) {
        Ok(v1::Outcome::Admitted) => Outcome::Admitted,
        Ok(v1::Outcome::AlreadyCounted) => Outcome::AlreadyCounted,
        Ok(v1::Outcome::Refused) => Outcome::Refused {
            retry_after_ms: r.retry_after_ms,
        },
        Ok(v1::Outcome::NotEvaluated) => Outcome::NotEvaluated,
        Ok(v1::Outcome::Unspecified) | Err(_) => {
            return Err(ConvertError::UnknownOutcome(r.outcome))
        }
    };
    Ok(OpResult {
        outcome,
        used: r.used,
    })
}

fn window_from_wire(key: &str, period_ms: u64, bucket_ms: u64) -> Result<WindowSpec, ConvertError> {
    if let Err(reason) = check_redis_window(period_ms, bucket_ms) {
        return Err(ConvertError::InvalidWindow {
            key: key.to_string(),
            period_ms,
            bucket_ms,
            reason,
        });
    }
    Ok(WindowSpec {
        period_ms,
        bucket_ms,
    })
}

impl From<&LeaseReturn> for v1::LeaseReturn {
    fn from(r: &LeaseReturn) -> Self {
        v1::LeaseReturn {
            key: r.key.clone(),
            period_ms: r.window.period_ms,
            bucket_ms: r.window.bucket_ms,
            units: r.units,
            charged_at_ms: r.charged_at_ms,
        }
    }
}

impl TryFrom<v1::LeaseReturn> for LeaseReturn {
    type Error = ConvertError;

    fn try_from(r: v1::LeaseReturn) -> Result<Self, ConvertError> {
        Ok(LeaseReturn {
            window: window_from_wire(&r.key, r.period_ms, r.bucket_ms)?,
            key: r.key,
            units: r.units,
            charged_at_ms: r.charged_at_ms,
        })
    }
}

impl From<&EomRecord> for v1::EomRecord {
    fn from(r: &EomRecord) -> Self {
        v1::EomRecord {
            key: r.key.clone(),
            limit: r.limit,
            period_ms: r.window.period_ms,
            bucket_ms: r.window.bucket_ms,
            label: r.label.clone(),
            group: r.group,
        }
    }
}

impl TryFrom<v1::EomRecord> for EomRecord {
    type Error = ConvertError;

    fn try_from(r: v1::EomRecord) -> Result<Self, ConvertError> {
        Ok(EomRecord {
            window: window_from_wire(&r.key, r.period_ms, r.bucket_ms)?,
            key: r.key,
            limit: r.limit,
            label: r.label,
            group: r.group,
        })
    }
}

impl From<&SessionData> for v1::SessionData {
    fn from(s: &SessionData) -> Self {
        v1::SessionData {
            instance: s.instance.clone(),
            charged: s.charged.clone(),
            records: s.records.iter().map(v1::EomRecord::from).collect(),
        }
    }
}

impl TryFrom<v1::SessionData> for SessionData {
    type Error = ConvertError;

    fn try_from(s: v1::SessionData) -> Result<Self, ConvertError> {
        Ok(SessionData {
            instance: s.instance,
            charged: s.charged,
            records: s
                .records
                .into_iter()
                .map(EomRecord::try_from)
                .collect::<Result<_, _>>()?,
        })
    }
}

#[cfg(test)]
mod tests;
