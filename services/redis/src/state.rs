//! [`RedisState`]: the engine's [`State`] on Redis.

use crate::backend::Backend;
use crate::conn::{Conn, Topology};
use crate::error::ConnectError;
use crate::group::{Group, Role};
use crate::keys::Keys;
use crate::scripts::{Scripts, SessionUpdate};
use crate::session::{Pending, Session};
use futures_util::future::join_all;
use sluice_engine::state::{BoxFuture, EomResult};
use sluice_engine::{
    Clock, CounterBatch, CounterOp, CounterReply, OpKind, OpResult, State, StateError,
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
    /// counted from its creation. Default 30 minutes, as `MemoryStateSettings`.
    pub session_ttl: Duration,
    /// First part of every key (lets several deployments share one Redis). Must not
    /// contain `{` or `}`. Default `sluice`.
    pub key_prefix: String,
}

impl Default for RedisStateSettings {
    fn default() -> Self {
        RedisStateSettings {
            timeout: Duration::from_millis(250),
            session_ttl: Duration::from_secs(30 * 60),
            key_prefix: "sluice".to_string(),
        }
    }
}

/// Counters and message sessions in Redis (Cluster or one node), shared by any number of
/// processes. Cheap to share behind an `Arc`; one per process is enough (the connection is
/// multiplexed).
pub struct RedisState {
    backend: Backend,
    topology: Topology,
    session_ttl_ms: u64,
    clock: Option<Arc<dyn Clock>>,
    metrics: RedisMetrics,
}

impl RedisState {
    /// Connects with default settings. One URL: a cluster if that node has
    /// `cluster_enabled:1`, else a plain node; several URLs: cluster seed nodes.
    pub async fn connect(urls: &[String]) -> Result<Self, ConnectError> {
        Self::connect_with(urls, RedisStateSettings::default()).await
    }

    /// Connects with `settings` (see [`RedisState::connect`]).
    pub async fn connect_with(
        urls: &[String],
        settings: RedisStateSettings,
    ) -> Result<Self, ConnectError> {
        if settings.key_prefix.contains(['{', '}']) {
            return Err(ConnectError::InvalidPrefix(settings.key_prefix));
        }
        let (conn, topology) = Conn::connect(urls, settings.timeout).await?;
        Ok(RedisState {
            backend: Backend {
                conn,
                scripts: Scripts::new(),
                keys: Keys::new(&settings.key_prefix),
                timeout: settings.timeout,
            },
            topology,
            session_ttl_ms: u64::try_from(settings.session_ttl.as_millis()).unwrap_or(u64::MAX),
            clock: None,
            metrics: RedisMetrics::new(),
        })
    }

    /// **Test only.** Reads "now" from `clock` once per batch and passes it to the scripts
    /// instead of letting them read Redis's own clock (`TIME`), so tests can move time by
    /// hand and compare with `MemoryState`. Production code never calls this: in cluster
    /// mode the quota services' and edges' clocks must not matter.
    pub fn with_test_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Whether this talks to a Redis Cluster or to a single node.
    pub fn topology(&self) -> Topology {
        self.topology
    }

    async fn run(&self, batch: &CounterBatch) -> Result<CounterReply, StateError> {
        let b = &self.backend;
        let now_ms = self.clock.as_ref().map(|c| c.now_ms());
        let instance = batch.instance.as_str();
        let has_session = !instance.is_empty();
        let (charged_key, eom_key) = (b.keys.charged(instance), b.keys.eom(instance));
        let needs_read = has_session
            && (batch.end_of_message.is_some()
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

        let independent = groups_independent(&batch.groups);
        let outcomes = if independent {
            let roles: Vec<Vec<Role>> = batch
                .groups
                .iter()
                .map(|ops| ops.iter().map(|op| role(&session, op)).collect())
                .collect();
            // No counter is shared between groups: each group's answers are the same
            // whatever the order, so all groups go out at once (one round trip).
            let runs = batch
                .groups
                .iter()
                .zip(&roles)
                .map(|(ops, roles)| async move {
                    b.run_group(&Group {
                        ops,
                        roles,
                        dry_run: batch.dry_run,
                        now_ms,
                    })
                    .await
                });
            join_all(runs)
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()?
        } else {
            let mut outcomes = Vec::with_capacity(batch.groups.len());
            for ops in &batch.groups {
                // A later group may depend on what an earlier one charged: in order.
                let roles: Vec<Role> = ops.iter().map(|op| role(&session, op)).collect();
                let out = b
                    .run_group(&Group {
                        ops,
                        roles: &roles,
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
        for (ops, out) in batch.groups.iter().zip(outcomes) {
            if independent && !out.refused && !batch.dry_run && has_session {
                remember(&mut session, ops, &out.results);
            }
            groups.push(out.results);
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
        Ok(CounterReply {
            groups,
            end_of_message,
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
    }
}

/// Whether no counter key appears in more than one group (so the groups can run at once).
fn groups_independent(groups: &[Vec<CounterOp>]) -> bool {
    if groups.len() < 2 {
        return true;
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
        Box::pin(async move {
            let started = std::time::Instant::now();
            let result = if sluice_runtime::traces_enabled() {
                use tracing::Instrument;
                let span = tracing::info_span!(
                    "redis.batch",
                    db.system = "redis",
                    groups = batch.groups.len(),
                    end_of_message = batch.end_of_message.is_some(),
                );
                self.run(batch).instrument(span).await
            } else {
                self.run(batch).await
            };
            let h = if result.is_ok() {
                &self.metrics.ok
            } else {
                &self.metrics.error
            };
            h.record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// `sluice_redis_duration_seconds{result}` handles.
struct RedisMetrics {
    ok: metrics::Histogram,
    error: metrics::Histogram,
}

impl RedisMetrics {
    fn new() -> Self {
        use sluice_runtime::metrics::names::REDIS_DURATION;
        RedisMetrics {
            ok: metrics::histogram!(REDIS_DURATION, "result" => "ok"),
            error: metrics::histogram!(REDIS_DURATION, "result" => "error"),
        }
    }
}
