//! The batch path with leases and edge-held message sessions (see [`crate::lease`] and
//! [`crate::sessions`]).
//!
//! For each all-or-nothing group, every op is first answered here if it can be:
//! a take from the counter's lease, a check against it, a once-per-message take the
//! message's session says was already charged, a record for END-OF-MESSAGE into the session.
//! What cannot is sent in **one** call (the ops of several groups together), each take asking
//! for a lease of a few times its cost. A group is only admitted when all its ops are: if the
//! service refuses its part, what was taken here goes back to the leases (and the service
//! charged nothing for it). The session records charges and END-OF-MESSAGE counters of
//! admitted groups only, as the shared store would.
//!
//! The requests sent carry no instance: message sessions are this edge's, stored in the
//! shared store only when another edge may need them (see [`crate::sessions`]).

use crate::lease::LeaseTable;
use crate::sessions::LocalSession;
use crate::sightings::Sightings;
use crate::state::RemoteState;
use sluice_engine::{
    CounterBatch, CounterOp, CounterReply, EomRecord, LeaseGrant, OpDetail, OpKind, OpResult,
    Outcome, StateError,
};
use sluice_proto::v1;
use std::time::Instant;

/// Most times a request's cost a lease is asked for (see [`LeaseTable::multiple`]).
const MAX_LEASE_MULTIPLE: u64 = 1_024;

/// How one op is answered.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Here: its result, the units taken from its lease (given back if the group is
    /// refused), and what the session remembers if the group is admitted.
    Local {
        result: OpResult,
        took: u64,
        charge_once: bool,
        record: bool,
    },
    /// By the service: its index in the group sent.
    Remote { index: usize, charge_once: bool },
}

/// One group's ops to send.
/// The service's answers to the sent groups: each op's result and lease grant, and the
/// record ops' detailed answers (named by sent group and index).
type SentAnswers = (Vec<Vec<(OpResult, LeaseGrant)>>, Vec<OpDetail>);

#[derive(Default)]
struct Sent {
    ops: Vec<CounterOp>,
    wire: Vec<v1::Op>,
    /// The lease multiple each take asked for.
    multiples: Vec<u64>,
}

fn admitted(used: u64) -> OpResult {
    OpResult {
        outcome: Outcome::Admitted,
        used,
    }
}

impl Sent {
    /// Adds `op` (a take, asking for a lease of `multiple` × its cost, or a check).
    fn push(&mut self, op: CounterOp, multiple: u64) -> usize {
        let mut wire = sluice_proto::op_to_wire(&op);
        if let OpKind::Take { cost } = op.kind {
            wire.lease = cost.max(1).saturating_mul(multiple);
        }
        self.wire.push(wire);
        self.ops.push(op);
        self.multiples.push(multiple);
        self.ops.len() - 1
    }
}

/// One request carrying the groups of `sent` (their wire ops are moved out).
fn request_of(sent: &mut [Sent]) -> v1::ApplyRequest {
    v1::ApplyRequest {
        instance: String::new(),
        dry_run: false,
        groups: sent
            .iter_mut()
            .map(|s| v1::OpGroup {
                ops: std::mem::take(&mut s.wire),
            })
            .collect(),
        end_of_message_size: None,
    }
}

/// Remembers in the message's session what an op of an admitted group did: a first charge
/// once per message, or a counter for END-OF-MESSAGE.
fn remember(s: &mut LocalSession, op: &CounterOp, plan: &Plan, result: &OpResult) {
    let charge_once = match *plan {
        Plan::Local { charge_once, .. } => charge_once,
        Plan::Remote { charge_once, .. } => charge_once && result.outcome == Outcome::Admitted,
    };
    if charge_once {
        s.charge(&op.key);
    }
    if let (Plan::Local { record: true, .. }, OpKind::RecordForEom { label, group }) =
        (plan, &op.kind)
    {
        s.record_with(&op.key, || EomRecord {
            key: op.key.clone(),
            limit: op.limit,
            window: op.window,
            label: label.clone(),
            group: *group,
        });
    }
}

