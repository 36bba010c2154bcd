//! Where the ledger of held messages is kept, and what each place needs to keep it right:
//!
//! - [`Keeper::database`]: the SQLite policy database of `sluice serve` with in-process
//!   counters; this process alone has the ledger. A write that fails is kept and written
//!   with the next one.
//! - [`Keeper::redis`]: Redis, shared by every quota service of a cluster (and `sluice serve
//!   --redis`). A command that changes the ledger runs under the ledger's Redis lock, on the
//!   ledger read again first if another process changed it (its version moved); a write
//!   that fails is dropped, and the ledger read again before the next command.

use sluice_engine::hold::{Change, HeldMessage, HoldError, Ledger};
use sluice_redis::{LedgerLock, LedgerWrite, RedisState};
use sluice_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// The longest a command waits for the ledger's Redis lock (another process's command).
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Where the ledger is kept.
pub enum Keeper {
    /// The policy database (`sluice serve` on SQLite with in-process counters).
    Database(Database),
    /// Redis, shared.
    Redis(Shared),
}

/// The ledger in the policy database.
pub struct Database {
    store: Store,
    /// Changes not written yet (the database failed): written with the next ones.
    unwritten: Vec<Change>,
}

/// The ledger in Redis.
pub struct Shared {
    redis: Arc<RedisState>,
    /// The version the ledger in memory is of (`None`: read it again).
    version: Option<u64>,
    /// The lock, while a command runs.
    lock: Option<LedgerLock>,
}

fn redis_error(e: sluice_engine::StateError) -> HoldError {
    HoldError::Store(format!("Redis: {e}"))
}

impl Keeper {
    /// The ledger in `store`.
    pub fn database(store: Store) -> Keeper {
        Keeper::Database(Database {
            store,
            unwritten: Vec::new(),
        })
    }

    /// The ledger in `redis`.
    pub fn redis(redis: Arc<RedisState>) -> Keeper {
        Keeper::Redis(Shared {
            redis,
            version: None,
            lock: None,
        })
    }

    /// The ledger at start: read from the database now; from Redis when first used (it
    /// may not answer yet: a patient start).
    pub async fn load(&mut self) -> anyhow::Result<Ledger> {
        match self {
            Keeper::Database(db) => {
                let saved = db.store.load_held().await.map_err(|e| {
                    anyhow::anyhow!("cannot read the held messages from the policy database: {e}")
                })?;
                if !saved.is_empty() {
                    tracing::info!(messages = saved.len(), "Held messages restored");
                }
                Ok(Ledger::restore(saved))
            }
            Keeper::Redis(_) => Ok(Ledger::default()),
        }
    }

    /// Brings `ledger` up to date (Redis: read again if another process changed it).
    pub async fn refresh(&mut self, ledger: &mut Ledger) -> Result<(), HoldError> {
        let Keeper::Redis(shared) = self else {
            return Ok(());
        };
        let version = shared.redis.held_version().await.map_err(redis_error)?;
        if shared.version == Some(version) {
            return Ok(());
        }
        let stored = shared.redis.held_load().await.map_err(redis_error)?;
        let mut messages = Vec::with_capacity(stored.messages.len());
        for (id, body) in &stored.messages {
            match serde_json::from_str::<HeldMessage>(body) {
                Ok(m) => messages.push(m),
                Err(e) => {
                    tracing::warn!(id, error = %e, "A held message in Redis cannot be read (written by another version?); skipped")
                }
            }
        }
        *ledger = Ledger::restore_shared(messages, stored.last_id, stored.paces);
        shared.version = Some(stored.version);
        Ok(())
    }

    /// Before a command that changes the ledger: takes the lock (Redis) and brings
    /// `ledger` up to date.
    pub async fn begin(&mut self, ledger: &mut Ledger) -> Result<(), HoldError> {
        if let Keeper::Redis(shared) = self {
            let lock = shared.redis.held_lock(LOCK_WAIT).await.map_err(|e| {
                HoldError::Store(format!("Redis: cannot take the ledger's lock: {e}"))
            })?;
            shared.lock = Some(lock);
        }
        if let Err(e) = self.refresh(ledger).await {
            self.end().await;
            return Err(e);
        }
        Ok(())
    }

    /// After a command: gives the lock back (Redis).
    pub async fn end(&mut self) {
        if let Keeper::Redis(shared) = self {
            if let Some(lock) = shared.lock.take() {
                shared.redis.held_unlock(lock).await;
            }
        }
    }

    /// Whether a failed write is kept and retried (the database) rather than dropped
    /// (Redis: the caller must then not act on what it did not write).
    pub fn retries_failed_writes(&self) -> bool {
        matches!(self, Keeper::Database(_))
    }

    /// A hold that could not be written is not to be retried: Postfix was not told to
    /// hold it.
    pub fn give_up(&mut self, id: u64) {
        if let Keeper::Database(db) = self {
            db.unwritten
                .retain(|c| !matches!(c, Change::Put(m) if m.id == id));
        }
    }

    /// Writes `changes` of `ledger`: to the database after any left unwritten; to Redis
    /// with the lock, or not at all (and the ledger is read again before the next command).
    pub async fn write(&mut self, ledger: &Ledger, changes: Vec<Change>) -> Result<(), HoldError> {
        match self {
            Keeper::Database(db) => {
                db.unwritten.extend(changes);
                if db.unwritten.is_empty() {
                    return Ok(());
                }
                match db.store.write_held(&db.unwritten).await {
                    Ok(()) => {
                        db.unwritten.clear();
                        Ok(())
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pending = db.unwritten.len(), "Cannot write the held-message ledger; retrying");
                        Err(HoldError::Store(e.to_string()))
                    }
                }
            }
            Keeper::Redis(shared) => {
                if changes.is_empty() {
                    return Ok(());
                }
                let Some(lock) = &shared.lock else {
                    shared.version = None;
                    return Err(HoldError::Store("written without the ledger's lock".into()));
                };
                let mut write = LedgerWrite {
                    puts: Vec::new(),
                    removes: Vec::new(),
                    last_id: ledger.last_id(),
                    paces: ledger.paces(),
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
                match shared.redis.held_write(lock, &write).await {
                    Ok(version) => {
                        shared.version = Some(version);
                        Ok(())
                    }
                    Err(e) => {
                        shared.version = None;
                        tracing::warn!(error = %e, "Cannot write the held-message ledger to Redis");
                        Err(redis_error(e))
                    }
                }
            }
        }
    }
}
