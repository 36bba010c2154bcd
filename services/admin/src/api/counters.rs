//! Live counters (`/api/counters...`): the level of any quota key and when it frees up, who
//! is limited now (refused in the last minutes), who is close to a limit, and resetting one
//! key (audited). Read from the running counters ([`crate::AdminOptions::counters`]): the
//! in-process state of `sluice serve`, or its Redis with `--redis`; without them the answer
//! is 503.
//!
//! Viewers read; admins and domain admins reset (CSRF-checked for sessions). A domain admin
//! sees and resets only counters of the policies of their domains.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::counters::{
    quota_window, split_key, CounterInfo, CounterQuery, Listing, LiveCounters,
};
use sluice_engine::model::PolicySetDef;
use sluice_engine::track::Track;
use sluice_engine::{compile::LimitKind, PolicyRequest};
use sluice_store::NewAudit;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::ComponentsBuilder;
use utoipa::openapi::{Paths, Required};
use utoipa::{PartialSchema, ToSchema};

use super::body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::{now_ms, scope, AppState};

/// Default of `minutes` for "limited now".
pub const DEFAULT_MINUTES: u64 = 15;
/// Default of `percent` for "close to a limit".
pub const DEFAULT_PERCENT: u64 = 80;
/// Entries listed at most.
const MAX_ROWS: usize = 500;
/// Longest value looked up.
const MAX_VALUE: usize = 320;

/// One counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CounterRecord {
    /// The counter's key (`policy/quota/LimitType/track key`): what a reset names.
    pub key: String,
    /// The policy.
    pub policy: String,
    /// The quota.
    pub quota: String,
    /// The limit type (`MessageCount`, `RecipientCount`, `MessageCumulativeSize`).
    pub limit_type: String,
    /// What is counted (`Sender:user@example.org`, `SenderIP:192.0.2.0/24`, ...).
    pub track: String,
    /// The level in the window now.
    pub used: u64,
    /// The limit.
    pub limit: u64,
    /// The level as a percentage of the limit (0 when the limit is 0).
    pub percent: u64,
    /// When a request was last refused by this counter (ms since the epoch), if known.
    pub refused_at_ms: Option<u64>,
    /// When one more fits again (ms since the epoch); absent when it never does (limit 0).
    pub room_at_ms: Option<u64>,
    /// When the window holds nothing any more (ms since the epoch).
    pub empty_at_ms: u64,
}

impl CounterRecord {
    fn from_info(info: CounterInfo, now: u64) -> Self {
        let (policy, quota, kind, track) = split_key(&info.key)
            .map(|(p, q, k, t)| (p, q, k.to_owned(), t.to_owned()))
            .unwrap_or_default();
        let percent = if info.limit == 0 {
            0
        } else {
            u64::try_from(u128::from(info.used) * 100 / u128::from(info.limit)).unwrap_or(u64::MAX)
        };
        CounterRecord {
            policy,
            quota,
            limit_type: kind,
            track,
            used: info.used,
            limit: info.limit,
            percent,
            refused_at_ms: info.refused_at_ms,
            room_at_ms: info.room_in_ms.map(|ms| now.saturating_add(ms)),
            empty_at_ms: now.saturating_add(info.empty_in_ms),
            key: info.key,
        }
    }
}

/// Query of `GET /api/counters`: the request fields a key is made of (at least one).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LookupParams {
    /// A sender address (Sender tracks).
    pub sender: Option<String>,
    /// A client IP address (SenderIP tracks).
    pub client_address: Option<String>,
    /// A SASL user name (SASLUsername tracks).
    pub sasl_username: Option<String>,
    /// A recipient address (Recipient tracks).
    pub recipient: Option<String>,
}

impl LookupParams {
    /// Whether no field is given.
    pub fn is_empty(&self) -> bool {
        [
            &self.sender,
            &self.client_address,
            &self.sasl_username,
            &self.recipient,
        ]
        .iter()
        .all(|v| v.as_deref().is_none_or(|v| v.trim().is_empty()))
    }
}

