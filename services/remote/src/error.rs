//! Errors of the client, and the one mapping from gRPC statuses to [`StateError`].

use sluice_engine::StateError;
use std::error::Error as _;
use tonic::{Code, Status};

/// Why [`crate::RemoteState::connect`] failed (the operator's fault; not retryable).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// No endpoint was given.
    #[error("no quota-service endpoint given")]
    NoEndpoints,
    /// An endpoint is not an `http://host:port` or `https://host:port` URL.
    #[error("invalid quota-service endpoint {url:?}: {reason}")]
    InvalidEndpoint {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings of an `https://` endpoint are unusable.
    #[error("cannot set up TLS for quota-service endpoint {url:?}: {reason}")]
    Tls {
        /// The URL as given.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A setting is out of range.
    #[error("invalid quota client settings: {0}")]
    InvalidConfig(String),
}

/// The one mapping from a failed call to the engine's error: `DEADLINE_EXCEEDED` (and the
/// client-side "Timeout expired" cancellation) → [`StateError::Timeout`]; anything else —
/// transport failures, `UNAVAILABLE` from a service whose backend is down, protocol
/// mismatches — → [`StateError::Unavailable`]. A refusal of this edge's credentials
/// (`UNAUTHENTICATED`, `PERMISSION_DENIED`) is also logged (rate-limited): it is a
/// configuration error no retry fixes.
pub fn state_error_from_status(s: &Status) -> StateError {
    log_if_credentials_refused(s);
    match s.code() {
        Code::DeadlineExceeded => StateError::Timeout,
        Code::Cancelled if s.message().contains("Timeout expired") => StateError::Timeout,
        code => StateError::Unavailable(format!("quota service: {code:?}: {}", s.message())),
    }
}

/// Logs (rate-limited) a refusal of this edge's credentials (`UNAUTHENTICATED`,
/// `PERMISSION_DENIED`): a configuration error no retry fixes. Calls and health probes
/// both report it, so it is logged even when no request reaches the service.
pub(crate) fn log_if_credentials_refused(s: &Status) {
    if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) {
        sluice_runtime::warn_limited!(
            code = ?s.code(),
            message = s.message(),
            "The quota service refused this edge's credentials: quota_token_file must hold the quota service's grpc_token_file token."
        );
    }
}

/// Whether the call provably never reached a quota service, so a retry elsewhere cannot
/// double-charge: the connection to the endpoint could not be made (tonic's
/// `ConnectError`), or the request was still queued for a connection that closed before
/// taking it (hyper's "canceled": the request was handed back unsent).
pub(crate) fn never_sent(s: &Status) -> bool {
    let mut source = s.source();
    while let Some(e) = source {
        if e.is::<tonic::ConnectError>() {
            return true;
        }
        if e.downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_canceled)
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Whether the failure is the transport's (the endpoint is unhealthy): not an answer the
/// service sent (those carry no source error), nor the call's own deadline expiring
/// (slowness is the backend's, not the endpoint's).
pub(crate) fn is_transport_failure(s: &Status) -> bool {
    let mut source = s.source();
    if source.is_none() {
        return false;
    }
    while let Some(e) = source {
        if e.is::<tonic::TimeoutExpired>() {
            return false;
        }
        source = e.source();
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_state_errors() {
        assert_eq!(
            state_error_from_status(&Status::deadline_exceeded("slow")),
            StateError::Timeout
        );
        assert_eq!(
            state_error_from_status(&Status::cancelled("Timeout expired")),
            StateError::Timeout
        );
        for s in [
            Status::unavailable("redis down"),
            Status::internal("bug"),
            Status::invalid_argument("bad"),
            Status::cancelled("reset"),
        ] {
            assert!(
                matches!(state_error_from_status(&s), StateError::Unavailable(_)),
                "{s:?}"
            );
        }
    }

    #[test]
    fn server_statuses_are_neither_unsent_nor_transport_failures() {
        let s = Status::unavailable("redis down");
        assert!(!never_sent(&s));
        assert!(!is_transport_failure(&s));
    }
}
