//! The deployment assets agree with the binary they deploy:
//! - every metric the Grafana dashboard (`deploy/grafana/sluice-dashboard.json`) and the
//!   Prometheus alert rules (`deploy/prometheus/sluice-alerts.yml`) query is exposed by a
//!   real scrape of `sluice serve`, `sluice edge` or `sluice quota` after known traffic
//!   (real processes, a real Redis, a real SQLite file, real TCP), and is documented in
//!   `docs/metrics.md`;
//! - the systemd units start the role their name says with the config file the docs name,
//!   the example `serve.toml` is valid, and the units give shutdown enough time.
//!
//! Lint, render and schema checks of the same assets (promtool, Helm, kubernetes-validate,
//! systemd-analyze) are in `scripts/check-deploy.sh`.

use sluice_test_support::{
    http_get, import_policies, policies, start_front, start_quota, RedisServer,
};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The repository root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// Metric names in PromQL expressions.

/// The JSON string value starting right after an opening quote at `text[start..]`
/// (escapes `\"`, `\\`, `\n` and `\/` resolved).
fn json_string_at(text: &str, start: usize) -> String {
    let mut out = String::new();
    let mut chars = text[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return out,
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => break,
            },
            c => out.push(c),
        }
    }
    panic!("unterminated JSON string at byte {start}");
}

/// Every PromQL expression of a Grafana dashboard: panel targets' `expr` and template
/// variables' `query`/`definition` strings.
fn dashboard_exprs(json: &str) -> Vec<String> {
    let mut exprs = Vec::new();
    for key in ["\"expr\":", "\"query\":", "\"definition\":"] {
        let mut from = 0;
        while let Some(at) = json[from..].find(key) {
            let after = from + at + key.len();
            let rest = &json[after..];
            let value_start = after + (rest.len() - rest.trim_start().len());
            if json[value_start..].starts_with('"') {
                exprs.push(json_string_at(json, value_start + 1));
            }
            from = after;
        }
    }
    exprs
}

/// Every `expr:` of a Prometheus rule file (inline, or a `|` block of deeper-indented lines).
fn rule_exprs(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        i += 1;
        let Some(value) = trimmed.strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value.starts_with('|') || value.starts_with('>') {
            let indent = line.len() - trimmed.len();
            let mut block = String::new();
            while i < lines.len() {
                let l = lines[i];
                let deeper = l.len() - l.trim_start().len() > indent;
                if !(l.trim().is_empty() || deeper) {
                    break;
                }
                block.push_str(l.trim());
                block.push('\n');
                i += 1;
            }
            exprs.push(block);
        } else {
            exprs.push(value.trim_matches(|c| c == '"' || c == '\'').to_string());
        }
    }
    exprs
}

/// A metric family's name: histogram series lose `_bucket`, `_sum` and `_count`.
fn family(name: &str) -> String {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            return base.to_string();
        }
    }
    name.to_string()
}

/// Identifiers starting with `sluice_` in PromQL text, as family names.
fn sluice_names(exprs: &[String]) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for e in exprs {
        let bytes = e.as_bytes();
        let mut i = 0;
        while let Some(at) = e[i..].find("sluice_") {
            let start = i + at;
            let boundary = start == 0 || {
                let b = bytes[start - 1];
                !(b.is_ascii_alphanumeric() || b == b'_' || b == b':')
            };
            let end = start
                + e[start..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                    .unwrap_or(e.len() - start);
            if boundary {
                names.insert(family(&e[start..end]));
            }
            i = end;
        }
    }
    names
}

/// Metric families present in a Prometheus text scrape (samples, not just HELP/TYPE).
fn scraped_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| family(l.split(['{', ' ']).next().unwrap_or_default()))
        .collect()
}

/// What the dashboard and the alert rules query.
fn queried_names() -> (BTreeSet<String>, BTreeSet<String>) {
    let dashboard = sluice_names(&dashboard_exprs(&read(
        "deploy/grafana/sluice-dashboard.json",
    )));
    let alerts = sluice_names(&rule_exprs(&read("deploy/prometheus/sluice-alerts.yml")));
    (dashboard, alerts)
}

