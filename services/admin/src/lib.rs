//! The admin service of Sluice (docs/admin.md): a JSON REST API over the policies
//! (`/api/...`, described by `/api/openapi.json`), server-rendered pages for operators, login
//! sessions and API tokens for accounts made on the command line (`sluice admin user add`),
//! role checks, CSRF protection, login throttling and an audit trail of every change.
//!
//! Layout:
//! - [`secret`]: argon2 password hashes, random tokens and their SHA-256 digests;
//! - [`throttle`]: failed logins counted per account and per client address;
//! - [`auth`]: who is asking (session cookie or bearer token) and what their role lets them do;
//! - [`scope`]: which policies a domain admin may see and change;
//! - [`resource`]: the API's objects (policies, members, quotas, limits, access control,
//!   groups, group members) and how each is read and changed in a
//!   [`sluice_engine::PolicySetDef`];
//! - [`change`]: one change: read the set, edit, validate with the engine's compiler, write
//!   it with its audit entry if nobody changed the set meanwhile;
//! - [`explain`]: what would happen to a request, and why (charging nothing);
//! - [`policy_file`]: export, import preview (a diff) and import of the whole policy file;
//! - [`api`]: the JSON routes and the OpenAPI document; [`ui`]: the HTML pages;
//! - [`tls`]: the listener over TLS (rustls).
//!
//! Every change goes through the policy database (the same tables `sluice policy import`
//! writes), so running edges pick it up as they pick up imports.
#![forbid(unsafe_code)]

pub mod api;
pub mod auth;
pub mod change;
pub mod error;
pub mod explain;
pub mod policy_file;
pub mod resource;
pub mod scope;
pub mod secret;
pub mod throttle;
pub mod tls;
pub mod ui;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sluice_runtime::http::HttpLimits;
use sluice_store::Store;

pub use error::ApiError;

/// How long a login session lasts (from login; there is no sliding renewal).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);

/// What the admin service needs to run.
#[derive(Clone)]
pub struct AdminOptions {
    /// Mark the session cookie `Secure` (set when the listener is served over TLS, or behind
    /// a TLS-terminating proxy).
    pub secure_cookies: bool,
    /// How long a login session lasts.
    pub session_ttl: Duration,
    /// Connection cap and idle timeout of the listener.
    pub limits: HttpLimits,
    /// The running engine (serve), for Explain with live counter levels; without one,
    /// Explain evaluates the stored policies with counters at zero.
    pub engine: Option<Arc<sluice_engine::Engine>>,
    /// The running counters (serve: the in-process state or its Redis; the admin role: the
    /// quota service), for the Counters page and `/api/counters`; without them those answer
    /// 503.
    pub counters: Option<Arc<dyn sluice_engine::LiveCounters>>,
    /// The ledger of messages DELAY quotas hold (serve with in-process counters and a
    /// SQLite database), for the Held page, `/api/held` and the release agents' syncs;
    /// without it those answer 503.
    pub held: Option<sluice_engine::hold::SharedHeld>,
    /// Answers the DNS lookups of explained requests (CheckHelo, CheckSPF), as the policy
    /// listeners do; without it Explain shows those checks unanswered.
    pub dns: Option<Arc<sluice_dns::Answerer>>,
    /// Sub-buckets per quota period the counters are kept with: the `buckets` setting of
    /// the processes that count (serve's own; for the admin role, the edges'). Reading a
    /// counter in Redis back needs its sub-bucket width.
    pub buckets: u32,
}

impl std::fmt::Debug for AdminOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminOptions")
            .field("secure_cookies", &self.secure_cookies)
            .field("session_ttl", &self.session_ttl)
            .field("limits", &self.limits)
            .field("engine", &self.engine.is_some())
            .field("counters", &self.counters.is_some())
            .field("held", &self.held.is_some())
            .field("dns", &self.dns.is_some())
            .field("buckets", &self.buckets)
            .finish()
    }
}

impl Default for AdminOptions {
    fn default() -> Self {
        AdminOptions {
            secure_cookies: false,
            session_ttl: SESSION_TTL,
            limits: HttpLimits {
                max_connections: 64,
                idle_timeout: Duration::from_secs(60),
            },
            engine: None,
            counters: None,
            held: None,
            dns: None,
            buckets: sluice_engine::EngineSettings::default().buckets_per_period,
        }
    }
}

/// Shared by every handler.
#[derive(Debug)]
pub struct AppState {
    /// The policy database (policies, accounts, audit).
    pub store: Store,
    /// Failed-login counts.
    pub throttle: throttle::Throttle,
    /// The service's options.
    pub options: AdminOptions,
    /// One change at a time from this process (changes from elsewhere are caught by the
    /// version check of [`Store::replace_all_audited`]).
    pub write_lock: tokio::sync::Mutex<()>,
}

/// The whole admin service as a router (API, pages, stylesheet).
pub fn router(store: Store, options: AdminOptions) -> Router {
    let state = Arc::new(AppState {
        store,
        throttle: throttle::Throttle::default(),
        options,
        write_lock: tokio::sync::Mutex::new(()),
    });
    Router::new()
        .merge(api::routes())
        .merge(ui::routes())
        .with_state(state)
}

/// Serves the admin service on `listener` until `shutdown` resolves, with the connection cap
/// and idle timeout of `options.limits`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    store: Store,
    options: AdminOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let app = router(store, options);
    sluice_runtime::http::serve_with_client_addr(listener, app, limits, shutdown).await
}

pub use tls::serve_tls;

/// Milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
