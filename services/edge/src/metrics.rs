//! The edge's metrics. The two recorded for every request (`sluice_requests_total` and
//! `sluice_request_duration_seconds`) live in per-thread shards ([`hot`]) and are summed
//! at scrape time: a request costs two uncontended atomic adds, no label formatting, no
//! allocation, no registry lookup, and no cache line bouncing between cores. The others
//! are `metrics` handles registered once; label sets that depend on the policy set
//! (verdicts, near-limit quotas) are registered on first use and cached by name. Names and
//! labels: `docs/metrics.md`.

use sluice_engine::engine::{Decision, QuotaRef};
use sluice_engine::SpfResult;
use sluice_protocol::{Action, ProtocolState};
use sluice_runtime::metrics::names;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{counter, gauge, Counter, Gauge};

/// `protocol_state` label values, by [`state_index`]; the last is for requests that could
/// not be evaluated.
const STATES: [&str; 10] = [
    "CONNECT",
    "EHLO",
    "HELO",
    "MAIL",
    "RCPT",
    "DATA",
    "END-OF-MESSAGE",
    "VRFY",
    "ETRN",
    "invalid",
];
/// Index of the `invalid` protocol state.
pub(crate) const INVALID: usize = STATES.len() - 1;
/// `action` label values, by [`action_index`].
const ACTIONS: [&str; 12] = [
    "dunno",
    "ok",
    "reject",
    "defer",
    "defer_if_permit",
    "defer_if_reject",
    "hold",
    "discard",
    "filter",
    "redirect",
    "prepend",
    "warn",
];

/// The index of a protocol state in [`STATES`].
pub(crate) fn state_index(s: ProtocolState) -> usize {
    match s {
        ProtocolState::Connect => 0,
        ProtocolState::Ehlo => 1,
        ProtocolState::Helo => 2,
        ProtocolState::Mail => 3,
        ProtocolState::Rcpt => 4,
        ProtocolState::Data => 5,
        ProtocolState::EndOfMessage => 6,
        ProtocolState::Vrfy => 7,
        ProtocolState::Etrn => 8,
    }
}

fn action_index(a: &Action) -> usize {
    let kw = a.keyword();
    ACTIONS.iter().position(|k| *k == kw).unwrap_or(0)
}

/// Identifies one `sluice_verdicts_total` series.
#[derive(Hash, PartialEq, Eq)]
struct VerdictKey {
    module: &'static str,
    policy: Arc<str>,
    name: Arc<str>,
    action: usize,
    monitor: bool,
}

/// Identifies one `sluice_quota_near_limit_total` series: (policy, quota).
type QuotaKey = (Arc<str>, Arc<str>);

/// Why a request got the fallback action (`sluice_fallback_total{reason}`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fallback {
    /// The request could not be typed; the label is the error's kind.
    Invalid(&'static str),
    /// The request deadline passed.
    Deadline,
}

/// Handles of every edge metric.
pub(crate) struct EdgeMetrics {
    hot: &'static hot::Hot,
    connections_open: Gauge,
    connections: Counter,
    backend_unavailable: Counter,
    backend_timeout: Counter,
    deadline: Counter,
    verdicts: RwLock<HashMap<VerdictKey, Counter>>,
    near_limit: RwLock<HashMap<QuotaKey, Counter>>,
    /// `sluice_greylisting_total` by outcome, in [`GREY_OUTCOMES`]' order.
    greylisting: [Counter; GREY_OUTCOMES.len()],
    /// `sluice_checkspf_total` by result, in [`SpfResult::ALL`]'s order.
    checkspf: [Counter; SpfResult::ALL.len()],
    /// `sluice_checkhelo_total` by result, in [`HELO_RESULTS`]' order.
    checkhelo: [Counter; HELO_RESULTS.len()],
    /// `sluice_accounting_total` by result, in [`ACCOUNTING_RESULTS`]' order.
    accounting: [Counter; ACCOUNTING_RESULTS.len()],
}

/// CheckHelo's `result` label values (`Decision::checkhelo`).
const HELO_RESULTS: [&str; 8] = [
    "passed",
    "whitelisted",
    "invalid",
    "unresolvable",
    "dns_failure",
    "blacklisted",
    "hrp_exceeded",
    "misconfigured",
];

/// Accounting's `result` label values (`Decision::accounting`).
const ACCOUNTING_RESULTS: [&str; 3] = ["counted", "refused", "monitored"];

/// Greylisting's `outcome` label values (`Decision::greylisting`).
const GREY_OUTCOMES: [&str; 7] = [
    "deferred",
    "passed",
    "training",
    "whitelisted",
    "auto_whitelisted",
    "blacklisted",
    "spf_pass",
];

