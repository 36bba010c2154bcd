//! The module chain over one request: policy resolution, AccessControl, then Quotas (one
//! [`State`] call per request), verdict mapping, monitor mode, and explanations.
//!
//! As in Policyd, policies are resolved only at RCPT; END-OF-MESSAGE charges the real size to
//! the counters recorded for the message at RCPT; other protocol states get DUNNO.

use crate::compile::{Limit, LimitKind, Policy, PolicySet, Quota};
use crate::scratch::Scratch;
use crate::spec::{Side, SpecItem};
use crate::state::{CounterBatch, CounterOp, CounterReply, OpKind, OpResult, Outcome};
use crate::state::{State, StateError};
use crate::verdict::{with_retry_hint, Verdict};
use crate::view::RequestView;
use arc_swap::ArcSwap;
use sluice_protocol::{Action, PolicyRequest, ProtocolState};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Run every policy in monitor mode: evaluate and count, log the verdict, answer DUNNO.
    pub monitor_all: bool,
    /// Sub-buckets per quota period (default 60): the window's granularity.
    pub buckets_per_period: u32,
    /// The answer when the counter backend fails or times out.
    pub state_failure_action: Action,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            monitor_all: false,
            buckets_per_period: 60,
            state_failure_action: Action::DeferIfPermit(Some(
                "4.3.0 Policy service temporarily unavailable, try again later".into(),
            )),
        }
    }
}

/// The engine: a swappable compiled policy set, a counter backend, settings.
pub struct Engine {
    set: ArcSwap<PolicySet>,
    state: Arc<dyn State>,
    settings: EngineSettings,
}

/// The outcome of one request.
#[derive(Clone, PartialEq, Eq)]
pub struct Decision {
    /// What Postfix gets.
    pub action: Action,
    /// Every verdict a module gave (including monitor-mode ones not enforced), for logs.
    pub verdicts: Vec<ModuleVerdict>,
    /// Set when the counter backend failed and the fallback action was used.
    pub state_error: Option<StateError>,
    /// Quotas this request left at or above [`NEAR_LIMIT_PERCENT`] of their limit
    /// (admitted, but close to refusing), for metrics. Usually empty.
    pub near_limit: Vec<QuotaRef>,
    /// The quotas that admitted (and counted) this RCPT, with their levels (action
    /// `DUNNO`), in evaluation order. Filled only when the connection's [`Scratch`] asks
    /// ([`Scratch::report_admitted`]); usually empty.
    pub admitted: Vec<ModuleVerdict>,
    /// What greylisting did (a [`crate::GreyOutcome::label`], or `whitelisted`), for
    /// metrics; `None` when it did not run.
    pub greylisting: Option<&'static str>,
}

/// A level at or above this share of a limit counts as "near the limit".
pub const NEAR_LIMIT_PERCENT: u64 = 90;

/// Names a configured quota (bounded: for metric labels).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaRef {
    /// The policy.
    pub policy: Arc<str>,
    /// The quota.
    pub quota: Arc<str>,
}

/// A module's verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleVerdict {
    /// `AccessControl` or `Quotas`.
    pub module: &'static str,
    /// The policy it came from.
    pub policy: Arc<str>,
    /// The access control rule or quota name.
    pub name: Arc<str>,
    /// The action it gave.
    pub action: Action,
    /// True when the policy (or the service) runs in monitor mode: logged, not enforced.
    pub monitor: bool,
    /// For quotas: the counter, its level and its limit.
    pub counter: Option<CounterLevel>,
}

/// A counter's level, for logs and explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CounterLevel {
    /// The counter's identity, `policy/quota/LimitType/track key` ([`counter_key`]).
    pub key: String,
    /// The level in the window.
    pub used: u64,
    /// The limit.
    pub limit: u64,
}

/// What `sluice explain` prints: which policies matched and why, what each module decided,
/// counter levels, and the action Postfix would get. Nothing is charged.
#[derive(Debug, Clone, Default)]
pub struct Explanation {
    /// Human-readable lines.
    pub lines: Vec<String>,
    /// The action Postfix would get.
    pub action: Option<Action>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
    }
}

/// Which quota limit an op of a batch counts for, by position in the policy set (no
/// borrows: kept in the [`Scratch`], out of the request's future).
#[derive(Debug, Clone, Copy)]
pub(crate) struct OpRef {
    /// The op's group in the batch.
    group: u32,
    /// Index of the policy in the set.
    policy: u32,
    /// Index of the quota in the policy.
    quota: u32,
    /// Index of the limit in the quota.
    limit: u32,
}

