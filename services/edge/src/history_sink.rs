//! Where the request path leaves what the refusal history and the top-senders view need
//! (docs/admin.md, "History"), without waiting for anything:
//!
//! - every refused request becomes a [`RefusalRecord`] pushed into a bounded queue
//!   (`try_send`: a full queue drops the record and counts it in
//!   `sluice_history_records_total{result="dropped"}`); a background task of the process
//!   ([`HistoryReceiver`]) writes the records to the database in batches;
//! - every request counts its sender in [`TopSenders`], a space-saving top-k table of the
//!   current minute, which the same background task takes whole minutes from.
//!
//! The sink is installed once per process ([`install`]); without it nothing is recorded.

use sluice_engine::engine::Decision;
use sluice_protocol::{Action, PolicyRequest};
use std::collections::HashMap;
// Senders come from the network: a seeded hash (as the engine's tables), cheaper than SipHash.
use foldhash::quality::RandomState;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;

/// Counts per sender of one minute.
type MinuteCounts = HashMap<Box<str>, Counted, RandomState>;

/// One refused request, owned, as the request path hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalRecord {
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The client address.
    pub client: String,
    /// The HELO name.
    pub helo: String,
    /// The envelope sender.
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The SASL user name.
    pub sasl_user: String,
    /// The policy of the verdict that refused (empty: none, e.g. the state-failure action).
    pub policy: String,
    /// The module of that verdict.
    pub module: String,
    /// The action's keyword as Postfix got it (`REJECT`, `DEFER`, `450`, ...).
    pub action: String,
    /// The action's text.
    pub text: String,
}

/// Whether `action` refuses (or holds back) the request: REJECT, DEFER, DEFER_IF_PERMIT,
/// DEFER_IF_REJECT, HOLD, DISCARD and explicit 4xx/5xx replies.
pub fn is_refusal(action: &Action) -> bool {
    matches!(
        action,
        Action::Reject(_)
            | Action::Defer(_)
            | Action::DeferIfPermit(_)
            | Action::DeferIfReject(_)
            | Action::Hold(_)
            | Action::Discard(_)
            | Action::Code { .. }
    )
}

/// The sender as counted and shown: `<>` for the null sender.
pub fn sender_key(sender: &str) -> &str {
    if sender.is_empty() {
        "<>"
    } else {
        sender
    }
}

/// Requests and refusals of one sender in one minute (`requests` may include up to
/// `overcount` requests it was not seen making: see [`TopSenders`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counted {
    /// Requests counted.
    pub requests: u64,
    /// Refusals counted.
    pub refusals: u64,
    /// How many of the counts may belong to senders this one replaced.
    pub overcount: u64,
}

/// The busiest senders of each minute, at most `capacity` of them (a batched space-saving
/// table: when it is full, the tenth of the senders with the fewest requests is dropped
/// and the "floor" raised to their count; a sender that enters later starts at the floor
/// plus one, so request counts are upper bounds, off by at most `overcount`, and a sender
/// with more requests in a minute than the floor is never dropped). Refusals are counted
/// from when a sender entered the table.
#[derive(Debug)]
pub struct TopSenders {
    capacity: usize,
    minute_ms: i64,
    current: MinuteCounts,
    /// The highest request count dropped from the current minute to make room.
    floor: u64,
    /// Whole minutes not yet taken, oldest first (at most [`KEPT_MINUTES`]).
    finished: Vec<(i64, MinuteCounts)>,
}

/// Whole minutes kept for the writer; older ones are dropped if it does not take them.
pub const KEPT_MINUTES: usize = 10;

impl TopSenders {
    /// An empty table keeping at most `capacity` senders per minute (at least 1).
    pub fn new(capacity: usize) -> Self {
        TopSenders {
            capacity: capacity.max(1),
            minute_ms: 0,
            current: HashMap::default(),
            floor: 0,
            finished: Vec::new(),
        }
    }

    /// Counts one request of `sender` at `now_ms`.
    pub fn count(&mut self, now_ms: i64, sender: &str, refused: bool) {
        self.roll(now_ms);
        let refusal = u64::from(refused);
        if let Some(c) = self.current.get_mut(sender) {
            c.requests = c.requests.saturating_add(1);
            c.refusals = c.refusals.saturating_add(refusal);
            return;
        }
        if self.current.len() >= self.capacity {
            self.evict();
        }
        let counted = Counted {
            requests: self.floor.saturating_add(1),
            refusals: refusal,
            overcount: self.floor,
        };
        self.current.insert(sender.into(), counted);
    }