/// Query of `GET /api/counters/limited`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct LimitedParams {
    /// Refused within the last this many minutes (default 15, 1 to 1440).
    pub minutes: Option<u64>,
}

/// Query of `GET /api/counters/close`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CloseParams {
    /// At or above this percentage of the limit (default 80, 1 to 100).
    pub percent: Option<u64>,
}

/// Body of `POST /api/counters/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    /// The counter's key, as listed.
    pub key: String,
}

/// Answer of `POST /api/counters/reset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ResetDone {
    /// The counter's key.
    pub key: String,
    /// The level before the reset (0: it counted nothing).
    pub used_before: u64,
}

/// The running counters, or 503.
fn live(state: &AppState) -> Result<&Arc<dyn LiveCounters>, ApiError> {
    state.options.counters.as_ref().ok_or_else(|| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "live counters are not available here: they are read from the process that counts (sluice serve, with or without --redis); the sluice admin role cannot read them yet",
        )
    })
}

fn unavailable(e: sluice_engine::StateError) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        format!("the counters cannot be read now ({e}); try again shortly"),
    )
}

/// Whether `caller` may see the counter `key` of `def` (a domain admin: only counters of a
/// policy of their domains).
fn may_see(caller: &Caller, def: &PolicySetDef, key: &str) -> bool {
    let Some((policy, ..)) = split_key(key) else {
        return false;
    };
    match def.policies.iter().find(|p| p.name == policy) {
        Some(p) => scope::may_see_policy(&caller.account, p),
        None => caller.account.role != sluice_store::AdminRole::DomainAdmin,
    }
}

/// Sub-buckets per quota period the counters are kept with ([`crate::AdminOptions::buckets`]).
fn buckets(state: &AppState) -> u32 {
    state.options.buckets
}

/// The counter `key` as [`LiveCounters::levels`] asks for it: with the limit and window of
/// its quota limit in `def` (limit 0 and a one-minute window when `def` has none now).
fn query_of(state: &AppState, def: &PolicySetDef, key: &str) -> CounterQuery {
    let found = split_key(key).and_then(|(policy, quota, kind, _)| {
        let q = def
            .policies
            .iter()
            .find(|p| p.name == policy)?
            .quotas
            .iter()
            .find(|q| q.name == quota)?;
        let limit = q
            .limits
            .iter()
            .find(|l| l.kind == kind)
            .map_or(0, |l| l.limit);
        Some((limit, quota_window(q.period, buckets(state))?))
    });
    let (limit, window) = found.unwrap_or_else(|| {
        (
            0,
            sluice_engine::window::WindowSpec::new(60_000, buckets(state)),
        )
    });
    CounterQuery {
        key: key.to_owned(),
        limit,
        window,
    }
}

fn now() -> u64 {
    u64::try_from(now_ms()).unwrap_or(0)
}