/// The quota (and its policy's names) with LastQuota that ended the quotas, for the
/// explanation.
type LastQuota = Option<(Arc<str>, Arc<str>)>;

/// What an RCPT's counter batch was built from. A later RCPT with the same policy set and
/// matched policies (most RCPTs on a connection) needs a batch of the same shape: the kept
/// batch is brought up to date in place instead of being built again. Within a message
/// (the same source side, which the connection's source memo vouches for, instance and
/// size) only the keys that depend on the recipient are rendered again; otherwise every
/// key, the instance, the size checks' cost and the message counts' kind.
#[derive(Debug, Default)]
pub(crate) struct BatchOrigin {
    /// The policy set's memo id (0: none).
    set: u64,
    /// The matched policies' indices.
    matched: Vec<u32>,
    /// The declared size (the cost of size checks).
    size: u64,
    /// Whether a key of the batch depends on the recipient.
    per_recipient: bool,
    /// The source side changed since the batch was built (the source memo missed).
    source_changed: bool,
    /// Whether the request was authenticated (SASLUsername quotas count only then).
    authenticated: bool,
    /// The quota with LastQuota that ended the quotas.
    pub(crate) last_quota: LastQuota,
}

impl BatchOrigin {
    /// Whether `batch`, built from this origin, has the shape of the batch of a request
    /// matching `matched` in `set`: the same ops in the same groups, whatever their keys.
    fn same_shape(
        &self,
        set: &PolicySet,
        batch: &CounterBatch,
        dry_run: bool,
        matched: &[(usize, &Policy)],
        authenticated: bool,
    ) -> bool {
        self.set != 0
            && self.set == set.memo_id()
            && batch.dry_run == dry_run
            && self.authenticated == authenticated
            && self.matched.len() == matched.len()
            && self
                .matched
                .iter()
                .zip(matched)
                .all(|(&kept, &(now, _))| kept as usize == now)
    }

    /// Whether `batch`, built from this origin, is for `req`'s message: only its recipient
    /// may differ.
    fn same_message(&self, batch: &CounterBatch, req: &PolicyRequest<'_>) -> bool {
        !self.source_changed && self.size == req.size && *batch.instance == *req.instance
    }

    /// Notes what a batch was just built from.
    fn record(
        &mut self,
        set: &PolicySet,
        matched: &[(usize, &Policy)],
        size: u64,
        per_recipient: bool,
        last_quota: LastQuota,
        authenticated: bool,
    ) {
        self.set = set.memo_id();
        self.authenticated = authenticated;
        self.matched.clear();
        self.matched
            .extend(matched.iter().map(|&(pi, _)| pi as u32));
        self.size = size;
        self.per_recipient = per_recipient;
        self.source_changed = false;
        self.last_quota = last_quota;
    }

    /// Notes that the request's source side is not the one the batch was built for.
    fn note_source_change(&mut self) {
        self.source_changed = true;
    }

    /// Notes that the batch was brought up to date for a message of `size` bytes.
    fn note_new_message(&mut self, size: u64) {
        self.size = size;
        self.source_changed = false;
    }
}

/// An [`OpRef`] resolved against its policy set.
struct Counted<'a> {
    policy: &'a Policy,
    quota: &'a Quota,
    kind: LimitKind,
    /// The limit's key prefix length: the op's key after it is the track key.
    prefix_len: usize,
    monitor: bool,
}

/// Where explanation lines go (`None` on the hot path).
type Trace<'t> = Option<&'t mut Vec<String>>;

#[inline]
fn note(trace: &mut Trace<'_>, line: impl FnOnce() -> String) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(line());
    }
}

impl fmt::Debug for Decision {
    /// As derived, with `greylisting` shown only when greylisting ran (so recorded
    /// transcripts of decisions without greylisting read as before).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Decision");
        d.field("action", &self.action)
            .field("verdicts", &self.verdicts)
            .field("state_error", &self.state_error)
            .field("near_limit", &self.near_limit)
            .field("admitted", &self.admitted);
        if let Some(g) = self.greylisting {
            d.field("greylisting", &g);
        }
        d.finish()
    }
}

impl Decision {
    fn dunno() -> Self {
        Decision {
            action: Action::Dunno,
            verdicts: Vec::new(),
            state_error: None,
            near_limit: Vec::new(),
            admitted: Vec::new(),
            greylisting: None,
        }
    }
}

