//! SPF checks (RFC 7208) answering the engine's [`Lookup::Spf`]: the MAIL FROM identity
//! evaluated by `mail-auth` (Stalwart's SPF implementation), not by code of ours —
//! `include:` and `redirect=` chains, macros, `exp=`, and the limits (10 DNS-querying terms,
//! 10 MX hosts per `mx`; beyond them `permerror`) are the crate's.
//!
//! `mail-auth` resolves through a hickory resolver of its own (it cannot take ours), built
//! from the same configuration and options as [`crate::Resolver`]'s: the same servers, the
//! same per-attempt timeout, a cache of the same size. A check is bounded by the lookup
//! deadline: one that has not finished by then is a `temperror`.
//!
//! Results are cached (`check_host`'s outcome, not only the DNS answers it read): per client
//! address and sender domain, and also per sender and HELO name when the domain's records
//! read them (the `%{s}`, `%{l}`, `%{h}` or `%{t}` macros); each result until the earliest
//! expiry of the DNS answers it used, at most [`SpfChecker::MAX_AGE`] (answers that did not
//! come with a TTL, such as NXDOMAIN, are covered by that bound). A `temperror` is not
//! cached. The answer made from a result (its `Received-SPF` header names the request's
//! client address, sender and HELO) is cached too, per those three, as long as the result:
//! the recipients of one message after the first, and the next messages of a sender from
//! the same client, are answered without writing the header again.
//!
//! [`Lookup::Spf`]: sluice_engine::Lookup::Spf

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::Equivalent;
use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Mechanism, Spf, Variable};
use mail_auth::{
    MessageAuthenticator, Parameters, ReceivedSpf, RecordSet, ResolverCache, SpfOutput, Txt,
};
use sluice_engine::{SpfAnswer, SpfResult};

use crate::cache::TtlCache;
use crate::DnsError;

/// Evaluates SPF checks over its resolver (cheap to clone: the resolver is shared).
#[derive(Clone)]
pub struct SpfChecker {
    auth: MessageAuthenticator,
    /// Results by their inputs (shared by the clones).
    results: std::sync::Arc<TtlCache<SpfKey, Cached>>,
    /// Answers by the request's inputs, each as long as the result it was made from.
    answers: std::sync::Arc<TtlCache<AnswerKey, std::sync::Arc<SpfAnswer>>>,
    /// The `receiver` of the `Received-SPF` header and the `%{r}` macro: this host's name.
    receiver: String,
    timeout: Duration,
}

impl std::fmt::Debug for SpfChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpfChecker")
            .field("receiver", &self.receiver)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// This host's name (the `receiver` of `Received-SPF` headers); `localhost` when it has
/// none.
pub fn host_name() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

impl SpfChecker {
    /// The longest a result is kept, whatever the TTLs of the answers it used.
    pub const MAX_AGE: Duration = Duration::from_secs(300);

    /// A checker resolving with `config` and `options` (those of the lookups' resolver),
    /// answering within `timeout`, naming itself `receiver` in headers, keeping at most
    /// `cache_size` results.
    pub fn new(
        config: ResolverConfig,
        options: ResolverOpts,
        timeout: Duration,
        receiver: String,
        cache_size: u64,
    ) -> Result<SpfChecker, DnsError> {
        let auth = MessageAuthenticator::new(config, options)
            .map_err(|e| DnsError::Build(e.to_string()))?;
        Ok(SpfChecker {
            auth,
            results: std::sync::Arc::new(TtlCache::new(cache_size)),
            answers: std::sync::Arc::new(TtlCache::new(cache_size)),
            receiver,
            timeout,
        })
    }

    /// The answer for these inputs when a valid result is cached (no I/O, no waiting),
    /// shared with the cache.
    pub fn cached(
        &self,
        ip: IpAddr,
        sender: &str,
        helo: &str,
    ) -> Option<std::sync::Arc<SpfAnswer>> {
        self.cached_at(ip, sender, helo, Instant::now())
    }

