//! Configuration of the long-running roles (`serve`, `edge`, `quota`, `admin`): one TOML file per
//! role (`--config FILE`), overridden by `SLUICE_...` environment variables and flags,
//! validated before any port is bound. Every problem is reported at once, with the key's
//! name; the process then exits with code 64 (`EX_USAGE`).
//!
//! The file's keys are the flags' names with `_` for `-` (`max_connections = 4096`). Each
//! setting is defined once in [`crate::role_args`] (grouped; each role has its groups);
//! what a role refuses is in [`crate::role_check`], the file in [`crate::role_file`]; the
//! defaults are here, in `build`, and shown from here by `--help` and `sluice settings`.

pub use crate::role_args::RoleArgs;
use serde::{Deserialize, Serialize};
use sluice_edge::{EdgeConfig, ListenAddr};
use sluice_engine::EngineSettings;
use sluice_protocol::{Action, Limits};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// The role a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything in one process.
    Serve,
    /// A stateless policy-protocol node calling the quota service.
    Edge,
    /// The gRPC quota service on Redis.
    Quota,
    /// The admin service (web UI and REST API) on its own, on a cluster's PostgreSQL.
    Admin,
}

impl Role {
    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Role::Serve => "serve",
            Role::Edge => "edge",
            Role::Quota => "quota",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard error.
    #[default]
    Stderr,
    /// The local syslog socket `/dev/log`, facility mail.
    Syslog,
}

/// Resolved, validated settings of one role.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The role these settings are for.
    pub role: Role,
    /// Policy-protocol listeners (serve, edge).
    pub listen: Vec<ListenAddr>,
    /// Metrics HTTP listener (`metrics_listen`), if any.
    pub metrics: Option<SocketAddr>,
    /// Whether the metrics listener serves `POST /explain` (serve, edge).
    pub http_explain: bool,
    /// OTLP/gRPC collector; traces are off without one.
    pub otlp_endpoint: Option<String>,
    /// Share of requests traced.
    pub trace_sample_ratio: f64,
    /// Where log lines go.
    pub log_target: LogTarget,
    /// Policy database URL (serve, edge).
    pub database: String,
    /// Edge knobs (serve, edge).
    pub edge: EdgeConfig,
    /// Engine knobs (serve, edge).
    pub engine: EngineSettings,
    /// Database poll interval.
    pub reload_poll: Duration,
    /// How often in-process counters are written to a SQLite policy database (serve without
    /// Redis); `None`: not kept.
    pub counter_flush: Option<Duration>,
    /// Redis URLs (quota; serve when counting in Redis).
    pub redis: Vec<String>,
    /// Timeout of one Redis call.
    pub redis_timeout: Duration,
    /// Replicas a charge waits for (`WAIT`), 0: none.
    pub redis_wait_replicas: usize,
    /// Longest one `WAIT` blocks.
    pub redis_wait_timeout: Duration,
    /// TLS to Redis (`rediss://` URLs).
    pub redis_tls: sluice_redis::RedisTls,
    /// Quota service URLs (edge).
    pub quota: Vec<String>,
    /// Deadline of one quota-service call (edge).
    pub quota_deadline: Duration,
    /// Local over-limit cache (edge).
    pub over_limit_cache: bool,
    /// Lease size as a multiple of a request's cost, 0 = no leases (edge).
    pub lease_multiple: u64,
    /// gRPC listener (quota).
    pub grpc_listen: Option<SocketAddr>,
    /// TLS and client authentication of the gRPC listener (quota).
    pub grpc_security: crate::grpc_security::ServerFiles,
    /// TLS and token of the calls to the quota service (edge).
    pub quota_security: crate::grpc_security::ClientFiles,
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
    /// The admin service's listener (serve, admin), if any.
    pub admin_listen: Option<SocketAddr>,
    /// Whether the admin session cookie is marked `Secure` (always with TLS).
    pub admin_secure_cookies: bool,
    /// The admin listener's TLS certificate chain and key (PEM files), read and checked at
    /// start; `None`: plain HTTP.
    pub admin_tls: Option<AdminTls>,
    /// The refusal history (serve, edge) and alerts (serve, edge, admin).
    pub history: crate::history::HistoryConfig,
}

