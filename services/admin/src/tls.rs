//! TLS on the admin listener (rustls, ring provider): the certificate chain and key from PEM
//! files, and a listener that does each handshake in a task of its own (a client that never
//! finishes one holds nobody else up) before handing the connection to the HTTP server.
//! Connections count against the same cap and idle timeout as plain ones
//! ([`sluice_runtime::http::LimitedListener`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::serve::{IncomingStream, Listener};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use sluice_runtime::http::{HttpLimits, LimitedIo, LimitedListener};
use sluice_store::Store;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::AdminOptions;

/// Longest a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file holds no PEM certificate.
    #[error("admin_tls_cert_file holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)")]
    NoCertificate,
    /// A certificate is not valid PEM.
    #[error("admin_tls_cert_file: {0}")]
    BadCertificate(String),
    /// The key file holds no usable private key.
    #[error("admin_tls_key_file holds no PEM private key (PKCS#8, PKCS#1 or SEC1): {0}")]
    BadKey(String),
    /// rustls refused the pair (e.g. the key does not belong to the certificate).
    #[error("admin_tls_cert_file and admin_tls_key_file do not make a usable TLS identity: {0}")]
    Identity(String),
}

/// A rustls server configuration from a PEM certificate chain and its PEM private key
/// (HTTP/1.1 over TLS 1.2 and 1.3).
pub fn server_config(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::BadKey(e.to_string()))?;
    // The process's provider: ring, the workspace's only rustls provider.
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Identity(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The client address of a request served over TLS (as
/// `axum::extract::ConnectInfo<TlsClientAddr>`; plain connections carry
/// [`sluice_runtime::http::ClientAddr`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TlsClientAddr(pub SocketAddr);

impl Connected<IncomingStream<'_, TlsListener>> for TlsClientAddr {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        TlsClientAddr(*stream.remote_addr())
    }
}

/// Connections whose TLS handshake is done, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<LimitedIo>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` within `limits`, each handshake in its own task.
    pub fn new(listener: TcpListener, limits: HttpLimits, config: Arc<ServerConfig>) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, ready) = mpsc::channel(16);
        let acceptor = TlsAcceptor::from(config);
        let mut tcp = LimitedListener::new(listener, limits);
        tokio::spawn(async move {
            loop {
                let (io, addr) = tokio::select! {
                    c = tcp.accept() => c,
                    () = tx.closed() => return,
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(io)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, addr)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(client = %addr, error = %e, "Admin TLS handshake failed");
                        }
                        Err(_) => {
                            tracing::debug!(client = %addr, "Admin TLS handshake timed out");
                        }
                    }
                });
            }
        });
        TlsListener { ready, local }
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<LimitedIo>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, SocketAddr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accepting task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// [`crate::serve`] over TLS with `config`: session cookies are marked `Secure` whatever
/// `options.secure_cookies` says.
pub async fn serve_tls(
    listener: TcpListener,
    store: Store,
    options: AdminOptions,
    config: Arc<ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = options.limits;
    let options = AdminOptions {
        secure_cookies: true,
        ..options
    };
    let app = crate::router(store, options);
    axum::serve(
        TlsListener::new(listener, limits, config),
        app.into_make_service_with_connect_info::<TlsClientAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
