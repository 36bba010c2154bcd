//! The minimum Redis version is checked when a `RedisState` connects: a real redis-server
//! passes and reports its version; a server announcing an older one is refused with a clear
//! start error. (No Redis older than 5.0 can run here: the old server is a stand-in that
//! speaks RESP and answers `INFO` with the version of Redis 4.0.)

use sluice_redis::{check_info, ConnectError, RedisState, RedisVersion, MIN_REDIS_VERSION};
use sluice_test_support::RedisServer;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[tokio::test]
async fn a_real_redis_server_passes_the_check() {
    let server = RedisServer::start();
    let state = RedisState::connect(&[server.url()]).await;
    assert!(state.is_ok(), "{:?}", state.err());
    // The text the check reads, from the real server.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(&mut conn)
        .await
        .unwrap();
    let version = check_info(&info).expect("the local redis-server is new enough");
    assert!(version >= MIN_REDIS_VERSION);
    assert_eq!(Some(version), RedisVersion::from_info(&info));
}

/// Answers every RESP command on `listener`: `INFO` with `info`, `PING` with `PONG`, anything
/// else with an error.
async fn old_server(listener: TcpListener, info: &'static str) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                // `*N` then N × (`$len`, argument).
                let Some(n) = line.strip_prefix('*').and_then(|n| n.parse::<usize>().ok()) else {
                    continue;
                };
                let mut args = Vec::new();
                for _ in 0..n {
                    let _len = lines.next_line().await;
                    args.push(lines.next_line().await.ok().flatten().unwrap_or_default());
                }
                let reply = match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
                    Some("INFO") => format!("${}\r\n{info}\r\n", info.len()),
                    Some("PING") => "+PONG\r\n".to_string(),
                    _ => "-ERR unknown command\r\n".to_string(),
                };
                if write.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[tokio::test]
async fn a_server_older_than_5_0_is_a_clear_start_error() {
    const INFO: &str =
        "# Server\r\nredis_version:4.0.14\r\nredis_mode:standalone\r\ncluster_enabled:0";
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(old_server(listener, INFO));
    let url = format!("redis://127.0.0.1:{port}");
    let result = tokio::time::timeout(Duration::from_secs(10), RedisState::connect(&[url]))
        .await
        .expect("connect answers within 10 s");
    let err = result.err().expect("refused");
    assert_eq!(
        err,
        ConnectError::TooOld {
            found: "4.0.14".into(),
            minimum: "5.0.0".into()
        }
    );
    assert!(
        !err.is_permanent(),
        "not a settings error: an upgraded Redis would do"
    );
    assert!(
        err.to_string()
            .contains("Redis 4.0.14 is too old: Sluice needs Redis 5.0.0 or newer"),
        "{err}"
    );
    server.abort();
}
