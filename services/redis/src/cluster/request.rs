//! What is sent to one node, and what its replies mean.
//!
//! A [`Request`] has one of three shapes, chosen so that a redirect answer proves that
//! *nothing with an effect ran* and the whole request may be sent again elsewhere:
//! - one command (a redirected command did not run);
//! - a pipeline of read-only commands (running them twice changes nothing);
//! - a `MULTI`/`EXEC` transaction (a redirected queued command, or a redirected `EXEC`,
//!   aborts the whole transaction).
//!
//! A request is routed by one key: all its keys must share that key's slot.

use super::slots::key_slot;
use redis::{Cmd, Pipeline, ServerError, ServerErrorKind, Value};
use std::borrow::Cow;

/// One request to one node.
pub(crate) struct Request {
    /// What is sent: the commands, with `MULTI`/`EXEC` around them for a transaction.
    pipe: Pipeline,
    shape: Shape,
    slot: u16,
    /// The Lua source to load on `NOSCRIPT` (an `EVALSHA` request).
    script: Option<&'static str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Single,
    Reads,
    Transaction,
}

/// What a node's replies to a request mean.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Done: the replies of the commands (of a transaction: `EXEC`'s items).
    Done(Vec<Value>),
    /// `MOVED`: the slot is served by `addr` now. Nothing ran.
    Moved { slot: u16, addr: String },
    /// `ASK`: send this one request to `addr`, after `ASKING`. Nothing ran.
    Ask { addr: String },
    /// `TRYAGAIN` (a multi-key command during a slot migration) or `READONLY` (a write
    /// to a primary just demoted): nothing ran; the same request may succeed a few
    /// milliseconds later (after a topology refresh).
    Wait(String),
    /// `CLUSTERDOWN`, `MASTERDOWN` or `LOADING`: nothing ran, but this lasts seconds (a
    /// failover, a restart): the call fails at once rather than at its deadline.
    Down(String),
    /// `NOSCRIPT`: the script must be loaded on the node; nothing ran.
    NoScript,
    /// Anything else: a real error, not to be resent.
    Failed(String),
}

impl Request {
    /// One command whose keys share `key`'s slot.
    pub(crate) fn single(key: &str, cmd: Cmd) -> Self {
        Self::build(key, Shape::Single, [cmd])
    }

    /// An `EVALSHA` of `script` (its Lua source, loaded on `NOSCRIPT`).
    pub(crate) fn eval(key: &str, cmd: Cmd, script: &'static str) -> Self {
        let mut r = Self::single(key, cmd);
        r.script = Some(script);
        r
    }

    /// Read-only commands, pipelined.
    pub(crate) fn reads(key: &str, cmds: impl IntoIterator<Item = Cmd>) -> Self {
        Self::build(key, Shape::Reads, cmds)
    }

    /// Commands run atomically in one `MULTI`/`EXEC`.
    pub(crate) fn transaction(key: &str, cmds: impl IntoIterator<Item = Cmd>) -> Self {
        Self::build(key, Shape::Transaction, cmds)
    }

    fn build(key: &str, shape: Shape, cmds: impl IntoIterator<Item = Cmd>) -> Self {
        let mut pipe = Pipeline::new();
        if shape == Shape::Transaction {
            pipe.cmd("MULTI");
        }
        for c in cmds {
            pipe.add_command(c);
        }
        if shape == Shape::Transaction {
            pipe.cmd("EXEC");
        }
        Request {
            pipe,
            shape,
            slot: key_slot(key.as_bytes()),
            script: None,
        }
    }

    /// The slot the request is routed by.
    pub(crate) fn slot(&self) -> u16 {
        self.slot
    }

