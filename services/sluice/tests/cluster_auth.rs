//! The gRPC link between edges and quota services is encrypted and authenticated (issue
//! 14): real `sluice quota` and `sluice edge` processes, certificates from a throw-away CA
//! (`TestPki`), a real Redis behind the quota service.
//!
//! - every Quota RPC without the bearer token, or with a wrong one, is refused
//!   UNAUTHENTICATED and changes nothing (a made-up lease return does not give back room,
//!   a live-counter reset resets nothing);
//!   `grpc.health.v1` needs the token too (an edge with a wrong one reports not ready);
//! - with mTLS, a client certificate of another CA is refused (an edge carrying one answers
//!   only its fallback action) while an edge with the right one gets verdicts end to end;
//! - token authentication end to end, over TLS with a server-name override;
//! - the quota service refuses to start on a non-loopback address without client
//!   authentication, and `--check-config` reports unusable TLS and token files.

mod cluster_support;

use cluster_support::*;
use sluice_engine::window::WindowSpec;
use sluice_engine::{CounterBatch, CounterOp, CounterReply, OpKind};
use sluice_proto::auth::{AddToken, BearerToken};
use sluice_proto::v1::quota_client::QuotaClient;
use sluice_proto::v1::{
    self, ApplyManyRequest, ApplyRequest, LoadSessionRequest, ReturnLeasesRequest,
    SaveSessionsRequest,
};
use sluice_test_support::{
    free_port, http_get, rcpt, start_front, start_quota_with, RedisServer, RoleProcess, TestPki,
};
use std::path::Path;
use std::time::Duration;
use tonic::codegen::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::Code;

const HOUR: u64 = 3_600_000;
const TOKEN: &str = "3f9c1a7e5b2d4c6e8a0b1c2d3e4f5a6b";
const WRONG_TOKEN: &str = "0000000000000000000000000000000000";

