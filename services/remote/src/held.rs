//! DELAY quotas' ledger of held messages through the quota service
//! ([`sluice_engine::hold::HeldMessages`] on a [`RemoteState`]): an edge records the
//! messages Postfix is about to hold (`Hold`), the admin role lists them, acts on them and
//! answers the release agents (`ListHeld`, `ActHeld`, `SyncHeld`). The quota services keep
//! the ledger in Redis. Calls go like the live-counter calls (one endpoint, another only
//! when the first surely never got the call, [`crate::live::LIVE_DEADLINE`] at most); an
//! edge bounds a hold by its request's deadline on top.

use crate::live::with_deadline;
use crate::state::RemoteState;
use sluice_engine::hold::{
    HeldMessage, HeldMessages, HeldState, HoldError, HoldOutcome, HoldRequest, QueuedMessage,
    SyncAnswer,
};
use sluice_engine::state::BoxFuture;
use sluice_engine::StateError;
use sluice_proto::held as wire;
use sluice_proto::ConvertError;

fn unreadable(e: ConvertError) -> HoldError {
    HoldError::Store(format!("the quota service's answer: {e}"))
}

/// A failed call as a ledger error: the quota service's own answer where it gave one.
fn failed(e: StateError) -> HoldError {
    HoldError::Store(format!("the quota service: {e}"))
}

impl RemoteState {
    /// A held-message call; a status the quota service answered becomes its ledger error.
    async fn held_call<T, F, Fut>(&self, f: F) -> Result<T, HoldError>
    where
        F: Fn(crate::batch::QuotaRpc) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let answered = std::sync::Mutex::new(None);
        let result = self
            .live_call(|c| {
                let call = f(c);
                let answered = &answered;
                async move {
                    let r = call.await;
                    if let Err(status) = &r {
                        *crate::lock(answered) = Some(wire::hold_error_from_status(status));
                    }
                    r
                }
            })
            .await;
        match result {
            Ok(reply) => Ok(reply),
            Err(e) => Err(crate::lock(&answered).take().unwrap_or_else(|| failed(e))),
        }
    }

    fn act_on(&self, id: u64, to: HeldState) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        Box::pin(async move {
            let message = wire::act_to_wire(id, to);
            let reply = self
                .held_call(|mut c| {
                    let message = message.clone();
                    async move { c.act_held(with_deadline(message)).await }
                })
                .await?;
            wire::acted_from_wire(reply).map_err(unreadable)
        })
    }
}

impl HeldMessages for RemoteState {
    fn hold(&self, request: HoldRequest) -> BoxFuture<'_, Result<HoldOutcome, HoldError>> {
        Box::pin(async move {
            let message = wire::hold_to_wire(&request);
            let reply = self
                .held_call(|mut c| {
                    let message = message.clone();
                    async move { c.hold(with_deadline(message)).await }
                })
                .await?;
            Ok(wire::outcome_from_wire(reply))
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<HeldMessage>, HoldError>> {
        Box::pin(async move {
            let reply = self
                .held_call(|mut c| async move {
                    c.list_held(with_deadline(sluice_proto::v1::ListHeldRequest {}))
                        .await
                })
                .await?;
            wire::messages_from_wire(reply).map_err(unreadable)
        })
    }

    fn sync<'a>(
        &'a self,
        mta: &'a str,
        queue: &'a [QueuedMessage],
    ) -> BoxFuture<'a, Result<SyncAnswer, HoldError>> {
        Box::pin(async move {
            let message = wire::sync_to_wire(mta, queue);
            let reply = self
                .held_call(|mut c| {
                    let message = message.clone();
                    async move { c.sync_held(with_deadline(message)).await }
                })
                .await?;
            wire::answer_from_wire(reply).map_err(unreadable)
        })
    }

    fn release_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        self.act_on(id, HeldState::Releasing)
    }

    fn return_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        self.act_on(id, HeldState::Returning)
    }

    fn delete(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        self.act_on(id, HeldState::Deleting)
    }

    fn waiting_queues(&self) -> BoxFuture<'_, Result<Vec<String>, HoldError>> {
        Box::pin(async move {
            let reply = self
                .held_call(|mut c| async move {
                    c.waiting_held(with_deadline(sluice_proto::v1::ListHeldRequest {}))
                        .await
                })
                .await?;
            Ok(reply.queues)
        })
    }
}
