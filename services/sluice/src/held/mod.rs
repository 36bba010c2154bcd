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
//! Where the ledger is kept, and how (a lock and a version in Redis, shared by several
//! processes), is [`keeper`]'s. A release is charged before it is written; if the write
//! then fails, the charge stands and the message is charged again at its next release (the
//! quota under-admits; it never admits more than its limit).

use sluice_engine::hold::ledger::DEFAULT_GRACE_MS;
use sluice_engine::hold::{
    Change, Gone, HeldMessage, HeldMessages, HeldState, HoldError, HoldOutcome, HoldRequest,
    Ledger, QueuedMessage, SyncAnswer,
};
use sluice_engine::state::{BoxFuture, CounterBatch, State};
use sluice_engine::Clock;
use sluice_runtime::metrics::names;
use std::sync::Arc;

mod keeper;
pub use keeper::Keeper;
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
        let mut keeper = keeper;
        let ledger = keeper.load().await?;
        let task = Task {
            ledger,
            keeper,
            state,
            clock,
        };
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
                    if let Err(e) = self.keeper.refresh(&mut self.ledger).await {
                        tracing::debug!(error = %e, "Cannot read the held-message ledger for the gauges");
                    }
                    self.gauges();
                }
            }
        }
        let _ = self.write(Vec::new()).await;
    }

    async fn handle(&mut self, command: Command) {
        // Reads need the ledger up to date, not the lock.
        let reads = matches!(command, Command::List(_) | Command::Waiting(_));
        let ready = if reads {
            self.keeper.refresh(&mut self.ledger).await
        } else {
            self.keeper.begin(&mut self.ledger).await
        };
        if let Err(e) = ready {
            sluice_runtime::warn_limited!(error = %e, "The held-message ledger cannot be read");
            command.fail(e);
            return;
        }
        self.run_command(command).await;
        self.keeper.end().await;
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
                                self.keeper.give_up(id);
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
                if let Err(e) = self.release_due().await {
                    // Not written (Redis): the agent acts on nothing and asks again.
                    self.gauges();
                    let _ = reply.send(Err(e));
                    return;
                }
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
                let _ = reply.send(match written {
                    // Not written and not retried (Redis): the agent acts on nothing and
                    // asks again.
                    Err(e) if !self.keeper.retries_failed_writes() => Err(e),
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

    /// Marks what may leave now (charged) and writes it. An error only when what was
    /// marked is not written and not retried (Redis): the caller must not act on it.
    async fn release_due(&mut self) -> Result<(), HoldError> {
        let now = self.clock.now_ms();
        let state = self.state.clone();
        let charged = self
            .ledger
            .release_due(now, |m, force| {
                let state = state.clone();
                async move { charge(&*state, &m, force).await }
            })
            .await;
        let written = match charged {
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
                self.write(out.changes).await
            }
            Err(e) => {
                tracing::warn!(error = %e, "Cannot charge held messages for release; retrying");
                Ok(())
            }
        };
        self.gauges();
        match written {
            Err(e) if !self.keeper.retries_failed_writes() => Err(e),
            _ => Ok(()),
        }
    }

    /// Writes `changes` where the ledger is kept.
    async fn write(&mut self, changes: Vec<Change>) -> Result<(), HoldError> {
        self.keeper.write(&self.ledger, changes).await
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
