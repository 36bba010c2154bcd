//! The settings of the long-running roles, each defined once: its flag, environment
//! variable, TOML key (the field's name) and help text. Settings come in groups; each role's
//! command line is the groups it reads, flattened, so `sluice quota` has exactly the quota
//! service's flags and a flag of another role is refused by clap. The TOML keys and
//! environment variables a role accepts are read off that same command (see
//! [`crate::role_check`]); defaults live in [`crate::config::resolve`] and are shown in
//! `--help` from there.

use crate::config::LogTarget;
use clap::Args;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where the configuration comes from and what to do with it (not settings themselves: no
/// TOML key).
#[derive(Debug, Clone, Default, Args)]
pub struct FileArgs {
    /// TOML configuration file (keys are the flags' names with `_` for `-`).
    #[arg(long, env = "SLUICE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Validate the configuration, print the role's settings resolved, and exit.
    #[arg(long)]
    pub check_config: bool,
}

/// Settings of every role: the metrics listener, traces, logs, shutdown.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct CommonSettings {
    /// Metrics HTTP listener (`/metrics`, `/healthz`, `/readyz`; `POST /explain` on serve
    /// and edge with `http_explain`), or `off`.
    #[arg(long, env = "SLUICE_METRICS_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// OpenTelemetry collector (OTLP over gRPC), e.g. `http://127.0.0.1:4317`: turns traces
    /// on (empty: off).
    #[arg(long, env = "SLUICE_OTLP_ENDPOINT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Share of requests traced when traces are on, 0.0 to 1.0.
    #[arg(long, env = "SLUICE_TRACE_SAMPLE_RATIO")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_sample_ratio: Option<f64>,
    /// Where log lines go: `stderr` or `syslog` (/dev/log, facility mail).
    #[arg(long, env = "SLUICE_LOG_TARGET", value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_target: Option<LogTarget>,
    /// Seconds to finish requests in flight after SIGTERM/SIGINT.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_grace_secs: Option<u64>,
}

/// The policy database (serve, edge, admin).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct DatabaseSettings {
    /// Policy database URL (`sqlite://FILE`, `postgres://...`).
    #[arg(long, env = "SLUICE_DATABASE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
}

/// Settings of the roles that speak the Postfix policy protocol and evaluate policies
/// (serve, edge).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct PolicySettings {
    /// Where to listen for Postfix: `127.0.0.1:10031`, `[::1]:10031` or `unix:/path`
    /// (comma-separated or repeated).
    #[arg(long, env = "SLUICE_LISTEN", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<Vec<String>>,
    /// Serve `POST /explain` on the metrics listener: it shows policy contents and live
    /// counter levels to anyone who can reach that port.
    #[arg(long, env = "SLUICE_HTTP_EXPLAIN", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_explain: Option<bool>,
    /// Run every policy in monitor mode (evaluate, count, log; answer DUNNO).
    #[arg(long, env = "SLUICE_MONITOR", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub monitor: Option<bool>,
    /// Answer for requests that cannot be evaluated, miss their deadline, or find the
    /// counter backend down: the default fails closed (Postfix retries later); `DUNNO`
    /// fails open.
    #[arg(long, env = "SLUICE_FALLBACK_ACTION")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_action: Option<String>,
    /// Most concurrent Postfix connections per listener; a new one beyond it closes the
    /// connection idle the longest (more wait in the backlog only while every connection is
    /// busy).
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Most concurrent Postfix connections from one client address; a new one beyond it
    /// closes that client's connection idle the longest.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS_PER_CLIENT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections_per_client: Option<usize>,
    /// Close a connection idle this many seconds (Postfix's max_idle is 300).
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Deadline for answering one request, in milliseconds.
    #[arg(long, env = "SLUICE_REQUEST_DEADLINE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_deadline_ms: Option<u64>,
    /// Longest accepted protocol line, bytes.
    #[arg(long, env = "SLUICE_MAX_LINE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_line: Option<usize>,
    /// Largest accepted request, bytes.
    #[arg(long, env = "SLUICE_MAX_REQUEST")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_request: Option<usize>,
    /// How often the database is polled for policy changes, ms.
    #[arg(long, env = "SLUICE_RELOAD_POLL_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reload_poll_ms: Option<u64>,
    /// Connection worker threads, each a single-threaded runtime owning its connections
    /// (0: connections are served on the shared, work-stealing runtime, which keeps tail
    /// latency low when the CPUs are busy with other work too).
    #[arg(long, env = "SLUICE_WORKER_THREADS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_threads: Option<usize>,
    /// DNS servers for the lookups of CheckHelo and CheckSPF (`ip:port`, comma-separated or
    /// repeated; empty: the system's /etc/resolv.conf).
    #[arg(long, env = "SLUICE_DNS_SERVERS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    /// How long the DNS lookups of one request may take together, ms (1 to 60000, less
    /// than request_deadline_ms): a lookup not answered by then is a temporary failure.
    #[arg(long, env = "SLUICE_DNS_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_timeout_ms: Option<u64>,
    /// DNS answers cached, at most (1 to 10000000), each up to its TTL; also the most
    /// lookup answers, SPF results and SPF answers (per client address, sender and HELO)
    /// kept in front of the resolver.
    #[arg(long, env = "SLUICE_DNS_CACHE_SIZE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_cache_size: Option<u64>,
    /// The receiver named in CheckSPF's Received-SPF headers (and SPF's %{r} macro), a host
    /// name; empty: this machine's host name.
    #[arg(long, env = "SLUICE_SPF_RECEIVER")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spf_receiver: Option<String>,
}

