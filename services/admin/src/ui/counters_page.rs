//! The Counters page: look up the live level of a sender, client address or SASL user
//! under every quota; who is limited now (refused in the last minutes) and who is close to
//! a limit (80 % or more), each with a Reset button (not for viewers). Read and reset
//! through [`crate::api::counters`], so the page shows and does what the API does.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::{html, Markup};
use serde::Deserialize;

use super::layout::{self, Nav};
use super::pages::utc;
use super::{error_page, see_other, PageCaller};
use crate::api::counters::{
    self, CloseParams, CounterRecord, LimitedParams, LookupParams, DEFAULT_MINUTES, DEFAULT_PERCENT,
};
use crate::auth::Caller;
use crate::AppState;

/// Query of `GET /counters`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct CountersQuery {
    sender: Option<String>,
    client_address: Option<String>,
    sasl_username: Option<String>,
    minutes: Option<u64>,
    /// The key just reset (shown as a notice).
    reset: Option<String>,
}

/// `GET /counters`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(q): Query<CountersQuery>,
) -> Response {
    let lookup = LookupParams {
        sender: q.sender.clone(),
        client_address: q.client_address.clone(),
        sasl_username: q.sasl_username.clone(),
        recipient: None,
    };
    let found = if lookup.is_empty() {
        None
    } else {
        match counters::lookup(&state, &caller, &lookup).await {
            Ok(rows) => Some(rows),
            Err(e) => return error_page(Some(&caller), &e),
        }
    };
    let minutes = q.minutes.unwrap_or(DEFAULT_MINUTES);
    let limited = match counters::limited(
        &state,
        &caller,
        &LimitedParams {
            minutes: Some(minutes),
        },
    )
    .await
    {
        Ok(rows) => rows,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let close = match counters::close(&state, &caller, &CloseParams { percent: None }).await {
        Ok(rows) => rows,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let content = html! {
        h1 { "Counters" }
        p.lead { "Live quota counters of the running server: look one up, see who is limited now and who is close, reset one." }
        @if let Some(key) = &q.reset {
            div.notice { "Counter " code { (key) } " reset: its next request starts from zero." }
        }
        form.add.lookup method="get" action="/counters" {
            label { "Sender" input type="text" name="sender" value=(value(&q.sender)) placeholder="user@example.org"; }
            label { "Client address" input type="text" name="client_address" value=(value(&q.client_address)) placeholder="192.0.2.7"; }
            label { "SASL user" input type="text" name="sasl_username" value=(value(&q.sasl_username)); }
            button type="submit" { "Look up" }
        }
        @if let Some(rows) = &found {
            h2 { "Levels " span.muted { "(every quota limit counting this key)" } }
            @if rows.is_empty() {
                p.muted { "No quota counts this key: no quota's track uses the fields given." }
            } @else {
                (table(&caller, rows, "lookup"))
            }
        }
        h2 id="limited" { "Limited now " span.muted { "(refused in the last " (minutes) " minutes)" } }
        @if limited.is_empty() {
            p.muted.empty-limited { "Nobody was refused by a quota in the last " (minutes) " minutes." }
        } @else {
            (table(&caller, &limited, "limited"))
        }
        h2 id="close" { "Close to a limit " span.muted { "(" (DEFAULT_PERCENT) " % or more)" } }
        @if close.is_empty() {
            p.muted { "No counter is at " (DEFAULT_PERCENT) " % of its limit or more." }
        } @else {
            (table(&caller, &close, "close"))
        }
    };
    layout::page("Counters", Some(&caller), Nav::Counters, content).into_response()
}

/// Seconds until `at_ms` from now, as text.
fn when(at_ms: u64) -> String {
    let now = u64::try_from(crate::now_ms()).unwrap_or(0);
    let secs = at_ms.saturating_sub(now).div_ceil(1000);
    match secs {
        0 => "now".to_owned(),
        s if s < 120 => format!("in {s} s"),
        s if s < 7200 => format!("in {} min", s.div_ceil(60)),
        s => format!("in {} h", s.div_ceil(3600)),
    }
}

fn table(caller: &Caller, rows: &[CounterRecord], class: &str) -> Markup {
    let may_reset = caller.account.role != sluice_store::AdminRole::Viewer;
    html! {
        table class=(format!("counters {class}")) {
            thead { tr {
                th { "Counted key" } th { "Policy" } th { "Quota" } th { "Limit type" }
                th { "Level" } th { "Last refused (UTC)" } th { "Room again" } th { "Empty" }
                @if may_reset { th {} }
            } }
            tbody {
                @for r in rows {
                    tr data-key=(r.key) {
                        td.mono { (r.track) }
                        td.nowrap { (r.policy) }
                        td.nowrap { (r.quota) }
                        td { (r.limit_type) }
                        td.nowrap {
                            (r.used) " / " (r.limit)
                            " " span class=(if r.percent >= 100 { "badge off" } else if r.percent >= DEFAULT_PERCENT { "badge monitor" } else { "badge on" }) { (r.percent) " %" }
                        }
                        td.mono { @match r.refused_at_ms { Some(ms) => (utc(i64::try_from(ms).unwrap_or(i64::MAX))), None => span.muted { "—" } } }
                        td.nowrap { @match r.room_at_ms { Some(ms) => (when(ms)), None => span.muted { "never (limit 0)" } } }
                        td.nowrap { (when(r.empty_at_ms)) }
                        @if may_reset {
                            td {
                                form.inline.reset method="post" action="/counters/reset" {
                                    (layout::csrf_field(caller))
                                    input type="hidden" name="key" value=(r.key);
                                    button.secondary.small type="submit" { "Reset" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The Reset buttons' form.
#[derive(Deserialize)]
pub(super) struct ResetForm {
    #[serde(default)]
    csrf: String,
    key: String,
}

/// `POST /counters/reset`.
pub(super) async fn reset(
    State(state): State<Arc<AppState>>,
    PageCaller(mut caller): PageCaller,
    Form(form): Form<ResetForm>,
) -> Response {
    caller.csrf_given = Some(form.csrf);
    match counters::reset(&state, &caller, &form.key).await {
        Ok(done) => see_other(&format!("/counters?reset={}", percent(&done.key))),
        Err(e) => error_page(Some(&caller), &e),
    }
}

fn percent(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
