//! Live counters for the admin service ([`sluice_engine::LiveCounters`] on Redis): a
//! counter's level and when it frees up, the keys refused recently, the keys close to a
//! limit, and resetting one key. Never `SCAN`/`KEYS`.
//!
//! # The index
//! Listings read an index the process running the counters (`sluice serve --redis`, or a
//! quota service) keeps **outside** the scripts (the counter script may only write keys of
//! the slots its counters live on): after a batch answered, every counter op that was
//! refused, and every admitted one at or above [`NEAR_PERCENT`] of its limit, is recorded in
//! one of [`INDEX_BUCKETS`] small sorted sets per kind, `<prefix>:{idx:N}:r` (refused) and
//! `<prefix>:{idx:N}:n` (near), `N` chosen by a stable hash of the counter key. The member
//! is `<period_ms> <bucket_ms> <limit> <counter key>` (what reading the counter back
//! needs), the score the time in ms. Each write is one `MULTI`/`EXEC` on that set's slot:
//! `ZADD`, then trimmed by age (older than [`INDEX_KEEP_MS`]) and size (the newest
//! [`INDEX_MAX`]), and a TTL. The writes are spawned off the reply path, at most
//! [`MAX_IN_FLIGHT`] at once (more are dropped: the index is a view, never needed for a
//! verdict); a failed write is only logged. A counter recorded (same kind) by this process
//! within [`NOTE_EVERY_MS`] is not written again, so a hot key costs at most one index
//! write a second per process (its refusal time in the index is then up to a second old).
//!
//! A listing reads the 16 sets of its kind (the newest [`INDEX_MAX`] each), keeps the
//! newest entry of each counter, and reads every counter's level back (`TIME` + `HGETALL`,
//! as a lone check does).

use crate::cluster::request::Request;
use crate::conn::Conn;
use crate::keys::Keys;
use redis::Value;
use sluice_engine::counters::{sort_listed, CounterInfo, CounterQuery, Listing, LiveCounters};
use sluice_engine::state::BoxFuture;
use sluice_engine::window::{Window, WindowSpec};
use sluice_engine::{CounterBatch, CounterReply, OpKind, Outcome, StateError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Sorted sets per kind of index entry.
pub const INDEX_BUCKETS: u64 = 16;
/// Entries kept per sorted set (the newest).
pub const INDEX_MAX: usize = 256;
/// Entries older than this are trimmed (ms): a day.
pub const INDEX_KEEP_MS: u64 = 24 * 3600 * 1000;
/// An admitted op at or above this share of its limit is indexed as "near".
pub const NEAR_PERCENT: u64 = 80;
/// Index writes in flight at most; more are dropped.
pub const MAX_IN_FLIGHT: usize = 32;
/// A counter already recorded (same kind) within this long is not written again (ms): a
/// hot key over or near its limit costs at most one index write a second per process.
pub const NOTE_EVERY_MS: u64 = 1000;
/// Counters remembered as recently recorded, at most, per kind (forgotten all at once beyond).
const MAX_NOTED: usize = 8192;

/// One index entry: a counter, its window and limit.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    window: WindowSpec,
    limit: u64,
}

impl Entry {
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.window.period_ms, self.window.bucket_ms, self.limit, self.key
        )
    }

    fn decode(member: &str) -> Option<Self> {
        let mut parts = member.splitn(4, ' ');
        let period_ms = parts.next()?.parse().ok()?;
        let bucket_ms = parts.next()?.parse().ok()?;
        let limit = parts.next()?.parse().ok()?;
        let key = parts.next()?.to_owned();
        sluice_engine::bounds::check_redis_window(period_ms, bucket_ms).ok()?;
        Some(Entry {
            key,
            window: WindowSpec {
                period_ms,
                bucket_ms,
            },
            limit,
        })
    }
}

/// Which index: refused or near.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Refused,
    Near,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Refused => "r",
            Kind::Near => "n",
        }
    }
}

/// The index's sorted set of `kind` that `counter` belongs to.
fn index_key(keys: &Keys, kind: Kind, counter: &str) -> String {
    keys.index(crate::keys::fnv1a64(counter) % INDEX_BUCKETS, kind.suffix())
}

