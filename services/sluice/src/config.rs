//! Configuration of the long-running roles (`serve`, `edge`, `quota`): one TOML file per
//! role (`--config FILE`), overridden by `SLUICE_...` environment variables and flags,
//! validated before any port is bound. Every problem is reported at once, with the key's
//! name; the process then exits with code 64 (`EX_USAGE`).
//!
//! The file's keys are the flags' names with `_` for `-` (`max_connections = 4096`).

use clap::Args;
use serde::Deserialize;
use sluice_edge::{EdgeConfig, ListenAddr};
use sluice_engine::EngineSettings;
use sluice_protocol::{Action, Limits};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
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
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Serve => "serve",
            Role::Edge => "edge",
            Role::Quota => "quota",
        })
    }
}

/// Settings as given by flags, environment or file: everything optional, merged in that
/// order of precedence, then resolved into [`Settings`].
#[derive(Debug, Clone, Default, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleArgs {
    /// TOML configuration file (keys are these flags' names with `_`).
    #[arg(long, env = "SLUICE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print it resolved, and exit.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// Where to listen for Postfix: `127.0.0.1:10031`, `[::1]:10031` or `unix:/path`
    /// (comma-separated or repeated). Default 127.0.0.1:10031.
    #[arg(long, env = "SLUICE_LISTEN", value_delimiter = ',')]
    pub listen: Option<Vec<String>>,
    /// Metrics HTTP listener (`/metrics`, `/healthz`, `/readyz`; `POST /explain` on serve
    /// and edge with `http_explain`), or `off`. Default 127.0.0.1:10032 (serve, edge),
    /// 127.0.0.1:10034 (quota).
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Serve `POST /explain` on the metrics listener (default false): it shows policy
    /// contents and live counter levels to anyone who can reach that port.
    #[arg(long, env = "SLUICE_HTTP_EXPLAIN", num_args = 0..=1, default_missing_value = "true")]
    pub http_explain: Option<bool>,
    /// Old name of `--metrics-listen` (still accepted; `--metrics-listen` wins).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN", hide = true)]
    pub admin_listen: Option<String>,
    /// OpenTelemetry collector (OTLP over gRPC), e.g. `http://127.0.0.1:4317`: turns traces
    /// on. Default off.
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// Share of requests traced when traces are on, 0.0 to 1.0 (default 1.0).
    #[arg(long, env = "SLUICE_TRACE_SAMPLE_RATIO")]
    pub trace_sample_ratio: Option<f64>,
    /// Where log lines go: `stderr` (default) or `syslog` (/dev/log, facility mail).
    #[arg(long, env = "SLUICE_LOG_TARGET", value_enum)]
    pub log_target: Option<LogTarget>,
    /// Policy database URL (`sqlite://FILE`, `postgres://...`). serve: default
    /// `sqlite://sluice.db` in the working directory; edge: required (no default).
    #[arg(long, env = "SLUICE_DATABASE")]
    pub database: Option<String>,
    /// Run every policy in monitor mode (evaluate, count, log; answer DUNNO).
    #[arg(long, env = "SLUICE_MONITOR", num_args = 0..=1, default_missing_value = "true")]
    pub monitor: Option<bool>,
    /// Answer for requests that cannot be evaluated, miss their deadline, or find the
    /// counter backend down. Default `DEFER_IF_PERMIT 4.3.0 Policy service unavailable, try
    /// again later` (fail closed); `DUNNO` fails open.
    #[arg(long, env = "SLUICE_FALLBACK_ACTION")]
    pub fallback_action: Option<String>,
    /// Most concurrent Postfix connections per listener (default 4096); a new one beyond
    /// it closes the connection idle the longest (more wait in the backlog only while every
    /// connection is busy).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent Postfix connections from one client address (default 512); a new
    /// one beyond it closes that client's connection idle the longest.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_CLIENT")]
    pub max_connections_per_client: Option<usize>,
    /// Close a connection idle this many seconds (default 330; Postfix's max_idle is 300).
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Deadline for answering one request, in milliseconds (default 1000).
    #[arg(long, env = "SLUICE_REQUEST_DEADLINE_MS")]
    pub request_deadline_ms: Option<u64>,
    /// Longest accepted protocol line, bytes (default 4096).
    #[arg(long, env = "SLUICE_MAX_LINE")]
    pub max_line: Option<usize>,
    /// Largest accepted request, bytes (default 65536).
    #[arg(long, env = "SLUICE_MAX_REQUEST")]
    pub max_request: Option<usize>,
    /// Sub-buckets per quota period: the rolling window's granularity (default 60).
    #[arg(long, env = "SLUICE_BUCKETS")]
    pub buckets: Option<u32>,
    /// How often the database is polled for policy changes, ms (default 250).
    #[arg(long, env = "SLUICE_RELOAD_POLL_MS")]
    pub reload_poll_ms: Option<u64>,
    /// How often in-process counters are written to a SQLite policy database, ms (serve
    /// without Redis; default 1000): a crash loses at most about this much of the counts, a
    /// clean stop nothing. 0: counters are not kept across restarts.
    #[arg(long, env = "SLUICE_COUNTER_FLUSH_MS")]
    pub counter_flush_ms: Option<u64>,
    /// Seconds to finish requests in flight after SIGTERM/SIGINT (default 10).
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    /// Connection worker threads, each a single-threaded runtime owning its connections
    /// (default 0: connections are served on the shared, work-stealing runtime, which keeps
    /// tail latency low when the CPUs are busy with other work too).
    #[arg(long, env = "SLUICE_WORKER_THREADS")]
    pub worker_threads: Option<usize>,
    /// Redis URLs (cluster seed nodes or one node), comma-separated (quota; serve optionally).
    #[arg(long, env = "SLUICE_REDIS", value_delimiter = ',')]
    pub redis: Option<Vec<String>>,
    /// Timeout of one Redis call, ms (default 250).
    #[arg(long, env = "SLUICE_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// Quota service URLs (`http://host:port`), comma-separated (edge).
    #[arg(long, env = "SLUICE_QUOTA", value_delimiter = ',')]
    pub quota: Option<Vec<String>>,
    /// Deadline of one call to the quota service, ms (default 250) (edge).
    #[arg(long, env = "SLUICE_QUOTA_DEADLINE_MS")]
    pub quota_deadline_ms: Option<u64>,
    /// Remember keys over their limit until their retry-after and answer locally (edge;
    /// default true).
    #[arg(long, env = "SLUICE_OVER_LIMIT_CACHE", num_args = 0..=1, default_missing_value = "true")]
    pub over_limit_cache: Option<bool>,
    /// Leases: a take the edge sends asks for this many times its cost more, which the edge
    /// then admits locally until the sub-bucket ends; message sessions are held by the edge.
    /// 0 turns both off (every request is a quota-service call) (edge; default 64).
    #[arg(long, env = "SLUICE_LEASE_MULTIPLE")]
    pub lease_multiple: Option<u64>,
    /// gRPC listener of the quota service (default 127.0.0.1:10033) (quota).
    #[arg(long, env = "SLUICE_GRPC_LISTEN")]
    pub grpc_listen: Option<String>,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogTarget {
    /// Standard error.
    #[default]
    Stderr,
    /// The local syslog socket `/dev/log`, facility mail.
    Syslog,
}

