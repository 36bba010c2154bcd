//! The ledger of held messages (DELAY quotas, docs/delay.md): one task per process owns
//! the [`Ledger`], writes every change to where it is kept ([`Keeper`]) before answering,
//! and releases what has room when an agent syncs, charging through the counters:
//! a release is charged at the moment its agent learns of it and runs `postsuper`, so the
//! charge and the delivery are as close as they can be (charged ahead by a timer, a
//! release would leave up to one agent interval later than it was counted, and two
//! releases a window apart could be delivered less than a window apart).
//!
//! Everything reaches the task as a command with a reply channel, so the request path (on
//! any of the connection runtimes), the admin service and the release agents' syncs share
//! one ledger without locks, and the release step (charge, then mark) is atomic: nothing
//! else runs on the ledger or the counters' release charges in between.
//!
//! Kept in Redis (the quota services of a cluster, `sluice serve --redis`), several
//! processes share the ledger: each command runs under the ledger's Redis lock, on the
//! ledger read again first if another process changed it (`sluice_redis`'s `held.rs`). A
//! release is charged before it is written; if the write then fails, the charge stands and
//! the message is charged again at its next release (the quota under-admits; it never
//! admits more than its limit).

use sluice_engine::hold::ledger::DEFAULT_GRACE_MS;
use sluice_engine::hold::{
    Change, Gone, HeldMessage, HeldMessages, HeldState, HoldError, HoldOutcome, HoldRequest,
    Ledger, QueuedMessage, SyncAnswer,
};
use sluice_engine::state::{BoxFuture, CounterBatch, State};
use sluice_engine::Clock;
use sluice_redis::{LedgerLock, LedgerWrite, RedisState};
use sluice_runtime::metrics::names;
use sluice_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often the gauges (waiting messages, oldest age) are brought up to date.
pub const GAUGES: Duration = Duration::from_secs(1);

/// Commands queued at most (a full queue makes the caller wait).
const QUEUE: usize = 1024;

/// The longest a command waits for the ledger's Redis lock (another process's command).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Where the ledger is kept.
pub enum Keeper {
    /// The SQLite policy database of `sluice serve` with in-process counters: this process
    /// alone has the ledger.
    Database(Store),
    /// Redis, shared by every quota service of a cluster (or `sluice serve --redis`).
    Redis(Arc<RedisState>),
}

type Reply<T> = oneshot::Sender<Result<T, HoldError>>;

enum Command {
    Hold(Box<HoldRequest>, Reply<HoldOutcome>),
    List(Reply<Vec<HeldMessage>>),
    Sync(String, Vec<QueuedMessage>, Reply<SyncAnswer>),
    Act(u64, HeldState, Reply<HeldMessage>),
    Waiting(Reply<Vec<String>>),
}

/// The handle every part of the server uses ([`HeldMessages`]).
#[derive(Clone)]
pub struct HeldService {
    tx: mpsc::Sender<Command>,
}

impl HeldService {
    /// Reads the saved ledger from `keeper` and starts its task, charging releases in
    /// `state` (the counters new mail is counted in).
    pub async fn start(
        keeper: Keeper,
        state: Arc<dyn State>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        let mut task = Task {
            ledger: Ledger::default(),
            keeper,
            state,
            clock,
            unwritten: Vec::new(),
            version: None,
            lock: None,
        };
        match &task.keeper {
            Keeper::Database(store) => {
                let saved = store.load_held().await.map_err(|e| {
                    anyhow::anyhow!("cannot read the held messages from the policy database: {e}")
                })?;
                if !saved.is_empty() {
                    tracing::info!(messages = saved.len(), "Held messages restored");
                }
                task.ledger = Ledger::restore(saved);
            }
            Keeper::Redis(_) => {
                // Read when first used (Redis may not answer yet: a patient start).
            }
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        task.gauges();
        tokio::spawn(task.run(rx));
        Ok(Arc::new(HeldService { tx }))
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, HoldError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| HoldError::Store("the ledger has stopped".into()))?;
        answer
            .await
            .map_err(|_| HoldError::Store("the ledger has stopped".into()))?
    }
}

