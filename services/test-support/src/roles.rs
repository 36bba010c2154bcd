//! The `sluice` binary's roles as tests start them: real processes on free 127.0.0.1
//! ports, their output in the process log (see [`Process`]). The binary's path comes from
//! the caller (`env!("CARGO_BIN_EXE_sluice")` in the `sluice` crate's tests).

use crate::blocking::output_text;
use crate::processes::{free_port, Process};
use std::path::Path;
use std::process::Command;

/// A running role and its ports.
pub struct RoleProcess {
    /// The process (killed on drop).
    pub process: Process,
    /// The policy port (serve, edge) or the gRPC port (quota).
    pub port: u16,
    /// The metrics listener's port.
    pub metrics: u16,
}

/// Writes `policies` (a policy file) to `dir/policies.toml` and imports it into `db` with
/// `sluice policy import` (without reading a server's metrics). Panics with the command's
/// output if the import fails.
pub fn import_policies(bin: &str, dir: &Path, policies: &str, db: &str) {
    let file = dir.join("policies.toml");
    std::fs::write(&file, policies).expect("write the policy file");
    let out = Command::new(bin)
        .args(["policy", "import"])
        .arg(&file)
        .args(["--database", db, "--server", "off"])
        .env_remove("SLUICE_DATABASE")
        .output()
        .expect("run sluice policy import");
    assert!(out.status.success(), "import failed: {}", output_text(&out));
}

/// Starts `sluice ROLE --listen 127.0.0.1:P --metrics-listen 127.0.0.1:M EXTRA...` (`role`
/// is `serve` or `edge`; EXTRA names the database, the quota service...) and waits until
/// the policy port listens. `name` labels the process in panics.
pub fn start_front(bin: &str, name: &str, role: &str, extra: &[&str]) -> RoleProcess {
    let (port, metrics) = (free_port(), free_port());
    let mut args = vec![
        role.to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    RoleProcess {
        process: Process::start(name, bin, &args, Some(port)),
        port,
        metrics,
    }
}

/// Starts `sluice quota --redis URL --grpc-listen 127.0.0.1:G --metrics-listen
/// 127.0.0.1:M` and waits until the gRPC port listens.
pub fn start_quota(bin: &str, redis_url: &str) -> RoleProcess {
    start_quota_with(bin, redis_url, &[])
}

/// [`start_quota`] with `extra` flags (TLS, client authentication...).
pub fn start_quota_with(bin: &str, redis_url: &str, extra: &[&str]) -> RoleProcess {
    let (port, metrics) = (free_port(), free_port());
    let mut args: Vec<String> = vec![
        "quota".into(),
        "--redis".into(),
        redis_url.into(),
        "--grpc-listen".into(),
        format!("127.0.0.1:{port}"),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics}"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    RoleProcess {
        process: Process::start("sluice quota", bin, &args, Some(port)),
        port,
        metrics,
    }
}