/// Keeps the index (see the module docs).
#[derive(Clone)]
pub(crate) struct Index {
    conn: Conn,
    keys: Keys,
    timeout: Duration,
    in_flight: Arc<AtomicUsize>,
    /// When each counter was last recorded by this process, per kind (`Kind as usize`).
    noted: Arc<std::sync::Mutex<[HashMap<String, u64>; 2]>>,
}

impl Index {
    pub(crate) fn new(conn: Conn, keys: Keys, timeout: Duration) -> Self {
        Index {
            conn,
            keys,
            timeout,
            in_flight: Arc::new(AtomicUsize::new(0)),
            noted: Arc::new(std::sync::Mutex::new(Default::default())),
        }
    }

    /// Records the refused and near-limit counter ops of `batch` (answered with `reply` at
    /// `now_ms`), off the reply path. A dry run records nothing.
    pub(crate) fn note(&self, batch: &CounterBatch, reply: &CounterReply, now_ms: u64) {
        if batch.dry_run {
            return;
        }
        let mut sets: HashMap<String, Vec<String>> = HashMap::new();
        for (ops, results) in batch.groups.iter().zip(&reply.groups) {
            for (op, r) in ops.iter().zip(results) {
                if matches!(op.kind, OpKind::Greylist(_) | OpKind::Helo(_)) || op.limit == 0 {
                    continue;
                }
                let kind = match r.outcome {
                    Outcome::Refused { .. } => Kind::Refused,
                    Outcome::Admitted
                        if u128::from(r.used) * 100
                            >= u128::from(op.limit) * u128::from(NEAR_PERCENT) =>
                    {
                        Kind::Near
                    }
                    _ => continue,
                };
                if !self.due(kind, &op.key, now_ms) {
                    continue;
                }
                let entry = Entry {
                    key: op.key.clone(),
                    window: op.window,
                    limit: op.limit,
                };
                sets.entry(index_key(&self.keys, kind, &op.key))
                    .or_default()
                    .push(entry.encode());
            }
        }
        for (set, members) in sets {
            if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_IN_FLIGHT {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                tracing::debug!(set, "Counter index write dropped: too many in flight");
                continue;
            }
            let this = self.clone();
            tokio::spawn(async move {
                if let Err(e) = this.write(&set, &members, now_ms).await {
                    tracing::debug!(set, error = %e, "Counter index write failed");
                }
                this.in_flight.fetch_sub(1, Ordering::AcqRel);
            });
        }
    }

    /// Whether `counter` is due to be recorded as `kind` at `now_ms` (not recorded within
    /// [`NOTE_EVERY_MS`]); if so, it counts as recorded now.
    fn due(&self, kind: Kind, counter: &str, now_ms: u64) -> bool {
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        let noted = &mut noted[kind as usize];
        // Looked up by `&str`: a key recorded within the interval allocates nothing.
        if noted
            .get(counter)
            .is_some_and(|&at| now_ms.saturating_sub(at) < NOTE_EVERY_MS)
        {
            return false;
        }
        if noted.len() >= MAX_NOTED {
            noted.clear();
        }
        noted.insert(counter.to_owned(), now_ms);
        true
    }

    /// Forgets that `counter` was recorded (a reset: its next refusal is recorded at once).
    fn unnote(&self, counter: &str) {
        let mut noted = self.noted.lock().unwrap_or_else(|p| p.into_inner());
        for noted in noted.iter_mut() {
            noted.remove(counter);
        }
    }

    async fn write(&self, set: &str, members: &[String], now_ms: u64) -> Result<(), StateError> {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg(set);
        for m in members {
            zadd.arg(now_ms).arg(m);
        }
        let mut by_age = redis::cmd("ZREMRANGEBYSCORE");
        by_age
            .arg(set)
            .arg("-inf")
            .arg(format!("({}", now_ms.saturating_sub(INDEX_KEEP_MS)));
        let mut by_size = redis::cmd("ZREMRANGEBYRANK");
        by_size.arg(set).arg(0).arg(-(INDEX_MAX as i64) - 1);
        let mut ttl = redis::cmd("PEXPIRE");
        ttl.arg(set).arg(INDEX_KEEP_MS);
        let req = Request::transaction(set, [zadd, by_age, by_size, ttl]);
        self.conn.call(&req, self.timeout).await.map(drop)
    }

