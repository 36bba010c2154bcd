//! The example cluster configuration in `deploy/cluster/` is valid: each file passes
//! `sluice edge|quota --check-config`, resolves to what its comments promise, and is
//! refused by the wrong role. The certificate and token files the examples name under
//! /etc/sluice are stood in for by test files through the environment (which overrides the
//! file's keys): `--check-config` reads and checks them.

use sluice_test_support::TestPki;
use std::process::{Command, Output};
use std::sync::OnceLock;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");
const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/cluster");

/// Stand-ins for /etc/sluice/tls/* and /etc/sluice/grpc-token: (variable, file).
fn stand_ins() -> &'static Vec<(String, String)> {
    static FILES: OnceLock<(TestPki, Vec<(String, String)>)> = OnceLock::new();
    &FILES
        .get_or_init(|| {
            let pki = TestPki::new("example CA");
            let server = pki.server("quota", &["10.0.0.21", "10.0.0.22"]);
            let token = pki.dir().join("grpc-token");
            std::fs::write(&token, "0f1e2d3c4b5a69788796a5b4c3d2e1f0\n").unwrap();
            let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
            let vars = vec![
                ("SLUICE_GRPC_TLS_CERT_FILE".into(), path(&server.cert)),
                ("SLUICE_GRPC_TLS_KEY_FILE".into(), path(&server.key)),
                ("SLUICE_GRPC_TOKEN_FILE".into(), path(&token)),
                ("SLUICE_QUOTA_TLS_CA_FILE".into(), path(pki.ca_file())),
                ("SLUICE_QUOTA_TOKEN_FILE".into(), path(&token)),
            ];
            (pki, vars)
        })
        .1
}

fn check(role: &str, file: &str) -> Output {
    let envs: Vec<(String, String)> = stand_ins()
        .iter()
        .filter(|(k, _)| {
            k.starts_with(if role == "quota" {
                "SLUICE_GRPC"
            } else {
                "SLUICE_QUOTA"
            })
        })
        .cloned()
        .collect();
    Command::new(BIN)
        .args([role, "--check-config", "--config", &format!("{DIR}/{file}")])
        .envs(envs)
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
            t.contains("quota = [\"https://10.0.0.21:10033\", \"https://10.0.0.22:10033\"]"),
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
