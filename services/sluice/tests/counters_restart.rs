//! Embedded mode's counters survive a restart: real `sluice serve` processes on a real SQLite
//! policy database, stopped cleanly (SIGTERM) or killed (SIGKILL), then started again.

use sluice_test_support::{end_of_message, free_port, rcpt, PolicyClient, Process};
use std::process::Command;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sluice");

/// Three policies, one per sender: 5 recipients per hour for alice, 2 messages for bob,
/// 1,000 bytes for carol.
fn policies(recipients: u64, period: &str, quota_name: &str) -> String {
    let policy = |name: &str, sender: &str, quota: &str, kind: &str, limit: u64| {
        format!(
            r#"
[[policy]]
name = "{name}"
priority = 10
  [[policy.member]]
  source = "{sender}"
  [[policy.quota]]
  name = "{quota}"
  track = "Sender:user@domain"
  period = "{period}"
  verdict = "REJECT"
  data = "{kind} quota exceeded"
    [[policy.quota.limit]]
    type = "{kind}"
    limit = {limit}
"#
        )
    };
    [
        policy(
            "alice",
            "alice@a.example",
            quota_name,
            "RecipientCount",
            recipients,
        ),
        policy("bob", "bob@b.example", "messages", "MessageCount", 2),
        policy(
            "carol",
            "carol@c.example",
            "bytes",
            "MessageCumulativeSize",
            1_000,
        ),
    ]
    .concat()
}

struct Server {
    dir: tempfile::TempDir,
    db: String,
    port: u16,
    process: Option<Process>,
}