/// Calls macro `$m` with the name of every setting of [`RoleArgs`] (the one list of them).
macro_rules! for_each_setting {
    ($m:ident) => {
        $m!(
            listen,
            metrics_listen,
            admin_listen,
            http_explain,
            otlp_endpoint,
            trace_sample_ratio,
            log_target,
            database,
            monitor,
            fallback_action,
            max_connections,
            max_connections_per_client,
            idle_timeout_secs,
            request_deadline_ms,
            max_line,
            max_request,
            buckets,
            reload_poll_ms,
            counter_flush_ms,
            shutdown_grace_secs,
            redis,
            redis_timeout_ms,
            quota,
            quota_deadline_ms,
            over_limit_cache,
            lease_multiple,
            grpc_listen,
            worker_threads
        )
    };
}

impl RoleArgs {
    /// Flags and environment (already in `self`) over the file's values.
    fn over(mut self, mut file: RoleArgs) -> RoleArgs {
        macro_rules! overlay {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = file.$f.take(); } )* };
        }
        for_each_setting!(overlay);
        self
    }

    /// Names of the keys that are set, for "not a setting of this role" errors.
    fn set_keys(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        macro_rules! collect {
            ($($f:ident),*) => { $( if self.$f.is_some() { keys.push(stringify!($f)); } )* };
        }
        for_each_setting!(collect);
        keys
    }
}

/// Resolved, validated settings of one role.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Policy-protocol listeners (serve, edge).
    pub listen: Vec<ListenAddr>,
    /// Metrics HTTP listener (`metrics_listen`, alias `admin_listen`), if any.
    pub admin: Option<SocketAddr>,
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
    /// Grace period after SIGTERM.
    pub shutdown_grace: Duration,
}

