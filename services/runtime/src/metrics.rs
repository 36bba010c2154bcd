//! The Prometheus recorder and the metric catalogue (documented in `docs/metrics.md`).
//!
//! [`install`] sets the global `metrics` recorder once per process; code everywhere records
//! through the `metrics` facade (`metrics::counter!(names::REQUESTS, ...)`), preferably with
//! handles registered once and kept, so the request path never formats or allocates.
//! Without [`install`] (libraries' unit tests) recording is a no-op.

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Metric names. Keep in step with `docs/metrics.md`.
pub mod names {
    /// Gauge `{version, role}`, always 1.
    pub const BUILD_INFO: &str = "sluice_build_info";
    /// Counter `{protocol_state, action}`: requests answered.
    pub const REQUESTS: &str = "sluice_requests_total";
    /// Counter `{module, policy, quota_or_rule, action, mode}`: module verdicts.
    pub const VERDICTS: &str = "sluice_verdicts_total";
    /// Histogram: a request from read to reply.
    pub const REQUEST_DURATION: &str = "sluice_request_duration_seconds";
    /// Counter `{reason}`: fallback answers.
    pub const FALLBACK: &str = "sluice_fallback_total";
    /// Gauge: open Postfix connections.
    pub const CONNECTIONS_OPEN: &str = "sluice_connections_open";
    /// Counter: accepted Postfix connections.
    pub const CONNECTIONS: &str = "sluice_connections_total";
    /// Counter `{kind}`: connections closed on bytes that are not a request.
    pub const FRAME_ERRORS: &str = "sluice_frame_errors_total";
    /// Counter `{reason}`: connections closed to make room (idle ones) or refused (a client
    /// at its cap with every connection busy).
    pub const CONNECTIONS_SHED: &str = "sluice_connections_shed_total";
    /// Counter `{policy, quota}`: requests leaving a quota near its limit.
    pub const NEAR_LIMIT: &str = "sluice_quota_near_limit_total";
    /// Counter `{outcome}`: greylisting decisions.
    pub const GREYLISTING: &str = "sluice_greylisting_total";
    /// Counter `{result}`: CheckSPF checks by SPF result.
    pub const CHECKSPF: &str = "sluice_checkspf_total";
    /// Counter `{result}`: CheckHelo decisions.
    pub const CHECKHELO: &str = "sluice_checkhelo_total";
    /// Counter `{result}`: requests Accounting counted or refused.
    pub const ACCOUNTING: &str = "sluice_accounting_total";
    /// Counter `{result}`: messages DELAY quotas held (`held`) or could not hold (`full`,
    /// `failed`).
    pub const HELD: &str = "sluice_held_total";
    /// Counter `{reason}`: held messages that left the ledger.
    pub const HELD_GONE: &str = "sluice_held_gone_total";
    /// Counter `{action}`: held messages past their maximum age.
    pub const HELD_EXPIRED: &str = "sluice_held_expired_total";
    /// Gauge: held messages waiting for room.
    pub const HELD_WAITING: &str = "sluice_held_waiting";
    /// Gauge: age of the oldest held message waiting (seconds).
    pub const HELD_OLDEST_AGE: &str = "sluice_held_oldest_age_seconds";
    /// Gauge: the policy set version served.
    pub const POLICY_SET_VERSION: &str = "sluice_policy_set_version";
    /// Gauge: enabled policies.
    pub const POLICIES_ENABLED: &str = "sluice_policies_enabled";
    /// Gauge: Unix time of the last successful policy load.
    pub const POLICY_RELOAD_TIMESTAMP: &str = "sluice_policy_reload_timestamp_seconds";
    /// Gauge: Unix time the policy database last answered.
    pub const POLICY_CHECK_TIMESTAMP: &str = "sluice_policy_check_timestamp_seconds";
    /// Counter: failed policy reloads.
    pub const POLICY_RELOAD_FAILURES: &str = "sluice_policy_reload_failures_total";
    /// Histogram `{result}`: one Apply call edge → quota service.
    pub const QUOTA_RPC_DURATION: &str = "sluice_quota_rpc_duration_seconds";
    /// Gauge `{endpoint}`: quota-service endpoint healthy.
    pub const QUOTA_ENDPOINT_UP: &str = "sluice_quota_endpoint_up";
    /// Counter: groups answered by the edge's over-limit cache.
    pub const OVER_LIMIT_CACHE_HITS: &str = "sluice_over_limit_cache_hits_total";
    /// Gauge: leases an edge holds.
    pub const LEASES_HELD: &str = "sluice_leases_held";
    /// Counter: leases an edge was granted.
    pub const LEASE_GRANTS: &str = "sluice_lease_grants_total";
    /// Counter `{result}`: calls giving back unused lease units (`ok`, `error`).
    pub const LEASE_RETURNS: &str = "sluice_lease_returns_total";
    /// Gauge: message sessions an edge holds.
    pub const EDGE_SESSIONS: &str = "sluice_edge_sessions";
    /// Counter `{result}`: calls storing message sessions for other edges (`ok`, `error`).
    pub const SESSION_SAVES: &str = "sluice_session_saves_total";
    /// Histogram `{result}`: the Redis work of one batch.
    pub const REDIS_DURATION: &str = "sluice_redis_duration_seconds";
    /// Counter `{reason}`: Redis requests sent again because the answer proved they did
    /// not run (`moved`, `ask`, `try_again`: TRYAGAIN or READONLY, `noscript`).
    pub const REDIS_RESENDS: &str = "sluice_redis_resends_total";
    /// Counter `{result}`: Redis Cluster topology reads (`ok`, `error`).
    pub const REDIS_TOPOLOGY_REFRESHES: &str = "sluice_redis_topology_refreshes_total";
    /// Counter `{result}`: Apply calls handled by the quota service.
    pub const QUOTA_BATCHES: &str = "sluice_quota_batches_total";
    /// Gauge: the quota service's backend answers probes.
    pub const QUOTA_BACKEND_UP: &str = "sluice_quota_backend_up";
    /// Counter: log lines dropped (syslog socket full or gone, stderr stuck).
    pub const LOG_LINES_DROPPED: &str = "sluice_log_lines_dropped_total";
    /// Counter `{result}`: refusal records of the history (`written`, `dropped`: the
    /// in-memory queue was full, `failed`: the database refused the batch).
    pub const HISTORY_RECORDS: &str = "sluice_history_records_total";
    /// Counter: history rows (refusals and sender counts) deleted after the retention.
    pub const HISTORY_PRUNED: &str = "sluice_history_pruned_total";
    /// Counter `{result}`: alert webhooks (`sent`, `failed` after every retry,
    /// `suppressed`: the key's cooldown had not passed).
    pub const ALERTS: &str = "sluice_alerts_total";
}

