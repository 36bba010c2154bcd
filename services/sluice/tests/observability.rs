//! Metrics, readiness, traces and graceful shutdown of the real `sluice` processes: real
//! TCP, real SQLite files, a real Redis, a private PostgreSQL, a real OTLP receiver.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use sluice_test_support::{free_port, http_get, policies, PrivatePostgres, Process, RedisServer};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

fn import(dir: &Path, db: &str) {
    let file = dir.join("policies.toml");
    std::fs::write(&file, policies::sender_quota("p", "q", 7)).unwrap();
    let out = Command::new(BIN)
        .args(["policy", "import", file.to_str().unwrap(), "--database", db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// The value of the series `name{labels}` exactly as rendered (labels in render order).
fn value(scrape: &str, series: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until `/readyz` answers `status` (polling; fails after `limit`).
fn wait_ready(port: u16, status: u16, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (s, body) = http_get(port, "/readyz");
        if s == status {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "/readyz stayed {s} ({body}), expected {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends one RCPT request on `conn` and reads the reply.
fn ask(conn: &mut BufReader<TcpStream>, sender: &str, instance: &str) -> String {
    write!(
        conn.get_mut(),
        "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender={sender}\nrecipient=bob@example.com\ninstance={instance}\n\n"
    )
    .unwrap();
    read_reply(conn).expect("a reply")
}

fn read_reply(conn: &mut BufReader<TcpStream>) -> Option<String> {
    let mut line = String::new();
    if conn.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut blank = String::new();
    conn.read_line(&mut blank).ok()?;
    Some(line.trim().trim_start_matches("action=").to_string())
}

fn connect(port: u16) -> BufReader<TcpStream> {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    BufReader::new(s)
}

/// `promtool check metrics` on a scrape. promtool (Debian package `prometheus`) must be
/// installed: this fails without it.
fn promtool_check(scrape: &str, what: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package `prometheus`) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed on the {what} scrape: {}{}\n{scrape}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn serve(name: &str, db: &str, extra: &[&str]) -> (Process, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let mut a = args(&[
        "serve",
        "--database",
        db,
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
    ]);
    a.extend(args(extra));
    let p = Process::start(name, BIN, &a, Some(port));
    (p, port, metrics)
}

#[test]
fn metrics_count_requests_per_action_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    import(dir.path(), &db);
    let (_p, port, metrics) = serve("serve", &db, &[]);

    let mut conn = connect(port);
    let mut answers = Vec::new();
    for i in 0..10 {
        answers.push(ask(&mut conn, "alice@example.net", &format!("m{i}")));
    }
    assert_eq!(answers.iter().filter(|a| *a == "DUNNO").count(), 7);
    assert_eq!(
        answers.iter().filter(|a| a.starts_with("REJECT")).count(),
        3
    );
    // A request that cannot be evaluated (no client_address): the fallback action.
    write!(
        conn.get_mut(),
        "request=smtpd_access_policy\nprotocol_state=RCPT\n\n"
    )
    .unwrap();
    assert!(read_reply(&mut conn)
        .unwrap()
        .starts_with("DEFER_IF_PERMIT"));
    drop(conn);

    let (status, scrape) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    let v = |series: &str| value(&scrape, series);
    assert_eq!(
        v(r#"sluice_requests_total{protocol_state="RCPT",action="dunno"}"#),
        Some(7.0),
        "{scrape}"
    );
    assert_eq!(
        v(r#"sluice_requests_total{protocol_state="RCPT",action="reject"}"#),
        Some(3.0)
    );
    assert_eq!(
        v(r#"sluice_requests_total{protocol_state="invalid",action="defer_if_permit"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(
            r#"sluice_verdicts_total{module="Quotas",policy="p",quota_or_rule="q",action="reject",mode="enforce"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        v(r#"sluice_fallback_total{reason="missing_client_address"}"#),
        Some(1.0)
    );
    // 7 of 7 and the refused ones leave the quota at its limit; 90 % is 6.3, so the 7th
    // admitted request is the first near the limit.
    assert!(v(r#"sluice_quota_near_limit_total{policy="p",quota="q"}"#).unwrap_or(0.0) >= 1.0);
    assert_eq!(v("sluice_request_duration_seconds_count"), Some(11.0));
    assert!(v("sluice_connections_total").unwrap() >= 1.0); // the harness probes the port too
    assert!(v("sluice_policy_set_version").unwrap() >= 1.0);
    assert!(v("sluice_policy_reload_timestamp_seconds").unwrap() > 1.6e9);
    assert_eq!(v("sluice_policy_reload_failures_total"), Some(0.0));
    assert_eq!(
        v(r#"sluice_build_info{version="0.1.0",role="serve"}"#),
        Some(1.0)
    );
    for line in scrape.lines().filter(|l| !l.starts_with('#')) {
        assert!(
            !line.contains("alice") && !line.contains("192.0.2.1"),
            "no addresses in labels: {line}"
        );
    }
    promtool_check(&scrape, "serve");

    assert_eq!(http_get(metrics, "/healthz").0, 200);
    let body = wait_ready(metrics, 200, Duration::from_secs(5));
    assert!(body.contains("1 enabled policies"), "{body}");
}

#[test]
fn readyz_follows_redis() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    import(dir.path(), &db);
    let mut redis = RedisServer::start();
    let (_p, port, metrics) = serve("serve-redis", &db, &["--redis", &redis.url()]);
    wait_ready(metrics, 200, Duration::from_secs(10));
    let mut conn = connect(port);
    assert_eq!(ask(&mut conn, "a@example.net", "m1"), "DUNNO");

    redis.stop();
    let body = wait_ready(metrics, 503, Duration::from_secs(10));
    assert!(body.contains("Redis"), "{body}");
    redis.restart();
    wait_ready(metrics, 200, Duration::from_secs(20));
    let (_, scrape) = http_get(metrics, "/metrics");
    assert!(
        value(
            &scrape,
            r#"sluice_redis_duration_seconds_count{result="ok"}"#
        )
        .unwrap()
            >= 1.0,
        "{scrape}"
    );
    // The restarted Redis kept no scripts: the counter script was loaded again and the
    // request resent (it provably had not run).
    assert!(
        value(&scrape, r#"sluice_redis_resends_total{reason="noscript"}"#).unwrap_or(0.0) >= 1.0,
        "{scrape}"
    );
}

#[test]
fn readyz_follows_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let mut pg = PrivatePostgres::start();
    pg.psql("postgres", "CREATE DATABASE sluice");
    let db = pg.url("sluice");
    // Only `sluice migrate` creates the schema on PostgreSQL.
    let out = Command::new(BIN)
        .args(["migrate", "--database", &db])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    import(dir.path(), &db);
    let (_p, _port, metrics) = serve("serve-pg", &db, &[]);
    wait_ready(metrics, 200, Duration::from_secs(10));

    pg.stop();
    let body = wait_ready(metrics, 503, Duration::from_secs(20));
    assert!(body.contains("policy database"), "{body}");
    pg.start_server();
    wait_ready(metrics, 200, Duration::from_secs(30));
}

/// A received span: (the `sluice.role` resource attribute, span name, trace id).
type Received = (String, String, Vec<u8>);

/// Collects every span exported to it.
#[derive(Default, Clone)]
struct Receiver {
    spans: Arc<Mutex<Vec<Received>>>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            let role = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "sluice.role")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for s in ss.spans {
                    spans.push((role.clone(), s.name, s.trace_id));
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[test]
fn one_request_is_one_trace_across_edge_and_quota_service() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = Receiver::default();
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let otlp = format!("http://{}", listener.local_addr().unwrap());
    let service = TraceServiceServer::new(receiver.clone());
    rt.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    import(dir.path(), &db);
    let redis = RedisServer::start();
    let (grpc, quota_metrics) = (free_port(), free_port());
    let mut quota = Process::start(
        "quota",
        BIN,
        &args(&[
            "quota",
            "--redis",
            &redis.url(),
            "--grpc-listen",
            &format!("127.0.0.1:{grpc}"),
            "--metrics-listen",
            &format!("127.0.0.1:{quota_metrics}"),
            "--otlp-endpoint",
            &otlp,
        ]),
        Some(grpc),
    );
    let (port, edge_metrics) = (free_port(), free_port());
    let mut edge = Process::start(
        "edge",
        BIN,
        &args(&[
            "edge",
            "--database",
            &db,
            "--quota",
            &format!("http://127.0.0.1:{grpc}"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--metrics-listen",
            &format!("127.0.0.1:{edge_metrics}"),
            "--otlp-endpoint",
            &otlp,
        ]),
        Some(port),
    );
    wait_ready(edge_metrics, 200, Duration::from_secs(10));
    wait_ready(quota_metrics, 200, Duration::from_secs(10));
    let mut conn = connect(port);
    assert_eq!(ask(&mut conn, "alice@example.net", "m1"), "DUNNO");
    drop(conn);

    let (_, edge_scrape) = http_get(edge_metrics, "/metrics");
    let (_, quota_scrape) = http_get(quota_metrics, "/metrics");
    assert_eq!(
        value(
            &edge_scrape,
            r#"sluice_requests_total{protocol_state="RCPT",action="dunno"}"#
        ),
        Some(1.0)
    );
    assert!(
        value(
            &edge_scrape,
            r#"sluice_quota_rpc_duration_seconds_count{result="ok"}"#
        )
        .is_some(),
        "{edge_scrape}"
    );
    assert!(value(&quota_scrape, r#"sluice_quota_batches_total{result="ok"}"#).unwrap() >= 1.0);
    assert_eq!(value(&quota_scrape, "sluice_quota_backend_up"), Some(1.0));
    promtool_check(&edge_scrape, "edge");
    promtool_check(&quota_scrape, "quota");

    // Stopping flushes the exporters.
    assert!(
        edge.terminate(Duration::from_secs(15)).success(),
        "{}",
        edge.log()
    );
    assert!(
        quota.terminate(Duration::from_secs(15)).success(),
        "{}",
        quota.log()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let spans = receiver.spans.lock().unwrap().clone();
        let has = |n: &str| spans.iter().any(|(_, name, _)| name == n);
        if has("policy_request")
            && has("redis.batch")
            && spans.iter().filter(|s| s.1 == "quota.apply").count() >= 2
        {
            break spans;
        }
        assert!(Instant::now() < deadline, "spans received: {spans:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let request = spans
        .iter()
        .find(|(_, name, _)| name == "policy_request")
        .unwrap();
    assert!(request.0.contains("edge"), "{request:?}");
    let trace = &request.2;
    let in_trace: Vec<_> = spans.iter().filter(|s| &s.2 == trace).collect();
    assert!(
        in_trace
            .iter()
            .any(|s| s.1 == "quota.apply" && s.0.contains("edge")),
        "the edge's gRPC client span: {spans:?}"
    );
    assert!(
        in_trace
            .iter()
            .any(|s| s.1 == "quota.apply" && s.0.contains("quota")),
        "the quota service's span joins the edge's trace: {spans:?}"
    );
    assert!(
        in_trace
            .iter()
            .any(|s| s.1 == "redis.batch" && s.0.contains("quota")),
        "the Redis work joins the trace: {spans:?}"
    );
}

#[test]
fn sigterm_under_load_answers_every_request_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("s.db").display());
    import(dir.path(), &db);
    let (mut p, port, _metrics) = serve("serve-load", &db, &[]);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Set just before SIGTERM is sent: a request fully written before it was sent before
    // the signal. Requests written later may meet a closing connection (Postfix retries).
    let signalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..32 {
        let stop = stop.clone();
        let signalled = signalled.clone();
        clients.push(std::thread::spawn(move || {
            let mut conn = connect(port);
            let (mut sent, mut answered) = (0u64, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = format!(
                    "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.1\nsender=u{c}-{sent}@example.net\nrecipient=bob@example.com\ninstance=c{c}-{sent}\n\n"
                );
                if conn.get_mut().write_all(req.as_bytes()).is_err() {
                    break; // closed before this request was sent
                }
                let before_signal = !signalled.load(std::sync::atomic::Ordering::SeqCst);
                sent += u64::from(before_signal);
                match read_reply(&mut conn) {
                    Some(_) => answered += u64::from(before_signal),
                    None => break,
                }
            }
            // After the answer the server closes the connection (shutdown): EOF.
            let closed = read_reply(&mut conn).is_none();
            (sent, answered, closed)
        }));
    }
    std::thread::sleep(Duration::from_millis(500)); // let the load build up
    signalled.store(true, std::sync::atomic::Ordering::SeqCst);
    p.signal("TERM");
    let status = p.wait_exit(Duration::from_secs(20));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut sent, mut answered) = (0, 0);
    for c in clients {
        let (s, a, closed) = c.join().unwrap();
        sent += s;
        answered += a;
        assert!(closed, "connection closed after shutdown");
    }
    assert!(sent > 32, "load ran: {sent} requests");
    assert_eq!(sent, answered, "every request sent got an answer");
    assert!(status.success(), "exit status {status:?}: {}", p.log());
}
