//! The files that secure the gRPC link between edges and quota services: read, checked and
//! turned into [`sluice_quota::Security`] (the quota service's listener) and
//! [`sluice_remote::ClientSecurity`] (the edge's calls).
//!
//! The same functions run for `--check-config` and at start, so a configuration that passes
//! the check starts: every file readable, every PEM file holding what it should, each
//! certificate matching its key, each token usable. Files are read once, at start: a new
//! certificate or token takes a restart.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use sluice_proto::auth::BearerToken;
use sluice_quota::{Security, ServerTls};
use sluice_remote::{ClientSecurity, ClientTls};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The quota service's files (settings `grpc_tls_cert_file`, `grpc_tls_key_file`,
/// `grpc_client_ca_file`, `grpc_token_file`) and `grpc_allow_unauthenticated`.
#[derive(Debug, Clone, Default)]
pub struct ServerFiles {
    /// Certificate chain of the listener.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// CA bundle client certificates must chain to (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Bearer token file.
    pub token: Option<PathBuf>,
    /// Whether a non-loopback listener may run without client authentication.
    pub allow_unauthenticated: bool,
}

/// The edge's files (settings `quota_tls_ca_file`, `quota_tls_cert_file`,
/// `quota_tls_key_file`, `quota_token_file`) and `quota_tls_server_name`.
#[derive(Debug, Clone, Default)]
pub struct ClientFiles {
    /// CA bundle the quota service's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// Client certificate chain.
    pub cert: Option<PathBuf>,
    /// Its key.
    pub key: Option<PathBuf>,
    /// Name the service's certificate must hold.
    pub server_name: Option<String>,
    /// Bearer token file.
    pub token: Option<PathBuf>,
}

impl ClientFiles {
    /// Whether any TLS setting is given.
    pub fn any_tls(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some() || self.server_name.is_some()
    }
}

/// Reads and checks the quota service's files for a listener on `listen`; every problem is
/// reported, each naming its setting.
pub fn server_security(
    files: &ServerFiles,
    listen: Option<SocketAddr>,
) -> Result<Security, Vec<String>> {
    let mut errors = Vec::new();
    let identity = identity(
        ("grpc_tls_cert_file", files.cert.as_deref()),
        ("grpc_tls_key_file", files.key.as_deref()),
        &mut errors,
    );
    let client_ca = files
        .client_ca
        .as_deref()
        .and_then(|p| ca_bundle("grpc_client_ca_file", p, &mut errors));
    if files.client_ca.is_some() && files.cert.is_none() && files.key.is_none() {
        errors.push(
            "grpc_client_ca_file needs TLS: set grpc_tls_cert_file and grpc_tls_key_file too"
                .into(),
        );
    }
    let token = files
        .token
        .as_deref()
        .and_then(|p| token("grpc_token_file", p, &mut errors));
    let security = Security {
        tls: identity.map(|(cert_pem, key_pem)| ServerTls {
            cert_pem,
            key_pem,
            client_ca_pem: client_ca,
        }),
        token,
    };
    let exposed = listen.is_some_and(|a| !a.ip().is_loopback());
    let authenticated = files.client_ca.is_some() || files.token.is_some();
    if exposed && !authenticated && !files.allow_unauthenticated {
        errors.push(format!(
            "grpc_listen {} is reachable from other hosts, but no client authentication is configured: anyone reaching it could take or give back quota. Set grpc_client_ca_file (mTLS, with grpc_tls_cert_file and grpc_tls_key_file) and/or grpc_token_file; or, where only the edges can reach the port, grpc_allow_unauthenticated = true",
            listen.expect("exposed implies a listener")
        ));
    }
    if errors.is_empty() {
        Ok(security)
    } else {
        Err(errors)
    }
}

