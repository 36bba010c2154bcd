//! One counter-script call per Redis node for all the counter ops that are waiting at the
//! same time.
//!
//! Every counter op (take, refund, check, level) is queued here and its caller waits for
//! its answer. The first op queued schedules a flush task; by the time it runs, every op
//! that became ready in the same scheduler tick is queued too — on the quota service's
//! single-threaded runtime, all the ops of every batch of an `ApplyMany`, and the refunds
//! of a `ReturnLeases`. The flush groups them by the node serving each key's slot and sends
//! **one** call of the counter script per node (at most [`MAX_ITEMS`] ops each), with the
//! keys as arguments: a script may touch keys of any slots as long as the node serves them
//! (Redis Cluster checks each key a script touches; scripts without flags may cross slots,
//! Redis 5.0 and newer). One `TIME` serves every op of the call.
//!
//! An op whose key the node does not serve (the table was stale, a slot being migrated, a
//! primary just demoted) is answered `{-1}` by the script: its key is read before anything
//! of it is written, so **nothing of it ran**, and it is sent again on its own, with its
//! key declared, through the router, which follows `MOVED`/`ASK` as for any call. A lone op
//! goes that way directly (a lone check or level as plain reads, see [`crate::level`]).
//!
//! Each op keeps its own deadline: one whose deadline passed before the flush is answered
//! with a timeout and not sent; one whose caller gave up is not sent. A call that fails or
//! times out fails every op in it (they may have run), as separate calls would.

use crate::cluster::replication::Landed;
use crate::conn::{parse, Conn};
use crate::scripts::{CounterAnswer, Lua, Mode, MAX_EXACT};
use futures_util::future::join_all;
use redis::Value;
use sluice_engine::window::WindowSpec;
use sluice_engine::StateError;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// Most ops in one script call (a script blocks its node while it runs: ~64 ops are well
/// under a millisecond).
pub(crate) const MAX_ITEMS: usize = 64;

/// A counter op's answer, and for a write where it ran (for [`Conn::confirm`]).
pub(crate) type Answer = Result<(CounterAnswer, Option<Landed>), StateError>;

/// One queued op.
pub(crate) struct Item {
    pub conn: Conn,
    /// The Redis key of the counter's window.
    pub key: String,
    pub mode: Mode,
    pub cost: u64,
    pub limit: u64,
    pub window: WindowSpec,
    pub now_ms: Option<u64>,
    pub want: u64,
    /// Bound on each Redis call made for it.
    pub timeout: Duration,
    /// Not sent after this (the caller has given up by then).
    pub deadline: Instant,
    pub reply: oneshot::Sender<Answer>,
}

impl Item {
    /// Appends this op's arguments (`counter.lua`: key, mode, now, cost, limit, period,
    /// bucket, want).
    fn push_args(&self, cmd: &mut redis::Cmd) {
        cmd.arg(&self.key)
            .arg(self.mode.as_str())
            .arg(self.now_ms.map_or(-1, |n| n.min(MAX_EXACT) as i64))
            .arg(self.cost.min(MAX_EXACT))
            .arg(self.limit.min(MAX_EXACT))
            .arg(self.window.period_ms.min(MAX_EXACT))
            .arg(self.window.bucket_ms.min(MAX_EXACT));
        let want = if self.mode == Mode::Take {
            self.want
        } else {
            0
        };
        cmd.arg(want.min(MAX_EXACT));
    }
}

/// The ops waiting for the next flush.
#[derive(Default)]
struct Queue {
    items: Vec<Item>,
    /// A flush task is scheduled (it has not taken the items yet).
    scheduled: bool,
}

/// The queue and the script its flushes run.
#[derive(Clone)]
pub(crate) struct Coalescer {
    queue: Arc<Mutex<Queue>>,
    lua: Arc<Lua>,
}

impl Coalescer {
    /// Flushes run `lua` (the counter script).
    pub(crate) fn new(lua: Arc<Lua>) -> Self {
        Coalescer {
            queue: Arc::default(),
            lua,
        }
    }

    /// Queues `item`; its answer comes on its `reply` channel. Needs a Tokio runtime.
    pub(crate) fn push(&self, item: Item) {
        let schedule = {
            let mut q = self.queue.lock().expect("counter queue lock");
            q.items.push(item);
            !std::mem::replace(&mut q.scheduled, true)
        };
        if schedule {
            let this = self.clone();
            tokio::spawn(async move { this.flush().await });
        }
    }

    /// Sends everything queued: one script call per node (and per [`MAX_ITEMS`]), all at
    /// once.
    async fn flush(&self) {
        let items = {
            let mut q = self.queue.lock().expect("counter queue lock");
            q.scheduled = false;
            std::mem::take(&mut q.items)
        };
        let now = Instant::now();
        // (connection, node) → its ops, in the order queued.
        let mut groups: Vec<((usize, usize), Vec<Item>)> = Vec::new();
        for item in items {
            if item.reply.is_closed() {
                continue; // the caller gave up: not sent
            }
            if item.deadline <= now {
                let _ = item.reply.send(Err(StateError::Timeout));
                continue;
            }
            // Ops of keys without a known node go alone: the router says why.
            let Some(route) = item.conn.route_of(&item.key) else {
                groups.push(((0, 0), vec![item]));
                continue;
            };
            match groups.iter_mut().find(|(r, _)| *r == route && r.0 != 0) {
                Some((_, g)) => g.push(item),
                None => groups.push((route, vec![item])),
            }
        }
        let mut calls = Vec::new();
        for (_, mut items) in groups {
            while items.len() > MAX_ITEMS {
                let rest = items.split_off(MAX_ITEMS);
                calls.push(std::mem::replace(&mut items, rest));
            }
            calls.push(items);
        }
        join_all(calls.into_iter().map(|items| self.send(items))).await;
    }

