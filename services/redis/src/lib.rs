//! The engine's [`sluice_engine::State`] on Redis Cluster (or one plain Redis node), for
//! cluster mode: any number of quota services share one Redis and the limits hold across
//! all of them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use sluice_redis::RedisState;
//! let state = RedisState::connect(&["redis://127.0.0.1:7000".to_string()]).await?;
//! // `state` implements sluice_engine::State: hand it to the engine or the quota service.
//! # Ok(()) }
//! ```
//!
//! # Counters
//! Each counter is one Redis hash (sub-bucket index → count) and all counter work runs
//! atomically inside Redis as one Lua script ([`EVALSHA`], loaded again on `NOSCRIPT`)
//! implementing exactly [`sluice_engine::window`]'s arithmetic: prune, conservative
//! inclusion of every bucket that may hold an event of the window, retry-after from bucket
//! expiry, refund. Time comes from Redis's own clock (`TIME` inside the script), so the
//! clocks of edges and quota services do not matter. A key gets a TTL of period + one bucket
//! whenever a new sub-bucket is charged (the newest bucket decides when the key is idle), so
//! idle counters expire by themselves. The counter ops waiting at the same time (every
//! batch of an `ApplyMany`, every refund of a `ReturnLeases`) go to Redis as **one** script
//! call per node, with one `TIME` (the `coalesce` module); an op whose key the node does not
//! serve is reported as not run and sent again alone, redirected as any call. A lone op
//! that changes nothing — a check, or an op that only reports a level (already counted for
//! the message, recorded for END-OF-MESSAGE) — runs without a script: `TIME` and `HGETALL`
//! pipelined to the counter's node, answered with the same arithmetic in Rust; within a
//! group, one such read serves every non-charging op on the same counter (a size check and
//! its END-OF-MESSAGE record). Message sessions are
//! read with one `MULTI`/`EXEC` (`SMEMBERS` + `HGETALL`; at END-OF-MESSAGE also `DEL`, so
//! the session is read and ended in one step and a repeated END-OF-MESSAGE of the same
//! message finds nothing to charge) and created with one `MULTI`/`EXEC` (`SADD`, `HSETNX`,
//! `PEXPIRE`); only adding to a session that already exists runs a script.
//!
//! # Round trips
//! The groups of a batch that share no counter are independent: all of them go out at
//! once (so do the END-OF-MESSAGE groups, whose counters are distinct by construction). A
//! batch whose groups share a counter runs them one after the other, as the in-process
//! state does. The message session is only read when the batch has a once-per-message take
//! or is an END-OF-MESSAGE, and only written when the batch changed it.
//!
//! # Leases
//! [`sluice_engine::SharedState::apply_leasing`] lets a take carry a *want*: the counter script's
//! `take` then also charges [`sluice_engine::window::lease_units`] extra units (at most a
//! quarter of the room left above half the limit; none within
//! [`sluice_engine::window::MIN_LEASE_MS`] of the end of the current sub-bucket) in the same
//! `HINCRBY` as the cost, and returns them with `valid_ms`, the time left until that
//! sub-bucket ends. The calling edge admits from those units locally until then, so every
//! such admission falls into the bucket the units were charged to and no window ever holds
//! more than the limit; taking only from the lower half keeps limits exact where they bind.
//! A refused group refunds its leases with its takes (and reports no grant). Unused units
//! come back with [`sluice_engine::SharedState::return_leases`]: a `refund` at the grant's charge
//! time (so it hits the bucket it was charged to), all at once (one script call per node); a
//! counter that is gone is left alone.
//!
//! # Edge-held message sessions
//! [`sluice_engine::SharedState::save_sessions`] merges sessions an edge held into the stored ones
//! with the session script (charged keys added, the first record of a key kept, a new
//! session's TTL counted from now), sessions at once, then deletes the ended ones (`DEL` of
//! both keys, one slot). [`sluice_engine::SharedState::load_session`] reads one with the same
//! `MULTI`/`EXEC` as a batch. A batch that reads its session reports whether it existed
//! (`session_found`).
//!
//! # Keys and Redis Cluster
//! Keys carry hash tags: `sluice:{<counter key>}:w` for a counter and
//! `sluice:{m:<instance>}:charged` / `sluice:{m:<instance>}:eom` for a message session
//! (long names, or names with braces, are tagged by a stable hash). A message session
//! expires [`RedisStateSettings::session_ttl`] after creation (default 30 minutes) and is
//! deleted at END-OF-MESSAGE.
//!
//! # All-or-nothing across slots
//! The counters of one group usually live on different slots (different nodes), so no single
//! script can take them together. A group is run as *take, then refund*: every op of the
//! group is sent at once (one round trip); each take is atomic on its own counter and is
//! only charged if it fits; if any op refused, every take that was charged is refunded (at
//! the bucket it was charged to). A group that charges one counter twice is run op by op in
//! order instead (taking in order, refunding what was taken at the first refusal), as the
//! in-process state does. Either way **no limit is ever exceeded**: each counter only ever
//! admits what fits under its own limit, atomically.
//!
//! The price is *under-admission under contention*: between a take and its refund, the
//! taken amount occupies the counter, so a concurrent request may be refused by a counter
//! that would have had room a moment later (two requests can both be refused where one
//! would have fitted). It only happens while a group is being refused, is bounded by the
//! amounts in flight, and clears within one round trip. The same holds for the in-process
//! state. Without contention every answer is exactly `MemoryState`'s: a test feeds both the
//! same sequence of batches and compares every reply.
//!
//! A once-per-message take reads the message session before charging and records the charge
//! after its group was admitted; two RCPTs of one message processed at the very same time
//! on two quota services could both charge (Postfix sends a message's recipients one after
//! the other, so this does not happen in practice).
//!
//! # The connection
//! Our own small client (the `cluster` module), for a cluster or one plain node: one
//! multiplexed connection per primary (concurrent calls are pipelined on it), each call
//! sent straight to the node of its key's slot (CRC16 of the hash tag, slot table from
//! `CLUSTER SLOTS`). A `MOVED` answer updates the table and the call goes to the new
//! owner; `ASK` sends it once to the importing node after `ASKING`; `TRYAGAIN` and
//! `READONLY` are retried shortly within the call's timeout; `NOSCRIPT` loads the script
//! on that node and sends the call again. All of these prove the command did not run.
//! `CLUSTERDOWN`, `MASTERDOWN` and `LOADING` last seconds: the call fails at once. The topology is read again in the background (at most every 100 ms) after
//! a `MOVED` or a connection error; nodes that left it are dropped (the seeds are kept). A
//! broken connection is opened again by a later call; failed connection attempts to a node
//! back off (jittered, up to 2 s), and calls to it fail at once meanwhile.
//!
//! Every connection (to seeds and to every node the cluster announces) is made the same
//! way: TCP, TLS for `rediss://` ([`RedisTls`]: rustls with *ring*, a CA file or the
//! system's roots, a client certificate, one server name for every node), then `AUTH`
//! with the URL's user and password and `SELECT` of its database. [`REDIS_COMMANDS`] is
//! what an ACL user must be allowed.
//!
//! [`RedisState::connect_with`] connects before returning: the seeds are asked in the
//! order given, each with its own timeout, and the first that answers wins.
//! [`RedisState::start`] returns at once and connects in the background, retrying with a
//! capped, jittered backoff; calls fail as unavailable until Redis answered.
//!
//! # Failures
//! Every Redis call is bounded by [`RedisStateSettings::timeout`] (default 250 ms) and
//! failures map to [`sluice_engine::StateError::Unavailable`] or
//! [`sluice_engine::StateError::Timeout`], so the caller can answer with its fallback
//! action. **Nothing that may have run is sent again**: after a connection error or a
//! timeout Redis may have run the command (a refund sent twice would refund twice, an
//! END-OF-MESSAGE session read-and-delete sent twice would find the session gone, a lease
//! return sent twice would give back its units twice), so the call fails instead. If a call fails after other takes of its group were charged, those
//! are refunded (best effort; a refund that fails too only under-admits until the window
//! moves on).
//!
//! [`EVALSHA`]: https://redis.io/commands/evalsha/
#![forbid(unsafe_code)]

