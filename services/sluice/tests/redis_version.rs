//! A quota service on a Redis older than 5.0 does not start: it exits with code 64 and says
//! which version it found and which it needs (docs/cluster.md, "Redis version"). No such
//! Redis can run here: the old server is a stand-in that speaks RESP and answers `INFO` as
//! Redis 4.0.14 would (the real redis-server passing the check is tested in
//! services/redis/tests/version.rs and by every cluster test).

use sluice_test_support::{free_port, Process};
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

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
fn a_quota_service_refuses_a_redis_older_than_5_0() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    old_redis(
        listener,
        "# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\ncluster_enabled:0",
    );
    let args: Vec<String> = [
        "quota",
        "--grpc-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--metrics-listen",
        "off",
        "--redis",
        &format!("redis://127.0.0.1:{port}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut quota = Process::start("quota", BIN, &args, None);
    let status = quota.wait_exit(Duration::from_secs(30));
    let log = quota.log();
    assert_eq!(status.code(), Some(64), "{log}");
    assert!(
        log.contains("Redis 4.0.14 is too old: Sluice needs Redis 5.0.0 or newer"),
        "{log}"
    );
    assert!(log.contains("upgrade Redis"), "{log}");
}
