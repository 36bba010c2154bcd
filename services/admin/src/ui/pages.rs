//! The policy list, the policy page (its whole chain), the forms that change it, and the
//! audit page.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{html, Markup};
use serde::Deserialize;
use sluice_engine::diagnostic::Location;
use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_engine::{compile, Diagnostic, Severity};
use sluice_store::AdminRole;

use super::layout::{
    self, create_disabled_field, created_disabled, csrf_field, page, state_badge, Nav,
};
use super::{error_page, see_other, PageCaller};
use crate::api::{self, toggle as toggle_object};
use crate::auth::Caller;
use crate::change::{self, Action};
use crate::error::ApiError;
use crate::resource::{
    AccessRules, Limit, Limits, Member, Members, Policies, Policy, Quota, Quotas, Resource,
};
use crate::{scope, AppState};

/// Whether the caller may use the forms that change things.
fn can_change(caller: &Caller) -> bool {
    caller.account.role != AdminRole::Viewer
}

/// The compiler's findings for the policy at `index` (warnings, and errors if the stored
/// set does not compile).
fn findings_of(def: &PolicySetDef, index: usize) -> Vec<Diagnostic> {
    let all = match compile(def) {
        Ok(c) => c.warnings,
        Err(d) => d,
    };
    all.into_iter()
        .filter(|d| match d.location {
            Location::Policy { policy, .. }
            | Location::Member { policy, .. }
            | Location::AccessControl { policy, .. }
            | Location::Quota { policy, .. }
            | Location::Limit { policy, .. }
            | Location::Accounting { policy, .. } => policy == index,
            _ => false,
        })
        .collect()
}

fn findings_box(findings: &[Diagnostic]) -> Markup {
    html! {
        @if !findings.is_empty() {
            div.warnings {
                strong { "This chain does not do everything it seems to:" }
                ul {
                    @for d in findings {
                        li {
                            @if d.severity == Severity::Error { "error: " }
                            (d.message)
                            @let field = change::field_name(&d.location);
                            @if !field.is_empty() { " " span.muted { "(" (field) ")" } }
                        }
                    }
                }
            }
        }
    }
}

/// `/policies`.
pub(super) async fn policies(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
) -> Response {
    let def = match state.store.load().await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e.into()),
    };
    let warnings_by_policy: HashMap<usize, usize> = (0..def.policies.len())
        .map(|i| (i, findings_of(&def, i).len()))
        .collect();
    let mut visible: Vec<(usize, &PolicyDef)> = def
        .policies
        .iter()
        .enumerate()
        .filter(|(_, p)| scope::may_see_policy(&caller.account, p))
        .collect();
    visible.sort_by_key(|(_, p)| (p.priority, p.name.clone()));
    let content = html! {
        h1 { "Policies" }
        p.lead { "Evaluated by priority, lowest first. Open a policy to see its whole chain." }
        table {
            thead { tr { th { "Priority" } th { "Name" } th { "State" } th { "Members" }
                         th { "Access control" } th { "Quotas" } th { "Warnings" } } }
            tbody {
                @for (i, p) in &visible {
                    tr {
                        td { (p.priority) }
                        td { a href={ "/policies/" (urlencode(&p.name)) } { (p.name) } }
                        td { (state_badge(p.disabled)) @if p.monitor { " " span.badge.monitor { "monitor" } } }
                        td { (p.members.len()) }
                        td { (p.access_control.len()) }
                        td { (p.quotas.len()) }
                        td { @let n = warnings_by_policy.get(i).copied().unwrap_or(0);
                             @if n > 0 { span.badge.monitor { (n) } } @else { span.muted { "none" } } }
                    }
                }
                @if visible.is_empty() { tr { td colspan="7" .muted { "No policies yet." } } }
            }
        }
        @if can_change(&caller) {
            h2 { "New policy" }
            form.add method="post" action="/policies" {
                (csrf_field(&caller))
                label { "Name" input type="text" name="name" required; }
                label { "Priority" input type="number" name="priority" value="50"; }
                label { "Description" input type="text" name="description"; }
                @if caller.account.role == AdminRole::DomainAdmin {
                    label { "First member: source" input type="text" name="source" placeholder={ "@" (caller.account.domains.first().map_or("", String::as_str)) }; }
                }
                (create_disabled_field())
                button type="submit" { "Create" }
            }
        }
    };
    page("Policies", Some(&caller), Nav::Policies, content).into_response()
}