type Client = QuotaClient<InterceptedService<Channel, AddToken>>;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A TLS client of the quota service on `port`, trusting `ca`, presenting `identity` (cert,
/// key files) if given, sending `token` if given.
async fn client(
    port: u16,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
    token: Option<&str>,
) -> Client {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(cert).unwrap(),
            std::fs::read(key).unwrap(),
        ));
    }
    let channel = Channel::from_shared(format!("https://127.0.0.1:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .timeout(Duration::from_secs(10))
        .connect_lazy();
    let token = token.map(|t| BearerToken::from_file_text(t).unwrap());
    QuotaClient::with_interceptor(channel, AddToken::new(token.as_ref()))
}

fn op(key: &str, kind: OpKind) -> CounterOp {
    CounterOp {
        key: key.into(),
        limit: 100_000,
        window: WindowSpec::new(HOUR, 60),
        kind,
    }
}

fn request(ops: Vec<CounterOp>) -> ApplyRequest {
    ApplyRequest::from(&CounterBatch {
        groups: vec![ops],
        ..CounterBatch::default()
    })
}

/// The counter's level, read with an authenticated `Check` of cost 0.
async fn level(client: &mut Client, key: &str) -> u64 {
    let reply = client
        .apply(request(vec![op(key, OpKind::Check { cost: 0 })]))
        .await
        .expect("an authenticated Check")
        .into_inner();
    CounterReply::try_from(reply).unwrap().groups[0][0].used
}

/// Every Quota RPC through `c`, each expected to fail with `code`.
async fn every_rpc_fails(
    c: &mut Client,
    key: &str,
    lease: &v1::LeaseReturn,
    code: Code,
    who: &str,
) {
    let take = request(vec![op(key, OpKind::Take { cost: 7 })]);
    let calls: Vec<(&str, Result<(), tonic::Status>)> = vec![
        ("Apply", c.apply(take.clone()).await.map(drop)),
        (
            "ApplyMany",
            c.apply_many(ApplyManyRequest {
                batches: vec![take.clone(), take],
            })
            .await
            .map(drop),
        ),
        (
            "ReturnLeases",
            c.return_leases(ReturnLeasesRequest {
                leases: vec![lease.clone(); 3],
            })
            .await
            .map(drop),
        ),
        (
            "SaveSessions",
            c.save_sessions(SaveSessionsRequest {
                sessions: vec![v1::SessionData {
                    instance: "planted".into(),
                    charged: vec![key.into()],
                    records: Vec::new(),
                }],
                ended: Vec::new(),
            })
            .await
            .map(drop),
        ),
        (
            "LoadSession",
            c.load_session(LoadSessionRequest {
                instance: "planted".into(),
            })
            .await
            .map(drop),
        ),
        (
            "CounterLevels",
            c.counter_levels(v1::CounterLevelsRequest {
                counters: vec![v1::CounterQuery {
                    key: key.into(),
                    limit: 10,
                    period_ms: HOUR,
                    bucket_ms: HOUR / 60,
                }],
            })
            .await
            .map(drop),
        ),
        (
            "ListCounters",
            c.list_counters(v1::ListCountersRequest {
                listing: Some(v1::list_counters_request::Listing::RefusedSinceMs(0)),
                max: 10,
            })
            .await
            .map(drop),
        ),
        (
            "ResetCounter",
            c.reset_counter(v1::ResetCounterRequest { key: key.into() })
                .await
                .map(drop),
        ),
    ];
    for (rpc, result) in calls {
        match result {
            Err(s) => assert_eq!(s.code(), code, "{rpc} {who}: {s:?}"),
            Ok(()) => panic!("{rpc} {who} was answered"),
        }
    }
}

#[test]
fn every_quota_rpc_without_the_token_is_refused_and_changes_nothing() {
    let pki = TestPki::new("quota CA");
    let server = pki.server("quota", &["127.0.0.1", "localhost"]);
    let token_file = write(pki.dir(), "token", &format!("{TOKEN}\n"));
    let redis = RedisServer::start();
    let quota = start_quota_with(
        BIN,
        &redis.url(),
        &[
            "--grpc-tls-cert-file",
            server.cert.to_str().unwrap(),
            "--grpc-tls-key-file",
            server.key.to_str().unwrap(),
            "--grpc-token-file",
            &token_file,
        ],
    );
    let key = unique("victim");
    runtime().block_on(async {
        let mut authed = client(quota.port, pki.ca_file(), None, Some(TOKEN)).await;
        // A genuine take with a lease: level 1 + 4 leased.
        let mut take = request(vec![op(&key, OpKind::Take { cost: 1 })]);
        take.groups[0].ops[0].lease = 4;
        let reply = authed
            .apply(take)
            .await
            .expect("authenticated Apply")
            .into_inner();
        let granted = &reply.groups[0].results[0];
        assert_eq!(granted.leased, 4, "{reply:?}");
        let lease = v1::LeaseReturn {
            key: key.clone(),
            period_ms: HOUR,
            bucket_ms: HOUR / 60,
            units: 4,
            charged_at_ms: granted.lease_charged_at_ms,
        };
        assert_eq!(level(&mut authed, &key).await, 5);
        // The live-counter view reads the same level, with the token.
        let live = authed
            .counter_levels(v1::CounterLevelsRequest {
                counters: vec![v1::CounterQuery {
                    key: key.clone(),
                    limit: 10,
                    period_ms: HOUR,
                    bucket_ms: HOUR / 60,
                }],
            })
            .await
            .expect("authenticated CounterLevels")
            .into_inner();
        assert_eq!(live.counters[0].used, 5, "{live:?}");

        let mut anonymous = client(quota.port, pki.ca_file(), None, None).await;
        every_rpc_fails(
            &mut anonymous,
            &key,
            &lease,
            Code::Unauthenticated,
            "without a token",
        )
        .await;
        let mut wrong = client(quota.port, pki.ca_file(), None, Some(WRONG_TOKEN)).await;
        every_rpc_fails(
            &mut wrong,
            &key,
            &lease,
            Code::Unauthenticated,
            "with a wrong token",
        )
        .await;

        assert_eq!(
            level(&mut authed, &key).await,
            5,
            "refused takes charged nothing, refused lease returns gave nothing back, refused resets reset nothing"
        );
        let planted = authed
            .load_session(LoadSessionRequest {
                instance: "planted".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(
            planted.session.is_none(),
            "a refused SaveSessions stored nothing"
        );

        // The same lease return with the token does give the room back: the refusals
        // above are what kept the level.
        authed
            .return_leases(ReturnLeasesRequest {
                leases: vec![lease],
            })
            .await
            .expect("authenticated ReturnLeases");
        assert_eq!(level(&mut authed, &key).await, 1);

        // grpc.health.v1 is behind the token too.
        let channel = Channel::from_shared(format!("https://127.0.0.1:{}", quota.port))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_file()).unwrap()))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect_lazy();
        let health_check = || tonic_health::pb::HealthCheckRequest {
            service: sluice_proto::QUOTA_SERVICE_NAME.into(),
        };
        let refused = tonic_health::pb::health_client::HealthClient::new(channel.clone())
            .check(health_check())
            .await
            .expect_err("health without a token");
        assert_eq!(refused.code(), Code::Unauthenticated);
        let token = BearerToken::from_file_text(TOKEN).unwrap();
        let health = tonic_health::pb::health_client::HealthClient::with_interceptor(
            channel,
            AddToken::new(Some(&token)),
        )
        .check(health_check())
        .await
        .expect("health with the token")
        .into_inner();
        assert_eq!(
            health.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    });
    let log = quota.process.log();
    assert!(log.contains("without a valid bearer token"), "{log}");
}

/// Waits (at most 20 s) until `ok()`; panics naming `what` otherwise.
fn wait_until(ok: impl Fn() -> bool, what: &str) {
    let start = std::time::Instant::now();
    while !ok() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "not within 20 s: {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts an edge on `db` calling `quota_urls`, with `extra` flags.
fn edge(name: &str, db: &str, quota_urls: &str, extra: &[&str]) -> RoleProcess {
    let mut args = vec![
        "--database",
        db,
        "--quota",
        quota_urls,
        "--fallback-action",
        FALLBACK,
        "--request-deadline-ms",
        "5000",
        "--quota-deadline-ms",
        "4000",
    ];
    args.extend_from_slice(extra);
    start_front(BIN, name, "edge", &args)
}

/// Four messages from one sender against a limit of 3.
fn four_messages(port: u16) -> Vec<String> {
    let sender = format!("{}@example.org", unique("s"));
    (0..4)
        .map(|i| {
            ask(
                port,
                &rcpt(&sender, "rcpt@example.net", "192.0.2.7", &format!("m{i}")),
            )
        })
        .collect()
}

fn three_then_refused() -> Vec<String> {
    let mut v = vec!["DUNNO".to_string(); 3];
    v.push("REJECT sender quota exceeded".into());
    v
}

#[test]
fn mtls_admits_the_edge_with_the_right_certificate_and_refuses_another_ca() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &sender_policy(3));
    let pki = TestPki::new("cluster CA");
    let server = pki.server("quota", &["127.0.0.1", "localhost"]);
    let good = pki.client("edge-good");
    let other = TestPki::new("someone else's CA");
    let foreign = other.client("edge-foreign");
    let quota_args: Vec<String> = [
        "--grpc-tls-cert-file",
        server.cert.to_str().unwrap(),
        "--grpc-tls-key-file",
        server.key.to_str().unwrap(),
        "--grpc-client-ca-file",
        pki.ca_file().to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let edge_args: Vec<String> = [
        "--quota-tls-ca-file",
        pki.ca_file().to_str().unwrap(),
        "--quota-tls-cert-file",
        good.cert.to_str().unwrap(),
        "--quota-tls-key-file",
        good.key.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 1,
            quotas: 1,
            quota_args,
            quota_scheme: "https",
            edge_args,
            ..Spec::default()
        },
    );
    let quota_port = cluster.quota_ports[0];
    let url = format!("https://127.0.0.1:{quota_port}");

    // The edge with the right certificate: verdicts end to end (TCP → edge → mTLS gRPC →
    // quota service → Redis Cluster).
    assert_eq!(
        four_messages(cluster.edge_ports[0]),
        three_then_refused(),
        "{}",
        cluster.logs()
    );

    // An edge whose certificate another CA signed is refused at the handshake: it can only
    // answer its fallback action.
    let stranger = edge(
        "edge-foreign",
        &db.url,
        &url,
        &[
            "--quota-tls-ca-file",
            pki.ca_file().to_str().unwrap(),
            "--quota-tls-cert-file",
            foreign.cert.to_str().unwrap(),
            "--quota-tls-key-file",
            foreign.key.to_str().unwrap(),
        ],
    );
    assert_eq!(
        four_messages(stranger.port),
        vec![FALLBACK.to_string(); 4],
        "{}",
        stranger.process.log()
    );
    // So is one without any client certificate.
    let anonymous = edge(
        "edge-anonymous",
        &db.url,
        &url,
        &["--quota-tls-ca-file", pki.ca_file().to_str().unwrap()],
    );
    assert_eq!(
        four_messages(anonymous.port),
        vec![FALLBACK.to_string(); 4],
        "{}",
        anonymous.process.log()
    );

    // A raw gRPC client: refused with the foreign certificate and without one; the right
    // certificate reads the counter the good edge charged... and nothing more was charged.
    runtime().block_on(async {
        let key = unique("probe");
        for identity in [None, Some((foreign.cert.as_path(), foreign.key.as_path()))] {
            let mut c = client(quota_port, pki.ca_file(), identity, None).await;
            let refused = c
                .apply(request(vec![op(&key, OpKind::Take { cost: 1 })]))
                .await
                .expect_err("no valid client certificate");
            // Refused at the handshake (with TLS 1.3 the client learns it only when it
            // sends): a transport error (its code varies with timing), never an answer.
            assert!(std::error::Error::source(&refused).is_some(), "{refused:?}");
        }
        let mut c = client(
            quota_port,
            pki.ca_file(),
            Some((&good.cert, &good.key)),
            None,
        )
        .await;
        assert_eq!(
            level(&mut c, &key).await,
            0,
            "the refused takes charged nothing"
        );
    });
    // Plain HTTP/2 to the TLS port gets nowhere either.
    let plain = edge(
        "edge-plain",
        &db.url,
        &format!("http://127.0.0.1:{quota_port}"),
        &[],
    );
    assert_eq!(four_messages(plain.port), vec![FALLBACK.to_string(); 4]);
}

