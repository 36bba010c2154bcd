//! Accounting's totals in a real `sluice serve` on a SQLite policy database: requests over
//! TCP (RCPT and END-OF-MESSAGE) are counted, the background writer stores the sums, and
//! `sluice accounting report` (table and JSON), `GET /api/accounting/report` and the
//! Accounting page show them; `sluice_accounting_total` counts the requests.

mod admin_support;

use admin_support::*;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice_engine::accounting::period::{period_at, time_zone, PeriodKind};
use sluice_test_support::{
    ask_blocking, free_port, http, http_get, import_policies, output_text, start_front,
    wait_listening,
};

const POLICIES: &str = r#"
[[policy]]
name = "everyone"
priority = 10

  [[policy.member]]

  [[policy.accounting]]
  name = "per domain"
  track = "Sender:@domain"
  period = "month"
  recipient_count_limit = 3
  verdict = "REJECT"
"#;

fn rcpt(sender: &str, recipient: &str, instance: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nhelo_name=mx.example.net\nsender={sender}\nrecipient={recipient}\nsasl_username=\ninstance={instance}\nsize=0"
    )
}

fn eom(sender: &str, instance: &str, size: u64) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nclient_address=192.0.2.7\nhelo_name=mx.example.net\nsender={sender}\nrecipient=\nrecipient_count=2\nsasl_username=\ninstance={instance}\nsize={size}"
    )
}

/// Polls `f` until it returns `Some` (the writer stores every second; at most 15 s).
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn report(db: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["accounting", "report", "--database", db])
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .output()
        .expect("run sluice accounting report");
    assert!(out.status.success(), "{}", output_text(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn totals_reach_the_report_the_api_and_the_page() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("policies.db").display());
    import_policies(BIN, dir.path(), POLICIES, &db);
    let token = admin_with_token(&db);
    let admin_port = free_port();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let serve = start_front(
        BIN,
        "sluice serve with accounting",
        "serve",
        &["--database", &db, "--admin-listen", &admin_listen],
    );
    wait_listening(admin_port, Duration::from_secs(20), "admin service");
    // The month the server counts in (it reads the system clock, as this test does).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let month = period_at(PeriodKind::Month, &time_zone("UTC").unwrap(), now)
        .unwrap()
        .key;

    let ask = |r: &str| ask_blocking(serve.port, r);
    assert_eq!(ask(&rcpt("a@x.org", "1@y.org", "m1")), "DUNNO");
    assert_eq!(ask(&rcpt("a@x.org", "2@y.org", "m1")), "DUNNO");
    assert_eq!(ask(&eom("a@x.org", "m1", 5000)), "DUNNO");
    assert_eq!(ask(&rcpt("b@x.org", "1@y.org", "m2")), "DUNNO");
    assert_eq!(
        ask(&rcpt("b@x.org", "2@y.org", "m2")),
        "REJECT Policy rejection; Message count exceeded",
        "the fourth recipient from x.org this month"
    );
    assert_eq!(ask(&rcpt("c@other.org", "1@y.org", "m3")), "DUNNO");

    let path = format!("/api/accounting/report?period={month}");
    let auth = format!("Bearer {token}");
    let json = wait_for("both domains in the report", || {
        let r = http(admin_port, "GET", &path, &[("Authorization", &auth)], None);
        assert_eq!(r.status, 200, "{}", r.body);
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        let rows = v["rows"].as_array().unwrap();
        let x = rows.iter().find(|r| r["track"] == "Sender:@x.org")?;
        // Everything of x.org written (the writer may have split it over batches).
        (rows.len() == 2 && x["bytes"] == 5000 && x["recipients"] == 3).then_some(v)
    });
    assert_eq!(json["period"], month.as_str());
    assert_eq!(json["kind"], "month");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(
        rows[0]["track"], "Sender:@x.org",
        "most messages first: {json}"
    );
    assert_eq!(rows[0]["policy"], "everyone");
    assert_eq!(rows[0]["name"], "per domain");
    assert_eq!(
        rows[0]["messages"], 2,
        "m1 and m2; the refused RCPT counted nothing"
    );
    assert_eq!(rows[1]["track"], "Sender:@other.org");
    assert_eq!(
        (rows[1]["messages"].as_i64(), rows[1]["recipients"].as_i64()),
        (Some(1), Some(1))
    );

    let bad = http(
        admin_port,
        "GET",
        "/api/accounting/report?period=2026-13",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.body.contains("\"field\":\"period\""), "{}", bad.body);
    let page = http(
        admin_port,
        "GET",
        &format!("/accounting?period={month}"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Sender:@other.org"), "{}", page.body);

    let table = report(&db, &["--period", &month]);
    assert!(
        table.starts_with(&format!("Accounting totals for {month} (month)\n")),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>()
                == [
                    "everyone",
                    "per",
                    "domain",
                    "Sender:@x.org",
                    "2",
                    "3",
                    "5000"
                ]),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&report(&db, &["--period", &month, "--json"])).unwrap();
    assert_eq!(json["rows"].as_array().unwrap().len(), 2, "{json}");
    let empty = report(&db, &["--period", "2001-W01"]);
    assert!(empty.contains("nothing counted"), "{empty}");
    let out = Command::new(BIN)
        .args([
            "accounting",
            "report",
            "--database",
            &db,
            "--period",
            "2026-02-30",
        ])
        .env_remove("SLUICE_DATABASE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        output_text(&out).contains("bad period"),
        "{}",
        output_text(&out)
    );

    let (_, metrics) = http_get(serve.metrics, "/metrics");
    let counted = metrics
        .lines()
        .find(|l| l.starts_with("sluice_accounting_total{result=\"counted\"}"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok());
    assert_eq!(
        counted,
        Some(5.0),
        "4 RCPTs and 1 END-OF-MESSAGE:\n{metrics}"
    );
    assert!(
        metrics.contains("sluice_accounting_total{result=\"refused\"} 1"),
        "{metrics}"
    );
}
