//! How the edge reaches the quota service securely: TLS for `https://` endpoints (the
//! server verified against a CA bundle, or the system's roots when none is given; the name
//! checked is the URL's host unless overridden), an optional client certificate (mTLS), and
//! an optional bearer token added to every Quota call.

use sluice_proto::auth::{AddToken, BearerToken};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// TLS settings for `https://` endpoints, PEM as read from the configured files.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// CA certificates the quota service's certificate must chain to; `None`: the system's
    /// root certificates.
    pub ca_pem: Option<Vec<u8>>,
    /// This edge's client certificate chain and key (PEM), presented when the service
    /// requires client certificates.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the service's certificate must hold; `None`: the endpoint URL's host.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.identity.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// TLS and authentication of the edge's calls (default: plain `http://`, no token).
#[derive(Clone, Debug, Default)]
pub struct ClientSecurity {
    /// Used for `https://` endpoints (`None` there means: system roots, no client
    /// certificate, the URL's host as the name).
    pub tls: Option<ClientTls>,
    /// Sent as `authorization: Bearer ...` on every Quota call.
    pub token: Option<BearerToken>,
}

impl ClientSecurity {
    /// The interceptor adding the token to every call.
    pub(crate) fn interceptor(&self) -> AddToken {
        AddToken::new(self.token.as_ref())
    }

    /// tonic's TLS settings for an endpoint whose URL names `host`.
    pub(crate) fn tonic_config(&self, host: &str) -> ClientTlsConfig {
        let tls = self.tls.clone().unwrap_or_default();
        let mut config =
            ClientTlsConfig::new().domain_name(tls.server_name.unwrap_or_else(|| host.to_string()));
        config = match tls.ca_pem {
            Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
            None => config.with_native_roots(),
        };
        if let Some((cert, key)) = tls.identity {
            config = config.identity(Identity::from_pem(cert, key));
        }
        config
    }

    /// Adds TLS to `endpoint` (for a URL naming `host`); errors name what to fix.
    pub(crate) fn secure(&self, endpoint: Endpoint, host: &str) -> Result<Endpoint, String> {
        endpoint.tls_config(self.tonic_config(host)).map_err(|e| {
            let mut msg = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            msg
        })
    }
}
