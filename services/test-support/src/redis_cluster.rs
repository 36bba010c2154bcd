//! Real Redis processes for tests: a Redis Cluster ([`RedisCluster`]) and a single plain
//! node ([`RedisServer`]), on free `127.0.0.1` ports, each node in its own temporary
//! directory, all killed on drop.
//!
//! Needs `redis-server` and `redis-cli` on the `PATH` (Debian/Ubuntu: `apt-get install
//! redis-server`, which brings `redis-cli` with `redis-tools`). The functions block (they
//! start processes and poll them until ready); call them before heavy async work.

use crate::pki::CertFiles;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

/// How long to wait for a node to answer, or a cluster to become healthy.
const READY_LIMIT: Duration = Duration::from_secs(60);
/// `cluster-node-timeout` of every cluster node (failover starts after about this long).
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;

/// How the Redis processes are secured: a password, an ACL user, TLS only. The default
/// (nothing) is a plain, open node as [`RedisServer::start`] and [`RedisCluster::start`]
/// run.
#[derive(Debug, Clone, Default)]
pub struct RedisOptions {
    /// `requirepass` (the `default` user's password) on every node, and `masterauth` so
    /// replicas can follow their primaries.
    pub password: Option<String>,
    /// One more ACL user on every node.
    pub acl_user: Option<AclUser>,
    /// TLS only: no plain port.
    pub tls: Option<RedisTlsFiles>,
}

/// An ACL user (`user <name> on ><password> <rules…>`).
#[derive(Debug, Clone)]
pub struct AclUser {
    /// Its name.
    pub name: String,
    /// Its password.
    pub password: String,
    /// ACL rules, e.g. `["~*", "+@all"]` or `["~*", "+evalsha", "+ping"]`.
    pub rules: Vec<String>,
}

/// TLS files of every node (from [`crate::TestPki`]): `--port 0 --tls-port <port>`, and
/// for a cluster `--tls-cluster yes --tls-replication yes`.
#[derive(Debug, Clone)]
pub struct RedisTlsFiles {
    /// The CA that signed the certificates (and that client certificates must chain to).
    pub ca_file: PathBuf,
    /// The nodes' server certificate (for `127.0.0.1`).
    pub server: CertFiles,
    /// A client certificate: nodes use it towards each other, `redis-cli` towards them.
    pub client: CertFiles,
    /// `tls-auth-clients yes`: clients must present a certificate of the CA.
    pub auth_clients: bool,
}

