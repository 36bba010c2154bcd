//! The metrics listener: `/metrics`, `/healthz`, `/readyz` (from [`sluice_runtime::router`])
//! and, on serve and edge with `http_explain = true`, `POST /explain` (the request as
//! protocol text in the body; the explanation as text back, with live counter levels). It
//! is off by default: it shows policy contents and counter levels to anyone who can reach
//! the port. Served with its own connection cap and idle timeout
//! ([`sluice_runtime::http::serve`]), so HTTP clients cannot use up the descriptors the
//! policy listeners need.

use crate::ready::FrontReady;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use sluice_protocol::PolicyRequest;
use sluice_runtime::http::HttpLimits;
use sluice_runtime::ReadyCheck;
use std::future::Future;
use std::sync::Arc;

/// Serves the endpoints of serve/edge on `listener` until `shutdown` resolves; `POST
/// /explain` only when `explain` is true.
/// The lookups of explained requests are answered as the policy listeners answer them
/// (`dns`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<FrontReady>,
    explain: bool,
    dns: sluice_dns::DnsConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let mut app = sluice_runtime::router(ready.clone());
    if explain {
        let dns = Arc::new(sluice_dns::Answerer::new(dns));
        app = app.merge(
            Router::new()
                .route("/explain", post(explain_handler))
                .with_state((ready, dns)),
        );
    }
    if let Err(e) =
        sluice_runtime::http::serve(listener, app, HttpLimits::default(), shutdown).await
    {
        tracing::error!(error = %e, "Metrics listener failed");
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (roles without an engine) until the process
/// ends.
pub async fn serve_basic(listener: tokio::net::TcpListener, ready: Arc<dyn ReadyCheck>) {
    let app = sluice_runtime::router(ready);
    let forever = std::future::pending();
    if let Err(e) = sluice_runtime::http::serve(listener, app, HttpLimits::default(), forever).await
    {
        tracing::error!(error = %e, "Metrics listener failed");
    }
}

async fn explain_handler(
    State((ready, dns)): State<(Arc<FrontReady>, Arc<sluice_dns::Answerer>)>,
    body: String,
) -> (StatusCode, String) {
    let Some(engine) = ready.engine() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "policies not loaded yet\n".into(),
        );
    };
    match parse_request(&body) {
        Ok(req) => (
            StatusCode::OK,
            explain_answering(engine, &dns, &req).await.to_string(),
        ),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Parses one request in protocol text (the final blank line may be omitted).
pub fn parse_request(text: &str) -> Result<PolicyRequest<'static>, String> {
    PolicyRequest::parse_text(text)
}

/// Explains `req`, answering its lookups (DNS) first, as the policy listeners do.
pub async fn explain_answering(
    engine: &sluice_engine::Engine,
    dns: &sluice_dns::Answerer,
    req: &PolicyRequest<'_>,
) -> sluice_engine::Explanation {
    let mut explanation = dns.explain(engine, req).await;
    add_held(&mut explanation).await;
    explanation
}

/// Adds what the DELAY quotas that counted the request hold (when this server keeps a
/// ledger of held messages).
async fn add_held(explanation: &mut sluice_engine::Explanation) {
    if explanation.delay_queues.is_empty() {
        return;
    }
    let Some(held) = sluice_edge::hold_sink::installed() else {
        return;
    };
    let Ok(messages) = held.list().await else {
        return;
    };
    let now = sluice_engine::Clock::now_ms(&sluice_engine::SystemClock);
    for queue in &explanation.delay_queues {
        let line = sluice_engine::hold::describe_queue(queue, &messages, now);
        // Before the last line (the action).
        let at = explanation.lines.len().saturating_sub(1);
        explanation.lines.insert(at, line);
    }
}
