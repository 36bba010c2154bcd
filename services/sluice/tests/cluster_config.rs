//! The example cluster configuration in `deploy/cluster/` is valid: each file passes
//! `sluice edge|quota --check-config`, resolves to what its comments promise, and is
//! refused by the wrong role.

use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/cluster");

fn check(role: &str, file: &str) -> Output {
    Command::new(BIN)
        .args([role, "--check-config", "--config", &format!("{DIR}/{file}")])
        .env_remove("SLUICE_CONFIG")
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_QUOTA")
        .env_remove("SLUICE_REDIS")
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

#[test]
fn example_edges_are_valid() {
    for i in 1..=3 {
        let out = check("edge", &format!("edge-{i}.toml"));
        let t = text(&out);
        assert!(out.status.success(), "edge-{i}.toml: {t}");
        assert!(
            t.contains(&format!("listen = [\"10.0.0.1{i}:10031\"]")),
            "{t}"
        );
        assert!(
            t.contains("quota = [\"http://10.0.0.21:10033\", \"http://10.0.0.22:10033\"]"),
            "{t}"
        );
        assert!(
            t.contains("database = \"postgres://sluice:***@db.internal"),
            "password redacted: {t}"
        );
        assert!(t.contains("request_deadline_ms = 1000"), "{t}");
    }
}

#[test]
fn example_quota_services_are_valid() {
    for i in 1..=2 {
        let out = check("quota", &format!("quota-{i}.toml"));
        let t = text(&out);
        assert!(out.status.success(), "quota-{i}.toml: {t}");
        assert!(
            t.contains(&format!("grpc_listen = \"10.0.0.2{i}:10033\"")),
            "{t}"
        );
        assert!(t.contains("redis = [\"redis://10.0.0.31:6379\""), "{t}");
    }
}

#[test]
fn a_file_for_the_other_role_is_refused() {
    let out = check("edge", "quota-1.toml");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("`grpc_listen` is not a setting of `sluice edge`"),
        "{}",
        text(&out)
    );
    let out = check("quota", "edge-1.toml");
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out).contains("`quota` is not a setting of `sluice quota`"),
        "{}",
        text(&out)
    );
}
