//! Shared by the admin tests that run `sluice serve` with its admin service
//! (`admin_service.rs`, `admin_browser.rs`, `history.rs`, and the cluster tests
//! `cluster_admin.rs`, `cluster_history.rs`): the CLI with a password on
//! standard input, the first account and its API token, and waiting until the server serves
//! what is stored.
#![allow(dead_code)]

use sluice_test_support::{http_get, output_text};
use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The password of every test account (long enough for the 12-character minimum).
pub const PASSWORD: &str = "a long enough admin password";

/// Runs `sluice ARGS` with `stdin` as standard input (no `SLUICE_DATABASE` inherited).
pub fn sluice_with_stdin(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run sluice");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Writes `policies` (TOML) to a file and imports them into `db` with `sluice policy
/// import`.
pub fn import_policies(db: &str, policies: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policies.toml");
    std::fs::write(&file, policies).unwrap();
    let out = sluice_with_stdin(
        &["policy", "import", file.to_str().unwrap(), "--database", db],
        "",
    );
    assert!(out.status.success(), "policy import: {}", output_text(&out));
}

/// Adds the admin account `alice` (password [`PASSWORD`]) to `db` and an API token `ci` for
/// it; returns the token.
pub fn admin_with_token(db: &str) -> String {
    account_with_token(db, "admin")
}

/// Adds the account `alice` with `role` (password [`PASSWORD`]) to `db` and an API token
/// `ci` for it; returns the token.
pub fn account_with_token(db: &str, role: &str) -> String {
    let out = sluice_with_stdin(
        &[
            "admin",
            "user",
            "add",
            "alice",
            "--role",
            role,
            "--database",
            db,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let out = sluice_with_stdin(
        &[
            "admin",
            "token",
            "add",
            "ci",
            "--user",
            "alice",
            "--database",
            db,
        ],
        "",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("sluice_") && token.len() > 60, "{token}");
    token
}

/// The policy version the server with the metrics listener on `metrics` serves.
pub fn served_version(metrics: u16) -> Option<i64> {
    let (_, text) = http_get(metrics, "/metrics");
    text.lines()
        .find(|l| l.starts_with("sluice_policy_set_version"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as i64)
}

/// The policy version stored in the SQLite database `db`, read with SQL (not through
/// sluice).
pub fn stored_version(db: &str) -> i64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = sqlx::SqlitePool::connect(db).await.unwrap();
        let v: i64 = sqlx::query_scalar("SELECT version FROM policy_version WHERE id = 1")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        v
    })
}

/// Waits until the server on `metrics` serves what is stored in `db` now.
pub fn wait_until_served(metrics: u16, db: &str) {
    let stored = stored_version(db);
    let start = Instant::now();
    while served_version(metrics).is_none_or(|v| v < stored) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the server did not load version {stored}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
