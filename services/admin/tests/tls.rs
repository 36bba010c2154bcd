//! The admin service over TLS (rustls), with certificates made by the test's own CA
//! ([`TestPki`]): a browser-like client that trusts that CA logs in and uses the API, every
//! cookie is `Secure`; plain HTTP on the TLS port gets no HTTP answer; a client trusting
//! another CA is refused; a client that never finishes its handshake holds nobody up; a key
//! that does not belong to the certificate is refused with a message naming the settings.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use sluice_admin::{secret, AdminOptions};
use sluice_store::{AdminRole, Store};
use sluice_test_support::TestPki;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "a long enough admin password";

struct TlsAdmin {
    rt: tokio::runtime::Runtime,
    port: u16,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

fn start(pki: &TestPki) -> TlsAdmin {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("admin.db").display());
    let store = rt.block_on(Store::connect(&url)).unwrap();
    let hash = secret::hash_password(PASSWORD).unwrap();
    rt.block_on(store.add_account("alice", AdminRole::Admin, &[], &hash, 0))
        .unwrap();
    let files = pki.server("admin", &["127.0.0.1", "localhost"]);
    let config = sluice_admin::tls::server_config(
        &std::fs::read(&files.cert).unwrap(),
        &std::fs::read(&files.key).unwrap(),
    )
    .expect("the test CA's certificate and key make a TLS identity");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    // Plain options: TLS marks cookies Secure by itself.
    rt.spawn(sluice_admin::serve_tls(
        listener,
        store,
        AdminOptions::default(),
        config,
        async {
            let _ = rx.await;
        },
    ));
    TlsAdmin {
        rt,
        port,
        _dir: dir,
        _stop: tx,
    }
}

/// A client configuration trusting the CA certificate in `ca_file`.
fn client_config(ca_file: &std::path::Path) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One HTTPS/1.1 request (connection closed after it); the whole reply as text.
async fn https(
    port: u16,
    config: Arc<rustls::ClientConfig>,
    request: String,
) -> std::io::Result<String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await?;
    tls.write_all(request.as_bytes()).await?;
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut reply)).await;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

fn request(method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str("\r\n");
    r.push_str(body);
    r
}

fn set_cookies(reply: &str) -> Vec<String> {
    let head = &reply[..reply.find("\r\n\r\n").unwrap_or(reply.len())];
    head.lines()
        .filter_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
                .map(|(_, v)| v.trim().to_owned())
        })
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .map(|c| c.split(';').next().unwrap().trim())
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie in {cookies:?}"))
        .to_owned()
}

#[test]
fn a_client_trusting_the_ca_logs_in_over_tls_with_secure_cookies() {
    let pki = TestPki::new("admin test CA");
    let admin = start(&pki);
    let config = client_config(pki.ca_file());
    let port = admin.port;
    admin.rt.block_on(async {
        let form = https(port, config.clone(), request("GET", "/login", &[], ""))
            .await
            .unwrap();
        assert!(form.starts_with("HTTP/1.1 200"), "{form}");
        let cookies = set_cookies(&form);
        assert!(!cookies.is_empty(), "{form}");
        for c in &cookies {
            assert!(c.contains("; Secure"), "not Secure over TLS: {c}");
        }
        let login_cookie = cookie_value(&cookies, "sluice_login");
        let at = form.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &form[at..at + form[at..].find('"').unwrap()];
        let body = format!(
            "name=alice&password={}&csrf={csrf}",
            PASSWORD.replace(' ', "+")
        );
        let reply = https(
            port,
            config.clone(),
            request(
                "POST",
                "/login",
                &[
                    ("Content-Type", "application/x-www-form-urlencoded"),
                    ("Cookie", &login_cookie),
                ],
                &body,
            ),
        )
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 303"), "{reply}");
        let cookies = set_cookies(&reply);
        let session = cookie_value(&cookies, "sluice_session");
        let set = cookies
            .iter()
            .find(|c| c.starts_with("sluice_session="))
            .unwrap();
        assert!(
            set.contains("; Secure") && set.contains("HttpOnly"),
            "{set}"
        );
        let reply = https(
            port,
            config.clone(),
            request("GET", "/api/policies", &[("Cookie", &session)], ""),
        )
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        // The audit trail and throttling see the client's address through TLS too: a
        // change is audited from 127.0.0.1.
        let csrf_page = https(
            port,
            config.clone(),
            request("GET", "/policies", &[("Cookie", &session)], ""),
        )
        .await
        .unwrap();
        let at = csrf_page.find("name=\"csrf\" value=\"").unwrap() + 19;
        let csrf = &csrf_page[at..at + csrf_page[at..].find('"').unwrap()];
        let body = r#"{"name":"over-tls","priority":5}"#;
        let reply = https(
            port,
            config.clone(),
            request(
                "POST",
                "/api/policies",
                &[
                    ("Cookie", &session),
                    ("Content-Type", "application/json"),
                    ("X-CSRF-Token", csrf),
                ],
                body,
            ),
        )
        .await
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 201"), "{reply}");
        let audit = https(
            port,
            config,
            request("GET", "/api/audit", &[("Cookie", &session)], ""),
        )
        .await
        .unwrap();
        assert!(audit.contains("\"client\":\"127.0.0.1\""), "{audit}");
    });
}

#[test]
fn plain_http_other_cas_and_stalled_handshakes_get_nothing() {
    let pki = TestPki::new("admin test CA");
    let admin = start(&pki);
    let port = admin.port;

    // Plain HTTP on the TLS port: no HTTP reply.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain
        .write_all(b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(
        !String::from_utf8_lossy(&got).contains("HTTP/1.1 200"),
        "plain HTTP was answered: {}",
        String::from_utf8_lossy(&got)
    );

    admin.rt.block_on(async {
        // A client that trusts another CA refuses the server's certificate.
        let other = TestPki::new("someone else's CA");
        let refused = https(
            port,
            client_config(other.ca_file()),
            request("GET", "/login", &[], ""),
        )
        .await;
        assert!(refused.is_err(), "{refused:?}");

        // A client that connects and never starts its handshake holds nobody up.
        let _stalled = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let reply = tokio::time::timeout(
            Duration::from_secs(5),
            https(
                port,
                client_config(pki.ca_file()),
                request("GET", "/login", &[], ""),
            ),
        )
        .await
        .expect("answered while another client stalls its handshake")
        .unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    });
}

#[test]
fn a_key_of_another_certificate_is_refused_naming_the_settings() {
    let pki = TestPki::new("admin test CA");
    let one = pki.server("one", &["127.0.0.1"]);
    let two = pki.server("two", &["127.0.0.1"]);
    let err = sluice_admin::tls::server_config(
        &std::fs::read(&one.cert).unwrap(),
        &std::fs::read(&two.key).unwrap(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("admin_tls_cert_file and admin_tls_key_file"),
        "{err}"
    );
    let err = sluice_admin::tls::server_config(b"", &std::fs::read(&one.key).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("holds no PEM certificate"), "{err}");
}