impl Server {
    fn new() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("sluice.db").display());
        Server {
            dir,
            db,
            port: free_port(),
            process: None,
        }
    }

    fn import(&self, policy_file: &str) {
        let path = self.dir.path().join("policies.toml");
        std::fs::write(&path, policy_file).unwrap();
        let out = Command::new(BIN)
            .args(["policy", "import"])
            .arg(&path)
            .args(["--database", &self.db])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn start(&mut self, flush_ms: u64) {
        let args: Vec<String> = [
            "serve",
            "--database",
            &self.db,
            "--listen",
            &format!("127.0.0.1:{}", self.port),
            "--metrics-listen",
            "off",
            "--counter-flush-ms",
            &flush_ms.to_string(),
        ]
        .map(String::from)
        .to_vec();
        self.process = Some(Process::start("sluice serve", BIN, &args, Some(self.port)));
    }

    fn process(&mut self) -> &mut Process {
        self.process.as_mut().expect("started")
    }

    /// Waits (at most 20 s) until the saved copy of counter `key` holds `level`.
    async fn wait_saved(&self, key: &str, level: u64) {
        use sqlx::Connection;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut saved = 0;
        while std::time::Instant::now() < deadline {
            let mut db = sqlx::SqliteConnection::connect(&self.db).await.unwrap();
            let row: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT buckets FROM quota_counter WHERE counter_key = $1")
                    .bind(key)
                    .fetch_optional(&mut db)
                    .await
                    .unwrap();
            db.close().await.ok();
            // (index, count) pairs of little-endian u64s.
            saved = row.unwrap_or_default().chunks_exact(16).fold(0, |sum, b| {
                sum + u64::from_le_bytes(b[8..16].try_into().unwrap())
            });
            if saved == level {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("counter {key} saved at {saved}, not {level}, after 20 s");
    }

    async fn client(&self) -> PolicyClient {
        PolicyClient::connect(([127, 0, 0, 1], self.port).into()).await
    }
}

async fn alice(c: &mut PolicyClient, i: u32) -> String {
    c.send(&rcpt(
        "alice@a.example",
        "r@y.example",
        "192.0.2.1",
        &format!("a{i}"),
    ))
    .await
}

#[tokio::test]
async fn counters_and_message_sessions_survive_a_clean_stop() {
    let mut s = Server::new();
    s.import(&policies(5, "1h", "recipients"));
    // Written only at the stop: the interval is far longer than the test.
    s.start(3_600_000);
    let mut c = s.client().await;
    for i in 0..5 {
        assert_eq!(alice(&mut c, i).await, "DUNNO", "recipient {i}");
    }
    // Bob's first message is counted at its first RCPT; carol's is charged at its end.
    let bob = |instance: &str, rcpt_to: &str| rcpt("bob@b.example", rcpt_to, "192.0.2.2", instance);
    assert_eq!(c.send(&bob("b1", "x@y.example")).await, "DUNNO");
    let carol = |instance: &str| rcpt("carol@c.example", "x@y.example", "192.0.2.3", instance);
    assert_eq!(c.send(&carol("c1")).await, "DUNNO");
    drop(c);

    let status = s.process().terminate(Duration::from_secs(15));
    assert!(status.success(), "{status}\n{}", s.process().log());
    let log = s.process().log();
    assert!(log.contains("Counters saved"), "{log}");
    s.process().restart();
    let log = s.process().log();
    assert!(log.contains("Counters restored"), "{log}");

    let mut c = s.client().await;
    assert_eq!(
        alice(&mut c, 5).await,
        "REJECT RecipientCount quota exceeded",
        "the 6th recipient after the restart"
    );
    // Bob's message b1 goes on: not counted twice; one more message fits, then no more.
    assert_eq!(c.send(&bob("b1", "z@y.example")).await, "DUNNO");
    assert_eq!(c.send(&bob("b2", "x@y.example")).await, "DUNNO");
    assert_eq!(
        c.send(&bob("b3", "x@y.example")).await,
        "REJECT MessageCount quota exceeded"
    );
    // Carol's message c1 ends after the restart and is charged its 800 bytes; 300 more do
    // not fit.
    let eom =
        |instance: &str, size| end_of_message("carol@c.example", 1, size, "192.0.2.3", instance);
    assert_eq!(c.send(&eom("c1", 800)).await, "DUNNO");
    assert_eq!(c.send(&carol("c2")).await, "DUNNO");
    assert_eq!(
        c.send(&eom("c2", 300)).await,
        "REJECT MessageCumulativeSize quota exceeded"
    );
    drop(c);
    assert!(s.process().terminate(Duration::from_secs(15)).success());
}

#[tokio::test]
async fn counters_survive_a_kill_after_the_flush_interval() {
    let mut s = Server::new();
    s.import(&policies(5, "1h", "recipients"));
    s.start(200);
    let mut c = s.client().await;
    for i in 0..5 {
        assert_eq!(alice(&mut c, i).await, "DUNNO", "recipient {i}");
    }
    drop(c);
    // Past the 200 ms flush interval (waiting, on a busy machine, until the write shows in
    // the database), then no chance to save anything more.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    s.wait_saved("alice/recipients/RecipientCount/Sender:alice@a.example", 5)
        .await;
    s.process().signal("KILL");
    s.process().restart();
    let mut c = s.client().await;
    assert_eq!(
        alice(&mut c, 5).await,
        "REJECT RecipientCount quota exceeded",
        "the 6th recipient after kill -9 and a restart"
    );
}

#[tokio::test]
async fn policy_changes_while_stopped_keep_the_counters_that_still_match() {
    let mut s = Server::new();
    s.import(&policies(5, "1h", "recipients"));
    s.start(3_600_000);
    let mut c = s.client().await;
    for i in 0..4 {
        assert_eq!(alice(&mut c, i).await, "DUNNO");
    }
    drop(c);
    assert!(s.process().terminate(Duration::from_secs(15)).success());
    // A higher limit and a longer period: the same quota, the same counter (4 used).
    s.import(&policies(6, "1d", "recipients"));
    s.process().restart();
    let mut c = s.client().await;
    assert_eq!(alice(&mut c, 4).await, "DUNNO");
    assert_eq!(alice(&mut c, 5).await, "DUNNO");
    assert_eq!(
        alice(&mut c, 6).await,
        "REJECT RecipientCount quota exceeded"
    );
    drop(c);
    assert!(s.process().terminate(Duration::from_secs(15)).success());
    // A renamed quota is a new counter: it starts empty.
    s.import(&policies(6, "1d", "renamed"));
    s.process().restart();
    let mut c = s.client().await;
    for i in 7..13 {
        assert_eq!(alice(&mut c, i).await, "DUNNO", "recipient {i}");
    }
    assert_eq!(
        alice(&mut c, 13).await,
        "REJECT RecipientCount quota exceeded"
    );
}