/// Histogram buckets (seconds) of every `_seconds` histogram.
pub const BUCKETS: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// How often histogram samples are folded into buckets when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Extra sections of the scrape, rendered by their owners (see [`add_renderer`]).
static RENDERERS: Mutex<Vec<fn(&mut String)>> = Mutex::new(Vec::new());

/// Adds a section to every scrape: `render` appends complete metric families (`# HELP`,
/// `# TYPE` and samples) in Prometheus text format. For the hottest metrics, which their
/// owner keeps in per-thread shards rather than in the shared recorder (a contended atomic
/// per request costs more than the rest of the bookkeeping). Adding the same function twice
/// has no effect.
pub fn add_renderer(render: fn(&mut String)) {
    let mut r = RENDERERS.lock().unwrap_or_else(|p| p.into_inner());
    if !r.iter().any(|f| std::ptr::fn_addr_eq(*f, render)) {
        r.push(render);
    }
}

/// Installs the global Prometheus recorder (once; later calls return the same handle),
/// describes every metric and sets `sluice_build_info{version, role}`.
pub fn install(role: &str) -> &'static PrometheusHandle {
    let handle = HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is installed already (then ours stays unused).
        if ::metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("A metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("sluice-metrics".into())
            .spawn(move || loop {
                std::thread::sleep(UPKEEP_INTERVAL);
                upkeep.run_upkeep();
            });
        handle
    });
    ::metrics::gauge!(names::BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "role" => role.to_string()).set(1.0);
    // Every role logs: exported from the start, at 0.
    ::metrics::counter!(names::LOG_LINES_DROPPED).increment(0);
    handle
}

/// The current scrape in Prometheus text format (only the added sections before
/// [`install`]).
pub fn render() -> String {
    let mut text = HANDLE
        .get()
        .map(PrometheusHandle::render)
        .unwrap_or_default();
    let renderers = RENDERERS.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for r in renderers {
        if !text.is_empty() && !text.ends_with("\n\n") {
            text.push('\n');
        }
        r(&mut text);
    }
    text
}

