//! Held messages (`/api/held...`, docs/delay.md): what DELAY quotas hold, in arrival order
//! with each queue's estimated release; releasing, returning or deleting one (audited); and
//! the release agents' sync (`POST /api/held/sync`): an agent reports its MTA's queue and
//! learns what to release, return and delete.
//!
//! Read from the server's ledger ([`crate::AdminOptions::held`]); without one the answer
//! is 503. Viewers read; admins act and sync; domain admins see and act on the messages of
//! their domains' policies only, and do not sync (an agent acts for a whole MTA).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use sluice_engine::hold::{HeldMessage, HoldError, QueuedMessage, SharedHeld, SyncAnswer};
use sluice_engine::model::PolicySetDef;
use sluice_store::{AdminRole, NewAudit};
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

/// Most queue entries one sync may report (a hold queue larger than this is reported in
/// part: the rest waits for the next sync).
pub const MAX_SYNC_QUEUE: usize = 100_000;

/// One held message as operators see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HeldRecord {
    /// Its number (arrival order).
    pub id: u64,
    /// The MTA whose hold queue has it (the address of its policy connection).
    pub mta: String,
    /// Postfix's queue ID.
    pub queue_id: String,
    /// The envelope sender.
    pub sender: String,
    /// The policy of the DELAY quota holding it.
    pub policy: String,
    /// The DELAY quota.
    pub quota: String,
    /// What the quota tracks for it (`Sender:user@example.org`).
    pub track: String,
    /// `held` (waiting for room), `releasing`, `returning` or `deleting` (its agent is to
    /// act on it).
    pub state: String,
    /// Its place among its queue's waiting messages (1 = next); 0 once it is leaving.
    pub position: u64,
    /// Its recipients.
    pub recipients: u64,
    /// Its size in bytes.
    pub size: u64,
    /// When it was held (ms since the epoch).
    pub held_at_ms: u64,
    /// `room` or `paced`.
    pub release: String,
    /// When it is expected to leave (ms since the epoch; waiting messages, when the
    /// counters can be read and ever have room): an estimate, see
    /// `sluice_engine::hold::estimated_release_ms`.
    pub estimated_release_at_ms: Option<u64>,
    /// When it is returned or released regardless of room (ms since the epoch).
    pub expires_at_ms: u64,
    /// What happens then: `return` or `release`.
    pub on_expiry: String,
}

/// An agent's report of its MTA's queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    /// The MTA, as Sluice sees its policy connections (its address, e.g. `127.0.0.1`).
    pub mta: String,
    /// Every message in its queue (`postqueue -j`): queue ID and queue name.
    pub queue: Vec<QueueEntry>,
}

/// One message of an MTA's queue.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QueueEntry {
    /// The queue ID.
    pub queue_id: String,
    /// The queue it is in (`hold`, `incoming`, `active`, `deferred`, `maildrop`).
    pub queue_name: String,
}

/// What an agent is to do.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SyncReply {
    /// Queue IDs to release (`postsuper -H`).
    pub release: Vec<String>,
    /// Queue IDs to return to their senders (`postsuper -f`).
    pub r#return: Vec<String>,
    /// Queue IDs to delete (`postsuper -d`).
    pub delete: Vec<String>,
    /// Messages of this MTA still waiting for room.
    pub waiting: u64,
    /// Held messages of this MTA the ledger forgot: gone from the hold queue.
    pub forgotten: u64,
    /// Messages in the hold queue not held by Sluice.
    pub unknown: u64,
}

impl From<SyncAnswer> for SyncReply {
    fn from(a: SyncAnswer) -> Self {
        SyncReply {
            release: a.release,
            r#return: a.r#return,
            delete: a.delete,
            waiting: a.waiting as u64,
            forgotten: a.gone.len() as u64,
            unknown: a.unknown as u64,
        }
    }
}

fn ledger(state: &AppState) -> Result<&SharedHeld, ApiError> {
    state.options.held.as_ref().ok_or_else(|| {
        ApiError::unavailable(
            "this server keeps no ledger of held messages (sluice serve on SQLite or with --redis keeps one; sluice admin reads the quota services' when started with --quota)",
        )
    })
}

fn failed(e: HoldError) -> ApiError {
    match e {
        HoldError::NotFound(id) => ApiError::not_found(format!("no held message {id}")),
        other => ApiError::unavailable(other.to_string()),
    }
}

/// Whether `caller` may see messages held by `policy`'s quotas.
fn may_see(caller: &Caller, def: &PolicySetDef, policy: &str) -> bool {
    match caller.account.role {
        AdminRole::Admin | AdminRole::Viewer => true,
        AdminRole::DomainAdmin => def
            .policies
            .iter()
            .find(|p| p.name == policy)
            .is_some_and(|p| scope::may_see_policy(&caller.account, p)),
    }
}