    /// The Lua source to load when the node answers `NOSCRIPT`.
    pub(crate) fn script(&self) -> Option<&'static str> {
        self.script
    }

    /// The pipeline to send; after `ASK`, with `ASKING` before each command (before
    /// `MULTI` for a transaction: the flag then lasts until `EXEC`).
    pub(crate) fn pipeline(&self, asking: bool) -> Cow<'_, Pipeline> {
        if !asking {
            return Cow::Borrowed(&self.pipe);
        }
        let mut pipe = Pipeline::new();
        for (i, c) in self.pipe.cmd_iter().enumerate() {
            if i == 0 || self.shape != Shape::Transaction {
                pipe.cmd("ASKING");
            }
            pipe.add_command(c.clone());
        }
        Cow::Owned(pipe)
    }

    /// What the replies to [`Request::pipeline`]`(asking)` mean.
    pub(crate) fn verdict(&self, replies: Vec<Value>, asking: bool) -> Verdict {
        let mut replies = if asking {
            strip_asking(replies, self.shape)
        } else {
            replies
        };
        let expected = self.pipe.len();
        if replies.len() != expected {
            return Verdict::Failed(format!(
                "expected {expected} replies, got {}",
                replies.len()
            ));
        }
        match self.shape {
            Shape::Single | Shape::Reads => match replies.iter().find_map(server_error) {
                None => Verdict::Done(replies),
                Some(e) => self.error_verdict(e),
            },
            Shape::Transaction => match replies.pop() {
                Some(Value::Array(items)) => match items.iter().find_map(server_error) {
                    // A command failed while the others ran: not to be resent.
                    Some(e) => Verdict::Failed(describe(e)),
                    None => Verdict::Done(items),
                },
                // EXECABORT: a queued command was refused, so nothing ran; the first
                // refusal says why.
                Some(Value::ServerError(e)) if e.kind() == Some(ServerErrorKind::ExecAbort) => {
                    match replies.iter().find_map(server_error) {
                        Some(queued) => self.error_verdict(queued),
                        None => Verdict::Failed(describe(&e)),
                    }
                }
                // EXEC itself redirected (its keys checked together): nothing ran.
                Some(Value::ServerError(e)) => self.error_verdict(&e),
                other => Verdict::Failed(format!("unexpected EXEC reply {other:?}")),
            },
        }
    }

    fn error_verdict(&self, e: &ServerError) -> Verdict {
        match e.kind() {
            Some(ServerErrorKind::Moved) => match parse_redirect(e) {
                Some((slot, addr)) => Verdict::Moved { slot, addr },
                None => Verdict::Failed(describe(e)),
            },
            Some(ServerErrorKind::Ask) => match parse_redirect(e) {
                Some((_, addr)) => Verdict::Ask { addr },
                None => Verdict::Failed(describe(e)),
            },
            Some(ServerErrorKind::TryAgain | ServerErrorKind::ReadOnly) => {
                Verdict::Wait(describe(e))
            }
            Some(
                ServerErrorKind::ClusterDown
                | ServerErrorKind::MasterDown
                | ServerErrorKind::BusyLoading,
            ) => Verdict::Down(describe(e)),
            Some(ServerErrorKind::NoScript) if self.script.is_some() => Verdict::NoScript,
            _ => Verdict::Failed(describe(e)),
        }
    }
}

/// The replies without those of the `ASKING` commands [`Request::pipeline`] added.
fn strip_asking(replies: Vec<Value>, shape: Shape) -> Vec<Value> {
    if shape == Shape::Transaction {
        replies.into_iter().skip(1).collect()
    } else {
        replies.into_iter().skip(1).step_by(2).collect()
    }
}

fn server_error(v: &Value) -> Option<&ServerError> {
    match v {
        Value::ServerError(e) => Some(e),
        _ => None,
    }
}

fn describe(e: &ServerError) -> String {
    match e.details() {
        Some(d) => format!("{} {d}", e.code()),
        None => e.code().to_string(),
    }
}

