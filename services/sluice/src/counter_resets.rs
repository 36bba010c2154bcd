//! Counter resets reach the edges: an edge follows the `counter_resets` table of the policy
//! database (written by the admin service with each reset's audit entry; PostgreSQL's
//! `sluice_counter_reset` notification, polled every `reload_poll_ms` as a safety net) and
//! forgets what it holds locally for each reset counter: its over-limit memo entry and its
//! lease ([`RemoteState::forget_counter`]). Its next request for that counter asks the
//! quota service, which counts from zero after the reset.
//!
//! A call already on its way when the reset is applied may bring back a refusal or a lease
//! from before the reset; the counter is therefore forgotten a second time once such a
//! call has surely ended (its deadline, `quota_deadline_ms`, plus a margin).

use sluice_remote::RemoteState;
use sluice_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Longest wait between attempts to start following the resets.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Added to the quota deadline before a reset counter is forgotten the second time.
const MARGIN: Duration = Duration::from_millis(100);

/// Follows the resets recorded from now on, forgetting each counter on `remote`, until the
/// process ends. `poll`: the safety-net interval; `deadline`: the quota calls' deadline.
pub async fn follow(store: Store, remote: Arc<RemoteState>, poll: Duration, deadline: Duration) {
    let mut backoff = poll;
    let mut rx = loop {
        match store.follow_counter_resets(poll).await {
            Ok(rx) => break rx,
            Err(error) => {
                sluice_runtime::warn_limited!(
                    %error,
                    "Cannot read the counter resets of the policy database (does this edge's database role have SELECT on counter_resets?); retrying. Meanwhile a reset made in the admin service reaches this edge only when its local memo and lease end (at most 5 s and one sub-bucket)"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    };
    while let Some(reset) = rx.recv().await {
        let held = remote.forget_counter(&reset.key);
        tracing::info!(
            key = %reset.key,
            id = reset.id,
            held,
            "A counter was reset by the admin service; forgot its local over-limit memo and lease"
        );
        let remote = remote.clone();
        tokio::spawn(async move {
            tokio::time::sleep(deadline + MARGIN).await;
            remote.forget_counter(&reset.key);
        });
    }
}