/// Each queue's room: ms until its first waiting message's counters have room for one
/// unit (the latest of them), read from the live counters; queues whose counters cannot be
/// read, or never have room, are left out.
async fn rooms(
    counters: Option<&Arc<dyn sluice_engine::LiveCounters>>,
    messages: &[HeldMessage],
) -> std::collections::HashMap<String, u64> {
    let Some(counters) = counters else {
        return Default::default();
    };
    // The first waiting message of each queue (the list is in arrival order).
    let mut heads = std::collections::HashMap::<String, &HeldMessage>::new();
    for m in messages
        .iter()
        .filter(|m| m.state == sluice_engine::hold::HeldState::Held)
    {
        heads.entry(m.request.queue_key()).or_insert(m);
    }
    let queries: Vec<sluice_engine::counters::CounterQuery> = heads
        .values()
        .flat_map(|h| h.request.needs.iter())
        .map(|n| sluice_engine::counters::CounterQuery {
            key: n.key.clone(),
            limit: n.limit,
            window: n.window(),
        })
        .collect();
    let Ok(levels) = counters.levels(&queries).await else {
        return Default::default();
    };
    let room_of: std::collections::HashMap<&str, Option<u64>> = levels
        .iter()
        .map(|i| (i.key.as_str(), i.room_in_ms))
        .collect();
    heads
        .into_iter()
        .filter_map(|(queue, h)| {
            let room = h
                .request
                .needs
                .iter()
                .try_fold(0u64, |at, n| Some(at.max((*room_of.get(n.key.as_str())?)?)))?;
            Some((queue, room))
        })
        .collect()
}

fn records(
    messages: &[HeldMessage],
    rooms: &std::collections::HashMap<String, u64>,
) -> Vec<HeldRecord> {
    let now = u64::try_from(now_ms()).unwrap_or(0);
    let mut positions = std::collections::HashMap::<String, u64>::new();
    messages
        .iter()
        .map(|m| {
            let r = &m.request;
            let queue = r.queue_key();
            let room = rooms.get(&queue).copied();
            let position = if m.state == sluice_engine::hold::HeldState::Held {
                let p = positions.entry(queue).or_default();
                *p += 1;
                *p
            } else {
                0
            };
            HeldRecord {
                id: m.id,
                mta: r.mta.clone(),
                queue_id: r.queue_id.clone(),
                sender: r.sender.clone(),
                policy: r.policy.clone(),
                quota: r.quota.clone(),
                track: r.track.clone(),
                state: m.state.as_str().to_owned(),
                position,
                recipients: r.recipients,
                size: r.size,
                held_at_ms: m.held_at_ms,
                release: r.settings.release.as_str().to_owned(),
                estimated_release_at_ms: (position > 0)
                    .then(|| {
                        sluice_engine::hold::estimated_release_ms(
                            &r.needs,
                            r.settings.release,
                            position,
                            room,
                            now,
                        )
                    })
                    .flatten(),
                expires_at_ms: m.held_at_ms.saturating_add(r.settings.max_hold_age_ms),
                on_expiry: r.settings.on_expiry.as_str().to_owned(),
            }
        })
        .collect()
}

/// The held messages `caller` may see, in arrival order.
pub async fn list(state: &AppState, caller: &Caller) -> Result<Vec<HeldRecord>, ApiError> {
    let held = ledger(state)?;
    let messages = held.list().await.map_err(failed)?;
    let def = state.store.load().await?;
    let rooms = rooms(state.options.counters.as_ref(), &messages).await;
    Ok(records(&messages, &rooms)
        .into_iter()
        .filter(|r| may_see(caller, &def, &r.policy))
        .collect())
}

/// What an operator may do to a held message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act {
    /// Release now, charged whatever the room.
    Release,
    /// Return to its sender.
    Return,
    /// Delete from the hold queue.
    Delete,
}

impl Act {
    /// Parses the path's action.
    pub fn parse(s: &str) -> Option<Act> {
        match s {
            "release" => Some(Act::Release),
            "return" => Some(Act::Return),
            "delete" => Some(Act::Delete),
            _ => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Act::Release => "release",
            Act::Return => "return",
            Act::Delete => "delete",
        }
    }
}

