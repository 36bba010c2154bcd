//! [`RedisState`]: the engine's [`State`] on Redis.

use crate::backend::Backend;
use crate::cluster::replication::WaitPolicy;
use crate::cluster::request::Request;
use crate::conn::{Conn, Topology};
use crate::error::ConnectError;
use crate::group::{Group, Role};
use crate::keys::Keys;
use crate::scripts::{CounterCall, Mode, Scripts, SessionUpdate};
use crate::session::{Pending, Session};
use crate::tls::RedisTls;
use futures_util::future::join_all;
use sluice_engine::state::{BoxFuture, EomResult};
use sluice_engine::{
    Clock, CounterBatch, CounterOp, CounterReply, DetailAnswer, EomRecord, LeaseGrant, LeaseReturn,
    LeasedReply, OpDetail, OpKind, OpResult, Outcome, SessionData, SharedState, State, StateError,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Settings of a [`RedisState`].
#[derive(Debug, Clone)]
pub struct RedisStateSettings {
    /// Bound on every Redis call (connecting included). Default 250 ms.
    pub timeout: Duration,
    /// How long a message session (per Postfix `instance`) is kept without END-OF-MESSAGE,
    /// counted from its creation. Default 30 minutes (the in-process state instead keeps a
    /// session for the longest window among its counters, 10 minutes to an hour).
    pub session_ttl: Duration,
    /// First part of every key (lets several deployments share one Redis). Must not
    /// contain `{` or `}`. Default `sluice`.
    pub key_prefix: String,
    /// A charge is acknowledged only once this many replicas of its primary have it
    /// (`WAIT`), at most the replicas the primary has in the topology (`CLUSTER SLOTS`
    /// lists those not marked failed); 0 turns waiting off. A plain (non-cluster) node is
    /// never waited for. Default 1.
    pub wait_replicas: usize,
    /// The longest one `WAIT` blocks (within the batch's deadline); a charge not confirmed
    /// by then fails (and is refunded). Default 100 ms.
    pub wait_timeout: Duration,
    /// TLS settings for `rediss://` URLs (ignored for `redis://`).
    pub tls: RedisTls,
}

impl Default for RedisStateSettings {
    fn default() -> Self {
        RedisStateSettings {
            timeout: Duration::from_millis(250),
            session_ttl: Duration::from_secs(30 * 60),
            key_prefix: "sluice".to_string(),
            wait_replicas: 1,
            wait_timeout: Duration::from_millis(100),
            tls: RedisTls::default(),
        }
    }
}

fn check_prefix(settings: &RedisStateSettings) -> Result<(), ConnectError> {
    if settings.key_prefix.contains(['{', '}']) {
        return Err(ConnectError::InvalidPrefix(settings.key_prefix.clone()));
    }
    Ok(())
}

/// Counters and message sessions in Redis (Cluster or one node), shared by any number of
/// processes. Cheap to share behind an `Arc`; one per process is enough (the connection is
/// multiplexed).
pub struct RedisState {
    backend: Backend,
    session_ttl_ms: u64,
    clock: Option<Arc<dyn Clock>>,
    metrics: RedisMetrics,
    index: crate::live::Index,
}

impl RedisState {
    /// Connects with default settings. One URL: a cluster if that node has
    /// `cluster_enabled:1`, else a plain node; several URLs: cluster seed nodes.
    pub async fn connect(urls: &[String]) -> Result<Self, ConnectError> {
        Self::connect_with(urls, RedisStateSettings::default()).await
    }

    /// Connects with `settings` (see [`RedisState::connect`]): one attempt, each seed
    /// with its own timeout; an error if none answers.
    pub async fn connect_with(
        urls: &[String],
        settings: RedisStateSettings,
    ) -> Result<Self, ConnectError> {
        check_prefix(&settings)?;
        let (conn, _) = Conn::connect(urls, &settings.tls, settings.timeout).await?;
        Ok(Self::with_conn(conn, settings))
    }

    /// A patient start: checks the settings (an error here is a configuration error,
    /// see [`ConnectError::is_permanent`]) and returns at once, connecting in the
    /// background and retrying with a capped, jittered backoff until Redis answers.
    /// Until then every call fails with [`StateError::Unavailable`] (so health probes
    /// report not serving) and [`RedisState::topology`] is `None`. Needs a Tokio runtime.
    pub fn start(urls: &[String], settings: RedisStateSettings) -> Result<Self, ConnectError> {
        check_prefix(&settings)?;
        let conn = Conn::start(urls, &settings.tls, settings.timeout)?;
        Ok(Self::with_conn(conn, settings))
    }

    /// Waits until Redis has answered (after [`RedisState::start`]), at most `limit`;
    /// whether it has.
    pub async fn wait_connected(&self, limit: Duration) -> bool {
        self.backend.conn.wait_connected(limit).await
    }

    fn with_conn(conn: Conn, settings: RedisStateSettings) -> Self {
        conn.wait_for_replicas(WaitPolicy {
            replicas: settings.wait_replicas,
            timeout: settings.wait_timeout,
        });
        let keys = Keys::new(&settings.key_prefix);
        RedisState {
            index: crate::live::Index::new(conn.clone(), keys.clone(), settings.timeout),
            backend: Backend {
                conn,
                scripts: Scripts::new(),
                keys,
                timeout: settings.timeout,
            },
            session_ttl_ms: u64::try_from(settings.session_ttl.as_millis()).unwrap_or(u64::MAX),
            clock: None,
            metrics: RedisMetrics::new(),
        }
    }

    /// **Test only.** Reads "now" from `clock` once per batch and passes it to the scripts
    /// instead of letting them read Redis's own clock (`TIME`), so tests can move time by
    /// hand and compare with `MemoryState`. Production code never calls this: in cluster
    /// mode the quota services' and edges' clocks must not matter.
    pub fn with_test_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The connection, scripts and key names (for the other modules' calls).
    pub(crate) fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The live-counter index and view (`live.rs`).
    pub(crate) fn index(&self) -> &crate::live::Index {
        &self.index
    }

    /// Whether this talks to a Redis Cluster or to a single node; `None` until Redis
    /// answered (after [`RedisState::start`]).
    pub fn topology(&self) -> Option<Topology> {
        self.backend.conn.topology()
    }

    /// Runs a batch with its lease wants (`leases`: the batch's shape, or empty).
    ///
    /// Record ops ([`OpKind::Helo`], [`OpKind::Greylist`]) run first, each as its own call
    /// of its script (`checkhelo.lua`, `greylisting.lua`: one key, one slot); they must lead
    /// their group (the engine pushes them first). The groups run one after the other, each
    /// group's record ops in order, stopping at the first refused (the later ones are not
    /// evaluated, as in process). A group whose record op refused sends its other ops only
    /// as zero-cost checks, for the levels its `NotEvaluated` results report; the other
    /// groups' counter ops then run as usual, in one counter call.
    async fn run(
        &self,
        batch: &CounterBatch,
        leases: &[Vec<u64>],
    ) -> Result<LeasedReply, StateError> {
        let heads: Vec<usize> = batch
            .groups
            .iter()
            .map(|ops| ops.iter().take_while(|op| is_record_op(&op.kind)).count())
            .collect();
        let misplaced = batch
            .groups
            .iter()
            .zip(&heads)
            .any(|(ops, &h)| ops[h..].iter().any(|op| is_record_op(&op.kind)));
        if misplaced {
            return Err(StateError::Unavailable(
                "a record op (greylisting, checkhelo) must come before every counter op of its group".into(),
            ));
        }
        if heads.iter().all(|&h| h == 0) {
            return self.run_counters(batch, leases, false).await;
        }
        let now_ms = self.clock.as_ref().map(|c| c.now_ms());
        // Group after group, each group's record ops in order: the same key (a triplet, a
        // client address) may stand in several groups, and the in-process state sees them
        // in this order too.
        let mut answers: Vec<(u32, u32, DetailAnswer, Outcome)> = Vec::new();
        for (g, (ops, &h)) in batch.groups.iter().zip(&heads).enumerate() {
            for (i, op) in ops[..h].iter().enumerate() {
                let (answer, outcome) = match &op.kind {
                    OpKind::Greylist(grey) => {
                        let mut grey = std::borrow::Cow::Borrowed(&**grey);
                        if batch.dry_run && !grey.dry_run {
                            grey.to_mut().dry_run = true;
                        }
                        let a = crate::greylisting::greylist(&self.backend, &grey, now_ms).await?;
                        (DetailAnswer::Greylist(a), a.outcome())
                    }
                    OpKind::Helo(helo) => {
                        let a = crate::checkhelo::check_helo(
                            &self.backend,
                            helo,
                            now_ms,
                            batch.dry_run,
                        )
                        .await?;
                        (DetailAnswer::Helo(a), a.outcome())
                    }
                    _ => unreachable!("heads hold record ops only"),
                };
                answers.push((g as u32, i as u32, answer, outcome));
                if !outcome.is_admitted() {
                    break;
                }
            }
        }
        let refused: Vec<bool> = (0..batch.groups.len())
            .map(|g| {
                answers
                    .iter()
                    .any(|(ag, _, _, o)| *ag as usize == g && !o.is_admitted())
            })
            .collect();
        // The counter ops: a refused group's as zero-cost checks (levels only, no wants).
        let counters = CounterBatch {
            instance: batch.instance.clone(),
            dry_run: batch.dry_run,
            groups: batch
                .groups
                .iter()
                .zip(&heads)
                .zip(&refused)
                .map(|((ops, &h), &refused)| {
                    ops[h..]
                        .iter()
                        .map(|op| {
                            let mut op = op.clone();
                            if refused {
                                op.kind = OpKind::Check { cost: 0 };
                            }
                            op
                        })
                        .collect()
                })
                .collect(),
            end_of_message: batch.end_of_message,
        };
        let counter_leases: Vec<Vec<u64>> = if leases.is_empty() {
            Vec::new()
        } else {
            heads
                .iter()
                .zip(&refused)
                .enumerate()
                .map(|(g, (&h, &refused))| {
                    let wants = leases.get(g).map_or(&[][..], Vec::as_slice);
                    let tail = wants.get(h..).unwrap_or(&[]);
                    if refused {
                        vec![0; tail.len()]
                    } else {
                        tail.to_vec()
                    }
                })
                .collect()
        };
        // The session is read as for the whole batch (a refused group's once-per-message
        // takes, sent as checks, still ask for it: `session_found` as in process).
        let once = batch
            .groups
            .iter()
            .flatten()
            .any(|op| op.kind == OpKind::TakeOncePerMessage);
        let mut out = self.run_counters(&counters, &counter_leases, once).await?;
        for (g, ((results, grants), (&h, &refused))) in out
            .reply
            .groups
            .iter_mut()
            .zip(out.leases.iter_mut())
            .zip(heads.iter().zip(&refused))
            .enumerate()
        {
            if refused {
                for r in results.iter_mut() {
                    r.outcome = Outcome::NotEvaluated;
                }
            }
            let mut head: Vec<OpResult> = answers
                .iter()
                .filter(|(ag, _, _, _)| *ag as usize == g)
                .map(|(_, _, _, o)| OpResult {
                    outcome: *o,
                    used: 0,
                })
                .collect();
            // Record ops after a refused one were not evaluated.
            head.resize(
                h,
                OpResult {
                    outcome: Outcome::NotEvaluated,
                    used: 0,
                },
            );
            debug_assert_eq!(head.len(), h);
            results.splice(0..0, head);
            if !grants.is_empty() {
                grants.splice(0..0, std::iter::repeat_n(LeaseGrant::default(), h));
            }
        }
        out.reply.details = answers
            .into_iter()
            .map(|(group, index, answer, _)| OpDetail {
                group,
                index,
                answer,
            })
            .collect();
        Ok(out)
    }

    /// Runs a batch of counter ops (no greylisting op) with its lease wants; with
    /// `read_session`, the message session is read even without a once-per-message take.
    async fn run_counters(
        &self,
        batch: &CounterBatch,
        leases: &[Vec<u64>],
        read_session: bool,
    ) -> Result<LeasedReply, StateError> {
        let b = &self.backend;
        let now_ms = self.clock.as_ref().map(|c| c.now_ms());
        let instance = batch.instance.as_str();
        let has_session = !instance.is_empty();
        // Session keys only for a batch with a session (edges send none: they hold it).
        let (charged_key, eom_key) = if has_session {
            (b.keys.charged(instance), b.keys.eom(instance))
        } else {
            (String::new(), String::new())
        };
        let needs_read = has_session
            && (batch.end_of_message.is_some()
                || read_session
                || batch
                    .groups
                    .iter()
                    .flatten()
                    .any(|op| op.kind == OpKind::TakeOncePerMessage));
        // END-OF-MESSAGE ends the session: read and delete it in one step.
        let ends_session = has_session && batch.end_of_message.is_some() && !batch.dry_run;
        let mut session = if needs_read {
            let (charged, eom) = if ends_session {
                b.scripts
                    .session_take(&b.conn, b.timeout, &charged_key, &eom_key)
                    .await?
            } else {
                b.scripts
                    .session_read(&b.conn, b.timeout, &charged_key, &eom_key)
                    .await?
            };
            Session::from_stored(charged, eom)
        } else {
            Session::default()
        };
        let session_found = needs_read && !session.known_new;
        let wants = |g: usize| leases.get(g).map_or(&[][..], Vec::as_slice);

        let independent = groups_independent(&batch.groups);
        let outcomes =
            if independent {
                let roles: Vec<Vec<Role>> = batch
                    .groups
                    .iter()
                    .map(|ops| ops.iter().map(|op| role(&session, op)).collect())
                    .collect();
                // No counter is shared between groups: each group's answers are the same
                // whatever the order, so all groups go out at once (one round trip).
                let runs = batch.groups.iter().zip(&roles).enumerate().map(
                    |(g, (ops, roles))| async move {
                        b.run_group(&Group {
                            ops,
                            roles,
                            wants: wants(g),
                            dry_run: batch.dry_run,
                            now_ms,
                        })
                        .await
                    },
                );
                join_all(runs)
                    .await
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()?
            } else {
                let mut outcomes = Vec::with_capacity(batch.groups.len());
                for (g, ops) in batch.groups.iter().enumerate() {
                    // A later group may depend on what an earlier one charged: in order.
                    let roles: Vec<Role> = ops.iter().map(|op| role(&session, op)).collect();
                    let out = b
                        .run_group(&Group {
                            ops,
                            roles: &roles,
                            wants: wants(g),
                            dry_run: batch.dry_run,
                            now_ms,
                        })
                        .await?;
                    if !out.refused && !batch.dry_run && has_session {
                        remember(&mut session, ops, &out.results);
                    }
                    outcomes.push(out);
                }
                outcomes
            };
        let mut groups = Vec::with_capacity(outcomes.len());
        let mut grants = Vec::with_capacity(outcomes.len());
        for (ops, out) in batch.groups.iter().zip(outcomes) {
            if independent && !out.refused && !batch.dry_run && has_session {
                remember(&mut session, ops, &out.results);
            }
            groups.push(out.results);
            grants.push(out.leases);
        }

        let mut end_of_message = Vec::new();
        if let (Some(size), true) = (batch.end_of_message, has_session) {
            end_of_message = self
                .end_of_message(&session.pending, size, batch.dry_run, now_ms)
                .await?;
        }

        if has_session && !batch.dry_run && !ends_session && session.changed() {
            let records: Vec<(String, String)> = session
                .new_pending
                .iter()
                .map(|p| (p.key.clone(), p.encode()))
                .collect();
            let update = SessionUpdate {
                charged_key: &charged_key,
                eom_key: &eom_key,
                ttl_ms: self.session_ttl_ms,
                charged: &session.new_charged,
                records: &records,
            };
            // A session known not to exist yet is created with plain commands; adding to an
            // existing one needs the script.
            if session.known_new {
                b.scripts
                    .session_create(&b.conn, b.timeout, &update)
                    .await?;
            } else {
                b.scripts.session_write(&b.conn, b.timeout, &update).await?;
            }
        }
        Ok(LeasedReply {
            reply: CounterReply {
                groups,
                end_of_message,
                details: Vec::new(),
            },
            leases: grants,
            session_found,
        })
    }

    /// Charges `size` to every recorded counter: per group (ascending), all-or-nothing.
    async fn end_of_message(
        &self,
        pending: &[Pending],
        size: u64,
        dry_run: bool,
        now_ms: Option<u64>,
    ) -> Result<Vec<EomResult>, StateError> {
        let mut group_ids: Vec<u32> = pending.iter().map(|p| p.group).collect();
        group_ids.sort_unstable();
        group_ids.dedup();
        // Recorded counters are distinct (the first record of a key wins), so the groups
        // share no counter and all go out at once.
        let runs = group_ids.into_iter().map(|id| async move {
            let members: Vec<&Pending> = pending.iter().filter(|p| p.group == id).collect();
            let ops: Vec<CounterOp> = members
                .iter()
                .map(|p| CounterOp {
                    key: p.key.clone(),
                    limit: p.limit,
                    window: p.window,
                    kind: OpKind::Take { cost: size },
                })
                .collect();
            let roles = vec![Role::Charge(size); ops.len()];
            let results = self
                .backend
                .run_group(&Group {
                    ops: &ops,
                    roles: &roles,
                    wants: &[],
                    dry_run,
                    now_ms,
                })
                .await?
                .results;
            Ok::<_, StateError>(
                members
                    .into_iter()
                    .zip(results)
                    .map(|(p, result)| EomResult {
                        label: p.label.clone(),
                        key: p.key.clone(),
                        limit: p.limit,
                        result,
                    })
                    .collect::<Vec<_>>(),
            )
        });
        let mut out = Vec::with_capacity(pending.len());
        for group in join_all(runs).await {
            out.extend(group?);
        }
        Ok(out)
    }
}

/// What `op` does given the message session as known now.
fn role(session: &Session, op: &CounterOp) -> Role {
    match &op.kind {
        OpKind::Take { cost } => Role::Charge(*cost),
        OpKind::Check { cost } => Role::Check(*cost),
        OpKind::TakeOncePerMessage if session.charged.contains(&op.key) => Role::Already,
        OpKind::TakeOncePerMessage => Role::Charge(1),
        OpKind::RecordForEom { .. } => Role::Record,
        // Never reached: `RedisState::run` runs record ops apart.
        OpKind::Greylist(_) | OpKind::Helo(_) => Role::Check(0),
    }
}

/// Whether `kind` is a module's record op, run by its own script before the counters.
fn is_record_op(kind: &OpKind) -> bool {
    matches!(kind, OpKind::Greylist(_) | OpKind::Helo(_))
}

/// Whether no counter key appears in more than one group (so the groups can run at once).
fn groups_independent(groups: &[Vec<CounterOp>]) -> bool {
    if groups.len() < 2 {
        return true;
    }
    let total: usize = groups.iter().map(Vec::len).sum();
    if total <= 16 {
        // A few ops (the usual batch): a scan costs less than a map.
        return groups.iter().enumerate().all(|(g, ops)| {
            ops.iter().all(|op| {
                groups[g + 1..]
                    .iter()
                    .flatten()
                    .all(|other| other.key != op.key)
            })
        });
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (g, ops) in groups.iter().enumerate() {
        for op in ops {
            if *seen.entry(op.key.as_str()).or_insert(g) != g {
                return false;
            }
        }
    }
    true
}

/// Records once-per-message charges and END-OF-MESSAGE counters of an admitted group.
fn remember(session: &mut Session, ops: &[CounterOp], results: &[OpResult]) {
    for (op, r) in ops.iter().zip(results) {
        match &op.kind {
            OpKind::TakeOncePerMessage if r.outcome == sluice_engine::Outcome::Admitted => {
                session.charge(&op.key);
            }
            OpKind::RecordForEom { label, group } => session.record(Pending {
                key: op.key.clone(),
                limit: op.limit,
                window: op.window,
                label: label.clone(),
                group: *group,
            }),
            _ => {}
        }
    }
}

impl State for RedisState {
    fn apply<'a>(
        &'a self,
        batch: &'a CounterBatch,
    ) -> BoxFuture<'a, Result<CounterReply, StateError>> {
        Box::pin(async move { Ok(self.run_timed(batch, &[]).await?.reply) })
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), StateError>> {
        Box::pin(self.backend.conn.ready())
    }
}

impl SharedState for RedisState {
    fn apply_leasing<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        Box::pin(self.run_timed(batch, leases))
    }

    fn apply_leasing_by<'a>(
        &'a self,
        batch: &'a CounterBatch,
        leases: &'a [Vec<u64>],
        deadline: std::time::Instant,
    ) -> BoxFuture<'a, Result<LeasedReply, StateError>> {
        let deadline = tokio::time::Instant::from_std(deadline);
        Box::pin(crate::deadline::within(
            deadline,
            self.run_timed(batch, leases),
        ))
    }

    fn return_leases<'a>(
        &'a self,
        returns: &'a [LeaseReturn],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.give_back(returns))
    }

    fn save_sessions<'a>(
        &'a self,
        sessions: &'a [SessionData],
        ended: &'a [String],
    ) -> BoxFuture<'a, Result<(), StateError>> {
        Box::pin(self.store_sessions(sessions, ended))
    }

    fn load_session<'a>(
        &'a self,
        instance: &'a str,
    ) -> BoxFuture<'a, Result<Option<SessionData>, StateError>> {
        Box::pin(self.read_session(instance))
    }
}