/// The identity of one counter: policy, quota, limit type and track key.
pub fn counter_key(policy: &str, quota: &str, kind: LimitKind, track_key: &str) -> String {
    fn push_escaped(out: &mut String, s: &str) {
        if s.contains(['/', '%']) {
            out.push_str(&s.replace('%', "%25").replace('/', "%2F"));
        } else {
            out.push_str(s);
        }
    }
    let kind = kind.as_str();
    let mut key =
        String::with_capacity(policy.len() + quota.len() + kind.len() + track_key.len() + 3);
    push_escaped(&mut key, policy);
    key.push('/');
    push_escaped(&mut key, quota);
    key.push('/');
    key.push_str(kind);
    key.push('/');
    key.push_str(track_key);
    key
}

/// The END-OF-MESSAGE label of a quota (policy and quota names).
pub(crate) fn quota_label(policy: &str, quota: &str) -> String {
    format!("{policy}\u{1f}{quota}")
}

impl Engine {
    /// An engine over `set`, counting in `state`.
    pub fn new(mut set: PolicySet, state: Arc<dyn State>, settings: EngineSettings) -> Self {
        set.prepare_for_engine(settings.buckets_per_period);
        Engine {
            set: ArcSwap::from_pointee(set),
            state,
            settings,
        }
    }

    /// Swaps in a new policy set; requests in flight finish on the old one.
    pub fn replace_policies(&self, mut set: PolicySet) {
        set.prepare_for_engine(self.settings.buckets_per_period);
        self.set.store(Arc::new(set));
    }

