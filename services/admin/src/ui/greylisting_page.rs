//! Greylisting in the pages: the policy page's Greylisting section (the settings this
//! policy sets, what it inherits, enable/disable, a form to add settings), and the
//! Greylisting whitelist page (the static whitelist: list, add, enable/disable, delete; not
//! for domain admins). Changes go through [`crate::change`] with the API's resources
//! ([`crate::api::greylisting`]), so they are validated and audited as the API's are.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;
use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_engine::GreylistingDef;
use sluice_store::AdminRole;

use super::layout::{self, csrf_field, state_badge, Nav};
use super::{error_page, see_other, PageCaller};
use crate::api::greylisting::{
    GreylistWhitelist, GreylistWhitelistEntry, Greylisting, PolicyGreylisting,
};
use crate::auth::Caller;
use crate::change::{self, Action};
use crate::error::ApiError;
use crate::resource::Resource;
use crate::{scope, AppState};

fn can_change(caller: &Caller) -> bool {
    caller.account.role != AdminRole::Viewer
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

/// Each setting: (name, value as set, default).
fn settings_rows(g: &GreylistingDef) -> Vec<(&'static str, Option<String>, &'static str)> {
    let n = |v: Option<u64>| v.map(|v| v.to_string());
    let b = |v: Option<bool>| v.map(|v| if v { "yes" } else { "no" }.to_owned());
    vec![
        (
            "enabled",
            b(g.enabled),
            "yes (a row greylists unless it says no)",
        ),
        ("period", n(g.period).map(|s| s + " s"), "240 s"),
        ("track", g.track.clone(), "SenderIP:/24"),
        ("ipv6_prefix", g.ipv6_prefix.map(|v| format!("/{v}")), "/64"),
        (
            "auth_validity",
            n(g.auth_validity).map(|s| s + " s"),
            "604800 s",
        ),
        (
            "unauth_validity",
            n(g.unauth_validity).map(|s| s + " s"),
            "86400 s",
        ),
        ("auto_whitelist", b(g.auto_whitelist), "no"),
        (
            "auto_whitelist_period",
            n(g.auto_whitelist_period).map(|s| s + " s"),
            "604800 s",
        ),
        ("auto_whitelist_count", n(g.auto_whitelist_count), "100"),
        (
            "auto_whitelist_percentage",
            n(g.auto_whitelist_percentage).map(|s| s + " %"),
            "90 %",
        ),
        ("auto_blacklist", b(g.auto_blacklist), "no"),
        (
            "auto_blacklist_period",
            n(g.auto_blacklist_period).map(|s| s + " s"),
            "604800 s",
        ),
        ("auto_blacklist_count", n(g.auto_blacklist_count), "100"),
        (
            "auto_blacklist_percentage",
            n(g.auto_blacklist_percentage).map(|s| s + " %"),
            "90 %",
        ),
        ("training", b(g.training), "no"),
        (
            "defer_message",
            g.defer_message.clone(),
            "Greylisting in effect, please come back later",
        ),
        (
            "blacklist_message",
            g.blacklist_message.clone(),
            "Greylisting in effect, sending server blacklisted",
        ),
    ]
}

/// The Greylisting section of the policy page of `p` (`base`: the page's path).
pub(super) fn section(caller: &Caller, p: &PolicyDef, base: &str) -> Markup {
    html! {
        h2.greylisting { "Greylisting " span.muted { "(after access control, before quotas: a new client, sender and recipient triplet is deferred once)" } }
        @match &p.greylisting {
            Some(g) => {
                div.card.greylisting {
                    h3 {
                        "Settings " (state_badge(g.disabled))
                        @if can_change(caller) {
                            " "
                            form.inline method="post" action={ (base) "/greylisting/toggle" } {
                                (csrf_field(caller))
                                input type="hidden" name="disabled" value=(if g.disabled { "false" } else { "true" });
                                button.secondary.small type="submit" { @if g.disabled { "Enable" } @else { "Disable" } }
                            }
                        }
                    }
                    @if let Some(c) = &g.comment { p.muted { (c) } }
                    table {
                        thead { tr { th { "Setting" } th { "Value" } } }
                        tbody {
                            @for (name, value, default) in settings_rows(g) {
                                tr {
                                    td { code { (name) } }
                                    td {
                                        @match value {
                                            Some(v) => (v),
                                            None => span.muted { "inherited, else " (default) },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            None => {
                p.muted { "No greylisting settings: this policy does not greylist (unless another matched policy does)." }
                @if can_change(caller) {
                    form.add.greylisting method="post" action={ (base) "/greylisting" } {
                        (csrf_field(caller))
                        label { "Defer for (s)" input type="number" name="period" min="0" placeholder="240"; }
                        label { "Track" input type="text" name="track" placeholder="SenderIP:/24"; }
                        label { "Deferral text" input type="text" name="defer_message" placeholder="Greylisting in effect, please come back later"; }
                        (layout::create_disabled_field())
                        button type="submit" { "Greylist this policy" }
                    }
                }
            }
        }
    }
}

/// Empty form fields mean "not given".
fn given(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// The add-settings form.
#[derive(Deserialize)]
pub(super) struct SettingsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    period: Option<String>,
    #[serde(default)]
    track: Option<String>,
    #[serde(default)]
    defer_message: Option<String>,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

/// Runs a change for a form: errors are pages, success goes to `back`.
async fn form_change<R: Resource>(
    state: &AppState,
    mut caller: Caller,
    csrf: String,
    action: Action,
    keys: Vec<String>,
    edit: impl Fn(&mut PolicySetDef) -> Result<Vec<String>, ApiError>,
    back: &str,
) -> Response {
    caller.csrf_given = Some(csrf);
    match change::apply::<R>(state, &caller, action, &keys, edit).await {
        Ok(_) => see_other(back),
        Err(e) => error_page(Some(&caller), &e),
    }
}

/// `POST /policies/{policy}/greylisting`.
pub(super) async fn add_settings(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let disabled = match layout::created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let period = match given(form.period).map(|p| p.parse::<u64>()) {
        None => None,
        Some(Ok(p)) => Some(p),
        Some(Err(_)) => {
            return error_page(
                Some(&caller),
                &ApiError::invalid("period", "the period must be a whole number of seconds"),
            )
        }
    };
    let body = Greylisting {
        enabled: Some(true),
        period,
        track: given(form.track),
        defer_message: given(form.defer_message),
        disabled,
        ..Greylisting::default()
    };
    let keys = vec![policy.clone()];
    form_change::<PolicyGreylisting>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        keys.clone(),
        |def| PolicyGreylisting::create(def, &keys, body.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// The enable/disable buttons' form.
#[derive(Deserialize)]
pub(super) struct ToggleForm {
    #[serde(default)]
    csrf: String,
    disabled: bool,
}

/// `POST /policies/{policy}/greylisting/toggle`.
pub(super) async fn toggle_settings(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<ToggleForm>,
) -> Response {
    let keys = vec![policy.clone(), "0".to_owned()];
    let action = if form.disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    form_change::<PolicyGreylisting>(
        &state,
        caller,
        form.csrf,
        action,
        keys.clone(),
        |def| PolicyGreylisting::set_disabled(def, &keys, form.disabled).map(|()| keys.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// `GET /greylisting-whitelist`.
pub(super) async fn whitelist(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
) -> Response {
    if let Err(e) = scope::check_groups(&caller.account) {
        return error_page(Some(&caller), &e);
    }
    let def = match state.store.load().await {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e.into()),
    };
    let content = html! {
        h1 { "Greylisting whitelist" }
        p.lead { "Requests matching an enabled entry are never greylisted, whatever their policies say." }
        table.whitelist {
            thead { tr { th { "#" } th { "Source" } th { "Comment" } th { "State" } @if can_change(&caller) { th {} } } }
            tbody {
                @for (i, w) in def.greylisting_whitelist.iter().enumerate() {
                    tr {
                        td { (i) }
                        td { code { (w.source) } }
                        td { (w.comment.as_deref().unwrap_or("")) }
                        td { (state_badge(w.disabled)) }
                        @if can_change(&caller) {
                            td {
                                form.inline method="post" action={ "/greylisting-whitelist/" (i) "/toggle" } {
                                    (csrf_field(&caller))
                                    input type="hidden" name="disabled" value=(if w.disabled { "false" } else { "true" });
                                    button.secondary.small type="submit" { @if w.disabled { "Enable" } @else { "Disable" } }
                                }
                                " "
                                form.inline method="post" action={ "/greylisting-whitelist/" (i) "/delete" } {
                                    (csrf_field(&caller))
                                    button.secondary.small type="submit" { "Delete" }
                                }
                            }
                        }
                    }
                }
                @if def.greylisting_whitelist.is_empty() { tr { td colspan="5" .muted { "No entries." } } }
            }
        }
        @if can_change(&caller) {
            form.add method="post" action="/greylisting-whitelist" {
                (csrf_field(&caller))
                label { "Source" input type="text" name="source" required placeholder="SenderIP:192.0.2.0/24, SenderDomain:.example.org, ReverseDNS:*.example.net"; }
                label { "Comment" input type="text" name="comment"; }
                (layout::create_disabled_field())
                button type="submit" { "Add entry" }
            }
        }
    };
    layout::page(
        "Greylisting whitelist",
        Some(&caller),
        Nav::GreylistingWhitelist,
        content,
    )
    .into_response()
}

/// The add-entry form.
#[derive(Deserialize)]
pub(super) struct EntryForm {
    #[serde(default)]
    csrf: String,
    source: String,
    #[serde(default)]
    comment: Option<String>,
    /// `true` when the form's "create disabled" box is ticked.
    #[serde(default)]
    disabled: Option<String>,
}

/// `POST /greylisting-whitelist`.
pub(super) async fn add_entry(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Form(form): Form<EntryForm>,
) -> Response {
    let disabled = match layout::created_disabled(form.disabled.as_deref()) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let body = GreylistWhitelistEntry {
        source: form.source.trim().to_owned(),
        disabled,
        comment: given(form.comment),
    };
    form_change::<GreylistWhitelist>(
        &state,
        caller,
        form.csrf,
        Action::Create,
        Vec::new(),
        |def| GreylistWhitelist::create(def, &[], body.clone()),
        "/greylisting-whitelist",
    )
    .await
}

/// `POST /greylisting-whitelist/{index}/toggle`.
pub(super) async fn toggle_entry(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(index): Path<String>,
    Form(form): Form<ToggleForm>,
) -> Response {
    let keys = vec![index];
    let action = if form.disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    form_change::<GreylistWhitelist>(
        &state,
        caller,
        form.csrf,
        action,
        keys.clone(),
        |def| GreylistWhitelist::set_disabled(def, &keys, form.disabled).map(|()| keys.clone()),
        "/greylisting-whitelist",
    )
    .await
}

/// The delete buttons' form.
#[derive(Deserialize)]
pub(super) struct DeleteForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /greylisting-whitelist/{index}/delete`.
pub(super) async fn delete_entry(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(index): Path<String>,
    Form(form): Form<DeleteForm>,
) -> Response {
    let keys = vec![index];
    form_change::<GreylistWhitelist>(
        &state,
        caller,
        form.csrf,
        Action::Delete,
        keys.clone(),
        |def| GreylistWhitelist::delete(def, &keys).map(|()| Vec::new()),
        "/greylisting-whitelist",
    )
    .await
}
