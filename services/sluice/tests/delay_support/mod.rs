//! Shared by `delay.rs` and `cluster_delay.rs`: the DELAY policy, one message over the policy
//! protocol, and the release agent's side played over the admin API.
#![allow(dead_code)]

use sluice_test_support::{end_of_message, rcpt, PolicyClient};
use std::time::{Duration, Instant};

/// The sender every DELAY test sends as.
pub const SENDER: &str = "app@delay.example";
/// The MTA: the address the tests' policy connections come from.
pub const MTA: &str = "127.0.0.1";

/// One policy for [`SENDER`]: a DELAY quota of `limit` messages per 2 s, with `extra` TOML
/// lines on the quota.
pub fn policy(limit: u64, extra: &str) -> String {
    format!(
        r#"
[[policy]]
name = "app"
priority = 10
  [[policy.member]]
  source = "{SENDER}"
  [[policy.quota]]
  name = "outbound"
  track = "Sender:user@domain"
  period = 2
  verdict = "DELAY"
  {extra}
    [[policy.quota.limit]]
    type = "MessageCount"
    limit = {limit}
"#
    )
}

/// One message from [`SENDER`] (instance `i`, queue ID `Q<i>`) on `c`: its RCPT and its
/// END-OF-MESSAGE answers.
pub async fn message(c: &mut PolicyClient, i: u32) -> (String, String) {
    let instance = format!("m{i}");
    let at_rcpt = c
        .send(&rcpt(SENDER, "r@dest.example", "192.0.2.9", &instance))
        .await;
    let at_end = c
        .send(
            &end_of_message(SENDER, 1, 1_000, "192.0.2.9", &instance)
                .set("queue_id", &format!("Q{i}")),
        )
        .await;
    (at_rcpt, at_end)
}

/// The body of an agent's sync (`POST /api/held/sync`): `held` are in [`MTA`]'s hold queue.
pub fn sync_body(held: &[&str]) -> serde_json::Value {
    let queue: Vec<_> = held
        .iter()
        .map(|id| serde_json::json!({"queue_id": id, "queue_name": "hold"}))
        .collect();
    serde_json::json!({"mta": MTA, "queue": queue})
}

/// A JSON array of strings.
pub fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// Syncs `held` with `sync` until the answers released `n` messages (at most `secs`): the
/// released IDs in the order first answered, and when the first came. `logs` for a failure.
pub fn wait_released(
    sync: impl Fn(&[&str]) -> serde_json::Value,
    held: &[&str],
    n: usize,
    secs: u64,
    logs: impl Fn() -> String,
) -> (Vec<String>, Instant) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut released: Vec<String> = Vec::new();
    let mut first = None;
    loop {
        let answer = sync(held);
        for id in strings(&answer["release"]) {
            if !released.contains(&id) {
                first.get_or_insert_with(Instant::now);
                released.push(id);
            }
        }
        if released.len() >= n {
            return (released, first.unwrap());
        }
        assert!(
            Instant::now() < deadline,
            "{released:?} released within {secs} s, not {n}: {answer}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