#[test]
fn extraction_finds_names_in_expressions_only() {
    let exprs = dashboard_exprs(
        r#"{"description": "sluice_not_a_query", "targets": [{"expr": "histogram_quantile(0.99, sum by (le) (rate(sluice_a_seconds_bucket{x=\"y\"}[5m]))) / sluice_b_total"}],
            "templating": {"list": [{"definition": "label_values(sluice_c_info, job)", "query": {"query": "label_values(sluice_c_info, job)"}}]}}"#,
    );
    assert_eq!(
        sluice_names(&exprs).into_iter().collect::<Vec<_>>(),
        ["sluice_a_seconds", "sluice_b_total", "sluice_c_info"]
    );
    let rules = rule_exprs(
        "groups:\n  - rules:\n      - alert: A\n        expr: |\n          rate(sluice_x_total[5m])\n            > sluice_y\n        for: 5m\n        annotations:\n          summary: sluice_not_a_query\n      - alert: B\n        expr: sluice_z_count > 0\n",
    );
    assert_eq!(
        sluice_names(&rules).into_iter().collect::<Vec<_>>(),
        ["sluice_x_total", "sluice_y", "sluice_z"]
    );
    assert_eq!(
        scraped_names("# HELP sluice_h x\n# TYPE sluice_h histogram\nsluice_h_bucket{le=\"1\"} 0\nsluice_g 1\n"),
        ["sluice_g".to_string(), "sluice_h".to_string()].into()
    );
}

