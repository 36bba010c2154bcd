//! The resolver: hickory on tokio, answering [`Lookup`]s under one deadline.

use crate::cache::TtlCache;
use crate::spf::SpfChecker;
use futures_util::future::join_all;
use hashbrown::Equivalent;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sluice_engine::{Lookup, LookupAnswer, LookupAnswers};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// How lookups are answered. [`Default`]: the system's name servers, 500 ms, 8192 entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Name servers (`ip:port`), asked in order; empty: those of `/etc/resolv.conf`.
    pub servers: Vec<SocketAddr>,
    /// How long the lookups of one request may take together: what is not answered by then
    /// is a temporary failure. Keep it below the request deadline, so the module's own
    /// temporary answer (not the fallback action) reaches Postfix.
    pub timeout: Duration,
    /// Most answers cached (each up to its TTL): the size of hickory's cache, of the cache
    /// of the lookups' answers in front of it, of the cache of SPF results and of the cache
    /// of SPF answers (per client address, sender and HELO).
    pub cache_size: u64,
    /// The `receiver` named in `Received-SPF` headers (and SPF's `%{r}` macro); `None`:
    /// this host's name ([`crate::host_name`]).
    pub spf_receiver: Option<String>,
}

impl DnsConfig {
    /// The default per-request lookup time.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(500);
    /// The default cache size (hickory's own default).
    pub const DEFAULT_CACHE_SIZE: u64 = 8192;
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Self::DEFAULT_TIMEOUT,
            cache_size: Self::DEFAULT_CACHE_SIZE,
            spf_receiver: None,
        }
    }
}

/// Why a resolver could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    /// The system's resolver configuration could not be read.
    #[error("cannot read the system's DNS configuration (/etc/resolv.conf): {0}; set dns_servers")]
    SystemConfig(String),
    /// No name server to ask.
    #[error("no DNS servers: /etc/resolv.conf lists none; set dns_servers")]
    NoServers,
    /// The resolver could not be built.
    #[error("cannot build the DNS resolver: {0}")]
    Build(String),
}

