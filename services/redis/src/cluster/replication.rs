//! Acknowledging writes only once a replica has them: `WAIT`, shared by every write
//! that completed on a node's connection before it was sent (group commit).
//!
//! Redis replicates asynchronously: a primary that dies loses the writes its replicas had
//! not received, and the promoted replica admits again what they had charged. So a charge
//! (a take that fitted, with its lease) is acknowledged to an edge only after
//! `WAIT <n> <ms>` on the **same connection** answered at least `n`: `WAIT` covers every
//! write sent on its connection before it (Redis remembers each client's last write offset),
//! and nothing on another connection — so a `WAIT` on a dedicated connection would prove
//! nothing.
//!
//! **Group commit.** A caller whose write has been answered draws a ticket and waits for a
//! `WAIT` sent after its ticket: one `WAIT` is in flight per node at a time, and it covers
//! every ticket drawn before it was sent; callers arriving meanwhile share the next one. A
//! `WAIT` blocks the connection it is sent on (commands behind it queue until it returns),
//! so one per flush, not one per script, keeps the cost to about one replica round trip
//! per burst of writes.
//!
//! **How many replicas.** `n` is the configured number, but at most the replicas the
//! current topology gives the node (`CLUSTER SLOTS` lists only replicas not marked failed
//! that have replicated something; the topology is read again at every health probe, so a
//! replica joining or failing is noticed within about a second): a primary whose replicas are all marked failed (or that has none) is not
//! waited for — its acknowledged writes are then exposed to a second failure, as
//! docs/cluster.md states. A connection opened after the write (the write's connection
//! broke) cannot prove it: the write is not acknowledged.

use super::node::Node;
use super::CallError;
use redis::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Where a write ran: its node and which of the node's connections carried it.
#[derive(Clone)]
pub(crate) struct Landed {
    pub node: Arc<Node>,
    pub conn: u64,
}

/// What replication a write needs before it is acknowledged (default: none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WaitPolicy {
    /// Replicas to wait for (at most the node's live replicas); 0: never wait.
    pub replicas: usize,
    /// The longest one `WAIT` may block (within the caller's deadline).
    pub timeout: Duration,
}

/// The `WAIT` state of every primary, and how many live replicas each has.
pub(crate) struct Replication {
    policy: WaitPolicy,
    gates: Mutex<HashMap<String, Arc<Gate>>>,
    /// Live replicas per primary (`host:port`), from the last topology read.
    replicas: Mutex<HashMap<String, usize>>,
}

/// One node's group commit.
#[derive(Default)]
struct Gate {
    /// Held while a `WAIT` is in flight.
    sending: tokio::sync::Mutex<()>,
    /// Tickets drawn (by writes answered on this node).
    tickets: AtomicU64,
    /// The last `WAIT`: every ticket up to `covered` was drawn before it was sent.
    last: Mutex<LastWait>,
}

#[derive(Default, Clone)]
struct LastWait {
    covered: u64,
    /// The connection it ran on, and whether enough replicas answered.
    conn: u64,
    outcome: Option<Result<(), CallError>>,
}

impl WaitPolicy {
    /// Never wait.
    pub(crate) const OFF: WaitPolicy = WaitPolicy {
        replicas: 0,
        timeout: Duration::ZERO,
    };
}

impl Replication {
    /// Waiting as `policy` says.
    pub(crate) fn new(policy: WaitPolicy) -> Self {
        Replication {
            policy,
            gates: Mutex::new(HashMap::new()),
            replicas: Mutex::new(HashMap::new()),
        }
    }

    /// The policy in force.
    pub(crate) fn policy(&self) -> WaitPolicy {
        self.policy
    }

    /// Records the live replicas of each primary (`host:port` → count).
    pub(crate) fn set_replicas(&self, counts: HashMap<String, usize>) {
        *self.replicas.lock().expect("replicas lock") = counts;
    }

    /// How many replicas a write on `addr` waits for now.
    pub(crate) fn wanted(&self, addr: &str) -> usize {
        if self.policy.replicas == 0 {
            return 0;
        }
        let live = self
            .replicas
            .lock()
            .expect("replicas lock")
            .get(addr)
            .copied()
            .unwrap_or(0);
        live.min(self.policy.replicas)
    }