/// The admin listener's TLS identity: the files as configured and the rustls configuration
/// made from them.
#[derive(Debug, Clone)]
pub struct AdminTls {
    /// `admin_tls_cert_file`.
    pub cert_file: std::path::PathBuf,
    /// `admin_tls_key_file`.
    pub key_file: std::path::PathBuf,
    /// The server configuration built from them.
    pub config: std::sync::Arc<rustls::ServerConfig>,
}

/// Settings a role cannot run without (no default): (role, key, what it is). An edge serves
/// the cluster's shared policies: a forgotten database must not become an empty SQLite file
/// in the working directory (every request would get DUNNO).
const REQUIRED: &[(Role, &str, &str)] = &[
    (Role::Edge, "database", "the policy database"),
    (Role::Edge, "quota", "the quota service URLs"),
    (Role::Quota, "redis", "Redis URLs"),
    (
        Role::Admin,
        "database",
        "the cluster's policy database (postgres://...)",
    ),
    (
        Role::Admin,
        "admin_listen",
        "the admin service's listener address",
    ),
];

/// The settings `role` cannot run without: they have no default.
pub fn required(role: Role) -> Vec<&'static str> {
    REQUIRED
        .iter()
        .filter(|(r, _, _)| *r == role)
        .map(|(_, key, _)| *key)
        .collect()
}

/// Reads the file (if any), overlays flags and environment, applies defaults and validates.
pub fn resolve(args: RoleArgs, role: Role) -> Result<Settings, Vec<String>> {
    let mut errors = Vec::new();
    let args = match args.config.clone() {
        Some(path) => crate::role_file::layer(args, &path, role, &mut errors),
        None => args,
    };
    let settings = build(&args, role, &mut errors);
    let entries = settings.entries();
    for (_, key, what) in REQUIRED.iter().filter(|(r, _, _)| *r == role) {
        let empty = entries
            .iter()
            .any(|(k, v)| k == key && matches!(v.as_str(), "\"\"" | "[]" | "\"off\""));
        if empty {
            errors.push(format!(
                "`sluice {role}` needs {what}: set `{key}` (in the --config file, --{} or {})",
                key.replace('_', "-"),
                crate::role_check::env_name(key)
            ));
        }
    }
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}

/// Every setting's default for `role`, as `--check-config` prints it (`key`, value).
pub fn defaults(role: Role) -> Vec<(&'static str, String)> {
    build(&RoleArgs::default(), role, &mut Vec::new()).entries()
}