/// Acts on held message `id` for `caller` (audited as `release`/`return`/`delete` of
/// `held/ID`).
pub async fn act(
    state: &AppState,
    caller: &Caller,
    id: u64,
    what: Act,
) -> Result<HeldRecord, ApiError> {
    caller.may_change()?;
    let held = ledger(state)?;
    let messages = held.list().await.map_err(failed)?;
    let Some(before) = messages.iter().find(|m| m.id == id) else {
        return Err(ApiError::not_found(format!("no held message {id}")));
    };
    let def = state.store.load().await?;
    if !may_see(caller, &def, &before.request.policy) {
        return Err(ApiError::forbidden(format!(
            "held message {id} is held by a policy outside the domains of account {:?}",
            caller.account.name
        )));
    }
    let after = match what {
        Act::Release => held.release_now(id).await,
        Act::Return => held.return_now(id).await,
        Act::Delete => held.delete(id).await,
    }
    .map_err(failed)?;
    let entry = NewAudit {
        at_ms: now_ms(),
        actor: caller.account.name.clone(),
        client: caller.client.clone(),
        action: what.as_str().to_owned(),
        object: format!("held/{id}"),
        before: Some(serde_json::json!({ "queue_id": before.request.queue_id, "mta": before.request.mta, "state": before.state.as_str() }).to_string()),
        after: Some(serde_json::json!({ "state": after.state.as_str() }).to_string()),
    };
    state.store.record_audit(&entry).await?;
    tracing::info!(
        account = %caller.account.name,
        client = %caller.client,
        id,
        queue_id = %after.request.queue_id,
        action = what.as_str(),
        "Admin acted on a held message"
    );
    Ok(records(std::slice::from_ref(&after), &Default::default()).remove(0))
}

/// An agent's sync for `caller` (admins only).
pub async fn sync(
    state: &AppState,
    caller: &Caller,
    request: &SyncRequest,
) -> Result<SyncReply, ApiError> {
    caller.may_change()?;
    if caller.account.role != AdminRole::Admin {
        return Err(ApiError::forbidden(
            "release agents act for a whole MTA: their token must be an admin's",
        ));
    }
    if request.mta.is_empty() || request.mta.len() > 255 {
        return Err(ApiError::invalid(
            "mta",
            "the MTA's address as Sluice sees it (1 to 255 bytes)",
        ));
    }
    if request.queue.len() > MAX_SYNC_QUEUE {
        return Err(ApiError::invalid(
            "queue",
            format!("at most {MAX_SYNC_QUEUE} entries per sync"),
        ));
    }
    let queue: Vec<QueuedMessage> = request
        .queue
        .iter()
        .map(|q| QueuedMessage {
            queue_id: q.queue_id.clone(),
            queue_name: q.queue_name.clone(),
        })
        .collect();
    let held = ledger(state)?;
    let answer = held.sync(&request.mta, &queue).await.map_err(failed)?;
    Ok(answer.into())
}

pub(crate) async fn get_list(
    State(state): State<Arc<AppState>>,
    caller: Caller,
) -> Result<Json<Vec<HeldRecord>>, ApiError> {
    list(&state, &caller).await.map(Json)
}

pub(crate) async fn post_act(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((id, action)): Path<(u64, String)>,
) -> Result<Json<HeldRecord>, ApiError> {
    caller.may_change()?;
    let what = Act::parse(&action)
        .ok_or_else(|| ApiError::invalid("action", "release, return or delete"))?;
    act(&state, &caller, id, what).await.map(Json)
}

pub(crate) async fn post_sync(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    raw: axum::body::Bytes,
) -> Result<Json<SyncReply>, ApiError> {
    caller.may_change()?;
    let request: SyncRequest = body::parse(&raw)?;
    sync(&state, &caller, &request).await.map(Json)
}

/// Adds the held-message paths and their schemas to the OpenAPI document.
pub(crate) fn document(paths: &mut Paths, components: ComponentsBuilder) -> ComponentsBuilder {
    let json = super::openapi::json_content;
    let list = OperationBuilder::new()
        .summary(Some(
            "Messages DELAY quotas hold, in arrival order, with each one's place in its queue",
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("The held messages")
                .content("application/json", json(&HeldRecord::name(), true))
                .build(),
        );
    let act = OperationBuilder::new()
        .summary(Some(
            "Release a held message now (charged whatever the room), return it to its sender, or delete it (audited; not for viewers)",
        ))
        .parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .schema(Some(u64::schema()))
                .build(),
        )
        .parameter(
            ParameterBuilder::new()
                .name("action")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("release, return or delete"))
                .schema(Some(String::schema()))
                .build(),
        )
        .response(
            "200",
            ResponseBuilder::new()
                .description("The message after the action (its agent carries it out)")
                .content("application/json", json(&HeldRecord::name(), false))
                .build(),
        );
    let sync = OperationBuilder::new()
        .summary(Some(
            "A release agent reports its MTA's queue and learns what to release, return and delete (admins' tokens only)",
        ))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content("application/json", json(&SyncRequest::name(), false))
                .build(),
        ))
        .response(
            "200",
            ResponseBuilder::new()
                .description("What to do")
                .content("application/json", json(&SyncReply::name(), false))
                .build(),
        );
    paths.add_path_operation("/api/held", vec![HttpMethod::Get], list.build());
    paths.add_path_operation(
        "/api/held/{id}/{action}",
        vec![HttpMethod::Post],
        act.build(),
    );
    paths.add_path_operation("/api/held/sync", vec![HttpMethod::Post], sync.build());
    components
        .schema_from::<HeldRecord>()
        .schema_from::<SyncRequest>()
        .schema_from::<QueueEntry>()
        .schema_from::<SyncReply>()
}
