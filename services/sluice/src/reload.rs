//! Live policy reloads: the store's version counter is watched, and every change is loaded,
//! validated and swapped into the engine. An invalid or unreadable set keeps the last good
//! one serving.

use sluice_engine::{compile, Engine, PolicySet};
use sluice_runtime::metrics::{names, unix_now};
use sluice_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Loads and compiles the stored policy set, stamping it with `version`.
pub async fn load_set(store: &Store, version: i64) -> anyhow::Result<(PolicySet, usize)> {
    let def = store.load().await?;
    match compile(&def) {
        Ok(compiled) => {
            for w in &compiled.warnings {
                tracing::warn!(version, "Policy set: {}", w.message);
            }
            let mut set = compiled.set;
            set.version = version.max(0) as u64;
            Ok((set, compiled.warnings.len()))
        }
        Err(findings) => {
            let text: Vec<String> = findings.iter().map(ToString::to_string).collect();
            anyhow::bail!("the stored policy set is invalid:\n  {}", text.join("\n  "))
        }
    }
}

/// Sets the policy-set gauges after a successful load (at start or on reload).
pub fn record_loaded(set: &PolicySet) {
    let now = unix_now();
    metrics::gauge!(names::POLICY_SET_VERSION).set(set.version as f64);
    metrics::gauge!(names::POLICIES_ENABLED).set(set.enabled_policies() as f64);
    metrics::gauge!(names::POLICY_RELOAD_TIMESTAMP).set(now);
    metrics::gauge!(names::POLICY_CHECK_TIMESTAMP).set(now);
}

/// Keeps `engine` on the newest valid policy set. Runs until the process ends.
pub async fn watch(store: Store, engine: Arc<Engine>, poll: Duration, mut loaded: i64) {
    let mut rx = match store.watch(poll).await {
        Ok(rx) => rx,
        Err(e) => {
            tracing::error!(error = %e, "Cannot watch the policy database; policies will not reload");
            return;
        }
    };
    // At first only a version other than the one loaded at start needs a load; after that
    // every notification does (a replaced SQLite file may repeat a version number).
    let mut notified = false;
    loop {
        let version = *rx.borrow_and_update();
        if notified || version != loaded {
            match load_set(&store, version).await {
                Ok((set, warnings)) => {
                    let policies = set.enabled_policies();
                    record_loaded(&set);
                    engine.replace_policies(set);
                    loaded = version;
                    tracing::info!(version, policies, warnings, "Policies reloaded");
                }
                Err(e) => {
                    metrics::counter!(names::POLICY_RELOAD_FAILURES).increment(1);
                    tracing::error!(
                        version,
                        "Policy reload failed; still serving the last good set: {e:#}"
                    );
                    // The same broken version is not retried until it changes again.
                    loaded = version;
                }
            }
        }
        if rx.changed().await.is_err() {
            return;
        }
        notified = true;
    }
}
