//! Login and logout. The login form carries a CSRF token of its own (a random value in a
//! short-lived cookie and a hidden field, which must agree), so no other site can log a
//! browser into an account of its choosing.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Form, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::layout::{self, Nav};
use super::{see_other, PageCaller};
use crate::auth::{self, SESSION_COOKIE};
use crate::error::ApiError;
use crate::{now_ms, secret, AppState};

/// The login form's CSRF cookie.
const LOGIN_COOKIE: &str = "sluice_login";

fn cookie_attributes(state: &AppState) -> &'static str {
    if state.options.secure_cookies {
        "; HttpOnly; SameSite=Strict; Path=/; Secure"
    } else {
        "; HttpOnly; SameSite=Strict; Path=/"
    }
}

fn login_page(state: &AppState, status: StatusCode, message: Option<&str>) -> Response {
    let token = match secret::random_hex() {
        Ok(t) => t,
        Err(e) => {
            return super::error_page(
                None,
                &ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            )
        }
    };
    let body = layout::page(
        "Log in",
        None,
        Nav::None,
        html! {
            form.login method="post" action="/login" {
                h1 { "Log in" }
                @if let Some(m) = message { div.error { (m) } }
                input type="hidden" name="csrf" value=(token);
                label for="name" { "Account" }
                input #name type="text" name="name" autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Log in" }
                p.muted { "Accounts are made on the server: " code { "sluice admin user add NAME" } }
            }
        },
    );
    let cookie = format!(
        "{LOGIN_COOKIE}={token}{}; Max-Age=3600",
        cookie_attributes(state)
    );
    (status, [(header::SET_COOKIE, cookie)], body).into_response()
}

pub(super) async fn form(State(state): State<Arc<AppState>>) -> Response {
    login_page(&state, StatusCode::OK, None)
}

/// The login form's fields.
#[derive(Deserialize)]
pub(super) struct LoginForm {
    name: String,
    password: String,
    #[serde(default)]
    csrf: String,
}

pub(super) async fn submit(
    State(state): State<Arc<AppState>>,
    parts: Parts,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = auth::cookie(&parts.headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !secret::same(expected, &form.csrf) {
        return login_page(
            &state,
            StatusCode::FORBIDDEN,
            Some("The login form expired or came from another site: try again."),
        );
    }
    let client = auth::client_address(&parts);
    let keys = [format!("account:{}", form.name), format!("ip:{client}")];
    let now = Instant::now();
    if let Some(wait) = keys.iter().find_map(|k| state.throttle.refused_for(k, now)) {
        tracing::warn!(account = %form.name, %client, "Admin login refused: too many failed attempts");
        let mut response = login_page(
            &state,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&format!(
                "Too many failed logins for this account or from this address: try again in {} minutes.",
                wait.as_secs().div_ceil(60)
            )),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, wait.as_secs().max(1).into());
        return response;
    }
    let account = match state.store.account(&form.name).await {
        Ok(a) => a,
        Err(e) => return super::error_page(None, &e.into()),
    };
    let hash = account.as_ref().map_or_else(
        || secret::dummy_hash().to_owned(),
        |a| a.password_hash.clone(),
    );
    let password = form.password;
    let ok = tokio::task::spawn_blocking(move || secret::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    let Some(account) = account.filter(|_| ok) else {
        for k in &keys {
            state.throttle.failed(k, now);
        }
        tracing::warn!(account = %form.name, %client, "Admin login failed");
        return login_page(
            &state,
            StatusCode::UNAUTHORIZED,
            Some("Wrong account name or password."),
        );
    };
    state.throttle.succeeded(&keys[0]);
    let (Ok(session), Ok(csrf)) = (secret::random_hex(), secret::random_hex()) else {
        return super::error_page(
            None,
            &ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "no random bytes"),
        );
    };
    let ttl = state.options.session_ttl;
    let expires = now_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
    if let Err(e) = state
        .store
        .create_session(
            &secret::digest(&session),
            account.id,
            &csrf,
            expires,
            now_ms(),
        )
        .await
    {
        return super::error_page(None, &e.into());
    }
    tracing::info!(account = %account.name, %client, "Admin login");
    let cookie = format!(
        "{SESSION_COOKIE}={session}{}; Max-Age={}",
        cookie_attributes(&state),
        ttl.as_secs()
    );
    let clear = format!("{LOGIN_COOKIE}={}; Max-Age=0", cookie_attributes(&state));
    let mut response = see_other("/policies");
    let headers: &mut HeaderMap = response.headers_mut();
    for c in [cookie, clear] {
        if let Ok(v) = c.parse() {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

/// The logout form's fields.
#[derive(Deserialize)]
pub(super) struct LogoutForm {
    #[serde(default)]
    csrf: String,
}

pub(super) async fn logout(
    State(state): State<Arc<AppState>>,
    PageCaller(caller): PageCaller,
    Form(form): Form<LogoutForm>,
) -> Response {
    let auth::Via::Session { csrf, digest } = &caller.via else {
        return see_other("/login");
    };
    if !secret::same(csrf, &form.csrf) {
        return super::error_page(
            Some(&caller),
            &ApiError::forbidden("missing or wrong CSRF token: reload the page and try again"),
        );
    }
    if let Err(e) = state.store.end_session(digest).await {
        return super::error_page(Some(&caller), &e.into());
    }
    let mut response = see_other("/login");
    let clear = format!("{SESSION_COOKIE}=; Max-Age=0{}", cookie_attributes(&state));
    if let Ok(v) = clear.parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}
