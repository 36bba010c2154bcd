//! TLS to Redis (`rediss://`): rustls with the *ring* provider, the trusted CAs, an
//! optional client certificate (for Redis's `tls-auth-clients yes`) and an optional name
//! to verify every node's certificate against.
//!
//! Cluster nodes announce themselves by IP, while a managed service's certificate usually
//! names a host: [`RedisTls::server_name`] makes every node (seeds and every node the
//! cluster announces) be verified against that one name, sent as SNI too. Without it, each
//! node is verified against the host it is reached at (an IP address must then be in the
//! certificate's subject alternative names).

use crate::error::ConnectError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TLS settings of the connection to Redis; used for `rediss://` URLs only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    /// PEM file of the CAs that sign the Redis certificates. `None`: the system's trusted
    /// roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) presented to Redis; needs [`RedisTls::client_key`].
    pub client_cert: Option<PathBuf>,
    /// PEM private key of [`RedisTls::client_cert`].
    pub client_key: Option<PathBuf>,
    /// The name every node's certificate is verified against (and sent as SNI). `None`:
    /// the host each node is reached at.
    pub server_name: Option<String>,
}

/// A ready TLS client configuration and the name override.
#[derive(Clone)]
pub(crate) struct TlsConnector {
    connector: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl RedisTls {
    /// Reads the files and checks them (what `--check-config` runs). Every error is a
    /// configuration error: retrying cannot help.
    pub fn validate(&self) -> Result<(), ConnectError> {
        self.connector().map(|_| ())
    }

    /// The client configuration these settings describe.
    pub(crate) fn connector(&self) -> Result<TlsConnector, ConnectError> {
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                for cert in read_certs(path, "CA file")? {
                    roots
                        .add(cert)
                        .map_err(|e| tls_error(format!("CA file {}: {e}", path.display())))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                for cert in found.certs {
                    // A system root rustls cannot parse is skipped, as browsers do.
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(tls_error(
                        "no trusted root certificates found on this system: give the CA file of the Redis certificates (redis_tls_ca_file)".into(),
                    ));
                }
            }
        }
        // The process's crypto provider: ring, the only one built in (no aws-lc).
        let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
        let config = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key)) => {
                let chain = read_certs(cert, "client certificate")?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                    tls_error(format!(
                        "client key {}: {e}: give a PEM private key file",
                        key.display()
                    ))
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| tls_error(format!("client certificate and key: {e}")))?
            }
            (None, None) => builder.with_no_client_auth(),
            _ => {
                return Err(tls_error(
                    "a client certificate needs its key and a key needs its certificate: give both (redis_tls_cert_file, redis_tls_key_file) or neither".into(),
                ))
            }
        };
        let server_name = match &self.server_name {
            Some(name) => Some(ServerName::try_from(name.clone()).map_err(|_| {
                tls_error(format!(
                    "server name {name:?} is not a valid DNS name or IP address"
                ))
            })?),
            None => None,
        };
        Ok(TlsConnector {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }
}

impl TlsConnector {
    /// Runs the TLS handshake on `tcp` for the node at `host`.
    pub(crate) async fn connect(
        &self,
        host: &str,
        tcp: tokio::net::TcpStream,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_string()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{host:?} is not a valid TLS server name"),
                )
            })?,
        };
        self.connector.connect(name, tcp).await
    }
}

fn read_certs(path: &Path, what: &str) -> Result<Vec<CertificateDer<'static>>, ConnectError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            tls_error(format!(
                "{what} {}: {e}: give a readable PEM file",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(tls_error(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        )));
    }
    Ok(certs)
}

fn tls_error(msg: String) -> ConnectError {
    ConnectError::Tls(msg)
}