/// One `redis-server` process and its directory.
struct Proc {
    port: u16,
    cluster: bool,
    /// Boxed: keeps `RedisServer` small.
    options: Box<RedisOptions>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Proc {
    fn start(cluster: bool, options: &RedisOptions) -> Proc {
        require_binaries();
        let mut p = Proc {
            port: free_port(cluster),
            cluster,
            options: Box::new(options.clone()),
            dir: tempfile::tempdir().expect("temp dir for a redis node"),
            child: None,
        };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new("redis-server");
        let port = self.port.to_string();
        match &self.options.tls {
            None => {
                cmd.args(["--port", &port]);
            }
            Some(tls) => {
                cmd.args(["--port", "0", "--tls-port", &port])
                    .arg("--tls-cert-file")
                    .arg(&tls.server.cert)
                    .arg("--tls-key-file")
                    .arg(&tls.server.key)
                    .arg("--tls-client-cert-file")
                    .arg(&tls.client.cert)
                    .arg("--tls-client-key-file")
                    .arg(&tls.client.key)
                    .arg("--tls-ca-cert-file")
                    .arg(&tls.ca_file)
                    .args([
                        "--tls-auth-clients",
                        if tls.auth_clients { "yes" } else { "no" },
                        "--tls-replication",
                        "yes",
                    ]);
                if self.cluster {
                    cmd.args(["--tls-cluster", "yes"]);
                }
            }
        }
        if let Some(pw) = &self.options.password {
            cmd.args(["--requirepass", pw, "--masterauth", pw]);
        }
        if let Some(user) = &self.options.acl_user {
            cmd.args(["--user", &user.name, "on"])
                .arg(format!(">{}", user.password))
                .args(&user.rules);
        }
        cmd.args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--appendonly", "no", "--save", "", "--daemonize", "no"])
            .args(["--protected-mode", "no", "--logfile", "redis.log"])
            .args([
                "--repl-diskless-sync",
                "yes",
                "--repl-diskless-sync-delay",
                "0",
            ]);
        if self.cluster {
            cmd.args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
            ])
            .args([
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
            ])
            // As docs/cluster.md recommends: a failed primary stops only its own slots
            // (with the default `yes`, every node refuses every key until the failover).
            .args(["--cluster-require-full-coverage", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start redis-server: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + READY_LIMIT;
        while !self.answers() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!(
                    "redis-server on port {} exited ({status}); log:\n{}",
                    self.port,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} not answering",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT: a stopped server accepts connections but never
    /// answers, like a stalled one.
    fn signal(&self, sig: &str) {
        let child = self.child.as_ref().expect("node is not running");
        let ok = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill {sig} redis-server on port {} failed", self.port);
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    /// Whether the node answers `PING`.
    fn answers(&self) -> bool {
        if self.options.tls.is_none() && self.options.password.is_none() {
            return ping(self.port).is_some();
        }
        self.cli(&["ping"]).trim() == "PONG"
    }

    /// `redis-cli` with the flags this node needs (TLS, the default user's password).
    fn cli_command(&self) -> Command {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string()]);
        add_cli_auth(&mut cmd, &self.options);
        cmd
    }

    /// Runs `redis-cli <args>` against this node; the output (empty if it is down).
    fn cli(&self, args: &[&str]) -> String {
        let out = self
            .cli_command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How a client reaches it: `redis://` or `rediss://`, with the default user's
    /// password if one is set.
    fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        match &self.options.password {
            Some(pw) => format!("{scheme}://:{pw}@127.0.0.1:{}", self.port),
            None => format!("{scheme}://127.0.0.1:{}", self.port),
        }
    }

    /// The URL as the ACL user `user` with `password`.
    fn url_as(&self, user: &str, password: &str) -> String {
        let scheme = if self.options.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://{user}:{password}@127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("redis.log")).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A single plain (non-cluster) Redis node.
pub struct RedisServer {
    proc: Proc,
}

impl RedisServer {
    /// Starts `redis-server` on a free port and waits until it answers.
    pub fn start() -> RedisServer {
        Self::start_with(&RedisOptions::default())
    }

    /// Starts `redis-server` secured as `options` say and waits until it answers.
    pub fn start_with(options: &RedisOptions) -> RedisServer {
        RedisServer {
            proc: Proc::start(false, options),
        }
    }

    /// `redis://127.0.0.1:<port>` (`rediss://` with TLS; with the password if one is set).
    pub fn url(&self) -> String {
        self.proc.url()
    }

    /// The URL as ACL user `user` with `password`.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        self.proc.url_as(user, password)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.proc.port
    }

    /// Kills the server (SIGKILL); its port then refuses connections.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.proc.kill();
        self.proc.spawn();
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing is answered.
    pub fn pause(&self) {
        self.proc.signal("-STOP");
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.proc.signal("-CONT");
    }

    /// Runs `redis-cli -p <port> <args>` (with the TLS and password flags it needs) and
    /// returns its output.
    pub fn cli(&self, args: &[&str]) -> String {
        self.proc.cli(args)
    }
}

/// What a cluster node is at the moment it was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Index in start order (stable across failovers and restarts).
    pub index: usize,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `redis://127.0.0.1:<port>` (as [`RedisCluster::urls`] gives it).
    pub url: String,
    /// The cluster node id.
    pub id: String,
    /// Whether the cluster currently sees it as a primary (master).
    pub primary: bool,
    /// Whether its process is running.
    pub running: bool,
    /// Slot ranges it serves (primaries only), inclusive.
    pub slots: Vec<(u16, u16)>,
}

/// A Redis Cluster of real `redis-server` processes, killed on drop.
pub struct RedisCluster {
    procs: Vec<Proc>,
    /// Replicas per primary asked for at start.
    replicas_per_primary: usize,
}

impl RedisCluster {
    /// Starts `primaries * (1 + replicas_per_primary)` nodes, creates the cluster with
    /// `redis-cli --cluster create`, and waits until every node reports `cluster_state:ok`,
    /// knows every other node, and every replica is in sync.
    pub fn start(primaries: usize, replicas_per_primary: usize) -> RedisCluster {
        Self::start_with(primaries, replicas_per_primary, &RedisOptions::default())
    }

    /// [`RedisCluster::start`] with every node secured as `options` say.
    pub fn start_with(
        primaries: usize,
        replicas_per_primary: usize,
        options: &RedisOptions,
    ) -> RedisCluster {
        assert!(primaries >= 3, "Redis Cluster needs at least 3 primaries");
        let n = primaries * (1 + replicas_per_primary);
        let procs: Vec<Proc> = (0..n).map(|_| Proc::start(true, options)).collect();
        let mut create = Command::new("redis-cli");
        add_cli_auth(&mut create, options);
        create.arg("--cluster").arg("create");
        for p in &procs {
            create.arg(format!("127.0.0.1:{}", p.port));
        }
        create
            .args(["--cluster-replicas", &replicas_per_primary.to_string()])
            .arg("--cluster-yes")
            .stdin(Stdio::null());
        let out = create.output().expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster {
            procs,
            replicas_per_primary,
        };
        cluster.wait_healthy();
        cluster
    }

    /// URLs of every running node (seed nodes for a cluster client).
    pub fn urls(&self) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.running())
            .map(Proc::url)
            .collect()
    }

