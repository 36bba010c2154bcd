//! One all-or-nothing group of counter ops on counters that may live on different slots.
//!
//! A group whose charging ops all hit distinct counters (the usual case) is run in parallel:
//! every op's script is sent at once (one round trip), and if any op refused, everything
//! that was charged is refunded (a second round trip). A group that charges one counter
//! twice, or reads a counter it also charges, is run op by op in order, as
//! `sluice_engine::MemoryState` does, because there the order of the ops matters. Without
//! contention both give exactly `MemoryState`'s answers.
//!
//! A take may carry a lease want: the script then charges the lease units with the cost (see
//! `counter.lua`), and a refused group refunds them with it.
//!
//! An admitted group is answered only once a replica has its charges (`WAIT`, see
//! [`crate::cluster::replication`]): a charge a failover could lose is never acknowledged.
//! When the replicas do not confirm in time, the group fails (the edge answers its fallback
//! action) and its charges are refunded; if the refund is lost too (the primary died), the
//! promoted replica never saw the charge either.

use crate::backend::Backend;
use crate::cluster::replication::Landed;
use crate::scripts::{CounterAnswer, CounterCall, Mode};
use futures_util::future::join_all;
use sluice_engine::{CounterOp, LeaseGrant, OpKind, OpResult, Outcome, StateError};
use std::collections::HashMap;

/// What an op does, once the message session is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Add `cost` if it fits (a take, or a first take once per message).
    Charge(u64),
    /// Would `cost` fit?
    Check(u64),
    /// Already charged for this message: report the level.
    Already,
    /// Recorded for END-OF-MESSAGE: admitted, report the level.
    Record,
}

impl Role {
    fn cost(self) -> u64 {
        match self {
            Role::Charge(c) | Role::Check(c) => c,
            Role::Already | Role::Record => 0,
        }
    }
}

/// One group's results and whether it was refused.
pub(crate) struct GroupOutcome {
    pub results: Vec<OpResult>,
    /// One per op; all zero when the group was refused (nothing stays charged).
    pub leases: Vec<LeaseGrant>,
    pub refused: bool,
}

/// A group being run: ops with their roles, the batch's mode and time.
pub(crate) struct Group<'a> {
    pub ops: &'a [CounterOp],
    pub roles: &'a [Role],
    /// Lease wants, one per op, or empty (none). Only [`OpKind::Take`] ops that charge use
    /// theirs.
    pub wants: &'a [u64],
    pub dry_run: bool,
    pub now_ms: Option<u64>,
}

impl Group<'_> {
    /// The lease units op `i` asks for when it is charged.
    fn want(&self, i: usize) -> u64 {
        match self.ops[i].kind {
            OpKind::Take { .. } if self.charges(self.roles[i]) => {
                self.wants.get(i).copied().unwrap_or(0)
            }
            _ => 0,
        }
    }

    fn mode(&self, role: Role) -> Mode {
        match role {
            Role::Charge(_) if !self.dry_run => Mode::Take,
            Role::Charge(_) | Role::Check(_) => Mode::Check,
            Role::Already | Role::Record => Mode::Level,
        }
    }

    fn charges(&self, role: Role) -> bool {
        self.mode(role) == Mode::Take
    }

    /// For each op that only reports a level (already counted, recorded for
    /// END-OF-MESSAGE): the index of another op of the group on the same counter whose call
    /// reads the same level (a check, or the first level report), so one Redis call serves
    /// both. Only for groups run at once, where no counter that is charged appears twice
    /// (so the level an op reports does not depend on the other ops of its group).
    fn shared_reads(&self) -> Vec<Option<usize>> {
        // Groups are small (a few ops): scans cost less than a map.
        let same = |i: usize, j: usize| self.ops[i].key == self.ops[j].key;
        let mode = |i: usize| self.mode(self.roles[i]);
        (0..self.ops.len())
            .map(|i| {
                if mode(i) != Mode::Level {
                    return None;
                }
                // The first check of the counter, else its first level report.
                (0..self.ops.len())
                    .find(|&j| mode(j) == Mode::Check && same(i, j))
                    .or_else(|| (0..i).find(|&j| mode(j) == Mode::Level && same(i, j)))
            })
            .collect()
    }

    /// Whether running all ops at once gives the same answers as running them in order:
    /// no counter that is charged appears twice in the group.
    fn parallel_safe(&self) -> bool {
        let n = self.ops.len();
        (0..n).all(|i| {
            (i + 1..n).all(|j| {
                self.ops[i].key != self.ops[j].key
                    || !(self.charges(self.roles[i]) || self.charges(self.roles[j]))
            })
        })
    }
}