impl RedisState {
    /// [`RedisState::run`], traced and timed.
    async fn run_timed(
        &self,
        batch: &CounterBatch,
        leases: &[Vec<u64>],
    ) -> Result<LeasedReply, StateError> {
        {
            let started = std::time::Instant::now();
            let result = if sluice_runtime::traces_enabled() {
                use tracing::Instrument;
                let span = tracing::info_span!(
                    "redis.batch",
                    db.system = "redis",
                    groups = batch.groups.len(),
                    end_of_message = batch.end_of_message.is_some(),
                );
                self.run(batch, leases).instrument(span).await
            } else {
                self.run(batch, leases).await
            };
            if let Ok(reply) = &result {
                let now = match &self.clock {
                    Some(c) => c.now_ms(),
                    None => sluice_engine::SystemClock.now_ms(),
                };
                self.index.note(batch, &reply.reply, now);
            }
            let h = if result.is_ok() {
                &self.metrics.ok
            } else {
                &self.metrics.error
            };
            h.record(started.elapsed().as_secs_f64());
            result
        }
    }

    /// Refunds every return at its charge time (each its own key: all at once). A counter
    /// that is gone is left alone (the refund finds no bucket). Sent once each; the first
    /// failure is returned after all were tried.
    async fn give_back(&self, returns: &[LeaseReturn]) -> Result<(), StateError> {
        let b = &self.backend;
        let calls = returns.iter().filter(|r| r.units > 0).map(|r| async move {
            let key = b.keys.window(&r.key);
            let call = CounterCall {
                key: key.into(),
                mode: Mode::Refund,
                cost: r.units,
                limit: 0,
                window: r.window,
                now_ms: Some(r.charged_at_ms),
                want: 0,
            };
            b.scripts.counter(&b.conn, b.timeout, call).await
        });
        first_error(join_all(calls).await)
    }

