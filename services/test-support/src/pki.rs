//! A throw-away certificate authority for TLS tests: a CA, server certificates for
//! `127.0.0.1`/`localhost` (or any names) and client certificates, written as PEM files
//! into a temporary directory that lives as long as the [`TestPki`].
//!
//! ```no_run
//! use sluice_test_support::TestPki;
//! let pki = TestPki::new("sluice test CA");
//! let server = pki.server("quota", &["127.0.0.1", "localhost"]);
//! let client = pki.client("edge");
//! let other = TestPki::new("someone else's CA"); // a client of `other` must be refused
//! # let _ = (server.cert, client.key, other.ca_file());
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// A certificate and its private key, as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PKCS#8 PEM).
    pub key: PathBuf,
}

/// A test certificate authority and the directory its files are written to.
pub struct TestPki {
    dir: TempDir,
    ca_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl TestPki {
    /// A new CA named `name`; its certificate is written to [`TestPki::ca_file`].
    pub fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory for certificates");
        let key = KeyPair::generate().expect("a CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params
            .self_signed(&key)
            .expect("a self-signed CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).expect("write the CA certificate");
        TestPki {
            dir,
            ca_file,
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA certificate (PEM): what a peer trusts.
    pub fn ca_file(&self) -> &Path {
        &self.ca_file
    }

    /// The directory the files are written to.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A server certificate for `names` (IP addresses or DNS names), usable for
    /// server authentication; written as `<file_stem>.pem` and `<file_stem>.key`.
    pub fn server(&self, file_stem: &str, names: &[&str]) -> CertFiles {
        self.leaf(file_stem, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `name`, usable for client authentication.
    pub fn client(&self, name: &str) -> CertFiles {
        self.leaf(name, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn leaf(&self, file_stem: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertFiles {
        let key = KeyPair::generate().expect("a key");
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params
            .distinguished_name
            .push(DnType::CommonName, file_stem);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a certificate signed by the test CA");
        let files = CertFiles {
            cert: self.dir.path().join(format!("{file_stem}.pem")),
            key: self.dir.path().join(format!("{file_stem}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).expect("write a certificate");
        std::fs::write(&files.key, key.serialize_pem()).expect("write a key");
        files
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_pem_files_a_tls_tool_accepts() {
        let pki = TestPki::new("test CA");
        let server = pki.server("server", &["127.0.0.1", "localhost"]);
        let client = pki.client("edge-1");
        for f in [pki.ca_file(), &server.cert, &client.cert] {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{f:?}");
        }
        for f in [&server.key, &client.key] {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"), "{f:?}");
        }
        // openssl, where installed, verifies the chain.
        if let Ok(out) = std::process::Command::new("openssl")
            .arg("verify")
            .arg("-CAfile")
            .arg(pki.ca_file())
            .arg(&server.cert)
            .arg(&client.cert)
            .output()
        {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            let other = TestPki::new("another CA");
            let refused = std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(other.ca_file())
                .arg(&client.cert)
                .output()
                .unwrap();
            assert!(!refused.status.success(), "a foreign CA must not verify");
        }
    }
}
