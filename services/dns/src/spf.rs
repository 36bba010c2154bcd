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
//! [`Lookup::Spf`]: sluice_engine::Lookup::Spf

use std::net::IpAddr;
use std::time::Duration;

use hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{MessageAuthenticator, Parameters, ReceivedSpf, SpfOutput};
use sluice_engine::{SpfAnswer, SpfResult};

use crate::DnsError;

/// Evaluates SPF checks over its resolver (cheap to clone: the resolver is shared).
#[derive(Clone)]
pub struct SpfChecker {
    auth: MessageAuthenticator,
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
    /// A checker resolving with `config` and `options` (those of the lookups' resolver),
    /// answering within `timeout`, naming itself `receiver` in headers.
    pub fn new(
        config: ResolverConfig,
        options: ResolverOpts,
        timeout: Duration,
        receiver: String,
    ) -> Result<SpfChecker, DnsError> {
        let auth = MessageAuthenticator::new(config, options)
            .map_err(|e| DnsError::Build(e.to_string()))?;
        Ok(SpfChecker {
            auth,
            receiver,
            timeout,
        })
    }

    /// Checks `sender` (MAIL FROM) for a client at `ip` that said `helo`, within the
    /// checker's timeout: a check not finished by then is a `temperror`.
    pub async fn check(&self, ip: IpAddr, sender: &str, helo: &str) -> SpfAnswer {
        let params = SpfParameters::verify_mail_from(ip, helo, &self.receiver, sender);
        let output =
            match tokio::time::timeout(self.timeout, self.auth.check_host(Parameters::new(params)))
                .await
            {
                Ok(output) => output,
                Err(_) => SpfOutput::new(domain_of(sender, helo).to_string())
                    .with_result(mail_auth::SpfResult::TempError),
            };
        let header = ReceivedSpf::new(&output, ip, helo, sender, &self.receiver).to_header();
        SpfAnswer {
            result: result(output.result()),
            domain: output.domain().to_string(),
            explanation: output.explanation().map(str::to_string),
            header: one_line(&header),
        }
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
}