impl HeldMessages for HeldService {
    fn hold(&self, request: HoldRequest) -> BoxFuture<'_, Result<HoldOutcome, HoldError>> {
        Box::pin(self.ask(move |r| Command::Hold(Box::new(request), r)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<HeldMessage>, HoldError>> {
        Box::pin(self.ask(Command::List))
    }

    fn sync<'a>(
        &'a self,
        mta: &'a str,
        queue: &'a [QueuedMessage],
    ) -> BoxFuture<'a, Result<SyncAnswer, HoldError>> {
        Box::pin(self.ask(|r| Command::Sync(mta.to_string(), queue.to_vec(), r)))
    }

    fn release_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        Box::pin(self.ask(move |r| Command::Act(id, HeldState::Releasing, r)))
    }

    fn return_now(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        Box::pin(self.ask(move |r| Command::Act(id, HeldState::Returning, r)))
    }

    fn delete(&self, id: u64) -> BoxFuture<'_, Result<HeldMessage, HoldError>> {
        Box::pin(self.ask(move |r| Command::Act(id, HeldState::Deleting, r)))
    }

    fn waiting_queues(&self) -> BoxFuture<'_, Result<Vec<String>, HoldError>> {
        Box::pin(self.ask(Command::Waiting))
    }
}

struct Task {
    ledger: Ledger,
    keeper: Keeper,
    state: Arc<dyn State>,
    clock: Arc<dyn Clock>,
    /// Changes not written yet (the database failed): written with the next ones.
    unwritten: Vec<Change>,
    /// Kept in Redis: the version the ledger in memory is of (`None`: read it again).
    version: Option<u64>,
    /// Kept in Redis: the lock, while a command runs.
    lock: Option<LedgerLock>,
}