    /// Makes room: drops the tenth of the senders with the fewest requests (all senders
    /// tied with the last of them too) and raises the floor to their count, so a sender
    /// counted from now on starts above every count that was dropped.
    fn evict(&mut self) {
        let mut counts: Vec<u64> = self.current.values().map(|c| c.requests).collect();
        let k = (self.capacity / 10).clamp(1, counts.len().max(1));
        let (_, cut, _) = counts.select_nth_unstable(k - 1);
        let cut = *cut;
        self.floor = self.floor.max(cut);
        self.current.retain(|_, c| c.requests > cut);
    }

    /// Moves the current minute to the finished ones when `now_ms` is in a later minute.
    fn roll(&mut self, now_ms: i64) {
        let minute = now_ms - now_ms.rem_euclid(60_000);
        if minute == self.minute_ms {
            return;
        }
        let done = std::mem::take(&mut self.current);
        self.floor = 0;
        if !done.is_empty() {
            self.finished.push((self.minute_ms, done));
            if self.finished.len() > KEPT_MINUTES {
                self.finished.remove(0);
            }
        }
        self.minute_ms = minute;
    }

    /// The counts of every minute before `now_ms`'s, oldest first, and of the current one
    /// too when `all` (at shutdown). What is taken is gone from the table.
    pub fn take(&mut self, now_ms: i64, all: bool) -> Vec<(i64, Vec<(String, Counted)>)> {
        self.roll(now_ms);
        let mut out: Vec<_> = std::mem::take(&mut self.finished);
        if all && !self.current.is_empty() {
            out.push((self.minute_ms, std::mem::take(&mut self.current)));
            self.floor = 0;
        }
        out.into_iter()
            .map(|(m, map)| (m, map.into_iter().map(|(k, c)| (k.into(), c)).collect()))
            .collect()
    }
}

/// What the request path writes into.
#[derive(Debug)]
pub struct HistorySink {
    queue: mpsc::Sender<RefusalRecord>,
    top: Arc<Mutex<TopSenders>>,
    dropped: AtomicU64,
}

/// What the background writer reads from.
#[derive(Debug)]
pub struct HistoryReceiver {
    /// Refusals, in the order they were made.
    pub queue: mpsc::Receiver<RefusalRecord>,
    /// The sender counts.
    pub top: Arc<Mutex<TopSenders>>,
}

static SINK: OnceLock<HistorySink> = OnceLock::new();

/// Installs this process's sink: a queue of `queue_capacity` records (at least 1) and a
/// top-senders table of `top_capacity` senders per minute. Returns the receiving end, or
/// `None` if a sink was installed already (once per process).
pub fn install(queue_capacity: usize, top_capacity: usize) -> Option<HistoryReceiver> {
    let (sink, receiver) = HistorySink::new(queue_capacity, top_capacity);
    SINK.set(sink).ok()?;
    metrics::counter!(sluice_runtime::metrics::names::HISTORY_RECORDS, "result" => "dropped")
        .increment(0);
    Some(receiver)
}

/// Ms since the epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Records `decision` on `req` in the installed sink (nothing without one): counts the
/// sender and, for a refusal, queues its record without waiting.
pub(crate) fn record(req: &PolicyRequest<'_>, decision: &Decision) {
    if let Some(sink) = SINK.get() {
        sink.record(req, decision);
    }
}

impl HistorySink {
    /// A sink with a queue of `queue_capacity` records (at least 1) and a top-senders
    /// table of `top_capacity` senders per minute, and its receiving end.
    pub fn new(queue_capacity: usize, top_capacity: usize) -> (HistorySink, HistoryReceiver) {
        let (tx, rx) = mpsc::channel(queue_capacity.max(1));
        let top = Arc::new(Mutex::new(TopSenders::new(top_capacity)));
        let sink = HistorySink {
            queue: tx,
            top: top.clone(),
            dropped: AtomicU64::new(0),
        };
        (sink, HistoryReceiver { queue: rx, top })
    }

    /// Refusals dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Counts the sender of `req` and, when `decision` refuses, queues its record without
    /// waiting (a full queue drops it and counts it).
    pub fn record(&self, req: &PolicyRequest<'_>, decision: &Decision) {
        let refused = is_refusal(&decision.action);
        let now = now_ms();
        if let Ok(mut top) = self.top.lock() {
            top.count(now, sender_key(&req.sender), refused);
        }
        if !refused {
            return;
        }
        let record = refusal_record(now, req, decision);
        if self.queue.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(sluice_runtime::metrics::names::HISTORY_RECORDS, "result" => "dropped")
                .increment(1);
        }
    }
}

