//! The answer to a request that cannot be served: a status, a message that says what to do,
//! and for invalid input the field at fault. JSON for the API (`{"error": ..., "field": ...}`);
//! the pages render the same message in HTML.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sluice_store::StoreError;

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApiError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// What went wrong and what to do.
    pub error: String,
    /// The field at fault (`name`, `period`, `limits[0].limit`, ...), for invalid input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again (throttled logins).
    #[serde(skip)]
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status: status.as_u16(),
            error: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 401: no or unknown credentials.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: log in, or send an API token as `Authorization: Bearer TOKEN` (sluice admin token add)",
        )
    }

    /// 403 with `message`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 with `message`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    /// 422: invalid `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.into()),
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, message)
        }
    }

    /// 503 with `message`.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 409 with `message`.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }

    /// The status as [`StatusCode`].
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Changed { .. } => ApiError::conflict(e.to_string()),
            e if e.is_retryable() => {
                tracing::warn!(error = %e, "Admin service: the policy database is unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the policy database is unavailable; try again shortly",
                )
            }
            e => {
                tracing::error!(error = %e, "Admin service: database error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "database error (see the service's log)",
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let retry = self.retry_after;
        let mut response = (status, axum::Json(&self)).into_response();
        let headers = response.headers_mut();
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(secs) = retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}