/// How quota windows are split (serve, edge; admin, to read back the levels the edges
/// count).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct WindowSettings {
    /// Sub-buckets per quota period: the rolling window's granularity (1-3600; at most 512
    /// with counters in Redis: an edge, or serve with --redis). On the admin role: the
    /// edges' value, with which it reads the counters' levels back.
    #[arg(long, env = "SLUICE_BUCKETS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub buckets: Option<u32>,
}

/// Settings of the roles that count in Redis (quota; serve optionally).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct RedisSettings {
    /// Redis URLs (cluster seed nodes or one node), comma-separated; serve counts in
    /// process without them.
    #[arg(long, env = "SLUICE_REDIS", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Vec<String>>,
    /// Timeout of one Redis call, ms; also of each seed's and each node's connection
    /// attempt (TCP, TLS and AUTH together).
    #[arg(long, env = "SLUICE_REDIS_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_timeout_ms: Option<u64>,
    /// Replicas that must have a charge before it is acknowledged (WAIT), at most those
    /// the primary has in the cluster topology; 0: do not wait (a failover may then lose
    /// acknowledged charges, see docs/cluster.md).
    #[arg(long, env = "SLUICE_REDIS_WAIT_REPLICAS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_wait_replicas: Option<usize>,
    /// Longest one WAIT for replicas may block, ms (less than redis_timeout_ms); a charge
    /// not confirmed by then is refunded and answered with the fallback action.
    #[arg(long, env = "SLUICE_REDIS_WAIT_TIMEOUT_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_wait_timeout_ms: Option<u64>,
    /// PEM file of the CAs that sign the Redis certificates (rediss:// URLs); empty: the
    /// system's trusted roots.
    #[arg(long, env = "SLUICE_REDIS_TLS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_ca_file: Option<String>,
    /// PEM client certificate presented to Redis (rediss://, for tls-auth-clients);
    /// needs redis_tls_key_file.
    #[arg(long, env = "SLUICE_REDIS_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_cert_file: Option<String>,
    /// PEM private key of redis_tls_cert_file.
    #[arg(long, env = "SLUICE_REDIS_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_key_file: Option<String>,
    /// The name every Redis node's certificate is verified against, and sent as SNI
    /// (rediss://; cluster nodes announce IPs while a certificate names a host); empty:
    /// the host each node is reached at.
    #[arg(long, env = "SLUICE_REDIS_TLS_SERVER_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_tls_server_name: Option<String>,
}

