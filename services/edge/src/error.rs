//! The edge's errors: setting up listeners. Once serving, the edge does not fail: bad
//! connections are logged and closed.

use std::path::PathBuf;

/// Why a listen address cannot be parsed or bound.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The listen address is neither `host:port` with an IP host nor a Unix socket path.
    #[error(
        "invalid listen address {0:?} (expected 127.0.0.1:10031, [::1]:10031, unix:/path or /path)"
    )]
    InvalidAddress(String),
    /// Binding the TCP listener failed (port in use, permission...).
    #[error("cannot listen on {addr}: {source}")]
    BindTcp {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// Binding the Unix socket failed.
    #[error("cannot listen on unix socket {path}: {source}")]
    BindUnix {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Another server already answers on this Unix socket.
    #[error("unix socket {0} is in use by a running server")]
    UnixInUse(PathBuf),
    /// The path exists and is not a socket: refusing to delete it.
    #[error("{0} exists and is not a unix socket")]
    NotASocket(PathBuf),
}

impl EdgeError {
    /// A short bounded label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            EdgeError::InvalidAddress(_) => "invalid_address",
            EdgeError::BindTcp { .. } => "bind_tcp",
            EdgeError::BindUnix { .. } => "bind_unix",
            EdgeError::UnixInUse(_) => "unix_in_use",
            EdgeError::NotASocket(_) => "not_a_socket",
        }
    }
}