/// Percent-encodes a path segment.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A toggle button for one object of the policy page.
fn toggle_button(caller: &Caller, policy: &str, object: &str, disabled: bool) -> Markup {
    html! {
        @if can_change(caller) {
            form.inline method="post" action={ "/policies/" (urlencode(policy)) "/toggle" } {
                (csrf_field(caller))
                input type="hidden" name="object" value=(object);
                input type="hidden" name="disabled" value=(if disabled { "false" } else { "true" });
                button.secondary.small type="submit" { @if disabled { "Enable" } @else { "Disable" } }
            }
        }
    }
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// `/policies/{policy}`: the whole chain.
pub(super) async fn policy(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(name): Path<String>,
) -> Response {
    let def = match state.store.load().await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e.into()),
    };
    let Some(index) = def.policies.iter().position(|p| p.name == name) else {
        return error_page(
            Some(&caller),
            &ApiError::not_found(format!("no policy named {name:?}")),
        );
    };
    let p = &def.policies[index];
    if let Err(e) = scope::check_policy(&caller.account, p) {
        return error_page(Some(&caller), &e);
    }
    let findings = findings_of(&def, index);
    let base = format!("/policies/{}", urlencode(&p.name));
    let content = html! {
        p { a href="/policies" { "← Policies" } }
        h1 { (p.name) " " (state_badge(p.disabled)) @if p.monitor { " " span.badge.monitor { "monitor" } } }
        p.lead {
            "Priority " (p.priority)
            @if let Some(d) = &p.description { " · " (d) }
            " " (toggle_button(&caller, &p.name, "policy", p.disabled))
        }
        (findings_box(&findings))

        h2 { "1. Members " span.muted { "(who this policy applies to: any enabled member matches)" } }
        table {
            thead { tr { th { "#" } th { "Source" } th { "Destination" } th { "Comment" } th { "State" } th {} } }
            tbody {
                @for (i, m) in p.members.iter().enumerate() {
                    tr {
                        td { (i) }
                        td { code { (m.source.as_deref().unwrap_or("any")) } }
                        td { code { (m.destination.as_deref().unwrap_or("any")) } }
                        td { (opt(&m.comment)) }
                        td { (state_badge(m.disabled)) }
                        td { (toggle_button(&caller, &p.name, &format!("member/{i}"), m.disabled)) }
                    }
                }
                @if p.members.is_empty() { tr { td colspan="6" .muted { "No members: this policy matches nothing." } } }
            }
        }
        @if can_change(&caller) {
            form.add method="post" action={ (base) "/members" } {
                (csrf_field(&caller))
                label { "Source" input type="text" name="source" placeholder="@example.org, 10.0.0.0/8, $sasl"; }
                label { "Destination" input type="text" name="destination" placeholder="any"; }
                label { "Comment" input type="text" name="comment"; }
                (create_disabled_field())
                button type="submit" { "Add member" }
            }
        }

        h2 { "2. Access control" }
        table {
            thead { tr { th { "Name" } th { "Verdict" } th { "Data" } th { "State" } th {} } }
            tbody {
                @for a in &p.access_control {
                    tr {
                        td { (a.name) } td { code { (a.verdict) } } td { (opt(&a.data)) }
                        td { (state_badge(a.disabled)) }
                        td { (toggle_button(&caller, &p.name, &format!("access-control/{}", a.name), a.disabled)) }
                    }
                }
                @if p.access_control.is_empty() { tr { td colspan="5" .muted { "None." } } }
            }
        }

        (super::module_sections::before_greylisting(&caller, p, &base))
        (super::greylisting_page::section(&caller, p, &base))

        h2 { "3. Quotas " span.muted { "(each needs an enabled limit to count anything)" } }
        @for q in &p.quotas {
            div.card {
                h3 { (q.name) " " (state_badge(q.disabled)) " "
                     (toggle_button(&caller, &p.name, &format!("quota/{}", q.name), q.disabled)) }
                p.muted {
                    "Tracks " code { (q.track) } " over " (sluice_store::policy_file::period_text(q.period).trim_matches('"')) "; when full: "
                    code { (q.verdict) } @if let Some(d) = &q.data { " " (d) }
                    @if q.verdict.eq_ignore_ascii_case("DELAY") {
                        " · held and released when it has room ("
                        (q.release.as_deref().unwrap_or("room")) "; at most "
                        (q.max_held.unwrap_or(u64::from(sluice_engine::hold::settings::DEFAULT_MAX_HELD))) " held; after "
                        (sluice_store::policy_file::period_text(q.max_hold_age.unwrap_or(sluice_engine::hold::settings::DEFAULT_MAX_HOLD_AGE_SECS)).trim_matches('"')) ": "
                        (q.on_expiry.as_deref().unwrap_or("return")) ") · "
                        a href="/held" { "held messages" }
                    }
                    @if q.last_quota { " · last quota" }
                }
                table {
                    thead { tr { th { "#" } th { "Limit type" } th { "Limit" } th { "State" } th {} } }
                    tbody {
                        @for (i, l) in q.limits.iter().enumerate() {
                            tr {
                                td { (i) } td { (l.kind) } td { (l.limit) } td { (state_badge(l.disabled)) }
                                td { (toggle_button(&caller, &p.name, &format!("quota/{}/limit/{i}", q.name), l.disabled)) }
                            }
                        }
                        @if q.limits.is_empty() { tr { td colspan="5" .muted { "No limits: this quota counts nothing." } } }
                    }
                }
                @if can_change(&caller) {
                    form.add method="post" action={ (base) "/quotas/" (urlencode(&q.name)) "/limits" } {
                        (csrf_field(&caller))
                        label { "Type" select name="type" {
                            option value="MessageCount" { "MessageCount" }
                            option value="RecipientCount" { "RecipientCount" }
                            option value="MessageCumulativeSize" { "MessageCumulativeSize" }
                        } }
                        label { "Limit" input type="number" name="limit" min="0" required; }
                        (create_disabled_field())
                        button type="submit" { "Add limit" }
                    }
                }
            }
        }
        @if p.quotas.is_empty() { p.muted { "No quotas." } }
        @if can_change(&caller) {
            form.add method="post" action={ (base) "/quotas" } {
                (csrf_field(&caller))
                label { "Name" input type="text" name="name" required; }
                label { "Track" input type="text" name="track" value="Sender:user@domain" required; }
                label { "Period (s)" input type="number" name="period" value="3600" min="1" required; }
                label { "Verdict" input type="text" name="verdict" value="DEFER" required title="REJECT, DEFER, HOLD, DISCARD, FILTER, REDIRECT, or DELAY (hold and release when there is room)"; }
                label { "Text" input type="text" name="data" placeholder="4.7.1 Too many messages"; }
                label { "DELAY release"
                    select name="release" {
                        option value="" { "—" }
                        option value="room" { "room" }
                        option value="paced" { "paced" }
                    }
                }
                (create_disabled_field())
                button type="submit" { "Add quota" }
            }
        }
        (super::module_sections::after_quotas(&caller, p, &base))
    };
    page(&p.name, Some(&caller), Nav::Policies, content).into_response()
}

