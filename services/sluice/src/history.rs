//! The refusal history and sender counts of `serve` and `edge` (docs/admin.md, "History"):
//! the settings, the background writer that takes what the request path left in the
//! [`sluice_edge::history_sink`] and stores it in batches (every second, or 500 refusals),
//! and the pruner that deletes rows older than the retention in batches. Nothing here runs
//! on the request path.

use crate::config::Role;
use crate::role_args::{AlertSettings, HistorySettings};
use sluice_edge::history_sink::{self, HistoryReceiver, RefusalRecord};
use sluice_runtime::metrics::names;
use sluice_runtime::warn_limited;
use sluice_store::{Refusal, SenderCount, Store};
use std::future::Future;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Refusals written in one batch at most.
const BATCH: usize = 500;
/// How often waiting refusals and finished minutes of sender counts are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest one write may take before the batch is given up (and counted as failed).
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Rows deleted per statement when pruning.
const PRUNE_BATCH: u32 = 1000;
/// Senders kept per minute by each process (see [`history_sink::TopSenders`]).
pub const TOP_CAPACITY: usize = 1000;

/// The history settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// Whether refusals and sender counts are recorded.
    pub enabled: bool,
    /// How long rows are kept.
    pub retention: Duration,
    /// Refusals waiting to be written, at most.
    pub queue: usize,
    /// The alert webhook, if any.
    pub alert_webhook: Option<String>,
    /// The CA certificates an https webhook is verified against (`None`: the system's).
    pub alert_webhook_ca_file: Option<std::path::PathBuf>,
    /// Per-key alert cooldown.
    pub alert_cooldown: Duration,
}

impl HistoryConfig {
    /// Defaults applied to `a` for `role`, every problem pushed to `errors`. History is on
    /// by default in `serve` and off in `edge` (an edge's database role is read-only unless
    /// granted the history tables, docs/cluster.md).
    pub fn build(
        a: &HistorySettings,
        alerts: &AlertSettings,
        role: Role,
        errors: &mut Vec<String>,
    ) -> Self {
        let mut ranged = |key: &str, value: u64, min: u64, max: u64| {
            if !(min..=max).contains(&value) {
                errors.push(format!("{key} = {value}: must be from {min} to {max}"));
            }
            value.clamp(min, max)
        };
        let retention = ranged(
            "history_retention_secs",
            a.history_retention_secs.unwrap_or(7 * 86_400),
            1,
            365 * 86_400,
        );
        let queue = ranged(
            "history_queue",
            a.history_queue.map_or(10_000, |q| q as u64),
            1,
            1_000_000,
        );
        let cooldown = ranged(
            "alert_cooldown_secs",
            alerts.alert_cooldown_secs.unwrap_or(3600),
            1,
            30 * 86_400,
        );
        let alert_webhook = alerts
            .alert_webhook
            .clone()
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty());
        if let Some(url) = &alert_webhook {
            if let Err(e) = crate::alerts::check_url(url) {
                errors.push(format!("alert_webhook {url:?}: {e}"));
            }
        }
        // Empty (as --check-config prints an unset one): unset.
        let alert_webhook_ca_file = alerts
            .alert_webhook_ca_file
            .clone()
            .filter(|p| !p.as_os_str().is_empty());
        if let Some(path) = &alert_webhook_ca_file {
            if !alert_webhook
                .as_deref()
                .is_some_and(|u| u.starts_with("https://"))
            {
                errors.push(
                    "alert_webhook_ca_file is set but alert_webhook is not an https:// URL: remove it, or give the https URL".into(),
                );
            } else if let Err(e) = crate::alerts::read_ca_file(path) {
                errors.push(format!("alert_webhook_ca_file: {e}"));
            }
        }
        HistoryConfig {
            enabled: a.history.unwrap_or(role == Role::Serve),
            retention: Duration::from_secs(retention),
            queue: queue as usize,
            alert_webhook,
            alert_webhook_ca_file,
            alert_cooldown: Duration::from_secs(cooldown),
        }
    }

    /// The settings as `--check-config` prints them.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        vec![
            ("history", self.enabled.to_string()),
            (
                "history_retention_secs",
                self.retention.as_secs().to_string(),
            ),
            ("history_queue", self.queue.to_string()),
            (
                "alert_webhook",
                format!("{:?}", self.alert_webhook.as_deref().unwrap_or("")),
            ),
            (
                "alert_webhook_ca_file",
                format!(
                    "{:?}",
                    self.alert_webhook_ca_file
                        .as_deref()
                        .map_or(String::new(), |p| p.display().to_string())
                ),
            ),
            (
                "alert_cooldown_secs",
                self.alert_cooldown.as_secs().to_string(),
            ),
        ]
    }
}