    /// Returns once a `WAIT` sent after `write` landed was answered by enough replicas,
    /// or fails: not enough replicas within the `WAIT` bound or by `deadline`, or the
    /// connection that carried the write is gone.
    pub(crate) async fn confirm(&self, write: &Landed, deadline: Instant) -> Result<(), CallError> {
        let wanted = self.wanted(write.node.addr());
        if wanted == 0 {
            return Ok(());
        }
        let gate = {
            let mut gates = self.gates.lock().expect("gates lock");
            Arc::clone(gates.entry(write.node.addr().to_string()).or_default())
        };
        let ticket = gate.tickets.fetch_add(1, Ordering::AcqRel) + 1;
        let _sending = tokio::time::timeout_at(deadline, gate.sending.lock())
            .await
            .map_err(|_| CallError::Timeout)?;
        let last = gate.last.lock().expect("wait lock").clone();
        if last.covered >= ticket {
            return verdict(&last, write.conn);
        }
        // Every ticket drawn so far belongs to a write answered before this WAIT is sent.
        let covered = gate.tickets.load(Ordering::Acquire);
        let left = deadline.saturating_duration_since(Instant::now());
        let bound = self.policy.timeout.min(left);
        let ms = bound.as_millis();
        if ms == 0 {
            // WAIT 0 would block forever: no time left to ask.
            return Err(CallError::Timeout);
        }
        let mut pipe = redis::Pipeline::new();
        pipe.cmd("WAIT").arg(wanted).arg(ms as u64);
        let sent = tokio::time::timeout_at(deadline, write.node.send_on(&pipe)).await;
        let (conn, outcome) = match sent {
            Ok(Ok((conn, replies))) => (conn, acked(replies.first(), wanted)),
            Ok(Err(e)) => (0, Err(CallError::from_redis(&e))),
            Err(_) => (0, Err(CallError::Timeout)),
        };
        let last = LastWait {
            covered,
            conn,
            outcome: Some(outcome),
        };
        *gate.last.lock().expect("wait lock") = last.clone();
        verdict(&last, write.conn)
    }
}

/// Whether `WAIT`'s answer counts at least `wanted` replicas.
fn acked(reply: Option<&Value>, wanted: usize) -> Result<(), CallError> {
    match reply {
        Some(Value::Int(n)) if *n >= wanted as i64 => Ok(()),
        Some(Value::Int(n)) => Err(CallError::NotReplicated {
            acked: (*n).max(0) as usize,
            wanted,
        }),
        other => Err(CallError::Server(format!(
            "unexpected WAIT reply {other:?}"
        ))),
    }
}

/// What `last` proves for a write on connection `conn`.
fn verdict(last: &LastWait, conn: u64) -> Result<(), CallError> {
    match &last.outcome {
        Some(Ok(())) if last.conn == conn => Ok(()),
        Some(Ok(())) => Err(CallError::Connection(
            "the connection that carried the write was replaced before WAIT".into(),
        )),
        Some(Err(e)) => Err(e.clone()),
        None => Err(CallError::Timeout),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_answers_count_replicas() {
        assert_eq!(acked(Some(&Value::Int(1)), 1), Ok(()));
        assert_eq!(acked(Some(&Value::Int(2)), 1), Ok(()));
        assert_eq!(
            acked(Some(&Value::Int(0)), 1),
            Err(CallError::NotReplicated {
                acked: 0,
                wanted: 1
            })
        );
        assert!(matches!(acked(None, 1), Err(CallError::Server(_))));
    }

    #[test]
    fn a_wait_proves_only_writes_on_its_own_connection() {
        let last = LastWait {
            covered: 5,
            conn: 2,
            outcome: Some(Ok(())),
        };
        assert_eq!(verdict(&last, 2), Ok(()));
        assert!(matches!(verdict(&last, 1), Err(CallError::Connection(_))));
    }

    #[test]
    fn replicas_waited_for_are_at_most_the_live_ones() {
        let r = Replication::new(WaitPolicy {
            replicas: 1,
            timeout: Duration::from_millis(50),
        });
        assert_eq!(r.wanted("a:1"), 0, "unknown node: no replica known");
        r.set_replicas(HashMap::from([("a:1".into(), 2), ("b:1".into(), 0)]));
        assert_eq!(r.wanted("a:1"), 1);
        assert_eq!(r.wanted("b:1"), 0);
        let off = Replication::new(WaitPolicy {
            replicas: 0,
            timeout: Duration::from_millis(50),
        });
        off.set_replicas(HashMap::from([("a:1".into(), 2)]));
        assert_eq!(off.wanted("a:1"), 0);
    }
}
