//! `GET /api/history` (refused requests, newest first, searchable) and
//! `GET /api/top-senders` (the senders with the most requests or refusals in the last hour
//! or day). Both are read-only; viewers may read them; a domain admin sees only rows whose
//! sender or recipient (top senders: whose sender) is at one of its domains or below them.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_store::{AdminRole, HistoryQuery, RefusalRow, TopQuery};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{ArrayBuilder, ComponentsBuilder, Ref};
use utoipa::openapi::{ContentBuilder, Paths, Required};
use utoipa::{PartialSchema, ToSchema};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::AppState;

/// One refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HistoryRecord {
    /// Grows with every refusal (page with `before_id`).
    pub id: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The process that refused it (its host name).
    pub node: String,
    /// The client address.
    pub client_address: String,
    /// The HELO name.
    pub helo_name: String,
    /// The envelope sender (empty: the null sender).
    pub sender: String,
    /// The envelope recipient.
    pub recipient: String,
    /// The SASL user name (empty: not authenticated).
    pub sasl_username: String,
    /// The policy whose verdict refused it (empty: no policy, e.g. the counter backend
    /// failed and the state-failure action was answered).
    pub policy: String,
    /// The module of that verdict (`Quotas`, `AccessControl`).
    pub module: String,
    /// The action Postfix got (`REJECT`, `DEFER`, `DEFER_IF_PERMIT`, `450`, ...).
    pub action: String,
    /// The action's text.
    pub text: String,
}

impl From<RefusalRow> for HistoryRecord {
    fn from(r: RefusalRow) -> Self {
        let f = r.refusal;
        HistoryRecord {
            id: r.id,
            at_ms: f.at_ms,
            node: f.node,
            client_address: f.client,
            helo_name: f.helo,
            sender: f.sender,
            recipient: f.recipient,
            sasl_username: f.sasl_user,
            policy: f.policy,
            module: f.module,
            action: f.action,
            text: f.text,
        }
    }
}

/// Query of `GET /api/history`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct HistoryParams {
    /// Only senders containing this (case-insensitive).
    pub sender: Option<String>,
    /// Only client addresses starting with this.
    pub client: Option<String>,
    /// Only recipients containing this (case-insensitive).
    pub recipient: Option<String>,
    /// Only refusals older than this id (the next page).
    pub before_id: Option<i64>,
    /// At most this many (default 100, 1 to 1000).
    pub limit: Option<u32>,
}

/// The domains `caller` is limited to (`None`: every row).
fn domains(caller: &Caller) -> Option<Vec<String>> {
    (caller.account.role == AdminRole::DomainAdmin).then(|| caller.account.domains.clone())
}

/// Longest search text accepted.
const MAX_SEARCH: usize = 320;

/// The refusals `caller` may read under `params`, newest first.
pub async fn records(
    state: &AppState,
    caller: &Caller,
    params: HistoryParams,
) -> Result<Vec<HistoryRecord>, ApiError> {
    for (field, value) in [
        ("sender", &params.sender),
        ("client", &params.client),
        ("recipient", &params.recipient),
    ] {
        if value.as_ref().is_some_and(|v| v.len() > MAX_SEARCH) {
            return Err(ApiError::invalid(
                field,
                format!("at most {MAX_SEARCH} bytes"),
            ));
        }
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 1000"));
    }
    let query = HistoryQuery {
        sender: params.sender,
        client: params.client,
        recipient: params.recipient,
        domains: domains(caller),
        before_id: params.before_id,
        limit,
    };
    let rows = state.store.history(&query).await?;
    Ok(rows.into_iter().map(HistoryRecord::from).collect())
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<HistoryParams>,
) -> Result<Json<Vec<HistoryRecord>>, ApiError> {
    records(&state, &caller, params).await.map(Json)
}

/// A sender's counts in the window, summed over every process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TopSenderRecord {
    /// The envelope sender (`<>`: the null sender).
    pub sender: String,
    /// Requests seen (an upper bound: see docs/admin.md, "Top senders").
    pub requests: i64,
    /// Requests refused.
    pub refusals: i64,
}