    /// [`RedisCluster::urls`] as ACL user `user` with `password`.
    pub fn urls_as(&self, user: &str, password: &str) -> Vec<String> {
        self.procs
            .iter()
            .filter(|p| p.running())
            .map(|p| p.url_as(user, password))
            .collect()
    }

    /// URLs of the current primaries that are running.
    pub fn primary_urls(&self) -> Vec<String> {
        self.nodes()
            .into_iter()
            .filter(|n| n.primary && n.running)
            .map(|n| n.url)
            .collect()
    }

    /// Number of nodes started.
    pub fn len(&self) -> usize {
        self.procs.len()
    }

    /// Whether the cluster has no nodes (never, once started).
    pub fn is_empty(&self) -> bool {
        self.procs.is_empty()
    }

    /// Node `index` (in start order) as the cluster sees it now.
    pub fn node(&self, index: usize) -> NodeInfo {
        self.nodes().swap_remove(index)
    }

    /// Every node as the cluster sees it now (asked of a running node).
    pub fn nodes(&self) -> Vec<NodeInfo> {
        let view = self.cluster_nodes();
        self.procs
            .iter()
            .enumerate()
            .map(|(index, p)| {
                let line = view
                    .lines()
                    .find(|l| {
                        l.split(' ')
                            .nth(1)
                            .is_some_and(|a| addr_port(a) == Some(p.port))
                    })
                    .unwrap_or("");
                let fields: Vec<&str> = line.split(' ').collect();
                let flags = fields.get(2).copied().unwrap_or("");
                NodeInfo {
                    index,
                    port: p.port,
                    url: p.url(),
                    id: fields.first().copied().unwrap_or("").to_string(),
                    primary: flags.split(',').any(|f| f == "master"),
                    running: p.running(),
                    slots: fields
                        .iter()
                        .skip(8)
                        .filter_map(|s| slot_range(s))
                        .collect(),
                }
            })
            .collect()
    }