#[test]
fn dashboard_and_alerts_query_documented_metrics() {
    let (dashboard, alerts) = queried_names();
    // The panels of the dashboard and the rules need at least these many families; fewer
    // means the extraction (or the files) broke.
    assert!(dashboard.len() >= 15, "{dashboard:?}");
    assert!(alerts.len() >= 10, "{alerts:?}");
    let docs = read("docs/metrics.md");
    for name in dashboard.iter().chain(&alerts) {
        assert!(
            docs.contains(&format!("`{name}`")),
            "{name} is queried by the dashboard or the alert rules but not documented in docs/metrics.md"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Real processes and traffic.

fn connect(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

/// Sends one request (attribute lines) and reads the action.
fn ask(conn: &mut BufReader<TcpStream>, attributes: &str) -> String {
    write!(
        conn.get_mut(),
        "request=smtpd_access_policy\n{attributes}\n"
    )
    .unwrap();
    let mut line = String::new();
    assert_ne!(conn.read_line(&mut line).unwrap(), 0, "connection closed");
    let mut blank = String::new();
    conn.read_line(&mut blank).unwrap();
    line.trim().trim_start_matches("action=").to_string()
}

/// Known traffic for one policy-protocol listener: 3 admitted messages from one sender (the
/// last fills the quota), a 4th refused, a 5th (answered from the edge's over-limit cache
/// where there is one), a request that cannot be evaluated (fallback), and a connection
/// closed on a line too long (frame error).
fn traffic(port: u16, what: &str) {
    let mut conn = connect(port);
    let rcpt = |i: usize| {
        format!("protocol_state=RCPT\nclient_address=192.0.2.1\nsender=alice@example.net\nrecipient=bob@example.com\ninstance={what}{i}\n")
    };
    for i in 0..3 {
        assert_eq!(ask(&mut conn, &rcpt(i)), "DUNNO", "{what}: message {i}");
    }
    for i in 3..5 {
        let a = ask(&mut conn, &rcpt(i));
        assert!(a.starts_with("REJECT"), "{what}: message {i}: {a}");
    }
    let a = ask(&mut conn, "protocol_state=RCPT\n");
    assert!(a.starts_with("DEFER_IF_PERMIT"), "{what}: fallback: {a}");
    drop(conn);

    let mut conn = connect(port);
    let long = "x".repeat(8192);
    write!(conn.get_mut(), "request={long}\n\n").unwrap();
    let mut rest = String::new();
    // The server closes the connection without a reply (or resets it).
    let _ = conn.read_to_string(&mut rest);
    assert!(rest.is_empty(), "{what}: a reply to garbage: {rest}");
}

/// Scrapes until every name in `want` is present in the union of the scrapes (metrics
/// recorded asynchronously, like health probes' gauges, appear a little later), then
/// returns what is missing (empty on success) and the last scrapes.
fn scrape_until(ports: &[(&str, u16)], want: &BTreeSet<String>) -> (Vec<String>, String) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut seen = BTreeSet::new();
        let mut all = String::new();
        for (what, port) in ports {
            let (status, body) = http_get(*port, "/metrics");
            assert_eq!(status, 200, "{what} /metrics: {body}");
            seen.extend(scraped_names(&body));
            all.push_str(&format!("==== {what}\n{body}"));
        }
        let missing: Vec<String> = want.difference(&seen).cloned().collect();
        if missing.is_empty() || Instant::now() >= deadline {
            return (missing, all);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_metric_queried_by_dashboard_and_alerts_is_exposed() {
    let (dashboard, alerts) = queried_names();
    let want: BTreeSet<String> = dashboard.union(&alerts).cloned().collect();

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());
    let policies = policies::sender_quota("senders", "per sender", 3);
    import_policies(BIN, dir.path(), &policies, &db);

    let redis = RedisServer::start();
    let quota = start_quota(BIN, &redis.url());
    let quota_url = format!("http://127.0.0.1:{}", quota.port);
    let edge = start_front(
        BIN,
        "edge",
        "edge",
        &["--database", &db, "--quota", &quota_url],
    );
    let serve = start_front(BIN, "serve", "serve", &["--database", &db]);
    let (edge_port, edge_metrics) = (edge.port, edge.metrics);
    let (serve_port, serve_metrics) = (serve.port, serve.metrics);
    let quota_metrics = quota.metrics;

    traffic(edge_port, "edge");
    traffic(serve_port, "serve");

    let (missing, scrapes) = scrape_until(
        &[
            ("serve", serve_metrics),
            ("edge", edge_metrics),
            ("quota", quota_metrics),
        ],
        &want,
    );
    assert!(
        missing.is_empty(),
        "queried by the dashboard or the alert rules but exposed by no role: {missing:?}\n{scrapes}"
    );
}

// ---------------------------------------------------------------------------------------
// systemd units.

/// `Key=value` lines of a unit file (all values of a repeated key).
fn unit_values<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_units_run_their_role_with_enough_time_to_stop() {
    for (unit, role) in [
        ("sluice.service", "serve"),
        ("sluice-edge.service", "edge"),
        ("sluice-quota.service", "quota"),
    ] {
        let text = read(&format!("deploy/systemd/{unit}"));
        assert_eq!(
            unit_values(&text, "ExecStart"),
            [format!(
                "/usr/local/bin/sluice {role} --config /etc/sluice/{role}.toml"
            )],
            "{unit}"
        );
        assert_eq!(
            unit_values(&text, "ExecStartPre"),
            [format!(
                "/usr/local/bin/sluice {role} --check-config --config /etc/sluice/{role}.toml"
            )],
            "{unit}"
        );
        assert_eq!(unit_values(&text, "KillSignal"), ["SIGTERM"], "{unit}");
        assert_eq!(unit_values(&text, "User"), ["sluice"], "{unit}");
        assert_eq!(unit_values(&text, "ProtectSystem"), ["strict"], "{unit}");
        assert_eq!(unit_values(&text, "NoNewPrivileges"), ["yes"], "{unit}");
        // Any exit systemd did not ask for is restarted (SIGHUP is a clean exit to systemd,
        // so on-failure would not restart after it); `systemctl reload` sends SIGHUP, which
        // the roles handle without stopping.
        assert_eq!(unit_values(&text, "Restart"), ["always"], "{unit}");
        assert_eq!(
            unit_values(&text, "ExecReload"),
            ["/bin/kill -HUP $MAINPID"],
            "{unit}"
        );
        // Room for the default connection caps (Postfix and HTTP) and the process's own files.
        let nofile: u64 = unit_values(&text, "LimitNOFILE")[0].parse().unwrap();
        assert!(nofile >= 8192, "{unit}: LimitNOFILE={nofile}");
        // A configuration error (exit 64) is not retried.
        assert_eq!(
            unit_values(&text, "RestartPreventExitStatus"),
            ["64"],
            "{unit}"
        );
        let stop: u64 = unit_values(&text, "TimeoutStopSec")[0].parse().unwrap();
        // The example configs keep the default grace (10 s) or set it; systemd must wait
        // longer than that before SIGKILL.
        let grace = match role {
            "serve" => grace_of(&read("deploy/systemd/serve.toml")),
            "edge" => grace_of(&read("deploy/cluster/edge-1.toml")),
            _ => grace_of(&read("deploy/cluster/quota-1.toml")),
        };
        assert!(
            stop > grace,
            "{unit}: TimeoutStopSec={stop} must exceed shutdown_grace_secs={grace}"
        );
    }
    let serve = read("deploy/systemd/sluice.service");
    assert_eq!(unit_values(&serve, "StateDirectory"), ["sluice"]);
    assert!(read("deploy/systemd/serve.toml")
        .contains("database = \"sqlite:///var/lib/sluice/sluice.db\""));
}

/// `shutdown_grace_secs` of a config file (10 when absent, the default).
fn grace_of(toml: &str) -> u64 {
    toml.lines()
        .find_map(|l| l.strip_prefix("shutdown_grace_secs"))
        .map(|v| v.trim_start_matches([' ', '=']).trim().parse().unwrap())
        .unwrap_or(10)
}

#[test]
fn example_serve_config_is_valid() {
    let out = Command::new(BIN)
        .args([
            "serve",
            "--check-config",
            "--config",
            root().join("deploy/systemd/serve.toml").to_str().unwrap(),
        ])
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_METRICS_LISTEN")
        .env_remove("SLUICE_ADMIN_LISTEN")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for line in [
        "listen = [\"127.0.0.1:10031\"]",
        "metrics_listen = \"127.0.0.1:10032\"",
        "database = \"sqlite:///var/lib/sluice/sluice.db\"",
        "shutdown_grace_secs = 10",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}
