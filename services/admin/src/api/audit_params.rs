//! `GET /api/audit`: the audit trail, newest first. Domain admins see their own changes.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_store::{AdminRole, AuditEntry, AuditQuery};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// One recorded change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditRecord {
    /// Grows with every entry (page with `before_id`).
    pub id: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The account that made the change.
    pub actor: String,
    /// The client address the change came from.
    pub client: String,
    /// `create`, `update`, `delete`, `enable`, `disable`.
    pub action: String,
    /// The object: its API path without `/api/` (`policies/p1/quotas/q1`).
    pub object: String,
    /// The object before (as in the policy file; `null`: it did not exist).
    #[schema(value_type = Object)]
    pub before: Option<serde_json::Value>,
    /// The object after (`null`: it was deleted).
    #[schema(value_type = Object)]
    pub after: Option<serde_json::Value>,
}

impl From<AuditEntry> for AuditRecord {
    fn from(e: AuditEntry) -> Self {
        let parse = |s: Option<String>| s.and_then(|s| serde_json::from_str(&s).ok());
        AuditRecord {
            id: e.id,
            at_ms: e.change.at_ms,
            actor: e.change.actor,
            client: e.change.client,
            action: e.change.action,
            object: e.change.object,
            before: parse(e.change.before),
            after: parse(e.change.after),
        }
    }
}

/// Query of `GET /api/audit`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditParams {
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    /// Only entries older than this id.
    pub before_id: Option<i64>,
    /// Only entries by this account.
    pub actor: Option<String>,
}

/// The entries `caller` may read under `params`.
pub async fn entries(
    state: &AppState,
    caller: &Caller,
    params: AuditParams,
) -> Result<Vec<AuditRecord>, ApiError> {
    let actor = if caller.account.role == AdminRole::DomainAdmin {
        Some(caller.account.name.clone())
    } else {
        params.actor
    };
    let query = AuditQuery {
        before_id: params.before_id,
        actor,
        limit: params.limit.unwrap_or(100),
    };
    let rows = state.store.audit(&query).await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<AuditParams>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    entries(&state, &caller, params).await.map(Json)
}