    /// [`SpfChecker::cached`] valid at `now` (one reading of the clock for a request's
    /// questions).
    pub(crate) fn cached_at(
        &self,
        ip: IpAddr,
        sender: &str,
        helo: &str,
        now: Instant,
    ) -> Option<std::sync::Arc<SpfAnswer>> {
        let inputs = AnswerKeyRef { ip, sender, helo };
        if let Some(answer) = self.answers.get(&inputs, now) {
            return Some(answer);
        }
        let (output, until) = self.lookup(ip, sender, helo, now)?;
        let answer = std::sync::Arc::new(self.answer(&output, ip, sender, helo));
        self.answers
            .insert(inputs.to_owned(), answer.clone(), until, now);
        Some(answer)
    }

    /// How many results are cached (expired ones included until they are dropped).
    pub fn cached_results(&self) -> usize {
        self.results.len()
    }

    /// Checks `sender` (MAIL FROM) for a client at `ip` that said `helo`, within the
    /// checker's timeout: a check not finished by then is a `temperror`. From the cache
    /// when a result for these inputs is valid.
    pub async fn check(&self, ip: IpAddr, sender: &str, helo: &str) -> SpfAnswer {
        if let Some((output, _)) = self.lookup(ip, sender, helo, Instant::now()) {
            return self.answer(&output, ip, sender, helo);
        }
        let used = Used::default();
        let params = Parameters::new(SpfParameters::verify_mail_from(
            ip,
            helo,
            &self.receiver,
            sender,
        ))
        .with_txt_cache(&used)
        .with_mx_cache(&used)
        .with_ipv4_cache(&used)
        .with_ipv6_cache(&used)
        .with_ptr_cache(&used);
        let output = match tokio::time::timeout(self.timeout, self.auth.check_host(params)).await {
            Ok(output) => output,
            Err(_) => SpfOutput::new(domain_of(sender, helo).to_string())
                .with_result(mail_auth::SpfResult::TempError),
        };
        if output.result() != mail_auth::SpfResult::TempError {
            self.store(ip, sender, helo, &output, &used);
        }
        self.answer(&output, ip, sender, helo)
    }

    /// The answer to a request from `output` (its header names this request's sender and
    /// HELO).
    fn answer(&self, output: &SpfOutput, ip: IpAddr, sender: &str, helo: &str) -> SpfAnswer {
        let header = ReceivedSpf::new(output, ip, helo, sender, &self.receiver).to_header();
        SpfAnswer {
            result: result(output.result()),
            domain: output.domain().to_string(),
            explanation: output.explanation().map(str::to_string),
            header: one_line(&header),
        }
    }

    /// The cached result for these inputs, valid at `now`, and until when it is valid.
    fn lookup(
        &self,
        ip: IpAddr,
        sender: &str,
        helo: &str,
        now: Instant,
    ) -> Option<(SpfOutput, Instant)> {
        let key = SpfKey::of_domain(ip, sender, helo);
        match self.results.get_until(&key, now)? {
            (Cached::Output(output), until) => Some((output, until)),
            (Cached::PerSender, _) => {
                match self
                    .results
                    .get_until(&key.with_sender(sender, helo), now)?
                {
                    (Cached::Output(output), until) => Some((output, until)),
                    (Cached::PerSender, _) => None,
                }
            }
        }
    }

    /// Keeps `output` until the first of its answers expires (at most [`Self::MAX_AGE`]).
    fn store(&self, ip: IpAddr, sender: &str, helo: &str, output: &SpfOutput, used: &Used) {
        let now = Instant::now();
        let (expiry, per_sender) = used.take();
        let until = expiry.map_or(now + Self::MAX_AGE, |e| e.min(now + Self::MAX_AGE));
        let key = SpfKey::of_domain(ip, sender, helo);
        if per_sender {
            self.results.insert(
                key.with_sender(sender, helo),
                Cached::Output(output.clone()),
                until,
                now,
            );
            self.results.insert(key, Cached::PerSender, until, now);
        } else {
            self.results
                .insert(key, Cached::Output(output.clone()), until, now);
        }
    }
}

