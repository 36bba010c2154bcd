//! Policy modules: the engine's unit of change.
//!
//! A module is one file (or folder) here holding
//! - its **compiled settings**, one per policy (a field of [`crate::compile::Policy`],
//!   filled by `compile.rs` from the policy model; e.g. [`access_control`]'s rules,
//!   [`quotas`]' quotas);
//! - its **lookups** ([`Module::lookups`]): the external answers it needs (DNS, for
//!   CheckHelo and CheckSPF), declared as data ([`Lookup`]); the engine does no I/O;
//! - its **planning step** ([`Module::plan`]): a verdict that needs no counter state
//!   (AccessControl), or the state operations it needs, pushed into the request's one batch
//!   ([`Plan::push`]);
//! - its **judging step** ([`Module::judge`]): its verdicts from its ops' results;
//! - its **explain text**: the lines both steps write with [`Plan::note`] /
//!   [`Judge::note`] (only built for `sluice explain`).
//!
//! # How a request runs
//!
//! At RCPT the engine resolves the matching policies once, then:
//! 1. *Lookups* (optional, by the caller): [`crate::Engine::lookups`] lists what the
//!    chain's modules need for the request; the caller (the edge) answers them under the
//!    request's deadline, from its cache when it can, and passes the [`LookupAnswers`] to
//!    [`crate::Engine::decide_with`]. A lookup left unanswered reads as
//!    [`LookupAnswer::Unanswered`]: modules must treat it like a temporary failure.
//! 2. *Planning*, module by module in [`CHAIN`] order. A module that gives a final verdict
//!    (REJECT, DEFER, OK, ...) returns [`Flow::Stop`]: the later modules do not plan and,
//!    when no op was planned, no counter call is made.
//! 3. *One counter call* ([`crate::State::apply`]) with every module's ops.
//! 4. *Judging*, module by module in [`CHAIN`] order, until one returns [`Flow::Stop`].
//!
//! # Ops that gate later modules
//!
//! A batch's groups are all-or-nothing: at the first refused op of a group the group's
//! earlier charges are given back and its later ops are not evaluated. The ops of one
//! policy go to one group ([`Plan::group_of`]: every enforced policy shares group 0, a
//! monitor-mode policy has its own), and modules push in chain order, so an op of an
//! earlier module comes before the ops of later modules in its group. An op whose refusal is
//! a final verdict (a Greylisting triplet not yet allowed) therefore keeps the later
//! modules (Quotas) from charging anything, within the same single call. Its judging step
//! turns the refusal into the verdict and returns [`Flow::Stop`].
//!
//! # Adding a module
//!
//! See `docs/modules.md`: a file or folder here with a type implementing [`Module`], its
//! settings as a field of [`crate::compile::Policy`], one line in [`CHAIN`], and (when it
//! counts) its op kinds in [`crate::state::OpKind`] with both backends.

pub(crate) mod access_control;
pub(crate) mod accounting;
pub(crate) mod checkhelo;
pub(crate) mod checkspf;
pub(crate) mod greylisting;
pub(crate) mod lookup;
pub(crate) mod message_caps;
pub(crate) mod quotas;

pub use lookup::{Lookup, LookupAnswer, LookupAnswers, SpfAnswer, SpfResult};

use crate::compile::{Policy, PolicySet};
use crate::engine::{Decision, EngineSettings};
use crate::scratch::Scratch;
use crate::state::{CounterBatch, CounterOp, CounterReply, OpResult};
use crate::view::RequestView;
use sluice_protocol::PolicyRequest;
use smallvec::SmallVec;

/// The chain, in Policyd's order: the one place that lists the modules. A module's index
/// here is its [`ModuleId`].
///
/// Policyd's order is AccessControl, CheckHelo, CheckSPF, Greylisting, Quotas, Accounting;
/// a new module takes its place in it.
pub(crate) static CHAIN: &[&dyn Module] = &[
    &access_control::AccessControl,
    &message_caps::SizeCap,
    &checkhelo::CheckHelo,
    &checkspf::CheckSpf,
    &greylisting::Greylisting,
    &message_caps::RecipientCap,
    &quotas::Quotas,
    &accounting::Accounting,
];

/// A module's position in [`CHAIN`] (tags its ops).
pub(crate) type ModuleId = u8;

/// Whether the chain goes on after a module's step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// DUNNO, PREPEND or nothing to say: the next module runs.
    Continue,
    /// A final verdict was given (in [`Decision::action`]): the chain stops here.
    Stop,
}

