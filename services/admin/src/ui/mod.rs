//! The server-rendered pages (placeholder until the pages land).

use std::sync::Arc;

use axum::Router;

use crate::AppState;

/// Every page route.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
}
