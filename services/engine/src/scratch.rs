//! Buffers that one connection reuses from request to request, so that building a request's
//! counter batch does not allocate once it has warmed up.
//!
//! A batch owns its ops and their key strings (the same batch goes to the in-process
//! counters or over gRPC). After the decision it goes to [`Scratch::recycle`], which keeps
//! its emptied vectors and strings for building the next one. Nothing here knows what a
//! batch means: that is the modules' business ([`crate::modules`]).

use crate::compile::SourceMemo;
use crate::modules::OpTag;
use crate::state::{CounterBatch, CounterOp, CounterReply, EomResult, OpKind};

/// Spare ops vectors kept (one per all-or-nothing group; more than one only with monitor
/// mode policies).
const MAX_SPARE_GROUPS: usize = 8;
/// Spare strings kept (counter keys, labels, the instance).
const MAX_SPARE_STRINGS: usize = 32;
/// END-OF-MESSAGE results kept (their key and label strings).
const MAX_SPARE_EOM: usize = 8;
/// Strings grown past this (a huge address) are not kept.
const MAX_KEPT_STRING: usize = 512;
/// Room reserved for the ops of one group (no regrowth for typical policy sets).
pub(crate) const OPS_CAPACITY: usize = 16;

/// Reusable buffers for [`crate::Engine::decide_reusing`]; one per connection.
#[derive(Debug, Default)]
pub struct Scratch {
    groups: Vec<Vec<CounterOp>>,
    outer: Option<Vec<Vec<CounterOp>>>,
    strings: Vec<String>,
    /// The tags of a batch's ops (emptied).
    tags: Vec<OpTag>,
    /// The last reply, its vectors reused by backends that answer in place.
    reply: Option<CounterReply>,
    /// The last END-OF-MESSAGE results, their strings reused by the in-process state.
    eom: Vec<EomResult>,
    /// Policy members' source results for the last request's source side.
    pub(crate) memo: SourceMemo,
    /// The policies [`crate::Engine::lookups_reusing`] matched, for the decision of the
    /// same request (taken by it).
    pub(crate) carried: Carried,
    connection: u64,
    /// Whether decisions also list the quotas that admitted the request.
    report_admitted: bool,
    /// The message a DELAY quota is holding on this connection, until its END-OF-MESSAGE.
    pub(crate) hold: crate::hold::HoldMemo,
}

/// Matched policies carried from the lookups step to the decision of one request.
#[derive(Debug, Default)]
pub(crate) struct Carried {
    /// The policy set they index ([`crate::compile::PolicySet`]'s memo id; 0: nothing
    /// carried).
    pub(crate) set: u64,
    /// The matched policies' indexes, in order.
    pub(crate) policies: Vec<u32>,
}

/// The last connection id handed out by [`Scratch::for_connection`].
static LAST_CONNECTION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

impl Scratch {
    /// The scratch of a new client connection, with an id unique in this process that
    /// travels with its batches ([`crate::State::apply_on`]): a counter backend may keep
    /// per-connection state (cluster mode's edge-held message sessions).
    pub fn for_connection() -> Self {
        Scratch {
            connection: LAST_CONNECTION.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1,
            ..Scratch::default()
        }
    }

    /// Also lists the quotas that admit a request, with their levels, in
    /// [`crate::Decision::admitted`] (for Policyd-style `mode=update` log lines). Off by
    /// default: it costs a little on every request.
    pub fn report_admitted(mut self, on: bool) -> Self {
        self.report_admitted = on;
        self
    }

    /// Whether [`Scratch::report_admitted`] is on.
    pub(crate) fn reports_admitted(&self) -> bool {
        self.report_admitted
    }

    /// The connection id (0: not a connection's scratch).
    pub fn connection(&self) -> u64 {
        self.connection
    }

    /// An empty string, with the capacity of an earlier one when there is one.
    pub(crate) fn string(&mut self) -> String {
        self.strings.pop().unwrap_or_default()
    }

    /// A copy of `s` in a reused string.
    pub(crate) fn copy(&mut self, s: &str) -> String {
        let mut out = self.string();
        out.push_str(s);
        out
    }