/// Query of `GET /api/top-senders`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TopParams {
    /// `hour` (default) or `day`.
    pub window: Option<String>,
    /// Order by refusals (and list only refused senders) instead of requests.
    pub refused: Option<bool>,
    /// At most this many (default 20, 1 to 1000).
    pub limit: Option<u32>,
}

/// The window's length in ms, from its name.
pub fn window_ms(window: Option<&str>) -> Result<i64, ApiError> {
    match window.unwrap_or("hour") {
        "hour" => Ok(3_600_000),
        "day" => Ok(86_400_000),
        _ => Err(ApiError::invalid("window", "expected hour or day")),
    }
}

/// The top senders `caller` may read under `params`.
pub async fn top(
    state: &AppState,
    caller: &Caller,
    params: &TopParams,
) -> Result<Vec<TopSenderRecord>, ApiError> {
    let window = window_ms(params.window.as_deref())?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid("limit", "must be from 1 to 1000"));
    }
    // Counts are stored per minute: the window starts at the minute `window` ago.
    let since = crate::now_ms() - window;
    let query = TopQuery {
        since_ms: since - since.rem_euclid(60_000),
        refused: params.refused.unwrap_or(false),
        domains: domains(caller),
        limit,
    };
    let rows = state.store.top_senders(&query).await?;
    Ok(rows
        .into_iter()
        .map(|t| TopSenderRecord {
            sender: t.sender,
            requests: t.requests,
            refusals: t.refusals,
        })
        .collect())
}

pub(crate) async fn top_senders(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<TopParams>,
) -> Result<Json<Vec<TopSenderRecord>>, ApiError> {
    top(&state, &caller, &params).await.map(Json)
}

/// Adds both paths and their schemas to the OpenAPI document.
pub(crate) fn document(paths: &mut Paths, components: ComponentsBuilder) -> ComponentsBuilder {
    let query = |name: &str, description: &str, schema| {
        ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Query)
            .required(Required::False)
            .description(Some(description))
            .schema(Some(schema))
            .build()
    };
    let list_of = |name: &str, description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(
                        ArrayBuilder::new()
                            .items(Ref::from_schema_name(name))
                            .build(),
                    ))
                    .build(),
            )
            .build()
    };
    let mut history = OperationBuilder::new().summary(Some(
        "List refused requests, newest first (domain admins: their domains' only)",
    ));
    for (name, description) in [
        ("sender", "only senders containing this (case-insensitive)"),
        ("client", "only client addresses starting with this"),
        (
            "recipient",
            "only recipients containing this (case-insensitive)",
        ),
    ] {
        history = history.parameter(query(name, description, String::schema()));
    }
    history = history
        .parameter(query(
            "before_id",
            "only refusals older than this id (next page)",
            i64::schema(),
        ))
        .parameter(query(
            "limit",
            "at most this many (default 100, 1 to 1000)",
            u32::schema(),
        ))
        .response("200", list_of(&HistoryRecord::name(), "The refusals"));
    let top = OperationBuilder::new()
        .summary(Some(
            "The senders with the most requests (or refusals) in the last hour or day, over every process",
        ))
        .parameter(query("window", "hour (default) or day", String::schema()))
        .parameter(query("refused", "order by refusals, refused senders only", bool::schema()))
        .parameter(query("limit", "at most this many (default 20, 1 to 1000)", u32::schema()))
        .response("200", list_of(&TopSenderRecord::name(), "The senders"));
    for (path, op) in [("/api/history", history), ("/api/top-senders", top)] {
        let op = op
            .response(
                "401",
                ResponseBuilder::new()
                    .description("No or unknown credentials")
                    .build(),
            )
            .response(
                "422",
                ResponseBuilder::new()
                    .description("Invalid query; `field` names it")
                    .build(),
            )
            .build();
        paths.add_path_operation(path, vec![HttpMethod::Get], op);
    }
    components
        .schema_from::<HistoryRecord>()
        .schema_from::<TopSenderRecord>()
}