/// Settings of the in-process counters (serve).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct CounterSettings {
    /// How often in-process counters are written to a SQLite policy database, ms (serve
    /// without Redis): a crash loses at most about this much of the counts, a clean stop
    /// nothing. 0: counters are not kept across restarts (see docs/quotas.md).
    #[arg(long, env = "SLUICE_COUNTER_FLUSH_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_flush_ms: Option<u64>,
}

/// Where the quota service is and how to reach it (edge; admin, for live counters).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct QuotaClientSettings {
    /// Quota service URLs (`http://host:port`), comma-separated.
    #[arg(long, env = "SLUICE_QUOTA", value_delimiter = ',')]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<Vec<String>>,
    /// CA certificates (PEM) the quota service's certificate must chain to, for `https://`
    /// quota URLs (empty: the system's root certificates).
    #[arg(long, env = "SLUICE_QUOTA_TLS_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_tls_ca_file: Option<PathBuf>,
    /// This process's client certificate chain (PEM), presented to quota services that
    /// require one (mTLS; with `quota_tls_key_file`).
    #[arg(long, env = "SLUICE_QUOTA_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `quota_tls_cert_file`.
    #[arg(long, env = "SLUICE_QUOTA_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_tls_key_file: Option<PathBuf>,
    /// The name the quota service's certificate must hold (empty: each quota URL's host).
    #[arg(long, env = "SLUICE_QUOTA_TLS_SERVER_NAME")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_tls_server_name: Option<String>,
    /// File holding the bearer token sent on every quota-service call (the quota service's
    /// `grpc_token_file`; read at start).
    #[arg(long, env = "SLUICE_QUOTA_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_token_file: Option<PathBuf>,
}

/// How the edge calls the quota service (deadline, local answers, leases).
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct EdgeQuotaSettings {
    /// Deadline of one call to the quota service, ms.
    #[arg(long, env = "SLUICE_QUOTA_DEADLINE_MS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_deadline_ms: Option<u64>,
    /// Remember keys over their limit until their retry-after and answer locally.
    #[arg(long, env = "SLUICE_OVER_LIMIT_CACHE", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub over_limit_cache: Option<bool>,
    /// Leases: a take the edge sends asks for this many times its cost more, which the edge
    /// then admits locally until the sub-bucket ends; message sessions are held by the edge.
    /// 0 turns both off (every request is a quota-service call).
    #[arg(long, env = "SLUICE_LEASE_MULTIPLE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_multiple: Option<u64>,
}

/// Settings of the quota service's own listener.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct GrpcSettings {
    /// gRPC listener of the quota service.
    #[arg(long, env = "SLUICE_GRPC_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_listen: Option<String>,
    /// Certificate chain (PEM) of the gRPC listener: serves TLS (with `grpc_tls_key_file`).
    #[arg(long, env = "SLUICE_GRPC_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `grpc_tls_cert_file`.
    #[arg(long, env = "SLUICE_GRPC_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM) client certificates must chain to: every gRPC connection must
    /// present one (mTLS; needs TLS).
    #[arg(long, env = "SLUICE_GRPC_CLIENT_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_client_ca_file: Option<PathBuf>,
    /// File holding the bearer token every quota call must carry (a mounted secret; read at
    /// start; calls without it get UNAUTHENTICATED).
    #[arg(long, env = "SLUICE_GRPC_TOKEN_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_token_file: Option<PathBuf>,
    /// Start without client authentication (no `grpc_client_ca_file`, no `grpc_token_file`)
    /// on a non-loopback `grpc_listen`: only where nothing but the edges can reach the port.
    #[arg(long, env = "SLUICE_GRPC_ALLOW_UNAUTHENTICATED", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_allow_unauthenticated: Option<bool>,
}