    /// The current policy set.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.set.load_full()
    }

    /// The client connection that used `scratch` closed (see [`State::connection_closed`]).
    pub fn connection_closed(&self, scratch: &Scratch) {
        if scratch.connection() != 0 {
            self.state.connection_closed(scratch.connection());
        }
    }

    /// The settings.
    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Decides one request.
    pub async fn decide(&self, req: &PolicyRequest<'_>) -> Decision {
        self.decide_reusing(req, &mut Scratch::default()).await
    }

    /// Decides one request, reusing `scratch`'s buffers (keep one per connection: a warm
    /// scratch spares the allocations of the request's counter batch).
    pub async fn decide_reusing(&self, req: &PolicyRequest<'_>, scratch: &mut Scratch) -> Decision {
        // A guard, not a clone: no reference-count traffic shared between threads.
        let set = self.set.load();
        self.evaluate(&set, req, false, None, scratch).await
    }

    /// Explains one request without charging anything.
    pub async fn explain(&self, req: &PolicyRequest<'_>) -> Explanation {
        let set = self.set.load_full();
        let mut lines = Vec::new();
        lines.push(format!(
            "Request: {} from=<{}> to=<{}> client={} ({}) sasl={} size={} instance={}",
            req.protocol_state,
            req.sender,
            req.recipient,
            req.client_address,
            if req.reverse_client_name.is_empty() {
                "no reverse name"
            } else {
                &req.reverse_client_name
            },
            if req.sasl_username.is_empty() {
                "-"
            } else {
                &req.sasl_username
            },
            req.size,
            if req.instance.is_empty() {
                "-"
            } else {
                &req.instance
            },
        ));
        if self.settings.monitor_all {
            lines.push(
                "Service runs in monitor mode: verdicts are logged, Postfix gets DUNNO.".into(),
            );
        }
        let decision = self
            .evaluate(&set, req, true, Some(&mut lines), &mut Scratch::default())
            .await;
        lines.push(format!("Action: action={}", decision.action));
        Explanation {
            lines,
            action: Some(decision.action),
        }
    }

    async fn evaluate(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        match req.protocol_state {
            ProtocolState::Rcpt => self.rcpt(set, req, dry_run, trace, scratch).await,
            ProtocolState::EndOfMessage => {
                self.end_of_message(set, req, dry_run, trace, scratch).await
            }
            other => {
                note(&mut trace, || {
                    format!("Policies are resolved at RCPT (and END-OF-MESSAGE for sizes); nothing to do at {other}.")
                });
                Decision::dunno()
            }
        }
    }

    /// The outcome of a counter call: true when it succeeded; on a backend failure sets the
    /// fallback action in `decision`. (The call itself is made inline by the caller: no
    /// nested future when the backend answers in place.)
    #[inline]
    fn settle(
        &self,
        result: Result<(), StateError>,
        decision: &mut Decision,
        trace: &mut Trace<'_>,
        what: &str,
    ) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                note(trace, || {
                    format!("{what}: counter backend failed ({e}): fallback action.")
                });
                decision.action = self.settings.state_failure_action.clone();
                decision.state_error = Some(e);
                false
            }
        }
    }

    /// Runs greylisting's plan: true when its verdict is final (the chain stops).
    async fn greylist(
        &self,
        plan: crate::greylisting::Plan,
        decision: &mut Decision,
        trace: &mut Trace<'_>,
    ) -> bool {
        use crate::greylisting::{self as grey, Plan};
        let run = match plan {
            Plan::Whitelisted(entry) => {
                note(trace, || {
                    format!("Greylisting: whitelisted by {entry:?}: pass.")
                });
                decision.greylisting = Some("whitelisted");
                return false;
            }
            Plan::Run(run) => run,
        };
        let reply = match self.state.greylist(&run.op).await {
            Ok(reply) => reply,
            Err(e) => {
                self.settle(Err(e), decision, trace, "Greylisting");
                return true;
            }
        };
        note(trace, || "Greylisting:".into());
        note(trace, || grey::explain(&run, &reply));
        decision.greylisting = Some(reply.outcome.label());
        let Some(verdict) = grey::verdict(&run, &reply) else {
            return false;
        };
        let enforce = !verdict.monitor;
        let action = verdict.action.clone();
        decision.verdicts.push(verdict);
        if enforce {
            decision.action = action;
            note(trace, || "  final verdict: the chain stops here.".into());
        }
        enforce
    }

    fn is_monitor(&self, p: &Policy) -> bool {
        self.settings.monitor_all || p.monitor
    }

    fn counted<'a>(&self, set: &'a PolicySet, r: OpRef) -> Counted<'a> {
        let policy = &set.policies[r.policy as usize];
        let quota = &policy.quotas[r.quota as usize];
        let limit = &quota.limits[r.limit as usize];
        Counted {
            policy,
            quota,
            kind: limit.kind,
            prefix_len: limit.key_head.len() - quota.track.label().len(),
            monitor: self.is_monitor(policy),
        }
    }

    async fn rcpt(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        let mut decision = Decision::dunno();
        // Everything but the counter call is synchronous: only the batch, the reply and the
        // decision live in the future across the call.
        let mut grey = None;
        let batch = self.rcpt_batch(
            set,
            req,
            dry_run,
            &mut trace,
            scratch,
            &mut decision,
            &mut grey,
        );
        if let Some(plan) = grey {
            if self.greylist(plan, &mut decision, &mut trace).await {
                if let Some(batch) = batch {
                    scratch.recycle(batch);
                }
                return decision;
            }
        }
        let Some(batch) = batch else {
            return decision;
        };
        // Into the connection's reused reply when the backend answers in place.
        let mut reply = scratch.reply();
        let result = match self.state.apply_in_place_into(&batch, &mut reply) {
            Some(result) => result,
            None => (self.state.apply_on(scratch.connection(), &batch).await).map(|r| reply = r),
        };
        if self.settle(result, &mut decision, &mut trace, "Quotas") {
            note(&mut trace, || "Quotas:".into());
            if let Some((q, p)) = &scratch.origin.last_quota {
                note(&mut trace, || {
                    format!("  quota {q:?} of policy {p:?} is LastQuota: later quotas are skipped.")
                });
            }
            self.rcpt_verdicts(set, &batch, &reply, scratch, &mut decision, &mut trace);
        }
        scratch.keep_batch(batch);
        scratch.keep_reply(reply);
        decision
    }

    /// RCPT up to the counter call: policy resolution, AccessControl, then the quotas' batch
    /// (its ops' quotas in [`Scratch::refs`], what it was built from in [`Scratch::origin`];
    /// the batch kept from the last RCPT when it fits, see [`BatchOrigin`]). `None` when
    /// there is nothing to count: then `decision` is final.
    // `grey`: Greylisting's plan, made after AccessControl — the interim wiring until
    // Greylisting moves onto the module seam (issue 16), which removes this argument.
    #[allow(clippy::too_many_arguments)]
    fn rcpt_batch(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        dry_run: bool,
        trace: &mut Trace<'_>,
        scratch: &mut Scratch,
        decision: &mut Decision,
        grey: &mut Option<crate::greylisting::Plan>,
    ) -> Option<CounterBatch> {
        if trace.is_some() {
            explain_matching(set, req, trace);
        }
        // The addresses split once, for matching and for counter keys.
        let view = RequestView::new(req);
        // On the stack (no allocation per request) for up to 16 matched policies.
        let mut matched: SmallVec<[(usize, &Policy); 16]> = SmallVec::new();
        if !set.matching_into(&view, &mut scratch.memo, &mut matched) {
            // The kept batch may be another source side's.
            scratch.origin.note_source_change();
        }
        if matched.is_empty() {
            note(trace, || "No policy matched.".into());
            return None;
        }

        // AccessControl: the first matched policy with a rule decides.
        note(trace, || {
            if matched.iter().any(|(_, p)| !p.access_control.is_empty()) {
                "AccessControl:".into()
            } else {
                "AccessControl: no rule in the matched policies.".into()
            }
        });
        for (_, p) in &matched {
            let Some(rule) = p.access_control.first() else {
                continue;
            };
            let monitor = self.is_monitor(p);
            note(trace, || {
                format!(
                    "  policy {:?} rule {:?}: {} -> action={}{}",
                    p.name,
                    rule.name,
                    rule.verdict,
                    rule.verdict.to_action(rule.data.as_deref(), None),
                    if monitor {
                        " (monitor mode: logged only, next policy)"
                    } else {
                        ""
                    }
                )
            });
            if rule.verdict == Verdict::Pass && !monitor {
                // PASS ends AccessControl, and gives no verdict (its action is only shown in
                // explanations: not built otherwise).
                break;
            }
            let action = rule.verdict.to_action(rule.data.as_deref(), None);
            decision.verdicts.push(ModuleVerdict {
                module: "AccessControl",
                policy: p.name.clone(),
                name: rule.name.clone(),
                action: action.clone(),
                monitor,
                counter: None,
            });
            if monitor {
                continue;
            }
            if action.is_final() {
                decision.action = action;
                note(trace, || "  final verdict: the chain stops here.".into());
                return None;
            }
            break;
        }

        // Greylisting: planned here, run by the caller before the quotas (greylisting.rs).
        *grey = crate::greylisting::plan(
            matched.iter().map(|&(_, p)| p),
            &set.grey_whitelist,
            req,
            dry_run,
            self.settings.monitor_all,
        );

        // Quotas: every quota of every matched policy, one State call.
        let authenticated = !req.sasl_username.is_empty();
        if let Some(mut batch) = scratch.take_batch() {
            if scratch
                .origin
                .same_shape(set, &batch, dry_run, &matched, authenticated)
            {
                if !scratch.origin.same_message(&batch, req) {
                    refresh_for_message(set, &view, &mut batch, scratch.op_refs());
                    scratch.origin.note_new_message(req.size);
                } else if scratch.origin.per_recipient {
                    rerender_recipient_keys(set, &view, &mut batch, scratch.op_refs());
                }
                return Some(batch);
            }
            scratch.recycle(batch);
        }
        let mut groups = scratch.groups();
        groups.push(scratch.ops());
        scratch.clear_refs();
        let mut last_quota = None;
        let mut per_recipient = false;
        'policies: for &(pi, p) in &matched {
            let monitor = self.is_monitor(p);
            let g = if monitor {
                groups.push(scratch.ops());
                groups.len() - 1
            } else {
                0
            };
            for (qi, q) in p.quotas.iter().enumerate() {
                if let Some(why) = q.track.skip_reason(req) {
                    note(trace, || {
                        format!(
                            "Quotas: policy {:?} quota {:?} skipped: {why} (its LastQuota, if set, does not apply either).",
                            p.name, q.name
                        )
                    });
                    continue;
                }
                let window = q.window(self.settings.buckets_per_period);
                per_recipient |= q.track.per_recipient();
                // The first limit's key is rendered from the request; the others reuse its
                // track value.
                let mut first_key: Option<(usize, usize)> = None;
                for (li, l) in q.limits.iter().enumerate() {
                    let mut key = scratch.copy(&l.key_head);
                    match first_key {
                        None => q.track.write_value(&view, &mut key),
                        Some((first, head_len)) => {
                            key.push_str(&groups[g][first].key[head_len..]);
                        }
                    }
                    let r = OpRef {
                        group: g as u32,
                        policy: pi as u32,
                        quota: qi as u32,
                        limit: li as u32,
                    };
                    let first_op = groups[g].len();
                    let ops = &mut groups[g];
                    match l.kind {
                        LimitKind::MessageCount => {
                            ops.push(CounterOp {
                                key,
                                limit: l.limit,
                                window,
                                kind: message_count_kind(req),
                            });
                            scratch.push_ref(r);
                        }
                        LimitKind::RecipientCount => {
                            ops.push(CounterOp {
                                key,
                                limit: l.limit,
                                window,
                                kind: OpKind::Take { cost: 1 },
                            });
                            scratch.push_ref(r);
                        }
                        LimitKind::MessageCumulativeSize => {
                            let check_key = scratch.copy(&key);
                            ops.push(CounterOp {
                                key: check_key,
                                limit: l.limit,
                                window,
                                kind: OpKind::Check {
                                    cost: size_check_cost(req),
                                },
                            });
                            let label = scratch.copy(&q.eom_label);
                            groups[g].push(CounterOp {
                                key,
                                limit: l.limit,
                                window,
                                kind: OpKind::RecordForEom {
                                    label,
                                    group: g as u32,
                                },
                            });
                            scratch.push_ref(r);
                            scratch.push_ref(r);
                        }
                    }
                    if first_key.is_none() {
                        first_key = Some((first_op, l.key_head.len()));
                    }
                }
                if q.last_quota {
                    last_quota = Some((q.name.clone(), p.name.clone()));
                    break 'policies;
                }
            }
        }
        let batch = CounterBatch {
            instance: scratch.copy(&req.instance),
            dry_run,
            groups,
            end_of_message: None,
        };
        if batch.groups.iter().all(Vec::is_empty) {
            note(trace, || "Quotas: none apply.".into());
            scratch.recycle(batch);
            return None;
        }
        scratch.origin.record(
            set,
            &matched,
            req.size,
            per_recipient,
            last_quota,
            authenticated,
        );
        Some(batch)
    }

    /// RCPT after the counter call: the quotas' verdicts and near-limit reports.
    fn rcpt_verdicts(
        &self,
        set: &PolicySet,
        batch: &CounterBatch,
        reply: &CounterReply,
        scratch: &Scratch,
        decision: &mut Decision,
        trace: &mut Trace<'_>,
    ) {
        for (g, (ops, results)) in batch.groups.iter().zip(&reply.groups).enumerate() {
            for (k, (op, res)) in ops.iter().zip(results).enumerate() {
                if matches!(op.kind, OpKind::RecordForEom { .. }) {
                    continue;
                }
                let is_refused = matches!(res.outcome, Outcome::Refused { .. });
                let is_near = res.outcome == Outcome::Admitted
                    && op.limit > 0
                    && res.used.saturating_mul(100) >= op.limit.saturating_mul(NEAR_LIMIT_PERCENT)
                    && !matches!(op.kind, OpKind::Check { .. });
                let report = scratch.reports_admitted()
                    && res.outcome == Outcome::Admitted
                    && !matches!(op.kind, OpKind::Check { .. });
                if trace.is_none() && !is_refused && !is_near && !report {
                    // The usual case: nothing to report, no need to know the op's quota.
                    continue;
                }
                // A group's refs are in the order of its ops.
                let Some(&r) = scratch
                    .op_refs()
                    .iter()
                    .filter(|r| r.group as usize == g)
                    .nth(k)
                else {
                    continue;
                };
                let c = self.counted(set, r);
                note(trace, || {
                    let mut line = describe_op(op, res, &c);
                    if let Some(units) = self.state.leased_unused(&op.key) {
                        line.push_str(&format!(
                            " (the level includes {units} units charged ahead as this edge's lease and not used yet: {} used)",
                            res.used.saturating_sub(units)
                        ));
                    }
                    line
                });
                if is_near {
                    decision.near_limit.push(QuotaRef {
                        policy: c.policy.name.clone(),
                        quota: c.quota.name.clone(),
                    });
                }
                if report {
                    decision.admitted.push(ModuleVerdict {
                        module: "Quotas",
                        policy: c.policy.name.clone(),
                        name: c.quota.name.clone(),
                        action: Action::Dunno,
                        monitor: c.monitor,
                        counter: Some(CounterLevel {
                            key: op.key.clone(),
                            used: res.used,
                            limit: op.limit,
                        }),
                    });
                }
                if let Outcome::Refused { retry_after_ms } = res.outcome {
                    let action = quota_action(c.quota, c.kind, retry_after_ms);
                    decision.verdicts.push(ModuleVerdict {
                        module: "Quotas",
                        policy: c.policy.name.clone(),
                        name: c.quota.name.clone(),
                        action: action.clone(),
                        monitor: c.monitor,
                        counter: Some(CounterLevel {
                            key: op.key.clone(),
                            used: res.used,
                            limit: op.limit,
                        }),
                    });
                    if !c.monitor && decision.action == Action::Dunno {
                        decision.action = action;
                    }
                }
            }
        }
    }

    async fn end_of_message(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        if req.instance.is_empty() || set.policies.iter().all(|p| p.quotas.is_empty()) {
            note(&mut trace, || {
                "END-OF-MESSAGE: no instance or no quotas: nothing to charge.".into()
            });
            return Decision::dunno();
        }
        let batch = CounterBatch {
            instance: scratch.copy(&req.instance),
            dry_run,
            groups: Vec::new(),
            end_of_message: Some(crate::bounds::charged_size(req.size)),
        };
        let mut decision = Decision::dunno();
        let mut reply = scratch.eom_reply();
        let result = match self.state.apply_in_place_into(&batch, &mut reply) {
            Some(result) => result,
            None => (self.state.apply_on(scratch.connection(), &batch).await).map(|r| reply = r),
        };
        let ok = self.settle(result, &mut decision, &mut trace, "END-OF-MESSAGE");
        scratch.recycle(batch);
        if !ok {
            scratch.keep_eom_reply(reply);
            return decision;
        }
        note(&mut trace, || {
            format!(
                "END-OF-MESSAGE: charging {} bytes to the size quotas recorded at RCPT:",
                req.size
            )
        });
        if reply.end_of_message.is_empty() {
            note(&mut trace, || "  none recorded for this instance.".into());
        }
        for eom in &reply.end_of_message {
            note(&mut trace, || {
                format!(
                    "  {} {}/{}: {:?}",
                    eom.key, eom.result.used, eom.limit, eom.result.outcome
                )
            });
            let Outcome::Refused { retry_after_ms } = eom.result.outcome else {
                continue;
            };
            let Some((policy_name, quota_name)) = eom.label.split_once('\u{1f}') else {
                continue;
            };
            // The quota may have been removed since RCPT: then there is no verdict to give.
            let Some((p, q)) = set.find_quota(policy_name, quota_name) else {
                continue;
            };
            let action = quota_action(q, LimitKind::MessageCumulativeSize, retry_after_ms);
            let monitor = self.is_monitor(p);
            decision.verdicts.push(ModuleVerdict {
                module: "Quotas",
                policy: p.name.clone(),
                name: q.name.clone(),
                action: action.clone(),
                monitor,
                counter: Some(CounterLevel {
                    key: eom.key.clone(),
                    used: eom.result.used,
                    limit: eom.limit,
                }),
            });
            if !monitor && decision.action == Action::Dunno {
                decision.action = action;
            }
        }
        scratch.keep_eom_reply(reply);
        decision
    }
}