/// The background tasks of the history; [`Running::finish`] writes what is left.
#[derive(Debug)]
pub struct Running {
    writer: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Stops the writer once requests have drained, and waits (at most the write deadline)
    /// for its last batch.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(WRITE_DEADLINE + Duration::from_secs(1), self.writer).await;
    }
}

/// Starts the alerts when `alert_webhook` is set (serve, edge, admin), until `stopped`
/// resolves: the process sends them while it holds the alert lock ([`crate::alerts`]).
pub fn start_alerts(
    config: &HistoryConfig,
    store: &Store,
    stopped: impl Future<Output = ()> + Send + 'static,
) {
    let Some(url) = &config.alert_webhook else {
        return;
    };
    // The CA file was read when the settings were checked: an error now is a file changed
    // since, logged.
    match crate::alerts::agent(config.alert_webhook_ca_file.as_deref()) {
        Ok(agent) => crate::alerts::spawn(
            store.clone(),
            url.clone(),
            agent,
            config.alert_cooldown,
            stopped,
        ),
        Err(e) => {
            tracing::error!(error = %e, "Alerts are off: alert_webhook_ca_file cannot be used")
        }
    }
}

/// Starts the history (when enabled) on `store`: installs the sink the edge writes into,
/// the writer (which stops after a last write at [`Running::finish`]), the pruner and,
/// with `alert_webhook`, the alerts (both until `stopped` resolves).
pub fn start<F>(config: &HistoryConfig, store: &Store, stopped: impl Fn() -> F) -> Option<Running>
where
    F: Future<Output = ()> + Send + 'static,
{
    start_alerts(config, store, stopped());
    if !config.enabled {
        return None;
    }
    let receiver = history_sink::install(config.queue, TOP_CAPACITY)?;
    for result in ["written", "failed"] {
        metrics::counter!(names::HISTORY_RECORDS, "result" => result).increment(0);
    }
    metrics::counter!(names::HISTORY_PRUNED).increment(0);
    let node = node_name();
    tokio::spawn(prune(store.clone(), config.retention, stopped()));
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(write(store.clone(), receiver, node, async move {
        let _ = stop_rx.await;
    }));
    Some(Running { writer, stop })
}

/// This process's name in the rows it writes: the host name (empty if unknown).
pub(crate) fn node_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// Writes refusals every [`FLUSH_EVERY`] or [`BATCH`] records, and finished minutes of
/// sender counts every [`FLUSH_EVERY`]; after `stopped`, writes what is left (the current
/// minute's counts too) and ends.
async fn write(
    store: Store,
    mut rx: HistoryReceiver,
    node: String,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch: Vec<RefusalRecord> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.queue.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    break;
                }
                if batch.len() >= BATCH {
                    write_refusals(&store, &node, &mut batch).await;
                }
            }
            _ = tick.tick() => {
                write_refusals(&store, &node, &mut batch).await;
                write_counts(&store, &node, &rx, false).await;
            }
            () = &mut stopped => break,
        }
    }
    while let Ok(r) = rx.queue.try_recv() {
        batch.push(r);
        if batch.len() >= BATCH {
            write_refusals(&store, &node, &mut batch).await;
        }
    }
    write_refusals(&store, &node, &mut batch).await;
    write_counts(&store, &node, &rx, true).await;
}