impl EdgeMetrics {
    /// Registers the metrics with the global recorder (no-ops without one).
    pub(crate) fn new() -> Self {
        EdgeMetrics {
            hot: hot::get(),
            connections_open: gauge!(names::CONNECTIONS_OPEN),
            connections: counter!(names::CONNECTIONS),
            backend_unavailable: counter!(names::FALLBACK, "reason" => "backend_unavailable"),
            backend_timeout: counter!(names::FALLBACK, "reason" => "backend_timeout"),
            deadline: counter!(names::FALLBACK, "reason" => "deadline"),
            verdicts: RwLock::new(HashMap::new()),
            near_limit: RwLock::new(HashMap::new()),
            greylisting: GREY_OUTCOMES.map(|o| counter!(names::GREYLISTING, "outcome" => o)),
            checkspf: SpfResult::ALL.map(|r| counter!(names::CHECKSPF, "result" => r.as_str())),
            checkhelo: HELO_RESULTS.map(|r| counter!(names::CHECKHELO, "result" => r)),
            accounting: ACCOUNTING_RESULTS.map(|r| counter!(names::ACCOUNTING, "result" => r)),
        }
    }

    /// A connection was accepted; the returned guard counts it as open until dropped.
    pub(crate) fn connection(self: &Arc<Self>) -> OpenConnection {
        self.connections.increment(1);
        self.connections_open.increment(1.0);
        OpenConnection(Arc::clone(self))
    }

    /// A connection was closed on bytes that are not a request.
    pub(crate) fn frame_error(kind: &'static str) {
        counter!(names::FRAME_ERRORS, "kind" => kind).increment(1);
    }

    /// One request answered: `state` from [`state_index`] (or [`INVALID`]).
    pub(crate) fn request(&self, state: usize, action: &Action, took: Duration) {
        self.hot.record(state, action_index(action), took);
    }

    /// A fallback answer.
    pub(crate) fn fallback(&self, why: Fallback) {
        match why {
            Fallback::Invalid(kind) => counter!(names::FALLBACK, "reason" => kind).increment(1),
            Fallback::Deadline => self.deadline.increment(1),
        }
    }

    /// The verdicts, near-limit quotas and backend failure of a decision.
    pub(crate) fn decision(&self, d: &Decision) {
        if let Some(e) = &d.state_error {
            match e {
                sluice_engine::StateError::Timeout => self.backend_timeout.increment(1),
                _ => self.backend_unavailable.increment(1),
            }
        }
        for v in &d.verdicts {
            let key = VerdictKey {
                module: v.module,
                policy: Arc::clone(&v.policy),
                name: Arc::clone(&v.name),
                action: action_index(&v.action),
                monitor: v.monitor,
            };
            cached(&self.verdicts, key, |k| {
                counter!(
                    names::VERDICTS,
                    "module" => k.module,
                    "policy" => k.policy.to_string(),
                    "quota_or_rule" => k.name.to_string(),
                    "action" => ACTIONS[k.action],
                    "mode" => if k.monitor { "monitor" } else { "enforce" },
                )
            })
            .increment(1);
        }
        if let Some(outcome) = d.greylisting {
            if let Some(i) = GREY_OUTCOMES.iter().position(|o| *o == outcome) {
                self.greylisting[i].increment(1);
            }
        }
        if let Some(result) = d.spf {
            if let Some(i) = SpfResult::ALL.iter().position(|r| r.as_str() == result) {
                self.checkspf[i].increment(1);
            }
        }
        if let Some(result) = d.checkhelo {
            if let Some(i) = HELO_RESULTS.iter().position(|r| *r == result) {
                self.checkhelo[i].increment(1);
            }
        }
        if let Some(result) = d.accounting {
            if let Some(i) = ACCOUNTING_RESULTS.iter().position(|r| *r == result) {
                self.accounting[i].increment(1);
            }
        }
        for QuotaRef { policy, quota } in &d.near_limit {
            let key = (Arc::clone(policy), Arc::clone(quota));
            cached(&self.near_limit, key, |(p, q)| {
                counter!(names::NEAR_LIMIT, "policy" => p.to_string(), "quota" => q.to_string())
            })
            .increment(1);
        }
    }
}

/// The cached handle for `key`, registered with `make` on first use.
fn cached<K: std::hash::Hash + Eq>(
    map: &RwLock<HashMap<K, Counter>>,
    key: K,
    make: impl FnOnce(&K) -> Counter,
) -> Counter {
    if let Some(c) = map.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return c.clone();
    }
    let mut w = map.write().unwrap_or_else(|p| p.into_inner());
    let c = make(&key);
    w.entry(key).or_insert(c).clone()
}

/// Counts a connection as open while it lives.
pub(crate) struct OpenConnection(Arc<EdgeMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.decrement(1.0);
    }
}

/// Per-thread shards of the per-request metrics, rendered into the scrape.
mod hot {
    use super::{ACTIONS, STATES};
    use sluice_runtime::metrics::{names, BUCKETS};
    use std::fmt::Write;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
    use std::sync::OnceLock;
    use std::time::Duration;