/// What a message count does: once per message when the request names its message.
fn message_count_kind(req: &PolicyRequest<'_>) -> OpKind {
    if req.instance.is_empty() {
        OpKind::Take { cost: 1 }
    } else {
        OpKind::TakeOncePerMessage
    }
}

/// What a size check tests: the declared size (1 byte when none is declared), capped above
/// every allowed limit ([`crate::bounds::charged_size`]).
fn size_check_cost(req: &PolicyRequest<'_>) -> u64 {
    crate::bounds::charged_size(req.size).max(1)
}

/// Renders again, in place, the keys of `batch` that depend on the recipient (`refs`: its
/// ops' refs, as [`Scratch::op_refs`] holds them).
fn rerender_recipient_keys(
    set: &PolicySet,
    view: &RequestView<'_, '_>,
    batch: &mut CounterBatch,
    refs: &[OpRef],
) {
    for_each_op(set, batch, refs, |quota, limit, op| {
        if quota.track.per_recipient() {
            rerender_key(quota, limit, view, op);
        }
    });
}

/// Brings `batch` (of the shape `view`'s request needs) up to date for another message:
/// every key, the instance, the size checks' cost and the message counts' kind, as
/// building it for `view`'s request would have made them (`refs`: its ops' refs).
fn refresh_for_message(
    set: &PolicySet,
    view: &RequestView<'_, '_>,
    batch: &mut CounterBatch,
    refs: &[OpRef],
) {
    let req = view.req;
    batch.instance.clear();
    batch.instance.push_str(&req.instance);
    for_each_op(set, batch, refs, |quota, limit, op| {
        rerender_key(quota, limit, view, op);
        match (limit.kind, &mut op.kind) {
            (LimitKind::MessageCount, kind) => *kind = message_count_kind(req),
            (_, OpKind::Check { cost }) => *cost = size_check_cost(req),
            _ => {}
        }
    });
}

