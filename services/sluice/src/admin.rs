//! The metrics listener: `/metrics`, `/healthz`, `/readyz` (from [`sluice_runtime::router`])
//! and, on serve and edge, `POST /explain` (the request as protocol text in the body; the
//! explanation as text back, with live counter levels).

use crate::ready::FrontReady;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use sluice_protocol::{PolicyRequest, RequestDecoder};
use sluice_runtime::ReadyCheck;
use std::future::Future;
use std::sync::Arc;

/// Serves the endpoints of serve/edge on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ready: Arc<FrontReady>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let explain = Router::new()
        .route("/explain", post(explain))
        .with_state(Arc::clone(&ready));
    let app = sluice_runtime::router(ready).merge(explain);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "Metrics listener failed");
    }
}

/// Serves `/metrics`, `/healthz` and `/readyz` (roles without an engine) until the process
/// ends.
pub async fn serve_basic(listener: tokio::net::TcpListener, ready: Arc<dyn ReadyCheck>) {
    if let Err(e) = axum::serve(listener, sluice_runtime::router(ready)).await {
        tracing::error!(error = %e, "Metrics listener failed");
    }
}

async fn explain(State(ready): State<Arc<FrontReady>>, body: String) -> (StatusCode, String) {
    let Some(engine) = ready.engine() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "policies not loaded yet\n".into(),
        );
    };
    match parse_request(&body) {
        Ok(req) => (StatusCode::OK, engine.explain(&req).await.to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Parses one request in protocol text (the final blank line may be omitted).
pub fn parse_request(text: &str) -> Result<PolicyRequest<'static>, String> {
    let mut buf = text.trim_end().as_bytes().to_vec();
    buf.extend_from_slice(b"\n\n");
    let raw = RequestDecoder::default()
        .decode(&mut buf)
        .map_err(|e| format!("not a policy request: {e}"))?
        .ok_or("not a policy request: empty")?;
    PolicyRequest::from_raw(&raw)
        .map(PolicyRequest::into_owned)
        .map_err(|e| format!("cannot evaluate this request: {e}"))
}