/// The inputs of `check_host` a result depends on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SpfKey {
    ip: IpAddr,
    /// The domain checked, lower case.
    domain: Box<str>,
    /// The sender and the HELO name, for a domain whose records read them.
    sender_and_helo: Option<(Box<str>, Box<str>)>,
}

impl SpfKey {
    fn of_domain(ip: IpAddr, sender: &str, helo: &str) -> SpfKey {
        SpfKey {
            ip,
            domain: domain_of(sender, helo).to_ascii_lowercase().into(),
            sender_and_helo: None,
        }
    }

    fn with_sender(&self, sender: &str, helo: &str) -> SpfKey {
        SpfKey {
            ip: self.ip,
            domain: self.domain.clone(),
            sender_and_helo: Some((sender.into(), helo.into())),
        }
    }
}

/// The inputs of one request's answer: the header names all three.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AnswerKey {
    ip: IpAddr,
    sender: Box<str>,
    helo: Box<str>,
}

/// [`AnswerKey`] borrowed from a request, to read the cache without building a key. Hashes
/// as the `AnswerKey` it stands for (the same fields, in the same order, `&str` hashing as
/// `Box<str>` does).
#[derive(Debug, Clone, Copy, Hash)]
struct AnswerKeyRef<'a> {
    ip: IpAddr,
    sender: &'a str,
    helo: &'a str,
}

impl AnswerKeyRef<'_> {
    fn to_owned(self) -> AnswerKey {
        AnswerKey {
            ip: self.ip,
            sender: self.sender.into(),
            helo: self.helo.into(),
        }
    }
}

impl Equivalent<AnswerKey> for AnswerKeyRef<'_> {
    fn equivalent(&self, key: &AnswerKey) -> bool {
        self.ip == key.ip && self.sender == &*key.sender && self.helo == &*key.helo
    }
}

/// A cached entry.
#[derive(Debug, Clone)]
enum Cached {
    /// The result for these inputs.
    Output(SpfOutput),
    /// The domain's records read the sender or the HELO: the result is kept per sender and
    /// HELO name.
    PerSender,
}

/// What one check used, gathered through `mail-auth`'s cache interface (which it calls
/// with every answer it resolved): the earliest expiry, and whether an SPF record read the
/// sender or the HELO name. It holds nothing, so every answer comes from the resolver.
#[derive(Default)]
struct Used(Mutex<(Option<Instant>, bool)>);

impl Used {
    fn note(&self, valid_until: Instant, per_sender: bool) {
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        used.0 = Some(used.0.map_or(valid_until, |e| e.min(valid_until)));
        used.1 |= per_sender;
    }

    fn take(&self) -> (Option<Instant>, bool) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl ResolverCache<Box<str>, Txt> for Used {
    fn get<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: Box<str>, value: Txt, valid_until: Instant) {
        let per_sender = match &value {
            Txt::Spf(spf) => record_reads_sender(spf),
            Txt::SpfMacro(m) => reads_sender(m),
            _ => false,
        };
        self.note(valid_until, per_sender);
    }
}

impl<K, T> ResolverCache<K, RecordSet<T>> for Used {
    fn get<Q>(&self, _: &Q) -> Option<RecordSet<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn remove<Q>(&self, _: &Q) -> Option<RecordSet<T>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    fn insert(&self, _: K, _: RecordSet<T>, valid_until: Instant) {
        self.note(valid_until, false);
    }
}