    /// An empty ops vector for one group.
    pub(crate) fn ops(&mut self) -> Vec<CounterOp> {
        self.groups
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(OPS_CAPACITY))
    }

    /// An empty list of groups.
    pub(crate) fn groups(&mut self) -> Vec<Vec<CounterOp>> {
        self.outer.take().unwrap_or_default()
    }

    /// An empty list of op tags.
    pub(crate) fn take_tags(&mut self) -> Vec<OpTag> {
        std::mem::take(&mut self.tags)
    }

    /// Takes back a list of op tags (emptied; kept unless it grew large).
    pub(crate) fn keep_tags(&mut self, mut tags: Vec<OpTag>) {
        if tags.capacity() <= 4 * OPS_CAPACITY {
            tags.clear();
            self.tags = tags;
        }
    }

    /// A reply to fill (the previous one's buffers when there is one; its content is stale).
    pub(crate) fn reply(&mut self) -> CounterReply {
        self.reply.take().unwrap_or_default()
    }

    /// A reply to fill for END-OF-MESSAGE: no groups (the RCPT reply's result vectors stay
    /// kept for the next RCPT), the previous END-OF-MESSAGE results (stale; a backend may
    /// reuse their strings). Give it back with [`Scratch::keep_eom_reply`].
    pub(crate) fn eom_reply(&mut self) -> CounterReply {
        CounterReply {
            groups: Vec::new(),
            end_of_message: std::mem::take(&mut self.eom),
            details: Vec::new(),
        }
    }

    /// Takes back an END-OF-MESSAGE reply's results (kept unless they grew large).
    pub(crate) fn keep_eom_reply(&mut self, reply: CounterReply) {
        let eom = reply.end_of_message;
        if !eom.is_empty()
            && eom.len() <= MAX_SPARE_EOM
            && eom.iter().all(|r| {
                r.key.capacity() <= MAX_KEPT_STRING && r.label.capacity() <= MAX_KEPT_STRING
            })
        {
            self.eom = eom;
        }
    }

    /// Takes back a reply that is no longer needed (kept unless it grew large).
    pub(crate) fn keep_reply(&mut self, mut reply: CounterReply) {
        // END-OF-MESSAGE results own strings: only an END-OF-MESSAGE reply's are kept.
        reply.end_of_message = Vec::new();
        if reply.groups.len() <= MAX_SPARE_GROUPS
            && reply
                .groups
                .iter()
                .all(|g| g.capacity() <= 4 * OPS_CAPACITY)
        {
            self.reply = Some(reply);
        }
    }

    /// Takes back the buffers of a batch that is no longer needed.
    pub(crate) fn recycle(&mut self, batch: CounterBatch) {
        let CounterBatch {
            instance,
            groups: mut outer,
            ..
        } = batch;
        self.keep(instance);
        // Popping (last first) is cheaper than draining; the order of spare strings does
        // not matter.
        while let Some(mut ops) = outer.pop() {
            while let Some(op) = ops.pop() {
                self.keep(op.key);
                if let OpKind::RecordForEom { label, .. } = op.kind {
                    self.keep(label);
                }
            }
            if self.groups.len() < MAX_SPARE_GROUPS && ops.capacity() <= 4 * OPS_CAPACITY {
                self.groups.push(ops);
            }
        }
        // (An END-OF-MESSAGE batch's empty list must not take the place of an RCPT's.)
        if self.outer.is_none() && outer.capacity() > 0 && outer.capacity() <= MAX_SPARE_GROUPS {
            self.outer = Some(outer);
        }
    }

    fn keep(&mut self, mut s: String) {
        if self.strings.len() < MAX_SPARE_STRINGS
            && s.capacity() > 0
            && s.capacity() <= MAX_KEPT_STRING
        {
            s.clear();
            self.strings.push(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::WindowSpec;

    fn op(key: &str, kind: OpKind) -> CounterOp {
        CounterOp {
            key: key.into(),
            limit: 10,
            window: WindowSpec::new(3_600_000, 60),
            kind,
        }
    }

    #[test]
    fn recycled_buffers_come_back_empty_and_keep_their_capacity() {
        let mut scratch = Scratch::default();
        let batch = CounterBatch {
            instance: "ABC123".into(),
            dry_run: false,
            groups: vec![vec![
                op("p/q/MessageCount/a@b", OpKind::Take { cost: 1 }),
                op(
                    "p/q/MessageCumulativeSize/b",
                    OpKind::RecordForEom {
                        label: "p\u{1f}q".into(),
                        group: 0,
                    },
                ),
            ]],
            end_of_message: None,
        };
        scratch.recycle(batch);
        // The instance, two keys and one label.
        assert_eq!(scratch.strings.len(), 4);
        let s = scratch.string();
        assert!(s.is_empty() && s.capacity() > 0);
        assert_eq!(scratch.copy("xyz"), "xyz");
        let ops = scratch.ops();
        assert!(ops.is_empty() && ops.capacity() >= 2);
        let groups = scratch.groups();
        assert!(groups.is_empty() && groups.capacity() >= 1);
        // Nothing left: fresh buffers from now on.
        assert!(scratch.groups().capacity() == 0);
    }

    #[test]
    fn an_end_of_message_reply_keeps_its_results_apart_from_the_rcpt_reply() {
        use crate::state::{OpResult, Outcome};
        let mut scratch = Scratch::default();
        let mut rcpt = scratch.reply();
        rcpt.groups = vec![Vec::with_capacity(4)];
        scratch.keep_reply(rcpt);
        let mut eom = scratch.eom_reply();
        assert!(eom.groups.is_empty() && eom.end_of_message.is_empty());
        eom.end_of_message.push(EomResult {
            label: "p\u{1f}q".into(),
            key: "p/q/MessageCumulativeSize/x".into(),
            limit: 1,
            result: OpResult {
                outcome: Outcome::Admitted,
                used: 1,
            },
        });
        scratch.keep_eom_reply(eom);
        // The RCPT reply's result vectors are still there for the next RCPT.
        let rcpt = scratch.reply();
        assert_eq!(rcpt.groups.len(), 1);
        assert!(rcpt.groups[0].capacity() >= 4 && rcpt.end_of_message.is_empty());
        scratch.keep_reply(rcpt);
        // The END-OF-MESSAGE results come back (stale) for the next END-OF-MESSAGE.
        let eom = scratch.eom_reply();
        assert_eq!(eom.end_of_message.len(), 1);
        assert!(eom.groups.is_empty());
        // Results grown large are not kept.
        let mut big = eom;
        big.end_of_message[0].key = "k".repeat(MAX_KEPT_STRING + 1);
        scratch.keep_eom_reply(big);
        assert!(scratch.eom_reply().end_of_message.is_empty());
    }

    #[test]
    fn keeps_a_bounded_number_of_small_strings() {
        let mut scratch = Scratch::default();
        for _ in 0..2 * MAX_SPARE_STRINGS {
            scratch.keep("key".to_string());
        }
        scratch.keep("x".repeat(MAX_KEPT_STRING + 1));
        assert_eq!(scratch.strings.len(), MAX_SPARE_STRINGS);
        assert!(scratch
            .strings
            .iter()
            .all(|s| s.capacity() <= MAX_KEPT_STRING));
    }
}
