//! `buckets` is capped where counters live in Redis (docs/quotas.md, "Sub-buckets in
//! Redis"): an edge, the `sluice admin` role (which reads the edges' counters with it), or
//! `sluice serve --redis`, refuses more than 512 at `--check-config` and at start (exit code
//! 64, naming the setting and the cap); in-process counters keep the engine's range (up to
//! 3,600).

use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn check_config(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--check-config")
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_BUCKETS")
        .env_remove("SLUICE_REDIS")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const EDGE: [&str; 5] = [
    "edge",
    "--database",
    "postgres://db.internal/sluice",
    "--quota",
    "http://127.0.0.1:1",
];

#[test]
fn an_edge_refuses_more_than_512_buckets() {
    let ok = check_config(&[&EDGE[..], &["--buckets", "512"]].concat());
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).lines().any(|l| l == "buckets = 512"),
        "{}",
        text(&ok)
    );
    let out = check_config(&[&EDGE[..], &["--buckets", "3600"]].concat());
    let t = text(&out);
    assert_eq!(out.status.code(), Some(64), "{t}");
    assert!(
        t.contains("buckets = 3,600 is above 512, the most with counters in Redis"),
        "{t}"
    );
    assert!(t.contains("docs/quotas.md"), "{t}");
}

#[test]
fn serve_caps_buckets_only_with_redis() {
    let db = "sqlite:///nonexistent/never-opened.db";
    let out = check_config(&["serve", "--database", db, "--buckets", "3600"]);
    assert!(out.status.success(), "in process: {}", text(&out));
    let out = check_config(&[
        "serve",
        "--database",
        db,
        "--buckets",
        "3600",
        "--redis",
        "redis://127.0.0.1:1",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("above 512"), "{}", text(&out));
    let out = check_config(&["serve", "--database", db, "--buckets", "3601"]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("between 1 and 3600"), "{}", text(&out));
}

#[test]
fn the_admin_role_takes_the_edges_buckets_with_their_cap() {
    let admin = [
        "admin",
        "--database",
        "postgres://db.internal/sluice",
        "--admin-listen",
        "127.0.0.1:10035",
    ];
    let ok = check_config(&admin);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).lines().any(|l| l == "buckets = 60"),
        "the default: {}",
        text(&ok)
    );
    let ok = check_config(&[&admin[..], &["--buckets", "6"]].concat());
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).lines().any(|l| l == "buckets = 6"),
        "{}",
        text(&ok)
    );
    let out = check_config(&[&admin[..], &["--buckets", "600"]].concat());
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(text(&out).contains("above 512"), "{}", text(&out));
}