/// A policy module. Implementations are unit structs listed in [`CHAIN`]; their settings
/// live in the policies ([`crate::compile::Policy`]), their per-request data in the batch's
/// ops and [`OpTag`]s.
pub(crate) trait Module: Sync {
    /// The module's name, as logs and explanations show it (`"AccessControl"`).
    fn name(&self) -> &'static str;

    /// The external answers the module needs for `cx`'s request, pushed into `out`
    /// (deduplicated by the engine). Called only when a caller asks
    /// ([`crate::Engine::lookups`]); must not depend on counter state. Default: none.
    /// `req` is `cx.req` for as long as the questions live: they borrow its names (no
    /// copies).
    fn lookups<'q>(
        &self,
        cx: &Request<'_, '_>,
        req: &'q PolicyRequest<'_>,
        out: &mut Vec<Lookup<'q>>,
    ) {
        let _ = (cx, req, out);
    }

    /// Whether the module may ask lookups for a request matching `policy` (read once per
    /// policy set, when it is compiled: a set where no module may ask spares every request
    /// the lookups pass). Default: never.
    fn asks(&self, policy: &Policy) -> bool {
        let _ = policy;
        false
    }

    /// Planning: decide what needs no counter state, and push the ops that need it.
    /// A final verdict goes into [`Plan::decide`] and returns [`Flow::Stop`].
    fn plan(&self, cx: &mut Plan<'_, '_>) -> Flow;

    /// Judging: the module's verdicts from its ops' results ([`Judge::results`]). Called
    /// only when the counter call succeeded, and only if the module's planning ran.
    fn judge(&self, cx: &mut Judge<'_, '_>) -> Flow;
}

/// What every step of a request sees.
pub(crate) struct Request<'a, 'r> {
    /// The compiled policy set.
    pub set: &'a PolicySet,
    /// The request.
    pub req: &'a PolicyRequest<'r>,
    /// The request with its addresses split.
    pub view: &'a RequestView<'a, 'r>,
    /// The enabled policies the request matches, with their indices in the set, by
    /// priority.
    pub matched: &'a [(usize, &'a Policy)],
    /// Engine-wide settings (monitor mode for all, sub-buckets per period).
    pub settings: &'a EngineSettings,
    /// Answers to the chain's lookups (empty when none were asked).
    pub lookups: &'a LookupAnswers<'a>,
    /// `sluice explain`: nothing may be charged (the batch is a dry run).
    pub dry_run: bool,
    /// The engine's clock (Accounting's calendar periods).
    pub clock: &'a dyn crate::Clock,
    /// DELAY quotas' queues where held mail waits.
    pub waiting: &'a crate::hold::WaitingQueues,
}

impl Request<'_, '_> {
    /// Whether `p`'s verdicts are only logged (the policy or the whole service runs in
    /// monitor mode).
    pub fn is_monitor(&self, p: &Policy) -> bool {
        self.settings.monitor_all || p.monitor
    }
}

/// Identifies an op of the batch for the module that pushed it: what it counts for,
/// without borrows (kept in the connection's [`Scratch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpTag {
    /// The module that pushed the op.
    pub module: ModuleId,
    /// The op's group in the batch.
    pub group: u32,
    /// The op's index in its group.
    pub index: u32,
    /// The policy's index in the set.
    pub policy: u32,
    /// Module-defined (Quotas: the quota's index in the policy).
    pub item: u32,
    /// Module-defined (Quotas: the limit's index in the quota).
    pub sub: u32,
}

/// Sets `decision`'s action unless an earlier module gave a final one; a replaced PREPEND
/// or WARN is named in the explanation (only one action line reaches Postfix).
fn decide(decision: &mut Decision, trace: &mut Trace<'_>, action: sluice_protocol::Action) {
    if decision.action.is_final() {
        return;
    }
    if decision.action != sluice_protocol::Action::Dunno {
        let dropped = std::mem::replace(&mut decision.action, action);
        note(trace, || {
            format!("  (the earlier action={dropped} is dropped: one action line per request)")
        });
        return;
    }
    decision.action = action;
}

/// Where explanation lines go (`None` on the hot path).
pub(crate) type Trace<'t> = Option<&'t mut Vec<String>>;

/// Adds an explanation line (built only when explaining).
#[inline]
pub(crate) fn note(trace: &mut Trace<'_>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(line());
    }
}

/// A module's planning step: the request, the decision so far, and the batch being built.
pub(crate) struct Plan<'a, 'r> {
    /// The request and its matched policies.
    pub cx: &'a Request<'a, 'r>,
    pub(crate) decision: &'a mut Decision,
    pub(crate) trace: Trace<'a>,
    pub(crate) batch: &'a mut BatchPlan,
    pub(crate) scratch: &'a mut Scratch,
    pub(crate) module: ModuleId,
}