/// `op`'s key rendered again for `view`'s request (its head stays).
fn rerender_key(quota: &Quota, limit: &Limit, view: &RequestView<'_, '_>, op: &mut CounterOp) {
    op.key.truncate(limit.key_head.len());
    quota.track.write_value(view, &mut op.key);
}

/// Calls `f` with every op of `batch` and its quota and limit (`refs`: its ops' refs).
fn for_each_op(
    set: &PolicySet,
    batch: &mut CounterBatch,
    refs: &[OpRef],
    mut f: impl FnMut(&Quota, &Limit, &mut CounterOp),
) {
    // A group's refs are in the order of its ops.
    let mut next: SmallVec<[usize; 8]> = SmallVec::from_elem(0, batch.groups.len());
    for r in refs {
        let g = r.group as usize;
        let k = next[g];
        next[g] += 1;
        let quota = &set.policies[r.policy as usize].quotas[r.quota as usize];
        f(
            quota,
            &quota.limits[r.limit as usize],
            &mut batch.groups[g][k],
        );
    }
}

/// The action a refused quota gives: its verdict and data (or the default text), with a
/// retry hint on DEFER.
fn quota_action(q: &Quota, kind: LimitKind, retry_after_ms: Option<u64>) -> Action {
    let action = q
        .verdict
        .to_action(q.data.as_deref(), Some(kind.default_text()));
    with_retry_hint(action, retry_after_ms)
}

