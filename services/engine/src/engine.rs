//! The module chain over one request: policy resolution, the modules of
//! [`crate::modules::CHAIN`] (one [`State`] call per request), monitor mode, and explanations.
//!
//! As in Policyd, policies are resolved only at RCPT; END-OF-MESSAGE charges the real size to
//! the counters recorded for the message at RCPT; other protocol states get DUNNO.

use crate::compile::PolicySet;
use crate::modules::{
    note, BatchPlan, Flow, Judge, Lookup, LookupAnswers, Plan, Request, Trace, CHAIN,
};
use crate::scratch::Scratch;
use crate::spec::{Side, SpecItem};
use crate::state::{CounterBatch, State, StateError};
use crate::view::RequestView;
use arc_swap::ArcSwap;
use sluice_protocol::{Action, PolicyRequest, ProtocolState};
use smallvec::SmallVec;
use std::fmt;
use std::sync::Arc;

pub use crate::modules::quotas::counter_key;
pub(crate) use crate::modules::quotas::quota_label;

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
    /// Wall-clock time for modules that need it (Accounting's calendar periods).
    clock: Arc<dyn crate::Clock>,
    /// DELAY quotas' queues where held mail waits (new mail waits behind it).
    waiting: Arc<crate::hold::WaitingQueues>,
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
    /// The SPF result CheckSPF judged (`pass`, `fail`, ...), for metrics; `None` when it
    /// did not run.
    pub spf: Option<&'static str>,
    /// What CheckHelo did (a [`crate::HeloOutcome::label`], or `whitelisted`, `invalid`,
    /// `unresolvable`, `dns_failure`, `blacklisted`, `misconfigured`), for metrics; `None`
    /// when it did not run.
    pub checkhelo: Option<&'static str>,
    /// What Accounting did (`counted`, `refused`, `monitored`), for metrics; `None` when
    /// it did not run.
    pub accounting: Option<&'static str>,
    /// What Accounting counted for this request (for the per-period totals of reports);
    /// usually empty.
    pub accounted: Vec<crate::accounting::Accounted>,
    /// RCPT: a DELAY quota had no room (the message is to be held); what the connection
    /// remembers until END-OF-MESSAGE ([`crate::hold::memo`]). Usually `None` (boxed, as
    /// [`Decision::hold`]: rare and large, so the decision every request returns stays small).
    pub delayed: Option<Box<crate::hold::Delayed>>,
    /// END-OF-MESSAGE of a message a DELAY quota holds: what the server records in its
    /// ledger before Postfix gets the answer ([`crate::hold`]). Usually `None`.
    pub hold: Option<Box<crate::hold::HoldRequest>>,
    /// A message held at RCPT on this connection never reached END-OF-MESSAGE here: Postfix
    /// holds it, the ledger does not know it (for a warning: is the policy service asked
    /// in `smtpd_end_of_data_restrictions`?).
    pub hold_lost: bool,
    /// Explaining only: the held-message queues of the DELAY quotas that counted the request
    /// ([`Explanation::delay_queues`]).
    pub delay_queues: Vec<String>,
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
    /// The queues of held messages of the DELAY quotas that counted the request
    /// (`policy/quota/track value`), for the server to add what they hold.
    pub delay_queues: Vec<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.lines {
            writeln!(f, "{l}")?;
        }
        Ok(())
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
        if let Some(s) = self.spf {
            d.field("spf", &s);
        }
        if let Some(a) = self.accounting {
            d.field("accounting", &a)
                .field("accounted", &self.accounted);
        }
        d.finish()
    }
}

impl Decision {
    /// DUNNO, with nothing judged, refused or counted.
    pub fn dunno() -> Self {
        Decision {
            action: Action::Dunno,
            verdicts: Vec::new(),
            state_error: None,
            near_limit: Vec::new(),
            admitted: Vec::new(),
            greylisting: None,
            spf: None,
            checkhelo: None,
            accounting: None,
            accounted: Vec::new(),
            delayed: None,
            hold: None,
            hold_lost: false,
            delay_queues: Vec::new(),
        }
    }
}

impl Engine {
    /// An engine over `set`, counting in `state`.
    pub fn new(mut set: PolicySet, state: Arc<dyn State>, settings: EngineSettings) -> Self {
        set.prepare_for_engine(settings.buckets_per_period);
        Engine {
            set: ArcSwap::from_pointee(set),
            state,
            settings,
            clock: Arc::new(crate::SystemClock),
            waiting: Arc::default(),
        }
    }