#[test]
fn token_authentication_end_to_end_over_tls_with_a_server_name_override() {
    let _serial = serial();
    let db = PgDb::create();
    import(&db.url, &sender_policy(3));
    let pki = TestPki::new("cluster CA");
    // The certificate names the service, not the address the edges dial.
    let server = pki.server("quota", &["quota.sluice.internal"]);
    let token_file = write(pki.dir(), "token", TOKEN);
    let wrong_file = write(pki.dir(), "wrong-token", WRONG_TOKEN);
    let quota_args: Vec<String> = [
        "--grpc-tls-cert-file",
        server.cert.to_str().unwrap(),
        "--grpc-tls-key-file",
        server.key.to_str().unwrap(),
        "--grpc-token-file",
        &token_file,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let tls_args = [
        "--quota-tls-ca-file",
        pki.ca_file().to_str().unwrap(),
        "--quota-tls-server-name",
        "quota.sluice.internal",
    ];
    let mut edge_args: Vec<String> = tls_args.iter().map(|s| s.to_string()).collect();
    edge_args.extend(["--quota-token-file".to_string(), token_file.clone()]);
    let cluster = Cluster::start(
        &db.url,
        Spec {
            edges: 1,
            quotas: 1,
            quota_args,
            quota_scheme: "https",
            edge_args,
            ..Spec::default()
        },
    );
    let url = format!("https://127.0.0.1:{}", cluster.quota_ports[0]);
    assert_eq!(
        four_messages(cluster.edge_ports[0]),
        three_then_refused(),
        "{}",
        cluster.logs()
    );

    let mut wrong_args = tls_args.to_vec();
    wrong_args.extend(["--quota-token-file", &wrong_file]);
    let wrong = edge("edge-wrong-token", &db.url, &url, &wrong_args);
    assert_eq!(
        four_messages(wrong.port),
        vec![FALLBACK.to_string(); 4],
        "{}",
        wrong.process.log()
    );
    let none = edge("edge-no-token", &db.url, &url, &tls_args);
    assert_eq!(four_messages(none.port), vec![FALLBACK.to_string(); 4]);
    // Logged by the refused calls or, when the endpoint was already marked down, by the
    // refused health probes.
    wait_until(
        || {
            none.process
                .log()
                .contains("refused this edge's credentials")
        },
        "the edge's log says why its credentials were refused",
    );
    // Its health probes are refused too: it reports not ready; the right edge is ready.
    wait_until(
        || http_get(none.metrics, "/readyz").0 == 503,
        "the edge without the token reports not ready",
    );
    wait_until(
        || http_get(wrong.metrics, "/readyz").0 == 503,
        "the edge with a wrong token reports not ready",
    );
    let right = edge("edge-right-token", &db.url, &url, &{
        let mut a = tls_args.to_vec();
        a.extend(["--quota-token-file", &token_file]);
        a
    });
    wait_until(
        || http_get(right.metrics, "/readyz").0 == 200,
        "the edge with the token reports ready",
    );
    // Without the override the certificate does not match 127.0.0.1.
    let mut mismatch_args = vec!["--quota-tls-ca-file", pki.ca_file().to_str().unwrap()];
    mismatch_args.extend(["--quota-token-file", &token_file]);
    let mismatch = edge("edge-name-mismatch", &db.url, &url, &mismatch_args);
    assert_eq!(four_messages(mismatch.port), vec![FALLBACK.to_string(); 4]);
}

#[test]
fn an_exposed_quota_service_without_client_authentication_does_not_start() {
    let port = free_port().to_string();
    let out = sluice(&[
        "quota",
        "--redis",
        "redis://127.0.0.1:1",
        "--grpc-listen",
        &format!("0.0.0.0:{port}"),
        "--metrics-listen",
        "off",
    ]);
    assert_eq!(out.status.code(), Some(64), "{}", text(&out));
    assert!(
        text(&out)
            .contains("is reachable from other hosts, but no client authentication is configured"),
        "{}",
        text(&out)
    );
    // --check-config says the same.
    let check = sluice(&[
        "quota",
        "--redis",
        "redis://127.0.0.1:1",
        "--grpc-listen",
        "0.0.0.0:10033",
        "--check-config",
    ]);
    assert_eq!(check.status.code(), Some(64), "{}", text(&check));
    assert!(
        text(&check).contains("grpc_allow_unauthenticated = true"),
        "{}",
        text(&check)
    );
    // The explicit opt-out, and a loopback listener, pass.
    let check = sluice(&[
        "quota",
        "--redis",
        "redis://127.0.0.1:1",
        "--grpc-listen",
        "0.0.0.0:10033",
        "--grpc-allow-unauthenticated",
        "--check-config",
    ]);
    assert!(check.status.success(), "{}", text(&check));
    assert!(
        text(&check).contains("grpc_allow_unauthenticated = true"),
        "{}",
        text(&check)
    );
    let check = sluice(&["quota", "--redis", "redis://127.0.0.1:1", "--check-config"]);
    assert!(check.status.success(), "{}", text(&check));
}

#[test]
fn check_config_reports_unusable_tls_and_token_files() {
    let pki = TestPki::new("check CA");
    let server = pki.server("quota", &["localhost"]);
    let client_cert = pki.client("edge");
    let dir = pki.dir();
    let garbage = write(dir, "garbage.pem", "not a certificate\n");
    let short = write(dir, "short-token", "abc\n");
    let token = write(dir, "token", TOKEN);
    let missing = dir.join("missing.pem");
    let missing = missing.to_str().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();

    let quota = |extra: &[&str]| {
        let mut args = vec!["quota", "--redis", "redis://127.0.0.1:1", "--check-config"];
        args.extend_from_slice(extra);
        sluice(&args)
    };
    // Everything valid: TLS, mTLS and a token.
    let ok = quota(&[
        "--grpc-listen",
        "0.0.0.0:10033",
        "--grpc-tls-cert-file",
        &s(&server.cert),
        "--grpc-tls-key-file",
        &s(&server.key),
        "--grpc-client-ca-file",
        &s(pki.ca_file()),
        "--grpc-token-file",
        &token,
    ]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains(&format!("grpc_token_file = {:?}", token)),
        "{}",
        text(&ok)
    );
    assert!(
        !text(&ok).contains(TOKEN),
        "the token itself is never printed"
    );

    for (extra, expected) in [
        (
            vec![
                "--grpc-tls-cert-file",
                missing,
                "--grpc-tls-key-file",
                &s(&server.key),
            ],
            "grpc_tls_cert_file",
        ),
        (
            vec![
                "--grpc-tls-cert-file",
                &garbage,
                "--grpc-tls-key-file",
                &s(&server.key),
            ],
            "holds no PEM certificate",
        ),
        (
            vec![
                "--grpc-tls-cert-file",
                &s(&server.cert),
                "--grpc-tls-key-file",
                &garbage,
            ],
            "holds no usable PEM private key",
        ),
        (
            // A key that belongs to another certificate.
            vec![
                "--grpc-tls-cert-file",
                &s(&server.cert),
                "--grpc-tls-key-file",
                &s(&client_cert.key),
            ],
            "is not the key of grpc_tls_cert_file",
        ),
        (
            vec!["--grpc-tls-cert-file", &s(&server.cert)],
            "grpc_tls_cert_file needs grpc_tls_key_file",
        ),
        (
            vec!["--grpc-client-ca-file", &s(pki.ca_file())],
            "grpc_client_ca_file needs TLS",
        ),
        (
            vec![
                "--grpc-tls-cert-file",
                &s(&server.cert),
                "--grpc-tls-key-file",
                &s(&server.key),
                "--grpc-client-ca-file",
                &garbage,
            ],
            "grpc_client_ca_file",
        ),
        (vec!["--grpc-token-file", &short], "at least 16 are needed"),
        (vec!["--grpc-token-file", missing], "cannot read it"),
    ] {
        let out = quota(&extra);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains(expected),
            "{extra:?}: expected {expected:?} in {}",
            text(&out)
        );
    }

    let edge = |quota_url: &str, extra: &[&str]| {
        let mut args = vec![
            "edge",
            "--database",
            "postgres://127.0.0.1:1/none",
            "--quota",
            quota_url,
            "--check-config",
        ];
        args.extend_from_slice(extra);
        sluice(&args)
    };
    let ok = edge(
        "https://10.0.0.21:10033",
        &[
            "--quota-tls-ca-file",
            &s(pki.ca_file()),
            "--quota-tls-cert-file",
            &s(&client_cert.cert),
            "--quota-tls-key-file",
            &s(&client_cert.key),
            "--quota-tls-server-name",
            "quota.internal",
            "--quota-token-file",
            &token,
        ],
    );
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(
        text(&ok).contains("quota_tls_server_name = \"quota.internal\""),
        "{}",
        text(&ok)
    );
    for (url, extra, expected) in [
        (
            "http://10.0.0.21:10033",
            vec!["--quota-tls-ca-file", &s(pki.ca_file())],
            "apply to https:// quota URLs",
        ),
        (
            "https://10.0.0.21:10033",
            vec!["--quota-tls-ca-file", &garbage],
            "quota_tls_ca_file",
        ),
        (
            "https://10.0.0.21:10033",
            vec!["--quota-tls-ca-file", missing],
            "cannot read it",
        ),
        (
            "https://10.0.0.21:10033",
            vec![
                "--quota-tls-cert-file",
                &s(&client_cert.cert),
                "--quota-tls-key-file",
                &s(&server.key),
            ],
            "is not the key of quota_tls_cert_file",
        ),
        (
            "https://10.0.0.21:10033",
            vec!["--quota-tls-key-file", &s(&client_cert.key)],
            "needs quota_tls_cert_file",
        ),
        (
            "https://10.0.0.21:10033",
            vec!["--quota-tls-server-name", "not a name!"],
            "neither a DNS name",
        ),
        (
            "http://10.0.0.21:10033",
            vec!["--quota-token-file", &short],
            "at least 16 are needed",
        ),
        (
            "ftp://10.0.0.21:10033",
            vec![],
            "expected http://host:port or https://host:port",
        ),
    ] {
        let out = edge(url, &extra);
        assert_eq!(out.status.code(), Some(64), "{extra:?}: {}", text(&out));
        assert!(
            text(&out).contains(expected),
            "{extra:?}: expected {expected:?} in {}",
            text(&out)
        );
    }
}