fn describe_op(op: &CounterOp, res: &OpResult, r: &Counted<'_>) -> String {
    let what = match (&op.kind, r.kind) {
        (OpKind::Check { cost: 1 }, _) => "no declared size (checked as 1 byte)".into(),
        (OpKind::Check { cost }, _) => format!("declared size {cost} bytes"),
        (OpKind::TakeOncePerMessage, _) => "1 message".into(),
        (_, LimitKind::RecipientCount) => "1 recipient".into(),
        (OpKind::Take { cost }, _) => format!("cost {cost}"),
        (OpKind::RecordForEom { .. }, _) => "recorded for END-OF-MESSAGE".into(),
    };
    let outcome = match res.outcome {
        Outcome::Admitted => "fits".to_string(),
        Outcome::AlreadyCounted => "already counted for this message".to_string(),
        Outcome::Refused {
            retry_after_ms: Some(ms),
        } => {
            format!(
                "REFUSED ({}) -> action={}",
                crate::verdict::retry_hint(ms),
                quota_action(r.quota, r.kind, Some(ms))
            )
        }
        Outcome::Refused {
            retry_after_ms: None,
        } => {
            format!(
                "REFUSED (can never fit) -> action={}",
                quota_action(r.quota, r.kind, None)
            )
        }
        Outcome::NotEvaluated => "not evaluated (an earlier limit refused)".to_string(),
    };
    format!(
        "  policy {:?} quota {:?} {} [{}]: {}, level {}/{} per {}s{}: {}",
        r.policy.name,
        r.quota.name,
        r.kind.as_str(),
        op.key.get(r.prefix_len..).unwrap_or(""),
        what,
        res.used,
        op.limit,
        r.quota.period_ms / 1000,
        if r.monitor { " (monitor mode)" } else { "" },
        outcome
    )
}

