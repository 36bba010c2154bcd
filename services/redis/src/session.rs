//! A message session as read from Redis, and the records kept for END-OF-MESSAGE.

use sluice_engine::window::WindowSpec;
use sluice_engine::EomRecord;
use std::collections::HashSet;

/// A counter to charge the real size to at END-OF-MESSAGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    pub key: String,
    pub limit: u64,
    pub window: WindowSpec,
    pub label: String,
    pub group: u32,
}

impl Pending {
    /// The stored value (the script prefixes a sequence number keeping insertion order).
    pub(crate) fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.group, self.limit, self.window.period_ms, self.window.bucket_ms, self.label
        )
    }

    /// Parses a stored `seq|group|limit|period|bucket|label` value; returns (seq, record).
    fn decode(key: &str, value: &str) -> Option<(u64, Pending)> {
        let mut parts = value.splitn(6, '|');
        let seq = parts.next()?.parse().ok()?;
        let group = parts.next()?.parse().ok()?;
        let limit = parts.next()?.parse().ok()?;
        let period_ms = parts.next()?.parse().ok()?;
        let bucket_ms = parts.next()?.parse().ok()?;
        let label = parts.next()?.to_string();
        Some((
            seq,
            Pending {
                key: key.to_string(),
                limit,
                window: WindowSpec {
                    period_ms,
                    bucket_ms,
                },
                label,
                group,
            },
        ))
    }
}

impl From<&EomRecord> for Pending {
    fn from(r: &EomRecord) -> Self {
        Pending {
            key: r.key.clone(),
            limit: r.limit,
            window: r.window,
            label: r.label.clone(),
            group: r.group,
        }
    }
}

impl From<Pending> for EomRecord {
    fn from(p: Pending) -> Self {
        EomRecord {
            key: p.key,
            limit: p.limit,
            window: p.window,
            label: p.label,
            group: p.group,
        }
    }
}

/// What a batch knows of its message session, and what it adds.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Counters charged once for this message (stored and added by this batch).
    pub charged: HashSet<String>,
    /// Counters for END-OF-MESSAGE in recording order (stored and added by this batch).
    pub pending: Vec<Pending>,
    /// Charged keys this batch adds.
    pub new_charged: Vec<String>,
    /// Records this batch adds.
    pub new_pending: Vec<Pending>,
    /// The session was read and did not exist: what this batch adds creates it.
    pub known_new: bool,
}

impl Session {
    /// The session from the stored set and hash (unreadable records are skipped).
    pub(crate) fn from_stored(charged: Vec<String>, eom: Vec<(String, String)>) -> Self {
        let mut records: Vec<(u64, Pending)> = eom
            .iter()
            .filter_map(|(k, v)| Pending::decode(k, v))
            .collect();
        records.sort_by_key(|(seq, _)| *seq);
        Session {
            known_new: charged.is_empty() && eom.is_empty(),
            charged: charged.into_iter().collect(),
            pending: records.into_iter().map(|(_, p)| p).collect(),
            ..Session::default()
        }
    }

    /// Remembers a once-per-message charge.
    pub(crate) fn charge(&mut self, key: &str) {
        if self.charged.insert(key.to_string()) {
            self.new_charged.push(key.to_string());
        }
    }

    /// Remembers a counter for END-OF-MESSAGE (the first record of a key wins).
    pub(crate) fn record(&mut self, p: Pending) {
        if !self.pending.iter().any(|q| q.key == p.key) {
            self.pending.push(p.clone());
            self.new_pending.push(p);
        }
    }

    /// Whether this batch changed the session.
    pub(crate) fn changed(&self) -> bool {
        !self.new_charged.is_empty() || !self.new_pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_in_order_with_pipes_in_labels() {
        let p = |key: &str, label: &str, group| Pending {
            key: key.into(),
            limit: 10,
            window: WindowSpec::new(3_600_000, 60),
            label: label.into(),
            group,
        };
        let a = p("k1", "pol/quo|ta", 2);
        let b = p("k2", "x", 0);
        let stored = vec![
            ("k2".to_string(), format!("1|{}", b.encode())),
            ("k1".to_string(), format!("0|{}", a.encode())),
            ("bad".to_string(), "nonsense".to_string()),
        ];
        let s = Session::from_stored(vec!["c".into()], stored);
        assert_eq!(s.pending, vec![a, b]);
        assert!(s.charged.contains("c"));
    }
}