    /// The entries of `kind` at or after `since` (ms), newest of each counter, with its time.
    async fn read(&self, kind: Kind, since: u64) -> Result<Vec<(Entry, u64)>, StateError> {
        let reads = (0..INDEX_BUCKETS).map(|n| {
            let set = self.keys.index(n, kind.suffix());
            async move {
                let mut range = redis::cmd("ZRANGEBYSCORE");
                range
                    .arg(&set)
                    .arg(since)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(INDEX_MAX);
                let values = self
                    .conn
                    .call(&Request::reads(&set, [range]), self.timeout)
                    .await?;
                let pairs: Vec<(String, f64)> = match values.first() {
                    Some(v) => redis::from_redis_value_ref(v).map_err(|e| {
                        StateError::Unavailable(format!("unexpected index reply: {e}"))
                    })?,
                    None => Vec::new(),
                };
                Ok::<_, StateError>(pairs)
            }
        });
        let mut newest: HashMap<String, (Entry, u64)> = HashMap::new();
        for pairs in futures_util::future::join_all(reads).await {
            for (member, score) in pairs? {
                let Some(entry) = Entry::decode(&member) else {
                    continue;
                };
                // Scores are ms since the epoch: exact in an f64.
                let at = score.max(0.0) as u64;
                match newest.get(&entry.key) {
                    Some((_, t)) if *t >= at => {}
                    _ => {
                        newest.insert(entry.key.clone(), (entry, at));
                    }
                }
            }
        }
        Ok(newest.into_values().collect())
    }

    /// Removes every entry of `counter` from both indexes (read the set, `ZREM` its
    /// members naming the counter).
    async fn forget(&self, counter: &str) -> Result<(), StateError> {
        for kind in [Kind::Refused, Kind::Near] {
            let set = index_key(&self.keys, kind, counter);
            let mut range = redis::cmd("ZRANGE");
            range.arg(&set).arg(0).arg(-1);
            let values = self
                .conn
                .call(&Request::reads(&set, [range]), self.timeout)
                .await?;
            let members: Vec<String> = match values.first() {
                Some(v) => redis::from_redis_value_ref(v).unwrap_or_default(),
                None => Vec::new(),
            };
            let gone: Vec<&String> = members
                .iter()
                .filter(|m| Entry::decode(m).is_some_and(|e| e.key == counter))
                .collect();
            if gone.is_empty() {
                continue;
            }
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(&set).arg(gone);
            self.conn
                .call(&Request::single(&set, zrem), self.timeout)
                .await?;
        }
        Ok(())
    }

    /// When `entry` was last refused (its entry in the refused index), if it was.
    async fn refused_at(&self, entry: &Entry) -> Result<Option<u64>, StateError> {
        let set = index_key(&self.keys, Kind::Refused, &entry.key);
        let mut score = redis::cmd("ZSCORE");
        score.arg(&set).arg(entry.encode());
        let values = self
            .conn
            .call(&Request::reads(&set, [score]), self.timeout)
            .await?;
        let at: Option<f64> = match values.first() {
            Some(v) => redis::from_redis_value_ref(v).unwrap_or(None),
            None => None,
        };
        Ok(at.map(|s| s.max(0.0) as u64))
    }

    /// The live view of `entry` (its refusal time given or read from the index).
    async fn info(
        &self,
        entry: &Entry,
        refused_at: Option<u64>,
    ) -> Result<CounterInfo, StateError> {
        let window_key = self.keys.window(&entry.key);
        let (now, pairs) =
            crate::level::buckets(&self.conn, self.timeout, &window_key, None).await?;
        let refused_at_ms = match refused_at {
            Some(at) => Some(at),
            None => self.refused_at(entry).await?,
        };
        Ok(info_at(entry, &pairs, now, refused_at_ms))
    }
}

