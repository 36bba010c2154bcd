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