/// A caching resolver for the engine's lookups.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    /// The answers to [`Lookup`]s other than SPF checks, kept up to their records' TTL
    /// (a negative answer up to its SOA's minimum): a request whose answers are all held is
    /// answered without the resolver, its futures or timers.
    answers: Arc<TtlCache<Key, LookupAnswer>>,
    timeout: Duration,
    /// CheckSPF's evaluator ([`Lookup::Spf`]).
    spf: SpfChecker,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resolver")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Resolver {
    /// Builds a resolver from `config` (reads `/etc/resolv.conf` when no servers are given).
    pub fn new(config: &DnsConfig) -> Result<Resolver, DnsError> {
        let provider = TokioRuntimeProvider::default();
        let resolver_config = if config.servers.is_empty() {
            let (system, _) = hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| DnsError::SystemConfig(e.to_string()))?;
            if system.name_servers().is_empty() {
                return Err(DnsError::NoServers);
            }
            system
        } else {
            let servers = config
                .servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            ResolverConfig::from_name_servers(servers)
        };
        let mut builder = TokioResolver::builder_with_config(resolver_config.clone(), provider);
        let opts = builder.options_mut();
        // Each attempt may use the whole budget; the per-request deadline cuts it.
        opts.timeout = config.timeout;
        opts.attempts = 1;
        opts.cache_size = config.cache_size;
        opts.use_hosts_file = ResolveHosts::Never;
        // The names asked are complete (a HELO name, a domain): no search list.
        opts.ndots = 0;
        let inner = builder
            .build()
            .map_err(|e| DnsError::Build(e.to_string()))?;
        // SPF checks resolve with the same servers and options (`spf.rs`).
        let spf = SpfChecker::new(
            resolver_config,
            inner.options().clone(),
            config.timeout,
            config
                .spf_receiver
                .clone()
                .unwrap_or_else(crate::spf::host_name),
            config.cache_size,
        )?;
        Ok(Resolver {
            inner,
            answers: Arc::new(TtlCache::new(config.cache_size)),
            timeout: config.timeout,
            spf,
        })
    }

    /// Answers every question at once, within the configured timeout; a question not
    /// answered in time is [`LookupAnswer::Failed`]. Answers still valid in the caches are
    /// given at once (shared with the cache, read by the borrowed question: nothing is
    /// copied); only the others are asked. Questions given as a `Vec` are moved into the
    /// answers (a borrowed slice is cloned: borrowed names stay borrowed).
    pub async fn answer<'s, 'q: 's>(
        &self,
        questions: impl Into<Cow<'s, [Lookup<'q>]>>,
    ) -> LookupAnswers<'q> {
        let mut answers = LookupAnswers::unanswered(questions.into().into_owned());
        let now = Instant::now();
        // The indexes of the questions no cache answers (no allocation when there are none).
        let mut missing: Vec<usize> = Vec::new();
        for (i, (q, a)) in answers.iter_mut().enumerate() {
            match self.cached(q, now) {
                Some(cached) => *a = cached,
                None => missing.push(i),
            }
        }
        if missing.is_empty() {
            return answers;
        }
        let questions = answers.questions();
        let asked = join_all(missing.iter().map(|&i| {
            let q = &questions[i];
            async move {
                match tokio::time::timeout(self.timeout, self.answer_one(q)).await {
                    Ok(a) => a,
                    Err(_) => LookupAnswer::Failed,
                }
            }
        }))
        .await;
        for (i, a) in missing.into_iter().zip(asked) {
            answers.set(i, a);
        }
        answers
    }

    /// The answer to `question` when a cache holds one valid at `now`.
    fn cached(&self, question: &Lookup<'_>, now: Instant) -> Option<LookupAnswer> {
        match question {
            Lookup::Spf { ip, sender, helo } => self
                .spf
                .cached_at(*ip, sender, helo, now)
                .map(LookupAnswer::Spf),
            _ => self.answers.get(question, now),
        }
    }

    /// Answers one question (no deadline of its own beyond the resolver's timeout), from
    /// the caches when they hold a valid answer.
    pub async fn answer_one(&self, question: &Lookup<'_>) -> LookupAnswer {
        if let Lookup::Spf { ip, sender, helo } = question {
            return LookupAnswer::Spf(Arc::new(self.spf.check(*ip, sender, helo).await));
        }
        let now = Instant::now();
        if let Some(a) = self.answers.get(question, now) {
            return a;
        }
        let (answer, until) = self.resolve(question).await;
        if let Some(until) = until {
            self.answers.insert(
                Key(question.clone().into_owned()),
                answer.clone(),
                until,
                Instant::now(),
            );
        }
        answer
    }

    /// How many answers to lookups other than SPF checks are cached, and how many SPF
    /// results (expired ones included until they are dropped).
    pub fn cached_answers(&self) -> (usize, usize) {
        (self.answers.len(), self.spf.cached_results())
    }

    /// Asks the resolver: the answer, and until when it may be kept (`None`: not kept).
    async fn resolve(&self, question: &Lookup<'_>) -> (LookupAnswer, Option<Instant>) {
        match question {
            Lookup::Spf { .. } => unreachable!("SPF checks are answered by the SPF checker"),
            Lookup::Addresses { name } => self.addresses(name).await,
            Lookup::Mx { domain } => {
                let Some(name) = fqdn(domain) else {
                    return (LookupAnswer::NotFound, None);
                };
                match self.inner.lookup(name, RecordType::MX).await {
                    Ok(l) => {
                        let mut mx: Vec<(u16, String)> = l
                            .answers()
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::MX(m) => Some((m.preference, plain(&m.exchange.to_ascii()))),
                                _ => None,
                            })
                            .collect();
                        mx.sort();
                        (
                            records(mx.into_iter().map(|(_, h)| h).collect()),
                            Some(l.valid_until()),
                        )
                    }
                    Err(e) => failure(&e),
                }
            }
            Lookup::Txt { name } => {
                let Some(fq) = fqdn(name) else {
                    return (LookupAnswer::NotFound, None);
                };
                match self.inner.lookup(fq, RecordType::TXT).await {
                    Ok(l) => (
                        records(
                            l.answers()
                                .iter()
                                .filter_map(|r| match &r.data {
                                    RData::TXT(t) => Some(
                                        t.txt_data
                                            .iter()
                                            .map(|s| String::from_utf8_lossy(s))
                                            .collect::<String>(),
                                    ),
                                    _ => None,
                                })
                                .collect(),
                        ),
                        Some(l.valid_until()),
                    ),
                    Err(e) => failure(&e),
                }
            }
            Lookup::Ptr { ip } => match self.inner.lookup(reverse_name(*ip), RecordType::PTR).await
            {
                Ok(l) => (
                    records(
                        l.answers()
                            .iter()
                            .filter_map(|r| match &r.data {
                                RData::PTR(p) => Some(plain(&p.0.to_ascii())),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Some(l.valid_until()),
                ),
                Err(e) => failure(&e),
            },
        }
    }

    /// A and AAAA, asked together: addresses when either has some; not found when both
    /// say so; otherwise (one failed, the other has none) a failure. Kept until the first
    /// of the two answers expires.
    async fn addresses(&self, name: &str) -> (LookupAnswer, Option<Instant>) {
        let Some(fq) = fqdn(name) else {
            return (LookupAnswer::NotFound, None);
        };
        let (v4, v6) = futures_util::future::join(
            self.inner.lookup(fq.clone(), RecordType::A),
            self.inner.lookup(fq, RecordType::AAAA),
        )
        .await;
        let mut ips: Vec<IpAddr> = Vec::new();
        let mut failed = false;
        let mut until: [Option<Instant>; 2] = [None; 2];
        for (r, until) in [v4, v6].into_iter().zip(&mut until) {
            *until = match r {
                Ok(l) => {
                    ips.extend(l.answers().iter().filter_map(|r| match &r.data {
                        RData::A(a) => Some(IpAddr::V4(a.0)),
                        RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    }));
                    Some(l.valid_until())
                }
                Err(e) => {
                    let (a, valid) = failure(&e);
                    failed |= a == LookupAnswer::Failed;
                    valid
                }
            };
        }
        // Kept only when both answers may be.
        let until = match until {
            [Some(a), Some(b)] => Some(a.min(b)),
            _ => None,
        };
        let answer = if !ips.is_empty() {
            LookupAnswer::Addresses(ips.into())
        } else if failed {
            LookupAnswer::Failed
        } else {
            LookupAnswer::NotFound
        };
        (answer, until)
    }
}

