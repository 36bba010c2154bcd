//! Validation and compilation of a [`PolicySetDef`] into a [`PolicySet`]: specs parsed,
//! groups resolved (loops and depth checked once, here, not per request), verdicts and tracks
//! typed, policies sorted by priority. Inert definitions load with a warning.

use crate::bounds;
use crate::diagnostic::{Diagnostic, Location, Severity};
use crate::model::{PolicyDef, PolicySetDef, QuotaDef};
use crate::spec::{parse_item, Side, SpecItem, SpecKind};
use crate::track::Track;
use crate::verdict::Verdict;
use crate::view::{KeptSource, RequestView, SourceSide};
use crate::window::WindowSpec;
use sluice_protocol::PolicyRequest;
use smallvec::SmallVec;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// How deep `%group` references may nest (Policyd's limit).
pub const MAX_GROUP_DEPTH: usize = 5;

/// A validated, compiled policy set, ready for matching.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    def: PolicySetDef,
    /// A number that changes whenever the set does (set by the loader; 0 if unknown).
    pub version: u64,
    pub(crate) groups: Vec<Group>,
    /// Every policy, enabled or not, by priority then name.
    pub(crate) policies: Vec<Policy>,
    /// The static greylisting whitelist.
    pub(crate) grey_whitelist: crate::greylisting::settings::Whitelist,
    /// The CheckHelo blacklist.
    pub(crate) helo_blacklist: crate::checkhelo::settings::Blacklist,
    /// The CheckHelo whitelist.
    pub(crate) helo_whitelist: crate::checkhelo::settings::Whitelist,
    /// Names this set for [`SourceMemo`]s, unique in the process (given when an engine
    /// installs the set; 0: not installed, no memo).
    memo_id: u64,
    /// Whether a module may ask lookups for some enabled policy ([`crate::modules`]'s
    /// `Module::asks`); when not, [`crate::Engine::lookups`] returns at once.
    pub(crate) asks_lookups: bool,
}

/// The last memo id handed out.
static LAST_MEMO_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether each member's source list matched, for the last request a connection's
/// [`crate::Scratch`] saw: the recipients of one message share their source side, so a
/// message's later RCPTs only test destinations.
#[derive(Debug, Default)]
pub(crate) struct SourceMemo {
    /// The set the results are for (0: none).
    set: u64,
    /// The source side they are for: all a source spec reads ([`SourceSide`]).
    source: KeptSource,
    /// The members (policy and member indices) whose source list matched, in order.
    sources: Vec<(u32, u32)>,
}

impl SourceMemo {
    /// Starts the results of `set` for the source side `source`.
    fn reset(&mut self, set: u64, source: &SourceSide<'_>) {
        self.set = set;
        self.source.keep(source);
        self.sources.clear();
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub name: String,
    pub disabled: bool,
    pub members: Vec<SpecItem>,
}

#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub name: Arc<str>,
    pub priority: i32,
    pub disabled: bool,
    pub monitor: bool,
    pub members: Vec<Member>,
    pub access_control: Vec<AccessRule>,
    pub quotas: Vec<Quota>,
    /// The policy's greylisting row (`None`: none, or disabled).
    pub greylisting: Option<crate::greylisting::settings::GreyRow>,
    /// The policy's per-message caps (`None`: none, or disabled).
    pub message_caps: Option<crate::caps::Caps>,
    /// The policy's CheckSPF row (`None`: none, or disabled).
    pub checkspf: Option<crate::checkspf::def::CheckSpfDef>,
    /// The policy's CheckHelo row (`None`: none, or disabled).
    pub checkhelo: Option<crate::checkhelo::settings::HeloRow>,
    /// The policy's enabled accounting rows.
    pub accounting: Vec<crate::accounting::settings::AccountingRule>,
}

#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub source: Vec<SpecItem>,
    pub destination: Vec<SpecItem>,
    pub source_text: String,
    pub destination_text: String,
}

#[derive(Debug, Clone)]
pub(crate) struct AccessRule {
    pub name: Arc<str>,
    pub verdict: Verdict,
    pub data: Option<String>,
}

/// The kind of a quota limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Messages, counted once per message (per Postfix `instance`).
    MessageCount,
    /// Recipients, counted once per RCPT.
    RecipientCount,
    /// Bytes, charged at END-OF-MESSAGE.
    MessageCumulativeSize,
}

impl LimitKind {
    /// Parses a limit type, case-insensitively.
    pub fn parse(s: &str) -> Option<LimitKind> {
        match s.trim().to_ascii_lowercase().as_str() {
            "messagecount" => Some(LimitKind::MessageCount),
            "recipientcount" => Some(LimitKind::RecipientCount),
            "messagecumulativesize" => Some(LimitKind::MessageCumulativeSize),
            _ => None,
        }
    }