/// Whether `key` is a counter this edge neither holds a lease of (or remembers one) nor saw a
/// once-per-message take on lately; records the sighting.
fn first_sighting(
    leases: &LeaseTable,
    sightings: Option<&Sightings>,
    key: &str,
    now: Instant,
) -> bool {
    sightings.is_some_and(|s| !s.seen_before(key, now)) && !leases.knows(key)
}

impl RemoteState {
    /// One RCPT batch with leases and the edge's message sessions.
    pub(crate) async fn apply_leased(
        &self,
        connection: u64,
        batch: &CounterBatch,
        leases: &LeaseTable,
    ) -> Result<CounterReply, StateError> {
        let inner = &self.inner;
        let sessions = &inner.sessions;
        let instance = batch.instance.as_str();
        if !instance.is_empty() {
            sessions.note(connection, instance);
        }
        if let Some(size) = batch.end_of_message {
            return self
                .end_of_message_leased(connection, batch, size, leases)
                .await;
        }
        let now = Instant::now();
        let needs_session = !instance.is_empty()
            && batch.groups.iter().flatten().any(|op| {
                matches!(
                    op.kind,
                    OpKind::TakeOncePerMessage | OpKind::RecordForEom { .. }
                )
            });
        if needs_session {
            use crate::sessions::Whereabouts;
            match sessions.locate(connection, instance, now) {
                Whereabouts::Local | Whereabouts::New => {}
                Whereabouts::Unknown => {
                    let stored = self.load_session(instance).await?;
                    if !sessions.adopt(connection, instance, stored, now) {
                        return self.remote(batch).await;
                    }
                }
                Whereabouts::Full => return self.remote(batch).await,
            }
        }
        // Which once-per-message takes were already charged for the message.
        let already: Vec<bool> = if needs_session {
            sessions
                .with(instance, |s| {
                    batch
                        .groups
                        .iter()
                        .flatten()
                        .map(|op| {
                            op.kind == OpKind::TakeOncePerMessage && s.charged.contains(&op.key)
                        })
                        .collect()
                })
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let cache_now = inner.clock.now_ms();
        let base = inner.config.lease_multiple;
        let sightings = inner.sightings.as_ref();

        let mut cached: Vec<Option<Vec<OpResult>>> = Vec::with_capacity(batch.groups.len());
        let mut plans: Vec<Vec<Plan>> = Vec::with_capacity(batch.groups.len());
        let mut sent: Vec<Sent> = Vec::new();
        let mut sent_group: Vec<Option<usize>> = Vec::with_capacity(batch.groups.len());
        let mut flat = 0;
        for ops in &batch.groups {
            let from_cache = inner
                .cache
                .as_ref()
                .and_then(|c| c.answer_group(ops, cache_now));
            if from_cache.is_some() {
                flat += ops.len();
                cached.push(from_cache);
                plans.push(Vec::new());
                sent_group.push(None);
                continue;
            }
            cached.push(None);
            let mut plan = Vec::with_capacity(ops.len());
            let mut out = Sent::default();
            for op in ops {
                let was_charged = already.get(flat).copied().unwrap_or(false);
                flat += 1;
                let mut send = |kind: OpKind, charge_once: bool| {
                    let multiple = match kind {
                        // A once-per-message take of a counter seen for the first time:
                        // no lease (see `crate::sightings`).
                        OpKind::Take { .. }
                            if charge_once && first_sighting(leases, sightings, &op.key, now) =>
                        {
                            0
                        }
                        OpKind::Take { .. } => leases.multiple(&op.key, base, MAX_LEASE_MULTIPLE),
                        _ => 0,
                    };
                    let sent_op = CounterOp { kind, ..op.clone() };
                    Plan::Remote {
                        index: out.push(sent_op, multiple),
                        charge_once,
                    }
                };
                let p = match &op.kind {
                    OpKind::Take { cost } => match leases.take(&op.key, *cost, now) {
                        Some(level) => Plan::Local {
                            result: admitted(level),
                            took: *cost,
                            charge_once: false,
                            record: false,
                        },
                        None => send(OpKind::Take { cost: *cost }, false),
                    },
                    OpKind::TakeOncePerMessage if was_charged => Plan::Local {
                        result: OpResult {
                            outcome: Outcome::AlreadyCounted,
                            used: leases.level(&op.key, now).unwrap_or(0),
                        },
                        took: 0,
                        charge_once: false,
                        record: false,
                    },
                    OpKind::TakeOncePerMessage => match leases.take(&op.key, 1, now) {
                        Some(level) => Plan::Local {
                            result: admitted(level),
                            took: 1,
                            charge_once: true,
                            record: false,
                        },
                        None => send(OpKind::Take { cost: 1 }, true),
                    },
                    OpKind::Check { cost } => match leases.check(&op.key, *cost, now) {
                        Some(level) => Plan::Local {
                            result: admitted(level),
                            took: 0,
                            charge_once: false,
                            record: false,
                        },
                        None => send(OpKind::Check { cost: *cost }, false),
                    },
                    // The engine reads no level from a record: the size check before it
                    // on the same key (if answered here) lends its own, without a lookup.
                    OpKind::RecordForEom { .. } => Plan::Local {
                        result: admitted(
                            match (plan.last(), ops.get(plan.len().wrapping_sub(1))) {
                                (Some(Plan::Local { result, .. }), Some(prev))
                                    if prev.key == op.key =>
                                {
                                    result.used
                                }
                                _ => 0,
                            },
                        ),
                        took: 0,
                        charge_once: false,
                        record: needs_session,
                    },
                    // Greylisting keeps no lease: always the service's answer (the engine
                    // pushes it first, so a refusal gives back this group's local takes).
                    OpKind::Greylist(_) | OpKind::Helo(_) => send(op.kind.clone(), false),
                };
                plan.push(p);
            }
            plans.push(plan);
            if out.ops.is_empty() {
                sent_group.push(None);
            } else {
                sent_group.push(Some(sent.len()));
                sent.push(out);
            }
        }

        // The service's answers, by sent group.
        let mut answers: Vec<Vec<(OpResult, LeaseGrant)>> = Vec::new();
        let mut sent_details: Vec<OpDetail> = Vec::new();
        let mut sent_at = now;
        if !sent.is_empty() {
            let request = request_of(&mut sent);
            sent_at = Instant::now();
            match self.call_checked(request, &sent).await {
                Ok((a, d)) => (answers, sent_details) = (a, d),
                Err(e) => {
                    self.give_back(batch, &plans, now);
                    return Err(e);
                }
            }
            if let Some(cache) = inner.cache.as_ref() {
                let now_ms = inner.clock.now_ms();
                for (s, a) in sent.iter().zip(&answers) {
                    let results: Vec<OpResult> = a.iter().map(|(r, _)| *r).collect();
                    cache.observe(&s.ops, &results, now_ms);
                }
            }
        }

        // Merge, per group.
        let mut returns = Vec::new();
        let mut admitted_groups = Vec::with_capacity(batch.groups.len());
        let mut groups = Vec::with_capacity(batch.groups.len());
        let mut details = Vec::new();
        for (g, ops) in batch.groups.iter().enumerate() {
            if let Some(c) = cached[g].take() {
                admitted_groups.push(false);
                groups.push(c);
                continue;
            }
            let answer = sent_group[g].map(|i| (&sent[i], &answers[i]));
            let refused =
                answer.is_some_and(|(_, a)| a.iter().any(|(r, _)| !r.outcome.is_admitted()));
            let mut results = Vec::with_capacity(ops.len());
            for (op, p) in ops.iter().zip(&plans[g]) {
                match *p {
                    Plan::Local { result, took, .. } => {
                        if refused {
                            if took > 0 {
                                leases.untake(&op.key, took, now, &mut returns);
                            }
                            results.push(OpResult {
                                outcome: Outcome::NotEvaluated,
                                used: result.used,
                            });
                            continue;
                        }
                        results.push(result);
                    }
                    Plan::Remote { index, .. } => {
                        let (s, a) = answer.expect("a remote op belongs to a sent group");
                        let (result, grant) = a[index];
                        // A record op's detailed answer, renamed to the batch's op.
                        let sent_at_group = sent_group[g].map(|i| i as u32);
                        if let Some(d) = sent_details
                            .iter()
                            .find(|d| Some(d.group) == sent_at_group && d.index == index as u32)
                        {
                            details.push(OpDetail {
                                group: g as u32,
                                index: results.len() as u32,
                                answer: d.answer.clone(),
                            });
                        }
                        if !refused {
                            if grant.units > 0 {
                                inner.metrics_lease_grant();
                            }
                            leases.grant(
                                &op.key,
                                op.window,
                                grant,
                                result.used,
                                sent_at,
                                s.multiples[index],
                                &mut returns,
                            );
                        }
                        results.push(result);
                    }
                }
            }
            admitted_groups.push(!refused);
            groups.push(results);
        }
        if needs_session {
            // What the admitted groups charged once and recorded, in one visit.
            sessions.with(instance, |s| {
                let admitted = batch.groups.iter().zip(&plans).zip(&groups);
                for (((ops, plan), results), ok) in admitted.zip(&admitted_groups) {
                    if !*ok {
                        continue;
                    }
                    for ((op, p), r) in ops.iter().zip(plan).zip(results) {
                        remember(s, op, p, r);
                    }
                }
            });
        }
        self.queue_returns(returns);
        Ok(CounterReply {
            groups,
            end_of_message: Vec::new(),
            details,
        })
    }

    /// Gives the units taken for `plans` back to their leases (the call failed).
    fn give_back(&self, batch: &CounterBatch, plans: &[Vec<Plan>], now: Instant) {
        let Some(leases) = self.inner.leases.as_ref() else {
            return;
        };
        let mut returns = Vec::new();
        for (ops, plan) in batch.groups.iter().zip(plans) {
            for (op, p) in ops.iter().zip(plan) {
                if let Plan::Local { took, .. } = *p {
                    if took > 0 {
                        leases.untake(&op.key, took, now, &mut returns);
                    }
                }
            }
        }
        self.queue_returns(returns);
    }

    /// Sends `request` (its groups are `sent`'s) and checks the answer's shape: per sent
    /// group, each op's result and lease.
    async fn call_checked(
        &self,
        request: v1::ApplyRequest,
        sent: &[Sent],
    ) -> Result<SentAnswers, StateError> {
        let reply = self.call(request).await?;
        let grants: Vec<Vec<LeaseGrant>> = reply
            .groups
            .iter()
            .map(|g| {
                g.results
                    .iter()
                    .map(|r| LeaseGrant {
                        units: r.leased,
                        valid_ms: r.lease_valid_ms,
                        charged_at_ms: r.lease_charged_at_ms,
                    })
                    .collect()
            })
            .collect();
        let reply = CounterReply::try_from(reply)
            .map_err(|e| StateError::Unavailable(format!("malformed reply: {e}")))?;
        let shape_ok = reply.groups.len() == sent.len()
            && reply
                .groups
                .iter()
                .zip(sent)
                .all(|(r, s)| r.len() == s.ops.len());
        if !shape_ok {
            return Err(StateError::Unavailable(
                "reply does not match the batch's shape".into(),
            ));
        }
        let answers = reply
            .groups
            .into_iter()
            .zip(grants)
            .map(|(r, g)| r.into_iter().zip(g).collect())
            .collect();
        Ok((answers, reply.details))
    }

    /// END-OF-MESSAGE with leases: the message's session is normally held here.
    async fn end_of_message_leased(
        &self,
        connection: u64,
        batch: &CounterBatch,
        size: u64,
        leases: &LeaseTable,
    ) -> Result<CounterReply, StateError> {
        let inner = &self.inner;
        let instance = batch.instance.as_str();
        if instance.is_empty() {
            return Ok(CounterReply::default());
        }
        let Some(session) = inner.sessions.remove(instance) else {
            if inner.sessions.began_here(connection, instance) {
                // The message began on this connection and recorded nothing.
                return Ok(CounterReply::default());
            }
            return self.stored_end_of_message(batch).await;
        };
        if session.stored {
            self.queue_ended(batch.instance.clone());
        }
        if session.records.is_empty() {
            return Ok(CounterReply::default());
        }
        let now = Instant::now();
        let base = inner.config.lease_multiple;
        let mut ids: Vec<u32> = session.records.iter().map(|r| r.group).collect();
        ids.sort_unstable();
        ids.dedup();
        // Per group: answered from leases, or sent.
        let mut local: Vec<Option<Vec<OpResult>>> = Vec::with_capacity(ids.len());
        let mut sent: Vec<Sent> = Vec::new();
        let mut sent_group = Vec::with_capacity(ids.len());
        let mut returns = Vec::new();
        for id in &ids {
            let members = session.records.iter().filter(|r| r.group == *id);
            let mut results = Vec::new();
            let mut all = true;
            for r in members.clone() {
                match leases.take(&r.key, size, now) {
                    Some(level) => results.push(admitted(level)),
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                local.push(Some(results));
                sent_group.push(None);
                continue;
            }
            for r in members.clone().take(results.len()) {
                leases.untake(&r.key, size, now, &mut returns);
            }
            let mut out = Sent::default();
            for r in members {
                let op = CounterOp {
                    key: r.key.clone(),
                    limit: r.limit,
                    window: r.window,
                    kind: OpKind::Take { cost: size },
                };
                out.push(op, leases.multiple(&r.key, base, MAX_LEASE_MULTIPLE));
            }
            local.push(None);
            sent_group.push(Some(sent.len()));
            sent.push(out);
        }
        let mut answers = Vec::new();
        let sent_at = Instant::now();
        if !sent.is_empty() {
            let request = request_of(&mut sent);
            match self.call_checked(request, &sent).await {
                // END-OF-MESSAGE charges counters only: no detailed answers.
                Ok((a, _)) => answers = a,
                Err(e) => {
                    for (id, l) in ids.iter().zip(&local) {
                        if l.is_some() {
                            for r in session.records.iter().filter(|r| r.group == *id) {
                                leases.untake(&r.key, size, now, &mut returns);
                            }
                        }
                    }
                    self.queue_returns(returns);
                    return Err(e);
                }
            }
        }
        let mut end_of_message = Vec::with_capacity(session.records.len());
        for (k, id) in ids.iter().enumerate() {
            let members: Vec<&EomRecord> =
                session.records.iter().filter(|r| r.group == *id).collect();
            let results: Vec<OpResult> = match (&local[k], sent_group[k]) {
                (Some(l), _) => l.clone(),
                (None, Some(i)) => {
                    let refused = answers[i].iter().any(|(r, _)| !r.outcome.is_admitted());
                    if !refused {
                        for (j, (r, grant)) in answers[i].iter().enumerate() {
                            let s = &sent[i];
                            leases.grant(
                                &s.ops[j].key,
                                s.ops[j].window,
                                *grant,
                                r.used,
                                sent_at,
                                s.multiples[j],
                                &mut returns,
                            );
                        }
                    }
                    answers[i].iter().map(|(r, _)| *r).collect()
                }
                (None, None) => unreachable!("every group is answered here or sent"),
            };
            for (r, result) in members.into_iter().zip(results) {
                end_of_message.push(sluice_engine::state::EomResult {
                    label: r.label.clone(),
                    key: r.key.clone(),
                    limit: r.limit,
                    result,
                });
            }
        }
        self.queue_returns(returns);
        Ok(CounterReply {
            groups: Vec::new(),
            end_of_message,
            details: Vec::new(),
        })
    }

    /// END-OF-MESSAGE of a message this edge holds no session of, which may have begun on
    /// another edge: the shared store's session is read, charged and ended by the service.
    /// When none is found yet, the edge that held it may be storing it right now (its
    /// connection just closed): asked once more after [`crate::RemoteConfig::session_settle`].
    async fn stored_end_of_message(
        &self,
        batch: &CounterBatch,
    ) -> Result<CounterReply, StateError> {
        let request = v1::ApplyRequest::from(batch);
        let reply = self.call(request.clone()).await?;
        let reply = if reply.session_found || self.inner.config.session_settle.is_zero() {
            reply
        } else {
            tokio::time::sleep(self.inner.config.session_settle).await;
            self.call(request).await?
        };
        CounterReply::try_from(reply)
            .map_err(|e| StateError::Unavailable(format!("malformed reply: {e}")))
    }
}
