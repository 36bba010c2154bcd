//! The JSON API under `/api`: for each [`Resource`], its collection (`GET` list, `POST`
//! create) and its objects (`GET`, `PUT` replace, `DELETE`, `POST .../enable`,
//! `POST .../disable`); the audit trail (`GET /api/audit`); Explain (`POST /api/explain`);
//! the whole policy file (`GET`/`PUT /api/policy-file`, `POST /api/policy-file/preview`);
//! and the OpenAPI document
//! (`GET /api/openapi.json`), built from the same route table ([`openapi`]), so the two
//! cannot drift. Every path needs credentials.

pub mod accounting;
pub mod accounting_rows;
pub mod audit_params;
pub(crate) mod body;
pub mod checkhelo;
pub mod checkspf;
pub mod counters;
pub mod greylisting;
pub mod held;
pub mod history;
pub mod message_caps;
pub mod module_slots;
pub mod openapi;

use std::sync::Arc;

use axum::extract::RawPathParams;
use axum::extract::{rejection::RawPathParamsRejection, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use sluice_engine::model::PolicySetDef;

use crate::auth::Caller;
use crate::change::{self, Action};
use crate::error::ApiError;
use crate::resource::{
    AccessRules, GroupMembers, Groups, Limits, Members, Policies, Quotas, Resource,
};
use crate::{scope, AppState};

pub use audit_params::AuditRecord;

/// Every route of the API.
pub fn routes() -> Router<Arc<AppState>> {
    let router = Router::new()
        .route("/api/audit", get(audit_params::list))
        .route("/api/openapi.json", get(openapi::document))
        .route("/api/explain", post(explain))
        .route(
            "/api/policy-file",
            get(export_policy_file).put(import_policy_file),
        )
        .route("/api/policy-file/preview", post(preview_policy_file))
        .route("/api/history", get(history::list))
        .route("/api/top-senders", get(history::top_senders))
        .route("/api/counters", get(counters::get_lookup))
        .route("/api/counters/limited", get(counters::get_limited))
        .route("/api/counters/close", get(counters::get_close))
        .route("/api/counters/reset", post(counters::post_reset))
        .route("/api/held", get(held::get_list))
        .route("/api/held/sync", post(held::post_sync))
        .route("/api/held/{id}/{action}", post(held::post_act))
        .route("/api/accounting/report", get(accounting::get_report));
    let router = resource_routes::<Policies>(router);
    let router = resource_routes::<Members>(router);
    let router = resource_routes::<AccessRules>(router);
    let router = resource_routes::<Quotas>(router);
    let router = resource_routes::<Limits>(router);
    let router = resource_routes::<Groups>(router);
    let router = resource_routes::<GroupMembers>(router);
    let router = resource_routes::<greylisting::PolicyGreylisting>(router);
    let router = resource_routes::<greylisting::GreylistWhitelist>(router);
    let router = resource_routes::<checkspf::PolicyCheckSpf>(router);
    let router = resource_routes::<message_caps::PolicyMessageCaps>(router);
    let router = resource_routes::<checkhelo::PolicyCheckHelo>(router);
    let router = resource_routes::<checkhelo::HeloBlacklist>(router);
    let router = resource_routes::<checkhelo::HeloWhitelist>(router);
    resource_routes::<accounting_rows::PolicyAccounting>(router)
}

/// The routes of one resource.
fn resource_routes<R: Resource>(router: Router<Arc<AppState>>) -> Router<Arc<AppState>>
where
    R::Body: Clone,
{
    router
        .route(R::COLLECTION, get(list::<R>).post(create::<R>))
        .route(
            R::ITEM,
            get(get_one::<R>).put(update::<R>).delete(delete::<R>),
        )
        .route(&format!("{}/enable", R::ITEM), post(enable::<R>))
        .route(&format!("{}/disable", R::ITEM), post(disable::<R>))
}

/// `POST /api/explain`: what would happen to a request (changes nothing).
async fn explain(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<crate::explain::Explained>, ApiError> {
    let request: crate::explain::ExplainRequest = body::parse(&raw)?;
    crate::explain::explain(&state, &caller, &request)
        .await
        .map(Json)
}

/// `GET /api/policy-file`: the stored policies as a policy file.
async fn export_policy_file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<crate::policy_file::PolicyFile>, ApiError> {
    crate::policy_file::export(&state, &caller).await.map(Json)
}

/// Room for a whole policy file and the JSON around it.
const FILE_BODY: usize = crate::policy_file::MAX_FILE_BYTES + 64 * 1024;

/// `POST /api/policy-file/preview`: what importing a file would change (changes nothing).
async fn preview_policy_file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<crate::policy_file::ImportPreview>, ApiError> {
    let upload: crate::policy_file::PolicyFileUpload = body::parse_at_most(&raw, FILE_BODY)?;
    crate::policy_file::preview(&state, &caller, &upload.text)
        .await
        .map(Json)
}

/// `PUT /api/policy-file`: replaces every policy and group with the file's.
async fn import_policy_file(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<crate::policy_file::ImportPreview>, ApiError> {
    caller.may_change()?;
    let upload: crate::policy_file::PolicyFileUpload = body::parse_at_most(&raw, FILE_BODY)?;
    crate::policy_file::import(&state, &caller, &upload)
        .await
        .map(Json)
}

/// The path parameters in order (none for `/api/policies`).
fn keys(params: Result<RawPathParams, RawPathParamsRejection>) -> Vec<String> {
    params
        .map(|p| p.iter().map(|(_, v)| v.to_owned()).collect())
        .unwrap_or_default()
}

/// The policies as `caller` may read them: 403 when the object is in a policy outside a
/// domain admin's domains, or is a group and the caller a domain admin.
async fn readable<R: Resource>(
    state: &AppState,
    caller: &Caller,
    keys: &[String],
) -> Result<PolicySetDef, ApiError> {
    let mut def = state.store.load().await?;
    if !R::IN_POLICY {
        scope::check_groups(&caller.account)?;
    } else if let Some(name) = keys.first() {
        if let Some(p) = def.policies.iter().find(|p| &p.name == name) {
            scope::check_policy(&caller.account, p)?;
        }
    } else {
        def.policies
            .retain(|p| scope::may_see_policy(&caller.account, p));
    }
    Ok(def)
}

async fn list<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Json<Vec<R::Body>>, ApiError> {
    let keys = keys(params);
    let def = readable::<R>(&state, &caller, &keys).await?;
    R::list(&def, &keys).map(Json)
}

async fn get_one<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Json<R::Body>, ApiError> {
    let keys = keys(params);
    let def = readable::<R>(&state, &caller, &keys).await?;
    R::get(&def, &keys).map(Json)
}

/// The checks that need no body: so a viewer gets 403 whatever it sends.
fn may_change<R: Resource>(caller: &Caller) -> Result<(), ApiError> {
    caller.may_change()?;
    if !R::IN_POLICY {
        scope::check_groups(&caller.account)?;
    }
    Ok(())
}

/// Applies a change and answers with the object after it.
async fn changed<R: Resource>(
    state: &AppState,
    caller: &Caller,
    action: Action,
    keys: &[String],
    edit: impl Fn(&mut PolicySetDef) -> Result<Vec<String>, ApiError>,
) -> Result<Json<R::Body>, ApiError> {
    let after = change::apply::<R>(state, caller, action, keys, edit).await?;
    let def = state.store.load().await?;
    R::get(&def, &after).map(Json)
}

async fn create<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
    raw: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError>
where
    R::Body: Clone,
{
    let keys = keys(params);
    may_change::<R>(&caller)?;
    let body: R::Body = body::parse(&raw)?;
    let created = changed::<R>(&state, &caller, Action::Create, &keys, |def| {
        R::create(def, &keys, body.clone())
    })
    .await?;
    Ok((StatusCode::CREATED, created))
}

async fn update<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
    raw: axum::body::Bytes,
) -> Result<Json<R::Body>, ApiError>
where
    R::Body: Clone,
{
    let keys = keys(params);
    may_change::<R>(&caller)?;
    let body: R::Body = body::parse(&raw)?;
    changed::<R>(&state, &caller, Action::Update, &keys, |def| {
        R::update(def, &keys, body.clone())
    })
    .await
}

async fn delete<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<StatusCode, ApiError> {
    let keys = keys(params);
    change::apply::<R>(&state, &caller, Action::Delete, &keys, |def| {
        R::delete(def, &keys).map(|()| Vec::new())
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn enable<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Json<R::Body>, ApiError> {
    toggle::<R>(&state, &caller, keys(params), false).await
}

async fn disable<R: Resource>(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    params: Result<RawPathParams, RawPathParamsRejection>,
) -> Result<Json<R::Body>, ApiError> {
    toggle::<R>(&state, &caller, keys(params), true).await
}

/// Enables or disables the object at `keys` (also used by the pages).
pub async fn toggle<R: Resource>(
    state: &AppState,
    caller: &Caller,
    keys: Vec<String>,
    disabled: bool,
) -> Result<Json<R::Body>, ApiError> {
    let action = if disabled {
        Action::Disable
    } else {
        Action::Enable
    };
    changed::<R>(state, caller, action, &keys, |def| {
        R::set_disabled(def, &keys, disabled).map(|()| keys.clone())
    })
    .await
}