/// Seconds since the Unix epoch, for timestamp gauges.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    use names::*;
    describe_gauge!(BUILD_INFO, "Sluice version and role (always 1).");
    describe_counter!(
        REQUESTS,
        "Policy requests answered, by protocol state and final action."
    );
    describe_counter!(
        VERDICTS,
        "Module verdicts, by module, policy, quota or rule, action and mode."
    );
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Time to answer one policy request."
    );
    describe_counter!(
        FALLBACK,
        "Requests answered with the fallback action, by reason."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Postfix connections open.");
    describe_counter!(CONNECTIONS, "Postfix connections accepted.");
    describe_counter!(
        CONNECTIONS_SHED,
        "Postfix connections closed to make room for new ones (the oldest idle), or new ones refused."
    );
    describe_counter!(
        FRAME_ERRORS,
        "Connections closed because the bytes were not a policy request."
    );
    describe_counter!(
        NEAR_LIMIT,
        "Requests that left a quota at or above 90% of its limit."
    );
    describe_counter!(
        GREYLISTING,
        "Greylisting decisions, by outcome (deferred, passed, training, whitelisted, auto_whitelisted, blacklisted, spf_pass)."
    );
    describe_counter!(
        CHECKSPF,
        "CheckSPF checks, by SPF result (pass, fail, softfail, neutral, none, temperror, permerror)."
    );
    describe_counter!(
        CHECKHELO,
        "CheckHelo decisions, by result (passed, whitelisted, invalid, unresolvable, dns_failure, blacklisted, hrp_exceeded, misconfigured)."
    );
    describe_counter!(
        ACCOUNTING,
        "Requests Accounting counted or refused, by result (counted, refused, monitored)."
    );
    describe_counter!(
        HELD,
        "Messages DELAY quotas held (held) or could not hold (full: the quota's max_held reached; failed: the ledger could not be written), answered DEFER."
    );
    describe_counter!(
        HELD_GONE,
        "Held messages that left the ledger, by reason (released, returned, deleted, vanished: gone from the hold queue by hand)."
    );
    describe_counter!(
        HELD_EXPIRED,
        "Held messages past their quota's max_hold_age, by action (return, release)."
    );
    describe_gauge!(HELD_WAITING, "Held messages waiting for room.");
    describe_gauge!(
        HELD_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest held message waiting for room (0 when none)."
    );
    describe_gauge!(
        POLICY_SET_VERSION,
        "Version of the policy set being served."
    );
    describe_gauge!(
        POLICIES_ENABLED,
        "Enabled policies in the set being served."
    );
    describe_gauge!(
        POLICY_RELOAD_TIMESTAMP,
        Unit::Seconds,
        "Unix time of the last successful policy load."
    );
    describe_gauge!(
        POLICY_CHECK_TIMESTAMP,
        Unit::Seconds,
        "Unix time the policy database last answered."
    );
    describe_counter!(POLICY_RELOAD_FAILURES, "Policy reloads that failed.");
    describe_histogram!(
        QUOTA_RPC_DURATION,
        Unit::Seconds,
        "One Apply call to a quota service."
    );
    describe_gauge!(
        QUOTA_ENDPOINT_UP,
        "1 while a quota-service endpoint is considered healthy."
    );
    describe_counter!(
        OVER_LIMIT_CACHE_HITS,
        "Counter groups answered from the over-limit cache."
    );
    describe_gauge!(LEASES_HELD, "Leases (units charged ahead) this edge holds.");
    describe_counter!(LEASE_GRANTS, "Leases granted to this edge.");
    describe_counter!(
        LEASE_RETURNS,
        "Calls giving back unused lease units, by result."
    );
    describe_gauge!(EDGE_SESSIONS, "Message sessions this edge holds.");
    describe_counter!(
        SESSION_SAVES,
        "Calls storing message sessions (and deleting ended ones) for other edges, by result."
    );
    describe_histogram!(
        REDIS_DURATION,
        Unit::Seconds,
        "The Redis work of one counter batch."
    );
    describe_counter!(
        REDIS_RESENDS,
        "Redis requests sent again because the answer proved they had not run, by reason."
    );
    describe_counter!(
        REDIS_TOPOLOGY_REFRESHES,
        "Redis Cluster topology reads, by result."
    );
    describe_counter!(
        QUOTA_BATCHES,
        "Apply calls handled by the quota service, by result."
    );
    describe_counter!(
        HISTORY_RECORDS,
        "Refusal records of the history, by result (written, dropped: queue full, failed: the database refused the batch)."
    );
    describe_counter!(
        HISTORY_PRUNED,
        "History rows (refusals and sender counts) deleted after the retention."
    );
    describe_counter!(
        ALERTS,
        "Alert webhooks, by result (sent, failed after every retry, suppressed: the key's cooldown had not passed)."
    );
    describe_gauge!(
        QUOTA_BACKEND_UP,
        "1 while the quota service's counter backend answers probes."
    );
    describe_counter!(
        LOG_LINES_DROPPED,
        "Log lines dropped because the syslog socket was full or gone, or stderr was stuck."
    );
}
