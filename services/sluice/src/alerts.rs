//! The alert webhook (docs/admin.md, "Alerts"): a JSON POST when a key — a sender or a
//! client address — is refused for the first time within the cooldown.
//!
//! Driven by the refusal history, not by the request path: the task reads the refusals
//! stored after the last one it saw (every second), so one process alerts on every
//! process's refusals. Exactly one process per database sends: the one holding the alert
//! lock (a PostgreSQL advisory lock, [`sluice_store::AlertLock`]); others configured with a
//! webhook stand by and take over within 5 s when it goes (alerting from then on). Each key alerts at
//! most once per `alert_cooldown_secs`. A POST has a deadline of 5 s (`https://`: rustls,
//! the receiver verified against `alert_webhook_ca_file` or the system's roots); a failed one (no
//! answer, or not 2xx) is retried after 0.5, 1, 2 and 4 s, then given up and counted in
//! `sluice_alerts_total{result="failed"}`. At most 8 POSTs are in flight; alerts beyond
//! that wait their turn in order.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use sluice_runtime::metrics::names;
use sluice_runtime::warn_limited;
use sluice_store::{AlertLock, RefusalRow, Store};
use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// How often new refusals are read.
const POLL: Duration = Duration::from_secs(1);
/// Refusals read at once.
const READ_BATCH: u32 = 1000;
/// Deadline of one POST.
const POST_DEADLINE: Duration = Duration::from_secs(5);
/// Waits before the retries of a failed POST.
pub const RETRY_AFTER: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
];
/// POSTs in flight at most.
const IN_FLIGHT: usize = 8;
/// How often a process without the alert lock tries to take it.
const LOCK_RETRY: Duration = Duration::from_secs(5);
/// Keys remembered at most (each for its cooldown): beyond that, new keys are not alerted
/// until old ones expire.
const MAX_KEYS: usize = 100_000;

/// Whether `url` can be a webhook: `http://host[:port]/path` or `https://...`.
pub fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    else {
        return Err("expected an http:// or https:// URL".into());
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err("the URL names no host".into());
    }
    Ok(())
}

/// The certificates of the PEM file `path` (at least one), or what is wrong with it.
pub fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// The ring provider, as every other TLS link of Sluice uses it (the workspace builds
/// rustls with ring only; rustls 0.23.48 marks the function deprecated for its lack of
/// post-quantum key exchange, and uses it itself as the ring default).
#[allow(deprecated)]
fn ring() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The HTTP client of the webhook: a deadline of [`POST_DEADLINE`] per POST and, for
/// `https://` URLs, rustls (ring) verifying the receiver against the certificates of
/// `ca_file`, or the system's root certificates without one.
pub fn agent(ca_file: Option<&Path>) -> Result<ureq::Agent, String> {
    let roots: Vec<ureq::tls::Certificate<'static>> = match ca_file {
        Some(path) => read_ca_file(path)?,
        None => rustls_native_certs::load_native_certs().certs,
    }
    .into_iter()
    .map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
    .collect();
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
        .unversioned_rustls_crypto_provider(ring())
        .build();
    Ok(ureq::Agent::config_builder()
        .timeout_global(Some(POST_DEADLINE))
        .http_status_as_error(false)
        .tls_config(tls)
        .build()
        .into())
}

/// Which keys alerted when (a key alerts again once its cooldown has passed).
#[derive(Debug)]
pub struct Cooldowns {
    cooldown: Duration,
    last: HashMap<(&'static str, String), Instant>,
}

impl Cooldowns {
    /// No key alerted yet.
    pub fn new(cooldown: Duration) -> Self {
        Cooldowns {
            cooldown,
            last: HashMap::new(),
        }
    }