/// Settings of the admin service (serve, admin): the web UI and REST API of docs/admin.md.
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct AdminSettings {
    /// Admin service listener (web UI and REST API; accounts come from `sluice admin user
    /// add`), e.g. `127.0.0.1:10035`, or `off`. Plain HTTP unless `admin_tls_cert_file` is
    /// set: keep it on 127.0.0.1, serve TLS, or put a TLS proxy in front (then set
    /// `admin_secure_cookies`).
    #[arg(long, env = "SLUICE_ADMIN_LISTEN")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Mark the admin session cookie `Secure` (browsers then send it over HTTPS only): set
    /// it when a TLS proxy serves the admin service (with `admin_tls_cert_file` it is always
    /// set).
    #[arg(long, env = "SLUICE_ADMIN_SECURE_COOKIES", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_secure_cookies: Option<bool>,
    /// Certificate chain (PEM) of the admin listener: it then serves HTTPS only (with
    /// `admin_tls_key_file`; read at start).
    #[arg(long, env = "SLUICE_ADMIN_TLS_CERT_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `admin_tls_cert_file`.
    #[arg(long, env = "SLUICE_ADMIN_TLS_KEY_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_tls_key_file: Option<PathBuf>,
}

/// Settings of the refusal history and the top senders (serve, edge): docs/admin.md,
/// "History".
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct HistorySettings {
    /// Record refused requests and count senders for the admin service's History and Top
    /// senders, and Accounting's per-period totals (written to the policy database in the
    /// background, never per request). On by default in serve; off in edge unless set,
    /// since an edge's database role then needs INSERT and DELETE on `refusal_history` and
    /// `sender_counts`, and INSERT on `accounting_totals` (docs/cluster.md).
    #[arg(long, env = "SLUICE_HISTORY", num_args = 0..=1, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<bool>,
    /// How long refusals and sender counts are kept, seconds (1 to 31536000).
    #[arg(long, env = "SLUICE_HISTORY_RETENTION_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_retention_secs: Option<u64>,
    /// Refusals waiting to be written, at most (1 to 1000000); more are dropped and counted
    /// in `sluice_history_records_total{result="dropped"}`.
    #[arg(long, env = "SLUICE_HISTORY_QUEUE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history_queue: Option<usize>,
}

/// Settings of the alert webhook (serve, edge, admin): docs/admin.md, "Alerts".
#[derive(Debug, Clone, Default, Args, Serialize, Deserialize)]
pub struct AlertSettings {
    /// Alert webhook: an `http://` or `https://` URL that gets a JSON POST when a key
    /// (sender, client address) is refused for the first time in `alert_cooldown_secs`;
    /// empty: no alerts. In a cluster, set it on the `sluice admin` role: it alerts on
    /// every edge's refusals, one process at a time (the alert lock).
    #[arg(long, env = "SLUICE_ALERT_WEBHOOK")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook: Option<String>,
    /// CA certificates (PEM) an `https://` alert webhook's certificate is verified
    /// against; unset: the system's root certificates.
    #[arg(long, env = "SLUICE_ALERT_WEBHOOK_CA_FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_webhook_ca_file: Option<PathBuf>,
    /// Per-key alert cooldown, seconds (1 to 2592000): a key refused again within it is
    /// not alerted again.
    #[arg(long, env = "SLUICE_ALERT_COOLDOWN_SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert_cooldown_secs: Option<u64>,
}

/// `sluice serve`'s command line.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    policy: PolicySettings,
    #[command(flatten)]
    window: WindowSettings,
    #[command(flatten)]
    redis: RedisSettings,
    #[command(flatten)]
    counters: CounterSettings,
    #[command(flatten)]
    admin: AdminSettings,
    #[command(flatten)]
    history: HistorySettings,
    #[command(flatten)]
    alerts: AlertSettings,
}

