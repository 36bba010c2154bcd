//! The Lua scripts and their typed calls.

use crate::cluster::replication::Landed;
use crate::cluster::request::Request;
use crate::coalesce::{Coalescer, Item};
use crate::conn::{parse, Conn};
use sluice_engine::window::WindowSpec;
use sluice_engine::StateError;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Largest integer a Lua number (a double) holds exactly: costs and limits are capped here.
pub(crate) const MAX_EXACT: u64 = 1 << 53;

/// What the counter script does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Read the level.
    Level,
    /// Would the cost fit? Changes nothing.
    Check,
    /// Prune, then add the cost if it fits.
    Take,
    /// Give back a cost taken at the given time.
    Refund,
}

impl Mode {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Level => "level",
            Mode::Check => "check",
            Mode::Take => "take",
            Mode::Refund => "refund",
        }
    }
}

/// The counter script's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CounterAnswer {
    /// The cost fitted (and, for [`Mode::Take`], was charged).
    pub fits: bool,
    /// Level before a check or take, after a refund.
    pub level: u64,
    /// When refused: ms until the cost fits, `None` if it never can.
    pub retry_after_ms: Option<u64>,
    /// The time the script used (Redis's clock unless one was passed).
    pub now_ms: u64,
    /// [`Mode::Take`] with a want: the lease units charged with the cost (not in `level`).
    pub leased: u64,
    /// [`Mode::Take`]: ms from `now_ms` until the current sub-bucket ends (how long a lease
    /// may be used).
    pub valid_ms: u64,
}

impl CounterAnswer {
    /// A read's answer: fits, the level at `now_ms`, no lease.
    pub(crate) fn read(level: u64, now_ms: u64) -> Self {
        CounterAnswer {
            fits: true,
            level,
            retry_after_ms: Some(0),
            now_ms,
            leased: 0,
            valid_ms: 0,
        }
    }
}

/// One counter call.
#[derive(Debug, Clone)]
pub(crate) struct CounterCall<'a> {
    /// The Redis key of the counter's window.
    pub key: std::borrow::Cow<'a, str>,
    /// What to do.
    pub mode: Mode,
    /// Amount to check, take or refund.
    pub cost: u64,
    /// The limit.
    pub limit: u64,
    /// The window.
    pub window: WindowSpec,
    /// The time to use; `None`: Redis's own clock.
    pub now_ms: Option<u64>,
    /// [`Mode::Take`]: lease units wanted on top of the cost (0: none).
    pub want: u64,
}

/// A Lua script run by its SHA1 (`EVALSHA`), loaded on the node on `NOSCRIPT`.
pub(crate) struct Lua {
    source: &'static str,
    sha: String,
}

impl Lua {
    fn new(source: &'static str) -> Self {
        Lua {
            source,
            sha: redis::Script::new(source).get_hash().to_string(),
        }
    }

    /// `EVALSHA <sha> <number of keys> <keys>`; the caller adds the arguments.
    pub(crate) fn evalsha(&self, keys: &[&str]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(&self.sha).arg(keys.len()).arg(keys);
        cmd
    }

    /// The request running `cmd` (from [`Lua::evalsha`]), routed by `keys[0]`.
    pub(crate) fn request(&self, key: &str, cmd: redis::Cmd) -> Request {
        Request::eval(key, cmd, self.source)
    }
}

