//! Where END-OF-MESSAGE leaves a message a DELAY quota holds (`Decision::hold`): the
//! server's ledger ([`sluice_engine::hold::HeldMessages`]), written before Postfix is told
//! to hold it. Installed once per process ([`install`]); without a ledger (a server that
//! keeps none) the quota cannot hold, and the message is deferred instead.

use sluice_engine::engine::Decision;
use sluice_engine::hold::{HoldOutcome, SharedHeld};
use sluice_protocol::Action;
use std::sync::OnceLock;
use std::time::Duration;

static LEDGER: OnceLock<SharedHeld> = OnceLock::new();

/// Installs this process's ledger. False if one was installed already.
pub fn install(ledger: SharedHeld) -> bool {
    LEDGER.set(ledger).is_ok()
}

/// This process's ledger, if one was installed (for explanations).
pub fn installed() -> Option<SharedHeld> {
    LEDGER.get().cloned()
}

/// What a DELAY quota answers when the message cannot be held (no ledger, ledger full or
/// failing): Postfix keeps it and the client tries again later.
fn deferred(why: &str) -> Action {
    Action::Defer(Some(format!("4.7.1 {why}; try again later")))
}

/// Records `decision`'s held message within `limit`, and sets the answer: HOLD with the
/// message's place in its queue, or DEFER when it cannot be held.
pub(crate) async fn record(decision: &mut Decision, limit: Duration) {
    let Some(request) = decision.hold.take() else {
        return;
    };
    let quota = request.quota.clone();
    let Some(ledger) = LEDGER.get() else {
        metrics::counter!(sluice_runtime::metrics::names::HELD, "result" => "failed").increment(1);
        sluice_runtime::warn_limited!(
            %quota,
            "A DELAY quota cannot hold messages here: this server keeps no ledger of held \
             messages (sluice serve on PostgreSQL with in-process counters: use SQLite, or --redis); deferring"
        );
        decision.action = deferred(&format!("Quota {quota} is full"));
        return;
    };
    match tokio::time::timeout(limit, ledger.hold(*request)).await {
        Ok(Ok(HoldOutcome::Held { position })) => {
            decision.action = Action::Hold(Some(format!(
                "Delayed by quota {quota}: number {position} in line, released when the quota has room"
            )));
        }
        Ok(Ok(HoldOutcome::Full { max_held })) => {
            decision.action = deferred(&format!(
                "Quota {quota} is full and already holds {max_held} messages"
            ));
        }
        Ok(Err(e)) => {
            sluice_runtime::warn_limited!(%quota, error = %e, "Cannot record a held message; deferring");
            decision.action = deferred(&format!("Quota {quota} is full"));
        }
        Err(_) => {
            sluice_runtime::warn_limited!(%quota, "Recording a held message timed out; deferring");
            decision.action = deferred(&format!("Quota {quota} is full"));
        }
    }
}