impl Plan<'_, '_> {
    /// Adds an explanation line.
    #[inline]
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        note(&mut self.trace, line)
    }

    /// Whether explanation lines are being collected (`sluice explain`).
    pub fn explaining(&self) -> bool {
        self.trace.is_some()
    }

    /// The decision so far: record verdicts in [`Decision::verdicts`]; set
    /// [`Decision::action`] with [`Plan::decide`].
    pub fn decision(&mut self) -> &mut Decision {
        self.decision
    }

    /// Makes `action` the request's answer (when no earlier module gave a final one: a
    /// later verdict replaces a PREPEND or WARN, as in Policyd — one action line).
    pub fn decide(&mut self, action: sluice_protocol::Action) {
        decide(self.decision, &mut self.trace, action)
    }

    /// The batch group for the ops of policy `policy` (its index in the set): 0 for
    /// enforced policies, a group of its own for a monitor-mode one (so a limit that is only
    /// watched never blocks an enforced one).
    pub fn group_of(&mut self, policy: usize, monitor: bool) -> u32 {
        if !monitor {
            return 0;
        }
        if let Some(&(_, g)) = self.batch.monitor.iter().find(|(p, _)| *p == policy) {
            return g;
        }
        let ops = self.scratch.ops();
        self.batch.groups.push(ops);
        let g = (self.batch.groups.len() - 1) as u32;
        self.batch.monitor.push((policy, g));
        g
    }

    /// A new group of its own, for ops whose refusal must not undo the request's other ops
    /// (a DELAY quota's: the message is accepted and held).
    pub fn own_group(&mut self) -> u32 {
        let ops = self.scratch.ops();
        self.batch.groups.push(ops);
        (self.batch.groups.len() - 1) as u32
    }

    /// Appends `op` to `group` (from [`Plan::group_of`]), tagged with `policy` (its index
    /// in the set) and the module's own `item` and `sub` (read back in
    /// [`Judge::results`]). Returns the op's index in its group.
    pub fn push(&mut self, group: u32, op: CounterOp, policy: usize, item: u32, sub: u32) -> u32 {
        let ops = &mut self.batch.groups[group as usize];
        let index = ops.len() as u32;
        ops.push(op);
        self.batch.tags.push(OpTag {
            module: self.module,
            group,
            index,
            policy: policy as u32,
            item,
            sub,
        });
        index
    }

    /// The op at `index` of `group`, already pushed (e.g. to copy its key's tail).
    pub fn op(&self, group: u32, index: u32) -> &CounterOp {
        &self.batch.groups[group as usize][index as usize]
    }

    /// A copy of `s` in a reused string (keys, labels: no allocation once warm).
    pub fn string(&mut self, s: &str) -> String {
        self.scratch.copy(s)
    }
}

/// The batch being built: its groups and one [`OpTag`] per op.
#[derive(Debug, Default)]
pub(crate) struct BatchPlan {
    pub groups: Vec<Vec<CounterOp>>,
    /// In push order.
    pub tags: Vec<OpTag>,
    /// Monitor-mode policies' groups: (policy index, group).
    monitor: SmallVec<[(usize, u32); 4]>,
}

impl BatchPlan {
    /// Starts a batch (group 0, for enforced policies, always exists).
    pub(crate) fn start(scratch: &mut Scratch) -> Self {
        let mut groups = scratch.groups();
        groups.push(scratch.ops());
        BatchPlan {
            groups,
            tags: scratch.take_tags(),
            monitor: SmallVec::new(),
        }
    }

    /// Whether any module pushed an op.
    pub(crate) fn is_empty(&self) -> bool {
        self.tags.is_empty()
    }

    /// The batch to send, and the tags (kept until judging).
    /// The tags come sorted by module, group and index (the order [`Judge::results`] reads
    /// them in): modules plan in chain order, so only a module that pushed into an earlier
    /// group after a later one (a monitor-mode policy's group) needs the sort.
    pub(crate) fn finish(self, instance: String, dry_run: bool) -> (CounterBatch, Vec<OpTag>) {
        let mut tags = self.tags;
        let order = |t: &OpTag| (t.module, t.group, t.index);
        if !tags.is_sorted_by_key(order) {
            tags.sort_unstable_by_key(order);
        }
        (
            CounterBatch {
                instance,
                dry_run,
                groups: self.groups,
                end_of_message: None,
            },
            tags,
        )
    }
}

/// A module's ops with their tags and results ([`Judge::results`]).
#[derive(Clone, Copy)]
pub(crate) struct Results<'a> {
    /// The module's tags, in the batch's order ([`BatchPlan::finish`] sorts them).
    tags: &'a [OpTag],
    batch: &'a CounterBatch,
    reply: &'a CounterReply,
}

