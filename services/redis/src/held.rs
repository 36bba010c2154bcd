//! The ledger of held messages (DELAY quotas, docs/delay.md) in Redis, shared by every
//! quota service (and `sluice serve --redis`).
//!
//! The rules live in [`sluice_engine::hold::Ledger`]; this keeps its contents where all
//! servers see them, in one slot (`<prefix>:{held}:...`, so one script sees all of it):
//!
//! - `m`: a hash, message number → the message (its JSON, as the caller encodes it);
//! - `id`: the highest message number given (numbers are never given twice);
//! - `p`: a hash, queue → when it last released a message (ms; `paced` queues);
//! - `v`: the version, incremented by every write: a server keeps the ledger in memory and
//!   reads it again only when the version moved;
//! - `l`: the lock. A server takes it (`SET NX PX`) before it reads, decides and writes,
//!   so two servers never decide on the same messages at once; a write is refused unless
//!   the lock is still the writer's (`held_write.lua`), so a server whose lock expired
//!   (stalled for longer than its time to live) changes nothing.
//!
//! Holds are rare next to policy requests (only mail over a DELAY quota), and an agent
//! syncs about once a second, so one slot is not a bottleneck; the whole ledger is read
//! only when another server changed it.
//!
//! Writes wait for the replicas the counters wait for (`wait_replicas`), so a hold that
//! Postfix was told about survives a failover as a charge does.

use crate::cluster::request::Request;
use crate::conn::parse;
use crate::state::RedisState;
use sluice_engine::StateError;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The write script.
const WRITE: &str = include_str!("held_write.lua");

/// Releases a lock only if it is still the caller's.
const UNLOCK: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
                      return redis.call('DEL', KEYS[1]) else return 0 end";

/// How long a lock lasts if its holder never gives it back (a holder that stalls longer
/// writes nothing: its write is refused).
pub const LOCK_TTL: Duration = Duration::from_secs(10);

/// The ledger as read from Redis.
#[derive(Debug, Default)]
pub struct StoredLedger {
    /// The version read.
    pub version: u64,
    /// Each message's number and encoding, in no order.
    pub messages: Vec<(u64, String)>,
    /// The highest message number given.
    pub last_id: u64,
    /// Queue → when it last released (ms).
    pub paces: HashMap<String, u64>,
}

/// What one write changes.
#[derive(Debug)]
pub struct LedgerWrite<'a> {
    /// Messages to insert or replace: number and encoding.
    pub puts: Vec<(u64, String)>,
    /// Message numbers to remove.
    pub removes: Vec<u64>,
    /// The highest message number given (kept if lower than the stored one).
    pub last_id: u64,
    /// Every queue's last release time (replaces the stored ones).
    pub paces: &'a HashMap<String, u64>,
}

/// The ledger's lock, as taken by [`RedisState::held_lock`].
#[derive(Debug)]
pub struct LedgerLock {
    token: String,
}