    /// Merges edge-held sessions into the stored ones (the session script: charged keys
    /// added, records kept if new, a new session's TTL from now), all at once, then deletes
    /// the ended sessions (`DEL` of both keys: one slot), all at once.
    async fn store_sessions(
        &self,
        sessions: &[SessionData],
        ended: &[String],
    ) -> Result<(), StateError> {
        let b = &self.backend;
        let writes = sessions
            .iter()
            .filter(|s| !s.charged.is_empty() || !s.records.is_empty())
            .map(|s| async move {
                let (charged_key, eom_key) = (b.keys.charged(&s.instance), b.keys.eom(&s.instance));
                let records: Vec<(String, String)> = s
                    .records
                    .iter()
                    .map(|r| (r.key.clone(), Pending::from(r).encode()))
                    .collect();
                let update = SessionUpdate {
                    charged_key: &charged_key,
                    eom_key: &eom_key,
                    ttl_ms: self.session_ttl_ms,
                    charged: &s.charged,
                    records: &records,
                };
                b.scripts.session_write(&b.conn, b.timeout, &update).await
            });
        first_error(join_all(writes).await)?;
        let deletes = ended.iter().map(|instance| async move {
            let charged_key = b.keys.charged(instance);
            let mut del = redis::cmd("DEL");
            del.arg(&charged_key).arg(b.keys.eom(instance));
            b.conn
                .call(&Request::single(&charged_key, del), b.timeout)
                .await
                .map(drop)
        });
        first_error(join_all(deletes).await)
    }

