//! The held-message calls (`Hold`, `ListHeld`, `SyncHeld`, `ActHeld`, `WaitingHeld`): DELAY quotas' ledger,
//! kept by this quota service in its Redis ([`SharedHeld`], shared with the other quota
//! services through Redis). Without a ledger they answer `UNIMPLEMENTED`.
//!
//! Each call is bounded by its caller's deadline (at most [`HELD_TIMEOUT`]); the ledger's
//! task finishes a command it began even when the caller has gone (a hold recorded for a
//! caller that gave up is forgotten by the ledger's own rules: its message never shows in
//! a hold queue).

use sluice_engine::hold::{HoldError, SharedHeld};
use sluice_proto::held as wire;
use sluice_proto::v1::{
    ActHeldRequest, HeldMessagesReply, HoldReply, HoldRequest, ListHeldRequest, SyncHeldReply,
    SyncHeldRequest, WaitingHeldReply,
};
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::{Request, Response, Status};

/// The longest a held-message call runs (an agent's sync charges what has room).
pub const HELD_TIMEOUT: Duration = Duration::from_secs(10);

/// The ledger, or `UNIMPLEMENTED`.
fn ledger(held: &Option<SharedHeld>) -> Result<&SharedHeld, Status> {
    held.as_ref()
        .ok_or_else(|| Status::unimplemented("this quota service keeps no ledger of held messages"))
}

/// `call` bounded by `deadline`, its error as a status (and logged).
async fn bounded<T>(
    what: &'static str,
    deadline: Instant,
    call: impl Future<Output = Result<T, HoldError>>,
) -> Result<T, Status> {
    let left = deadline.saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => {
            if !matches!(e, HoldError::NotFound(_)) {
                sluice_runtime::warn_limited!(error = %e, call = what, "A held-message call failed.");
            }
            Err(wire::status_from_hold_error(&e))
        }
        Err(_) => Err(Status::deadline_exceeded(format!(
            "{what}: the held-message ledger did not answer in time"
        ))),
    }
}

fn invalid(e: sluice_proto::ConvertError) -> Status {
    Status::invalid_argument(e.to_string())
}

/// `Hold`.
pub(crate) async fn hold(
    held: &Option<SharedHeld>,
    deadline: Instant,
    request: Request<HoldRequest>,
) -> Result<Response<HoldReply>, Status> {
    let ledger = ledger(held)?;
    let request = wire::hold_from_wire(request.into_inner()).map_err(invalid)?;
    let outcome = bounded("Hold", deadline, ledger.hold(request)).await?;
    Ok(Response::new(wire::outcome_to_wire(outcome)))
}

/// `ListHeld`.
pub(crate) async fn list(
    held: &Option<SharedHeld>,
    deadline: Instant,
    _request: Request<ListHeldRequest>,
) -> Result<Response<HeldMessagesReply>, Status> {
    let ledger = ledger(held)?;
    let messages = bounded("ListHeld", deadline, ledger.list()).await?;
    Ok(Response::new(wire::messages_to_wire(&messages)))
}

/// `SyncHeld`.
pub(crate) async fn sync(
    held: &Option<SharedHeld>,
    deadline: Instant,
    request: Request<SyncHeldRequest>,
) -> Result<Response<SyncHeldReply>, Status> {
    let ledger = ledger(held)?;
    let (mta, queue) = wire::sync_from_wire(request.into_inner()).map_err(invalid)?;
    let answer = bounded("SyncHeld", deadline, ledger.sync(&mta, &queue)).await?;
    Ok(Response::new(wire::answer_to_wire(&answer)))
}

/// `ActHeld`.
pub(crate) async fn act(
    held: &Option<SharedHeld>,
    deadline: Instant,
    request: Request<ActHeldRequest>,
) -> Result<Response<HeldMessagesReply>, Status> {
    use sluice_engine::hold::HeldState;
    let ledger = ledger(held)?;
    let (id, to) = wire::act_from_wire(request.get_ref()).map_err(invalid)?;
    let acted = match to {
        HeldState::Releasing => ledger.release_now(id),
        HeldState::Returning => ledger.return_now(id),
        _ => ledger.delete(id),
    };
    let m = bounded("ActHeld", deadline, acted).await?;
    tracing::info!(id, action = %request.get_ref().action, queue_id = %m.request.queue_id, "An operator acted on a held message");
    Ok(Response::new(wire::messages_to_wire(std::slice::from_ref(
        &m,
    ))))
}

/// `WaitingHeld`.
pub(crate) async fn waiting(
    held: &Option<SharedHeld>,
    deadline: Instant,
    _request: Request<ListHeldRequest>,
) -> Result<Response<WaitingHeldReply>, Status> {
    let ledger = ledger(held)?;
    let queues = bounded("WaitingHeld", deadline, ledger.waiting_queues()).await?;
    Ok(Response::new(WaitingHeldReply { queues }))
}
