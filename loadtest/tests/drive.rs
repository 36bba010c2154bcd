//! loadgen's driver against the real edge on 127.0.0.1:0.

use sluice_engine::PolicySetDef;
use sluice_loadtest::driver::{run, Plan, Stop};
use sluice_loadtest::mix;
use sluice_loadtest::target::Target;
use sluice_test_support::TestServer;
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drives_a_fixed_number_of_requests() {
    let server = TestServer::start(PolicySetDef::default()).await;
    let plan = Plan {
        target: Target::Tcp(server.addr()),
        connections: 8,
        warmup: Duration::ZERO,
        stop: Stop::Requests(2000),
        reply_timeout: Duration::from_secs(10),
        max_time: Duration::from_secs(60),
    };
    let outcome = run(&plan, Arc::new(mix::builtin(200))).await.unwrap();
    assert_eq!(outcome.requests, 2000);
    assert_eq!(outcome.errors, 0);
    assert_eq!(outcome.actions.get("DUNNO"), Some(&2000));
    assert_eq!(outcome.latency_us.len(), 2000);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_a_captured_request_file() {
    let dir = std::env::temp_dir().join(format!("sluice-loadtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("captured.txt");
    std::fs::write(
        &path,
        "# captured\n--- request ---\nrequest=smtpd_access_policy\nprotocol_state=RCPT\n\
         client_address=192.0.2.1\ninstance=abc\n\n--- request ---\n\
         request=smtpd_access_policy\nprotocol_state=END-OF-MESSAGE\nclient_address=192.0.2.1\n\
         instance=abc\nsize=100\n",
    )
    .unwrap();
    let requests = mix::from_file(&path).unwrap();
    assert_eq!(requests.len(), 2);
    let server = TestServer::start(PolicySetDef::default()).await;
    let plan = Plan {
        target: Target::Tcp(server.addr()),
        connections: 2,
        warmup: Duration::ZERO,
        stop: Stop::Requests(100),
        reply_timeout: Duration::from_secs(10),
        max_time: Duration::from_secs(60),
    };
    let outcome = run(&plan, Arc::new(requests)).await.unwrap();
    assert_eq!(outcome.requests, 100);
    assert_eq!(outcome.errors, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