/// The counters of every quota limit `params` names a key of, as `caller` may see them.
pub async fn lookup(
    state: &AppState,
    caller: &Caller,
    params: &LookupParams,
) -> Result<Vec<CounterRecord>, ApiError> {
    let mut text = String::from("request=smtpd_access_policy\nprotocol_state=RCPT\n");
    let mut given = Vec::new();
    for (name, value) in [
        ("sender", &params.sender),
        ("client_address", &params.client_address),
        ("sasl_username", &params.sasl_username),
        ("recipient", &params.recipient),
    ] {
        let Some(value) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            continue;
        };
        if value.len() > MAX_VALUE || value.contains(['\n', '\r']) {
            return Err(ApiError::invalid(
                name,
                format!("one line of at most {MAX_VALUE} bytes"),
            ));
        }
        if name == "client_address" && value.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::invalid(
                name,
                format!("{value:?} is not an IP address"),
            ));
        }
        text.push_str(&format!("{name}={value}\n"));
        given.push(name);
    }
    if given.is_empty() {
        return Err(ApiError::invalid(
            "sender",
            "give a sender, client_address, sasl_username or recipient to look up",
        ));
    }
    if !given.contains(&"client_address") {
        text.push_str("client_address=192.0.2.1\n");
    }
    let req = PolicyRequest::parse_text(&text).map_err(|e| ApiError::invalid("sender", e))?;
    let counters = live(state)?;
    let def = state.store.load().await?;
    let mut keys = Vec::new();
    for p in def
        .policies
        .iter()
        .filter(|p| scope::may_see_policy(&caller.account, p))
    {
        for q in &p.quotas {
            let Ok(track) = Track::parse(&q.track) else {
                continue;
            };
            let field = match track {
                Track::Sender(_) => "sender",
                Track::Recipient(_) => "recipient",
                Track::SaslUsername => "sasl_username",
                Track::SenderIp { .. } => "client_address",
                Track::Policy => continue,
            };
            if !given.contains(&field) {
                continue;
            }
            let track_key = track.key(&req);
            for l in &q.limits {
                let window = quota_window(q.period, buckets(state));
                if let (Some(kind), Some(window)) = (LimitKind::parse(&l.kind), window) {
                    let key =
                        sluice_engine::engine::counter_key(&p.name, &q.name, kind, &track_key);
                    keys.push(CounterQuery {
                        key,
                        limit: l.limit,
                        window,
                    });
                }
            }
        }
    }
    let infos = counters.levels(&keys).await.map_err(unavailable)?;
    let now = now();
    Ok(infos
        .into_iter()
        .map(|i| CounterRecord::from_info(i, now))
        .collect())
}

/// The counters of `listing` `caller` may see, highest share first.
pub async fn listed(
    state: &AppState,
    caller: &Caller,
    listing: Listing,
) -> Result<Vec<CounterRecord>, ApiError> {
    let counters = live(state)?;
    let def = state.store.load().await?;
    let infos = counters
        .list(listing, MAX_ROWS)
        .await
        .map_err(unavailable)?;
    let now = now();
    Ok(infos
        .into_iter()
        .filter(|i| may_see(caller, &def, &i.key))
        .map(|i| CounterRecord::from_info(i, now))
        .collect())
}

/// "Limited now": counters that refused in the last `minutes`.
pub async fn limited(
    state: &AppState,
    caller: &Caller,
    params: &LimitedParams,
) -> Result<Vec<CounterRecord>, ApiError> {
    let minutes = params.minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=1440).contains(&minutes) {
        return Err(ApiError::invalid("minutes", "must be from 1 to 1440"));
    }
    let since = now().saturating_sub(minutes * 60_000);
    listed(state, caller, Listing::RefusedSince(since)).await
}

/// "Close": counters at or above `percent` of their limit.
pub async fn close(
    state: &AppState,
    caller: &Caller,
    params: &CloseParams,
) -> Result<Vec<CounterRecord>, ApiError> {
    let percent = params.percent.unwrap_or(DEFAULT_PERCENT);
    if !(1..=100).contains(&percent) {
        return Err(ApiError::invalid("percent", "must be from 1 to 100"));
    }
    listed(state, caller, Listing::AtLeastPercent(percent)).await
}

/// Resets the counter `key` for `caller` (audited as `reset` of `counters/KEY`, and recorded
/// in `counter_resets` for the edges of a cluster, see [`sluice_store::CounterReset`]).
pub async fn reset(state: &AppState, caller: &Caller, key: &str) -> Result<ResetDone, ApiError> {
    caller.may_change()?;
    if key.is_empty() || key.len() > 2048 || split_key(key).is_none() {
        return Err(ApiError::invalid(
            "key",
            "expected a counter key as listed: policy/quota/LimitType/track",
        ));
    }
    let counters = live(state)?;
    let def = state.store.load().await?;
    if !may_see(caller, &def, key) {
        return Err(ApiError::forbidden(format!(
            "counter {key:?} is outside the domains of account {:?}",
            caller.account.name
        )));
    }
    let before = counters
        .levels(&[query_of(state, &def, key)])
        .await
        .map_err(unavailable)?
        .pop()
        .map_or(0, |i| i.used);
    counters.reset(key).await.map_err(unavailable)?;
    let entry = NewAudit {
        at_ms: now_ms(),
        actor: caller.account.name.clone(),
        client: caller.client.clone(),
        action: "reset".to_owned(),
        object: format!("counters/{key}"),
        before: Some(serde_json::json!({ "used": before }).to_string()),
        after: Some(serde_json::json!({ "used": 0 }).to_string()),
    };
    // With its audit entry, the reset is recorded for the edges of a cluster: each forgets
    // what it holds locally for the counter (its over-limit memo, its lease) within a second.
    state.store.record_counter_reset(key, &entry).await?;
    tracing::info!(
        account = %caller.account.name,
        client = %caller.client,
        key,
        used_before = before,
        "Admin reset a counter"
    );
    Ok(ResetDone {
        key: key.to_owned(),
        used_before: before,
    })
}

