//! Verdict log lines of a real `sluice serve`: with `--log-format json` each verdict field
//! is its own JSON key; with `--log-style policyd` the lines are Policyd 2's.

use sluice_test_support::{ask_blocking, import_policies, policies, start_front, Process};
use std::path::Path;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// A policy database with one quota: `limit` messages per sender per hour, then REJECT.
fn database(dir: &Path, limit: u64) -> String {
    let db = format!("sqlite://{}", dir.join("sluice.db").display());
    let policies = policies::sender_quota("Outbound", "per sender", limit);
    import_policies(BIN, dir, &policies, &db);
    db
}

/// `sluice serve` on `db` with the log options `log`: the process and its policy port.
fn serve(db: &str, log: &[&str]) -> (Process, u16) {
    let mut args = vec!["--database", db];
    args.extend_from_slice(log);
    let r = start_front(BIN, "serve", "serve", &args);
    (r.process, r.port)
}

fn ask(port: u16, helo: &str, instance: &str) -> String {
    ask_blocking(
        port,
        &format!(
            "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\n\
             helo_name={helo}\nsender=alice@example.com\nrecipient=bob@example.org\ninstance={instance}"
        ),
    )
}

/// Waits (at most 5 s) until the log has `n` lines containing `needle`; returns them.
fn lines_with(p: &Process, needle: &str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let found: Vec<String> = p
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_string)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{n} lines with {needle:?} expected; log:\n{}",
            p.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn json_verdict_lines_have_one_key_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 1);
    let (p, port) = serve(&db, &["--log-format", "json"]);
    assert_eq!(ask(port, "mx.example.net", "m1"), "DUNNO");
    // Request text that would forge fields in a text line is one JSON value.
    let helo = "evil, action=OK, policy=Forged \"x\"";
    assert!(ask(port, helo, "m2").starts_with("REJECT"));

    let lines = lines_with(&p, "\"message\":\"Verdict\"", 1);
    assert_eq!(lines.len(), 1, "one verdict: {lines:?}");
    let v: serde_json::Value =
        serde_json::from_str(&lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]));
    let expect = [
        ("message", "Verdict"),
        ("module", "Quotas"),
        ("action", "reject"),
        ("host", "192.0.2.1"),
        ("helo", helo),
        ("from", "alice@example.com"),
        ("to", "bob@example.org"),
        ("policy", "Outbound"),
        ("quota", "per sender"),
    ];
    for (key, value) in expect {
        assert_eq!(v[key], value, "{key} in {v}");
    }
    // The level as counted: the refused request is not.
    assert_eq!(v["used"], 1, "{v}");
    assert_eq!(v["limit"], 1, "{v}");
    let counter = v["counter"].as_str().unwrap_or_default();
    assert!(counter.ends_with("/Sender:alice@example.com"), "{v}");
    assert!(v.get("rule").is_none() && v.get("mode").is_none(), "{v}");
}

#[test]
fn policyd_style_lines_match_policyds_quota_lines() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path(), 2);
    let (p, port) = serve(&db, &["--log-style", "policyd"]);
    assert_eq!(ask(port, "mx.example.net", "m1"), "DUNNO");
    assert_eq!(ask(port, "mx.example.net", "m2"), "DUNNO");
    assert!(ask(port, "mx.example.net", "m3").starts_with("REJECT"));

    let request = "host=192.0.2.1, helo=mx.example.net, from=alice@example.com, to=bob@example.org";
    let quota = "policy=Outbound, quota=\"per sender\", limit=MessageCount, \
                 track=Sender:alice@example.com, counter=MessageCount";
    let updates = lines_with(&p, "module=Quotas, mode=update", 2);
    assert!(
        updates[0].ends_with(&format!(
            "module=Quotas, mode=update, {request}, reason=quota_update, {quota}, quota=1.00/2 (50.0%)"
        )),
        "{}",
        updates[0]
    );
    assert!(
        updates[1].ends_with(&format!(
            "reason=quota_update, {quota}, quota=2.00/2 (100.0%)"
        )),
        "{}",
        updates[1]
    );
    let refusals = lines_with(&p, "reason=quota_match", 1);
    assert_eq!(refusals.len(), 1, "{refusals:?}");
    assert!(
        refusals[0].ends_with(&format!(
            "module=Quotas, action=reject, {request}, reason=quota_match, {quota}, quota=2.00/2 (100.0%)"
        )),
        "{}",
        refusals[0]
    );
    assert_eq!(
        lines_with(&p, "module=Quotas", 3).len(),
        3,
        "no update line for the refused request"
    );
}
