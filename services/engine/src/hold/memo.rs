//! Per connection: the message a DELAY quota is holding, from the RCPT that found the quota
//! full to the END-OF-MESSAGE that gives its queue ID, real size and recipient count.
//!
//! Postfix asks both on the policy connection of the one `smtpd` process that receives the
//! message, so the connection is where the message is remembered; a message whose
//! END-OF-MESSAGE never comes (the client gave up, or Postfix does not ask at
//! END-OF-MESSAGE) is replaced by the next message and reported ([`Noted::lost`]).

use super::{DelaySettings, HoldRequest, Need};
use std::sync::Arc;

/// What RCPT found for one DELAY quota that had no room (carried by
/// [`crate::Decision::delayed`] from the Quotas module to the connection's memo).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delayed {
    /// The policy.
    pub policy: Arc<str>,
    /// The DELAY quota.
    pub quota: Arc<str>,
    /// The quota's track value.
    pub track: String,
    /// The quota's settings.
    pub settings: DelaySettings,
    /// The charges RCPT found no room for.
    pub needs: Vec<Need>,
}

/// The message being held on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HoldMemo {
    held: Option<(String, Delayed)>,
}

/// What [`HoldMemo::note`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Noted {
    /// A message held at RCPT was replaced before its END-OF-MESSAGE: Postfix holds it but
    /// the ledger never learnt its queue ID.
    pub lost: bool,
}

impl HoldMemo {
    /// Whether any message is being held.
    pub fn holds_any(&self) -> bool {
        self.held.is_some()
    }

    /// Whether `instance` is being held.
    pub fn holds(&self, instance: &str) -> bool {
        self.held.as_ref().is_some_and(|(i, _)| i == instance)
    }

    /// Adds what one RCPT of `instance` found (nothing when `delayed` is `None`, apart from
    /// forgetting another message's memo).
    pub fn note(&mut self, instance: &str, delayed: Option<Delayed>) -> Noted {
        let mut noted = Noted::default();
        if self.held.as_ref().is_some_and(|(i, _)| i != instance) {
            noted.lost = true;
            self.held = None;
        }
        let Some(d) = delayed else {
            return noted;
        };
        match &mut self.held {
            None => self.held = Some((instance.to_string(), d)),
            Some((_, held)) => {
                for need in d.needs {
                    match held.needs.iter_mut().find(|n| n.key == need.key) {
                        // A recipient count needs one more per refused recipient; a message
                        // count or size is needed once.
                        Some(n) if n.per_recipient => {
                            n.cost = n.cost.saturating_add(need.cost);
                        }
                        Some(_) => {}
                        None => held.needs.push(need),
                    }
                }
            }
        }
        noted
    }

    /// At END-OF-MESSAGE of `instance`: the held message as the ledger records it (sizes
    /// filled in), or `None` when it is not held. Forgets it either way.
    pub fn finish(
        &mut self,
        instance: &str,
        mta: String,
        queue_id: &str,
        sender: &str,
        recipients: u64,
        size: u64,
    ) -> Option<HoldRequest> {
        if !self.holds(instance) {
            return None;
        }
        let (_, d) = self.held.take()?;
        let mut needs = d.needs;
        for n in &mut needs {
            if n.cost == 0 {
                // A size limit: the real size now.
                n.cost = crate::bounds::charged_size(size).max(1);
            }
        }
        Some(HoldRequest {
            mta,
            queue_id: queue_id.to_string(),
            sender: sender.to_string(),
            policy: d.policy.to_string(),
            quota: d.quota.to_string(),
            track: d.track,
            needs,
            recipients,
            size,
            settings: d.settings,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn need(kind: &str, cost: u64) -> Need {
        Need {
            key: format!("p/q/{kind}/Sender:a@example.org"),
            limit: 5,
            period_ms: 10_000,
            bucket_ms: 1_000,
            cost,
            per_recipient: kind == "RecipientCount",
        }
    }

    fn delayed(needs: Vec<Need>) -> Delayed {
        Delayed {
            policy: "p".into(),
            quota: "q".into(),
            track: "Sender:a@example.org".into(),
            settings: DelaySettings::default(),
            needs,
        }
    }

    #[test]
    fn recipients_add_up_messages_and_sizes_count_once() {
        let mut m = HoldMemo::default();
        let d = || {
            delayed(vec![
                need("MessageCount", 1),
                need("RecipientCount", 1),
                need("MessageCumulativeSize", 0),
            ])
        };
        assert!(!m.note("i1", Some(d())).lost);
        m.note("i1", Some(d()));
        m.note("i1", None);
        let r = m
            .finish("i1", "127.0.0.1".into(), "QID", "a@example.org", 3, 2_000)
            .unwrap();
        let costs: Vec<u64> = r.needs.iter().map(|n| n.cost).collect();
        assert_eq!(costs, [1, 2, 2_000]);
        assert_eq!(r.queue_key(), "p/q/Sender:a@example.org");
        assert!(m.finish("i1", String::new(), "", "", 0, 0).is_none());
    }

    #[test]
    fn a_message_count_is_needed_once_whatever_its_track_value_reads() {
        // A local part may hold slashes: the key of a message count can read like a
        // recipient count's.
        let mut m = HoldMemo::default();
        let odd = || Need {
            key: "p/q/MessageCount/Sender:x/RecipientCount/y@example.org".into(),
            ..need("MessageCount", 1)
        };
        m.note("i1", Some(delayed(vec![odd()])));
        m.note("i1", Some(delayed(vec![odd()])));
        let r = m.finish("i1", String::new(), "Q", "", 2, 1).unwrap();
        assert_eq!(r.needs.len(), 1);
        assert_eq!(r.needs[0].cost, 1);
    }

    #[test]
    fn a_message_without_end_of_message_is_reported_lost() {
        let mut m = HoldMemo::default();
        m.note("i1", Some(delayed(vec![need("MessageCount", 1)])));
        assert!(m.note("i2", None).lost);
        assert!(!m.holds("i1"));
        assert!(m.finish("i1", String::new(), "Q", "", 1, 1).is_none());
    }
}
