//! The edge's metrics, registered once and kept as handles so recording a request costs a
//! few atomic operations: no label formatting, no allocation, no registry lookup. Label
//! sets that depend on the policy set (verdicts, near-limit quotas) are registered on first
//! use and cached by name. Names and labels: `docs/metrics.md`.

use sluice_engine::engine::{Decision, QuotaRef};
use sluice_protocol::{Action, ProtocolState};
use sluice_runtime::metrics::names;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};

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
    requests: [[OnceLock<Counter>; ACTIONS.len()]; STATES.len()],
    duration: Histogram,
    connections_open: Gauge,
    connections: Counter,
    backend_unavailable: Counter,
    backend_timeout: Counter,
    deadline: Counter,
    verdicts: RwLock<HashMap<VerdictKey, Counter>>,
    near_limit: RwLock<HashMap<QuotaKey, Counter>>,
}

impl EdgeMetrics {
    /// Registers the metrics with the global recorder (no-ops without one).
    pub(crate) fn new() -> Self {
        EdgeMetrics {
            requests: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            duration: histogram!(names::REQUEST_DURATION),
            connections_open: gauge!(names::CONNECTIONS_OPEN),
            connections: counter!(names::CONNECTIONS),
            backend_unavailable: counter!(names::FALLBACK, "reason" => "backend_unavailable"),
            backend_timeout: counter!(names::FALLBACK, "reason" => "backend_timeout"),
            deadline: counter!(names::FALLBACK, "reason" => "deadline"),
            verdicts: RwLock::new(HashMap::new()),
            near_limit: RwLock::new(HashMap::new()),
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
        let a = action_index(action);
        self.requests[state][a]
            .get_or_init(|| {
                counter!(names::REQUESTS, "protocol_state" => STATES[state], "action" => ACTIONS[a])
            })
            .increment(1);
        self.duration.record(took.as_secs_f64());
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
