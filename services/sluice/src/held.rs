//! The ledger of held messages of `sluice serve` (DELAY quotas, docs/delay.md): one task owns
//! the [`Ledger`], writes every change to the SQLite policy database before answering, and
//! releases what has room when an agent syncs, charging through the in-process counters:
//! a release is charged at the moment its agent learns of it and runs `postsuper`, so the
//! charge and the delivery are as close as they can be (charged ahead by a timer, a
//! release would leave up to one agent interval later than it was counted, and two
//! releases a window apart could be delivered less than a window apart).
//!
//! Everything reaches the task as a command with a reply channel, so the request path (on
//! any of the connection runtimes), the admin service and the release agents' syncs share
//! one ledger without locks, and the release step (charge, then mark) is atomic: nothing
//! else runs on the ledger or the counters' release charges in between.

use sluice_engine::hold::ledger::DEFAULT_GRACE_MS;
use sluice_engine::hold::{
    Change, Gone, HeldMessage, HeldMessages, HeldState, HoldError, HoldOutcome, HoldRequest,
    Ledger, QueuedMessage, SyncAnswer,
};
use sluice_engine::state::{BoxFuture, CounterBatch, CounterOp, OpKind, State};
use sluice_engine::Clock;
use sluice_runtime::metrics::names;
use sluice_store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How often the gauges (waiting messages, oldest age) are brought up to date.
pub const GAUGES: Duration = Duration::from_secs(1);

/// Commands queued at most (a full queue makes the caller wait).
const QUEUE: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, HoldError>>;

enum Command {
    Hold(Box<HoldRequest>, Reply<HoldOutcome>),
    List(Reply<Vec<HeldMessage>>),
    Sync(String, Vec<QueuedMessage>, Reply<SyncAnswer>),
    Act(u64, HeldState, Reply<HeldMessage>),
}

/// The handle every part of the server uses ([`HeldMessages`]).
#[derive(Clone)]
pub struct HeldService {
    tx: mpsc::Sender<Command>,
}

impl HeldService {
    /// Reads the saved ledger from `store` and starts its task, charging releases in
    /// `state` (which must answer in place: the in-process counters).
    pub async fn start(
        store: Store,
        state: Arc<dyn State>,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Arc<Self>> {
        let saved = store.load_held().await.map_err(|e| {
            anyhow::anyhow!("cannot read the held messages from the policy database: {e}")
        })?;
        if !saved.is_empty() {
            tracing::info!(messages = saved.len(), "Held messages restored");
        }
        let ledger = Ledger::restore(saved);
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = Task {
            ledger,
            store,
            state,
            clock,
            unwritten: Vec::new(),
        };
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
}

struct Task {
    ledger: Ledger,
    store: Store,
    state: Arc<dyn State>,
    clock: Arc<dyn Clock>,
    /// Changes not written yet (the database failed): written with the next ones.
    unwritten: Vec<Change>,
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
                _ = scan.tick() => self.gauges(),
            }
        }
        let _ = self.write(Vec::new()).await;
    }

    async fn handle(&mut self, command: Command) {
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
                // Gone is gone whether or not the write succeeds now (it is retried).
                let _ = self.write(changes).await;
                self.gauges();
                let _ = reply.send(Ok(answer));
            }
            Command::Act(id, to, reply) => {
                let state = self.state.clone();
                let result = match self
                    .ledger
                    .act(id, to, now, &mut |m, force| charge(&*state, m, force))
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
        match self
            .ledger
            .release_due(now, &mut |m, force| charge(&*state, m, force))
        {
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

    /// Writes `changes` (after any left unwritten); on failure keeps them for the next
    /// write.
    async fn write(&mut self, changes: Vec<Change>) -> Result<(), HoldError> {
        self.unwritten.extend(changes);
        if self.unwritten.is_empty() {
            return Ok(());
        }
        match self.store.write_held(&self.unwritten).await {
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

    fn gauges(&self) {
        let (waiting, oldest) = self.ledger.waiting(self.clock.now_ms());
        metrics::gauge!(names::HELD_WAITING).set(waiting as f64);
        metrics::gauge!(names::HELD_OLDEST_AGE).set(oldest as f64 / 1000.0);
    }
}

/// Charges `m`'s needs all-or-nothing in `state` (with `force`, whatever the room): whether
/// they fit. The in-process counters answer in place; another backend cannot release.
fn charge(state: &dyn State, m: &HeldMessage, force: bool) -> Result<bool, String> {
    let ops = m
        .request
        .needs
        .iter()
        .map(|n| CounterOp {
            key: n.key.clone(),
            // Forced: a limit nothing reaches (the counters hold at most 2^64-1).
            limit: if force { u64::MAX / 2 } else { n.limit },
            window: n.window(),
            kind: OpKind::Take { cost: n.cost },
        })
        .collect();
    let batch = CounterBatch {
        instance: String::new(),
        dry_run: false,
        groups: vec![ops],
        end_of_message: None,
    };
    match state.apply_in_place(&batch) {
        Some(Ok(reply)) => Ok(reply
            .groups
            .first()
            .is_some_and(|g| g.iter().all(|r| r.outcome.is_admitted()))),
        Some(Err(e)) => Err(e.to_string()),
        None => {
            Err("these counters cannot release held messages (in-process counters only)".into())
        }
    }
}
