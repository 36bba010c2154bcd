//! Where the request path leaves what Accounting counted (`Decision::accounted`), for the
//! per-period totals in the policy database (docs/accounting.md, "Reports"), without
//! waiting for anything: counts are summed in memory per (policy, row, period, track key)
//! and a background task of the process ([`AccountingSink::take`], every second) writes
//! the sums in one batch. The table of sums is bounded: a key that finds it full is
//! dropped, counted in [`AccountingSink::dropped`] (the writer logs drops).
//!
//! The sink is installed once per process ([`install`]); without it nothing is kept.

use sluice_engine::engine::Decision;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// Identifies one set of totals: policy, accounting row, period key, track key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TotalKey {
    /// The policy.
    pub policy: Arc<str>,
    /// The accounting row.
    pub name: Arc<str>,
    /// The period key.
    pub period: String,
    /// The track key.
    pub track: String,
}

/// Counts summed since the last [`AccountingSink::take`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sums {
    /// Messages.
    pub messages: u64,
    /// Recipients.
    pub recipients: u64,
    /// Bytes.
    pub bytes: u64,
}

/// What the request path writes into, and the background writer takes from.
#[derive(Debug)]
pub struct AccountingSink {
    sums: Mutex<HashMap<TotalKey, Sums>>,
    capacity: usize,
    dropped: AtomicU64,
}

static SINK: OnceLock<Arc<AccountingSink>> = OnceLock::new();

/// Installs this process's sink, keeping at most `capacity` keys (at least 1) between two
/// takes. Returns it, or `None` if one was installed already (once per process).
pub fn install(capacity: usize) -> Option<Arc<AccountingSink>> {
    let sink = Arc::new(AccountingSink::new(capacity));
    SINK.set(Arc::clone(&sink)).ok()?;
    Some(sink)
}

/// Adds what `decision` counted to the installed sink (nothing without one, or when
/// Accounting counted nothing).
pub(crate) fn record(decision: &Decision) {
    if decision.accounted.is_empty() {
        return;
    }
    if let Some(sink) = SINK.get() {
        sink.record(decision);
    }
}

impl AccountingSink {
    /// An empty sink keeping at most `capacity` keys (at least 1).
    pub fn new(capacity: usize) -> Self {
        AccountingSink {
            sums: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
            dropped: AtomicU64::new(0),
        }
    }

    /// Adds what `decision` counted (a key that finds the table full is dropped and
    /// counted in [`AccountingSink::dropped`]).
    pub fn record(&self, decision: &Decision) {
        let Ok(mut sums) = self.sums.lock() else {
            return;
        };
        for a in &decision.accounted {
            let key = TotalKey {
                policy: Arc::clone(&a.policy),
                name: Arc::clone(&a.name),
                period: a.period.clone(),
                track: a.track.clone(),
            };
            let len = sums.len();
            match sums.get_mut(&key) {
                Some(s) => add(s, a.messages, a.recipients, a.bytes),
                None if len >= self.capacity => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    let mut s = Sums::default();
                    add(&mut s, a.messages, a.recipients, a.bytes);
                    sums.insert(key, s);
                }
            }
        }
    }

    /// Everything summed since the last take (the table is left empty).
    pub fn take(&self) -> Vec<(TotalKey, Sums)> {
        match self.sums.lock() {
            Ok(mut sums) => std::mem::take(&mut *sums).into_iter().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Counts dropped so far because the table was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

fn add(s: &mut Sums, messages: u64, recipients: u64, bytes: u64) {
    s.messages = s.messages.saturating_add(messages);
    s.recipients = s.recipients.saturating_add(recipients);
    s.bytes = s.bytes.saturating_add(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::Accounted;

    fn decision(rows: &[(&str, u64, u64, u64)]) -> Decision {
        let mut d = Decision::dunno();
        for &(track, messages, recipients, bytes) in rows {
            d.accounted.push(Accounted {
                policy: "p".into(),
                name: "a".into(),
                period: "2026-11".into(),
                track: track.into(),
                messages,
                recipients,
                bytes,
            });
        }
        d
    }

    #[test]
    fn sums_per_key_until_taken_and_bounds_the_table() {
        let sink = AccountingSink::new(2);
        sink.record(&decision(&[("Sender:a", 1, 1, 0)]));
        sink.record(&decision(&[("Sender:a", 0, 1, 0), ("Sender:b", 1, 1, 0)]));
        sink.record(&decision(&[
            ("Sender:a", 0, 0, u64::MAX),
            ("Sender:c", 1, 1, 0),
        ]));
        sink.record(&decision(&[("Sender:a", 0, 0, 10)]));
        assert_eq!(sink.dropped(), 1, "Sender:c found the table full");
        let mut taken = sink.take();
        taken.sort_by(|x, y| x.0.track.cmp(&y.0.track));
        assert_eq!(taken.len(), 2);
        assert_eq!(
            taken[0].1,
            Sums {
                messages: 1,
                recipients: 2,
                bytes: u64::MAX
            },
            "sums saturate"
        );
        assert!(sink.take().is_empty(), "taken whole");
        sink.record(&decision(&[("Sender:c", 1, 1, 0)]));
        assert_eq!(sink.take().len(), 1, "room again after a take");
    }
}