    /// Reads a stored session (one MULTI/EXEC); `None` when it has neither charged keys nor
    /// records. Charged keys come sorted (a set has no order).
    async fn read_session(&self, instance: &str) -> Result<Option<SessionData>, StateError> {
        let b = &self.backend;
        let (charged_key, eom_key) = (b.keys.charged(instance), b.keys.eom(instance));
        let (mut charged, eom) = b
            .scripts
            .session_read(&b.conn, b.timeout, &charged_key, &eom_key)
            .await?;
        if charged.is_empty() && eom.is_empty() {
            return Ok(None);
        }
        charged.sort_unstable();
        let records = Session::from_stored(Vec::new(), eom)
            .pending
            .into_iter()
            .map(EomRecord::from)
            .collect();
        Ok(Some(SessionData {
            instance: instance.to_string(),
            charged,
            records,
        }))
    }
}

/// `Ok` if every call succeeded, else the first error.
fn first_error<T>(results: Vec<Result<T, StateError>>) -> Result<(), StateError> {
    results
        .into_iter()
        .find_map(Result::err)
        .map_or(Ok(()), Err)
}

/// `sluice_redis_duration_seconds{result}` handles.
struct RedisMetrics {
    ok: metrics::Histogram,
    error: metrics::Histogram,
}

impl RedisMetrics {
    fn new() -> Self {
        use sluice_runtime::metrics::names::{
            REDIS_DURATION, REDIS_RESENDS, REDIS_TOPOLOGY_REFRESHES,
        };
        // Exported from the start (docs/metrics.md): every reason and result at 0.
        for reason in ["moved", "ask", "try_again", "noscript"] {
            metrics::counter!(REDIS_RESENDS, "reason" => reason).increment(0);
        }
        for result in ["ok", "error"] {
            metrics::counter!(REDIS_TOPOLOGY_REFRESHES, "result" => result).increment(0);
        }
        RedisMetrics {
            ok: metrics::histogram!(REDIS_DURATION, "result" => "ok"),
            error: metrics::histogram!(REDIS_DURATION, "result" => "error"),
        }
    }
}
