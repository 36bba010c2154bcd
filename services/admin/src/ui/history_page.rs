//! The History page (refused requests, searchable by sender, client address and recipient,
//! newest first, 100 a page) and the Top senders page (last hour or day, by requests or by
//! refusals). Both read through [`crate::api::history`], so they show what the API does
//! (domain admins: their domains only). Every value is escaped by maud.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{self, Nav};
use super::pages::utc;
use super::{error_page, PageCaller};
use crate::api::history::{self, HistoryParams, TopParams};
use crate::AppState;

/// Rows per History page.
const PAGE: u32 = 100;

/// `GET /history`.
pub(super) async fn history(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(params): Query<HistoryParams>,
) -> Response {
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let (sender, client, recipient) = (
        value(&params.sender),
        value(&params.client),
        value(&params.recipient),
    );
    let query = HistoryParams {
        limit: Some(PAGE),
        ..params
    };
    let rows = match history::records(&state, &caller, query).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let next = (rows.len() == PAGE as usize)
        .then(|| rows.last().map(|r| r.id))
        .flatten()
        .map(|id| {
            let mut q = form_urlencoded(&[
                ("sender", &sender),
                ("client", &client),
                ("recipient", &recipient),
            ]);
            q.push_str(&format!("&before_id={id}"));
            format!("/history?{q}")
        });
    let content = html! {
        h1 { "History" }
        p.lead { "Refused requests, newest first, from every process writing to this database." }
        form.add method="get" action="/history" {
            label { "Sender contains" input type="text" name="sender" value=(sender) placeholder="user@example.org"; }
            label { "Client address starts with" input type="text" name="client" value=(client) placeholder="192.0.2."; }
            label { "Recipient contains" input type="text" name="recipient" value=(recipient); }
            button type="submit" { "Search" }
        }
        table {
            thead { tr {
                th { "When (UTC)" } th { "Client" } th { "HELO" } th { "Sender" } th { "Recipient" }
                th { "SASL user" } th { "Policy" } th { "Module" } th { "Action" } th { "Node" }
            } }
            tbody {
                @for r in &rows {
                    tr {
                        td.mono { (utc(r.at_ms)) }
                        td.mono { (r.client_address) }
                        td { (r.helo_name) }
                        td { @if r.sender.is_empty() { span.muted { "<>" } } @else { (r.sender) } }
                        td { (r.recipient) }
                        td { (r.sasl_username) }
                        td { (r.policy) }
                        td { (r.module) }
                        td { code { (r.action) } " " (r.text) }
                        td.muted { (r.node) }
                    }
                }
                @if rows.is_empty() { tr { td colspan="10" .muted { "No refusals." } } }
            }
        }
        @if let Some(next) = next {
            p { a href=(next) { "Older refusals →" } }
        }
    };
    layout::page("History", Some(&caller), Nav::History, content).into_response()
}

/// `GET /top-senders`.
pub(super) async fn top_senders(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(params): Query<TopParams>,
) -> Response {
    let rows = match history::top(&state, &caller, &params).await {
        Ok(r) => r,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let window = params.window.as_deref().unwrap_or("hour");
    let refused = params.refused.unwrap_or(false);
    let link = |w: &str, r: bool, label: &str| {
        let current = w == window && r == refused;
        html! {
            a href=(format!("/top-senders?window={w}&refused={r}")) class=[current.then_some("current")] { (label) }
        }
    };
    let content = html! {
        h1 { "Top senders" }
        p.lead {
            "Senders with the most requests or refusals, summed over every process. Counts are
             upper bounds (each process keeps its busiest senders per minute)."
        }
        p.tabs {
            (link("hour", false, "Last hour")) " · "
            (link("day", false, "Last day")) " · "
            (link("hour", true, "Refused, last hour")) " · "
            (link("day", true, "Refused, last day"))
        }
        table {
            thead { tr { th { "Sender" } th { "Requests" } th { "Refused" } th { "" } } }
            tbody {
                @for r in &rows {
                    tr {
                        td { (r.sender) }
                        td.mono { (r.requests) }
                        td.mono { (r.refusals) }
                        td { @if r.refusals > 0 {
                            a href=(format!("/history?{}", form_urlencoded(&[("sender", &r.sender)]))) { "History" }
                        } }
                    }
                }
                @if rows.is_empty() { tr { td colspan="4" .muted { "No senders counted in this window." } } }
            }
        }
    };
    layout::page("Top senders", Some(&caller), Nav::TopSenders, content).into_response()
}

/// `name=value&...` with values percent-encoded (empty values left out).
fn form_urlencoded(pairs: &[(&str, &String)]) -> String {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", percent(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn percent(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'@') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        let s = "a b&c=<x>@y".to_string();
        let empty = String::new();
        assert_eq!(
            form_urlencoded(&[("sender", &s), ("client", &empty)]),
            "sender=a%20b%26c%3D%3Cx%3E@y"
        );
    }
}
