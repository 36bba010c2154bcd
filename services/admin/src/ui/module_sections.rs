//! The engine's newer modules in the pages: the policy page's sections for per-message
//! caps, CheckHelo and CheckSPF (one set of settings per policy: what it sets, what it
//! inherits, enable/disable, delete, a form to add) and Accounting (rows: a table, a form
//! to add one), and the HELO lists page (the CheckHelo blacklist and whitelist; not for
//! domain admins). Each is described once ([`SlotPage`], [`RowsPage`], [`ListPage`]): its
//! fields give the table, the form and the JSON body, which goes through the API's
//! resources ([`crate::api::module_slots`]) and [`crate::change`], so pages are validated
//! and audited as the API is.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde_json::{Map, Value};
use sluice_engine::model::{PolicyDef, PolicySetDef};
use sluice_store::AdminRole;

use super::layout::{self, csrf_field, state_badge, Nav};
use super::{error_page, see_other, PageCaller};
use crate::api::accounting_rows::AccountingRowsSlot;
use crate::api::checkhelo::{CheckHeloSlot, HeloBlacklistList, HeloWhitelistList};
use crate::api::checkspf::CheckSpfSlot;
use crate::api::message_caps::MessageCapsSlot;
use crate::api::module_slots::{
    ListResource, ModuleBody, PolicyRows, PolicySlot, RowsResource, SetList, SlotResource,
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

/// How a field is entered and sent.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// yes / no / unset.
    Bool,
    /// A whole number.
    Number,
    /// Text.
    Text,
}

/// One field of a module's body as the pages show and ask for it.
#[derive(Clone, Copy)]
pub(super) struct Field {
    /// The JSON field.
    pub name: &'static str,
    /// How it is entered.
    pub kind: Kind,
    /// The default (shown when unset) or a placeholder.
    pub hint: &'static str,
    /// Asked for by the add form.
    pub in_form: bool,
    /// Required by the add form.
    pub required: bool,
}

const fn f(name: &'static str, kind: Kind, hint: &'static str) -> Field {
    Field {
        name,
        kind,
        hint,
        in_form: true,
        required: false,
    }
}

const fn shown(name: &'static str, kind: Kind, hint: &'static str) -> Field {
    Field {
        name,
        kind,
        hint,
        in_form: false,
        required: false,
    }
}

const fn required(name: &'static str, kind: Kind, hint: &'static str) -> Field {
    Field {
        name,
        kind,
        hint,
        in_form: true,
        required: true,
    }
}