    /// The canonical name.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::MessageCount => "MessageCount",
            LimitKind::RecipientCount => "RecipientCount",
            LimitKind::MessageCumulativeSize => "MessageCumulativeSize",
        }
    }

    /// Policyd's default text when a limit of this kind is exceeded.
    pub fn default_text(self) -> &'static str {
        match self {
            LimitKind::MessageCount => "Policy rejection; Message count quota exceeded",
            LimitKind::RecipientCount => "Policy rejection; Recipient count quota exceeded",
            LimitKind::MessageCumulativeSize => {
                "Policy rejection; Cumulative message size quota exceeded"
            }
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Quota {
    pub name: Arc<str>,
    pub track: Track,
    pub period_ms: u64,
    pub verdict: Verdict,
    pub data: Option<String>,
    pub last_quota: bool,
    pub limits: Vec<Limit>,
    /// DELAY quotas: how held messages leave; `None` for every other verdict.
    pub delay: Option<crate::hold::DelaySettings>,
    /// Names the quota in END-OF-MESSAGE records (policy and quota names), computed once.
    pub eom_label: String,
    /// The window for `window_buckets` sub-buckets, computed once (see [`Quota::window`]).
    pub window: WindowSpec,
    pub window_buckets: u32,
}

impl Quota {
    /// The quota's window split into `buckets` sub-buckets (the one computed ahead when
    /// the count is the same).
    pub fn window(&self, buckets: u32) -> WindowSpec {
        if buckets == self.window_buckets {
            self.window
        } else {
            WindowSpec::new(self.period_ms, buckets)
        }
    }

    /// Computes the window ahead for `buckets` sub-buckets.
    fn prepare_window(&mut self, buckets: u32) {
        self.window = WindowSpec::new(self.period_ms, buckets);
        self.window_buckets = buckets;
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Limit {
    pub kind: LimitKind,
    pub limit: u64,
    /// `policy/quota/Kind/`, escaped, then the track's [`Track::label`], computed once: a
    /// counter key is this plus the track's value ([`Track::write_value`]).
    pub key_head: Arc<str>,
}

impl PolicySet {
    /// The empty set: every request gets DUNNO.
    pub fn empty() -> Self {
        PolicySet::default()
    }

    /// The definition this set was compiled from.
    pub fn definition(&self) -> &PolicySetDef {
        &self.def
    }

    /// Number of enabled policies.
    pub fn enabled_policies(&self) -> usize {
        self.policies.iter().filter(|p| !p.disabled).count()
    }

    /// Readies the set for the engine installing it: every quota's window computed ahead
    /// for the engine's `buckets` sub-buckets per period (compiling assumes the default),
    /// and an id of its own for [`SourceMemo`]s (so that no memo outlives its set).
    pub(crate) fn prepare_for_engine(&mut self, buckets: u32) {
        self.memo_id = LAST_MEMO_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        for q in self.policies.iter_mut().flat_map(|p| &mut p.quotas) {
            q.prepare_window(buckets);
        }
    }

    /// Names of the enabled policies `req` matches, in evaluation order.
    pub fn matching_policy_names<'a>(&'a self, req: &'a PolicyRequest<'_>) -> Vec<&'a str> {
        let view = RequestView::new(req);
        self.policies
            .iter()
            .filter(|p| self.policy_matches(p, &view))
            .map(|p| &*p.name)
            .collect()
    }

    /// Whether `p` is enabled and one of its members matches.
    fn policy_matches(&self, p: &Policy, view: &RequestView<'_, '_>) -> bool {
        !p.disabled && p.members.iter().any(|m| self.member_matches(m, view))
    }

    /// The set's id for [`SourceMemo`]s (0: not installed in an engine).
    pub(crate) fn memo_id(&self) -> u64 {
        self.memo_id
    }

    /// The enabled policies matching the request, with their indices, in evaluation order,
    /// into `out`. Which members' sources match is taken from `memo` when it holds them for
    /// this set and this request's source side (else tested, and kept there). Returns
    /// whether `memo` held them: then this request's source side and set are those of every
    /// request since `memo` last changed.
    pub(crate) fn matching_into<'a>(
        &'a self,
        view: &RequestView<'_, '_>,
        memo: &mut SourceMemo,
        out: &mut SmallVec<[(usize, &'a Policy); 16]>,
    ) -> bool {
        if self.memo_id == 0 {
            for (i, p) in self.policies.iter().enumerate() {
                if self.policy_matches(p, view) {
                    out.push((i, p));
                }
            }
            return false;
        }
        if memo.set == self.memo_id && memo.source.is(&view.source) {
            // Only the members whose source matched can match: test their destinations.
            for &(pi, mi) in &memo.sources {
                let (pi, mi) = (pi as usize, mi as usize);
                if out.last().is_some_and(|&(last, _)| last == pi) {
                    continue; // The policy matched through an earlier member.
                }
                let p = &self.policies[pi];
                if self.list_matches(&p.members[mi].destination, view, Side::Destination) {
                    out.push((pi, p));
                }
            }
            return true;
        }
        memo.reset(self.memo_id, &view.source);
        for (pi, p) in self.policies.iter().enumerate() {
            if p.disabled {
                continue;
            }
            let mut hit = false;
            for (mi, member) in p.members.iter().enumerate() {
                // Every member's source is tested (no short cut): the memo is complete.
                if self.list_matches(&member.source, view, Side::Source) {
                    memo.sources.push((pi as u32, mi as u32));
                    if !hit && self.list_matches(&member.destination, view, Side::Destination) {
                        hit = true;
                        out.push((pi, p));
                    }
                }
            }
        }
        false
    }

    pub(crate) fn member_matches(&self, m: &Member, view: &RequestView<'_, '_>) -> bool {
        self.list_matches(&m.source, view, Side::Source)
            && self.list_matches(&m.destination, view, Side::Destination)
    }

    /// All items must match (AND). An empty list is `any`.
    pub(crate) fn list_matches(
        &self,
        items: &[SpecItem],
        view: &RequestView<'_, '_>,
        side: Side,
    ) -> bool {
        items.iter().all(|i| self.item_matches(i, view, side))
    }

    pub(crate) fn item_matches(
        &self,
        item: &SpecItem,
        view: &RequestView<'_, '_>,
        side: Side,
    ) -> bool {
        let hit = match &item.kind {
            SpecKind::Group(g) => {
                let group = &self.groups[*g];
                !group.disabled
                    && group
                        .members
                        .iter()
                        .any(|m| self.item_matches(m, view, side))
            }
            kind => kind.matches_view(view, side),
        };
        hit != item.negate
    }

    pub(crate) fn find_quota(&self, policy: &str, quota: &str) -> Option<(&Policy, &Quota)> {
        let p = self.policies.iter().find(|p| &*p.name == policy)?;
        let q = p.quotas.iter().find(|q| &*q.name == quota)?;
        Some((p, q))
    }
}

/// A compiled set and the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The set.
    pub set: PolicySet,
    /// Inert or suspicious definitions that still load.
    pub warnings: Vec<Diagnostic>,
}

/// Validates `def`. On error, returns every finding (errors and warnings), errors first.
pub fn compile(def: &PolicySetDef) -> Result<Compiled, Vec<Diagnostic>> {
    let mut c = Compiler {
        diags: Vec::new(),
        group_index: HashMap::new(),
    };
    let groups = c.groups(def);
    let mut policies = Vec::with_capacity(def.policies.len());
    let mut seen = HashSet::new();
    for (pi, p) in def.policies.iter().enumerate() {
        if p.name.trim().is_empty() {
            c.error(
                Location::Policy {
                    policy: pi,
                    field: "name",
                },
                "policy name is empty",
            );
        } else if !seen.insert(p.name.as_str()) {
            c.error(
                Location::Policy {
                    policy: pi,
                    field: "name",
                },
                format!("duplicate policy name {:?}", p.name),
            );
        }
        if let Err(e) = bounds::check_priority(i64::from(p.priority)) {
            c.error(
                Location::Policy {
                    policy: pi,
                    field: "priority",
                },
                format!("policy {:?}: {e}", p.name),
            );
        }
        policies.push(c.policy(pi, p, def));
    }
    let grey_whitelist = set_list(
        &mut c,
        crate::greylisting::settings::compile_whitelist(&def.greylisting_whitelist),
    );
    let helo_blacklist = set_list(
        &mut c,
        crate::checkhelo::settings::compile_blacklist(&def.checkhelo_blacklist),
    );
    let helo_whitelist = set_list(
        &mut c,
        crate::checkhelo::settings::compile_whitelist(&def.checkhelo_whitelist),
    );
    policies.sort_by(|a: &Policy, b: &Policy| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut diags = c.diags;
    if diags.iter().any(|d| d.severity == Severity::Error) {
        diags.sort_by_key(|d| std::cmp::Reverse(d.severity));
        return Err(diags);
    }
    diags.retain(|d| d.severity == Severity::Warning);
    let asks_lookups = policies
        .iter()
        .any(|p| !p.disabled && crate::modules::CHAIN.iter().any(|m| m.asks(p)));
    Ok(Compiled {
        set: PolicySet {
            def: def.clone(),
            version: 0,
            groups,
            policies,
            grey_whitelist,
            helo_blacklist,
            helo_whitelist,
            memo_id: 0,
            asks_lookups,
        },
        warnings: diags,
    })
}

struct Compiler {
    diags: Vec<Diagnostic>,
    group_index: HashMap<String, usize>,
}

impl Compiler {
    fn error(&mut self, location: Location, message: impl Into<String>) {
        self.diags.push(Diagnostic::error(location, message));
    }

    fn warn(&mut self, location: Location, message: impl Into<String>) {
        self.diags.push(Diagnostic::warning(location, message));
    }

    /// `e` with "did you mean %name?" when it is about an unknown group with a close name.
    fn hint(&self, e: String) -> String {
        let Some(name) = e.strip_prefix("unknown group %") else {
            return e;
        };
        match crate::suggest::closest(name, self.group_index.keys().map(String::as_str)) {
            Some(best) => format!("{e}; did you mean %{best}?"),
            None => e,
        }
    }

    fn groups(&mut self, def: &PolicySetDef) -> Vec<Group> {
        for (gi, g) in def.groups.iter().enumerate() {
            if g.name.trim().is_empty() {
                self.error(
                    Location::Group {
                        group: gi,
                        field: "name",
                    },
                    "group name is empty",
                );
            } else if self.group_index.insert(g.name.clone(), gi).is_some() {
                self.error(
                    Location::Group {
                        group: gi,
                        field: "name",
                    },
                    format!("duplicate group name {:?}", g.name),
                );
            }
        }
        let index = self.group_index.clone();
        let lookup = |name: &str| index.get(name).copied();
        let mut groups = Vec::with_capacity(def.groups.len());
        for (gi, g) in def.groups.iter().enumerate() {
            let mut members = Vec::new();
            for (mi, m) in g.members.iter().enumerate() {
                let loc = Location::GroupMember {
                    group: gi,
                    member: mi,
                    field: "member",
                };
                match parse_item(&m.member, Side::Source, &lookup) {
                    Ok(item) if !m.disabled => members.push(item),
                    Ok(_) => {}
                    Err(e) => {
                        let e = self.hint(e);
                        self.error(loc, format!("group {:?}: {e}", g.name));
                    }
                }
            }
            if !g.disabled && members.is_empty() {
                self.warn(
                    Location::Group {
                        group: gi,
                        field: "members",
                    },
                    format!(
                        "group {:?} has no enabled members: it matches nothing",
                        g.name
                    ),
                );
            }
            groups.push(Group {
                name: g.name.clone(),
                disabled: g.disabled,
                members,
            });
        }
        // Loops and depth, once, here.
        for gi in 0..groups.len() {
            let mut path = vec![gi];
            if let Err(msg) = check_nesting(&groups, gi, &mut path) {
                self.error(
                    Location::Group {
                        group: gi,
                        field: "members",
                    },
                    msg,
                );
            }
        }
        groups
    }

    fn list(
        &mut self,
        text: &Option<String>,
        side: Side,
        loc: Location,
        def: &PolicySetDef,
        policy: &str,
    ) -> Vec<SpecItem> {
        let Some(text) = text.as_deref().filter(|t| !t.trim().is_empty()) else {
            return Vec::new();
        };
        let index = self.group_index.clone();
        let lookup = |name: &str| index.get(name).copied();
        let mut items = Vec::new();
        for part in text.split(',') {
            match parse_item(part, side, &lookup) {
                Ok(item) => {
                    if let SpecKind::Group(g) = item.kind {
                        let gd = &def.groups[g];
                        if gd.disabled {
                            self.warn(
                                loc.clone(),
                                format!(
                                    "policy {policy:?} uses disabled group %{}: it matches nothing",
                                    gd.name
                                ),
                            );
                        }
                        if side == Side::Destination
                            && gd
                                .members
                                .iter()
                                .any(|m| !m.disabled && !is_address_spec(&m.member))
                        {
                            self.warn(
                                loc.clone(),
                                format!(
                                    "group %{} is used as a destination but has members that are not addresses; those never match a recipient",
                                    gd.name
                                ),
                            );
                        }
                    }
                    if !matches!(item.kind, SpecKind::Any) || item.negate {
                        items.push(item);
                    }
                }
                Err(e) => {
                    let e = self.hint(e);
                    self.error(loc.clone(), format!("policy {policy:?}: {e}"));
                }
            }
        }
        items
    }

    fn policy(&mut self, pi: usize, p: &PolicyDef, def: &PolicySetDef) -> Policy {
        let mut members = Vec::new();
        for (mi, m) in p.members.iter().enumerate() {
            let source = self.list(
                &m.source,
                Side::Source,
                Location::Member {
                    policy: pi,
                    member: mi,
                    field: "source",
                },
                def,
                &p.name,
            );
            let destination = self.list(
                &m.destination,
                Side::Destination,
                Location::Member {
                    policy: pi,
                    member: mi,
                    field: "destination",
                },
                def,
                &p.name,
            );
            if !m.disabled {
                members.push(Member {
                    source,
                    destination,
                    source_text: m.source.clone().unwrap_or_else(|| "any".into()),
                    destination_text: m.destination.clone().unwrap_or_else(|| "any".into()),
                });
            }
        }
        let has_modules = p.access_control.iter().any(|a| !a.disabled)
            || p.quotas.iter().any(|q| !q.disabled)
            || p.message_caps.as_ref().is_some_and(|c| !c.disabled)
            || p.accounting.iter().any(|a| !a.disabled);
        if p.disabled && !members.is_empty() && has_modules {
            self.warn(
                Location::Policy {
                    policy: pi,
                    field: "disabled",
                },
                format!(
                    "policy {:?} is disabled: its members never match and its modules never run",
                    p.name
                ),
            );
        } else if !p.disabled && members.is_empty() && has_modules {
            self.warn(
                Location::Policy {
                    policy: pi,
                    field: "member",
                },
                format!(
                    "policy {:?} has no enabled member: it never matches, its modules never run",
                    p.name
                ),
            );
        }

        let mut access_control = Vec::new();
        let mut names = HashSet::new();
        for (ri, a) in p.access_control.iter().enumerate() {
            let loc = |field| Location::AccessControl {
                policy: pi,
                rule: ri,
                field,
            };
            if !names.insert(a.name.as_str()) {
                self.error(
                    loc("name"),
                    format!(
                        "policy {:?}: duplicate access control name {:?}",
                        p.name, a.name
                    ),
                );
            }
            let Some(verdict) = Verdict::parse(&a.verdict).filter(|v| *v != Verdict::Delay) else {
                self.error(
                    loc("verdict"),
                    format!(
                        "policy {:?} access control {:?}: unknown verdict {:?} (OK, REJECT, DEFER, HOLD, DISCARD, FILTER, REDIRECT, PASS)",
                        p.name, a.name, a.verdict
                    ),
                );
                continue;
            };
            if verdict.needs_data() && a.data.as_deref().is_none_or(|d| d.trim().is_empty()) {
                self.error(
                    loc("data"),
                    format!(
                        "policy {:?} access control {:?}: {verdict} needs data (the target)",
                        p.name, a.name
                    ),
                );
            }
            if !a.disabled {
                access_control.push(AccessRule {
                    name: a.name.as_str().into(),
                    verdict,
                    data: a.data.clone(),
                });
            }
        }
        if access_control.len() > 1 {
            self.warn(
                Location::Policy { policy: pi, field: "access_control" },
                format!(
                    "policy {:?} has {} enabled access control rules; only the first ({:?}) is used",
                    p.name,
                    access_control.len(),
                    access_control[0].name
                ),
            );
        }

        let mut quotas = Vec::new();
        let mut names = HashSet::new();
        for (qi, q) in p.quotas.iter().enumerate() {
            if !names.insert(q.name.as_str()) {
                self.error(
                    Location::Quota {
                        policy: pi,
                        quota: qi,
                        field: "name",
                    },
                    format!("policy {:?}: duplicate quota name {:?}", p.name, q.name),
                );
            }
            if let Some(quota) = self.quota(pi, qi, &p.name, q) {
                if !q.disabled {
                    quotas.push(quota);
                }
            }
        }
        Policy {
            name: p.name.as_str().into(),
            priority: p.priority,
            disabled: p.disabled,
            monitor: p.monitor,
            members,
            access_control,
            quotas,
            greylisting: self.greylisting(pi, p),
            message_caps: self.message_caps(pi, p),
            checkspf: p.checkspf.clone().filter(|d| !d.disabled),
            checkhelo: self.checkhelo(pi, p),
            accounting: self.accounting(pi, p),
        }
    }

    /// The policy's per-message caps, range-checked (`caps/mod.rs` holds the rules).
    fn message_caps(&mut self, pi: usize, p: &PolicyDef) -> Option<crate::caps::Caps> {
        let d = p.message_caps.as_ref()?;
        // Checked when disabled too: enabling them must not need another check.
        let caps = self.module_row(pi, p, crate::caps::compile_caps(d))?;
        (!d.disabled).then_some(caps)
    }

    /// The policy's CheckHelo row, validated (`checkhelo/settings.rs` holds the rules).
    fn checkhelo(
        &mut self,
        pi: usize,
        p: &PolicyDef,
    ) -> Option<crate::checkhelo::settings::HeloRow> {
        let d = p.checkhelo.as_ref().filter(|d| !d.disabled)?;
        let row = self.module_row(pi, p, crate::checkhelo::settings::compile_row(d))?;
        if row.use_hrp == Some(true) && (row.hrp_period_secs.is_none() || row.hrp_limit.is_none()) {
            self.warn(
                Location::Policy {
                    policy: pi,
                    field: "checkhelo.use_hrp",
                },
                format!(
                    "policy {:?}: checkhelo.use_hrp without hrp_period and hrp_limit: \
                     unless another matched policy sets them, its requests \
                     are deferred (Policyd's data error)",
                    p.name
                ),
            );
        }
        Some(row)
    }

    /// The policy's enabled accounting rows, validated (`accounting/settings.rs` holds the
    /// rules; disabled rows are checked too).
    fn accounting(
        &mut self,
        pi: usize,
        p: &PolicyDef,
    ) -> Vec<crate::accounting::settings::AccountingRule> {
        let mut rows = Vec::new();
        let mut names = HashSet::new();
        for (row, a) in p.accounting.iter().enumerate() {
            let loc = |field| Location::Accounting {
                policy: pi,
                row,
                field,
            };
            if !names.insert(a.name.as_str()) {
                self.error(
                    loc("name"),
                    format!(
                        "policy {:?}: duplicate accounting name {:?}",
                        p.name, a.name
                    ),
                );
            }
            let mut found = crate::accounting::settings::Findings::default();
            let row = crate::accounting::settings::compile_row(&p.name, a, &mut found);
            for (field, msg) in found.errors {
                self.error(loc(field), msg);
            }
            for (field, msg) in found.warnings {
                self.warn(loc(field), msg);
            }
            if let Some(row) = row.filter(|_| !a.disabled) {
                rows.push(row);
            }
        }
        rows
    }

    /// The policy's greylisting row, validated (`greylisting.rs` holds the rules).
    fn greylisting(
        &mut self,
        pi: usize,
        p: &PolicyDef,
    ) -> Option<crate::greylisting::settings::GreyRow> {
        let d = p.greylisting.as_ref().filter(|d| !d.disabled)?;
        self.module_row(pi, p, crate::greylisting::settings::compile_row(d))
    }

    /// A module's settings row as compiled: the row, or `None` with each field's error
    /// reported at the policy.
    fn module_row<T>(
        &mut self,
        pi: usize,
        p: &PolicyDef,
        row: Result<T, Vec<(&'static str, String)>>,
    ) -> Option<T> {
        match row {
            Ok(row) => Some(row),
            Err(errs) => {
                for (field, msg) in errs {
                    self.error(
                        Location::Policy { policy: pi, field },
                        format!("policy {:?}: {msg}", p.name),
                    );
                }
                None
            }
        }
    }

    fn quota(&mut self, pi: usize, qi: usize, policy: &str, q: &QuotaDef) -> Option<Quota> {
        let loc = |field| Location::Quota {
            policy: pi,
            quota: qi,
            field,
        };
        let what = format!("policy {policy:?} quota {:?}", q.name);
        let track = Track::parse(&q.track)
            .map_err(|e| self.error(loc("track"), format!("{what}: {e}")))
            .ok();
        let period_ok = bounds::check_period(q.period)
            .map_err(|e| self.error(loc("period"), format!("{what}: {e}")))
            .is_ok();
        let verdict = match Verdict::parse(&q.verdict) {
            Some(Verdict::Ok | Verdict::Pass) | None => {
                self.error(
                    loc("verdict"),
                    format!(
                        "{what}: unknown quota verdict {:?} (REJECT, DEFER, HOLD, DISCARD, FILTER, REDIRECT, DELAY)",
                        q.verdict
                    ),
                );
                None
            }
            Some(v) => Some(v),
        };
        if let Some(v) = verdict {
            if v.needs_data() && q.data.as_deref().is_none_or(|d| d.trim().is_empty()) {
                self.error(loc("data"), format!("{what}: {v} needs data (the target)"));
            }
        }
        if let Some(d) = q.data.as_deref() {
            if !d.is_empty() && d.trim().bytes().all(|b| b.is_ascii_digit()) {
                self.warn(
                    loc("data"),
                    format!("{what}: data {d:?} is a bare number; it is sent to the client as the refusal text, not used as a limit"),
                );
            }
        }
        let delay_fields = q.release.is_some()
            || q.max_held.is_some()
            || q.max_hold_age.is_some()
            || q.on_expiry.is_some();
        let delay = match crate::hold::settings::compile(
            q.release.as_deref(),
            q.max_held,
            q.max_hold_age,
            q.on_expiry.as_deref(),
        ) {
            Ok(settings) => Some(settings),
            Err((field, msg)) => {
                self.error(loc(field), format!("{what}: {msg}"));
                None
            }
        };
        if delay_fields && verdict.is_some_and(|v| v != Verdict::Delay) {
            self.warn(
                loc("verdict"),
                format!("{what}: release, max_held, max_hold_age and on_expiry apply to DELAY quotas only; they are ignored with {}", q.verdict.trim().to_ascii_uppercase()),
            );
        }
        // (Without a valid track there is no quota: the label does not matter then.)
        let track_label = track.as_ref().map_or("", Track::label);
        let mut limits = Vec::new();
        let mut kinds = HashSet::new();
        for (li, l) in q.limits.iter().enumerate() {
            let lloc = |field| Location::Limit {
                policy: pi,
                quota: qi,
                limit: li,
                field,
            };
            let Some(kind) = LimitKind::parse(&l.kind) else {
                self.error(
                    lloc("type"),
                    format!(
                        "{what}: unknown limit type {:?} (MessageCount, RecipientCount, MessageCumulativeSize)",
                        l.kind
                    ),
                );
                continue;
            };
            // Checked on disabled limits too: enabling one must not need another check.
            let in_range = bounds::check_limit(kind, l.limit)
                .map_err(|e| self.error(lloc("limit"), format!("{what}: {e}")))
                .is_ok();
            if l.disabled {
                continue;
            }
            if !kinds.insert(kind) {
                self.error(
                    lloc("type"),
                    format!("{what}: more than one enabled {} limit", kind.as_str()),
                );
            }
            if l.limit == 0 {
                self.warn(
                    lloc("limit"),
                    format!(
                        "{what}: {} limit 0 refuses everything it counts \
                         (Policyd's CounterLimit 0 still let one through per period)",
                        kind.as_str()
                    ),
                );
            } else if let Some(w) =
                bounds::unreachable_limit(kind, l.limit, q.period).filter(|_| in_range && period_ok)
            {
                self.warn(lloc("limit"), format!("{what}: {w}"));
            }
            limits.push(Limit {
                kind,
                limit: l.limit,
                key_head: crate::engine::counter_key(policy, &q.name, kind, track_label).into(),
            });
        }
        if !q.disabled && limits.is_empty() {
            self.warn(
                loc("limit"),
                format!("{what} has no enabled limit: it counts nothing and never refuses"),
            );
        }
        // In range when the set compiles (else an error above): no overflow either way.
        let period_ms = bounds::period_ms(q.period);
        let buckets = crate::engine::EngineSettings::default().buckets_per_period;
        Some(Quota {
            name: q.name.as_str().into(),
            track: track?,
            period_ms,
            window: WindowSpec::new(period_ms, buckets),
            window_buckets: buckets,
            verdict: verdict?,
            data: q.data.clone(),
            last_quota: q.last_quota,
            limits,
            delay: if verdict? == Verdict::Delay {
                Some(delay?)
            } else {
                None
            },
            eom_label: crate::engine::quota_label(policy, &q.name),
        })
    }
}

/// A set-level list (a whitelist, a blacklist) as compiled: the list, or an empty one with
/// each entry's error reported at the set.
fn set_list<T>(c: &mut Compiler, list: Result<Vec<T>, Vec<(usize, String)>>) -> Vec<T> {
    list.unwrap_or_else(|errs| {
        for (_, msg) in errs {
            c.error(Location::Set, msg);
        }
        Vec::new()
    })
}

fn is_address_spec(s: &str) -> bool {
    let s = s.trim().trim_start_matches('!');
    s.contains('@') || s.starts_with('%') || s.eq_ignore_ascii_case("any")
}

/// Depth-first walk of group references from `path`'s last group.
fn check_nesting(groups: &[Group], gi: usize, path: &mut Vec<usize>) -> Result<(), String> {
    for m in &groups[gi].members {
        if let SpecKind::Group(next) = m.kind {
            if path.contains(&next) {
                let names: Vec<String> = path
                    .iter()
                    .chain(std::iter::once(&next))
                    .map(|&g| format!("%{}", groups[g].name))
                    .collect();
                return Err(format!("group loop: {}", names.join(" -> ")));
            }
            if path.len() >= MAX_GROUP_DEPTH {
                return Err(format!(
                    "groups nest deeper than {MAX_GROUP_DEPTH} levels from %{}",
                    groups[path[0]].name
                ));
            }
            path.push(next);
            check_nesting(groups, next, path)?;
            path.pop();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LimitDef;

    /// Matching with a memo carried from request to request equals matching each request
    /// afresh, whichever source input changes, and across policy set changes.
    #[test]
    fn memoized_source_results_match_like_fresh_matching() {
        const SET: &str = r#"
            [[group]]
            name = "nets"
            [[group.members]]
            member = "10.1.0.0/16"
            [[group.members]]
            member = "!10.1.2.0/24"
            [[group]]
            name = "off"
            disabled = true
            [[group.members]]
            member = "any"
            [[policy]]
            name = "two-members"
            [[policy.member]]
            source = "%nets"
            destination = "@a.example"
            [[policy.member]]
            source = "$*"
            destination = "!@a.example"
            [[policy]]
            name = "sender-and-peer"
            [[policy.member]]
            source = "@s.example, [192.0.2.1]"
            [[policy]]
            name = "disabled"
            disabled = true
            [[policy.member]]
            source = "any"
            [[policy]]
            name = "disabled-group"
            [[policy.member]]
            source = "!%off"
            destination = "b@*"
            [[policy]]
            name = "hostname-or-null"
            [[policy.member]]
            source = ".mx.example"
            [[policy.member]]
            source = "@"
            destination = "%nets"
            [[policy]]
            name = "any"
            [[policy.member]]
            destination = "any"
            [[policy]]
            name = "submission"
            [[policy.member]]
            source = "server_port=587, !policy_context=relay, server_address=192.0.2.0/24"
        "#;
        let def: PolicySetDef = toml::from_str(SET).unwrap();
        let mut first = compile(&def).unwrap().set;
        first.prepare_for_engine(60);
        let mut second = first.clone();
        second.prepare_for_engine(60);
        second.policies.retain(|p| &*p.name != "two-members");
        let unprepared = compile(&def).unwrap().set;

        let base = || {
            let mut r = PolicyRequest::new(
                sluice_protocol::ProtocolState::Rcpt,
                "10.1.1.1".parse().unwrap(),
            );
            r.sender = "u@s.example".into();
            r.recipient = "b@a.example".into();
            r
        };
        let mut requests = vec![base()];
        let mut push = |f: &dyn Fn(&mut PolicyRequest<'static>)| {
            let mut r = base();
            f(&mut r);
            requests.push(r.clone());
            requests.push(r);
            requests.push(base());
        };
        push(&|r| r.recipient = "c@a.example".into());
        push(&|r| r.recipient = "b@c.example".into());
        push(&|r| r.client_address = "10.1.2.3".parse().unwrap());
        push(&|r| r.client_address = "::1".parse().unwrap());
        push(&|r| r.peer_address = Some("192.0.2.1".parse().unwrap()));
        push(&|r| r.sasl_username = "alice".into());
        push(&|r| r.sender = "v@s.example".into());
        push(&|r| r.sender = "".into());
        push(&|r| r.reverse_client_name = "a.mx.example".into());
        push(&|r| r.server_port = Some(587));
        push(&|r| {
            r.server_port = Some(587);
            r.server_address = Some("192.0.2.7".parse().unwrap());
        });
        push(&|r| {
            r.server_port = Some(587);
            r.server_address = Some("192.0.2.7".parse().unwrap());
            r.policy_context = "relay".into();
        });
        push(&|r| {
            r.sender = "".into();
            r.recipient = "x@y".into();
            r.client_address = "10.1.9.9".parse().unwrap();
        });

        let mut memo = SourceMemo::default();
        let mut last_miss = None;
        let mut outcomes = HashSet::new();
        for (n, req) in requests.iter().enumerate() {
            let view = RequestView::new(req);
            for set in [&first, &first, &second, &unprepared, &first] {
                let want: Vec<usize> = set
                    .policies
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| set.policy_matches(p, &view))
                    .map(|(i, _)| i)
                    .collect();
                let mut got = SmallVec::new();
                let remembered = set.matching_into(&view, &mut memo, &mut got);
                // The memo holds the source side of the last request that missed it.
                let source = (
                    set.memo_id,
                    req.client_address,
                    req.peer_address,
                    req.sender.to_string(),
                    req.sasl_username.to_string(),
                    req.reverse_client_name.to_string(),
                    req.server_port,
                    req.server_address,
                    req.policy_context.to_string(),
                );
                let hit = set.memo_id != 0 && last_miss.as_ref() == Some(&source);
                assert_eq!(remembered, hit, "request {n}: {req:?}");
                if set.memo_id != 0 && !hit {
                    last_miss = Some(source);
                }
                let got: Vec<usize> = got.iter().map(|&(i, _)| i).collect();
                assert_eq!(got, want, "request {n}: {req:?}");
                outcomes.insert(want);
            }
        }
        // The requests exercise every policy, in many combinations.
        for (i, p) in first.policies.iter().enumerate() {
            let matched = outcomes.iter().any(|o| o.contains(&i));
            assert_eq!(matched, &*p.name != "disabled", "policy {:?}", p.name);
        }
        assert!(outcomes.len() >= 8, "{outcomes:?}");
    }

    /// A set of one policy with one quota of `period` seconds and one limit.
    fn one_quota(priority: i32, period: u64, kind: &str, limit: u64) -> PolicySetDef {
        PolicySetDef {
            greylisting_whitelist: Vec::new(),
            checkhelo_blacklist: Vec::new(),
            checkhelo_whitelist: Vec::new(),
            groups: vec![],
            policies: vec![PolicyDef {
                name: "p".into(),
                priority,
                members: vec![crate::model::MemberDef::default()],
                quotas: vec![QuotaDef {
                    name: "q".into(),
                    track: "Policy".into(),
                    period,
                    verdict: "DEFER".into(),
                    limits: vec![LimitDef {
                        kind: kind.into(),
                        limit,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The single error of compiling `def`: where and what.
    fn the_error(def: &PolicySetDef) -> (Location, String) {
        let findings = compile(def).expect_err("must be refused");
        let errors: Vec<_> = findings
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert_eq!(errors.len(), 1, "{errors:?}");
        (errors[0].location.clone(), errors[0].message.clone())
    }

    const PERIOD: Location = Location::Quota {
        policy: 0,
        quota: 0,
        field: "period",
    };

    const LIMIT: Location = Location::Limit {
        policy: 0,
        quota: 0,
        limit: 0,
        field: "limit",
    };

    #[test]
    fn caps_without_a_member_warn_that_they_never_run() {
        let def = PolicySetDef {
            policies: vec![PolicyDef {
                name: "caps".into(),
                message_caps: Some(crate::caps::def::MessageCapsDef {
                    max_recipients: Some(10),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        let c = compile(&def).unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.message.contains("never matches")),
            "{:?}",
            c.warnings
        );
        let caps = c.set.policies[0].message_caps.unwrap();
        assert_eq!(caps.max_recipients, Some(10));
    }

    #[test]
    fn periods_are_refused_outside_one_second_to_366_days() {
        let max = bounds::MAX_PERIOD_SECS;
        for ok in [1, 60, 3600, 86_400, max] {
            let set = compile(&one_quota(0, ok, "RecipientCount", 100))
                .unwrap_or_else(|d| panic!("{ok}: {d:?}"))
                .set;
            assert_eq!(set.policies[0].quotas[0].period_ms, ok * 1000);
        }
        // max + 1, the period whose milliseconds wrap a u64 (the attack: "per 0s", every
        // request admitted), Policyd's BIGINT maximum, and u64::MAX.
        for bad in [
            max + 1,
            18_446_744_073_709_552,
            9_223_372_036_854_775_807,
            u64::MAX,
        ] {
            let (loc, msg) = the_error(&one_quota(0, bad, "RecipientCount", 100));
            assert_eq!(loc, PERIOD, "{bad}");
            assert!(msg.contains("366 days") && msg.contains("\"q\""), "{msg}");
        }
        let (loc, msg) = the_error(&one_quota(0, 0, "RecipientCount", 100));
        assert_eq!(loc, PERIOD);
        assert!(msg.contains("at least 1 second"), "{msg}");
        // Disabled quotas are held to the same rule.
        let mut def = one_quota(0, u64::MAX, "RecipientCount", 100);
        def.policies[0].quotas[0].disabled = true;
        assert_eq!(the_error(&def).0, PERIOD);
    }

    #[test]
    fn limits_are_refused_above_their_maximum() {
        for kind in ["MessageCount", "RecipientCount"] {
            let max = bounds::MAX_COUNT_LIMIT;
            assert!(compile(&one_quota(0, 86_400, kind, max)).is_ok());
            for bad in [max + 1, u64::MAX] {
                let (loc, msg) = the_error(&one_quota(0, 86_400, kind, bad));
                assert_eq!(loc, LIMIT);
                assert!(msg.contains(kind) && msg.contains("maximum"), "{msg}");
            }
        }
        let max = bounds::MAX_SIZE_LIMIT;
        let size = "MessageCumulativeSize";
        assert!(compile(&one_quota(0, 86_400, size, max)).is_ok());
        // "1000000T": 10^18 bytes.
        for bad in [max + 1, 1_000_000_000_000_000_000, u64::MAX] {
            let (loc, msg) = the_error(&one_quota(0, 86_400, size, bad));
            assert_eq!(loc, LIMIT);
            assert!(msg.contains("100 TB"), "{msg}");
        }
        // A disabled limit too: enabling it later must not let it in unchecked.
        let mut def = one_quota(0, 3600, size, u64::MAX);
        def.policies[0].quotas[0].limits[0].disabled = true;
        assert_eq!(the_error(&def).0, LIMIT);
    }

    #[test]
    fn zero_and_never_binding_limits_load_with_a_warning() {
        let warnings = |def: &PolicySetDef| -> Vec<String> {
            let c = compile(def).unwrap_or_else(|d| panic!("{d:?}"));
            c.warnings
                .into_iter()
                .filter(|w| w.location == LIMIT)
                .map(|w| w.message)
                .collect()
        };
        let w = warnings(&one_quota(0, 60, "RecipientCount", 0));
        assert!(w.len() == 1 && w[0].contains("refuses everything"), "{w:?}");
        assert!(w[0].contains("Policyd"), "{w:?}");
        // 100,000 per second is the most a limit may demand and still be said to bind.
        assert!(warnings(&one_quota(0, 1, "RecipientCount", 100_000)).is_empty());
        let w = warnings(&one_quota(0, 1, "RecipientCount", 100_001));
        assert!(w.len() == 1 && w[0].contains("never refuses"), "{w:?}");
        let w = warnings(&one_quota(0, 1, "MessageCumulativeSize", 20_000_000_000));
        assert!(w.len() == 1 && w[0].contains("never refuses"), "{w:?}");
        assert!(warnings(&one_quota(0, 3600, "MessageCumulativeSize", 200_000_000)).is_empty());
    }

    #[test]
    fn priorities_are_refused_outside_policyds_smallint() {
        for ok in [-32_768, 0, 50, 32_767] {
            assert!(
                compile(&one_quota(ok, 60, "RecipientCount", 1)).is_ok(),
                "{ok}"
            );
        }
        for bad in [-32_769, 32_768, i32::MAX, i32::MIN] {
            let (loc, msg) = the_error(&one_quota(bad, 60, "RecipientCount", 1));
            assert_eq!(
                loc,
                Location::Policy {
                    policy: 0,
                    field: "priority"
                }
            );
            assert!(msg.contains("32767"), "{msg}");
        }
    }

    /// A quota of the longest period holds its limit exactly, for every sub-bucket count a
    /// server accepts, and its window is a year and a day long, not "0 s".
    #[test]
    fn the_longest_period_enforces_its_limit() {
        let def = one_quota(0, bounds::MAX_PERIOD_SECS, "RecipientCount", 100);
        let mut set = compile(&def).unwrap().set;
        for buckets in [1, 60, bounds::MAX_BUCKETS_PER_PERIOD] {
            set.prepare_for_engine(buckets);
            let window = set.policies[0].quotas[0].window(buckets);
            assert_eq!(window.period_ms, 31_622_400_000);
            let mut w = crate::window::Window::new();
            let t0 = 1_700_000_000_000;
            let admitted = (0..301)
                .filter(|i| {
                    matches!(
                        w.take(window, t0 + i * 1000, 1, 100),
                        crate::window::TakeOutcome::Admitted { .. }
                    )
                })
                .count();
            assert_eq!(admitted, 100, "{buckets} buckets");
            // Still full just before the period has passed; room once it (and a bucket) has.
            let last = t0 + 99 * 1000;
            let full = t0 + window.period_ms - 1;
            assert!(!matches!(
                w.take(window, full, 1, 100),
                crate::window::TakeOutcome::Admitted { .. }
            ));
            let free = last + window.period_ms + window.bucket_ms;
            assert!(matches!(
                w.take(window, free, 100, 100),
                crate::window::TakeOutcome::Admitted { .. }
            ));
        }
    }

    #[test]
    fn a_quota_window_computed_ahead_equals_a_fresh_one() {
        let def = PolicySetDef {
            greylisting_whitelist: Vec::new(),
            checkhelo_blacklist: Vec::new(),
            checkhelo_whitelist: Vec::new(),
            groups: vec![],
            policies: vec![PolicyDef {
                name: "p".into(),
                quotas: vec![QuotaDef {
                    name: "q".into(),
                    track: "Policy".into(),
                    period: 7,
                    verdict: "DEFER".into(),
                    limits: vec![LimitDef {
                        kind: "RecipientCount".into(),
                        limit: 1,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let mut set = compile(&def).unwrap().set;
        for prepared in [60, 1, 13] {
            for buckets in [0, 1, 13, 60, 7_001] {
                let q = &set.policies[0].quotas[0];
                assert_eq!(q.window(buckets), WindowSpec::new(7_000, buckets));
            }
            set.prepare_for_engine(prepared);
        }
    }

    #[test]
    fn checkhelo_rows_and_lists_compile_and_hrp_without_its_numbers_is_warned() {
        use crate::checkhelo::def::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
        use crate::model::MemberDef;
        let mut def = PolicySetDef {
            policies: vec![PolicyDef {
                name: "p".into(),
                members: vec![MemberDef::default()],
                checkhelo: Some(CheckHeloDef {
                    use_hrp: Some(true),
                    reject_unresolvable: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            checkhelo_blacklist: HeloBlacklistDef::policyd_seed(),
            ..Default::default()
        };
        let c = compile(&def).expect("compiles");
        assert!(
            c.warnings.iter().any(|w| w
                .message
                .contains("checkhelo.use_hrp without hrp_period and hrp_limit")),
            "{:?}",
            c.warnings
        );
        assert!(c.set.asks_lookups, "reject_unresolvable asks DNS");
        assert_eq!(c.set.helo_blacklist.len(), 4);
        def.checkhelo_whitelist = vec![HeloWhitelistDef {
            source: "Sender:@x".into(),
            ..Default::default()
        }];
        assert!(
            compile(&def).is_err(),
            "a whitelist entry CheckHelo cannot use"
        );
        def.checkhelo_whitelist.clear();
        def.policies[0].checkhelo = None;
        assert!(!compile(&def).unwrap().set.asks_lookups);
    }
}