/// `MOVED`/`ASK` details `<slot> <host>:<port>` → (slot, address). An empty host means
/// "the host you asked": the caller resolves `:port` against it.
fn parse_redirect(e: &ServerError) -> Option<(u16, String)> {
    let (slot, addr) = e.details()?.trim().split_once(' ')?;
    Some((slot.parse().ok()?, addr.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server error as the parser makes it.
    fn err(text: &str) -> Value {
        let line = format!("-{text}\r\n");
        redis::parse_redis_value(line.as_bytes()).unwrap()
    }

    fn ok() -> Value {
        Value::Okay
    }

    fn incr() -> Cmd {
        let mut c = redis::cmd("HINCRBY");
        c.arg("{k}:w").arg("1").arg(-1);
        c
    }

    #[test]
    fn single_commands() {
        let r = Request::single("{k}:w", incr());
        assert_eq!(r.slot(), key_slot(b"k"));
        assert_eq!(
            r.verdict(vec![Value::Int(4)], false),
            Verdict::Done(vec![Value::Int(4)])
        );
        assert_eq!(
            r.verdict(vec![err("MOVED 3999 127.0.0.1:6381")], false),
            Verdict::Moved {
                slot: 3999,
                addr: "127.0.0.1:6381".into()
            }
        );
        assert_eq!(
            r.verdict(vec![err("ASK 3999 :6382")], false),
            Verdict::Ask {
                addr: ":6382".into()
            }
        );
        assert!(matches!(
            r.verdict(
                vec![err(
                    "TRYAGAIN Multiple keys request during rehashing of slot"
                )],
                false
            ),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            r.verdict(
                vec![err("READONLY You can't write against a read only replica.")],
                false
            ),
            Verdict::Wait(_)
        ));
        assert!(matches!(
            r.verdict(vec![err("CLUSTERDOWN The cluster is down")], false),
            Verdict::Down(_)
        ));
        assert!(matches!(
            r.verdict(vec![err("WRONGTYPE Operation against a key")], false),
            Verdict::Failed(_)
        ));
        // NOSCRIPT only means "load it" for a script request.
        assert!(matches!(
            r.verdict(vec![err("NOSCRIPT No matching script")], false),
            Verdict::Failed(_)
        ));
        let e = Request::eval("k", redis::cmd("EVALSHA"), "return 1");
        assert_eq!(
            e.verdict(vec![err("NOSCRIPT No matching script")], false),
            Verdict::NoScript
        );
        assert!(matches!(r.verdict(vec![], false), Verdict::Failed(_)));
    }

    #[test]
    fn asking_comes_before_each_command_or_before_multi() {
        let packed = |p: &Pipeline| {
            p.cmd_iter()
                .map(|c| {
                    String::from_utf8_lossy(&c.get_packed_command())
                        .split("\r\n")
                        .nth(2)
                        .unwrap()
                        .to_string()
                })
                .collect::<Vec<_>>()
        };
        let reads = Request::reads("k", [redis::cmd("TIME"), redis::cmd("HGETALL")]);
        assert_eq!(packed(&reads.pipeline(false)), ["TIME", "HGETALL"]);
        assert_eq!(
            packed(&reads.pipeline(true)),
            ["ASKING", "TIME", "ASKING", "HGETALL"]
        );
        let replies = vec![ok(), Value::Int(1), ok(), Value::Int(2)];
        assert_eq!(
            reads.verdict(replies, true),
            Verdict::Done(vec![Value::Int(1), Value::Int(2)])
        );
        let tx = Request::transaction("k", [redis::cmd("SMEMBERS"), redis::cmd("DEL")]);
        assert_eq!(
            packed(&tx.pipeline(true)),
            ["ASKING", "MULTI", "SMEMBERS", "DEL", "EXEC"]
        );
        let queued = || Value::SimpleString("QUEUED".into());
        let replies = vec![
            ok(),
            ok(),
            queued(),
            queued(),
            Value::Array(vec![Value::Array(vec![]), Value::Int(0)]),
        ];
        assert_eq!(
            tx.verdict(replies, true),
            Verdict::Done(vec![Value::Array(vec![]), Value::Int(0)])
        );
    }

    #[test]
    fn transactions_are_resent_only_when_nothing_ran() {
        let tx = Request::transaction("k", [redis::cmd("SMEMBERS"), redis::cmd("DEL")]);
        let queued = || Value::SimpleString("QUEUED".into());
        // A queued command redirected: EXECABORT, nothing ran.
        let moved = vec![
            ok(),
            err("MOVED 12 10.0.0.2:7001"),
            err("MOVED 12 10.0.0.2:7001"),
            err("EXECABORT Transaction discarded because of previous errors."),
        ];
        assert_eq!(
            tx.verdict(moved, false),
            Verdict::Moved {
                slot: 12,
                addr: "10.0.0.2:7001".into()
            }
        );
        // EXEC itself redirected.
        let exec_moved = vec![ok(), queued(), queued(), err("MOVED 12 10.0.0.2:7001")];
        assert!(matches!(
            tx.verdict(exec_moved, false),
            Verdict::Moved { .. }
        ));
        // A command failed inside EXEC: the others ran, never resent.
        let ran = vec![
            ok(),
            queued(),
            queued(),
            Value::Array(vec![
                err("WRONGTYPE Operation against a key"),
                Value::Int(1),
            ]),
        ];
        assert!(matches!(tx.verdict(ran, false), Verdict::Failed(_)));
        assert!(matches!(
            tx.verdict(vec![ok(), queued(), queued(), Value::Nil], false),
            Verdict::Failed(_)
        ));
    }
}
