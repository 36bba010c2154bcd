//! Who is asking: a login session (cookie [`SESSION_COOKIE`]) or an API token
//! (`Authorization: Bearer TOKEN`), the account behind it, and the role checks every change
//! makes: viewers change nothing, and a change made with a session cookie must carry the
//! session's CSRF token (header [`CSRF_HEADER`], or the `csrf` field of a form). Requests with
//! a bearer token carry no cookie a browser could send on its own, so they need none.

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use sluice_store::{Account, AdminRole};

use crate::error::ApiError;
use crate::{now_ms, secret, AppState};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sluice_session";
/// The header carrying the CSRF token on API requests made with a session cookie.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A login session.
    Session {
        /// The session's CSRF token.
        csrf: String,
        /// The SHA-256 of the session cookie (to end the session).
        digest: String,
    },
    /// An API token.
    Token,
}

/// An authenticated request's caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The account.
    pub account: Account,
    /// Session or token.
    pub via: Via,
    /// The client's address, for the audit trail.
    pub client: String,
    /// The CSRF token the request carries (header, or form field set by the page handler).
    pub csrf_given: Option<String>,
}

impl Caller {
    /// Whether the caller may change anything at all (403 for viewers), and for sessions
    /// whether the request carries the session's CSRF token (403 otherwise).
    pub fn may_change(&self) -> Result<(), ApiError> {
        if let Via::Session { csrf, .. } = &self.via {
            let given = self.csrf_given.as_deref().unwrap_or_default();
            if !secret::same(given, csrf) {
                return Err(ApiError::forbidden(
                    "missing or wrong CSRF token: reload the page and submit again (API clients with a session send the token as the X-CSRF-Token header)",
                ));
            }
        }
        if self.account.role == AdminRole::Viewer {
            return Err(ApiError::forbidden(format!(
                "account {:?} is a viewer: viewers change nothing",
                self.account.name
            )));
        }
        Ok(())
    }

    /// The session's CSRF token, for forms (`None` for token callers).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf, .. } => Some(csrf),
            Via::Token => None,
        }
    }
}

/// The client address of a request ("unknown" when served without connection info).
pub fn client_address(parts: &Parts) -> String {
    let plain = parts
        .extensions
        .get::<ConnectInfo<sluice_runtime::http::ClientAddr>>()
        .map(|c| c.0 .0);
    let tls = || {
        parts
            .extensions
            .get::<ConnectInfo<crate::tls::TlsClientAddr>>()
            .map(|c| c.0 .0)
    };
    plain
        .or_else(tls)
        .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string())
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The caller of a request, if it carries valid credentials. A bearer token that is not
/// valid is an error (401) even if a cookie is also sent.
pub async fn identify(state: &AppState, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    let client = client_address(parts);
    let csrf_given = parts
        .headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(auth) = parts.headers.get(header::AUTHORIZATION) {
        let token = auth
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthenticated)?;
        let account = state
            .store
            .account_by_token(&secret::digest(token))
            .await?
            .ok_or_else(ApiError::unauthenticated)?;
        return Ok(Some(Caller {
            account,
            via: Via::Token,
            client,
            csrf_given,
        }));
    }
    let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let digest = secret::digest(cookie);
    let Some((account, csrf)) = state.store.session(&digest, now_ms()).await? else {
        return Ok(None);
    };
    Ok(Some(Caller {
        account,
        via: Via::Session { csrf, digest },
        client,
        csrf_given,
    }))
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        identify(state, parts)
            .await?
            .ok_or_else(ApiError::unauthenticated)
    }
}