/// Empty form fields mean "not given".
fn given(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.trim().is_empty())
}

/// The new-policy form.
#[derive(Deserialize)]
pub(super) struct PolicyForm {
    #[serde(default)]
    csrf: String,
    name: String,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    source: Option<String>,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

/// Runs a change for a form: the form's CSRF token is the caller's, errors are pages.
async fn form_change<R: Resource>(
    state: &AppState,
    mut caller: Caller,
    csrf: String,
    action: Action,
    keys: Vec<String>,
    edit: impl Fn(&mut PolicySetDef) -> Result<Vec<String>, ApiError>,
    back: impl Fn(&[String]) -> String,
) -> Response {
    caller.csrf_given = Some(csrf);
    match change::apply::<R>(state, &caller, action, &keys, edit).await {
        Ok(after) => see_other(&back(&after)),
        Err(e) => error_page(Some(&caller), &e),
    }
}

pub(super) async fn create_policy(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Form(form): Form<PolicyForm>,
) -> Response {
    let disabled = match created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let priority = match given(form.priority).map(|p| p.trim().parse::<i32>()) {
        None => 0,
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return error_page(
                Some(&caller),
                &ApiError::invalid("priority", "the priority must be a whole number"),
            )
        }
    };
    let body = Policy {
        name: form.name,
        priority,
        description: given(form.description),
        disabled,
        monitor: false,
        members: given(form.source).map(|s| {
            vec![Member {
                source: Some(s),
                destination: None,
                disabled: false,
                comment: None,
            }]
        }),
    };
    form_change::<Policies>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        Vec::new(),
        |def| Policies::create(def, &[], body.clone()),
        |keys| format!("/policies/{}", urlencode(&keys[0])),
    )
    .await
}