/// Whether an SPF record's macros read the sender, its local part, the HELO name or the
/// time (so its result is not the same for every sender of the domain).
fn record_reads_sender(spf: &Spf) -> bool {
    spf.directives.iter().any(|d| match &d.mechanism {
        Mechanism::Include { macro_string }
        | Mechanism::A { macro_string, .. }
        | Mechanism::Mx { macro_string, .. }
        | Mechanism::Ptr { macro_string }
        | Mechanism::Exists { macro_string } => reads_sender(macro_string),
        Mechanism::All | Mechanism::Ip4 { .. } | Mechanism::Ip6 { .. } => false,
    }) || spf.exp.as_ref().is_some_and(reads_sender)
        || spf.redirect.as_ref().is_some_and(reads_sender)
}

/// Whether a macro string reads `%{s}`, `%{l}`, `%{h}` or `%{t}`.
fn reads_sender(m: &Macro) -> bool {
    match m {
        Macro::Variable { letter, .. } => matches!(
            letter,
            Variable::Sender
                | Variable::SenderLocalPart
                | Variable::HeloDomain
                | Variable::CurrentTime
        ),
        Macro::List(list) => list.iter().any(reads_sender),
        Macro::Literal(_) | Macro::None => false,
    }
}

/// The domain checked: the sender's, or the HELO name for a sender without `@`.
fn domain_of<'a>(sender: &'a str, helo: &'a str) -> &'a str {
    sender.rsplit_once('@').map_or(helo, |(_, d)| d)
}

/// The header's value on one line: without `Received-SPF: `, folds joined by a space.
fn one_line(header: &str) -> String {
    let value = header.strip_prefix("Received-SPF:").unwrap_or(header);
    value
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn result(r: mail_auth::SpfResult) -> SpfResult {
    match r {
        mail_auth::SpfResult::Pass => SpfResult::Pass,
        mail_auth::SpfResult::Fail => SpfResult::Fail,
        mail_auth::SpfResult::SoftFail => SpfResult::SoftFail,
        mail_auth::SpfResult::Neutral => SpfResult::Neutral,
        mail_auth::SpfResult::None => SpfResult::None,
        mail_auth::SpfResult::TempError => SpfResult::TempError,
        mail_auth::SpfResult::PermError => SpfResult::PermError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded() {
        assert_eq!(
            one_line("Received-SPF: pass (mx: domain of a@b designates 1.2.3.4 as permitted sender)\r\n\treceiver=mx; client-ip=1.2.3.4;\r\n"),
            "pass (mx: domain of a@b designates 1.2.3.4 as permitted sender) receiver=mx; client-ip=1.2.3.4;"
        );
        assert_eq!(domain_of("a@b.org", "h.org"), "b.org");
        assert_eq!(domain_of("postmaster", "h.org"), "h.org");
    }

    #[test]
    fn a_borrowed_answer_key_hashes_and_compares_as_its_owned_key() {
        use std::hash::BuildHasher;
        let hasher = std::hash::RandomState::new();
        let borrowed = AnswerKeyRef {
            ip: "192.0.2.1".parse().unwrap(),
            sender: "a@b.org",
            helo: "mx.b.org",
        };
        let owned = borrowed.to_owned();
        assert_eq!(hasher.hash_one(borrowed), hasher.hash_one(&owned));
        assert!(borrowed.equivalent(&owned));
        let other_helo = AnswerKeyRef {
            helo: "mx2.b.org",
            ..borrowed
        };
        assert!(!other_helo.equivalent(&owned));
        let other_ip = AnswerKeyRef {
            ip: "192.0.2.2".parse().unwrap(),
            ..borrowed
        };
        assert!(!other_ip.equivalent(&owned));

        // Read back through the cache by the borrowed key.
        let cache: TtlCache<AnswerKey, u32> = TtlCache::new(16);
        let now = Instant::now();
        cache.insert(owned, 7, now + Duration::from_secs(60), now);
        assert_eq!(cache.get(&borrowed, now), Some(7));
        assert_eq!(cache.get(&other_helo, now), None);
        assert_eq!(cache.get(&borrowed, now + Duration::from_secs(61)), None);
    }
}
