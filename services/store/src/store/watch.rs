//! Change notification: a background task polls the version counter.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::Store;
use crate::StoreError;

/// A sensible polling interval: changes are seen within a quarter of a second.
pub const DEFAULT_POLL: Duration = Duration::from_millis(250);

impl Store {
    /// Watches the version counter: returns a receiver holding the current version, which
    /// changes whenever the policy tables do (also for changes made directly in SQL).
    ///
    /// A background task on the current tokio runtime polls every `poll`. It survives a
    /// failing database (logs a warning and tries again at the next tick) and ends when every
    /// receiver is dropped. To stay current: mark the version seen, then [`Store::load`], and
    /// load again on each `changed()`; a change between the two only causes one extra load.
    ///
    /// Fails only if the first read of the version fails.
    pub async fn watch(&self, poll: Duration) -> Result<watch::Receiver<i64>, StoreError> {
        let initial = self.version().await?;
        let (tx, rx) = watch::channel(initial);
        let store = self.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(poll);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker.tick().await; // the first tick is immediate
            let mut failing = false;
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    _ = ticker.tick() => {}
                }
                match store.version().await {
                    Ok(version) => {
                        if failing {
                            tracing::info!(version, "Policy database reachable again.");
                            failing = false;
                        }
                        tx.send_if_modified(|current| {
                            let changed = *current != version;
                            *current = version;
                            changed
                        });
                    }
                    Err(error) => {
                        tracing::warn!(
                            %error,
                            kind = error.kind_label(),
                            "Cannot read the policy version; keeping the current policies and retrying."
                        );
                        failing = true;
                    }
                }
            }
        });
        Ok(rx)
    }
}
