//! Shared by the `cluster*.rs` tests: a whole Sluice cluster of real processes (a Redis
//! Cluster, `sluice quota` services, `sluice edge` nodes, a fresh PostgreSQL database), a
//! blocking policy-protocol client, and a concurrent load driver that records every answer
//! and its latency.
#![allow(dead_code)]

use sluice_test_support::{
    free_port, http, http_get, PolicyClient, Process, RedisCluster, RedisServer, Request,
};
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// The fallback action every test edge is configured with (recognisable in answers).
pub const FALLBACK: &str = "DEFER_IF_PERMIT 4.3.0 cluster fallback";

/// The shared PostgreSQL server's admin URL.
pub const PG_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Tests of one file run one at a time: each starts a dozen processes, and deadlines are
/// asserted, so they must not compete for the two cores. A failed test does not poison it.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `sluice args` to completion.
pub fn sluice(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("SLUICE_DATABASE")
        .env_remove("SLUICE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run sluice")
}

/// stdout + stderr.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs `psql` against `url` with one statement; panics on failure.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .args(["-c", sql])
        .stdin(Stdio::null())
        .output()
        .expect("run psql (PostgreSQL client)");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A name no other test (or run) uses.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh database on the shared PostgreSQL (127.0.0.1:5432), dropped on drop.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    /// A fresh database with the schema, created by `sluice migrate` as its owner (as the
    /// Helm hook does): nothing else creates it on PostgreSQL.
    pub fn create() -> PgDb {
        let db = PgDb::create_empty();
        migrate(&db.url);
        db
    }

    /// A fresh database without any table.
    pub fn create_empty() -> PgDb {
        let name = unique("sluice_cluster");
        psql(PG_ADMIN_URL, &format!("CREATE DATABASE {name}"));
        PgDb {
            url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
            name,
        }
    }
}

/// `sluice migrate --database db`, which must succeed.
pub fn migrate(db: &str) {
    let out = sluice(&["migrate", "--database", db]);
    assert!(out.status.success(), "sluice migrate: {}", text(&out));
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args(["-X", "-q"])
            .arg(PG_ADMIN_URL)
            .args([
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .stdin(Stdio::null())
            .output();
    }
}

/// Writes `policy` (TOML) to a file and imports it into `db` with `sluice policy import`.
pub fn import(db: &str, policy: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let out = sluice(&["policy", "import", file.to_str().unwrap(), "--database", db]);
    assert!(out.status.success(), "policy import: {}", text(&out));
}

/// One quota policy for everything: `track` limited to `limit` of `kind` per hour.
pub fn quota_policy(
    name: &str,
    track: &str,
    kind: &str,
    limit: u64,
    verdict: &str,
    data: &str,
) -> String {
    sluice_test_support::policies::quota_policy(
        name,
        &format!("{name}-quota"),
        track,
        kind,
        limit,
        verdict,
        data,
    )
}

/// The per-sender quota most cluster tests use: `limit` messages per sender per hour,
/// then `REJECT sender quota exceeded`.
pub fn sender_policy(limit: u64) -> String {
    quota_policy(
        "senders",
        "Sender:user@domain",
        "MessageCount",
        limit,
        "REJECT",
        "sender quota exceeded",
    )
}

/// Where counters live.
pub enum Redis {
    Cluster(RedisCluster),
    Single(RedisServer),
}

impl Redis {
    pub fn urls(&self) -> Vec<String> {
        match self {
            Redis::Cluster(c) => c.urls(),
            Redis::Single(s) => vec![s.url()],
        }
    }

    pub fn cluster(&mut self) -> &mut RedisCluster {
        match self {
            Redis::Cluster(c) => c,
            Redis::Single(_) => panic!("not a cluster"),
        }
    }
}

/// Settings of a test cluster.
pub struct Spec {
    pub edges: usize,
    pub quotas: usize,
    /// 3 primaries + 3 replicas when true, one plain Redis node otherwise.
    pub redis_cluster: bool,
    pub request_deadline_ms: u64,
    pub quota_deadline_ms: u64,
    pub redis_timeout_ms: u64,
    /// Longest `WAIT` for a replica (capped below `redis_timeout_ms`): generous, since a
    /// replica on two busy cores may stall for a while and a charge it does not confirm
    /// in time is answered with the fallback action.
    pub redis_wait_timeout_ms: u64,
    /// Extra `sluice edge` flags.
    pub edge_args: Vec<String>,
    /// Extra `sluice quota` flags (TLS, client authentication).
    pub quota_args: Vec<String>,
    /// The scheme of the quota URLs the edges get: `http` or `https`.
    pub quota_scheme: &'static str,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            edges: 3,
            quotas: 2,
            redis_cluster: true,
            // Generous: the debug build on two busy cores must not hit a deadline unless a
            // test provokes it.
            request_deadline_ms: 5000,
            quota_deadline_ms: 4000,
            redis_timeout_ms: 2000,
            redis_wait_timeout_ms: 1000,
            edge_args: Vec::new(),
            quota_args: Vec::new(),
            quota_scheme: "http",
        }
    }
}

