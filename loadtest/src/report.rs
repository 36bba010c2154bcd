//! Results as text and JSON, and the comparison of two runs.

use crate::driver::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;

/// One run's results (the JSON written with `--json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    /// A name for the run (`dunno`, `sluice`...).
    pub label: String,
    /// Where the load went.
    pub target: String,
    /// Concurrent connections.
    pub connections: usize,
    /// Measured seconds.
    pub duration_s: f64,
    /// Measured requests answered.
    pub requests: u64,
    /// Failed exchanges and connects.
    pub errors: u64,
    /// Requests per second.
    pub rps: f64,
    /// Latency percentiles.
    pub latency_us: Latency,
    /// Replies by action keyword.
    pub actions: BTreeMap<String, u64>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Slowest.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Report {
    /// Summarises `outcome`.
    pub fn new(label: &str, target: &str, connections: usize, outcome: &Outcome) -> Report {
        let secs = outcome.elapsed.as_secs_f64();
        let h = &outcome.latency_us;
        Report {
            label: label.to_string(),
            target: target.to_string(),
            connections,
            duration_s: secs,
            requests: outcome.requests,
            errors: outcome.errors,
            rps: if secs > 0.0 {
                outcome.requests as f64 / secs
            } else {
                0.0
            },
            latency_us: Latency {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                p999: h.value_at_quantile(0.999),
                max: h.max(),
                mean: h.mean(),
            },
            actions: outcome.actions.clone(),
        }
    }

    /// Human-readable summary.
    pub fn text(&self) -> String {
        let l = &self.latency_us;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{}: {} connections to {}, {:.1} s measured",
            self.label, self.connections, self.target, self.duration_s
        );
        let _ = writeln!(
            s,
            "  requests {}  errors {}  throughput {:.0} req/s",
            self.requests, self.errors, self.rps
        );
        let _ = writeln!(
            s,
            "  latency us: p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  mean {:.1}",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        );
        let actions: Vec<String> = self
            .actions
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = writeln!(s, "  actions: {}", actions.join(" "));
        s
    }
}

/// How `this` run compares with `baseline` (e.g. sluice against the always-DUNNO ceiling).
pub fn compare(this: &Report, baseline: &Report) -> String {
    let ratio = if baseline.rps > 0.0 {
        this.rps / baseline.rps
    } else {
        0.0
    };
    format!(
        "{} vs {}: throughput {:.0} / {:.0} req/s = {:.1}%; p99 {} us vs {} us; errors {} vs {}\n",
        this.label,
        baseline.label,
        this.rps,
        baseline.rps,
        ratio * 100.0,
        this.latency_us.p99,
        baseline.latency_us.p99,
        this.errors,
        baseline.errors
    )
}