/// Applies defaults to `a` and validates each value, pushing every problem to `errors`;
/// the result is meaningful only when none was pushed.
fn build(a: &RoleArgs, role: Role, errors: &mut Vec<String>) -> Settings {
    let (common, policy) = (&a.common, &a.policy);
    let mut listen = Vec::new();
    for l in policy
        .listen
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1:10031".into()])
    {
        match l.parse::<ListenAddr>() {
            Ok(addr) => listen.push(addr),
            Err(e) => errors.push(format!("listen {l:?}: {e}")),
        }
    }
    let default_admin = match role {
        Role::Quota => "127.0.0.1:10034",
        Role::Admin => "127.0.0.1:10036",
        Role::Serve | Role::Edge => "127.0.0.1:10032",
    };
    let admin = match common.metrics_listen.as_deref().unwrap_or(default_admin) {
        "off" | "" => None,
        s => s
            .parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("metrics_listen {s:?}: {e}")))
            .ok(),
    };
    let admin_listen = match a.admin.admin_listen.as_deref().unwrap_or("off") {
        "off" | "" => None,
        s => s
            .parse::<SocketAddr>()
            .map_err(|e| {
                errors.push(format!(
                    "admin_listen {s:?}: {e} (expected an address such as 127.0.0.1:10035, or off)"
                ))
            })
            .ok(),
    };
    let otlp_endpoint = common.otlp_endpoint.clone().filter(|e| !e.is_empty());
    if let Some(e) = &otlp_endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            errors.push(format!("otlp_endpoint {e:?}: expected http://host:port"));
        }
    }
    let trace_sample_ratio = common.trace_sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&trace_sample_ratio) {
        errors.push(format!(
            "trace_sample_ratio must be between 0.0 and 1.0, not {trace_sample_ratio}"
        ));
    }
    let fallback_text = policy.fallback_action.clone().unwrap_or_else(|| {
        "DEFER_IF_PERMIT 4.3.0 Policy service unavailable, try again later".into()
    });
    let fallback = fallback_text
        .parse::<Action>()
        .map_err(|e| errors.push(format!("fallback_action: {e}")))
        .unwrap_or(Action::Dunno);
    let positive = |errors: &mut Vec<String>, key: &str, v: u64| {
        if v == 0 {
            errors.push(format!("{key} must be at least 1"));
        }
        v
    };
    let max_connections = positive(
        errors,
        "max_connections",
        policy.max_connections.unwrap_or(4096) as u64,
    ) as usize;
    let max_per_client = positive(
        errors,
        "max_connections_per_client",
        policy.max_connections_per_client.unwrap_or(512) as u64,
    ) as usize;
    let idle = positive(
        errors,
        "idle_timeout_secs",
        policy.idle_timeout_secs.unwrap_or(330),
    );
    let deadline = positive(
        errors,
        "request_deadline_ms",
        policy.request_deadline_ms.unwrap_or(1000),
    );
    let max_line = policy.max_line.unwrap_or(4096);
    let max_request = policy.max_request.unwrap_or(65536);
    if max_line < 256 {
        errors.push("max_line must be at least 256".into());
    }
    if max_request < max_line {
        errors.push("max_request must be at least max_line".into());
    }
    let buckets = a.window.buckets.unwrap_or(60);
    // The engine's range, and a lower cap where counters live in Redis (an edge's quota
    // service, whose counters the admin role reads, or serve --redis).
    let in_redis = matches!(role, Role::Edge | Role::Admin)
        || a.redis.redis.as_ref().is_some_and(|r| !r.is_empty());
    if let Err(e) = sluice_engine::bounds::check_buckets(buckets, in_redis) {
        errors.push(e);
    }
    let reload_poll = positive(
        errors,
        "reload_poll_ms",
        policy.reload_poll_ms.unwrap_or(250),
    );
    let counter_flush_ms = a.counters.counter_flush_ms.unwrap_or(1000);
    if counter_flush_ms > 3_600_000 {
        errors.push("counter_flush_ms must be at most 3600000 (an hour; 0 turns it off)".into());
    }
    let redis = a.redis.redis.clone().unwrap_or_default();
    let quota = a.quota_client.quota.clone().unwrap_or_default();
    let quota_deadline = positive(
        errors,
        "quota_deadline_ms",
        a.edge_quota.quota_deadline_ms.unwrap_or(250),
    );
    let redis_timeout = positive(
        errors,
        "redis_timeout_ms",
        a.redis.redis_timeout_ms.unwrap_or(250),
    );
    let redis_wait_replicas = a.redis.redis_wait_replicas.unwrap_or(1);
    let redis_wait_timeout = positive(
        errors,
        "redis_wait_timeout_ms",
        a.redis.redis_wait_timeout_ms.unwrap_or(100),
    );
    if redis_wait_timeout >= redis_timeout {
        errors.push(format!(
            "redis_wait_timeout_ms ({redis_wait_timeout}) must be less than redis_timeout_ms ({redis_timeout}): a WAIT blocks the connection it is sent on"
        ));
    }
    let given = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
    let redis_tls = sluice_redis::RedisTls {
        ca_file: given(&a.redis.redis_tls_ca_file).map(Into::into),
        client_cert: given(&a.redis.redis_tls_cert_file).map(Into::into),
        client_key: given(&a.redis.redis_tls_key_file).map(Into::into),
        server_name: given(&a.redis.redis_tls_server_name),
    };
    let mut urls_ok = true;
    for u in &redis {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            errors.push(format!(
                "redis {:?}: expected redis://[user:password@]host:port or rediss://…",
                redact(u)
            ));
            urls_ok = false;
        }
    }
    if urls_ok && !redis.is_empty() {
        // URL syntax, and for rediss:// the TLS files (read now) and the server name.
        if let Err(e) = sluice_redis::check_settings(&redis, &redis_tls) {
            errors.push(e.to_string());
        }
    }
    if redis_tls != sluice_redis::RedisTls::default()
        && !redis.iter().any(|u| u.starts_with("rediss://"))
    {
        errors.push(
            "redis_tls_* settings apply to rediss:// URLs only: use rediss:// for TLS to Redis, or remove them".into(),
        );
    }
    for u in &quota {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errors.push(format!(
                "quota {u:?}: expected http://host:port or https://host:port"
            ));
        }
    }
    if role == Role::Edge && deadline <= quota_deadline {
        errors.push(format!(
            "request_deadline_ms ({deadline}) must be larger than quota_deadline_ms ({quota_deadline}) so the fallback action can still be sent in time"
        ));
    }
    let grpc_listen = {
        let s = a
            .grpc
            .grpc_listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:10033".into());
        s.parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("grpc_listen {s:?}: {e}")))
            .ok()
    };
    let (grpc_security, quota_security) = security_files(a, role, grpc_listen, &quota, errors);
    let shutdown_grace = Duration::from_secs(common.shutdown_grace_secs.unwrap_or(10));
    let dns = dns_config(policy, deadline, errors);
    let edge = EdgeConfig {
        max_connections,
        max_connections_per_client: max_per_client,
        idle_timeout: Duration::from_secs(idle),
        request_deadline: Duration::from_millis(deadline),
        limits: Limits {
            max_line_len: max_line,
            max_request_len: max_request,
            ..Limits::default()
        },
        fallback_action: fallback.clone(),
        shutdown_grace,
        worker_threads: policy.worker_threads.unwrap_or(0),
        dns,
        ..EdgeConfig::default()
    };
    Settings {
        role,
        listen,
        metrics: admin,
        http_explain: policy.http_explain.unwrap_or(false),
        otlp_endpoint,
        trace_sample_ratio,
        log_target: common.log_target.unwrap_or_default(),
        database: database_url(a, role, errors),
        edge,
        engine: EngineSettings {
            monitor_all: policy.monitor.unwrap_or(false),
            buckets_per_period: buckets,
            state_failure_action: fallback,
        },
        reload_poll: Duration::from_millis(reload_poll),
        counter_flush: (counter_flush_ms > 0).then(|| Duration::from_millis(counter_flush_ms)),
        redis,
        redis_timeout: Duration::from_millis(redis_timeout),
        redis_wait_replicas,
        redis_wait_timeout: Duration::from_millis(redis_wait_timeout),
        redis_tls,
        quota,
        quota_deadline: Duration::from_millis(quota_deadline),
        over_limit_cache: a.edge_quota.over_limit_cache.unwrap_or(true),
        lease_multiple: a.edge_quota.lease_multiple.unwrap_or(64),
        grpc_listen,
        grpc_security,
        quota_security,
        shutdown_grace,
        admin_listen,
        admin_secure_cookies: a.admin.admin_secure_cookies.unwrap_or(false),
        admin_tls: admin_tls(a, role, errors),
        history: crate::history::HistoryConfig::build(&a.history, &a.alerts, role, errors),
    }
}