/// A running cluster. Dropping it kills every process.
pub struct Cluster {
    pub edges: Vec<Process>,
    pub edge_ports: Vec<u16>,
    pub quotas: Vec<Process>,
    pub quota_ports: Vec<u16>,
    pub redis: Redis,
    pub database: String,
    pub spec: Spec,
}

impl Cluster {
    /// Starts Redis, the quota services and the edges (on free ports, waiting until each
    /// listens) on `database`, which must already hold the policies.
    pub fn start(database: &str, spec: Spec) -> Cluster {
        let redis = if spec.redis_cluster {
            Redis::Cluster(RedisCluster::start(3, 1))
        } else {
            Redis::Single(RedisServer::start())
        };
        let redis_urls = redis.urls().join(",");
        let mut quotas = Vec::new();
        let mut quota_ports = Vec::new();
        for i in 0..spec.quotas {
            let port = free_port();
            let mut args: Vec<String> = [
                "quota",
                "--grpc-listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                "off",
                "--redis",
                &redis_urls,
                "--redis-timeout-ms",
                &spec.redis_timeout_ms.to_string(),
                "--redis-wait-timeout-ms",
                &spec
                    .redis_wait_timeout_ms
                    .min(spec.redis_timeout_ms * 4 / 5)
                    .to_string(),
                "--shutdown-grace-secs",
                "5",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(spec.quota_args.iter().cloned());
            quotas.push(Process::start(
                &format!("quota-{}", i + 1),
                BIN,
                &args,
                Some(port),
            ));
            quota_ports.push(port);
        }
        let quota_urls: Vec<String> = quota_ports
            .iter()
            .map(|p| format!("{}://127.0.0.1:{p}", spec.quota_scheme))
            .collect();
        let mut cluster = Cluster {
            edges: Vec::new(),
            edge_ports: Vec::new(),
            quotas,
            quota_ports,
            redis,
            database: database.to_string(),
            spec,
        };
        for i in 0..cluster.spec.edges {
            let port = free_port();
            let mut args: Vec<String> = [
                "edge",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--metrics-listen",
                "off",
                "--database",
                database,
                "--quota",
                &quota_urls.join(","),
                "--fallback-action",
                FALLBACK,
                "--request-deadline-ms",
                &cluster.spec.request_deadline_ms.to_string(),
                "--quota-deadline-ms",
                &cluster.spec.quota_deadline_ms.to_string(),
                "--shutdown-grace-secs",
                "2",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(cluster.spec.edge_args.iter().cloned());
            cluster.edges.push(Process::start(
                &format!("edge-{}", i + 1),
                BIN,
                &args,
                Some(port),
            ));
            cluster.edge_ports.push(port);
        }
        cluster
    }

    /// The logs of every process, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for p in self.quotas.iter().chain(&self.edges) {
            let log = p.log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            s.push_str(&format!("--- {} (last lines)\n", p.name()));
            for l in tail.into_iter().rev() {
                s.push_str(l);
                s.push('\n');
            }
        }
        s
    }
}

/// Sends one request to `127.0.0.1:port` on a new connection and returns the action.
pub fn ask(port: u16, req: &Request) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect to edge");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&req.to_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 512];
    while !buf.ends_with(b"\n\n") {
        let n = s.read(&mut chunk).expect("reply within 10 s");
        assert!(
            n > 0,
            "edge on {port} closed the connection without answering"
        );
        buf.extend_from_slice(&chunk[..n]);
    }
    let reply = String::from_utf8(buf).unwrap();
    reply
        .lines()
        .find_map(|l| l.strip_prefix("action="))
        .expect("reply has an action")
        .to_string()
}

/// One answered (or unanswered) request of a load run.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Index of the request in the list given to [`load`].
    pub index: usize,
    /// Which edge (index into the port list) answered.
    pub edge: usize,
    /// The action, or `None` when the connection closed instead.
    pub action: Option<String>,
    /// Time from sending to the reply.
    pub latency: Duration,
    /// When the reply came, since the start of the run.
    pub at: Duration,
}

