//! The Explain page: a form (fields or a pasted request) sent with GET (it changes nothing),
//! and the explanation below it.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout::{page as frame, Nav};
use super::{error_page, PageCaller};
use crate::explain::{explain, ExplainRequest};
use crate::AppState;

/// `/explain`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Query(request): Query<ExplainRequest>,
) -> Response {
    let result = if request.is_empty() {
        None
    } else {
        match explain(&state, &caller, &request).await {
            Ok(e) => Some(e),
            Err(e) => return error_page(Some(&caller), &e),
        }
    };
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let content = html! {
        h1 { "Explain" }
        p.lead { "What would happen to a request, and why. Nothing is counted." }
        form.add method="get" action="/explain" {
            label { "Protocol state" select name="protocol_state" {
                @for s in ["RCPT", "DATA", "END-OF-MESSAGE", "MAIL", "CONNECT"] {
                    option value=(s) selected[request.protocol_state.as_deref() == Some(s)] { (s) }
                }
            } }
            label { "Sender" input type="text" name="sender" value=(value(&request.sender)) placeholder="user@example.org"; }
            label { "Recipient" input type="text" name="recipient" value=(value(&request.recipient)); }
            label { "Client address" input type="text" name="client_address" value=(value(&request.client_address)) placeholder="192.0.2.1"; }
            label { "SASL user" input type="text" name="sasl_username" value=(value(&request.sasl_username)); }
            label { "Size (bytes)" input type="number" name="size" min="0" value=(request.size.map(|n| n.to_string()).unwrap_or_default()); }
            label { "Server port" input type="number" name="server_port" min="1" max="65535" value=(request.server_port.map(|n| n.to_string()).unwrap_or_default()) placeholder="25, 465, 587"; }
            label { "Policy context" input type="text" name="policy_context" value=(value(&request.policy_context)); }
            button type="submit" { "Explain" }
        }
        details {
            summary.muted { "…or paste a whole request (name=value lines)" }
            form method="get" action="/explain" {
                textarea name="text" rows="8" cols="70" { (value(&request.text)) }
                br;
                button type="submit" { "Explain" }
            }
        }
        @if let Some(e) = result {
            h2 { "Action: " code { (e.action) } }
            @if !e.live_counters {
                p.muted { "Counters shown at zero: no running engine in this process." }
            }
            pre.card { @for l in &e.lines { (l) "\n" } }
        }
    };
    frame("Explain", Some(&caller), Nav::Explain, content).into_response()
}
