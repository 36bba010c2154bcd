//! The alert webhook over https, against a real TLS receiver on 127.0.0.1 (rustls, with a
//! certificate of the test PKI): with `alert_webhook_ca_file` naming the test CA, the alert
//! for a refused sender arrives (the JSON body intact); a receiver whose certificate the
//! process does not trust (the system's roots only) gets nothing, and the alert is counted
//! as failed after its retries. A CA file without an https URL, or one that is not PEM, is
//! refused by `--check-config`.

mod admin_support;

use admin_support::*;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_test_support::{
    ask_blocking, free_port, http_get, import_policies, output_text, policies, start_front, TestPki,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The bodies the receiver got.
type Received = Arc<Mutex<Vec<serde_json::Value>>>;

/// An https receiver on 127.0.0.1 with `cert`/`key`, answering every POST with 204.
fn receiver(cert: &std::path::Path, key: &std::path::Path) -> (u16, Received) {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received: Received = Arc::default();
    let seen = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    // A client that does not trust the certificate fails the handshake.
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut data = Vec::new();
                    let mut buf = [0u8; 4096];
                    let body = loop {
                        let Ok(n) = tls.read(&mut buf).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        data.extend_from_slice(&buf[..n]);
                        let text = String::from_utf8_lossy(&data).to_string();
                        let Some(end) = text.find("\r\n\r\n") else {
                            continue;
                        };
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse::<usize>().ok())
                                    .flatten()
                            })
                            .unwrap_or(0);
                        if data.len() >= end + 4 + length {
                            break data[end + 4..end + 4 + length].to_vec();
                        }
                    };
                    seen.lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    let _ = tls
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = tls.shutdown().await;
                });
            }
        });
    });
    (port, received)
}

fn request(sender: &str) -> String {
    format!(
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\nsender={sender}\nrecipient=rcpt@example.net\ninstance={}",
        free_port()
    )
}

/// `sluice_alerts_total{result=...}` of the process with metrics on `metrics`.
fn alerts(metrics: u16, result: &str) -> f64 {
    let (_, text) = http_get(metrics, "/metrics");
    let prefix = format!("sluice_alerts_total{{result=\"{result}\"}}");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < limit, "waited {limit:?} for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A serve with one policy (1 message per sender) and the webhook `url`; refuses `sender`
/// once after the alert task started.
fn refuse_once(
    dir: &std::path::Path,
    url: &str,
    extra: &[&str],
) -> sluice_test_support::RoleProcess {
    let db = format!("sqlite://{}", dir.join("policies.db").display());
    import_policies(
        BIN,
        dir,
        &policies::sender_quota("everyone", "per-sender", 1),
        &db,
    );
    let mut args = vec!["--database", db.as_str(), "--alert-webhook", url];
    args.extend_from_slice(extra);
    let serve = start_front(BIN, "sluice serve with an https webhook", "serve", &args);
    // The alert task starts from the refusals stored when it starts: give it its first tick.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(ask_blocking(serve.port, &request("a@example.org")), "DUNNO");
    assert!(ask_blocking(serve.port, &request("a@example.org")).starts_with("REJECT"));
    serve
}

#[test]
fn alerts_reach_an_https_receiver_trusted_through_the_ca_file() {
    let pki = TestPki::new("alerts test CA");
    let cert = pki.server("hook", &["127.0.0.1", "localhost"]);
    let (port, received) = receiver(&cert.cert, &cert.key);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}/hook");
    let ca = pki.ca_file().display().to_string();
    let serve = refuse_once(dir.path(), &url, &["--alert-webhook-ca-file", &ca]);
    let bodies = wait_for("the alert", Duration::from_secs(20), || {
        let r = received.lock().unwrap().clone();
        (!r.is_empty()).then_some(r)
    });
    let alert = &bodies[0];
    assert_eq!(alert["event"], "first_refusal", "{alert}");
    assert_eq!(alert["refusal"]["sender"], "a@example.org");
    assert_eq!(alert["keys"][0]["value"], "a@example.org");
    wait_for("sent counted", Duration::from_secs(10), || {
        (alerts(serve.metrics, "sent") >= 1.0).then_some(())
    });
    assert_eq!(alerts(serve.metrics, "failed"), 0.0);
}

#[test]
fn an_untrusted_https_receiver_gets_nothing_and_the_alert_fails() {
    let pki = TestPki::new("a CA nobody trusts");
    let cert = pki.server("hook", &["127.0.0.1", "localhost"]);
    let (port, received) = receiver(&cert.cert, &cert.key);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{port}/hook");
    let serve = refuse_once(dir.path(), &url, &[]);
    // Five attempts, 0.5 + 1 + 2 + 4 s apart.
    wait_for("the failed alert", Duration::from_secs(30), || {
        (alerts(serve.metrics, "failed") >= 1.0).then_some(())
    });
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(alerts(serve.metrics, "sent"), 0.0);
}

#[test]
fn a_ca_file_needs_an_https_webhook_and_pem() {
    let pki = TestPki::new("alerts check CA");
    let ca = pki.ca_file().display().to_string();
    let not_pem = pki.dir().join("not.pem");
    std::fs::write(&not_pem, "not a certificate").unwrap();
    let not_pem = not_pem.display().to_string();
    for (url, file, expected) in [
        (
            "http://127.0.0.1:9/hook",
            ca.as_str(),
            "not an https:// URL",
        ),
        (
            "https://127.0.0.1:9/hook",
            not_pem.as_str(),
            "alert_webhook_ca_file",
        ),
        (
            "ftp://127.0.0.1:9/hook",
            ca.as_str(),
            "expected an http:// or https:// URL",
        ),
    ] {
        let out = sluice_with_stdin(
            &[
                "serve",
                "--check-config",
                "--database",
                "sqlite::memory:",
                "--alert-webhook",
                url,
                "--alert-webhook-ca-file",
                file,
            ],
            "",
        );
        assert!(!out.status.success(), "{url} {file}: {}", output_text(&out));
        assert!(
            output_text(&out).contains(expected),
            "{}",
            output_text(&out)
        );
    }
    let out = sluice_with_stdin(
        &[
            "serve",
            "--check-config",
            "--database",
            "sqlite::memory:",
            "--alert-webhook",
            "https://127.0.0.1:9/hook",
            "--alert-webhook-ca-file",
            &ca,
        ],
        "",
    );
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("alert_webhook_ca_file"),
        "{}",
        output_text(&out)
    );
}