/// Sends every request of `requests` exactly once over `connections` persistent
/// connections spread round-robin over `ports`, one request in flight per connection (as
/// Postfix does), and returns every answer. `progress` counts answers as they come, so
/// another thread can act mid-load. Every reply is awaited at most `reply_limit`.
pub fn load(
    ports: &[u16],
    connections: usize,
    requests: Vec<Request>,
    progress: Arc<AtomicUsize>,
    reply_limit: Duration,
) -> Vec<Answer> {
    let never = Arc::new(AtomicBool::new(false));
    load_until(ports, connections, requests, progress, reply_limit, never)
}

/// [`load`], stopping early (after the requests in flight) once `stop` is set.
pub fn load_until(
    ports: &[u16],
    connections: usize,
    requests: Vec<Request>,
    progress: Arc<AtomicUsize>,
    reply_limit: Duration,
    stop: Arc<AtomicBool>,
) -> Vec<Answer> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let requests = Arc::new(requests);
        let next = Arc::new(AtomicUsize::new(0));
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for c in 0..connections {
            let edge = c % ports.len();
            let addr: SocketAddr = ([127, 0, 0, 1], ports[edge]).into();
            let (requests, next, progress) = (requests.clone(), next.clone(), progress.clone());
            let stop = stop.clone();
            tasks.spawn(async move {
                let mut out = Vec::new();
                let mut client = PolicyClient::connect(addr).await;
                client.set_timeout(reply_limit);
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(index) else {
                        break;
                    };
                    let sent = Instant::now();
                    let action = client.try_send(req).await;
                    let latency = sent.elapsed();
                    let closed = action.is_none();
                    out.push(Answer {
                        index,
                        edge,
                        action,
                        latency,
                        at: start.elapsed(),
                    });
                    progress.fetch_add(1, Ordering::Relaxed);
                    if closed {
                        client = PolicyClient::connect(addr).await;
                        client.set_timeout(reply_limit);
                    }
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(r) = tasks.join_next().await {
            all.extend(r.expect("load task panicked"));
        }
        all.sort_by_key(|a| a.index);
        all
    })
}

/// Counts of answers by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    pub dunno: usize,
    pub refused: usize,
    pub fallback: usize,
    pub closed: usize,
    pub other: Vec<String>,
}

/// Sorts `answers` into DUNNO, refusals starting with `refused_prefix`, the fallback
/// action, closed connections and anything else.
pub fn tally<'a>(answers: impl IntoIterator<Item = &'a Answer>, refused_prefix: &str) -> Tally {
    let mut t = Tally::default();
    for a in answers {
        match a.action.as_deref() {
            Some("DUNNO") => t.dunno += 1,
            Some(x) if x == FALLBACK => t.fallback += 1,
            Some(x) if !refused_prefix.is_empty() && x.starts_with(refused_prefix) => {
                t.refused += 1
            }
            Some(x) => t.other.push(x.to_string()),
            None => t.closed += 1,
        }
    }
    t
}

/// A running `sluice admin` role reading counters and held messages through the
/// cluster's first quota service, with `extra` flags; waits until it is ready. (process, admin port)
pub fn start_admin_role(db: &str, cluster: &Cluster, extra: &[&str]) -> (Process, u16) {
    start_admin_role_on(db, cluster.quota_ports[0], extra)
}

/// [`start_admin_role`] with the quota service on `quota_port`.
pub fn start_admin_role_on(db: &str, quota_port: u16, extra: &[&str]) -> (Process, u16) {
    let (port, metrics) = (free_port(), free_port());
    let quota = format!("http://127.0.0.1:{quota_port}");
    let mut args: Vec<String> = [
        "admin",
        "--database",
        db,
        "--admin-listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
        "--quota",
        &quota,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    let admin = Process::start("sluice admin --quota", BIN, &args, Some(port));
    let start = Instant::now();
    while http_get(metrics, "/readyz").0 != 200 {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", admin.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    (admin, port)
}

/// One admin API call with `token` (and a JSON body); fails the test on an error status.
pub fn admin_api(
    port: u16,
    method: &str,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let auth = format!("Bearer {token}");
    let body = body.map(|b| b.to_string());
    let r = http(
        port,
        method,
        path,
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_deref(),
    );
    assert!(r.status < 300, "{method} {path}: {} {}", r.status, r.body);
    if r.body.is_empty() {
        serde_json::Value::Null
    } else {
        r.json()
    }
}