/// Keys each role reads.
fn keys_of(role: Role) -> &'static [&'static str] {
    match role {
        Role::Serve => &[
            "listen",
            "metrics_listen",
            "admin_listen",
            "http_explain",
            "otlp_endpoint",
            "trace_sample_ratio",
            "log_target",
            "database",
            "monitor",
            "fallback_action",
            "max_connections",
            "max_connections_per_client",
            "idle_timeout_secs",
            "request_deadline_ms",
            "max_line",
            "max_request",
            "buckets",
            "reload_poll_ms",
            "counter_flush_ms",
            "shutdown_grace_secs",
            "redis",
            "redis_timeout_ms",
            "worker_threads",
        ],
        Role::Edge => &[
            "listen",
            "metrics_listen",
            "admin_listen",
            "http_explain",
            "otlp_endpoint",
            "trace_sample_ratio",
            "log_target",
            "database",
            "monitor",
            "fallback_action",
            "max_connections",
            "max_connections_per_client",
            "idle_timeout_secs",
            "request_deadline_ms",
            "max_line",
            "max_request",
            "buckets",
            "reload_poll_ms",
            "shutdown_grace_secs",
            "quota",
            "quota_deadline_ms",
            "over_limit_cache",
            "lease_multiple",
            "worker_threads",
        ],
        Role::Quota => &[
            "metrics_listen",
            "admin_listen",
            "otlp_endpoint",
            "trace_sample_ratio",
            "log_target",
            "redis",
            "redis_timeout_ms",
            "grpc_listen",
            "shutdown_grace_secs",
        ],
    }
}