/// Records, or not found when there are none.
fn records(r: Vec<String>) -> LookupAnswer {
    if r.is_empty() {
        LookupAnswer::NotFound
    } else {
        LookupAnswer::Records(r.into())
    }
}

/// A question the lookups' cache holds: owned, and read by the borrowed question of a
/// request (hashing as it does: the same fields, and `Cow<str>` hashes as `str`), so no
/// key is built to read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key(Lookup<'static>);

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        *self == key.0
    }
}

/// The longest a negative answer (NXDOMAIN, NODATA) is kept by the lookups' cache.
const MAX_NEGATIVE_AGE: Duration = Duration::from_secs(300);

/// NXDOMAIN and NODATA are answers (not found), kept up to their negative TTL (the SOA's
/// minimum, when the answer had an SOA; at most [`MAX_NEGATIVE_AGE`]); anything else
/// failed, and is not kept.
fn failure(e: &NetError) -> (LookupAnswer, Option<Instant>) {
    match e {
        NetError::Dns(hickory_resolver::net::DnsError::NoRecordsFound(no)) => {
            let until = no.negative_ttl.map(|ttl| {
                Instant::now() + Duration::from_secs(u64::from(ttl)).min(MAX_NEGATIVE_AGE)
            });
            (LookupAnswer::NotFound, until)
        }
        _ => {
            tracing::debug!(error = %e, "DNS lookup failed");
            (LookupAnswer::Failed, None)
        }
    }
}

/// `name` made fully qualified (no search list); `None` when it is not a valid DNS name
/// (such a name does not exist).
fn fqdn(name: &str) -> Option<String> {
    let n = name.trim().trim_end_matches('.');
    if n.is_empty() || n.len() > 253 {
        return None;
    }
    hickory_resolver::proto::rr::Name::from_ascii(n).ok()?;
    Some(format!("{n}."))
}

/// A name without its trailing dot, lower case.
fn plain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The reverse-DNS name of `ip`.
fn reverse_name(ip: IpAddr) -> hickory_resolver::proto::rr::Name {
    hickory_resolver::proto::rr::Name::from(ip)
}

/// A resolver built on first use and shared: what the edge keeps. When it cannot be
/// built (no `/etc/resolv.conf`), every question is answered [`LookupAnswer::Failed`]
/// and the reason is logged once.
#[derive(Debug)]
pub struct Answerer {
    config: DnsConfig,
    resolver: OnceLock<Option<Resolver>>,
}

impl Answerer {
    /// An answerer for `config`; nothing is read or built until the first question.
    pub fn new(config: DnsConfig) -> Answerer {
        Answerer {
            config,
            resolver: OnceLock::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &DnsConfig {
        &self.config
    }

    /// Explains `req` with `engine`, answering its lookups (DNS) first, as the policy
    /// listeners do (`sluice explain` over HTTP, the admin service's Explain).
    pub async fn explain(
        &self,
        engine: &sluice_engine::Engine,
        req: &sluice_engine::PolicyRequest<'_>,
    ) -> sluice_engine::Explanation {
        let lookups = engine.lookups(req);
        if lookups.is_empty() {
            engine.explain(req).await
        } else {
            let answers = self.answer(lookups).await;
            engine.explain_with(req, &answers).await
        }
    }

    /// Answers `questions` within the configured timeout (see [`Resolver::answer`]).
    pub async fn answer<'s, 'q: 's>(
        &self,
        questions: impl Into<Cow<'s, [Lookup<'q>]>>,
    ) -> LookupAnswers<'q> {
        let resolver = self.resolver.get_or_init(|| match Resolver::new(&self.config) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "DNS lookups cannot be made; modules that need them answer their temporary-failure action");
                None
            }
        });
        match resolver {
            Some(r) => r.answer(questions).await,
            None => {
                let mut a = LookupAnswers::unanswered(questions.into().into_owned());
                for (_, answer) in a.iter_mut() {
                    *answer = LookupAnswer::Failed;
                }
                a
            }
        }
    }
}