/// The policy database URL: serve's default is a SQLite file; an edge and the admin role
/// have none (they serve a cluster's shared database), and the admin role refuses SQLite
/// (`sluice serve` serves the admin service of a SQLite file itself).
fn database_url(a: &RoleArgs, role: Role, errors: &mut Vec<String>) -> String {
    let given = a.database.database.clone();
    let url = match (given, role) {
        (None, Role::Serve) => sluice_store::default_database_url(),
        (Some(d), Role::Edge | Role::Admin) if d.trim().is_empty() => String::new(),
        (d, _) => d.unwrap_or_default(),
    };
    if role == Role::Admin && url.trim_start().to_ascii_lowercase().starts_with("sqlite:") {
        errors.push(format!(
            "database {url:?}: `sluice admin` serves a cluster's PostgreSQL database (postgres://...); for a SQLite file, serve the admin service from `sluice serve --admin-listen ADDR`"
        ));
    }
    url
}

/// The admin listener's TLS files, read and checked now (both or neither; the PEM parses;
/// the key belongs to the certificate), so `--check-config` reports what start would.
fn admin_tls(a: &RoleArgs, role: Role, errors: &mut Vec<String>) -> Option<AdminTls> {
    if !matches!(role, Role::Serve | Role::Admin) {
        return None;
    }
    let nonempty = |p: &Option<std::path::PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let (cert, key) = (
        nonempty(&a.admin.admin_tls_cert_file),
        nonempty(&a.admin.admin_tls_key_file),
    );
    let (cert_file, key_file) = match (cert, key) {
        (None, None) => return None,
        (Some(c), Some(k)) => (c, k),
        (Some(_), None) => {
            errors.push(
                "admin_tls_cert_file needs admin_tls_key_file (the certificate's private key)"
                    .into(),
            );
            return None;
        }
        (None, Some(_)) => {
            errors.push("admin_tls_key_file needs admin_tls_cert_file (the certificate chain it belongs to)".into());
            return None;
        }
    };
    let read = |key: &str, path: &std::path::Path, errors: &mut Vec<String>| {
        std::fs::read(path)
            .map_err(|e| errors.push(format!("{key} {}: cannot read: {e}", path.display())))
            .ok()
    };
    let cert_pem = read("admin_tls_cert_file", &cert_file, errors);
    let key_pem = read("admin_tls_key_file", &key_file, errors);
    let (cert_pem, key_pem) = (cert_pem?, key_pem?);
    match sluice_admin::tls::server_config(&cert_pem, &key_pem) {
        Ok(config) => Some(AdminTls {
            cert_file,
            key_file,
            config,
        }),
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    }
}