/// Reads the file (if any), overlays flags and environment, applies defaults and validates.
pub fn resolve(args: RoleArgs, role: Role) -> Result<Settings, Vec<String>> {
    let mut errors = Vec::new();
    let file = match &args.config {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => match toml::from_str::<RoleArgs>(&text) {
                Ok(f) => {
                    for key in f.set_keys() {
                        if !keys_of(role).contains(&key) {
                            errors.push(format!(
                                "{}: `{key}` is not a setting of `sluice {role}`",
                                path.display()
                            ));
                        }
                    }
                    f
                }
                Err(e) => {
                    errors.push(format!("{}: {}", path.display(), e.to_string().trim()));
                    RoleArgs::default()
                }
            },
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", path.display()));
                RoleArgs::default()
            }
        },
        None => RoleArgs::default(),
    };
    let a = args.over(file);

    let mut listen = Vec::new();
    for l in a
        .listen
        .clone()
        .unwrap_or_else(|| vec!["127.0.0.1:10031".into()])
    {
        match l.parse::<ListenAddr>() {
            Ok(addr) => listen.push(addr),
            Err(e) => errors.push(format!("listen {l:?}: {e}")),
        }
    }
    let default_admin = if role == Role::Quota {
        "127.0.0.1:10034"
    } else {
        "127.0.0.1:10032"
    };
    let metrics_key = if a.metrics_listen.is_some() || a.admin_listen.is_none() {
        "metrics_listen"
    } else {
        "admin_listen"
    };
    let admin = match a
        .metrics_listen
        .as_deref()
        .or(a.admin_listen.as_deref())
        .unwrap_or(default_admin)
    {
        "off" | "" => None,
        s => s
            .parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("{metrics_key} {s:?}: {e}")))
            .ok(),
    };
    let otlp_endpoint = a.otlp_endpoint.clone().filter(|e| !e.is_empty());
    if let Some(e) = &otlp_endpoint {
        if !(e.starts_with("http://") || e.starts_with("https://")) {
            errors.push(format!("otlp_endpoint {e:?}: expected http://host:port"));
        }
    }
    let trace_sample_ratio = a.trace_sample_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&trace_sample_ratio) {
        errors.push(format!(
            "trace_sample_ratio must be between 0.0 and 1.0, not {trace_sample_ratio}"
        ));
    }
    let fallback_text = a.fallback_action.clone().unwrap_or_else(|| {
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
        &mut errors,
        "max_connections",
        a.max_connections.unwrap_or(4096) as u64,
    ) as usize;
    let max_per_client = positive(
        &mut errors,
        "max_connections_per_client",
        a.max_connections_per_client.unwrap_or(512) as u64,
    ) as usize;
    let idle = positive(
        &mut errors,
        "idle_timeout_secs",
        a.idle_timeout_secs.unwrap_or(330),
    );
    let deadline = positive(
        &mut errors,
        "request_deadline_ms",
        a.request_deadline_ms.unwrap_or(1000),
    );
    let max_line = a.max_line.unwrap_or(4096);
    let max_request = a.max_request.unwrap_or(65536);
    if max_line < 256 {
        errors.push("max_line must be at least 256".into());
    }
    if max_request < max_line {
        errors.push("max_request must be at least max_line".into());
    }
    let buckets = a.buckets.unwrap_or(60);
    // The engine's range: sub-buckets are at least 1 ms wide whatever the period.
    let max_buckets = sluice_engine::bounds::MAX_BUCKETS_PER_PERIOD;
    if !(1..=max_buckets).contains(&buckets) {
        errors.push(format!("buckets must be between 1 and {max_buckets}"));
    }
    let reload_poll = positive(
        &mut errors,
        "reload_poll_ms",
        a.reload_poll_ms.unwrap_or(250),
    );
    let counter_flush_ms = a.counter_flush_ms.unwrap_or(1000);
    if counter_flush_ms > 3_600_000 {
        errors.push("counter_flush_ms must be at most 3600000 (an hour; 0 turns it off)".into());
    }
    let redis = a.redis.clone().unwrap_or_default();
    let quota = a.quota.clone().unwrap_or_default();
    let quota_deadline = positive(
        &mut errors,
        "quota_deadline_ms",
        a.quota_deadline_ms.unwrap_or(250),
    );
    let redis_timeout = positive(
        &mut errors,
        "redis_timeout_ms",
        a.redis_timeout_ms.unwrap_or(250),
    );
    match role {
        Role::Edge if quota.is_empty() => errors.push("`sluice edge` needs quota service URLs (quota = [\"http://host:10033\"], --quota, SLUICE_QUOTA)".into()),
        Role::Quota if redis.is_empty() => errors.push("`sluice quota` needs Redis URLs (redis = [\"redis://host:6379\"], --redis, SLUICE_REDIS)".into()),
        _ => {}
    }
    // An edge serves the cluster's shared policies: a forgotten database must not become
    // an empty SQLite file in the working directory (every request would get DUNNO).
    if role == Role::Edge && a.database.as_deref().is_none_or(|d| d.trim().is_empty()) {
        errors.push("`sluice edge` needs the policy database: set `database` (database = \"postgres://user@host/sluice\", --database, SLUICE_DATABASE); edges have no default".into());
    }
    for u in &redis {
        if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
            errors.push(format!("redis {u:?}: expected redis://host:port"));
        }
    }
    for u in &quota {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            errors.push(format!("quota {u:?}: expected http://host:port"));
        }
    }
    if role == Role::Edge && deadline <= quota_deadline {
        errors.push(format!(
            "request_deadline_ms ({deadline}) must be larger than quota_deadline_ms ({quota_deadline}) so the fallback action can still be sent in time"
        ));
    }
    let grpc_listen = if role == Role::Quota {
        let s = a
            .grpc_listen
            .clone()
            .unwrap_or_else(|| "127.0.0.1:10033".into());
        s.parse::<SocketAddr>()
            .map_err(|e| errors.push(format!("grpc_listen {s:?}: {e}")))
            .ok()
    } else {
        None
    };
    let shutdown_grace = Duration::from_secs(a.shutdown_grace_secs.unwrap_or(10));
    if !errors.is_empty() {
        return Err(errors);
    }
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
        worker_threads: a.worker_threads.unwrap_or(0),
        ..EdgeConfig::default()
    };
    Ok(Settings {
        listen,
        admin,
        http_explain: a.http_explain.unwrap_or(false),
        otlp_endpoint,
        trace_sample_ratio,
        log_target: a.log_target.unwrap_or_default(),
        database: a
            .database
            .clone()
            .unwrap_or_else(sluice_store::default_database_url),
        edge,
        engine: EngineSettings {
            monitor_all: a.monitor.unwrap_or(false),
            buckets_per_period: buckets,
            state_failure_action: fallback,
        },
        reload_poll: Duration::from_millis(reload_poll),
        counter_flush: (counter_flush_ms > 0).then(|| Duration::from_millis(counter_flush_ms)),
        redis,
        redis_timeout: Duration::from_millis(redis_timeout),
        quota,
        quota_deadline: Duration::from_millis(quota_deadline),
        over_limit_cache: a.over_limit_cache.unwrap_or(true),
        lease_multiple: a.lease_multiple.unwrap_or(64),
        grpc_listen,
        shutdown_grace,
    })
}

