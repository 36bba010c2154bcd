//! How the quota service's gRPC listener is secured: TLS (a certificate and key, PEM) with
//! optionally required client certificates (mTLS, against a client-CA bundle), and/or a
//! shared bearer token every `sluice.quota.v1.Quota` call must carry.
//!
//! `grpc.health.v1` is behind the token too: it reveals little (whether the service
//! serves), but an edge holding a wrong token then sees every endpoint fail its probe, so
//! its `/readyz` says it cannot serve instead of answering every request with the fallback
//! action. With mTLS every connection, health checks included, needs a client certificate.

use sluice_proto::auth::{BearerToken, RequireToken};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// The server's TLS material, PEM as read from the configured files.
#[derive(Clone)]
pub struct ServerTls {
    /// Certificate chain (leaf first).
    pub cert_pem: Vec<u8>,
    /// The certificate's private key.
    pub key_pem: Vec<u8>,
    /// CA certificates client certificates must chain to; `Some` makes a client
    /// certificate required on every connection.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mtls", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// tonic's server TLS settings (rustls with the ring provider).
    pub fn tonic_config(&self) -> ServerTlsConfig {
        let config = ServerTlsConfig::new().identity(Identity::from_pem(
            self.cert_pem.clone(),
            self.key_pem.clone(),
        ));
        match &self.client_ca_pem {
            Some(ca) => config.client_ca_root(Certificate::from_pem(ca.clone())),
            None => config,
        }
    }
}

/// TLS and client authentication of the gRPC listener (default: neither — only for a
/// loopback listener or an explicit opt-out; the `sluice quota` role enforces that).
#[derive(Clone, Debug, Default)]
pub struct Security {
    /// TLS on the listener; `None`: plaintext HTTP/2.
    pub tls: Option<ServerTls>,
    /// Bearer token every Quota call must carry; `None`: none required.
    pub token: Option<BearerToken>,
}

impl Security {
    /// Whether clients must authenticate (a client certificate or the token).
    pub fn authenticates_clients(&self) -> bool {
        self.token.is_some() || self.tls.as_ref().is_some_and(|t| t.client_ca_pem.is_some())
    }

    /// The interceptor in front of the Quota service.
    pub fn interceptor(&self) -> TokenCheck {
        TokenCheck(RequireToken::new(self.token.clone()))
    }
}

/// [`RequireToken`], logging refusals (rate-limited).
#[derive(Clone, Debug)]
pub struct TokenCheck(RequireToken);

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let peer = request.remote_addr();
        self.0.call(request).inspect_err(|_| {
            sluice_runtime::warn_limited!(
                peer = ?peer,
                "Refused a quota call without a valid bearer token (UNAUTHENTICATED)."
            );
        })
    }
}
