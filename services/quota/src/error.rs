//! Errors of the quota service, and their one mapping to gRPC statuses.

use sluice_engine::StateError;
use sluice_proto::ConvertError;
use tonic::Status;

/// Why one `Apply` failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The request is malformed (the caller's fault; not retryable).
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] ConvertError),
    /// The backing state failed or timed out (retryable later; the batch may or may not
    /// have been applied).
    #[error(transparent)]
    State(#[from] StateError),
    /// The task running the batch panicked (a bug).
    #[error("internal error: {0}")]
    Internal(String),
}

impl ServiceError {
    /// A short bounded label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            ServiceError::InvalidRequest(_) => "invalid_request",
            ServiceError::State(e) => e.kind_label(),
            ServiceError::Internal(_) => "internal",
        }
    }
}

/// The one mapping from service errors to gRPC statuses: backend down → `UNAVAILABLE`,
/// backend (or server-side) timeout → `DEADLINE_EXCEEDED`, malformed request →
/// `INVALID_ARGUMENT`, bug → `INTERNAL`. The remote client maps them back with
/// `sluice_remote`'s inverse function.
pub fn status_from_error(e: &ServiceError) -> Status {
    match e {
        ServiceError::InvalidRequest(c) => Status::invalid_argument(c.to_string()),
        ServiceError::State(StateError::Unavailable(msg)) => Status::unavailable(msg.clone()),
        ServiceError::State(StateError::Timeout) => {
            Status::deadline_exceeded("counter backend timed out")
        }
        ServiceError::Internal(msg) => Status::internal(msg.clone()),
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        status_from_error(&e)
    }
}

/// Why [`crate::serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn state_errors_map_to_retryable_codes() {
        let s = status_from_error(&StateError::Unavailable("redis down".into()).into());
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "redis down");
        let s = status_from_error(&StateError::Timeout.into());
        assert_eq!(s.code(), Code::DeadlineExceeded);
    }

    #[test]
    fn bad_requests_and_bugs_map_to_their_codes() {
        let e = ServiceError::from(ConvertError::MissingKind { key: "k".into() });
        assert_eq!(status_from_error(&e).code(), Code::InvalidArgument);
        assert_eq!(e.kind_label(), "invalid_request");
        let e = ServiceError::Internal("panic".into());
        assert_eq!(Status::from(e).code(), Code::Internal);
    }
}
