//! `sluice ask`: one policy request to a real `sluice serve` over TCP, as `helm test` sends it.

use sluice_test_support::policies::sender_quota;
use sluice_test_support::{free_port, output_text, wait_listening};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

#[test]
fn ask_prints_the_reply_and_fails_without_a_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
    let policies = dir.path().join("policies.toml");
    std::fs::write(&policies, sender_quota("P", "Q", 1)).unwrap();
    let import = Command::new(BIN)
        .args(["policy", "import", policies.to_str().unwrap()])
        .args(["--database", &db, "--server", "off"])
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", output_text(&import));

    let (port, metrics) = (free_port(), free_port());
    let mut serve = Command::new(BIN)
        .args(["serve", "--database", &db])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_listening(port, Duration::from_secs(20), "sluice serve");
    let ask = |sender: &str| {
        Command::new(BIN)
            .args(["ask", &format!("127.0.0.1:{port}"), "--sender", sender])
            .output()
            .unwrap()
    };
    let first = ask("ann@example.com");
    let second = ask("ann@example.com");
    serve.kill().unwrap();
    serve.wait().unwrap();

    assert!(first.status.success(), "{}", output_text(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "action=DUNNO\n\n");
    // The reply printed is the server's, whatever it says; an action means success.
    assert!(second.status.success(), "{}", output_text(&second));
    assert_eq!(
        String::from_utf8_lossy(&second.stdout),
        "action=REJECT Sender quota exceeded\n\n"
    );

    // Nothing listens there any more: an error, not a hang.
    let none = ask("ann@example.com");
    assert!(!none.status.success(), "{}", output_text(&none));
    assert!(
        output_text(&none).contains("cannot connect"),
        "{}",
        output_text(&none)
    );
}
