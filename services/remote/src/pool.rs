//! The quota-service endpoints: parsing, resolution, balancing and health marks.
//!
//! Each configured URL names either an address (`http://10.0.0.5:50051`) or a DNS name
//! (`http://quota.internal:50051`) whose every address becomes a backend; names are
//! re-resolved periodically by [`crate::maintain`]. A backend owns one lazily connected
//! HTTP/2 channel (reconnecting by itself) per calling runtime, each with a
//! [`crate::batch`] task sending the calls waiting at the same time together.
//!
//! Balancing: power of two choices by in-flight calls among the backends not marked down;
//! the two candidates are taken round-robin, so with equal load calls simply alternate. When
//! every backend is marked down, all of them are candidates again (a call then fails fast
//! if they really are down, and succeeds as soon as one is back).

use crate::batch::{BatchLimits, Batcher};
use crate::config::RemoteConfig;
use crate::error::RemoteError;
use arc_swap::ArcSwap;
use sluice_proto::v1::quota_client::QuotaClient;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::runtime::{Handle, Id as RuntimeId};
use tonic::transport::{Channel, Endpoint};

/// One configured endpoint URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointSpec {
    /// As given.
    pub url: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// `https://`: TLS (see [`crate::security`]).
    pub tls: bool,
}

impl EndpointSpec {
    /// Parses `http://host:port` or `https://host:port` (IPv6 addresses in brackets).
    pub fn parse(url: &str) -> Result<Self, RemoteError> {
        let invalid = |reason: &str| RemoteError::InvalidEndpoint {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: tonic::codegen::http::Uri = url.parse().map_err(|_| invalid("not a URL"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(invalid("the scheme must be http:// or https://")),
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(invalid("a path is not allowed"));
        }
        let host = uri.host().ok_or_else(|| invalid("no host"))?;
        let port = uri.port_u16().ok_or_else(|| invalid("no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(EndpointSpec {
            url: url.to_string(),
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// The fixed address, when the host is an IP address.
    pub fn fixed(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// The addresses the endpoint stands for now (empty when a name does not resolve).
    pub async fn resolve(&self) -> Vec<SocketAddr> {
        if let Some(addr) = self.fixed() {
            return vec![addr];
        }
        match tokio::net::lookup_host((self.host.as_str(), self.port)).await {
            Ok(addrs) => {
                let mut v: Vec<SocketAddr> = addrs.collect();
                v.sort();
                v.dedup();
                v
            }
            Err(e) => {
                sluice_runtime::warn_limited!(endpoint = %self.url, error = %e, "Cannot resolve quota-service endpoint.");
                Vec::new()
            }
        }
    }
}

/// Most per-runtime channels a backend keeps (runtimes that ended leave theirs behind).
const MAX_RUNTIME_CHANNELS: usize = 16;

/// One quota-service address.
pub(crate) struct Backend {
    pub addr: SocketAddr,
    /// The channel of the runtime that created the backend (health probes).
    pub channel: Channel,
    endpoint: Endpoint,
    /// Adds the bearer token to every call (Quota and health probes).
    pub(crate) token: sluice_proto::auth::AddToken,
    /// One batcher (own HTTP/2 connection) per tokio runtime calling through this backend.
    clients: Mutex<Vec<(Option<RuntimeId>, Arc<Batcher>)>>,
    limits: BatchLimits,
    in_flight: AtomicUsize,
    down: AtomicBool,
    calls: AtomicU64,
    failures: AtomicU64,
    /// `sluice_quota_endpoint_up{endpoint}`.
    up_gauge: metrics::Gauge,
}

/// The endpoint of `addr`, one of the addresses `spec` stands for: TLS for `https://`
/// (the certificate checked against the URL's host unless a server name is configured).
pub(crate) fn endpoint(
    spec: &EndpointSpec,
    addr: SocketAddr,
    config: &RemoteConfig,
) -> Result<Endpoint, RemoteError> {
    let scheme = if spec.tls { "https" } else { "http" };
    let endpoint = Endpoint::from_shared(format!("{scheme}://{addr}"))
        .expect("a socket address forms a valid URI")
        .connect_timeout(config.connect_timeout)
        .tcp_nodelay(true);
    if !spec.tls {
        return Ok(endpoint);
    }
    config
        .security
        .secure(endpoint, &spec.host)
        .map_err(|reason| RemoteError::Tls {
            url: spec.url.clone(),
            reason,
        })
}

impl Backend {
    fn new(addr: SocketAddr, endpoint: Endpoint, config: &RemoteConfig) -> Self {
        let channel = endpoint.connect_lazy();
        let token = config.security.interceptor();
        Backend {
            addr,
            clients: Mutex::new(vec![(
                runtime_id(),
                Arc::new(Batcher::spawn(
                    QuotaClient::with_interceptor(channel.clone(), token.clone()),
                    config.batch,
                )),
            )]),
            limits: config.batch,
            token,
            endpoint,
            channel,
            in_flight: AtomicUsize::new(0),
            down: AtomicBool::new(false),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            up_gauge: {
                let g = metrics::gauge!(
                    sluice_runtime::metrics::names::QUOTA_ENDPOINT_UP,
                    "endpoint" => addr.to_string()
                );
                g.set(1.0);
                g
            },
        }
    }

    /// The batcher for the calling tokio runtime. Each runtime (the edge runs one
    /// single-threaded runtime per connection worker thread) gets its own lazily connected
    /// HTTP/2 connection and batching task running on that runtime: a call then never wakes
    /// another thread, and concurrent calls spread over several connections.
    pub fn batcher(&self) -> Arc<Batcher> {
        let id = runtime_id();
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = clients.iter().find(|(i, _)| *i == id) {
            return c.clone();
        }
        if clients.len() >= MAX_RUNTIME_CHANNELS {
            // Keep the creating runtime's client; forget the oldest other one.
            clients.remove(1);
        }
        let batcher = Arc::new(Batcher::spawn(
            QuotaClient::with_interceptor(self.endpoint.connect_lazy(), self.token.clone()),
            self.limits,
        ));
        clients.push((id, Arc::clone(&batcher)));
        batcher
    }

    /// Counts a call in flight until the guard drops.
    pub fn start_call(&self) -> InFlight<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self)
    }

    /// Whether the backend is marked down.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed)
    }

    /// Marks the backend down (logged once per transition).
    pub fn mark_down(&self, why: &str) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        if !self.down.swap(true, Ordering::Relaxed) {
            self.up_gauge.set(0.0);
            tracing::warn!(addr = %self.addr, reason = why, "Quota-service endpoint marked down.");
        }
    }

    /// Marks the backend up (logged once per transition).
    pub fn mark_up(&self) {
        if self.down.swap(false, Ordering::Relaxed) {
            self.up_gauge.set(1.0);
            tracing::info!(addr = %self.addr, "Quota-service endpoint is up again.");
        }
    }

    fn stats(&self) -> EndpointStats {
        EndpointStats {
            addr: self.addr,
            up: !self.is_down(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
        }
    }
}

/// The calling tokio runtime, if any.
fn runtime_id() -> Option<RuntimeId> {
    Handle::try_current().ok().map(|h| h.id())
}

/// Decrements a backend's in-flight count when dropped.
pub(crate) struct InFlight<'a>(&'a Backend);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A snapshot of one endpoint address, for metrics, logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointStats {
    /// The address.
    pub addr: SocketAddr,
    /// Whether it is currently considered healthy.
    pub up: bool,
    /// Calls in flight now.
    pub in_flight: usize,
    /// Calls (attempts) sent to it so far.
    pub calls: u64,
    /// Transport failures and failed probes so far.
    pub failures: u64,
}

/// The current backends and the balancing state.
pub(crate) struct Pool {
    pub specs: Vec<EndpointSpec>,
    backends: ArcSwap<Vec<Arc<Backend>>>,
    next: AtomicUsize,
    config: RemoteConfig,
}

impl Pool {
    /// A pool over `specs`, resolved once.
    pub async fn new(specs: Vec<EndpointSpec>, config: RemoteConfig) -> Self {
        let pool = Pool {
            specs,
            backends: ArcSwap::from_pointee(Vec::new()),
            next: AtomicUsize::new(0),
            config,
        };
        pool.refresh().await;
        pool
    }

    /// Re-resolves every endpoint; keeps the backends (and connections) of addresses still
    /// present, adds new ones, drops vanished ones. A name that fails to resolve keeps its
    /// previous addresses.
    pub async fn refresh(&self) {
        let current = self.backends.load_full();
        let mut next: Vec<Arc<Backend>> = Vec::new();
        for spec in &self.specs {
            let mut addrs = spec.resolve().await;
            if addrs.is_empty() && spec.fixed().is_none() {
                // Resolution failed: keep what this name had (best effort: same port).
                addrs = current
                    .iter()
                    .filter(|b| b.addr.port() == spec.port)
                    .map(|b| b.addr)
                    .collect();
            }
            for addr in addrs {
                if next.iter().any(|b| b.addr == addr) {
                    continue;
                }
                if let Some(b) = current.iter().find(|b| b.addr == addr) {
                    next.push(Arc::clone(b));
                    continue;
                }
                // `RemoteState::connect` built each spec's endpoint once already: this
                // fails only if the TLS material changed meanwhile (it does not).
                match endpoint(spec, addr, &self.config) {
                    Ok(e) => next.push(Arc::new(Backend::new(addr, e, &self.config))),
                    Err(e) => {
                        sluice_runtime::warn_limited!(error = %e, "Cannot set up a quota-service endpoint.")
                    }
                }
            }
        }
        let changed = next.len() != current.len()
            || next
                .iter()
                .zip(current.iter())
                .any(|(a, b)| a.addr != b.addr);
        if changed {
            tracing::info!(
                addrs = ?next.iter().map(|b| b.addr).collect::<Vec<_>>(),
                "Quota-service endpoints changed."
            );
            self.backends.store(Arc::new(next));
        }
    }

    /// All current backends.
    pub fn backends(&self) -> Arc<Vec<Arc<Backend>>> {
        self.backends.load_full()
    }

    /// Picks a backend other than `exclude`; `None` when there is none.
    pub fn pick(&self, exclude: Option<SocketAddr>) -> Option<Arc<Backend>> {
        let all = self.backends.load();
        let eligible = |b: &&Arc<Backend>| Some(b.addr) != exclude;
        let mut candidates: Vec<&Arc<Backend>> = all
            .iter()
            .filter(eligible)
            .filter(|b| !b.is_down())
            .collect();
        if candidates.is_empty() {
            candidates = all.iter().filter(eligible).collect();
        }
        let n = candidates.len();
        if n == 0 {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let a = candidates[i];
        let b = candidates[(i + 1) % n];
        let load = |x: &Backend| x.in_flight.load(Ordering::Relaxed);
        Some(Arc::clone(if load(b) < load(a) { b } else { a }))
    }

    /// Per-address snapshots.
    pub fn stats(&self) -> Vec<EndpointStats> {
        self.backends.load().iter().map(|b| b.stats()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        let s = EndpointSpec::parse("http://127.0.0.1:50051").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("127.0.0.1", 50051));
        assert_eq!(s.fixed(), Some("127.0.0.1:50051".parse().unwrap()));
        let s = EndpointSpec::parse("http://[::1]:7").unwrap();
        assert_eq!(s.fixed(), Some("[::1]:7".parse().unwrap()));
        let s = EndpointSpec::parse("http://quota.internal:50051/").unwrap();
        assert_eq!((s.host.as_str(), s.fixed()), ("quota.internal", None));
        assert!(!s.tls);
        let s = EndpointSpec::parse("https://quota.internal:50051").unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("quota.internal", 50051, true)
        );
    }

    #[test]
    fn rejects_other_urls() {
        for bad in [
            "127.0.0.1:50051",
            "ftp://q:1",
            "http://q",
            "http://q:1/path",
            "",
        ] {
            assert!(
                matches!(
                    EndpointSpec::parse(bad),
                    Err(RemoteError::InvalidEndpoint { .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn picks_alternate_and_skip_down_backends() {
        let specs = [
            "http://127.0.0.1:1",
            "http://127.0.0.1:2",
            "http://127.0.0.1:2",
        ]
        .iter()
        .map(|u| EndpointSpec::parse(u).unwrap())
        .collect();
        let pool = Pool::new(specs, RemoteConfig::default()).await;
        assert_eq!(pool.backends().len(), 2, "duplicates are merged");
        let picks: Vec<u16> = (0..4)
            .map(|_| pool.pick(None).unwrap().addr.port())
            .collect();
        assert_eq!(picks.iter().filter(|&&p| p == 1).count(), 2, "{picks:?}");
        pool.backends()[0].mark_down("test");
        for _ in 0..4 {
            assert_eq!(pool.pick(None).unwrap().addr.port(), 2);
        }
        let first = pool.backends()[0].addr;
        let second = pool.backends()[1].addr;
        assert_eq!(
            pool.pick(Some(second)).unwrap().addr,
            first,
            "down, but the only other one"
        );
        pool.backends()[1].mark_down("test");
        assert!(pool.pick(None).is_some(), "all down: still try");
        let backends = pool.backends();
        let _busy = backends[0].start_call();
        pool.backends()[0].mark_up();
        pool.backends()[1].mark_up();
        for _ in 0..4 {
            assert_eq!(
                pool.pick(None).unwrap().addr,
                second,
                "fewer in flight wins"
            );
        }
    }
}
