//! Clients that try to use up the edge's connections: thousands of idle connections from one
//! address, idle timers kept alive with blank lines or half-sent bytes. None of them may keep
//! another client from being answered (issue 12, item 3).

use sluice_edge::EdgeConfig;
use sluice_engine::PolicySetDef;
use sluice_test_support::{rcpt, PolicyClient, Request, TestServer};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{timeout, Instant};

/// The attacker's address and the bystander's: both loopback on Linux.
const ATTACKER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const BYSTANDER: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// How long the bystander may wait for its answer. The goal is well under 100 ms; the bound
/// is generous for a loaded 2-core test machine running a debug build, and still far below
/// what a locked-out client sees (a connect or reply that never comes).
const ANSWER_BOUND: Duration = Duration::from_millis(500);

fn request() -> Request {
    rcpt("sender@example.com", "rcpt@example.org", "192.0.2.1", "i.1")
}

/// Raises this process's soft file-descriptor limit to fit `needed` (client and server
/// sides of every connection live in the test process).
fn raise_fd_limit(needed: u64) {
    let got = rlimit::increase_nofile_limit(needed).expect("raise RLIMIT_NOFILE");
    assert!(
        got >= needed,
        "this test needs {needed} file descriptors; the hard limit allows {got} (ulimit -Hn)"
    );
}

async fn server_with(config: EdgeConfig) -> TestServer {
    TestServer::builder(PolicySetDef::default())
        .edge_config(config)
        .start()
        .await
}

/// Opens `n` connections from [`ATTACKER`] that never send a byte.
async fn idle_connections(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(n);
    for i in 0..n {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(ATTACKER, 0)).unwrap();
        let c = timeout(Duration::from_secs(10), socket.connect(addr))
            .await
            .unwrap_or_else(|_| panic!("connection {i} not accepted by the kernel in 10 s"))
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        held.push(c);
    }
    held
}

/// A client from [`BYSTANDER`] connects and is answered within [`ANSWER_BOUND`].
async fn bystander_is_answered(server: &TestServer) -> Duration {
    let since = Instant::now();
    let answered = timeout(ANSWER_BOUND, async {
        let mut c = PolicyClient::connect_from(BYSTANDER, server.addr()).await;
        c.send(&request()).await
    })
    .await;
    let took = since.elapsed();
    assert_eq!(
        answered.as_deref(),
        Ok("DUNNO"),
        "the bystander was not answered within {ANSWER_BOUND:?}"
    );
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_idle_connections_from_one_address_do_not_lock_out_another() {
    raise_fd_limit(2 * 5_000 + 1_000);
    // Default caps: the per-client cap (512) is what makes room.
    let server = server_with(EdgeConfig::default()).await;
    let held = idle_connections(server.addr(), 5_000).await;
    let took = bystander_is_answered(&server).await;
    println!("bystander answered in {took:?} with 5000 idle connections (default caps)");
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_total_cap_idle_connections_make_room() {
    raise_fd_limit(2 * 5_000 + 1_000);
    // No per-client cap in the way: the total cap is reached and the oldest idle connection
    // is closed for each new one.
    let server = server_with(EdgeConfig {
        max_connections: 1_000,
        max_connections_per_client: 10_000,
        ..EdgeConfig::default()
    })
    .await;
    let held = idle_connections(server.addr(), 5_000).await;
    let took = bystander_is_answered(&server).await;
    println!("bystander answered in {took:?} with 5000 idle connections (total cap 1000)");
    drop(held);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_oldest_idle_connection_is_closed_first() {
    let server = server_with(EdgeConfig {
        max_connections: 3,
        ..EdgeConfig::default()
    })
    .await;
    let mut a = server.client().await;
    let mut b = server.client().await;
    let mut c = server.client().await;
    for client in [&mut a, &mut b, &mut c] {
        assert_eq!(client.send(&request()).await, "DUNNO");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // `a` asks again: `b` is now the connection idle the longest.
    assert_eq!(a.send(&request()).await, "DUNNO");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut d = server.client().await;
    assert_eq!(d.send(&request()).await, "DUNNO", "the new one is served");
    assert_eq!(b.read_reply().await, None, "the oldest idle one was closed");
    assert_eq!(a.send(&request()).await, "DUNNO", "a is still served");
    assert_eq!(c.send(&request()).await, "DUNNO", "c is still served");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_its_cap_loses_its_own_oldest_idle_connection() {
    let server = server_with(EdgeConfig {
        max_connections_per_client: 2,
        ..EdgeConfig::default()
    })
    .await;
    let mut other = PolicyClient::connect_from(BYSTANDER, server.addr()).await;
    assert_eq!(other.send(&request()).await, "DUNNO");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut first = server.client().await;
    assert_eq!(first.send(&request()).await, "DUNNO");
    tokio::time::sleep(Duration::from_millis(20)).await;
    let mut second = server.client().await;
    assert_eq!(second.send(&request()).await, "DUNNO");
    let mut third = server.client().await;
    assert_eq!(third.send(&request()).await, "DUNNO");
    assert_eq!(
        first.read_reply().await,
        None,
        "the client's oldest was closed"
    );
    assert_eq!(
        other.send(&request()).await,
        "DUNNO",
        "another address's older connection is kept"
    );
    // Both of the client's connections busy (a request half-sent): a third is refused.
    let half = &request().to_bytes()[..20];
    second.send_raw(half).await.unwrap();
    third.send_raw(half).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut refused = server.client().await;
    let _ = refused.send_raw(&request().to_bytes()).await;
    assert_eq!(refused.read_reply().await, None, "closed without a reply");
    server.shutdown().await;
}

/// Sends `bytes` every 50 ms until the server closes the connection; how long that took.
async fn trickle_until_closed(server: &TestServer, bytes: &[u8]) -> Duration {
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let since = Instant::now();
    loop {
        // Writes fail (reset) soon after the server closed; a read would see the end.
        if stream.write_all(bytes).await.is_err() {
            break;
        }
        assert!(
            since.elapsed() < Duration::from_secs(10),
            "the trickle was never closed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut probe = [0u8; 1];
        match stream.try_read(&mut probe) {
            Ok(0) => break,
            Ok(_) => panic!("the server answered a trickle"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_newline_trickle_is_closed_at_the_idle_timeout() {
    let idle = Duration::from_millis(400);
    let server = server_with(EdgeConfig {
        idle_timeout: idle,
        ..EdgeConfig::default()
    })
    .await;
    let took = trickle_until_closed(&server, b"\n").await;
    assert!(
        took >= idle - Duration::from_millis(50),
        "closed early: {took:?}"
    );
    assert!(
        took < idle * 5,
        "newlines kept the connection open for {took:?} (idle timeout {idle:?})"
    );
    // After a real request, the idle time still starts over.
    let mut c = server.client().await;
    assert_eq!(c.send(&request()).await, "DUNNO");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_garbage_trickle_is_closed_at_the_busy_timeout() {
    let busy = Duration::from_millis(400);
    let server = server_with(EdgeConfig {
        busy_timeout: busy,
        idle_timeout: Duration::from_secs(60),
        ..EdgeConfig::default()
    })
    .await;
    // Bytes of a line that never ends: a request started, never completed.
    let took = trickle_until_closed(&server, b"x").await;
    assert!(
        took >= busy - Duration::from_millis(50),
        "closed early: {took:?}"
    );
    assert!(
        took < busy * 5,
        "garbage kept the connection open for {took:?} (busy timeout {busy:?})"
    );
    server.shutdown().await;
}
