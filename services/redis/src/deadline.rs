//! One deadline for all the Redis work of a batch.
//!
//! The quota service runs each batch within the budget its caller (an edge) has left, so
//! that the answer — admitted, refused or an error — reaches the edge before the edge gives
//! up. [`within`] sets that deadline for everything a batch does; every Redis call then ends
//! by the earlier of the deadline and its own timeout, and **a call is not started once
//! the deadline has passed** (the batch fails with a timeout and the edge answers its
//! fallback action). Charges already made stand unless refunded: refunds (and other
//! compensation) run [`unbounded`], under their own timeout only, so they are sent even
//! after the batch has given up.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

tokio::task_local! {
    static BATCH_DEADLINE: Option<Instant>;
}

/// Runs `work` with every Redis call bounded by `deadline` too.
pub(crate) async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    BATCH_DEADLINE.scope(Some(deadline), work).await
}

/// Runs `work` without the batch's deadline (each call bounded by its own timeout only):
/// for refunds, which must go out even after the batch gave up.
pub(crate) async fn unbounded<F: Future>(work: F) -> F::Output {
    BATCH_DEADLINE.scope(None, work).await
}

/// When a call started now with `timeout` must end: the earlier of the two bounds.
pub(crate) fn call_deadline(timeout: Duration) -> Instant {
    let own = Instant::now() + timeout;
    match BATCH_DEADLINE.try_with(|d| *d) {
        Ok(Some(batch)) => batch.min(own),
        _ => own,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_batch_deadline_bounds_calls_but_not_refunds() {
        let own = Duration::from_secs(5);
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(
            call_deadline(own) > soon,
            "no batch: the call's own timeout"
        );
        within(soon, async {
            assert_eq!(call_deadline(own), soon);
            unbounded(async { assert!(call_deadline(own) > soon) }).await;
        })
        .await;
    }
}
