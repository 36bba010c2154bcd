//! The server-rendered pages: login, the policy list, one page per policy showing its whole
//! chain with enable/disable buttons and the compiler's warnings, forms to add members,
//! quotas and limits, Explain, and the audit trail. Plain HTML forms (each with the session's CSRF
//! token) posting to the same change code as the API; the policy file's export, import
//! preview (a diff) and import; no script.

mod accounting_page;
mod counters_page;
mod explain_page;
mod greylisting_page;
mod held_page;
mod history_page;
mod layout;
mod login;
mod module_sections;
mod pages;
mod policy_file_page;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use maud::html;

use crate::auth::{self, Caller};
use crate::error::ApiError;
use crate::AppState;

pub use layout::Nav;

/// Every page route.
pub fn routes() -> Router<Arc<AppState>> {
    let router = Router::new()
        .route("/", get(|| async { Redirect::to("/policies") }))
        .route("/style.css", get(stylesheet))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .route("/policies", get(pages::policies).post(pages::create_policy))
        .route("/policies/{policy}", get(pages::policy))
        .route("/policies/{policy}/toggle", post(pages::toggle))
        .route("/policies/{policy}/members", post(pages::add_member))
        .route("/policies/{policy}/quotas", post(pages::add_quota))
        .route(
            "/policies/{policy}/quotas/{quota}/limits",
            post(pages::add_limit),
        )
        .route("/audit", get(pages::audit))
        .route("/explain", get(explain_page::page))
        .route("/policy-file", get(policy_file_page::page_get))
        .route("/policy-file/export", get(policy_file_page::download))
        .route("/policy-file/preview", post(policy_file_page::preview))
        .route("/policy-file/import", post(policy_file_page::import))
        .route("/history", get(history_page::history))
        .route("/top-senders", get(history_page::top_senders))
        .route("/counters", get(counters_page::page))
        .route("/counters/reset", post(counters_page::reset))
        .route("/held", get(held_page::page))
        .route("/held/{id}/{action}", post(held_page::act))
        .route(
            "/policies/{policy}/greylisting",
            post(greylisting_page::add_settings),
        )
        .route(
            "/policies/{policy}/greylisting/toggle",
            post(greylisting_page::toggle_settings),
        )
        .route(
            "/greylisting-whitelist",
            get(greylisting_page::whitelist).post(greylisting_page::add_entry),
        )
        .route(
            "/greylisting-whitelist/{index}/toggle",
            post(greylisting_page::toggle_entry),
        )
        .route(
            "/greylisting-whitelist/{index}/delete",
            post(greylisting_page::delete_entry),
        )
        .route("/accounting", get(accounting_page::accounting));
    module_sections::routes(router)
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("style.css"),
    )
}

/// The caller of a page; without credentials the browser is sent to the login page.
pub struct PageCaller(pub Caller);

impl FromRequestParts<Arc<AppState>> for PageCaller {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        match auth::identify(state, parts).await {
            Ok(Some(caller)) => Ok(PageCaller(caller)),
            Ok(None) | Err(ApiError { status: 401, .. }) => {
                Err(Redirect::to("/login").into_response())
            }
            Err(e) => Err(error_page(None, &e)),
        }
    }
}

/// `e` as a page, with its status.
pub fn error_page(caller: Option<&Caller>, e: &ApiError) -> Response {
    let status = e.status_code();
    let title = status.canonical_reason().unwrap_or("Error");
    let body = layout::page(
        title,
        caller,
        Nav::None,
        html! {
            h1 { (title) }
            div.error {
                (e.error)
                @if let Some(field) = &e.field { " (field " code { (field) } ")" }
            }
            p { a href="/policies" { "Back to the policies" } }
        },
    );
    (status, body).into_response()
}

/// A redirect after a form was handled (303: the browser GETs the target).
pub fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_owned())]).into_response()
}