impl<'a> Results<'a> {
    /// The ops with their tags and results, in the batch's order (group by group, each in
    /// push order).
    pub fn iter(&self) -> impl Iterator<Item = (OpTag, &'a CounterOp, &'a OpResult)> + 'a {
        let (batch, reply) = (self.batch, self.reply);
        self.tags.iter().filter_map(move |&t| {
            let op = batch.groups.get(t.group as usize)?.get(t.index as usize)?;
            let res = reply.groups.get(t.group as usize)?.get(t.index as usize)?;
            Some((t, op, res))
        })
    }

    /// The first op with its tag and result.
    pub fn first(&self) -> Option<(OpTag, &'a CounterOp, &'a OpResult)> {
        self.iter().next()
    }

    /// Whether the module has no op (with a result).
    pub fn is_empty(&self) -> bool {
        self.first().is_none()
    }
}

/// A module's judging step: its ops and their results.
pub(crate) struct Judge<'a, 'r> {
    /// The request and its matched policies.
    pub cx: &'a Request<'a, 'r>,
    pub(crate) decision: &'a mut Decision,
    pub(crate) trace: Trace<'a>,
    pub(crate) batch: &'a CounterBatch,
    pub(crate) reply: &'a CounterReply,
    pub(crate) tags: &'a [OpTag],
    pub(crate) module: ModuleId,
    pub(crate) report_admitted: bool,
    pub(crate) state: &'a dyn crate::State,
}

impl<'a> Judge<'a, '_> {
    /// Adds an explanation line.
    #[inline]
    pub fn note(&mut self, line: impl FnOnce() -> String) {
        note(&mut self.trace, line)
    }

    /// Whether explanation lines are being collected (`sluice explain`).
    pub fn explaining(&self) -> bool {
        self.trace.is_some()
    }

    /// The decision so far (verdicts, near-limit reports).
    pub fn decision(&mut self) -> &mut Decision {
        self.decision
    }

    /// Makes `action` the request's answer (when no earlier module gave a final one: a
    /// later verdict replaces a PREPEND or WARN, as in Policyd — one action line).
    pub fn decide(&mut self, action: sluice_protocol::Action) {
        decide(self.decision, &mut self.trace, action)
    }

    /// Whether decisions list what admitted the request too
    /// ([`crate::Scratch::report_admitted`]).
    pub fn reports_admitted(&self) -> bool {
        self.report_admitted
    }

    /// The counter backend (for explanations: [`crate::State::leased_unused`]).
    pub fn state(&self) -> &'a dyn crate::State {
        self.state
    }

    /// The detailed answer of a record op ([`crate::state::OpKind`]'s module ops), by its
    /// tag; `None` for counter ops.
    pub fn detail(&self, tag: OpTag) -> Option<&'a crate::state::DetailAnswer> {
        self.reply
            .details
            .iter()
            .find(|d| d.group == tag.group && d.index == tag.index)
            .map(|d| &d.answer)
    }

    /// This module's ops with their tags and results, in the batch's order (group by
    /// group, each in push order).
    pub fn results(&self) -> Results<'a> {
        // The tags are sorted by module first: this module's are one run of them.
        let from = self.tags.partition_point(|t| t.module < self.module);
        let to = from + self.tags[from..].partition_point(|t| t.module == self.module);
        Results {
            tags: &self.tags[from..to],
            batch: self.batch,
            reply: self.reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(module: ModuleId, group: u32, index: u32) -> OpTag {
        OpTag {
            module,
            group,
            index,
            policy: 0,
            item: 0,
            sub: 0,
        }
    }

    /// A module that pushed into a monitor-mode policy's group before the enforced one gets
    /// its tags back in batch order, and each module's tags are one run of them.
    #[test]
    fn finished_tags_are_sorted_by_module_group_and_index() {
        let plan = BatchPlan {
            groups: Vec::new(),
            tags: vec![
                tag(1, 0, 0),
                tag(3, 2, 0),
                tag(3, 0, 0),
                tag(3, 2, 1),
                tag(3, 0, 1),
                tag(4, 1, 0),
            ],
            monitor: SmallVec::new(),
        };
        let (_, tags) = plan.finish(String::new(), true);
        let order: Vec<_> = tags.iter().map(|t| (t.module, t.group, t.index)).collect();
        assert_eq!(
            order,
            [
                (1, 0, 0),
                (3, 0, 0),
                (3, 0, 1),
                (3, 2, 0),
                (3, 2, 1),
                (4, 1, 0)
            ]
        );
    }
}
