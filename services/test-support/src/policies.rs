//! Policy files that tests share.

/// A policy file with one policy matching every request and one quota on it: `limit`
/// messages per sender per hour, then REJECT with "Sender quota exceeded".
pub fn sender_quota(policy: &str, quota: &str, limit: u64) -> String {
    format!(
        r#"
[[policy]]
name = "{policy}"
priority = 10
  [[policy.member]]
  source = "any"
  [[policy.quota]]
  name = "{quota}"
  track = "Sender:user@domain"
  period = "1h"
  verdict = "REJECT"
  data = "Sender quota exceeded"
    [[policy.quota.limit]]
    type = "MessageCount"
    limit = {limit}
"#
    )
}