/// The SHA1 of the write script and of [`UNLOCK`], computed once.
fn sha(source: &'static str) -> &'static str {
    static WRITE_SHA: OnceLock<String> = OnceLock::new();
    static UNLOCK_SHA: OnceLock<String> = OnceLock::new();
    let cell = if source == WRITE {
        &WRITE_SHA
    } else {
        &UNLOCK_SHA
    };
    cell.get_or_init(|| redis::Script::new(source).get_hash().to_string())
}

/// A token no other holder has: this process's random seed and a counter.
fn token() -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let seed = SEED.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    format!("{seed:016x}-{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

fn eval(source: &'static str, keys: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha(source)).arg(keys.len());
    for k in keys {
        cmd.arg(*k);
    }
    cmd
}

impl RedisState {
    fn held_key(&self, kind: &str) -> String {
        self.backend().keys.held(kind)
    }

    /// Takes the ledger's lock, trying again every few milliseconds for at most `wait`.
    pub async fn held_lock(&self, wait: Duration) -> Result<LedgerLock, StateError> {
        let key = self.held_key("l");
        let token = token();
        let until = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let mut cmd = redis::cmd("SET");
            cmd.arg(&key)
                .arg(&token)
                .arg("NX")
                .arg("PX")
                .arg(LOCK_TTL.as_millis() as u64);
            let reply = self
                .backend()
                .conn
                .call(&Request::single(&key, cmd), self.backend().timeout)
                .await?;
            if !matches!(reply.first(), Some(redis::Value::Nil) | None) {
                return Ok(LedgerLock { token });
            }
            if tokio::time::Instant::now() + pause > until {
                return Err(StateError::Timeout);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Gives the lock back (if it is still `lock`'s). Best effort: an unreturned lock
    /// expires after [`LOCK_TTL`].
    pub async fn held_unlock(&self, lock: LedgerLock) {
        let key = self.held_key("l");
        let mut cmd = eval(UNLOCK, &[&key]);
        cmd.arg(&lock.token);
        let req = Request::eval(&key, cmd, UNLOCK);
        if let Err(e) = self.backend().conn.call(&req, self.backend().timeout).await {
            tracing::debug!(error = %e, "Cannot give back the held-message ledger's lock; it expires by itself");
        }
    }

    /// The ledger's version (0: never written).
    pub async fn held_version(&self) -> Result<u64, StateError> {
        let key = self.held_key("v");
        let mut cmd = redis::cmd("GET");
        cmd.arg(&key);
        let reply = self
            .backend()
            .conn
            .call(&Request::single(&key, cmd), self.backend().timeout)
            .await?;
        let v: Option<u64> = parse(reply.into_iter().next().unwrap_or(redis::Value::Nil))?;
        Ok(v.unwrap_or(0))
    }

    /// Reads the whole ledger, atomically (one `MULTI`/`EXEC`).
    pub async fn held_load(&self) -> Result<StoredLedger, StateError> {
        let v = self.held_key("v");
        let mut cmds = Vec::new();
        for (name, key) in [
            ("GET", v.clone()),
            ("GET", self.held_key("id")),
            ("HGETALL", self.held_key("m")),
            ("HGETALL", self.held_key("p")),
        ] {
            let mut c = redis::cmd(name);
            c.arg(key);
            cmds.push(c);
        }
        let replies = self
            .backend()
            .conn
            .call(&Request::transaction(&v, cmds), self.backend().timeout)
            .await?;
        let mut replies = replies.into_iter();
        let mut next = || replies.next().unwrap_or(redis::Value::Nil);
        let version: Option<u64> = parse(next())?;
        let last_id: Option<u64> = parse(next())?;
        let messages: HashMap<u64, String> = parse(next())?;
        let paces: HashMap<String, u64> = parse(next())?;
        Ok(StoredLedger {
            version: version.unwrap_or(0),
            messages: messages.into_iter().collect(),
            last_id: last_id.unwrap_or(0),
            paces,
        })
    }

    /// Writes `write` if `lock` is still held, and waits for the replicas the counters
    /// wait for; the new version.
    pub async fn held_write(
        &self,
        lock: &LedgerLock,
        write: &LedgerWrite<'_>,
    ) -> Result<u64, StateError> {
        let keys = ["l", "m", "v", "id", "p"].map(|k| self.held_key(k));
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let mut cmd = eval(WRITE, &refs);
        cmd.arg(&lock.token).arg(write.last_id);
        cmd.arg(write.puts.len());
        for (id, body) in &write.puts {
            cmd.arg(*id).arg(body);
        }
        cmd.arg(write.removes.len());
        for id in &write.removes {
            cmd.arg(*id);
        }
        cmd.arg(write.paces.len());
        for (queue, at) in write.paces {
            cmd.arg(queue).arg(*at);
        }
        let req = Request::eval(&keys[0], cmd, WRITE);
        let (reply, landed) = self
            .backend()
            .conn
            .call_landed(&req, self.backend().timeout)
            .await?;
        let version: u64 = parse(reply.into_iter().next().unwrap_or(redis::Value::Nil))?;
        self.backend()
            .conn
            .confirm(&landed, self.backend().timeout)
            .await?;
        Ok(version)
    }
}
