//! `/metrics`, `/healthz` and `/readyz` as an axum [`Router`] each role serves on its
//! metrics listener (and may extend with its own routes).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A boxed future, as readiness checks return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Decides whether the role is ready to serve: `Ok(text)` → 200, `Err(reason)` → 503.
pub trait ReadyCheck: Send + Sync + 'static {
    /// Checks readiness now (bounded in time by the implementation).
    fn check(&self) -> BoxFuture<'_, Result<String, String>>;
}

/// A router serving `GET /metrics` (Prometheus text), `GET /healthz` (200 while the process
/// runs) and `GET /readyz` (200 or 503 with the reason, from `ready`).
pub fn router(ready: Arc<dyn ReadyCheck>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/readyz",
            get(move || {
                let ready = Arc::clone(&ready);
                async move {
                    match ready.check().await {
                        Ok(text) => (StatusCode::OK, format!("ready: {text}\n")),
                        Err(reason) => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("not ready: {reason}\n"),
                        ),
                    }
                }
            }),
        )
}

async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(),
    )
}