    /// The slot Redis Cluster puts `key` in (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        self.cli_any(&["cluster", "keyslot", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answer")
    }

    /// The running primary serving `slot` now.
    pub fn primary_of_slot(&self, slot: u16) -> NodeInfo {
        self.nodes()
            .into_iter()
            .find(|n| n.primary && n.slots.iter().any(|&(a, b)| (a..=b).contains(&slot)))
            .unwrap_or_else(|| panic!("no primary serves slot {slot}"))
    }

    /// Kills (SIGKILL) the node listening on `port`.
    pub fn stop_node(&mut self, port: u16) {
        self.proc_mut(port).kill();
    }

    /// Kills the primary serving `slot`; returns its port. Its replica takes over after
    /// about [`CLUSTER_NODE_TIMEOUT_MS`]; see [`RedisCluster::wait_healthy`].
    pub fn kill_primary_of(&mut self, slot: u16) -> u16 {
        let port = self.primary_of_slot(slot).port;
        self.stop_node(port);
        port
    }

    /// Freezes the node on `port` (SIGSTOP): it keeps its connections but answers nothing
    /// (the cluster fails it over after about [`CLUSTER_NODE_TIMEOUT_MS`]).
    pub fn pause_node(&self, port: u16) {
        self.proc(port).signal("-STOP");
    }

    /// Lets a paused node go on (SIGCONT).
    pub fn resume_node(&self, port: u16) {
        self.proc(port).signal("-CONT");
    }

    /// Starts the node on `port` again with its old cluster configuration (it rejoins,
    /// as a replica if it was failed over).
    pub fn restart_node(&mut self, port: u16) {
        let p = self.proc_mut(port);
        p.kill();
        p.spawn();
    }

    /// Waits until every running node reports `cluster_state:ok`, sees every running node
    /// as healthy, every slot is served by a running primary, and replicas are in sync.
    /// Panics with the cluster's view after a minute.
    pub fn wait_healthy(&self) {
        let deadline = Instant::now() + READY_LIMIT;
        loop {
            match self.health_problem() {
                None => return,
                Some(problem) if Instant::now() > deadline => {
                    panic!(
                        "Redis Cluster not healthy: {problem}\n{}",
                        self.cluster_nodes()
                    )
                }
                Some(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn health_problem(&self) -> Option<String> {
        let running: Vec<&Proc> = self.procs.iter().filter(|p| p.running()).collect();
        for p in &running {
            let info = p.cli(&["cluster", "info"]);
            if !info.contains("cluster_state:ok") {
                return Some(format!("node {} is not ok", p.port));
            }
            let view = p.cli(&["cluster", "nodes"]);
            for q in &running {
                let line = view
                    .lines()
                    .find(|l| l.split(' ').nth(1).and_then(addr_port) == Some(q.port));
                match line {
                    None => return Some(format!("node {} does not know {}", p.port, q.port)),
                    Some(l) if l.contains("fail") || l.contains("handshake") => {
                        return Some(format!("node {} sees {} as {l}", p.port, q.port))
                    }
                    _ => {}
                }
            }
            let repl = p.cli(&["info", "replication"]);
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                return Some(format!("replica {} not in sync", p.port));
            }
        }
        let nodes = self.nodes();
        if self.replicas_per_primary > 0 {
            // A node told to replicate that has not yet become a replica.
            if let Some(n) = nodes
                .iter()
                .find(|n| n.running && n.primary && n.slots.is_empty())
            {
                return Some(format!("node {} is a primary without slots", n.port));
            }
        }
        let served: u32 = nodes
            .iter()
            .filter(|n| n.primary && n.running)
            .flat_map(|n| n.slots.iter().map(|&(a, b)| u32::from(b - a) + 1))
            .sum();
        (served != 16384).then(|| format!("{served} of 16384 slots served"))
    }

    /// Runs `redis-cli -p <port> <args>` (with the TLS and password flags the nodes need)
    /// and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        self.proc(port).cli(args)
    }

    fn cli_any(&self, args: &[&str]) -> String {
        let p = self
            .procs
            .iter()
            .find(|p| p.running())
            .expect("no running node");
        p.cli(args)
    }

    fn cluster_nodes(&self) -> String {
        self.cli_any(&["cluster", "nodes"])
    }

    fn proc(&self, port: u16) -> &Proc {
        self.procs
            .iter()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }

    fn proc_mut(&mut self, port: u16) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.port == port)
            .unwrap_or_else(|| panic!("no node on port {port}"))
    }
}

/// `redis-cli` flags for nodes secured as `options` say.
fn add_cli_auth(cmd: &mut Command, options: &RedisOptions) {
    if let Some(tls) = &options.tls {
        cmd.arg("--tls")
            .arg("--cacert")
            .arg(&tls.ca_file)
            .arg("--cert")
            .arg(&tls.client.cert)
            .arg("--key")
            .arg(&tls.client.key);
    }
    if let Some(pw) = &options.password {
        cmd.args(["-a", pw, "--no-auth-warning"]);
    }
}

/// `127.0.0.1:7000@17000` → 7000.
fn addr_port(addr: &str) -> Option<u16> {
    addr.split('@').next()?.rsplit(':').next()?.parse().ok()
}

/// `0-5460` or `42` → the range; `[...]` (migrating) → none.
fn slot_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
        None => s.parse().ok().map(|a| (a, a)),
    }
}

/// `PING` over a raw socket; `Some` once the node answers `+PONG`.
fn ping(port: u16) -> Option<()> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.write_all(b"PING\r\n").ok()?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).ok()?;
    buf[..n].starts_with(b"+PONG").then_some(())
}

/// A free port (and, for cluster nodes, a free bus port = port + 10000), from a
/// per-process range so parallel test binaries rarely collide.
fn free_port(cluster: bool) -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 20_000 + (std::process::id() % 400) as u16 * 50;
    for _ in 0..20_000 {
        let offset = NEXT.fetch_add(1, Ordering::Relaxed) % 20_000;
        let port = 20_000 + (base - 20_000 + offset) % 20_000;
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && (!cluster || free(port + 10_000)) {
            return port;
        }
    }
    panic!("no free port for redis-server");
}

/// Panics with the package to install if the Redis binaries are missing.
fn require_binaries() {
    for bin in ["redis-server", "redis-cli"] {
        let found = Command::new(bin)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "`{bin}` not found on PATH: install Redis (Debian/Ubuntu: `apt-get install \
             redis-server`, which brings redis-cli via redis-tools)"
        );
    }
}