/// The gRPC link's TLS and authentication files; for the role that uses them, read and
/// checked now (files readable, PEM parses, certificates match keys, tokens usable; the
/// quota service refuses an exposed listener without client authentication) so
/// `--check-config` reports what start would.
fn security_files(
    a: &RoleArgs,
    role: Role,
    grpc_listen: Option<SocketAddr>,
    quota: &[String],
    errors: &mut Vec<String>,
) -> (
    crate::grpc_security::ServerFiles,
    crate::grpc_security::ClientFiles,
) {
    let nonempty = |p: &Option<std::path::PathBuf>| p.clone().filter(|p| !p.as_os_str().is_empty());
    let (g, q) = (&a.grpc, &a.quota_client);
    let server = crate::grpc_security::ServerFiles {
        cert: nonempty(&g.grpc_tls_cert_file),
        key: nonempty(&g.grpc_tls_key_file),
        client_ca: nonempty(&g.grpc_client_ca_file),
        token: nonempty(&g.grpc_token_file),
        allow_unauthenticated: g.grpc_allow_unauthenticated.unwrap_or(false),
    };
    let client = crate::grpc_security::ClientFiles {
        ca: nonempty(&q.quota_tls_ca_file),
        cert: nonempty(&q.quota_tls_cert_file),
        key: nonempty(&q.quota_tls_key_file),
        server_name: q.quota_tls_server_name.clone().filter(|s| !s.is_empty()),
        token: nonempty(&q.quota_token_file),
    };
    let problems = match role {
        Role::Quota => crate::grpc_security::server_security(&server, grpc_listen).err(),
        Role::Edge => crate::grpc_security::client_security(&client, quota).err(),
        // The admin role reaches the quota service only for live counters, when given.
        Role::Admin if !quota.is_empty() => {
            crate::grpc_security::client_security(&client, quota).err()
        }
        Role::Serve | Role::Admin => None,
    };
    errors.extend(problems.unwrap_or_default());
    (server, client)
}

/// Resolves, or prints every error and returns the exit code 64. The process environment's
/// `SLUICE_*` variables are checked too (see [`crate::role_check`]): warnings are printed,
/// errors refuse the configuration.
pub fn resolve_or_exit(args: RoleArgs, role: Role) -> Result<Settings, std::process::ExitCode> {
    let names = std::env::vars_os().map(|(name, _)| name.to_string_lossy().into_owned());
    let (mut errors, warnings) = crate::role_check::env_problems(role, names);
    for w in warnings {
        eprintln!("sluice {role}: configuration: warning: {w}");
    }
    let resolved = resolve(args, role);
    if let Err(e) = &resolved {
        errors.extend(e.iter().cloned());
    }
    match resolved {
        Ok(settings) if errors.is_empty() => Ok(settings),
        _ => {
            for e in errors {
                eprintln!("sluice {role}: configuration: {e}");
            }
            Err(std::process::ExitCode::from(crate::EX_USAGE))
        }
    }
}