/// Explanation lines: every policy, whether it matched, and why.
fn explain_matching(set: &PolicySet, req: &PolicyRequest<'_>, trace: &mut Trace<'_>) {
    let view = RequestView::new(req);
    if set.policies.is_empty() {
        note(trace, || {
            "Policies: none in the policy set (sluice policy import FILE adds some).".into()
        });
        return;
    }
    note(trace, || {
        "Policies (lowest priority number first; every matching policy applies):".into()
    });
    for p in &set.policies {
        if p.disabled {
            note(trace, || {
                format!("  [disabled] {:>4} {:?}", p.priority, p.name)
            });
            continue;
        }
        let mut why = Vec::new();
        let mut matched = false;
        for (i, m) in p.members.iter().enumerate() {
            let src = first_failure(set, &m.source, &view, Side::Source);
            let dst = first_failure(set, &m.destination, &view, Side::Destination);
            let ok = src.is_none() && dst.is_none();
            matched |= ok;
            why.push(match (src, dst) {
                (None, None) => format!(
                    "member {}: source {:?} and destination {:?} match",
                    i + 1,
                    m.source_text,
                    m.destination_text
                ),
                (Some(item), _) => {
                    format!("member {}: source item {:?} does not match", i + 1, item)
                }
                (None, Some(item)) => format!(
                    "member {}: destination item {:?} does not match",
                    i + 1,
                    item
                ),
            });
        }
        if p.members.is_empty() {
            why.push("no enabled member".into());
        }
        let tag = if matched { "[match]   " } else { "[no match]" };
        let mode = if p.monitor { " (monitor)" } else { "" };
        note(trace, || {
            format!(
                "  {tag} {:>4} {:?}{mode}: {}",
                p.priority,
                p.name,
                why.join("; ")
            )
        });
    }
}

fn first_failure<'a>(
    set: &PolicySet,
    items: &'a [SpecItem],
    view: &RequestView<'_, '_>,
    side: Side,
) -> Option<&'a str> {
    items
        .iter()
        .find(|i| !set.item_matches(i, view, side))
        .map(|i| i.text.as_str())
}