/// Resolves, or prints every error and returns the exit code 64.
pub fn resolve_or_exit(args: RoleArgs, role: Role) -> Result<Settings, std::process::ExitCode> {
    resolve(args, role).map_err(|errors| {
        for e in errors {
            eprintln!("sluice {role}: configuration: {e}");
        }
        std::process::ExitCode::from(crate::EX_USAGE)
    })
}

impl fmt::Display for Settings {
    /// The resolved configuration, for `--check-config` (no secrets: URLs lose passwords).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listen: Vec<String> = self.listen.iter().map(ToString::to_string).collect();
        writeln!(f, "listen = {listen:?}")?;
        writeln!(
            f,
            "metrics_listen = {:?}",
            self.admin.map_or("off".to_string(), |a| a.to_string())
        )?;
        writeln!(f, "http_explain = {}", self.http_explain)?;
        writeln!(
            f,
            "otlp_endpoint = {:?}",
            self.otlp_endpoint.as_deref().unwrap_or("")
        )?;
        writeln!(f, "trace_sample_ratio = {}", self.trace_sample_ratio)?;
        writeln!(
            f,
            "log_target = {:?}",
            match self.log_target {
                LogTarget::Stderr => "stderr",
                LogTarget::Syslog => "syslog",
            }
        )?;
        writeln!(f, "database = {:?}", redact(&self.database))?;
        writeln!(f, "monitor = {}", self.engine.monitor_all)?;
        writeln!(
            f,
            "fallback_action = {:?}",
            self.edge.fallback_action.to_string()
        )?;
        writeln!(f, "max_connections = {}", self.edge.max_connections)?;
        writeln!(
            f,
            "max_connections_per_client = {}",
            self.edge.max_connections_per_client
        )?;
        writeln!(
            f,
            "idle_timeout_secs = {}",
            self.edge.idle_timeout.as_secs()
        )?;
        writeln!(
            f,
            "request_deadline_ms = {}",
            self.edge.request_deadline.as_millis()
        )?;
        writeln!(f, "max_line = {}", self.edge.limits.max_line_len)?;
        writeln!(f, "max_request = {}", self.edge.limits.max_request_len)?;
        writeln!(f, "buckets = {}", self.engine.buckets_per_period)?;
        writeln!(f, "worker_threads = {}", self.edge.worker_threads)?;
        writeln!(f, "reload_poll_ms = {}", self.reload_poll.as_millis())?;
        writeln!(
            f,
            "counter_flush_ms = {}",
            self.counter_flush.map_or(0, |d| d.as_millis())
        )?;
        let redis: Vec<String> = self.redis.iter().map(|u| redact(u)).collect();
        writeln!(f, "redis = {redis:?}")?;
        writeln!(f, "redis_timeout_ms = {}", self.redis_timeout.as_millis())?;
        writeln!(f, "quota = {:?}", self.quota)?;
        writeln!(f, "quota_deadline_ms = {}", self.quota_deadline.as_millis())?;
        writeln!(f, "over_limit_cache = {}", self.over_limit_cache)?;
        writeln!(f, "lease_multiple = {}", self.lease_multiple)?;
        if let Some(g) = self.grpc_listen {
            writeln!(f, "grpc_listen = {:?}", g.to_string())?;
        }
        writeln!(f, "shutdown_grace_secs = {}", self.shutdown_grace.as_secs())
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
            max_connections: Some(20),
            ..Default::default()
        };
        let s = resolve(args, Role::Edge).unwrap();
        assert_eq!(s.edge.max_connections, 20);
        assert!(s.engine.monitor_all);
        assert_eq!(s.quota, vec!["http://q:1"]);
        assert_eq!(s.edge.request_deadline, Duration::from_millis(1000));
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let (_d, p) = file("grpc_listen = \"x\"\nmax_line = 10\n");
        let args = RoleArgs {
            config: Some(p),
            fallback_action: Some("BOUNCE".into()),
            ..Default::default()
        };
        let errors = resolve(args, Role::Edge).unwrap_err().join("\n");
        assert!(
            errors.contains("`grpc_listen` is not a setting of `sluice edge`"),
            "{errors}"
        );
        assert!(errors.contains("max_line"), "{errors}");
        assert!(errors.contains("fallback_action"), "{errors}");
        assert!(errors.contains("needs quota service URLs"), "{errors}");
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
            a: RoleArgs,
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