impl Settings {
    /// Every setting as `--check-config` prints it (`key`, TOML value), whatever the role:
    /// no secrets (URLs lose passwords).
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        let redis: Vec<String> = self.redis.iter().map(|u| redact(u)).collect();
        let log_target = match self.log_target {
            LogTarget::Stderr => "stderr",
            LogTarget::Syslog => "syslog",
        };
        let metrics = self.metrics.map_or("off".to_string(), |a| a.to_string());
        let grpc = self.grpc_listen.map(|g| g.to_string()).unwrap_or_default();
        let path = |p: &Option<std::path::PathBuf>| {
            format!(
                "{:?}",
                p.as_ref()
                    .map_or(String::new(), |p| p.display().to_string())
            )
        };
        vec![
            ("listen", format!("{listen:?}")),
            ("metrics_listen", format!("{metrics:?}")),
            ("http_explain", self.http_explain.to_string()),
            (
                "otlp_endpoint",
                format!("{:?}", self.otlp_endpoint.as_deref().unwrap_or("")),
            ),
            (
                "trace_sample_ratio",
                format!("{:?}", self.trace_sample_ratio),
            ),
            ("log_target", format!("{log_target:?}")),
            ("database", format!("{:?}", redact(&self.database))),
            ("monitor", self.engine.monitor_all.to_string()),
            (
                "fallback_action",
                format!("{:?}", self.edge.fallback_action.to_string()),
            ),
            ("max_connections", self.edge.max_connections.to_string()),
            (
                "max_connections_per_client",
                self.edge.max_connections_per_client.to_string(),
            ),
            (
                "idle_timeout_secs",
                self.edge.idle_timeout.as_secs().to_string(),
            ),
            (
                "request_deadline_ms",
                self.edge.request_deadline.as_millis().to_string(),
            ),
            ("max_line", self.edge.limits.max_line_len.to_string()),
            ("max_request", self.edge.limits.max_request_len.to_string()),
            ("buckets", self.engine.buckets_per_period.to_string()),
            ("worker_threads", self.edge.worker_threads.to_string()),
            (
                "dns_servers",
                format!(
                    "{:?}",
                    self.edge
                        .dns
                        .servers
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                ),
            ),
            (
                "dns_timeout_ms",
                self.edge.dns.timeout.as_millis().to_string(),
            ),
            ("dns_cache_size", self.edge.dns.cache_size.to_string()),
            (
                "spf_receiver",
                format!("{:?}", self.edge.dns.spf_receiver.as_deref().unwrap_or("")),
            ),
            ("reload_poll_ms", self.reload_poll.as_millis().to_string()),
            (
                "counter_flush_ms",
                self.counter_flush.map_or(0, |d| d.as_millis()).to_string(),
            ),
            ("redis", format!("{redis:?}")),
            (
                "redis_timeout_ms",
                self.redis_timeout.as_millis().to_string(),
            ),
            ("redis_wait_replicas", self.redis_wait_replicas.to_string()),
            (
                "redis_wait_timeout_ms",
                self.redis_wait_timeout.as_millis().to_string(),
            ),
            (
                "redis_tls_ca_file",
                format!("{:?}", path_text(self.redis_tls.ca_file.as_deref())),
            ),
            (
                "redis_tls_cert_file",
                format!("{:?}", path_text(self.redis_tls.client_cert.as_deref())),
            ),
            (
                "redis_tls_key_file",
                format!("{:?}", path_text(self.redis_tls.client_key.as_deref())),
            ),
            (
                "redis_tls_server_name",
                format!("{:?}", self.redis_tls.server_name.as_deref().unwrap_or("")),
            ),
            ("quota", format!("{:?}", self.quota)),
            (
                "quota_deadline_ms",
                self.quota_deadline.as_millis().to_string(),
            ),
            ("over_limit_cache", self.over_limit_cache.to_string()),
            ("lease_multiple", self.lease_multiple.to_string()),
            ("grpc_listen", format!("{grpc:?}")),
            ("grpc_tls_cert_file", path(&self.grpc_security.cert)),
            ("grpc_tls_key_file", path(&self.grpc_security.key)),
            ("grpc_client_ca_file", path(&self.grpc_security.client_ca)),
            ("grpc_token_file", path(&self.grpc_security.token)),
            (
                "grpc_allow_unauthenticated",
                self.grpc_security.allow_unauthenticated.to_string(),
            ),
            ("quota_tls_ca_file", path(&self.quota_security.ca)),
            ("quota_tls_cert_file", path(&self.quota_security.cert)),
            ("quota_tls_key_file", path(&self.quota_security.key)),
            (
                "quota_tls_server_name",
                format!(
                    "{:?}",
                    self.quota_security.server_name.as_deref().unwrap_or("")
                ),
            ),
            ("quota_token_file", path(&self.quota_security.token)),
            (
                "shutdown_grace_secs",
                self.shutdown_grace.as_secs().to_string(),
            ),
            (
                "admin_listen",
                format!(
                    "{:?}",
                    self.admin_listen
                        .map_or("off".to_string(), |a| a.to_string())
                ),
            ),
            (
                "admin_secure_cookies",
                self.admin_secure_cookies.to_string(),
            ),
            (
                "admin_tls_cert_file",
                format!(
                    "{:?}",
                    path_text(self.admin_tls.as_ref().map(|t| t.cert_file.as_path()))
                ),
            ),
            (
                "admin_tls_key_file",
                format!(
                    "{:?}",
                    path_text(self.admin_tls.as_ref().map(|t| t.key_file.as_path()))
                ),
            ),
        ]
        .into_iter()
        .chain(self.history.entries())
        .collect()
    }
}