/// A value as the page shows it.
fn show(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::Bool(b) => Some(if *b { "yes" } else { "no" }.to_owned()),
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The input of one field in an add form.
fn input(field: &Field) -> Markup {
    html! {
        label {
            (field.name)
            @match field.kind {
                Kind::Bool => select name=(field.name) {
                    option value="" { "inherit / default" }
                    option value="true" { "yes" }
                    option value="false" { "no" }
                },
                Kind::Number => input type="number" name=(field.name) min="0" placeholder=(field.hint) required[field.required];,
                Kind::Text => input type="text" name=(field.name) placeholder=(field.hint) required[field.required];,
            }
        }
    }
}

/// The JSON body of an add form: empty fields are not given; numbers are checked here so
/// the error names the field.
fn form_body(fields: &[Field], form: &HashMap<String, String>) -> Result<Vec<u8>, ApiError> {
    let mut body = Map::new();
    for field in fields.iter().filter(|f| f.in_form) {
        let Some(raw) = form
            .get(field.name)
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
        else {
            continue;
        };
        let value = match field.kind {
            Kind::Bool => match raw {
                "true" | "on" | "yes" => Value::Bool(true),
                "false" | "no" => Value::Bool(false),
                _ => return Err(ApiError::invalid(field.name, "choose yes or no")),
            },
            Kind::Number => match raw.parse::<u64>() {
                Ok(n) => Value::from(n),
                Err(_) => {
                    return Err(ApiError::invalid(
                        field.name,
                        format!("{} must be a whole number", field.name),
                    ))
                }
            },
            Kind::Text => Value::String(raw.to_owned()),
        };
        body.insert(field.name.to_owned(), value);
    }
    serde_json::to_vec(&Value::Object(body))
        .map_err(|e| ApiError::invalid("", format!("the form could not be encoded: {e}")))
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

fn csrf_of(form: &HashMap<String, String>) -> String {
    form.get("csrf").cloned().unwrap_or_default()
}

fn disabled_of(form: &HashMap<String, String>) -> Result<bool, ApiError> {
    match form.get("disabled").map(String::as_str) {
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        _ => Err(ApiError::invalid("disabled", "write true or false")),
    }
}

/// The enable/disable and delete buttons of the object at `action_base`.
fn buttons(caller: &Caller, action_base: &str, disabled: bool) -> Markup {
    html! {
        @if can_change(caller) {
            form.inline method="post" action={ (action_base) "/toggle" } {
                (csrf_field(caller))
                input type="hidden" name="disabled" value=(if disabled { "false" } else { "true" });
                button.secondary.small type="submit" { @if disabled { "Enable" } @else { "Disable" } }
            }
            " "
            form.inline method="post" action={ (action_base) "/delete" } {
                (csrf_field(caller))
                button.secondary.small type="submit" { "Delete" }
            }
        }
    }
}

/// A per-policy settings module as the policy page shows it.
pub(super) trait SlotPage: PolicySlot {
    /// The section's title.
    const TITLE: &'static str;
    /// The path segment under the policy (`checkspf`), also the section's CSS class.
    const SEGMENT: &'static str;
    /// Where it acts in the chain and what it does.
    const ABOUT: &'static str;
    /// What happens without settings.
    const NONE: &'static str;
    /// Its fields (not `disabled`, `comment`).
    const FIELDS: &'static [Field];
}

impl SlotPage for MessageCapsSlot {
    const TITLE: &'static str = "Message caps";
    const SEGMENT: &'static str = "message-caps";
    const ABOUT: &'static str =
        "(at RCPT and END-OF-MESSAGE: the largest message and the most recipients of one message)";
    const NONE: &'static str =
        "No message caps: messages of any size and recipient count pass (unless another matched policy caps them).";
    const FIELDS: &'static [Field] = &[
        f("max_message_size", Kind::Number, "unlimited (bytes)"),
        f("max_recipients", Kind::Number, "unlimited"),
    ];
}

impl SlotPage for CheckHeloSlot {
    const TITLE: &'static str = "CheckHelo";
    const SEGMENT: &'static str = "checkhelo";
    const ABOUT: &'static str =
        "(the client's HELO name: blacklist, randomisation, invalid or unresolvable names)";
    const NONE: &'static str =
        "No CheckHelo settings: HELO names are not checked (unless another matched policy checks them).";
    const FIELDS: &'static [Field] = &[
        f("use_blacklist", Kind::Bool, "no"),
        f("blacklist_period", Kind::Number, "0 s"),
        f("use_hrp", Kind::Bool, "no"),
        f("hrp_period", Kind::Number, "none (s)"),
        f("hrp_limit", Kind::Number, "none"),
        f("reject_invalid", Kind::Bool, "no"),
        f("reject_ip", Kind::Bool, "no"),
        f("reject_unresolvable", Kind::Bool, "no"),
        f("dns_failure", Kind::Text, "defer"),
    ];
}

impl SlotPage for CheckSpfSlot {
    const TITLE: &'static str = "CheckSPF";
    const SEGMENT: &'static str = "checkspf";
    const ABOUT: &'static str =
        "(the sender's SPF record: refuse failures, add a Received-SPF header)";
    const NONE: &'static str =
        "No CheckSPF settings: SPF is not checked (unless another matched policy checks it).";
    const FIELDS: &'static [Field] = &[
        f("enabled", Kind::Bool, "no"),
        f("reject_failed", Kind::Bool, "no"),
        f("add_header", Kind::Bool, "no"),
    ];
}