    /// Runs `items` (one node's) and answers each.
    async fn send(&self, items: Vec<Item>) {
        if items.len() == 1 {
            let item = items.into_iter().next().expect("one item");
            let answer = alone(&self.lua, &item).await;
            let _ = item.reply.send(answer);
            return;
        }
        let answers = self.together(&items).await;
        let mut elsewhere = Vec::new();
        for (item, answer) in items.into_iter().zip(answers) {
            match answer {
                Some(answer) => {
                    let _ = item.reply.send(answer);
                }
                None => elsewhere.push(item),
            }
        }
        // Not served by that node: nothing of them ran; each on its own, redirected as
        // needed.
        join_all(elsewhere.into_iter().map(|item| async move {
            let answer = alone(&self.lua, &item).await;
            let _ = item.reply.send(answer);
        }))
        .await;
    }

    /// One script call for `items` (keys of one node); per item its answer, or `None` when
    /// the node does not serve its key (it did not run).
    async fn together(&self, items: &[Item]) -> Vec<Option<Answer>> {
        let mut cmd = self.lua.evalsha(&[]);
        cmd.arg(items.len());
        for item in items {
            item.push_args(&mut cmd);
        }
        // Routed by the first key: the node the items were grouped for (if the table
        // changed since, the script says which keys it does not serve).
        let req = self.lua.request(&items[0].key, cmd);
        let deadline = items.iter().map(|i| i.deadline).max().expect("items");
        let timeout = items.iter().map(|i| i.timeout).max().expect("items");
        let sent = crate::deadline::within(deadline, items[0].conn.call_landed(&req, timeout))
            .await
            .and_then(|(reply, landed)| Ok((replies(reply, items.len())?, landed)));
        match sent {
            Ok((raw, landed)) => items
                .iter()
                .zip(raw)
                .map(|(item, raw)| match raw[..] {
                    [-1] => None,
                    _ => Some(answer(&raw).map(|a| (a, writes(item.mode).then(|| landed.clone())))),
                })
                .collect(),
            Err(e) => items.iter().map(|_| Some(Err(e.clone()))).collect(),
        }
    }
}

/// Whether `mode` may write (and so is confirmed by a replica when it charged).
fn writes(mode: Mode) -> bool {
    matches!(mode, Mode::Take | Mode::Refund)
}

/// Runs one op on its own: a check or level as plain reads, a take or refund as a script
/// call with its key declared (so the router follows `MOVED`/`ASK`).
async fn alone(lua: &Lua, item: &Item) -> Answer {
    let conn = &item.conn;
    let work = async {
        match item.mode {
            Mode::Level => {
                crate::level::read(conn, item.timeout, &item.key, item.window, item.now_ms)
                    .await
                    .map(|a| (a, None))
            }
            Mode::Check => {
                let spec = crate::level::Limited {
                    window: item.window,
                    cost: item.cost,
                    limit: item.limit,
                };
                crate::level::check(conn, item.timeout, &item.key, spec, item.now_ms)
                    .await
                    .map(|a| (a, None))
            }
            Mode::Take | Mode::Refund => {
                let mut cmd = lua.evalsha(&[&item.key]);
                cmd.arg(1);
                item.push_args(&mut cmd);
                let (reply, landed) = conn
                    .call_landed(&lua.request(&item.key, cmd), item.timeout)
                    .await?;
                let raw = replies(reply, 1)?.pop().expect("one reply");
                if raw[..] == [-1] {
                    return Err(StateError::Unavailable(format!(
                        "Redis node {} does not serve the key it was sent for",
                        landed.node.addr()
                    )));
                }
                Ok((answer(&raw)?, Some(landed)))
            }
        }
    };
    crate::deadline::within(item.deadline, work).await
}

/// The per-item replies of one script call with `n` items.
fn replies(reply: Vec<Value>, n: usize) -> Result<Vec<Vec<i64>>, StateError> {
    let raw: Vec<Vec<i64>> = parse(reply.into_iter().next().unwrap_or(Value::Nil))?;
    if raw.len() != n {
        return Err(StateError::Unavailable(format!(
            "counter script answered {} items of {n}",
            raw.len()
        )));
    }
    Ok(raw)
}

/// One item's `{fits, level, retry_after_ms, now, leased, valid_ms}`.
fn answer(raw: &[i64]) -> Result<CounterAnswer, StateError> {
    match *raw {
        [fits, level, retry, now, leased, valid] => Ok(CounterAnswer {
            fits: fits == 1,
            level: level.max(0) as u64,
            retry_after_ms: u64::try_from(retry).ok(),
            now_ms: now.max(0) as u64,
            leased: leased.max(0) as u64,
            valid_ms: valid.max(0) as u64,
        }),
        _ => Err(StateError::Unavailable(format!(
            "unexpected counter script reply {raw:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_odd_ones_are_errors() {
        let a = answer(&[1, 7, 0, 1_000, 3, 250]).unwrap();
        assert_eq!(
            (
                a.fits,
                a.level,
                a.retry_after_ms,
                a.now_ms,
                a.leased,
                a.valid_ms
            ),
            (true, 7, Some(0), 1_000, 3, 250)
        );
        let never = answer(&[0, 9, -1, 1_000, 0, 0]).unwrap();
        assert_eq!((never.fits, never.retry_after_ms), (false, None));
        assert!(answer(&[1, 2]).is_err());
        let short = Value::Array(vec![Value::Array(vec![Value::Int(-1)])]);
        assert!(replies(vec![short], 2).is_err());
    }
}
