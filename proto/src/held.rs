//! Conversions of the held-message calls (`Hold`, `ListHeld`, `SyncHeld`, `ActHeld`) to and
//! from [`sluice_engine::hold`]: the engine's types travel as JSON (see quota.proto), each
//! checked for size and range when received.

use crate::v1;
use crate::ConvertError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sluice_engine::hold::{
    HeldMessage, HeldState, HoldError, HoldOutcome, HoldRequest, QueuedMessage, SyncAnswer,
};
use tonic::Status;

/// Largest JSON body accepted in a `Hold` (a message's needs are a handful of counters).
pub const MAX_HOLD_JSON: usize = 64 * 1024;

/// Most messages one `SyncHeld` may list (an MTA's whole queue, hold and other queues).
pub const MAX_SYNC_QUEUE: usize = 1_000_000;

/// Longest queue ID, MTA or queue name accepted.
const MAX_NAME: usize = 256;

fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).expect("the engine's held-message types encode as JSON")
}

fn from_json<T: DeserializeOwned>(what: &str, json: &str) -> Result<T, ConvertError> {
    serde_json::from_str(json)
        .map_err(|e| ConvertError::InvalidHeld(format!("{what} cannot be read: {e}")))
}

fn check_name(what: &str, value: &str) -> Result<(), ConvertError> {
    if value.is_empty() || value.len() > MAX_NAME {
        return Err(ConvertError::InvalidHeld(format!(
            "{what} must have 1 to {MAX_NAME} characters"
        )));
    }
    Ok(())
}

/// A hold as sent.
pub fn hold_to_wire(request: &HoldRequest) -> v1::HoldRequest {
    v1::HoldRequest {
        request_json: to_json(request),
    }
}

/// A hold as received: its size, names, windows and settings checked.
pub fn hold_from_wire(message: v1::HoldRequest) -> Result<HoldRequest, ConvertError> {
    if message.request_json.len() > MAX_HOLD_JSON {
        return Err(ConvertError::InvalidHeld(format!(
            "a hold request is at most {MAX_HOLD_JSON} bytes"
        )));
    }
    let request: HoldRequest = from_json("the hold request", &message.request_json)?;
    check_name("mta", &request.mta)?;
    check_name("queue_id", &request.queue_id)?;
    if request.needs.is_empty() {
        return Err(ConvertError::InvalidHeld(
            "a held message needs at least one charge".into(),
        ));
    }
    for need in &request.needs {
        sluice_engine::bounds::check_redis_window(need.period_ms, need.bucket_ms).map_err(
            |reason| ConvertError::InvalidWindow {
                key: need.key.clone(),
                period_ms: need.period_ms,
                bucket_ms: need.bucket_ms,
                reason,
            },
        )?;
    }
    request
        .settings
        .check()
        .map_err(|e| ConvertError::InvalidHeld(format!("DELAY settings: {e}")))?;
    Ok(request)
}

/// A hold's outcome as sent.
pub fn outcome_to_wire(outcome: HoldOutcome) -> v1::HoldReply {
    match outcome {
        HoldOutcome::Held { position } => v1::HoldReply {
            full: false,
            position: position as u64,
            max_held: 0,
        },
        HoldOutcome::Full { max_held } => v1::HoldReply {
            full: true,
            position: 0,
            max_held,
        },
    }
}

/// A hold's outcome as received.
pub fn outcome_from_wire(reply: v1::HoldReply) -> HoldOutcome {
    if reply.full {
        HoldOutcome::Full {
            max_held: reply.max_held,
        }
    } else {
        HoldOutcome::Held {
            position: usize::try_from(reply.position).unwrap_or(usize::MAX),
        }
    }
}

/// Held messages as sent.
pub fn messages_to_wire(messages: &[HeldMessage]) -> v1::HeldMessagesReply {
    v1::HeldMessagesReply {
        messages_json: to_json(messages),
    }
}

/// Held messages as received.
pub fn messages_from_wire(reply: v1::HeldMessagesReply) -> Result<Vec<HeldMessage>, ConvertError> {
    from_json("the held messages", &reply.messages_json)
}

/// An agent's report as sent.
pub fn sync_to_wire(mta: &str, queue: &[QueuedMessage]) -> v1::SyncHeldRequest {
    v1::SyncHeldRequest {
        mta: mta.to_owned(),
        queue: queue
            .iter()
            .map(|q| v1::QueuedMessage {
                queue_id: q.queue_id.clone(),
                queue_name: q.queue_name.clone(),
            })
            .collect(),
    }
}

/// An agent's report as received: the MTA and the queue's size and names checked.
pub fn sync_from_wire(
    message: v1::SyncHeldRequest,
) -> Result<(String, Vec<QueuedMessage>), ConvertError> {
    check_name("mta", &message.mta)?;
    if message.queue.len() > MAX_SYNC_QUEUE {
        return Err(ConvertError::InvalidHeld(format!(
            "a queue report lists at most {MAX_SYNC_QUEUE} messages"
        )));
    }
    let mut queue = Vec::with_capacity(message.queue.len());
    for q in message.queue {
        check_name("queue_id", &q.queue_id)?;
        check_name("queue_name", &q.queue_name)?;
        queue.push(QueuedMessage {
            queue_id: q.queue_id,
            queue_name: q.queue_name,
        });
    }
    Ok((message.mta, queue))
}