mod backend;
mod checkhelo;
mod cluster;
mod coalesce;
mod conn;
mod deadline;
mod endpoint;
mod error;
mod greylisting;
mod group;
mod held;
mod keys;
mod level;
mod live;
mod scripts;
mod session;
mod state;
mod tls;
mod version;

pub use cluster::slots::key_slot;
pub use conn::{check_settings, Topology};
pub use error::ConnectError;
pub use held::{LedgerLock, LedgerWrite, StoredLedger, LOCK_TTL};
pub use state::{RedisState, RedisStateSettings};
pub use tls::RedisTls;
pub use version::{check_info, RedisVersion, MIN_REDIS_VERSION};

/// Every Redis command Sluice sends (directly, or from its Lua scripts, which Redis checks
/// against the ACL too): what a Redis ACL user of the quota service (or of `sluice serve
/// --redis`) must be allowed, with the keys `~<key_prefix>:*` (docs/cluster.md). `AUTH`
/// and `SELECT` (from the URL) need no rule.
pub const REDIS_COMMANDS: &[&str] = &[
    // Connecting and routing.
    "info",
    "cluster|slots",
    "asking",
    // Health (a primary answers) and replication (a charge acknowledged once a replica
    // has it).
    "ping",
    "wait",
    // Scripts.
    "evalsha",
    "script|load",
    // Reads and message sessions.
    "time",
    "hgetall",
    "multi",
    "exec",
    "smembers",
    "sadd",
    "hsetnx",
    "pexpire",
    "del",
    // Inside the counter and session scripts.
    "hdel",
    "hset",
    "hincrby",
    "pttl",
    "hexists",
    "hlen",
    "exists",
    // Inside the greylisting script.
    "hget",
    // The live-counter index (admin service: who is limited, who is close; resets).
    "zadd",
    "zremrangebyscore",
    "zremrangebyrank",
    "zrangebyscore",
    "zrange",
    "zscore",
    "zrem",
];