async fn write_refusals(store: &Store, node: &str, batch: &mut Vec<RefusalRecord>) {
    if batch.is_empty() {
        return;
    }
    let rows: Vec<Refusal> = batch
        .drain(..)
        .map(|r| Refusal {
            at_ms: r.at_ms,
            node: node.to_string(),
            client: r.client,
            helo: r.helo,
            sender: r.sender,
            recipient: r.recipient,
            sasl_user: r.sasl_user,
            policy: r.policy,
            module: r.module,
            action: r.action,
            text: r.text,
        })
        .collect();
    let n = rows.len() as u64;
    let result = match tokio::time::timeout(WRITE_DEADLINE, store.insert_refusals(&rows)).await {
        Ok(Ok(())) => "written",
        Ok(Err(e)) => {
            warn_limited!(error = %e, refusals = n, "Cannot write refusals to the history; they are lost (an edge's database role needs INSERT on refusal_history, see docs/cluster.md)");
            "failed"
        }
        Err(_) => {
            warn_limited!(
                refusals = n,
                "Writing refusals to the history took too long; they are lost"
            );
            "failed"
        }
    };
    metrics::counter!(names::HISTORY_RECORDS, "result" => result).increment(n);
}

async fn write_counts(store: &Store, node: &str, rx: &HistoryReceiver, all: bool) {
    let minutes = match rx.top.lock() {
        Ok(mut top) => top.take(history_sink::now_ms(), all),
        Err(_) => return,
    };
    let rows: Vec<SenderCount> = minutes
        .into_iter()
        .flat_map(|(minute_ms, senders)| {
            senders.into_iter().map(move |(sender, c)| SenderCount {
                minute_ms,
                node: node.to_string(),
                sender,
                requests: i64::try_from(c.requests).unwrap_or(i64::MAX),
                refusals: i64::try_from(c.refusals).unwrap_or(i64::MAX),
            })
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    match tokio::time::timeout(WRITE_DEADLINE, store.insert_sender_counts(&rows)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn_limited!(error = %e, "Cannot write sender counts; they are lost (an edge's database role needs INSERT on sender_counts, see docs/cluster.md)")
        }
        Err(_) => warn_limited!("Writing sender counts took too long; they are lost"),
    }
}

/// How often rows past the retention are deleted: every minute, or every half retention
/// when that is shorter (at least every second).
fn prune_interval(retention: Duration) -> Duration {
    (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

/// Deletes rows older than `retention` in batches of [`PRUNE_BATCH`], until `stopped`.
async fn prune(store: Store, retention: Duration, stopped: impl Future<Output = ()>) {
    let mut stopped = std::pin::pin!(stopped);
    let mut tick = tokio::time::interval(prune_interval(retention));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stopped => return,
        }
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = history_sink::now_ms().saturating_sub(retention_ms);
        loop {
            let pruned =
                tokio::time::timeout(WRITE_DEADLINE, store.prune_history(cutoff, PRUNE_BATCH))
                    .await;
            match pruned {
                Ok(Ok(n)) => {
                    metrics::counter!(names::HISTORY_PRUNED).increment(n);
                    if n < u64::from(PRUNE_BATCH) {
                        break;
                    }
                }
                Ok(Err(e)) => {
                    warn_limited!(error = %e, "Cannot prune the history (an edge's database role needs DELETE on refusal_history and sender_counts, see docs/cluster.md)");
                    break;
                }
                Err(_) => {
                    warn_limited!("Pruning the history took too long; trying again later");
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_ranges() {
        let mut errors = Vec::new();
        let none = AlertSettings::default();
        let c = HistoryConfig::build(&HistorySettings::default(), &none, Role::Serve, &mut errors);
        assert!(errors.is_empty());
        assert!(c.enabled);
        let edge =
            HistoryConfig::build(&HistorySettings::default(), &none, Role::Edge, &mut errors);
        assert!(!edge.enabled, "off on edges unless configured");
        assert_eq!(c.retention, Duration::from_secs(604_800));
        assert_eq!(c.alert_webhook, None);
        let bad = HistorySettings {
            history_retention_secs: Some(0),
            history_queue: Some(0),
            ..HistorySettings::default()
        };
        let bad_alerts = AlertSettings {
            alert_cooldown_secs: Some(40 * 86_400),
            alert_webhook: Some("ftp://x".into()),
            ..AlertSettings::default()
        };
        HistoryConfig::build(&bad, &bad_alerts, Role::Serve, &mut errors);
        assert_eq!(errors.len(), 4, "{errors:?}");
        assert!(errors[0].contains("history_retention_secs"));
    }

    #[test]
    fn pruning_runs_at_least_twice_per_retention() {
        assert_eq!(
            prune_interval(Duration::from_secs(2)),
            Duration::from_secs(1)
        );
        assert_eq!(
            prune_interval(Duration::from_secs(604_800)),
            Duration::from_secs(60)
        );
    }
}
