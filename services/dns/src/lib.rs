//! DNS at the edge: answers the engine's lookups ([`sluice_engine::Lookup`]) for the
//! modules that need them (CheckHelo, CheckSPF).
//!
//! The engine does no I/O: [`sluice_engine::Engine::lookups`] lists a request's questions,
//! the edge answers them here ([`Answerer::answer`]) and decides with
//! [`sluice_engine::Engine::decide_with`]. The resolver is `hickory-resolver` on tokio:
//! - servers: [`DnsConfig::servers`] (UDP, with TCP for truncated answers), or the
//!   system's `/etc/resolv.conf` when none are given; the hosts file is not read (answers
//!   come from DNS only, as a remote client's names should);
//! - cache: hickory's own, of [`DnsConfig::cache_size`] entries, each kept up to its
//!   record's TTL (negative answers up to their SOA's minimum); in front of it, the
//!   lookups' answers (and SPF results and answers, `spf.rs`) of as many entries, each kept
//!   until the first of the records it was made from expires: a request whose answers are
//!   all held is answered at once, without the resolver's futures and timers;
//! - deadline: all questions of one request are asked at once and answered within one
//!   [`DnsConfig::timeout`]; what is not answered by then is [`LookupAnswer::Failed`].
//!
//! SPF checks ([`sluice_engine::Lookup::Spf`], CheckSPF's) are evaluated by `mail-auth`
//! ([`SpfChecker`], `spf.rs`) over a resolver built from the same configuration, within the
//! same deadline.
//!
//! Answers: records → [`LookupAnswer::Addresses`] / [`LookupAnswer::Records`];
//! NXDOMAIN or no record of the type (NODATA) → [`LookupAnswer::NotFound`]; a timeout,
//! SERVFAIL, REFUSED or any other failure → [`LookupAnswer::Failed`] (a temporary
//! failure for the modules).
#![forbid(unsafe_code)]

mod cache;
mod resolver;
mod spf;

pub use resolver::{Answerer, DnsConfig, DnsError, Resolver};
pub use spf::{host_name, SpfChecker};