    /// Shards; threads beyond this share them (still exact, only contended).
    const SHARDS: usize = 16;

    /// One thread's counts, on its own cache lines.
    #[repr(align(128))]
    struct Shard {
        requests: [[AtomicU64; ACTIONS.len()]; STATES.len()],
        /// Non-cumulative: `buckets[i]` counts durations in `(BUCKETS[i-1], BUCKETS[i]]`.
        buckets: [AtomicU64; BUCKETS.len()],
        count: AtomicU64,
        sum_ns: AtomicU64,
    }

    /// All shards of the process.
    pub(crate) struct Hot {
        shards: Box<[Shard]>,
        bounds_ns: [u64; BUCKETS.len()],
    }

    static HOT: OnceLock<Hot> = OnceLock::new();
    static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
    }

    /// The process's shards (registered with the scrape on first use).
    pub(crate) fn get() -> &'static Hot {
        HOT.get_or_init(|| {
            sluice_runtime::metrics::add_renderer(render);
            Hot {
                shards: (0..SHARDS)
                    .map(|_| Shard {
                        requests: std::array::from_fn(|_| {
                            std::array::from_fn(|_| AtomicU64::new(0))
                        }),
                        buckets: std::array::from_fn(|_| AtomicU64::new(0)),
                        count: AtomicU64::new(0),
                        sum_ns: AtomicU64::new(0),
                    })
                    .collect(),
                bounds_ns: BUCKETS.map(|b| (b * 1e9) as u64),
            }
        })
    }

    impl Hot {
        /// Counts one request and its duration.
        #[inline]
        pub(crate) fn record(&self, state: usize, action: usize, took: Duration) {
            let shard = &self.shards[SHARD.with(|s| *s)];
            shard.requests[state][action].fetch_add(1, Relaxed);
            let ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            if let Some(i) = self.bounds_ns.iter().position(|b| ns <= *b) {
                shard.buckets[i].fetch_add(1, Relaxed);
            }
            shard.count.fetch_add(1, Relaxed);
            shard.sum_ns.fetch_add(ns, Relaxed);
        }

        fn sum(&self, f: impl Fn(&Shard) -> &AtomicU64) -> u64 {
            self.shards.iter().map(|s| f(s).load(Relaxed)).sum()
        }
    }

    /// Appends `sluice_requests_total` (series seen at least once) and
    /// `sluice_request_duration_seconds` (always) in Prometheus text format.
    fn render(out: &mut String) {
        let Some(hot) = HOT.get() else { return };
        let _ = writeln!(
            out,
            "# HELP {0} Policy requests answered, by protocol state and final action.\n# TYPE {0} counter",
            names::REQUESTS
        );
        for (s, state) in STATES.iter().enumerate() {
            for (a, action) in ACTIONS.iter().enumerate() {
                let n = hot.sum(|sh| &sh.requests[s][a]);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "{}{{protocol_state=\"{state}\",action=\"{action}\"}} {n}",
                        names::REQUESTS
                    );
                }
            }
        }
        out.push('\n');
        let name = names::REQUEST_DURATION;
        let _ = writeln!(
            out,
            "# HELP {name} Time to answer one policy request.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += hot.sum(|sh| &sh.buckets[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        let count = hot.sum(|sh| &sh.count);
        let sum = hot.sum(|sh| &sh.sum_ns) as f64 / 1e9;
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {count}\n");
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn renders_exact_counts_and_cumulative_buckets() {
            let hot = get();
            hot.record(4, 0, Duration::from_micros(50));
            hot.record(4, 2, Duration::from_millis(2));
            let mut text = String::new();
            render(&mut text);
            assert!(
                text.contains(
                    "sluice_requests_total{protocol_state=\"RCPT\",action=\"dunno\"} 1\n"
                ),
                "{text}"
            );
            assert!(
                text.contains(
                    "sluice_requests_total{protocol_state=\"RCPT\",action=\"reject\"} 1\n"
                ),
                "{text}"
            );
            assert!(text.contains("sluice_request_duration_seconds_bucket{le=\"0.0001\"} 1\n"));
            assert!(text.contains("sluice_request_duration_seconds_bucket{le=\"0.001\"} 1\n"));
            assert!(text.contains("sluice_request_duration_seconds_bucket{le=\"0.0025\"} 2\n"));
            assert!(text.contains("sluice_request_duration_seconds_count 2\n"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_has_its_label() {
        for (i, kw) in ACTIONS.iter().enumerate() {
            let text = if *kw == "dunno" {
                "DUNNO".to_string()
            } else {
                format!("{} x", kw.to_uppercase())
            };
            let a: Action = text.parse().unwrap();
            assert_eq!(action_index(&a), i, "{kw}");
        }
        assert_eq!(state_index(ProtocolState::Etrn), INVALID - 1);
        assert_eq!(
            STATES[state_index(ProtocolState::EndOfMessage)],
            "END-OF-MESSAGE"
        );
    }
}