    /// DELAY quotas' queues where held mail waits, for the server to keep up to date from
    /// its ledger.
    pub fn waiting_queues(&self) -> &Arc<crate::hold::WaitingQueues> {
        &self.waiting
    }

    /// The engine reading time from `clock` (tests: a [`crate::ManualClock`] shared with
    /// the state) instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn crate::Clock>) -> Self {
        self.clock = clock;
        self
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
        self.decide_with(req, LookupAnswers::none(), scratch).await
    }

    /// The external lookups (DNS) the chain's modules need to decide `req`, deduplicated;
    /// usually none. The caller answers them under the request's deadline (from its cache
    /// when it can) and passes the answers to [`Engine::decide_with`]. The first of the
    /// engine's two phases: it changes nothing.
    /// The questions borrow `req`'s names.
    pub fn lookups<'q>(&self, req: &'q PolicyRequest<'_>) -> Vec<Lookup<'q>> {
        let mut out = Vec::new();
        self.lookups_into(req, &mut Default::default(), None, &mut out);
        out
    }

    /// [`Engine::lookups`] with a connection's `scratch`: the policies matched here are
    /// carried to the decision of the same request ([`Engine::decide_with`] or
    /// [`Engine::decide_reusing`] with this scratch, next), which then does not match
    /// them again.
    pub fn lookups_reusing<'q>(
        &self,
        req: &'q PolicyRequest<'_>,
        scratch: &mut Scratch,
    ) -> Vec<Lookup<'q>> {
        let mut out = Vec::new();
        let Scratch { memo, carried, .. } = scratch;
        self.lookups_into(req, memo, Some(carried), &mut out);
        out
    }

    fn lookups_into<'q>(
        &self,
        req: &'q PolicyRequest<'_>,
        memo: &mut crate::compile::SourceMemo,
        mut carried: Option<&mut crate::scratch::Carried>,
        out: &mut Vec<Lookup<'q>>,
    ) {
        if let Some(c) = carried.as_deref_mut() {
            c.set = 0;
        }
        if req.protocol_state != ProtocolState::Rcpt {
            return;
        }
        let set = self.set.load();
        if !set.asks_lookups {
            return;
        }
        let view = RequestView::new(req);
        let mut matched: SmallVec<[(usize, &crate::compile::Policy); 16]> = SmallVec::new();
        set.matching_into(&view, memo, &mut matched);
        if let Some(carried) = carried {
            carried.set = set.memo_id();
            carried.policies.clear();
            carried
                .policies
                .extend(matched.iter().map(|&(i, _)| i as u32));
        }
        if matched.is_empty() {
            return;
        }
        let cx = Request {
            set: &set,
            req,
            view: &view,
            matched: &matched,
            settings: &self.settings,
            lookups: LookupAnswers::none(),
            dry_run: true,
            clock: &*self.clock,
            waiting: &self.waiting,
        };
        for m in CHAIN {
            m.lookups(&cx, req, out);
        }
        crate::modules::lookup::dedupe(out);
    }

    /// Decides one request with the answers to its lookups ([`Engine::lookups`]; the
    /// second phase), reusing `scratch`'s buffers.
    pub async fn decide_with(
        &self,
        req: &PolicyRequest<'_>,
        lookups: &LookupAnswers<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        // A guard, not a clone: no reference-count traffic shared between threads.
        let set = self.set.load();
        self.evaluate(&set, req, lookups, false, None, scratch)
            .await
    }

    /// Explains one request without charging anything (lookups unanswered: see
    /// [`Engine::explain_with`]).
    pub async fn explain(&self, req: &PolicyRequest<'_>) -> Explanation {
        self.explain_with(req, LookupAnswers::none()).await
    }

    /// Explains one request with the answers to its lookups ([`Engine::lookups`]), without
    /// charging anything.
    pub async fn explain_with(
        &self,
        req: &PolicyRequest<'_>,
        lookups: &LookupAnswers<'_>,
    ) -> Explanation {
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
        if let Some(listener) = listener_text(req) {
            if let Some(first) = lines.first_mut() {
                first.push_str(&listener);
            }
        }
        if self.settings.monitor_all {
            lines.push(
                "Service runs in monitor mode: verdicts are logged, Postfix gets DUNNO.".into(),
            );
        }
        let decision = self
            .evaluate(
                &set,
                req,
                lookups,
                true,
                Some(&mut lines),
                &mut Scratch::default(),
            )
            .await;
        lines.push(format!("Action: action={}", decision.action));
        Explanation {
            lines,
            action: Some(decision.action),
            delay_queues: decision.delay_queues,
        }
    }

    async fn evaluate(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        lookups: &LookupAnswers<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        match req.protocol_state {
            ProtocolState::Rcpt => self.rcpt(set, req, lookups, dry_run, trace, scratch).await,
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
        what: impl FnOnce() -> &'static str,
    ) -> bool {
        match result {
            Ok(()) => true,
            Err(e) => {
                note(trace, || {
                    format!("{}: counter backend failed ({e}): fallback action.", what())
                });
                decision.action = self.settings.state_failure_action.clone();
                decision.state_error = Some(e);
                false
            }
        }
    }

    /// RCPT: the matched policies, then the chain ([`crate::modules`]): every module plans
    /// (until one stops the chain), one counter call with every planned op, then every
    /// module that planned judges (until one stops the chain).
    async fn rcpt(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        lookups: &LookupAnswers<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        let mut decision = Decision::dunno();
        if trace.is_some() {
            explain_matching(set, req, &mut trace);
        }
        // The addresses split once, for matching and for counter keys.
        let view = RequestView::new(req);
        // On the stack (no allocation per request) for up to 16 matched policies.
        let mut matched: SmallVec<[(usize, &crate::compile::Policy); 16]> = SmallVec::new();
        // Matched already when the lookups were listed (with this scratch, on this set).
        let carried = std::mem::take(&mut scratch.carried.set);
        if carried != 0 && carried == set.memo_id() {
            matched.extend(
                scratch
                    .carried
                    .policies
                    .iter()
                    .map(|&i| (i as usize, &set.policies[i as usize])),
            );
        } else {
            set.matching_into(&view, &mut scratch.memo, &mut matched);
        }
        if matched.is_empty() {
            note(&mut trace, || "No policy matched.".into());
            return decision;
        }
        let cx = Request {
            set,
            req,
            view: &view,
            matched: &matched,
            settings: &self.settings,
            lookups,
            dry_run,
            clock: &*self.clock,
            waiting: &self.waiting,
        };

        // Planning: everything but the counter call is synchronous.
        let mut plan = BatchPlan::start(scratch);
        let mut planned = 0;
        for (id, m) in CHAIN.iter().enumerate() {
            planned = id + 1;
            let flow = m.plan(&mut Plan {
                cx: &cx,
                decision: &mut decision,
                trace: trace.as_deref_mut(),
                batch: &mut plan,
                scratch: &mut *scratch,
                module: id as u8,
            });
            if flow == Flow::Stop {
                break;
            }
        }
        if plan.is_empty() {
            let (batch, tags) = plan.finish(String::new(), dry_run);
            scratch.recycle(batch);
            scratch.keep_tags(tags);
            return decision;
        }
        let (batch, tags) = plan.finish(scratch.copy(&req.instance), dry_run);

        // The one counter call, into the connection's reused reply when the backend answers
        // in place.
        let mut reply = scratch.reply();
        let result = match self.state.apply_in_place_into(&batch, &mut reply) {
            Some(result) => result,
            None => (self.state.apply_on(scratch.connection(), &batch).await).map(|r| reply = r),
        };
        if self.settle(result, &mut decision, &mut trace, || counted_by(&tags)) {
            for (id, m) in CHAIN.iter().enumerate().take(planned) {
                let flow = m.judge(&mut Judge {
                    cx: &cx,
                    decision: &mut decision,
                    trace: trace.as_deref_mut(),
                    batch: &batch,
                    reply: &reply,
                    tags: &tags,
                    module: id as u8,
                    report_admitted: scratch.reports_admitted(),
                    state: &*self.state,
                });
                if flow == Flow::Stop {
                    break;
                }
            }
        }
        scratch.recycle(batch);
        scratch.keep_tags(tags);
        scratch.keep_reply(reply);
        if !dry_run && (decision.delayed.is_some() || scratch.hold.holds_any()) {
            let noted = scratch
                .hold
                .note(&req.instance, decision.delayed.as_deref().cloned());
            decision.hold_lost = noted.lost;
        }
        decision
    }

    async fn end_of_message(
        &self,
        set: &PolicySet,
        req: &PolicyRequest<'_>,
        dry_run: bool,
        mut trace: Trace<'_>,
        scratch: &mut Scratch,
    ) -> Decision {
        let caps = crate::modules::message_caps::any_caps(set);
        let held_at_rcpt = !dry_run && scratch.hold.holds(&req.instance);
        if req.instance.is_empty()
            || (!caps
                && set
                    .policies
                    .iter()
                    .all(|p| p.quotas.is_empty() && p.accounting.is_empty()))
        {
            // (Quotas and Accounting both absent: "no quotas" says enough.)
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
        let ok = self.settle(result, &mut decision, &mut trace, || "END-OF-MESSAGE");
        scratch.recycle(batch);
        if ok && caps {
            crate::modules::message_caps::judge_end_of_message(
                set,
                self.settings.monitor_all,
                req,
                &reply,
                &mut decision,
                &mut trace,
            );
        }
        if ok {
            crate::modules::quotas::judge_end_of_message(
                set,
                self.settings.monitor_all,
                req,
                &reply,
                &mut decision,
                &mut trace,
            );
            let eom = crate::modules::accounting::Eom {
                set,
                monitor_all: self.settings.monitor_all,
                dry_run,
                now: self.clock.now_ms(),
                req,
            };
            crate::modules::accounting::judge_end_of_message(
                eom,
                &reply,
                &mut decision,
                &mut trace,
            );
        }
        scratch.keep_eom_reply(reply);
        if !dry_run && (held_at_rcpt || decision.delayed.is_some()) {
            self.hold_at_end_of_message(req, &mut decision, &mut trace, scratch);
        }
        decision
    }

    /// END-OF-MESSAGE of a message a DELAY quota is holding (found full at RCPT, or by the
    /// real size now): what the server is to record ([`Decision::hold`]) and the HOLD answer,
    /// unless another module refused the message.
    fn hold_at_end_of_message(
        &self,
        req: &PolicyRequest<'_>,
        decision: &mut Decision,
        trace: &mut Trace<'_>,
        scratch: &mut Scratch,
    ) {
        scratch
            .hold
            .note(&req.instance, decision.delayed.take().map(|d| *d));
        let mta = req
            .peer_address
            .map(|ip| ip.to_string())
            .unwrap_or_default();
        let Some(hold) = scratch.hold.finish(
            &req.instance,
            mta,
            &req.queue_id,
            &req.sender,
            req.recipient_count,
            req.size,
        ) else {
            return;
        };
        if !matches!(
            decision.action,
            Action::Dunno | Action::Hold(_) | Action::Prepend(_)
        ) {
            note(trace, || {
                format!(
                    "END-OF-MESSAGE: quota {:?} would hold the message, but it is refused ({}).",
                    hold.quota, decision.action
                )
            });
            return;
        }
        if req.queue_id.is_empty() {
            note(trace, || {
                "END-OF-MESSAGE: no queue ID to hold the message by: DEFER.".into()
            });
            decision.action = Action::Defer(Some(
                "4.7.1 Delayed by quota, but the request has no queue_id".into(),
            ));
            return;
        }
        note(trace, || {
            format!(
                "END-OF-MESSAGE: held by quota {:?} of policy {:?} (queue {}), released when it has room ({}).",
                hold.quota,
                hold.policy,
                hold.queue_key(),
                hold.settings.release.as_str()
            )
        });
        decision.action = Action::Hold(Some(format!("Delayed by quota {}", hold.quota)));
        decision.hold = Some(Box::new(hold));
    }
}

/// The modules whose ops a batch holds, for the line explaining a backend failure
/// ("Quotas" when only quotas count).
fn counted_by(tags: &[crate::modules::OpTag]) -> &'static str {
    let mut names = CHAIN
        .iter()
        .enumerate()
        .filter(|(id, _)| tags.iter().any(|t| usize::from(t.module) == *id))
        .map(|(_, m)| m.name());
    match (names.next(), names.next()) {
        (Some(one), None) => one,
        _ => "Counters",
    }
}

/// What the request says of the listener it came through (` listener port 587 address
/// 192.0.2.1 context submission`), for the explanation's first line; `None` when nothing.
fn listener_text(req: &PolicyRequest<'_>) -> Option<String> {
    let mut out = String::new();
    if let Some(port) = req.server_port {
        out.push_str(&format!(" port {port}"));
    }
    if let Some(address) = req.server_address {
        out.push_str(&format!(" address {address}"));
    }
    if !req.policy_context.is_empty() {
        out.push_str(&format!(" context {}", req.policy_context));
    }
    (!out.is_empty()).then(|| format!(" listener{out}"))
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
