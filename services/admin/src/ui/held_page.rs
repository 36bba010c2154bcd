//! The Held page: the messages DELAY quotas hold (docs/delay.md), in arrival order with
//! their place in line and when they expire, each with Release now / Return / Delete
//! buttons (not for viewers). Read and acted on through [`crate::api::held`], so the page
//! shows and does what the API does.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Form;
use maud::html;
use serde::Deserialize;

use super::layout::{self, Nav};
use super::pages::utc;
use super::{error_page, see_other, PageCaller};
use crate::api::held::{self, Act};
use crate::error::ApiError;
use crate::AppState;

/// `GET /held`.
pub(super) async fn page(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
) -> Response {
    let rows = match held::list(&state, &caller).await {
        Ok(rows) => rows,
        Err(e) => return error_page(Some(&caller), &e),
    };
    let may_act = caller.account.role != sluice_store::AdminRole::Viewer;
    let ms = |v: u64| utc(i64::try_from(v).unwrap_or(i64::MAX));
    let content = html! {
        h1 { "Held messages" }
        p.lead { "Messages DELAY quotas hold in Postfix's hold queue, in the order they arrived. Each leaves when its quota has room (the release agent beside its Postfix releases it); Release now sends it whatever the room." }
        @if rows.is_empty() {
            p.muted.empty-held { "No message is held." }
        } @else {
            table.held {
                thead { tr {
                    th { "Queue ID" } th { "MTA" } th { "Sender" } th { "Policy" } th { "Quota" } th { "Counted key" }
                    th { "State" } th { "In line" } th { "Held (UTC)" } th { "Leaves about (UTC)" } th { "Expires (UTC)" } th { "Release" }
                    @if may_act { th {} }
                } }
                tbody {
                    @for r in &rows {
                        tr data-queue-id=(r.queue_id) {
                            td.mono { (r.queue_id) }
                            td.mono { (r.mta) }
                            td.mono { (r.sender) }
                            td.nowrap { (r.policy) }
                            td.nowrap { (r.quota) }
                            td.mono { (r.track) }
                            td { span class=(if r.state == "held" { "badge monitor" } else { "badge on" }) { (r.state) } }
                            td { @if r.position > 0 { (r.position) } @else { span.muted { "—" } } }
                            td.mono { (ms(r.held_at_ms)) }
                            td.mono.estimate {
                                @match r.estimated_release_at_ms {
                                    Some(at) => (ms(at)),
                                    None => span.muted { "—" },
                                }
                            }
                            td.mono { (ms(r.expires_at_ms)) " (" (r.on_expiry) ")" }
                            td { (r.release) }
                            @if may_act {
                                td.nowrap {
                                    @if r.state == "held" {
                                        @for (action, label) in [("release", "Release now"), ("return", "Return"), ("delete", "Delete")] {
                                            form.inline method="post" action=(format!("/held/{}/{action}", r.id)) {
                                                (layout::csrf_field(&caller))
                                                button.secondary.small type="submit" { (label) }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    layout::page("Held messages", Some(&caller), Nav::Held, content).into_response()
}

/// The action buttons' form.
#[derive(Deserialize)]
pub(super) struct ActForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /held/{id}/{action}`.
pub(super) async fn act(
    State(state): State<Arc<AppState>>,
    PageCaller(mut caller): PageCaller,
    Path((id, action)): Path<(u64, String)>,
    Form(form): Form<ActForm>,
) -> Response {
    caller.csrf_given = Some(form.csrf);
    let Some(what) = Act::parse(&action) else {
        return error_page(
            Some(&caller),
            &ApiError::invalid("action", "release, return or delete"),
        );
    };
    match held::act(&state, &caller, id, what).await {
        Ok(_) => see_other("/held"),
        Err(e) => error_page(Some(&caller), &e),
    }
}