/// The section of one per-policy settings module on the policy page of `p`.
fn slot_section<S: SlotPage>(caller: &Caller, p: &PolicyDef, base: &str) -> Markup {
    let action = format!("{base}/{}", S::SEGMENT);
    html! {
        h2 class=(S::SEGMENT) { (S::TITLE) " " span.muted { (S::ABOUT) } }
        @match S::slot(p) {
            Some(d) => {
                @let body = serde_json::to_value(S::Body::from_def(d)).unwrap_or_default();
                @let disabled = body["disabled"].as_bool().unwrap_or(false);
                div class={ "card " (S::SEGMENT) } {
                    h3 { "Settings " (state_badge(disabled)) " " (buttons(caller, &action, disabled)) }
                    @if let Some(c) = body["comment"].as_str() { p.muted { (c) } }
                    table {
                        thead { tr { th { "Setting" } th { "Value" } } }
                        tbody {
                            @for field in S::FIELDS {
                                tr {
                                    td { code { (field.name) } }
                                    td {
                                        @match show(&body[field.name]) {
                                            Some(v) => (v),
                                            None => span.muted { "inherited, else " (field.hint) },
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            None => {
                p.muted { (S::NONE) }
                @if can_change(caller) {
                    form class={ "add " (S::SEGMENT) } method="post" action=(action) {
                        (csrf_field(caller))
                        @for field in S::FIELDS.iter().filter(|f| f.in_form) { (input(field)) }
                        label { "comment" input type="text" name="comment"; }
                        (layout::create_disabled_field())
                        button type="submit" { "Add " (S::TITLE) " settings" }
                    }
                }
            }
        }
    }
}

/// The fields of the add forms besides the module's own.
const COMMENT: Field = f("comment", Kind::Text, "");
/// The "create disabled" box ([`layout::create_disabled_field`]): ticked, the new object
/// starts disabled.
const DISABLED: Field = f("disabled", Kind::Bool, "");

/// `POST /policies/{policy}/<module>`.
async fn add_slot<S: SlotPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fields: Vec<Field> = S::FIELDS
        .iter()
        .copied()
        .chain([COMMENT, DISABLED])
        .collect();
    let body =
        match form_body(&fields, &form).and_then(|raw| crate::api::body::parse::<S::Body>(&raw)) {
            Ok(b) => b,
            Err(e) => return error_page(Some(&caller), &e),
        };
    let keys = vec![policy.clone()];
    form_change::<SlotResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Create,
        keys.clone(),
        |def| SlotResource::<S>::create(def, &keys, body.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// `POST /policies/{policy}/<module>/toggle`.
async fn toggle_slot<S: SlotPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let disabled = match disabled_of(&form) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let keys = vec![policy.clone(), "0".to_owned()];
    let action = if disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    form_change::<SlotResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        action,
        keys.clone(),
        |def| SlotResource::<S>::set_disabled(def, &keys, disabled).map(|()| keys.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// `POST /policies/{policy}/<module>/delete`.
async fn delete_slot<S: SlotPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let keys = vec![policy.clone(), "0".to_owned()];
    form_change::<SlotResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Delete,
        keys.clone(),
        |def| SlotResource::<S>::delete(def, &keys).map(|()| Vec::new()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// A per-policy rows module as the policy page shows it.
pub(super) trait RowsPage: PolicyRows {
    /// The section's title.
    const TITLE: &'static str;
    /// The path segment under the policy (`accounting`), also the section's CSS class.
    const SEGMENT: &'static str;
    /// What it does.
    const ABOUT: &'static str;
    /// Its fields (not `disabled`, `comment`).
    const FIELDS: &'static [Field];
    /// The table's columns: a header and the fields shown in it (several: each set one as
    /// `field: value`).
    const COLUMNS: &'static [(&'static str, &'static [&'static str])];
}

impl RowsPage for AccountingRowsSlot {
    const TITLE: &'static str = "Accounting";
    const SEGMENT: &'static str = "accounting";
    const ABOUT: &'static str =
        "(after quotas: messages, recipients and bytes per key per calendar period; totals on the Accounting page)";
    const FIELDS: &'static [Field] = &[
        required("name", Kind::Text, "daily"),
        required("track", Kind::Text, "Sender:user@domain"),
        required("period", Kind::Text, "day, week or month"),
        f("time_zone", Kind::Text, "UTC"),
        f("message_count_limit", Kind::Number, "none"),
        f("recipient_count_limit", Kind::Number, "none"),
        f("size_limit", Kind::Number, "none (bytes)"),
        f("verdict", Kind::Text, "none: count only"),
        f("data", Kind::Text, "text or target"),
        shown("last_accounting", Kind::Bool, "no"),
    ];
    const COLUMNS: &'static [(&'static str, &'static [&'static str])] = &[
        ("Name", &["name"]),
        ("Track", &["track"]),
        ("Period", &["period", "time_zone"]),
        (
            "Limits",
            &["message_count_limit", "recipient_count_limit", "size_limit"],
        ),
        ("Verdict", &["verdict", "data", "last_accounting"]),
    ];
}

/// One cell of a rows table: a single field's value (or a dash), or each set field of
/// several as `field: value` (unset and `false` left out).
fn cell(row: &Value, fields: &[&str]) -> Markup {
    html! {
        @if let [one] = fields {
            @match show(&row[*one]) { Some(v) => (v), None => span.muted { "–" } }
        } @else {
            @let set: Vec<(&str, String)> = fields
                .iter()
                .filter(|f| !matches!(row[**f], Value::Null | Value::Bool(false)))
                .filter_map(|f| show(&row[*f]).map(|v| (*f, v)))
                .collect();
            @for (i, (f, v)) in set.iter().enumerate() {
                @if i > 0 { br; }
                span.muted { (f) ": " } (v)
            }
            @if set.is_empty() { span.muted { "–" } }
        }
    }
}

/// The section of one rows module on the policy page of `p`.
fn rows_section<S: RowsPage>(caller: &Caller, p: &PolicyDef, base: &str) -> Markup {
    let rows: Vec<Value> = S::rows(p)
        .iter()
        .map(|d| serde_json::to_value(S::Body::from_def(d)).unwrap_or_default())
        .collect();
    html! {
        h2 class=(S::SEGMENT) { (S::TITLE) " " span.muted { (S::ABOUT) } }
        table class=(S::SEGMENT) {
            thead { tr {
                th { "#" }
                @for (header, _) in S::COLUMNS { th { (header) } }
                th { "Comment" } th { "State" }
                @if can_change(caller) { th {} }
            } }
            tbody {
                @for (i, row) in rows.iter().enumerate() {
                    @let disabled = row["disabled"].as_bool().unwrap_or(false);
                    tr {
                        td { (i) }
                        @for (_, fields) in S::COLUMNS { td { (cell(row, fields)) } }
                        td { (row["comment"].as_str().unwrap_or("")) }
                        td { (state_badge(disabled)) }
                        @if can_change(caller) {
                            td { (buttons(caller, &format!("{base}/{}/{i}", S::SEGMENT), disabled)) }
                        }
                    }
                }
                @if rows.is_empty() { tr { td colspan=(S::COLUMNS.len() + 4) .muted { "None." } } }
            }
        }
        @if can_change(caller) {
            form class={ "add " (S::SEGMENT) } method="post" action={ (base) "/" (S::SEGMENT) } {
                (csrf_field(caller))
                @for field in S::FIELDS.iter().filter(|f| f.in_form) { (input(field)) }
                label { "comment" input type="text" name="comment"; }
                (layout::create_disabled_field())
                button type="submit" { "Add " (S::TITLE) " row" }
            }
        }
    }
}

/// `POST /policies/{policy}/<module>`.
async fn add_row<S: RowsPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(policy): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fields: Vec<Field> = S::FIELDS
        .iter()
        .copied()
        .chain([COMMENT, DISABLED])
        .collect();
    let body =
        match form_body(&fields, &form).and_then(|raw| crate::api::body::parse::<S::Body>(&raw)) {
            Ok(b) => b,
            Err(e) => return error_page(Some(&caller), &e),
        };
    let keys = vec![policy.clone()];
    form_change::<RowsResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Create,
        keys.clone(),
        |def| RowsResource::<S>::create(def, &keys, body.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// `POST /policies/{policy}/<module>/{index}/toggle`.
async fn toggle_row<S: RowsPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path((policy, index)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let disabled = match disabled_of(&form) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let keys = vec![policy.clone(), index];
    let action = if disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    form_change::<RowsResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        action,
        keys.clone(),
        |def| RowsResource::<S>::set_disabled(def, &keys, disabled).map(|()| keys.clone()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// `POST /policies/{policy}/<module>/{index}/delete`.
async fn delete_row<S: RowsPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path((policy, index)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let keys = vec![policy.clone(), index];
    form_change::<RowsResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Delete,
        keys.clone(),
        |def| RowsResource::<S>::delete(def, &keys).map(|()| Vec::new()),
        &format!("/policies/{}", urlencode(&policy)),
    )
    .await
}

/// The sections that come between access control and greylisting, in chain order.
pub(super) fn before_greylisting(caller: &Caller, p: &PolicyDef, base: &str) -> Markup {
    html! {
        (slot_section::<MessageCapsSlot>(caller, p, base))
        (slot_section::<CheckHeloSlot>(caller, p, base))
        (slot_section::<CheckSpfSlot>(caller, p, base))
    }
}

/// The sections that come after quotas, in chain order.
pub(super) fn after_quotas(caller: &Caller, p: &PolicyDef, base: &str) -> Markup {
    rows_section::<AccountingRowsSlot>(caller, p, base)
}

/// A set-wide list as the HELO lists page shows it.
pub(super) trait ListPage: SetList {
    /// The list's title.
    const TITLE: &'static str;
    /// Its page path (`/checkhelo-blacklist`), also its CSS class.
    const PATH: &'static str;
    /// What it does.
    const ABOUT: &'static str;
    /// A placeholder for [`SetList::KEY_FIELD`].
    const HINT: &'static str;
}

impl ListPage for HeloBlacklistList {
    const TITLE: &'static str = "HELO blacklist";
    const PATH: &'static str = "/checkhelo-blacklist";
    const ABOUT: &'static str =
        "Clients using one of these HELO names (case-insensitive; * stands for any characters) are rejected by policies with use_blacklist.";
    const HINT: &'static str = "localhost, *.localdomain";
}

impl ListPage for HeloWhitelistList {
    const TITLE: &'static str = "CheckHelo whitelist";
    const PATH: &'static str = "/checkhelo-whitelist";
    const ABOUT: &'static str = "Clients in these networks skip every HELO check.";
    const HINT: &'static str = "SenderIP:192.0.2.0/24";
}

fn list_section<S: ListPage>(caller: &Caller, def: &PolicySetDef) -> Markup {
    let entries: Vec<Value> = S::entries(def)
        .iter()
        .map(|d| serde_json::to_value(S::Body::from_def(d)).unwrap_or_default())
        .collect();
    let class = S::PATH.trim_start_matches('/');
    html! {
        h2 { (S::TITLE) }
        p.lead { (S::ABOUT) }
        table class=(class) {
            thead { tr { th { "#" } th { (S::KEY_FIELD) } th { "Comment" } th { "State" } @if can_change(caller) { th {} } } }
            tbody {
                @for (i, e) in entries.iter().enumerate() {
                    @let disabled = e["disabled"].as_bool().unwrap_or(false);
                    tr {
                        td { (i) }
                        td { code { (e[S::KEY_FIELD].as_str().unwrap_or("")) } }
                        td { (e["comment"].as_str().unwrap_or("")) }
                        td { (state_badge(disabled)) }
                        @if can_change(caller) { td { (buttons(caller, &format!("{}/{i}", S::PATH), disabled)) } }
                    }
                }
                @if entries.is_empty() { tr { td colspan="5" .muted { "No entries." } } }
            }
        }
        @if can_change(caller) {
            form class={ "add " (class) } method="post" action=(S::PATH) {
                (csrf_field(caller))
                label { (S::KEY_FIELD) input type="text" name=(S::KEY_FIELD) required placeholder=(S::HINT); }
                label { "comment" input type="text" name="comment"; }
                (layout::create_disabled_field())
                button type="submit" { "Add entry" }
            }
        }
    }
}

/// `GET /checkhelo-lists`: the HELO blacklist and the CheckHelo whitelist.
pub(super) async fn helo_lists(
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
        h1 { "HELO lists" }
        p.lead { "Set-wide lists of CheckHelo; each policy's CheckHelo settings are on its page." }
        (list_section::<HeloBlacklistList>(&caller, &def))
        (list_section::<HeloWhitelistList>(&caller, &def))
    };
    layout::page("HELO lists", Some(&caller), Nav::HeloLists, content).into_response()
}

/// Where list forms go back to.
const LISTS_PAGE: &str = "/checkhelo-lists";

/// `POST /<list>`.
async fn add_entry<S: ListPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let fields = [f(S::KEY_FIELD, Kind::Text, ""), COMMENT, DISABLED];
    let body =
        match form_body(&fields, &form).and_then(|raw| crate::api::body::parse::<S::Body>(&raw)) {
            Ok(b) => b,
            Err(e) => return error_page(Some(&caller), &e),
        };
    form_change::<ListResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Create,
        Vec::new(),
        |def| ListResource::<S>::create(def, &[], body.clone()),
        LISTS_PAGE,
    )
    .await
}

/// `POST /<list>/{index}/toggle`.
async fn toggle_entry<S: ListPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(index): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let disabled = match disabled_of(&form) {
        Ok(d) => d,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let keys = vec![index];
    let action = if disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    form_change::<ListResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        action,
        keys.clone(),
        |def| ListResource::<S>::set_disabled(def, &keys, disabled).map(|()| keys.clone()),
        LISTS_PAGE,
    )
    .await
}

/// `POST /<list>/{index}/delete`.
async fn delete_entry<S: ListPage>(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Path(index): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let keys = vec![index];
    form_change::<ListResource<S>>(
        &state,
        caller,
        csrf_of(&form),
        Action::Delete,
        keys.clone(),
        |def| ListResource::<S>::delete(def, &keys).map(|()| Vec::new()),
        LISTS_PAGE,
    )
    .await
}

/// The routes of these pages.
pub(super) fn routes(router: axum::Router<Arc<AppState>>) -> axum::Router<Arc<AppState>> {
    use axum::routing::{get, post};
    fn slot<S: SlotPage>(r: axum::Router<Arc<AppState>>) -> axum::Router<Arc<AppState>> {
        let base = format!("/policies/{{policy}}/{}", S::SEGMENT);
        r.route(&base, post(add_slot::<S>))
            .route(&format!("{base}/toggle"), post(toggle_slot::<S>))
            .route(&format!("{base}/delete"), post(delete_slot::<S>))
    }
    fn rows<S: RowsPage>(r: axum::Router<Arc<AppState>>) -> axum::Router<Arc<AppState>> {
        let base = format!("/policies/{{policy}}/{}", S::SEGMENT);
        r.route(&base, post(add_row::<S>))
            .route(&format!("{base}/{{index}}/toggle"), post(toggle_row::<S>))
            .route(&format!("{base}/{{index}}/delete"), post(delete_row::<S>))
    }
    fn list<S: ListPage>(r: axum::Router<Arc<AppState>>) -> axum::Router<Arc<AppState>> {
        r.route(S::PATH, post(add_entry::<S>))
            .route(
                &format!("{}/{{index}}/toggle", S::PATH),
                post(toggle_entry::<S>),
            )
            .route(
                &format!("{}/{{index}}/delete", S::PATH),
                post(delete_entry::<S>),
            )
    }
    let router = slot::<MessageCapsSlot>(router);
    let router = slot::<CheckHeloSlot>(router);
    let router = slot::<CheckSpfSlot>(router);
    let router = rows::<AccountingRowsSlot>(router);
    let router = list::<HeloBlacklistList>(router);
    let router = list::<HeloWhitelistList>(router);
    router.route(LISTS_PAGE, get(helo_lists))
}