/// The loaded-on-demand scripts (EVALSHA; loaded again on NOSCRIPT), and the queue that
/// sends the counter ops waiting at the same time together (see [`crate::coalesce`]).
pub(crate) struct Scripts {
    counters: Coalescer,
    session_write: Lua,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Scripts {
            counters: Coalescer::new(Arc::new(Lua::new(include_str!("counter.lua")))),
            session_write: Lua::new(include_str!("session_write.lua")),
        }
    }

    /// Runs one counter op.
    pub(crate) async fn counter(
        &self,
        conn: &Conn,
        timeout: Duration,
        call: CounterCall<'_>,
    ) -> Result<CounterAnswer, StateError> {
        self.counter_landed(conn, timeout, call)
            .await
            .map(|(answer, _)| answer)
    }

    /// Runs one counter op, together with the others waiting for the same node (see
    /// [`crate::coalesce`]); for a take or refund, also says where it ran (a charge is
    /// acknowledged only once a replica has it: [`Conn::confirm`]). Bounded by `timeout`
    /// and the batch's deadline ([`crate::deadline`]).
    pub(crate) async fn counter_landed(
        &self,
        conn: &Conn,
        timeout: Duration,
        call: CounterCall<'_>,
    ) -> Result<(CounterAnswer, Option<Landed>), StateError> {
        let deadline = crate::deadline::call_deadline(timeout);
        if deadline <= Instant::now() {
            return Err(StateError::Timeout);
        }
        let (reply, answer) = oneshot::channel();
        self.counters.push(Item {
            conn: conn.clone(),
            key: call.key.into_owned(),
            mode: call.mode,
            cost: call.cost,
            limit: call.limit,
            window: call.window,
            now_ms: call.now_ms,
            want: call.want,
            timeout,
            deadline,
            reply,
        });
        match tokio::time::timeout_at(deadline, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(StateError::Unavailable(
                "the counter call was dropped before it was answered".into(),
            )),
            Err(_) => Err(StateError::Timeout),
        }
    }

    /// Reads a session: (charged counter keys, END-OF-MESSAGE fields and values). Plain
    /// reads in one MULTI/EXEC (both keys share a slot): as atomic as a script, cheaper.
    pub(crate) async fn session_read(
        &self,
        conn: &Conn,
        timeout: Duration,
        charged_key: &str,
        eom_key: &str,
    ) -> Result<StoredSession, StateError> {
        let req = Request::transaction(charged_key, session_read_cmds(charged_key, eom_key));
        session_reply(conn.call(&req, timeout).await?)
    }

    /// Reads a session and deletes it, atomically (one MULTI/EXEC): END-OF-MESSAGE ends
    /// the message's session, and a second END-OF-MESSAGE of the same message finds it
    /// empty instead of charging the size again.
    pub(crate) async fn session_take(
        &self,
        conn: &Conn,
        timeout: Duration,
        charged_key: &str,
        eom_key: &str,
    ) -> Result<StoredSession, StateError> {
        let mut del = redis::cmd("DEL");
        del.arg(charged_key).arg(eom_key);
        let cmds = session_read_cmds(charged_key, eom_key)
            .into_iter()
            .chain([del]);
        let req = Request::transaction(charged_key, cmds);
        session_reply(conn.call(&req, timeout).await?)
    }

    /// Creates a session that did not exist when it was read: plain commands in one
    /// MULTI/EXEC (both keys share a slot) instead of the session script — `SADD` the
    /// charged keys, `HSETNX` the records with their sequence numbers (a record written
    /// meanwhile by another request of the message wins, as with the script), and the
    /// session TTL on both keys.
    pub(crate) async fn session_create(
        &self,
        conn: &Conn,
        timeout: Duration,
        update: &SessionUpdate<'_>,
    ) -> Result<(), StateError> {
        let SessionUpdate {
            charged_key,
            eom_key,
            ttl_ms,
            charged,
            records,
        } = *update;
        let mut cmds = Vec::with_capacity(records.len() + 3);
        if !charged.is_empty() {
            let mut sadd = redis::cmd("SADD");
            sadd.arg(charged_key).arg(charged);
            cmds.push(sadd);
        }
        for (seq, (k, v)) in records.iter().enumerate() {
            let mut hsetnx = redis::cmd("HSETNX");
            hsetnx.arg(eom_key).arg(k).arg(format!("{seq}|{v}"));
            cmds.push(hsetnx);
        }
        for key in [charged_key, eom_key] {
            let mut pexpire = redis::cmd("PEXPIRE");
            pexpire.arg(key).arg(ttl_ms.max(1));
            cmds.push(pexpire);
        }
        conn.call(&Request::transaction(charged_key, cmds), timeout)
            .await?;
        Ok(())
    }

    /// Adds charged keys and END-OF-MESSAGE records to a session.
    pub(crate) async fn session_write(
        &self,
        conn: &Conn,
        timeout: Duration,
        update: &SessionUpdate<'_>,
    ) -> Result<(), StateError> {
        let SessionUpdate {
            charged_key,
            eom_key,
            ttl_ms,
            charged,
            records,
        } = *update;
        let mut cmd = self.session_write.evalsha(&[charged_key, eom_key]);
        cmd.arg(ttl_ms.max(1)).arg(charged.len());
        for c in charged {
            cmd.arg(c);
        }
        for (k, v) in records {
            cmd.arg(k).arg(v);
        }
        conn.call(&self.session_write.request(charged_key, cmd), timeout)
            .await?;
        Ok(())
    }
}

/// A stored session: the charged counter keys, the END-OF-MESSAGE fields and values.
pub(crate) type StoredSession = (Vec<String>, Vec<(String, String)>);

/// What one request adds to its message's session.
#[derive(Clone, Copy)]
pub(crate) struct SessionUpdate<'a> {
    /// The session's set of counters charged once for the message.
    pub charged_key: &'a str,
    /// The session's hash of END-OF-MESSAGE records.
    pub eom_key: &'a str,
    /// The session's time to live.
    pub ttl_ms: u64,
    /// Counter keys newly charged once for the message.
    pub charged: &'a [String],
    /// New END-OF-MESSAGE records (counter key, encoded record).
    pub records: &'a [(String, String)],
}

/// `SMEMBERS` of the charged keys and `HGETALL` of the records, for one MULTI/EXEC (both
/// keys share a slot).
fn session_read_cmds(charged_key: &str, eom_key: &str) -> [redis::Cmd; 2] {
    let mut smembers = redis::cmd("SMEMBERS");
    smembers.arg(charged_key);
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(eom_key);
    [smembers, hgetall]
}

/// The charged keys and records from the replies of [`session_read_cmds`] (and a `DEL`).
fn session_reply(replies: Vec<redis::Value>) -> Result<StoredSession, StateError> {
    let mut replies = replies.into_iter();
    let (Some(charged), Some(eom)) = (replies.next(), replies.next()) else {
        return Err(StateError::Unavailable("short session reply".into()));
    };
    Ok((parse(charged)?, parse(eom)?))
}
