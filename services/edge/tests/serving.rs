//! The edge over real sockets: request types, persistent connections, concurrency, Unix
//! sockets and graceful shutdown. The policy set is empty, so every request gets DUNNO.

use sluice_edge::{EdgeConfig, ListenAddr};
use sluice_engine::PolicySetDef;
use sluice_test_support::{end_of_message, rcpt, PolicyClient, Request, TestServer};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_type_is_answered() {
    let server = TestServer::start(PolicySetDef::default()).await;
    let mut client = server.client().await;
    for state in [
        "CONNECT",
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "END-OF-MESSAGE",
        "VRFY",
        "ETRN",
    ] {
        let req = Request::new(state, "192.0.2.10").set("sender", "a@example.com");
        assert_eq!(client.send(&req).await, "DUNNO", "state {state}");
    }
    let eom = end_of_message("a@example.com", 3, 2048, "2001:db8::1", "i1");
    assert_eq!(client.send(&eom).await, "DUNNO");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minimal_and_crlf_requests_are_answered() {
    let server = TestServer::start(PolicySetDef::default()).await;
    let mut client = server.client().await;
    let answer = client
        .ask(&[
            ("request", "smtpd_access_policy"),
            ("protocol_state", "RCPT"),
            ("client_address", "::ffff:192.0.2.1"),
        ])
        .await;
    assert_eq!(answer, "DUNNO");
    client
        .send_raw(b"request=smtpd_access_policy\r\nprotocol_state=RCPT\r\nclient_address=192.0.2.1\r\nunknown_attr=x\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(client.read_reply().await.as_deref(), Some("DUNNO"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_on_one_connection() {
    let server = TestServer::start(PolicySetDef::default()).await;
    let mut client = server.client().await;
    for i in 0..1000 {
        let req = rcpt(
            &format!("s{}@example.com", i % 37),
            &format!("r{i}@example.org"),
            &format!("198.51.100.{}", i % 250),
            &format!("inst.{}", i / 3),
        );
        assert_eq!(client.send(&req).await, "DUNNO", "request {i}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections() {
    let server = TestServer::start(PolicySetDef::default()).await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..200 {
        tasks.spawn(async move {
            let mut client = PolicyClient::connect(addr).await;
            for i in 0..5 {
                let req = rcpt(
                    "sender@example.com",
                    &format!("r{c}.{i}@example.org"),
                    "203.0.113.7",
                    &format!("inst.{c}"),
                );
                assert_eq!(client.send(&req).await, "DUNNO");
            }
        });
    }
    let mut done = 0;
    while let Some(r) = tasks.join_next().await {
        r.expect("client task");
        done += 1;
    }
    assert_eq!(done, 200);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.sock");
    let server = TestServer::builder(PolicySetDef::default())
        .listen(ListenAddr::Unix(path.clone()))
        .start()
        .await;
    assert_eq!(server.listen_addr(), &ListenAddr::Unix(path.clone()));
    let mut client = PolicyClient::connect_unix(&path).await;
    for i in 0..10 {
        let req = rcpt(
            "a@example.com",
            &format!("r{i}@example.org"),
            "192.0.2.1",
            "i",
        );
        assert_eq!(client.send(&req).await, "DUNNO");
    }
    drop(client);
    server.shutdown().await;

    // The socket file stays behind; binding again replaces it as stale.
    let again = TestServer::builder(PolicySetDef::default())
        .listen(ListenAddr::Unix(path.clone()))
        .start()
        .await;
    let mut client = PolicyClient::connect_unix(&path).await;
    assert_eq!(
        client.send(&rcpt("a@b.c", "d@e.f", "192.0.2.1", "i")).await,
        "DUNNO"
    );
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_the_request_in_flight_and_closes_idle_connections() {
    let mut server = TestServer::start(PolicySetDef::default()).await;
    let addr = server.addr();
    let mut busy = server.client().await;
    let mut idle = server.client().await;
    assert_eq!(
        idle.send(&rcpt("a@b.c", "d@e.f", "192.0.2.1", "i")).await,
        "DUNNO"
    );

    // One write holding a full request and the first half of the next: once the first is
    // answered, the server holds the second, started, request in its buffer.
    let second = rcpt("x@example.com", "y@example.org", "192.0.2.2", "j").to_bytes();
    let (head, tail) = second.split_at(second.len() / 2);
    let mut bytes = rcpt("a@b.c", "d@e.f", "192.0.2.1", "i").to_bytes();
    bytes.extend_from_slice(head);
    busy.send_raw(&bytes).await.unwrap();
    assert_eq!(busy.read_reply().await.as_deref(), Some("DUNNO"));

    server.begin_shutdown();
    // The idle connection is closed without a reply.
    assert_eq!(idle.read_reply().await, None);
    // The request in flight is completed and answered, then the connection is closed.
    busy.send_raw(tail).await.unwrap();
    assert_eq!(busy.read_reply().await.as_deref(), Some("DUNNO"));
    assert_eq!(busy.read_reply().await, None);
    server.wait_stopped().await;

    // No longer listening.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_a_stuck_request_after_the_grace_period() {
    let config = EdgeConfig {
        shutdown_grace: Duration::from_millis(200),
        busy_timeout: Duration::from_secs(60),
        ..EdgeConfig::default()
    };
    let mut server = TestServer::builder(PolicySetDef::default())
        .edge_config(config)
        .start()
        .await;
    let mut stuck = server.client().await;
    let mut bytes = rcpt("a@b.c", "d@e.f", "192.0.2.1", "i").to_bytes();
    bytes.extend_from_slice(b"request=smtpd_access_policy\nprotocol_state=RC");
    stuck.send_raw(&bytes).await.unwrap();
    assert_eq!(stuck.read_reply().await.as_deref(), Some("DUNNO"));

    let started = tokio::time::Instant::now();
    server.begin_shutdown();
    server.wait_stopped().await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(stuck.read_reply().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_threads_serve_connections_and_shut_down_gracefully() {
    let config = EdgeConfig {
        worker_threads: 2,
        ..EdgeConfig::default()
    };
    let mut server = TestServer::builder(PolicySetDef::default())
        .edge_config(config)
        .start()
        .await;
    let addr = server.addr();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..64 {
        tasks.spawn(async move {
            let mut client = PolicyClient::connect(addr).await;
            for i in 0..20 {
                let req = rcpt(
                    "s@example.com",
                    &format!("r{c}.{i}@example.org"),
                    "192.0.2.7",
                    "i",
                );
                assert_eq!(client.send(&req).await, "DUNNO");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("client task");
    }
    // A request in flight on a worker still gets its answer during shutdown.
    let mut busy = server.client().await;
    let req = rcpt("x@example.com", "y@example.org", "192.0.2.2", "j").to_bytes();
    let (head, tail) = req.split_at(req.len() / 2);
    busy.send_raw(head).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    server.begin_shutdown();
    busy.send_raw(tail).await.unwrap();
    assert_eq!(busy.read_reply().await.as_deref(), Some("DUNNO"));
    assert_eq!(busy.read_reply().await, None);
    server.wait_stopped().await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
