//! Live counters through the quota service ([`sluice_engine::LiveCounters`] on a
//! [`RemoteState`]): the admin role (`sluice admin`) reads and resets the counters with the
//! quota service's `CounterLevels`, `ListCounters` and `ResetCounter`, over the same
//! endpoints, TLS and token as an edge's batches. Each call has its own deadline
//! ([`LIVE_DEADLINE`]) and goes to one healthy endpoint; a call that surely never reached
//! it (a refused connection) is tried once more on another.

use crate::batch::QuotaRpc;
use crate::error::{is_transport_failure, never_sent, state_error_from_status};
use crate::state::RemoteState;
use sluice_engine::counters::{CounterInfo, CounterQuery, Listing, LiveCounters};
use sluice_engine::state::BoxFuture;
use sluice_engine::StateError;
use sluice_proto::counters as wire;
use sluice_proto::v1;
use std::future::Future;
use std::time::Duration;
use tonic::{Response, Status};

/// The longest a live-counter call waits for its answer (a listing reads many counters).
pub const LIVE_DEADLINE: Duration = Duration::from_secs(5);

impl RemoteState {
    /// One live-counter call (`f` with a client), on one endpoint, retried on another only
    /// when it surely was never sent.
    pub(crate) async fn live_call<T, F, Fut>(&self, f: F) -> Result<T, StateError>
    where
        F: Fn(QuotaRpc) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let pool = &self.inner.pool;
        let run = async {
            let mut exclude = None;
            let mut last = None;
            for _ in 0..2 {
                let Some(backend) = pool.pick(exclude) else {
                    break;
                };
                let _in_flight = backend.start_call();
                match f(backend.batcher().client()).await {
                    Ok(reply) => return Ok(reply.into_inner()),
                    Err(status) => {
                        if is_transport_failure(&status) {
                            backend.mark_down(status.message());
                        }
                        let again = never_sent(&status);
                        last = Some(state_error_from_status(&status));
                        if !again {
                            break;
                        }
                        exclude = Some(backend.addr);
                    }
                }
            }
            Err(last.unwrap_or_else(|| {
                StateError::Unavailable("no quota-service endpoint resolved".into())
            }))
        };
        tokio::time::timeout(LIVE_DEADLINE, run)
            .await
            .unwrap_or(Err(StateError::Timeout))
    }
}

pub(crate) fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(LIVE_DEADLINE);
    request
}

impl LiveCounters for RemoteState {
    fn levels<'a>(
        &'a self,
        keys: &'a [CounterQuery],
    ) -> BoxFuture<'a, Result<Vec<CounterInfo>, StateError>> {
        Box::pin(async move {
            let message = v1::CounterLevelsRequest {
                counters: keys.iter().map(wire::query_to_wire).collect(),
            };
            let reply = self
                .live_call(|mut c| {
                    let message = message.clone();
                    async move { c.counter_levels(with_deadline(message)).await }
                })
                .await?;
            Ok(reply
                .counters
                .into_iter()
                .map(wire::info_from_wire)
                .collect())
        })
    }

    fn list(
        &self,
        listing: Listing,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<CounterInfo>, StateError>> {
        Box::pin(async move {
            let message = wire::listing_to_wire(listing, max);
            let reply = self
                .live_call(|mut c| async move { c.list_counters(with_deadline(message)).await })
                .await?;
            Ok(reply
                .counters
                .into_iter()
                .map(wire::info_from_wire)
                .collect())
        })
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(async move {
            let message = v1::ResetCounterRequest {
                key: key.to_owned(),
            };
            let reply = self
                .live_call(|mut c| {
                    let message = message.clone();
                    async move { c.reset_counter(with_deadline(message)).await }
                })
                .await?;
            Ok(reply.counted)
        })
    }
}
