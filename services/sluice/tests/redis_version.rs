//! On a Redis older than 5.0 a quota service (a patient start) stays not ready and logs
//! which version it found and which it needs; `sluice serve --redis`, which connects once,
//! exits with code 64 saying the same (docs/cluster.md, "Redis version"). No such
//! Redis can run here: the old server is a stand-in that speaks RESP and answers `INFO` as
//! Redis 4.0.14 would (the real redis-server passing the check is tested in
//! services/redis/tests/version.rs and by every cluster test).

use sluice_test_support::{free_port, http_get, Process};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::Command;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Serves RESP on `listener` until the test ends: `INFO` gets `info`, `PING` `PONG`,
/// anything else an error.
fn old_redis(listener: TcpListener, info: &'static str) {
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut write = stream.try_clone().expect("clone the stream");
                let mut lines = BufReader::new(stream).lines();
                while let Some(Ok(line)) = lines.next() {
                    let Some(n) = line.strip_prefix('*').and_then(|n| n.parse::<usize>().ok())
                    else {
                        continue;
                    };
                    let mut args = Vec::new();
                    for _ in 0..n {
                        let _len = lines.next();
                        args.push(lines.next().and_then(Result::ok).unwrap_or_default());
                    }
                    let reply = match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
                        Some("INFO") => format!("${}\r\n{info}\r\n", info.len()),
                        Some("PING") => "+PONG\r\n".to_string(),
                        _ => "-ERR unknown command\r\n".to_string(),
                    };
                    if write.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn a_redis_older_than_5_0_is_refused_saying_why() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    old_redis(
        listener,
        "# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\ncluster_enabled:0",
    );
    let redis = format!("redis://127.0.0.1:{port}");
    let too_old = "Redis 4.0.14 is too old: Sluice needs Redis 5.0.0 or newer";

    let (grpc, metrics) = (free_port(), free_port());
    let args: Vec<String> = [
        "quota",
        "--grpc-listen",
        &format!("127.0.0.1:{grpc}"),
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
        "--redis",
        &redis,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut quota = Process::start("quota", BIN, &args, Some(grpc));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !quota.log().contains(too_old) {
        assert!(quota.running(), "{}", quota.log());
        assert!(Instant::now() < deadline, "{}", quota.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    quota.wait_for_log("upgrade Redis", Duration::from_secs(10));
    let (status, body) = http_get(metrics, "/readyz");
    assert_eq!(status, 503, "not ready on a Redis it cannot use: {body}");
    assert!(quota.running());

    let out = Command::new(BIN)
        .args(["serve", "--database", "sqlite::memory:", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .args(["--metrics-listen", "off", "--redis", &redis])
        .env_remove("SLUICE_DATABASE")
        .output()
        .expect("run sluice serve");
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{text}");
    assert!(
        text.contains(too_old) && text.contains("upgrade Redis"),
        "{text}"
    );
}
