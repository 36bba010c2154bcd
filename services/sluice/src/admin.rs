//! The admin HTTP listener: `/healthz`, `/readyz` and `POST /explain` (the request as
//! protocol text in the body; the explanation as text back, with live counter levels).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use sluice_engine::Engine;
use sluice_protocol::{PolicyRequest, RequestDecoder};
use std::future::Future;
use std::sync::Arc;

/// Serves the admin endpoints on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    engine: Arc<Engine>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/explain", post(explain))
        .with_state(engine);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(error = %e, "Admin listener failed");
    }
}

/// Serves only `/healthz` (roles without an engine) until the process ends.
pub async fn serve_basic(listener: tokio::net::TcpListener) {
    let app = Router::new().route("/healthz", get(|| async { "ok\n" }));
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "Admin listener failed");
    }
}

async fn ready(State(engine): State<Arc<Engine>>) -> (StatusCode, String) {
    let set = engine.policies();
    (
        StatusCode::OK,
        format!(
            "ready: policy set version {}, {} enabled policies\n",
            set.version,
            set.enabled_policies()
        ),
    )
}

async fn explain(State(engine): State<Arc<Engine>>, body: String) -> (StatusCode, String) {
    match parse_request(&body) {
        Ok(req) => (StatusCode::OK, engine.explain(&req).await.to_string()),
        Err(e) => (StatusCode::BAD_REQUEST, format!("{e}\n")),
    }
}

/// Parses one request in protocol text (the final blank line may be omitted).
pub fn parse_request(text: &str) -> Result<PolicyRequest, String> {
    let mut buf = text.trim_end().as_bytes().to_vec();
    buf.extend_from_slice(b"\n\n");
    let raw = RequestDecoder::default()
        .decode(&mut buf)
        .map_err(|e| format!("not a policy request: {e}"))?
        .ok_or("not a policy request: empty")?;
    PolicyRequest::from_raw(&raw).map_err(|e| format!("cannot evaluate this request: {e}"))
}