/// The live view of `entry` from its counter's fields at `now`.
fn info_at(
    entry: &Entry,
    pairs: &[(String, String)],
    now: u64,
    refused_at_ms: Option<u64>,
) -> CounterInfo {
    let spec = entry.window;
    let w = crate::level::window_at(pairs, spec, now);
    let oldest = spec.oldest_counted(now);
    let empty_in_ms = w
        .buckets()
        .filter(|&(j, n)| j >= oldest && n > 0)
        .map(|(j, _)| spec.expiry_of(j).saturating_sub(now))
        .max()
        .unwrap_or(0);
    CounterInfo {
        key: entry.key.clone(),
        used: w.used(spec, now),
        limit: entry.limit,
        refused_at_ms,
        room_in_ms: Window::retry_after(&w, spec, now, 1, entry.limit),
        empty_in_ms,
    }
}

impl Index {
    async fn levels(&self, keys: &[CounterQuery]) -> Result<Vec<CounterInfo>, StateError> {
        let reads = keys.iter().map(|q| async move {
            let entry = Entry {
                key: q.key.clone(),
                window: q.window,
                limit: q.limit,
            };
            self.info(&entry, None).await
        });
        futures_util::future::join_all(reads)
            .await
            .into_iter()
            .collect()
    }

    async fn list(&self, listing: Listing, max: usize) -> Result<Vec<CounterInfo>, StateError> {
        let since = match listing {
            Listing::RefusedSince(since) => since,
            Listing::AtLeastPercent(_) => 0,
        };
        let mut entries = self.read(Kind::Refused, since).await?;
        let refused: HashMap<String, u64> =
            entries.iter().map(|(e, at)| (e.key.clone(), *at)).collect();
        if let Listing::AtLeastPercent(_) = listing {
            for (e, at) in self.read(Kind::Near, 0).await? {
                if !refused.contains_key(&e.key) {
                    entries.push((e, at));
                }
            }
        }
        let reads = entries.iter().map(|(e, _)| {
            let at = refused.get(&e.key).copied();
            async move {
                let window_key = self.keys.window(&e.key);
                let (now, pairs) =
                    crate::level::buckets(&self.conn, self.timeout, &window_key, None).await?;
                Ok::<_, StateError>(info_at(e, &pairs, now, at))
            }
        });
        let mut out = Vec::new();
        for info in futures_util::future::join_all(reads).await {
            let info = info?;
            if listing.includes(&info) {
                out.push(info);
            }
        }
        sort_listed(&mut out, max);
        Ok(out)
    }

    async fn reset(&self, counter: &str) -> Result<bool, StateError> {
        let window_key = self.keys.window(counter);
        let mut del = redis::cmd("DEL");
        del.arg(&window_key);
        let values = self
            .conn
            .call(&Request::single(&window_key, del), self.timeout)
            .await?;
        let deleted = matches!(values.first(), Some(Value::Int(n)) if *n > 0);
        self.unnote(counter);
        self.forget(counter).await?;
        Ok(deleted)
    }
}

impl LiveCounters for crate::RedisState {
    fn levels<'a>(
        &'a self,
        keys: &'a [CounterQuery],
    ) -> BoxFuture<'a, Result<Vec<CounterInfo>, StateError>> {
        Box::pin(self.index().levels(keys))
    }

    fn list(
        &self,
        listing: Listing,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<CounterInfo>, StateError>> {
        Box::pin(self.index().list(listing, max))
    }

    fn reset<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool, StateError>> {
        Box::pin(self.index().reset(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_encode_and_decode() {
        let e = Entry {
            key: "p q/quota/MessageCount/Sender:a b@x".into(),
            window: WindowSpec::new(60_000, 60),
            limit: 7,
        };
        assert_eq!(Entry::decode(&e.encode()), Some(e));
        assert_eq!(Entry::decode("0 0 1 k"), None);
        assert_eq!(Entry::decode("garbage"), None);
    }
}