impl fmt::Display for Settings {
    /// The role's own settings resolved, one `key = value` line each, for `--check-config`
    /// and the SIGHUP comparison.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let own = crate::role_check::keys(self.role);
        for (key, value) in self.entries() {
            if own.iter().any(|k| k == key) {
                writeln!(f, "{key} = {value}")?;
            }
        }
        Ok(())
    }
}

/// A path as text; none: empty.
fn path_text(p: Option<&std::path::Path>) -> String {
    p.map_or(String::new(), |p| p.display().to_string())
}

/// `scheme://user:password@host` → `scheme://user:***@host`.
pub fn redact(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        if let Some((auth, host)) = rest.split_once('@') {
            if let Some((user, _)) = auth.split_once(':') {
                return format!("{scheme}://{user}:***@{host}");
            }
        }
    }
    url.to_string()
}

/// The DNS settings (`dns_servers`, `dns_timeout_ms`, `dns_cache_size`, `spf_receiver`),
/// range-checked; the lookup time must leave room in the request deadline for the module's
/// own answer.
fn dns_config(
    policy: &crate::role_args::PolicySettings,
    deadline_ms: u64,
    errors: &mut Vec<String>,
) -> sluice_dns::DnsConfig {
    let mut servers = Vec::new();
    for s in policy.dns_servers.iter().flatten() {
        let s = s.trim();
        if s.is_empty() {
            continue;
        }
        match s.parse::<SocketAddr>() {
            Ok(a) => servers.push(a),
            Err(_) => errors.push(format!(
                "dns_servers {s:?}: expected ip:port, e.g. 127.0.0.1:53 or [::1]:53"
            )),
        }
    }
    let timeout = policy
        .dns_timeout_ms
        .unwrap_or(sluice_dns::DnsConfig::DEFAULT_TIMEOUT.as_millis() as u64);
    if !(1..=60_000).contains(&timeout) {
        errors.push(format!(
            "dns_timeout_ms must be between 1 and 60000, not {timeout}"
        ));
    } else if timeout >= deadline_ms {
        errors.push(format!(
            "dns_timeout_ms ({timeout}) must be less than request_deadline_ms ({deadline_ms}) so a slow DNS gets the module's temporary answer in time"
        ));
    }
    let cache_size = policy
        .dns_cache_size
        .unwrap_or(sluice_dns::DnsConfig::DEFAULT_CACHE_SIZE);
    if !(1..=10_000_000).contains(&cache_size) {
        errors.push(format!(
            "dns_cache_size must be between 1 and 10000000, not {cache_size}"
        ));
    }
    let spf_receiver = policy
        .spf_receiver
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty());
    if let Some(r) = spf_receiver {
        let host_name = r.len() <= 253
            && r.split('.').all(|label| {
                (1..=63).contains(&label.len())
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !host_name {
            errors.push(format!(
                "spf_receiver {r:?}: expected a host name, e.g. mx1.example.org"
            ));
        }
    }
    sluice_dns::DnsConfig {
        servers,
        timeout: Duration::from_millis(timeout.clamp(1, 60_000)),
        cache_size: cache_size.clamp(1, 10_000_000),
        spf_receiver: spf_receiver.map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        (dir, p)
    }

    #[test]
    fn flags_override_file_and_defaults_fill_the_rest() {
        let (_d, p) = file("max_connections = 10\nquota = [\"http://q:1\"]\nmonitor = true\ndatabase = \"postgres://db/sluice\"\n");
        let args = RoleArgs {
            config: Some(p),
            policy: crate::role_args::PolicySettings {
                max_connections: Some(20),
                ..Default::default()
            },
            ..Default::default()
        };
        let s = resolve(args, Role::Edge).unwrap();
        assert_eq!(s.edge.max_connections, 20);
        assert!(s.engine.monitor_all);
        assert_eq!(s.quota, vec!["http://q:1"]);
        assert_eq!(s.edge.request_deadline, Duration::from_millis(1000));
    }

    #[test]
    fn dns_settings_are_read_and_range_checked() {
        let (_d, p) = file("dns_servers = [\"127.0.0.1:5353\", \"[::1]:53\"]\ndns_timeout_ms = 300\ndns_cache_size = 100\nspf_receiver = \"mx1.example.org\"\ndatabase = \"sqlite:///tmp/x.db\"\n");
        let args = RoleArgs {
            config: Some(p),
            ..Default::default()
        };
        let s = resolve(args, Role::Serve).unwrap();
        assert_eq!(
            s.edge.dns.servers,
            vec![
                "127.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(s.edge.dns.timeout, Duration::from_millis(300));
        assert_eq!(s.edge.dns.cache_size, 100);
        assert_eq!(s.edge.dns.spf_receiver.as_deref(), Some("mx1.example.org"));
        let (_d2, p2) = file("database = \"sqlite:///tmp/x.db\"\n");
        let unset = RoleArgs {
            config: Some(p2),
            ..Default::default()
        };
        assert_eq!(
            resolve(unset, Role::Serve).unwrap().edge.dns.spf_receiver,
            None,
            "unset: this host's name"
        );
        let (_d, p) = file("dns_servers = [\"resolver\"]\ndns_timeout_ms = 1000\ndns_cache_size = 0\nspf_receiver = \"mx; evil\"\ndatabase = \"sqlite:///tmp/x.db\"\n");
        let args = RoleArgs {
            config: Some(p),
            ..Default::default()
        };
        let errors = resolve(args, Role::Serve).unwrap_err().join("\n");
        assert!(
            errors.contains("dns_servers \"resolver\": expected ip:port"),
            "{errors}"
        );
        assert!(
            errors.contains("dns_timeout_ms (1000) must be less than request_deadline_ms (1000)"),
            "{errors}"
        );
        assert!(
            errors.contains("dns_cache_size must be between 1 and 10000000"),
            "{errors}"
        );
        assert!(
            errors.contains("spf_receiver \"mx; evil\": expected a host name"),
            "{errors}"
        );
        let (_d, p) = file("dns_timeout_ms = 100\n");
        let args = RoleArgs {
            config: Some(p),
            ..Default::default()
        };
        let errors = resolve(args, Role::Quota).unwrap_err().join("\n");
        assert!(
            errors.contains("`dns_timeout_ms` is not a setting of `sluice quota`"),
            "{errors}"
        );
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let (_d, p) = file("grpc_listen = \"x\"\nmax_line = 10\n");
        let args = RoleArgs {
            config: Some(p),
            policy: crate::role_args::PolicySettings {
                fallback_action: Some("BOUNCE".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let errors = resolve(args, Role::Edge).unwrap_err().join("\n");
        assert!(
            errors.contains("`grpc_listen` is not a setting of `sluice edge`"),
            "{errors}"
        );
        assert!(errors.contains("max_line"), "{errors}");
        assert!(errors.contains("fallback_action"), "{errors}");
        assert!(
            errors.contains("`sluice edge` needs the quota service URLs: set `quota`"),
            "{errors}"
        );
        assert!(
            errors.contains("`sluice edge` needs the policy database: set `database`"),
            "{errors}"
        );
        let (_d, p) = file("no_such_key = 1\n");
        let errors = resolve(
            RoleArgs {
                config: Some(p),
                ..Default::default()
            },
            Role::Serve,
        )
        .unwrap_err()
        .join("\n");
        assert!(errors.contains("no_such_key"), "{errors}");
    }

    #[test]
    fn boolean_flags_work_bare_and_with_a_value() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(flatten)]
            a: crate::role_args::PolicySettings,
        }
        assert_eq!(
            T::try_parse_from(["t", "--monitor"]).unwrap().a.monitor,
            Some(true)
        );
        assert_eq!(
            T::try_parse_from(["t", "--monitor", "false"])
                .unwrap()
                .a
                .monitor,
            Some(false)
        );
        assert_eq!(T::try_parse_from(["t"]).unwrap().a.monitor, None);
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://sluice:secret@db/sluice"),
            "postgres://sluice:***@db/sluice"
        );
        assert_eq!(redact("redis://r:6379"), "redis://r:6379");
    }
}
