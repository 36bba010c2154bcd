//! What every Redis call needs: the connection, the scripts, key names and the timeout.

use crate::conn::Conn;
use crate::keys::Keys;
use crate::scripts::Scripts;
use std::time::Duration;

/// Shared by all batches of one [`crate::RedisState`].
pub(crate) struct Backend {
    pub conn: Conn,
    pub scripts: Scripts,
    pub keys: Keys,
    /// Bound on every Redis call.
    pub timeout: Duration,
}