/// The toggle buttons' form.
#[derive(Deserialize)]
pub(super) struct ToggleForm {
    #[serde(default)]
    csrf: String,
    /// `policy`, `member/N`, `access-control/NAME`, `quota/NAME`, `quota/NAME/limit/N`.
    object: String,
    disabled: bool,
}

pub(super) async fn toggle(
    State(state): State<Arc<AppState>>,
    PageCaller(mut caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<ToggleForm>,
) -> Response {
    caller.csrf_given = Some(form.csrf);
    let parts: Vec<&str> = form.object.splitn(4, '/').collect();
    let mut keys = vec![policy.clone()];
    let d = form.disabled;
    let result = match parts.as_slice() {
        ["policy"] => toggle_object::<Policies>(&state, &caller, keys, d)
            .await
            .map(|_| ()),
        ["member", i] => {
            keys.push((*i).to_owned());
            toggle_object::<Members>(&state, &caller, keys, d)
                .await
                .map(|_| ())
        }
        ["access-control", name] => {
            keys.push((*name).to_owned());
            toggle_object::<AccessRules>(&state, &caller, keys, d)
                .await
                .map(|_| ())
        }
        ["quota", name] => {
            keys.push((*name).to_owned());
            toggle_object::<Quotas>(&state, &caller, keys, d)
                .await
                .map(|_| ())
        }
        ["quota", name, "limit", i] => {
            keys.extend([(*name).to_owned(), (*i).to_owned()]);
            toggle_object::<Limits>(&state, &caller, keys, d)
                .await
                .map(|_| ())
        }
        _ => Err(ApiError::invalid(
            "object",
            format!("unknown object {:?}", form.object),
        )),
    };
    match result {
        Ok(()) => see_other(&format!("/policies/{}", urlencode(&policy))),
        Err(e) => error_page(Some(&caller), &e),
    }
}

/// The add-member form.
#[derive(Deserialize)]
pub(super) struct MemberForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    destination: Option<String>,
    #[serde(default)]
    comment: Option<String>,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

pub(super) async fn add_member(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<MemberForm>,
) -> Response {
    let disabled = match created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let body = Member {
        source: given(form.source),
        destination: given(form.destination),
        disabled,
        comment: given(form.comment),
    };
    let keys = vec![policy];
    form_change::<Members>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        keys.clone(),
        |def| Members::create(def, &keys, body.clone()),
        |k| format!("/policies/{}", urlencode(&k[0])),
    )
    .await
}

/// The add-quota form.
#[derive(Deserialize)]
pub(super) struct QuotaForm {
    #[serde(default)]
    csrf: String,
    name: String,
    track: String,
    period: String,
    verdict: String,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    release: Option<String>,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

pub(super) async fn add_quota(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<QuotaForm>,
) -> Response {
    let disabled = match created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let Ok(period) = form.period.trim().parse::<u64>() else {
        return error_page(
            Some(&caller),
            &ApiError::invalid("period", "the period must be a whole number of seconds"),
        );
    };
    let body = Quota {
        name: form.name,
        track: form.track,
        period,
        verdict: form.verdict,
        data: given(form.data),
        last_quota: false,
        disabled,
        comment: None,
        release: given(form.release),
        ..Quota::from(&sluice_engine::QuotaDef::default())
    };
    let keys = vec![policy];
    form_change::<Quotas>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        keys.clone(),
        |def| Quotas::create(def, &keys, body.clone()),
        |k| format!("/policies/{}", urlencode(&k[0])),
    )
    .await
}