/// Reads and checks the edge's files for the quota URLs `urls`.
pub fn client_security(
    files: &ClientFiles,
    urls: &[String],
) -> Result<ClientSecurity, Vec<String>> {
    let mut errors = Vec::new();
    let identity = identity(
        ("quota_tls_cert_file", files.cert.as_deref()),
        ("quota_tls_key_file", files.key.as_deref()),
        &mut errors,
    );
    let ca = files
        .ca
        .as_deref()
        .and_then(|p| ca_bundle("quota_tls_ca_file", p, &mut errors));
    if let Some(name) = &files.server_name {
        if rustls::pki_types::ServerName::try_from(name.as_str()).is_err() {
            errors.push(format!(
                "quota_tls_server_name {name:?} is neither a DNS name nor an IP address"
            ));
        }
    }
    let https = urls.iter().any(|u| u.starts_with("https://"));
    if https && files.ca.is_none() && rustls_native_certs::load_native_certs().certs.is_empty() {
        errors.push(
            "https:// quota URLs without quota_tls_ca_file are checked against the system's root certificates, and none were found (install ca-certificates, or set quota_tls_ca_file to the CA that signed the quota service's certificate)"
                .into(),
        );
    }
    if files.any_tls() && !https {
        errors.push(
            "quota_tls_* settings apply to https:// quota URLs, and none is: use https:// in `quota`, or drop them"
                .into(),
        );
    }
    let token = files
        .token
        .as_deref()
        .and_then(|p| token("quota_token_file", p, &mut errors));
    let tls = files.any_tls().then(|| ClientTls {
        ca_pem: ca,
        identity,
        server_name: files.server_name.clone(),
    });
    if errors.is_empty() {
        Ok(ClientSecurity { tls, token })
    } else {
        Err(errors)
    }
}

/// A file's bytes, or an error naming the setting.
fn read(key: &str, path: &Path, errors: &mut Vec<String>) -> Option<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| {
            errors.push(format!(
                "{key} {:?}: cannot read it: {e}",
                path.display().to_string()
            ))
        })
        .ok()
}

/// The certificates of a PEM file (at least one).
fn certificates(
    key: &str,
    path: &Path,
    errors: &mut Vec<String>,
) -> Option<(Vec<u8>, Vec<CertificateDer<'static>>)> {
    let pem = read(key, path, errors)?;
    let shown = path.display().to_string();
    let certs: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(&pem).collect();
    match certs {
        Ok(c) if !c.is_empty() => Some((pem, c)),
        Ok(_) => {
            errors.push(format!(
                "{key} {shown:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            ));
            None
        }
        Err(e) => {
            errors.push(format!("{key} {shown:?}: not valid PEM: {e}"));
            None
        }
    }
}

/// A CA bundle: PEM certificates each usable as a trust anchor.
fn ca_bundle(key: &str, path: &Path, errors: &mut Vec<String>) -> Option<Vec<u8>> {
    let (pem, certs) = certificates(key, path, errors)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs {
        if let Err(e) = roots.add(cert) {
            errors.push(format!(
                "{key} {:?}: a certificate is not usable as a CA: {e}",
                path.display().to_string()
            ));
            return None;
        }
    }
    Some(pem)
}

/// A certificate chain and its key (both or neither), checked to belong together.
fn identity(
    (cert_key, cert): (&str, Option<&Path>),
    (key_key, key): (&str, Option<&Path>),
    errors: &mut Vec<String>,
) -> Option<(Vec<u8>, Vec<u8>)> {
    let (cert, key) = match (cert, key) {
        (None, None) => return None,
        (Some(_), None) => {
            errors.push(format!("{cert_key} needs {key_key} (its private key)"));
            return None;
        }
        (None, Some(_)) => {
            errors.push(format!("{key_key} needs {cert_key} (its certificate)"));
            return None;
        }
        (Some(c), Some(k)) => (c, k),
    };
    let certs = certificates(cert_key, cert, errors);
    let key_pem = read(key_key, key, errors)?;
    let shown = key.display().to_string();
    let der = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(d) => d,
        Err(e) => {
            errors.push(format!(
                "{key_key} {shown:?} holds no usable PEM private key (PKCS#8, PKCS#1 or SEC1): {e}"
            ));
            return None;
        }
    };
    let signing = match rustls::crypto::ring::sign::any_supported_type(&der) {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("{key_key} {shown:?}: unsupported key: {e}"));
            return None;
        }
    };
    let (cert_pem, chain) = certs?;
    if let Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) =
        CertifiedKey::new(chain, signing).keys_match()
    {
        errors.push(format!(
            "{key_key} {shown:?} is not the key of {cert_key} {:?}",
            cert.display().to_string()
        ));
        return None;
    }
    Some((cert_pem, key_pem))
}

/// A token file's token.
fn token(key: &str, path: &Path, errors: &mut Vec<String>) -> Option<BearerToken> {
    let bytes = read(key, path, errors)?;
    let shown = path.display().to_string();
    let Ok(text) = String::from_utf8(bytes) else {
        errors.push(format!(
            "{key} {shown:?}: not text: write a random hex or base64 token into it"
        ));
        return None;
    };
    BearerToken::from_file_text(&text)
        .map_err(|e| errors.push(format!("{key} {shown:?}: {e}")))
        .ok()
}