impl Command {
    /// Answers `e` (the ledger could not be read or locked).
    fn fail(self, e: HoldError) {
        match self {
            Command::Hold(_, reply) => {
                metrics::counter!(names::HELD, "result" => "failed").increment(1);
                let _ = reply.send(Err(e));
            }
            Command::List(reply) => {
                let _ = reply.send(Err(e));
            }
            Command::Sync(_, _, reply) => {
                let _ = reply.send(Err(e));
            }
            Command::Act(_, _, reply) => {
                let _ = reply.send(Err(e));
            }
            Command::Waiting(reply) => {
                let _ = reply.send(Err(e));
            }
        }
    }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut scan = tokio::time::interval(GAUGES);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                command = rx.recv() => match command {
                    Some(c) => self.handle(c).await,
                    None => break,
                },
                _ = scan.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::debug!(error = %e, "Cannot read the held-message ledger for the gauges");
                    }
                    self.gauges();
                }
            }
        }
        let _ = self.write(Vec::new()).await;
    }

    /// Kept in Redis: reads the ledger again if another process changed it.
    async fn refresh(&mut self) -> Result<(), HoldError> {
        let Keeper::Redis(redis) = &self.keeper else {
            return Ok(());
        };
        let store_error = |e: sluice_engine::StateError| HoldError::Store(format!("Redis: {e}"));
        let version = redis.held_version().await.map_err(store_error)?;
        if self.version == Some(version) {
            return Ok(());
        }
        let stored = redis.held_load().await.map_err(store_error)?;
        let mut messages = Vec::with_capacity(stored.messages.len());
        for (id, body) in &stored.messages {
            match serde_json::from_str::<HeldMessage>(body) {
                Ok(m) => messages.push(m),
                Err(e) => {
                    tracing::warn!(id, error = %e, "A held message in Redis cannot be read (written by another version?); skipped")
                }
            }
        }
        self.ledger = Ledger::restore_shared(messages, stored.last_id, stored.paces);
        self.version = Some(stored.version);
        Ok(())
    }

    /// Before a command: kept in Redis, takes the lock and brings the ledger up to date.
    async fn begin(&mut self) -> Result<(), HoldError> {
        let Keeper::Redis(redis) = &self.keeper else {
            return Ok(());
        };
        let lock = redis
            .held_lock(LOCK_WAIT)
            .await
            .map_err(|e| HoldError::Store(format!("Redis: cannot take the ledger's lock: {e}")))?;
        self.lock = Some(lock);
        if let Err(e) = self.refresh().await {
            self.end().await;
            return Err(e);
        }
        Ok(())
    }

    /// After a command: gives the Redis lock back.
    async fn end(&mut self) {
        if let (Keeper::Redis(redis), Some(lock)) = (&self.keeper, self.lock.take()) {
            redis.held_unlock(lock).await;
        }
    }

    async fn handle(&mut self, command: Command) {
        // Reads need the ledger up to date, not the lock.
        let reads = matches!(command, Command::List(_) | Command::Waiting(_));
        let ready = if reads {
            self.refresh().await
        } else {
            self.begin().await
        };
        if let Err(e) = ready {
            sluice_runtime::warn_limited!(error = %e, "The held-message ledger cannot be read");
            command.fail(e);
            return;
        }
        self.run_command(command).await;
        self.end().await;
    }

    async fn run_command(&mut self, command: Command) {
        let now = self.clock.now_ms();
        match command {
            Command::Hold(request, reply) => {
                let (outcome, change) = self.ledger.hold(*request, now);
                let result = match change {
                    None => Ok(outcome),
                    Some(change) => {
                        let id = match &change {
                            Change::Put(m) => m.id,
                            Change::Remove(id) => *id,
                        };
                        // Written before Postfix is told to hold it; undone if it cannot be.
                        match self.write(vec![change]).await {
                            Ok(()) => Ok(outcome),
                            Err(e) => {
                                self.unwritten
                                    .retain(|c| !matches!(c, Change::Put(m) if m.id == id));
                                self.ledger.forget(id);
                                Err(e)
                            }
                        }
                    }
                };
                let label = match &result {
                    Ok(HoldOutcome::Held { .. }) => "held",
                    Ok(HoldOutcome::Full { .. }) => "full",
                    Err(_) => "failed",
                };
                metrics::counter!(names::HELD, "result" => label).increment(1);
                self.gauges();
                let _ = reply.send(result);
            }
            Command::List(reply) => {
                let _ = reply.send(Ok(self.ledger.messages().cloned().collect()));
            }
            Command::Waiting(reply) => {
                let _ = reply.send(Ok(self.ledger.waiting_queues()));
            }
            Command::Sync(mta, queue, reply) => {
                // What has room leaves now, charged as its agent hears of it.
                self.release_due().await;
                let (answer, changes) = self.ledger.sync(&mta, &queue, now, DEFAULT_GRACE_MS);
                for (queue_id, gone) in &answer.gone {
                    metrics::counter!(names::HELD_GONE, "reason" => gone.as_str()).increment(1);
                    if *gone == Gone::Vanished {
                        tracing::info!(%mta, %queue_id, "A held message left the hold queue by hand; forgotten");
                    }
                }
                if answer.unknown > 0 {
                    tracing::debug!(%mta, unknown = answer.unknown, "Messages in the hold queue not held by Sluice");
                }
                let written = self.write(changes).await;
                self.gauges();
                let _ = reply.send(match (&self.keeper, written) {
                    // In Redis, unwritten changes are not kept: the agent acts on nothing
                    // and asks again.
                    (Keeper::Redis(_), Err(e)) => Err(e),
                    // Gone is gone whether or not the write succeeds now (it is retried).
                    _ => Ok(answer),
                });
            }
            Command::Act(id, to, reply) => {
                let state = self.state.clone();
                let result = match self
                    .ledger
                    .act(id, to, now, |m, force| async move {
                        charge(&*state, &m, force).await
                    })
                    .await
                {
                    Err(e) => Err(HoldError::Store(format!("counters: {e}"))),
                    Ok(Err(e)) => Err(e),
                    Ok(Ok((m, change))) => self.write(vec![change]).await.map(|()| m),
                };
                self.gauges();
                let _ = reply.send(result);
            }
        }
    }

    /// Marks what may leave now (charged) and writes it.
    async fn release_due(&mut self) {
        let now = self.clock.now_ms();
        let state = self.state.clone();
        let charged = self
            .ledger
            .release_due(now, |m, force| {
                let state = state.clone();
                async move { charge(&*state, &m, force).await }
            })
            .await;
        match charged {
            Ok(out) => {
                for _ in &out.expired_returned {
                    metrics::counter!(names::HELD_EXPIRED, "action" => "return").increment(1);
                }
                for _ in &out.expired_released {
                    metrics::counter!(names::HELD_EXPIRED, "action" => "release").increment(1);
                }
                if !out.released.is_empty() {
                    tracing::debug!(
                        messages = out.released.len(),
                        "Held messages charged for release"
                    );
                }
                let _ = self.write(out.changes).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot charge held messages for release; retrying");
            }
        }
        self.gauges();
    }

    /// Writes `changes`. To the database: after any left unwritten, and on failure keeps
    /// them for the next write. To Redis: with the lock, or not at all (the ledger is then
    /// read again before the next command).
    async fn write(&mut self, changes: Vec<Change>) -> Result<(), HoldError> {
        match &self.keeper {
            Keeper::Database(store) => {
                self.unwritten.extend(changes);
                if self.unwritten.is_empty() {
                    return Ok(());
                }
                match store.write_held(&self.unwritten).await {
                    Ok(()) => {
                        self.unwritten.clear();
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pending = self.unwritten.len(), "Cannot write the held-message ledger; retrying");
                        Err(HoldError::Store(e.to_string()))
                    }
                }
            }
            Keeper::Redis(redis) => {
                if changes.is_empty() {
                    return Ok(());
                }
                let Some(lock) = &self.lock else {
                    self.version = None;
                    return Err(HoldError::Store("written without the ledger's lock".into()));
                };
                let mut write = LedgerWrite {
                    last_id: self.ledger.last_id(),
                    paces: Some(self.ledger.paces()),
                    ..LedgerWrite::default()
                };
                for change in &changes {
                    match change {
                        Change::Put(m) => write.puts.push((
                            m.id,
                            serde_json::to_string(m).expect("a held message encodes"),
                        )),
                        Change::Remove(id) => write.removes.push(*id),
                    }
                }
                match redis.held_write(lock, &write).await {
                    Ok(version) => {
                        self.version = Some(version);
                        Ok(())
                    }
                    Err(e) => {
                        self.version = None;
                        tracing::warn!(error = %e, "Cannot write the held-message ledger to Redis");
                        Err(HoldError::Store(format!("Redis: {e}")))
                    }
                }
            }
        }
    }

    fn gauges(&self) {
        let (waiting, oldest) = self.ledger.waiting(self.clock.now_ms());
        metrics::gauge!(names::HELD_WAITING).set(waiting as f64);
        metrics::gauge!(names::HELD_OLDEST_AGE).set(oldest as f64 / 1000.0);
    }
}

/// Charges `m`'s needs all-or-nothing in `state` (with `force`, whatever the room; see
/// [`sluice_engine::hold::release_ops`]): whether they fit.
async fn charge(state: &dyn State, m: &HeldMessage, force: bool) -> Result<bool, String> {
    let ops = sluice_engine::hold::release_ops(&m.request.needs, force);
    let batch = CounterBatch {
        instance: String::new(),
        dry_run: false,
        groups: vec![ops],
        end_of_message: None,
    };
    match state.apply(&batch).await {
        Ok(reply) => Ok(reply
            .groups
            .first()
            .is_some_and(|g| g.iter().all(|r| r.outcome.is_admitted()))),
        Err(e) => Err(e.to_string()),
    }
}