/// The add-limit form.
#[derive(Deserialize)]
pub(super) struct LimitForm {
    #[serde(default)]
    csrf: String,
    #[serde(rename = "type")]
    kind: String,
    limit: String,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

pub(super) async fn add_limit(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path((policy, quota)): Path<(String, String)>,
    Form(form): Form<LimitForm>,
) -> Response {
    let disabled = match created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let Ok(limit) = form.limit.trim().parse::<u64>() else {
        return error_page(
            Some(&caller),
            &ApiError::invalid("limit", "the limit must be a whole number"),
        );
    };
    let body = Limit {
        kind: form.kind,
        limit,
        disabled,
        comment: None,
    };
    let keys = vec![policy, quota];
    form_change::<Limits>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        keys.clone(),
        |def| Limits::create(def, &keys, body.clone()),
        |k| format!("/policies/{}", urlencode(&k[0])),
    )
    .await
}

/// `/audit`.
pub(super) async fn audit(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(params): Query<api::audit_params::AuditParams>,
) -> Response {
    let entries = match api::audit_params::entries(&state, &caller, params).await {
        Ok(e) => e,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let content = html! {
        h1 { "Audit trail" }
        p.lead { "Every change made through this service, newest first." }
        table {
            thead { tr { th { "When (UTC)" } th { "Account" } th { "From" } th { "Action" } th { "Object" } th { "Change" } } }
            tbody {
                @for e in &entries {
                    tr {
                        td.mono { (utc(e.at_ms)) }
                        td { (e.actor) }
                        td.mono { (e.client) }
                        td { (e.action) }
                        td { code { (e.object) } }
                        td {
                            ul.changes { @for c in changes(e.before.as_ref(), e.after.as_ref()) { li { code { (c) } } } }
                            details {
                                summary.muted { "before and after" }
                                @if let Some(b) = &e.before { p { "Before: " code { (b.to_string()) } } }
                                @if let Some(a) = &e.after { p { "After: " code { (a.to_string()) } } }
                            }
                        }
                    }
                }
                @if entries.is_empty() { tr { td colspan="6" .muted { "No changes yet." } } }
            }
        }
    };
    layout::page("Audit", Some(&caller), Nav::Audit, content).into_response()
}

/// What an audit entry changed, one line per top-level field: `field: old → new` (`∅` for
/// none, `false` for a flag left out); a created object's fields as `field = value`, a
/// deleted one's as `field was value`.
fn changes(before: Option<&serde_json::Value>, after: Option<&serde_json::Value>) -> Vec<String> {
    use serde_json::Value;
    let fields = |v: Option<&Value>| match v {
        Some(Value::Object(m)) => m.clone(),
        _ => serde_json::Map::new(),
    };
    let (old, new) = (fields(before), fields(after));
    // A long value (a whole set, for an import) is cut; "before and after" has it whole.
    let show = |v: Option<&Value>, other: Option<&Value>| match (v, other) {
        // Flags are left out while false.
        (None, Some(Value::Bool(_))) => "false".to_owned(),
        (None, _) => "∅".to_owned(),
        (Some(v), _) => {
            let text = v.to_string();
            match text.char_indices().nth(100) {
                Some((at, _)) => format!("{}…", &text[..at]),
                None => text,
            }
        }
    };
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| match (before.is_some(), after.is_some()) {
            (false, _) => format!("{k} = {}", show(new.get(k), None)),
            (_, false) => format!("{k} was {}", show(old.get(k), None)),
            _ => format!(
                "{k}: {} → {}",
                show(old.get(k), new.get(k)),
                show(new.get(k), old.get(k))
            ),
        })
        .collect()
}

/// `YYYY-MM-DD HH:MM:SS` of ms since the epoch (UTC).
pub(super) fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn audit_changes_are_listed_field_by_field() {
        use serde_json::json;
        let before = json!({"name": "q", "disabled": true, "period": 60});
        let after = json!({"name": "q", "period": 120});
        assert_eq!(
            super::changes(Some(&before), Some(&after)),
            ["disabled: true → false", "period: 60 → 120"]
        );
        assert_eq!(
            super::changes(None, Some(&json!({"source": "@example.org"}))),
            ["source = \"@example.org\""]
        );
        assert_eq!(
            super::changes(Some(&json!({"name": "p"})), None),
            ["name was \"p\""]
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_700_000_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::utc(951_782_400_000), "2000-02-29 00:00:00");
    }
}