/// `sluice edge`'s command line.
#[derive(Debug, Clone, Args)]
pub struct EdgeArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    policy: PolicySettings,
    #[command(flatten)]
    window: WindowSettings,
    #[command(flatten)]
    quota_client: QuotaClientSettings,
    #[command(flatten)]
    edge_quota: EdgeQuotaSettings,
    #[command(flatten)]
    history: HistorySettings,
    #[command(flatten)]
    alerts: AlertSettings,
}

/// `sluice quota`'s command line.
#[derive(Debug, Clone, Args)]
pub struct QuotaArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    redis: RedisSettings,
    #[command(flatten)]
    grpc: GrpcSettings,
}

/// `sluice admin`'s command line (the role: the admin service on its own).
#[derive(Debug, Clone, Args)]
pub struct AdminRoleArgs {
    #[command(flatten)]
    file: FileArgs,
    #[command(flatten)]
    common: CommonSettings,
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    admin: AdminSettings,
    #[command(flatten)]
    alerts: AlertSettings,
    #[command(flatten)]
    quota_client: QuotaClientSettings,
    #[command(flatten)]
    window: WindowSettings,
}

/// A role's arguments as given (flags and environment), every group present; the groups a
/// role does not have stay empty. This is what [`crate::config::resolve`] layers over the
/// file.
#[derive(Debug, Clone, Default)]
pub struct RoleArgs {
    /// TOML configuration file.
    pub config: Option<PathBuf>,
    /// `--check-config`: print the resolved settings and exit.
    pub check_config: bool,
    /// Settings of every role.
    pub common: CommonSettings,
    /// The policy database (serve, edge, admin).
    pub database: DatabaseSettings,
    /// Settings of serve and edge.
    pub policy: PolicySettings,
    /// How quota windows are split (serve, edge, admin).
    pub window: WindowSettings,
    /// Settings of quota and serve.
    pub redis: RedisSettings,
    /// Settings of serve's in-process counters.
    pub counters: CounterSettings,
    /// Where the quota service is (edge; admin, for live counters).
    pub quota_client: QuotaClientSettings,
    /// How the edge calls it.
    pub edge_quota: EdgeQuotaSettings,
    /// Settings of quota.
    pub grpc: GrpcSettings,
    /// Settings of the admin service (serve, admin).
    pub admin: AdminSettings,
    /// Settings of the refusal history (serve, edge).
    pub history: HistorySettings,
    /// Settings of the alert webhook (serve, edge, admin).
    pub alerts: AlertSettings,
}

impl From<ServeArgs> for RoleArgs {
    fn from(a: ServeArgs) -> Self {
        RoleArgs {
            config: a.file.config,
            check_config: a.file.check_config,
            common: a.common,
            database: a.database,
            policy: a.policy,
            window: a.window,
            redis: a.redis,
            counters: a.counters,
            admin: a.admin,
            history: a.history,
            alerts: a.alerts,
            ..Default::default()
        }
    }
}

impl From<EdgeArgs> for RoleArgs {
    fn from(a: EdgeArgs) -> Self {
        RoleArgs {
            config: a.file.config,
            check_config: a.file.check_config,
            common: a.common,
            database: a.database,
            policy: a.policy,
            window: a.window,
            quota_client: a.quota_client,
            edge_quota: a.edge_quota,
            history: a.history,
            alerts: a.alerts,
            ..Default::default()
        }
    }
}

impl From<QuotaArgs> for RoleArgs {
    fn from(a: QuotaArgs) -> Self {
        RoleArgs {
            config: a.file.config,
            check_config: a.file.check_config,
            common: a.common,
            redis: a.redis,
            grpc: a.grpc,
            ..Default::default()
        }
    }
}

impl From<AdminRoleArgs> for RoleArgs {
    fn from(a: AdminRoleArgs) -> Self {
        RoleArgs {
            config: a.file.config,
            check_config: a.file.check_config,
            common: a.common,
            database: a.database,
            admin: a.admin,
            alerts: a.alerts,
            quota_client: a.quota_client,
            window: a.window,
            ..Default::default()
        }
    }
}