/// A sync's answer as sent.
pub fn answer_to_wire(answer: &SyncAnswer) -> v1::SyncHeldReply {
    v1::SyncHeldReply {
        answer_json: to_json(answer),
    }
}

/// A sync's answer as received.
pub fn answer_from_wire(reply: v1::SyncHeldReply) -> Result<SyncAnswer, ConvertError> {
    from_json("the sync answer", &reply.answer_json)
}

/// An operator's action as sent: `to` is where the message goes (releasing, returning,
/// deleting).
pub fn act_to_wire(id: u64, to: HeldState) -> v1::ActHeldRequest {
    let action = match to {
        HeldState::Releasing => "release",
        HeldState::Returning => "return",
        HeldState::Deleting | HeldState::Held => "delete",
    };
    v1::ActHeldRequest {
        id,
        action: action.into(),
    }
}

/// An operator's action as received.
pub fn act_from_wire(message: &v1::ActHeldRequest) -> Result<(u64, HeldState), ConvertError> {
    let to = match message.action.as_str() {
        "release" => HeldState::Releasing,
        "return" => HeldState::Returning,
        "delete" => HeldState::Deleting,
        other => {
            return Err(ConvertError::InvalidHeld(format!(
                "unknown action {other:?} (release, return or delete)"
            )))
        }
    };
    Ok((message.id, to))
}

/// The one message an `ActHeld` answers with.
pub fn acted_from_wire(reply: v1::HeldMessagesReply) -> Result<HeldMessage, ConvertError> {
    messages_from_wire(reply)?
        .into_iter()
        .next()
        .ok_or_else(|| ConvertError::InvalidHeld("an action answered no message".into()))
}

/// A ledger error as a gRPC status.
pub fn status_from_hold_error(e: &HoldError) -> Status {
    match e {
        HoldError::NotFound(id) => Status::not_found(format!("no held message {id}")),
        HoldError::Unsupported(why) => Status::unimplemented(why.clone()),
        HoldError::Store(why) => Status::unavailable(why.clone()),
    }
}

/// A gRPC status of a held-message call as a ledger error.
pub fn hold_error_from_status(status: &Status) -> HoldError {
    match status.code() {
        tonic::Code::NotFound => {
            let id = status
                .message()
                .rsplit(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            HoldError::NotFound(id)
        }
        tonic::Code::Unimplemented => HoldError::Unsupported(status.message().to_owned()),
        _ => HoldError::Store(format!("the quota service: {}", status.message())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::hold::{DelaySettings, Need};

    fn request() -> HoldRequest {
        HoldRequest {
            mta: "127.0.0.1".into(),
            queue_id: "4F2A1".into(),
            sender: "a@example.org".into(),
            policy: "p".into(),
            quota: "q".into(),
            track: "Sender:a@example.org".into(),
            needs: vec![Need {
                key: "p/q/MessageCount/Sender:a@example.org".into(),
                limit: 5,
                period_ms: 10_000,
                bucket_ms: 1_000,
                cost: 1,
                per_recipient: false,
            }],
            recipients: 1,
            size: 100,
            settings: DelaySettings::default(),
        }
    }

    #[test]
    fn a_hold_crosses_the_wire_unchanged_and_bad_ones_are_refused() {
        let r = request();
        assert_eq!(hold_from_wire(hold_to_wire(&r)).unwrap(), r);
        let mut bad = request();
        bad.needs[0].bucket_ms = 0;
        assert!(hold_from_wire(hold_to_wire(&bad)).is_err());
        let mut bad = request();
        bad.queue_id = String::new();
        assert!(hold_from_wire(hold_to_wire(&bad)).is_err());
        let mut bad = request();
        bad.needs.clear();
        assert!(hold_from_wire(hold_to_wire(&bad)).is_err());
        let big = v1::HoldRequest {
            request_json: "x".repeat(MAX_HOLD_JSON + 1),
        };
        assert!(hold_from_wire(big).is_err());
        assert!(hold_from_wire(v1::HoldRequest {
            request_json: "{".into()
        })
        .is_err());
    }

    #[test]
    fn actions_and_errors_round_trip() {
        for to in [
            HeldState::Releasing,
            HeldState::Returning,
            HeldState::Deleting,
        ] {
            assert_eq!(act_from_wire(&act_to_wire(7, to)).unwrap(), (7, to));
        }
        assert!(act_from_wire(&v1::ActHeldRequest {
            id: 1,
            action: "explode".into()
        })
        .is_err());
        for e in [HoldError::NotFound(42), HoldError::Unsupported("no".into())] {
            assert_eq!(hold_error_from_status(&status_from_hold_error(&e)), e);
        }
        assert!(matches!(
            hold_error_from_status(&status_from_hold_error(&HoldError::Store("x".into()))),
            HoldError::Store(_)
        ));
        for o in [
            HoldOutcome::Held { position: 3 },
            HoldOutcome::Full { max_held: 9 },
        ] {
            assert_eq!(outcome_from_wire(outcome_to_wire(o)), o);
        }
    }
}