impl Backend {
    /// Runs one group all-or-nothing.
    pub(crate) async fn run_group(&self, g: &Group<'_>) -> Result<GroupOutcome, StateError> {
        if g.parallel_safe() {
            self.run_parallel(g).await
        } else {
            self.run_in_order(g).await
        }
    }

    async fn counter(
        &self,
        op: &CounterOp,
        mode: Mode,
        cost: u64,
        now_ms: Option<u64>,
        want: u64,
    ) -> Result<(CounterAnswer, Option<Landed>), StateError> {
        let key = self.keys.window(&op.key);
        let call = CounterCall {
            key: key.into(),
            mode,
            cost,
            limit: op.limit,
            window: op.window,
            now_ms,
            want,
        };
        self.scripts
            .counter_landed(&self.conn, self.timeout, call)
            .await
    }

    /// Returns once a replica has every charge in `taken` (see
    /// [`crate::cluster::replication`]); the first failure otherwise.
    async fn confirm(&self, taken: &[Option<Landed>]) -> Result<(), StateError> {
        // A charge on a node without replicas to wait for is confirmed at once: no future
        // for it (on a cluster without replicas, none at all).
        let mut waits = Vec::new();
        for landed in taken.iter().flatten() {
            if let Some(wait) = self.conn.confirmation(landed, self.timeout)? {
                waits.push(wait);
            }
        }
        if waits.is_empty() {
            return Ok(());
        }
        join_all(waits)
            .await
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Gives back `(op index, time, units)` charges (an op's cost and its lease); errors are
    /// logged (the charge then ages out with its window, never over-admitting). Sent even
    /// after the batch's deadline (see [`crate::deadline`]).
    async fn refund(&self, g: &Group<'_>, taken: &[(usize, u64, u64)]) -> HashMap<usize, u64> {
        let calls = taken.iter().map(|&(i, now, units)| {
            let op = &g.ops[i];
            async move { (i, self.counter(op, Mode::Refund, units, Some(now), 0).await) }
        });
        let mut levels = HashMap::new();
        for (i, r) in crate::deadline::unbounded(join_all(calls)).await {
            match r {
                Ok((a, _)) => {
                    levels.insert(i, a.level);
                }
                Err(e) => {
                    sluice_runtime::warn_limited!(key = %g.ops[i].key, error = %e, "refund failed")
                }
            }
        }
        levels
    }

    async fn run_parallel(&self, g: &Group<'_>) -> Result<GroupOutcome, StateError> {
        let shared = g.shared_reads();
        let calls = g.ops.iter().zip(g.roles).zip(&shared).enumerate().map(
            |(i, ((op, &role), from))| async move {
                match from {
                    Some(_) => None,
                    None => Some(
                        self.counter(op, g.mode(role), role.cost(), g.now_ms, g.want(i))
                            .await,
                    ),
                }
            },
        );
        let mut answers: Vec<Result<CounterAnswer, StateError>> = Vec::with_capacity(g.ops.len());
        let mut landed: Vec<Option<Landed>> = vec![None; g.ops.len()];
        let called = join_all(calls).await;
        for (i, a) in called.iter().enumerate() {
            answers.push(match (a, shared[i]) {
                (Some(Ok((a, at))), _) => {
                    if a.fits && g.charges(g.roles[i]) {
                        landed[i] = at.clone();
                    }
                    Ok(*a)
                }
                (Some(Err(e)), _) => Err(e.clone()),
                (None, Some(from)) => match called[from].as_ref().expect("a source is called") {
                    Ok((src, _)) => Ok(CounterAnswer::read(src.level, src.now_ms)),
                    Err(e) => Err(e.clone()),
                },
                (None, None) => unreachable!("every op is called or shares a read"),
            });
        }
        let taken: Vec<(usize, u64, u64)> = answers
            .iter()
            .enumerate()
            .filter_map(|(i, a)| match a {
                Ok(a) if a.fits && g.charges(g.roles[i]) => {
                    Some((i, a.now_ms, g.roles[i].cost() + a.leased))
                }
                _ => None,
            })
            .collect();
        let mut ok = Vec::with_capacity(answers.len());
        for a in answers {
            match a {
                Ok(a) => ok.push(a),
                Err(e) => {
                    self.refund(g, &taken).await;
                    return Err(e);
                }
            }
        }
        let Some(first_refused) = ok.iter().position(|a| !a.fits) else {
            if let Err(e) = self.confirm(&landed).await {
                self.refund(g, &taken).await;
                return Err(e);
            }
            let results = g
                .roles
                .iter()
                .zip(&ok)
                .map(|(&role, a)| admitted(role, a.level))
                .collect();
            return Ok(GroupOutcome {
                results,
                leases: ok.iter().map(grant).collect(),
                refused: false,
            });
        };
        let refunded = self.refund(g, &taken).await;
        let results = g
            .roles
            .iter()
            .zip(&ok)
            .enumerate()
            .map(|(i, (&role, a))| {
                if i < first_refused {
                    let mut r = admitted(role, a.level);
                    if r.outcome == Outcome::Admitted {
                        r.used = refunded.get(&i).copied().unwrap_or(a.level);
                    }
                    r
                } else if i == first_refused {
                    refused(a)
                } else {
                    OpResult {
                        outcome: Outcome::NotEvaluated,
                        used: a.level,
                    }
                }
            })
            .collect();
        Ok(GroupOutcome {
            results,
            leases: vec![LeaseGrant::default(); g.ops.len()],
            refused: true,
        })
    }

    async fn run_in_order(&self, g: &Group<'_>) -> Result<GroupOutcome, StateError> {
        let mut results = Vec::with_capacity(g.ops.len());
        let mut taken: Vec<(usize, u64, u64)> = Vec::new();
        let mut leases = vec![LeaseGrant::default(); g.ops.len()];
        let mut landed: Vec<Option<Landed>> = Vec::new();
        let mut is_refused = false;
        for (i, (op, &role)) in g.ops.iter().zip(g.roles).enumerate() {
            let mode = if is_refused {
                Mode::Level
            } else {
                g.mode(role)
            };
            let want = if is_refused { 0 } else { g.want(i) };
            let a = match self.counter(op, mode, role.cost(), g.now_ms, want).await {
                Ok((a, at)) => {
                    if a.fits && !is_refused && g.charges(role) {
                        landed.push(at);
                    }
                    a
                }
                Err(e) => {
                    self.refund(g, &taken).await;
                    return Err(e);
                }
            };
            if is_refused {
                results.push(OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: a.level,
                });
            } else if a.fits {
                if g.charges(role) {
                    taken.push((i, a.now_ms, role.cost() + a.leased));
                }
                leases[i] = grant(&a);
                results.push(admitted(role, a.level));
            } else {
                is_refused = true;
                results.push(refused(&a));
            }
        }
        if is_refused {
            // Refund in order (leases too), then report the levels of admitted ops as they
            // are now.
            for &t in &taken {
                self.refund(g, &[t]).await;
            }
            leases.fill(LeaseGrant::default());
            for (i, r) in results.iter_mut().enumerate() {
                if r.outcome == Outcome::Admitted {
                    r.used = self
                        .counter(&g.ops[i], Mode::Level, 0, g.now_ms, 0)
                        .await?
                        .0
                        .level;
                }
            }
        } else if let Err(e) = self.confirm(&landed).await {
            self.refund(g, &taken).await;
            return Err(e);
        }
        Ok(GroupOutcome {
            results,
            leases,
            refused: is_refused,
        })
    }
}

/// The result of an op that did not block its group; `level` is the level before it.
fn admitted(role: Role, level: u64) -> OpResult {
    match role {
        Role::Charge(cost) | Role::Check(cost) => OpResult {
            outcome: Outcome::Admitted,
            used: level.saturating_add(cost),
        },
        Role::Already => OpResult {
            outcome: Outcome::AlreadyCounted,
            used: level,
        },
        Role::Record => OpResult {
            outcome: Outcome::Admitted,
            used: level,
        },
    }
}

/// The lease an answer reports (all zero: none).
fn grant(a: &CounterAnswer) -> LeaseGrant {
    if a.leased == 0 {
        return LeaseGrant::default();
    }
    LeaseGrant {
        units: a.leased,
        valid_ms: a.valid_ms,
        charged_at_ms: a.now_ms,
    }
}

fn refused(a: &CounterAnswer) -> OpResult {
    OpResult {
        outcome: Outcome::Refused {
            retry_after_ms: a.retry_after_ms,
        },
        used: a.level,
    }
}
