//! docs/metrics.md against live scrapes: every role (`serve` with in-process counters,
//! `serve --redis`, `edge`, `quota`) is started on real ports with real backends (SQLite, a
//! Redis server, the quota service) and scraped before any traffic. Each metric documented
//! for the role must be in its scrape from the start (unless its row says "Appears with its
//! first event"), and every `sluice_` metric scraped must be documented for that role.

use sluice_test_support::{
    http_get, import_policies, policies, start_front, start_quota, Process, RedisServer,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// What a role's scrape is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scraped {
    /// `sluice serve`, counters in process.
    Serve,
    /// `sluice serve --redis`.
    ServeRedis,
    /// `sluice edge`.
    Edge,
    /// `sluice quota`.
    Quota,
}

/// A documented metric: its name, and whether it is in the scrape from the start.
#[derive(Debug, Clone)]
struct Documented {
    name: String,
    from_start: bool,
}

/// The roles a section of docs/metrics.md is for, from its heading.
fn section_roles(heading: &str) -> Vec<Scraped> {
    use Scraped::*;
    let h = heading.to_ascii_lowercase();
    if h.contains("every role") || h.contains("logging") {
        vec![Serve, ServeRedis, Edge, Quota]
    } else if h.contains("held messages") {
        vec![Serve, ServeRedis, Quota]
    } else if h.contains("serve") && h.contains("edge") && !h.contains("redis") {
        vec![Serve, ServeRedis, Edge]
    } else if h.contains("edge only") {
        vec![Edge]
    } else if h.contains("redis") {
        vec![Quota, ServeRedis]
    } else if h.contains("quota service only") {
        vec![Quota]
    } else {
        panic!("docs/metrics.md: section {heading:?} names no role this test knows")
    }
}

/// The metrics docs/metrics.md documents for each role.
fn documented() -> BTreeMap<Scraped, Vec<Documented>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out: BTreeMap<Scraped, Vec<Documented>> = BTreeMap::new();
    let mut roles = Vec::new();
    for line in text.lines() {
        if let Some(heading) = line.strip_prefix("## ") {
            roles = section_roles(heading);
            continue;
        }
        let Some(row) = line.strip_prefix("| `sluice_") else {
            continue;
        };
        let name = format!("sluice_{}", row.split('`').next().unwrap());
        let from_start = !line.contains("Appears with its first event");
        assert!(
            !roles.is_empty(),
            "{name} is documented outside a role's section"
        );
        for r in &roles {
            out.entry(*r).or_default().push(Documented {
                name: name.clone(),
                from_start,
            });
        }
    }
    out
}

/// The metric families in a Prometheus text scrape (histogram suffixes removed), with
/// whether they have a sample.
fn families(scrape: &str) -> BTreeMap<String, bool> {
    let mut out = BTreeMap::new();
    for line in scrape.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap().to_string();
            out.entry(name).or_insert(false);
        } else if line.starts_with("sluice_") {
            let series = line.split([' ', '{']).next().unwrap();
            let name = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| series.strip_suffix(s))
                .filter(|base| scrape.contains(&format!("# TYPE {base} histogram")))
                .unwrap_or(series);
            out.insert(name.to_string(), true);
        }
    }
    out
}

/// Waits (at most 30 s) for `/readyz` to answer 200, then returns the scrape.
fn ready_scrape(process: &Process, port: u16) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/readyz").0 != 200 {
        assert!(
            Instant::now() < deadline,
            "{} not ready after 30 s; log:\n{}",
            process.name(),
            process.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200, "{}: /metrics: {body}", process.name());
    body
}

/// Compares one role's scrape with the documentation; returns the problems found.
fn compare(role: Scraped, scrape: &str, docs: &[Documented]) -> Vec<String> {
    let scraped = families(scrape);
    let mut problems = Vec::new();
    for d in docs {
        if d.from_start && scraped.get(&d.name) != Some(&true) {
            problems.push(format!(
                "{role:?}: {} is documented but not in the scrape at start",
                d.name
            ));
        }
    }
    for name in scraped.keys().filter(|n| n.starts_with("sluice_")) {
        if !docs.iter().any(|d| &d.name == name) {
            problems.push(format!(
                "{role:?}: {name} is exported but not documented for this role in docs/metrics.md"
            ));
        }
    }
    problems
}

#[test]
fn every_documented_metric_is_exported_from_the_start_by_its_roles() {
    let docs = documented();
    assert!(
        docs.get(&Scraped::Edge)
            .is_some_and(|d| d.iter().any(|m| m.name == "sluice_leases_held")),
        "the documentation parser found no edge metrics: {docs:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());
    let policies = policies::sender_quota("senders", "per sender", 3);
    import_policies(BIN, dir.path(), &policies, &db);

    let redis = RedisServer::start();
    let started = start_quota(BIN, &redis.url());
    let (quota, grpc, quota_metrics) = (started.process, started.port, started.metrics);
    let role = |name: &str, extra: &[&str]| {
        let mut list = vec!["--database", db.as_str()];
        list.extend_from_slice(extra);
        let r = start_front(BIN, name, name.split(' ').next().unwrap(), &list);
        (r.process, r.metrics)
    };
    let (serve, serve_metrics) = role("serve", &[]);
    let (serve_redis, serve_redis_metrics) = role("serve --redis", &["--redis", &redis.url()]);
    let (edge, edge_metrics) = role("edge", &["--quota", &format!("http://127.0.0.1:{grpc}")]);

    let mut problems = Vec::new();
    for (which, process, port) in [
        (Scraped::Serve, &serve, serve_metrics),
        (Scraped::ServeRedis, &serve_redis, serve_redis_metrics),
        (Scraped::Edge, &edge, edge_metrics),
        (Scraped::Quota, &quota, quota_metrics),
    ] {
        let scrape = ready_scrape(process, port);
        let found = compare(which, &scrape, &docs[&which]);
        if !found.is_empty() {
            problems.extend(found);
            problems.push(format!("---- {which:?} scrape:\n{scrape}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_comparison_sees_missing_and_undocumented_metrics() {
    let docs = vec![
        Documented {
            name: "sluice_a_total".into(),
            from_start: true,
        },
        Documented {
            name: "sluice_b_seconds".into(),
            from_start: true,
        },
        Documented {
            name: "sluice_c_total".into(),
            from_start: false,
        },
    ];
    let scrape = "# TYPE sluice_a_total counter\nsluice_a_total 0\n\
                  # TYPE sluice_b_seconds histogram\nsluice_b_seconds_bucket{le=\"1\"} 0\n\
                  sluice_b_seconds_sum 0\nsluice_b_seconds_count 0\n";
    assert!(compare(Scraped::Serve, scrape, &docs).is_empty());
    let missing = compare(Scraped::Serve, "# TYPE sluice_a_total counter\n", &docs).join("\n");
    assert!(missing.contains("sluice_a_total is documented but not in the scrape"));
    assert!(missing.contains("sluice_b_seconds is documented but not in the scrape"));
    assert!(!missing.contains("sluice_c_total"));
    let extra = compare(Scraped::Serve, &format!("{scrape}sluice_d 1\n"), &docs).join("\n");
    assert!(
        extra.contains("sluice_d is exported but not documented"),
        "{extra}"
    );
}