pub(crate) async fn get_lookup(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<LookupParams>,
) -> Result<Json<Vec<CounterRecord>>, ApiError> {
    lookup(&state, &caller, &params).await.map(Json)
}

pub(crate) async fn get_limited(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<LimitedParams>,
) -> Result<Json<Vec<CounterRecord>>, ApiError> {
    limited(&state, &caller, &params).await.map(Json)
}

pub(crate) async fn get_close(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Query(params): Query<CloseParams>,
) -> Result<Json<Vec<CounterRecord>>, ApiError> {
    close(&state, &caller, &params).await.map(Json)
}

pub(crate) async fn post_reset(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<ResetDone>, ApiError> {
    caller.may_change()?;
    let request: ResetRequest = body::parse(&raw)?;
    reset(&state, &caller, &request.key).await.map(Json)
}

/// Adds the counter paths and their schemas to the OpenAPI document.
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
    let json = super::openapi::json_content;
    let records = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/json", json(&CounterRecord::name(), true))
            .build()
    };
    let mut lookup = OperationBuilder::new().summary(Some(
        "The live level of every quota limit counting a key (give sender, client_address, sasl_username or recipient), and when it frees up",
    ));
    for (name, description) in [
        ("sender", "a sender address"),
        ("client_address", "a client IP address"),
        ("sasl_username", "a SASL user name"),
        ("recipient", "a recipient address"),
    ] {
        lookup = lookup.parameter(query(name, description, String::schema()));
    }
    let lookup = lookup.response("200", records("The counters"));
    let limited = OperationBuilder::new()
        .summary(Some(
            "Who is limited now: counters that refused a request in the last minutes",
        ))
        .parameter(query(
            "minutes",
            "within the last this many minutes (default 15, 1 to 1440)",
            u64::schema(),
        ))
        .response(
            "200",
            records("The counters, highest share of the limit first"),
        );
    let close = OperationBuilder::new()
        .summary(Some(
            "Who is close: counters at or above a share of their limit",
        ))
        .parameter(query(
            "percent",
            "at or above this percentage (default 80, 1 to 100)",
            u64::schema(),
        ))
        .response(
            "200",
            records("The counters, highest share of the limit first"),
        );
    let reset = OperationBuilder::new()
        .summary(Some(
            "Reset one counter: its next request starts from zero (audited; not for viewers; domain admins: their domains' counters only)",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json(&ResetRequest::name(), false))
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("Reset")
                .content("application/json", json(&ResetDone::name(), false))
                .build(),
        )
        .response(
            "403",
            ResponseBuilder::new()
                .description("The account may not do this (role, domain, CSRF token)")
                .build(),
        );
    for (path, method, op) in [
        ("/api/counters", HttpMethod::Get, lookup),
        ("/api/counters/limited", HttpMethod::Get, limited),
        ("/api/counters/close", HttpMethod::Get, close),
        ("/api/counters/reset", HttpMethod::Post, reset),
    ] {
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
                    .description("Invalid input; `field` names it")
                    .build(),
            )
            .response(
                "503",
                ResponseBuilder::new()
                    .description("The live counters cannot be read from this process")
                    .build(),
            )
            .build();
        paths.add_path_operation(path, vec![method], op);
    }
    components
        .schema_from::<CounterRecord>()
        .schema_from::<ResetRequest>()
        .schema_from::<ResetDone>()
}
