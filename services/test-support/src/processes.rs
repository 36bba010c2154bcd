//! Real processes for cluster tests: a long-running command ([`Process`]) that can be
//! waited for, killed, sent SIGTERM and restarted with the same arguments (so on the same
//! ports), and a private PostgreSQL server ([`PrivatePostgres`]) that a test may stop and
//! start without touching the machine's shared one.
//!
//! Everything listens on `127.0.0.1` only, every wait is bounded, and everything is killed
//! (and its directory removed) on drop. The functions block; call them from a blocking
//! context (`tokio::task::spawn_blocking`) if an async runtime must keep running meanwhile.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound, then released), from 10000–19999: below the range
/// the kernel takes source ports of outgoing connections from, and apart from the Redis
/// nodes' range (20000–49999, see `redis_cluster`). A port from the kernel's range (what
/// binding port 0 gives) can meanwhile become the source port of some connection: a
/// server started on it then fails to bind, and a check that nothing listens on it can
/// connect to itself (TCP simultaneous open).
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const SPAN: u32 = 10_000;
    if ephemeral_low() >= LOW + SPAN {
        // Test processes start at different places (by pid) and each walks on from there.
        let start = std::process::id().wrapping_mul(7_919);
        for _ in 0..SPAN {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = LOW + start.wrapping_add(n.wrapping_mul(13)) % SPAN;
            if TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// The lowest port the kernel may pick as a connection's source port (Linux's
/// `ip_local_port_range`; its default when unreadable).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Whether something accepts TCP connections on `127.0.0.1:port`.
pub fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

/// Waits until `127.0.0.1:port` accepts connections; panics after `limit`.
pub fn wait_listening(port: u16, limit: Duration, what: &str) {
    let deadline = Instant::now() + limit;
    while !listening(port) {
        assert!(
            Instant::now() < deadline,
            "{what}: nothing listens on 127.0.0.1:{port} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running command whose output goes to a log file, killed on drop.
pub struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    ready_port: Option<u16>,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
}

impl Process {
    /// Starts `program args` (stdout and stderr to a log file) and, if `ready_port` is
    /// given, waits (at most 30 s) until that port on 127.0.0.1 accepts connections.
    /// Panics, with the log, if the process exits or never listens.
    pub fn start(
        name: &str,
        program: impl AsRef<Path>,
        args: &[String],
        ready_port: Option<u16>,
    ) -> Process {
        Process::start_with_env(name, program, args, &[], ready_port)
    }

    /// [`Process::start`] with extra environment variables.
    pub fn start_with_env(
        name: &str,
        program: impl AsRef<Path>,
        args: &[String],
        envs: &[(&str, &str)],
        ready_port: Option<u16>,
    ) -> Process {
        let mut p = Process {
            name: name.to_string(),
            program: program.as_ref().to_path_buf(),
            args: args.to_vec(),
            envs: envs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ready_port,
            dir: tempfile::tempdir().expect("temp dir for a process log"),
            child: None,
            starts: 0,
        };
        p.spawn();
        p
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("output.log")
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        self.starts += 1;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open process log");
        let err = log.try_clone().expect("clone log handle");
        let child = Command::new(&self.program)
            .args(&self.args)
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.name));
        self.child = Some(child);
        if let Some(port) = self.ready_port {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !listening(port) {
                if let Some(status) = self.try_status() {
                    panic!(
                        "{} exited ({status}) before listening on {port}; log:\n{}",
                        self.name,
                        self.log()
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{} not listening on {port} after 30 s; log:\n{}",
                    self.name,
                    self.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The name given at start.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the process is running (started and not exited).
    pub fn running(&mut self) -> bool {
        self.child.is_some() && self.try_status().is_none()
    }

    /// Everything it wrote to stdout and stderr so far (all runs).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits until the log contains `needle`; panics with the log after `limit`. Log
    /// lines are written by a background thread a few milliseconds after the event, so
    /// a test reads them with this, never right after the event.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.log().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the log of {} after {limit:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills it (SIGKILL) and reaps it. No-op if not running.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `signal` (`"TERM"`, `"INT"`, `"STOP"`, `"CONT"`...) with `kill(1)`.
    pub fn signal(&self, signal: &str) {
        let pid = self
            .pid()
            .unwrap_or_else(|| panic!("{} is not running", self.name));
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "kill -{signal} {} ({pid}) failed", self.name);
    }

    /// Sends SIGTERM and waits (at most `limit`) for the process to exit; returns its
    /// status. Panics if it is still running after `limit` (then kills it).
    pub fn terminate(&mut self, limit: Duration) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit(limit)
    }

    /// Waits (at most `limit`) for the process to exit by itself; panics (after killing it)
    /// if it does not.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_status() {
                self.child = None;
                return status;
            }
            if Instant::now() > deadline {
                self.kill();
                panic!(
                    "{} still running {limit:?} after being asked to stop",
                    self.name
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Starts it again with the same command line (after [`Process::kill`] or
    /// [`Process::terminate`]; kills it first if it is still running) and waits until it
    /// listens again.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// How many times it was started.
    pub fn starts(&self) -> u32 {
        self.starts
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A private PostgreSQL server (initdb + pg_ctl from `/usr/lib/postgresql/*/bin`) on a free
/// 127.0.0.1 port, in a temporary directory, with trust authentication for user
/// `postgres`. When run as root it runs as the `postgres` system user (`runuser`), because
/// PostgreSQL refuses to run as root. Stopped and removed on drop.
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PrivatePostgres {
    /// Creates the cluster (initdb, a few seconds) and starts the server.
    pub fn start() -> PrivatePostgres {
        let bin = postgres_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sluice-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        let as_postgres = is_root();
        if as_postgres {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "chown the PostgreSQL directory to the postgres user");
        }
        let mut pg = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
            as_postgres,
            running: false,
        };
        let data = pg.data_dir();
        let out = pg
            .command("initdb")
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .arg("-D")
            .arg(&data)
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start_server();
        pg
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn command(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Starts the server (after [`PrivatePostgres::stop`]) on the same port, with the same
    /// data, and waits until it accepts connections.
    pub fn start_server(&mut self) {
        let options = format!(
            "-p {} -h 127.0.0.1 -k {} -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("server.log"))
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed:\n{}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        self.running = true;
        wait_listening(self.port, Duration::from_secs(30), "private PostgreSQL");
    }

    /// Stops the server (`pg_ctl stop -m fast`: open connections are cut) and waits until
    /// it is gone; its port then refuses connections.
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        let _ = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output();
        self.running = false;
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs one SQL statement as user `postgres` in `database` with `psql`; panics on
    /// failure; returns psql's unaligned, tuples-only output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .arg(self.url(database))
            .args(["-c", sql])
            .stdin(Stdio::null())
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql {sql:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The server log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.running {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "-t", "30", "stop"])
                .output();
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`, or the directory of
/// `initdb` on the `PATH`.
fn postgres_bin_dir() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    if let Some((_, bin)) = found.pop() {
        return bin;
    }
    let which = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .expect("run sh");
    let path = String::from_utf8_lossy(&which.stdout).trim().to_string();
    assert!(
        !path.is_empty(),
        "PostgreSQL server binaries (initdb, pg_ctl) not found: install postgresql"
    );
    PathBuf::from(path)
        .parent()
        .expect("initdb has a directory")
        .to_path_buf()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_free_distinct_and_below_the_ephemeral_range() {
        let low = ephemeral_low();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        for &p in &ports {
            assert!(
                u32::from(p) < low,
                "{p} is in the ephemeral range (from {low})"
            );
            assert!(TcpListener::bind(("127.0.0.1", p)).is_ok(), "{p} is taken");
        }
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), ports.len());
    }
}