    /// Whether the key (`kind`, `value`) alerts at `now`; if so it is remembered.
    pub fn admit(&mut self, kind: &'static str, value: &str, now: Instant) -> bool {
        let key = (kind, value.to_string());
        if let Some(at) = self.last.get(&key) {
            if now.duration_since(*at) < self.cooldown {
                return false;
            }
        }
        if self.last.len() >= MAX_KEYS {
            let cooldown = self.cooldown;
            self.last.retain(|_, at| now.duration_since(*at) < cooldown);
            if self.last.len() >= MAX_KEYS {
                return false;
            }
        }
        self.last.insert(key, now);
        true
    }
}

/// The JSON body of an alert for `row`, naming the keys it alerts for.
pub fn body(row: &RefusalRow, keys: &[(&str, &str)], cooldown: Duration) -> String {
    let r = &row.refusal;
    let keys: Vec<_> = keys
        .iter()
        .map(|(kind, value)| serde_json::json!({"kind": kind, "value": value}))
        .collect();
    serde_json::json!({
        "event": "first_refusal",
        "keys": keys,
        "cooldown_secs": cooldown.as_secs(),
        "refusal": {
            "id": row.id,
            "at_ms": r.at_ms,
            "node": r.node,
            "client_address": r.client,
            "helo_name": r.helo,
            "sender": r.sender,
            "recipient": r.recipient,
            "sasl_username": r.sasl_user,
            "policy": r.policy,
            "module": r.module,
            "action": r.action,
            "text": r.text,
        }
    })
    .to_string()
}

/// Starts the alert task on `store` until `stopped` resolves. Only refusals stored after
/// it starts are alerted.
pub fn spawn(
    store: Store,
    url: String,
    agent: ureq::Agent,
    cooldown: Duration,
    stopped: impl Future<Output = ()> + Send + 'static,
) {
    tokio::spawn(async move {
        tracing::info!(cooldown_secs = cooldown.as_secs(), "Alert webhook on");
        for result in ["sent", "failed", "suppressed"] {
            metrics::counter!(names::ALERTS, "result" => result).increment(0);
        }
        let mut stopped = std::pin::pin!(stopped);
        let url: Arc<str> = url.into();
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        let mut cooldowns = Cooldowns::new(cooldown);
        let mut last_id = None;
        let mut lock: Option<AlertLock> = None;
        let mut next_try = Instant::now();
        let mut standing_by = false;
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = &mut stopped => return,
            }
            // One sender per database: the one holding the alert lock.
            match &mut lock {
                Some(held) => {
                    if !held.still_held().await {
                        warn_limited!("Lost the alert lock (the database connection broke): alerts stop here until it is taken again");
                        lock = None;
                        continue;
                    }
                }
                None => {
                    if Instant::now() < next_try {
                        continue;
                    }
                    next_try = Instant::now() + LOCK_RETRY;
                    match store.try_alert_lock().await {
                        Ok(Some(held)) => {
                            tracing::info!("This process sends the alerts (it holds the alert lock); refusals stored from now on alert");
                            lock = Some(held);
                            last_id = None;
                            standing_by = false;
                        }
                        Ok(None) => {
                            if !standing_by {
                                tracing::info!("Another process sends the alerts (it holds the alert lock): this one stands by");
                                standing_by = true;
                            }
                            continue;
                        }
                        Err(e) => {
                            warn_limited!(error = %e, "Alerts cannot take the alert lock yet");
                            continue;
                        }
                    }
                }
            }
            let after = match last_id {
                Some(id) => id,
                None => match store.last_refusal_id().await {
                    Ok(id) => {
                        last_id = Some(id);
                        continue;
                    }
                    Err(e) => {
                        warn_limited!(error = %e, "Alerts cannot read the refusal history yet");
                        continue;
                    }
                },
            };
            let rows = match store.refusals_after(after, READ_BATCH).await {
                Ok(rows) => rows,
                Err(e) => {
                    warn_limited!(error = %e, "Alerts cannot read the refusal history");
                    continue;
                }
            };
            for row in rows {
                last_id = Some(row.id);
                let now = Instant::now();
                let sender = sluice_edge::history_sink::sender_key(&row.refusal.sender);
                let mut keys = Vec::new();
                for (kind, value) in [("sender", sender), ("client_address", &row.refusal.client)] {
                    if cooldowns.admit(kind, value, now) {
                        keys.push((kind, value));
                    } else {
                        metrics::counter!(names::ALERTS, "result" => "suppressed").increment(1);
                    }
                }
                if keys.is_empty() {
                    continue;
                }
                let body = body(&row, &keys, cooldown);
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let url = url.clone();
                let agent = agent.clone();
                tokio::spawn(async move {
                    let result = deliver(&agent, &url, body).await;
                    metrics::counter!(names::ALERTS, "result" => result).increment(1);
                    drop(permit);
                });
            }
        }
    });
}

/// POSTs `body` to `url`, retrying after [`RETRY_AFTER`]; `"sent"` or `"failed"`.
async fn deliver(agent: &ureq::Agent, url: &Arc<str>, body: String) -> &'static str {
    let body: Arc<str> = body.into();
    for attempt in 0..=RETRY_AFTER.len() {
        let (a, u, b) = (agent.clone(), url.clone(), body.clone());
        let outcome = tokio::task::spawn_blocking(move || post(&a, &u, &b)).await;
        match outcome {
            Ok(Ok(())) => return "sent",
            Ok(Err(e)) => tracing::info!(attempt = attempt + 1, error = %e, "Alert webhook failed"),
            Err(e) => tracing::info!(error = %e, "Alert webhook task failed"),
        }
        if let Some(wait) = RETRY_AFTER.get(attempt) {
            tokio::time::sleep(*wait).await;
        }
    }
    warn_limited!(
        attempts = RETRY_AFTER.len() + 1,
        "Alert webhook failed after every retry; the alert is lost"
    );
    "failed"
}

/// One POST (the agent holds its deadline).
fn post(agent: &ureq::Agent, url: &str, body: &str) -> Result<(), String> {
    let resp = agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("the webhook answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_alerts_once_per_cooldown() {
        let mut c = Cooldowns::new(Duration::from_secs(60));
        let t = Instant::now();
        assert!(c.admit("sender", "a@x", t));
        assert!(!c.admit("sender", "a@x", t + Duration::from_secs(59)));
        assert!(c.admit("client_address", "a@x", t), "kinds are apart");
        assert!(c.admit("sender", "a@x", t + Duration::from_secs(60)));
    }

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://example.org/hook").is_ok());
        assert!(check_url("ftp://example.org/hook").is_err());
        assert!(check_url("http:///x").is_err());
    }
}