/// The record of a refused request: the first enforced verdict that refused names the
/// policy and module.
pub fn refusal_record(at_ms: i64, req: &PolicyRequest<'_>, decision: &Decision) -> RefusalRecord {
    let verdict = decision
        .verdicts
        .iter()
        .find(|v| !v.monitor && is_refusal(&v.action));
    let shown = decision.action.to_string();
    let (action, text) = match shown.split_once(' ') {
        Some((a, t)) => (a.to_string(), t.to_string()),
        None => (shown, String::new()),
    };
    RefusalRecord {
        at_ms,
        client: req.client_address.to_string(),
        helo: req.helo_name.to_string(),
        sender: req.sender.to_string(),
        recipient: req.recipient.to_string(),
        sasl_user: req.sasl_username.to_string(),
        policy: verdict.map_or(String::new(), |v| v.policy.to_string()),
        module: verdict.map_or(String::new(), |v| v.module.to_string()),
        action,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60_000;

    #[test]
    fn counts_per_minute_and_hands_over_whole_minutes() {
        let mut t = TopSenders::new(10);
        t.count(MINUTE, "a@x", false);
        t.count(MINUTE + 5, "a@x", true);
        t.count(MINUTE + 9, "b@x", false);
        assert!(
            t.take(MINUTE + 10, false).is_empty(),
            "the minute is not over"
        );
        t.count(2 * MINUTE, "c@x", true);
        let taken = t.take(2 * MINUTE + 1, false);
        assert_eq!(taken.len(), 1);
        let (minute, mut rows) = taken.into_iter().next().unwrap();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(minute, MINUTE);
        assert_eq!(rows[0].0, "a@x");
        assert_eq!((rows[0].1.requests, rows[0].1.refusals), (2, 1));
        assert_eq!((rows[1].1.requests, rows[1].1.refusals), (1, 0));
        let last = t.take(2 * MINUTE + 2, true);
        assert_eq!(last[0].0, 2 * MINUTE);
        assert_eq!(last[0].1[0].0, "c@x");
    }

    #[test]
    fn a_full_table_keeps_heavy_senders_and_bounds_the_error() {
        let mut t = TopSenders::new(3);
        for i in 0..1000 {
            t.count(MINUTE, "heavy@x", i % 2 == 0);
            t.count(MINUTE, &format!("once{i}@x"), false);
        }
        let rows = &t.take(MINUTE, true)[0].1;
        assert!(rows.len() <= 3);
        let heavy = rows.iter().find(|r| r.0 == "heavy@x").expect("kept");
        assert_eq!(heavy.1.requests, 1000, "never replaced: exact");
        assert_eq!(heavy.1.refusals, 500);
        for (_, c) in rows {
            assert!(c.requests - c.overcount >= 1);
        }
    }

    fn decision(action: Action) -> Decision {
        Decision {
            action,
            ..Decision::dunno()
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (sink, mut rx) = HistorySink::new(1, 10);
        let mut req = PolicyRequest::new(
            sluice_protocol::ProtocolState::Rcpt,
            "192.0.2.1".parse().unwrap(),
        );
        req.sender = "a@example.org".into();
        sink.record(&req, &decision(Action::Reject(Some("5.7.1 No".into()))));
        sink.record(&req, &decision(Action::Reject(None)));
        sink.record(&req, &decision(Action::Dunno));
        assert_eq!(sink.dropped(), 1, "the second refusal found the queue full");
        let r = rx.queue.try_recv().unwrap();
        assert_eq!((r.action.as_str(), r.text.as_str()), ("REJECT", "5.7.1 No"));
        assert_eq!(r.sender, "a@example.org");
        assert!(rx.queue.try_recv().is_err(), "DUNNO is not a refusal");
        let counted = rx.top.lock().unwrap().take(now_ms(), true);
        let c = counted[0].1[0].1;
        assert_eq!((c.requests, c.refusals), (3, 2));
    }

    #[test]
    fn refusals_are_the_refusing_actions() {
        assert!(is_refusal(&Action::Reject(None)));
        assert!(is_refusal(&Action::DeferIfPermit(None)));
        assert!(is_refusal(&Action::Code {
            code: 450,
            text: "x".into()
        }));
        assert!(is_refusal(&Action::Hold(None)));
        assert!(!is_refusal(&Action::Dunno));
        assert!(!is_refusal(&Action::Ok(None)));
        assert!(!is_refusal(&Action::Prepend("X: y".into())));
    }
}
