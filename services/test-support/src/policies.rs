//! Policy files that tests share.

/// A policy file with one policy matching every request and one quota on it: `limit`
/// messages per sender per hour, then REJECT with "Sender quota exceeded".
pub fn sender_quota(policy: &str, quota: &str, limit: u64) -> String {
    quota_policy(
        policy,
        quota,
        "Sender:user@domain",
        "MessageCount",
        limit,
        "REJECT",
        "Sender quota exceeded",
    )
}

/// A policy file with one policy matching every request and one quota on it: `limit` of
/// `kind` (`MessageCount`, ...) per `track` per hour, then `verdict` with `data`.
pub fn quota_policy(
    policy: &str,
    quota: &str,
    track: &str,
    kind: &str,
    limit: u64,
    verdict: &str,
    data: &str,
) -> String {
    format!(
        r#"
[[policy]]
name = "{policy}"
priority = 10
  [[policy.member]]
  source = "any"
  [[policy.quota]]
  name = "{quota}"
  track = "{track}"
  period = "1h"
  verdict = "{verdict}"
  data = "{data}"
    [[policy.quota.limit]]
    type = "{kind}"
    limit = {limit}
"#
    )
}

/// Two policies: a gate on 192.0.2.0/24 answering `REJECT <gate_text>`, and for every
/// request a per-sender quota of `limit` messages per hour (then `REJECT sender quota
/// exceeded`).
pub fn gate_and_sender_quota(gate_text: &str, limit: u64) -> String {
    format!(
        r#"
[[policy]]
name = "gate"
priority = 1
  [[policy.member]]
  source = "192.0.2.0/24"
  [[policy.access_control]]
  name = "block"
  verdict = "REJECT"
  data = "{gate_text}"

[[policy]]
name = "senders"
priority = 10
  [[policy.member]]
  source = "any"
  [[policy.quota]]
  name = "per-sender"
  track = "Sender:user@domain"
  period = "1h"
  verdict = "REJECT"
  data = "sender quota exceeded"
    [[policy.quota.limit]]
    type = "MessageCount"
    limit = {limit}
"#
    )
}
