//! Verdict log lines in Policyd's style, one per module verdict:
//!
//! ```text
//! module=Quotas, action=reject, host=192.0.2.1, helo=mx.example.net, from=a@example.com, to=b@example.org, policy=Default, quota=per-ip, counter=101/100
//! module=AccessControl, mode=monitor, action=reject, host=..., policy=Blocked, rule=deny
//! ```

use sluice_engine::engine::{Decision, ModuleVerdict};
use sluice_protocol::PolicyRequest;
use std::fmt::Write;

/// Logs every verdict of `decision` at info level (target `sluice::verdict`).
pub fn log_decision(req: &PolicyRequest<'_>, decision: &Decision) {
    if decision.verdicts.is_empty() {
        tracing::debug!(
            host = %req.client_address,
            state = %req.protocol_state,
            action = decision.action.keyword(),
            "Request passed without verdicts"
        );
        return;
    }
    if !tracing::enabled!(target: "sluice::verdict", tracing::Level::INFO) {
        return;
    }
    for v in &decision.verdicts {
        tracing::info!(target: "sluice::verdict", "{}", format_verdict(req, v));
    }
}

/// The log line for one verdict.
pub fn format_verdict(req: &PolicyRequest<'_>, v: &ModuleVerdict) -> String {
    let mut s = String::with_capacity(200);
    let _ = write!(s, "module={}, ", v.module);
    if v.monitor {
        s.push_str("mode=monitor, ");
    }
    let _ = write!(
        s,
        "action={}, host={}, helo={}, from={}, to={}, policy={}",
        v.action.keyword(),
        req.client_address,
        req.helo_name,
        req.sender,
        req.recipient,
        v.policy
    );
    if v.module == "Quotas" {
        let _ = write!(s, ", quota={}", v.name);
    } else {
        let _ = write!(s, ", rule={}", v.name);
    }
    if let Some(c) = &v.counter {
        let _ = write!(s, ", counter={}/{}", c.used, c.limit);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_engine::engine::CounterLevel;
    use sluice_protocol::{Action, ProtocolState};
    use std::sync::Arc;

    fn request() -> PolicyRequest<'static> {
        let mut r = PolicyRequest::new(ProtocolState::Rcpt, "192.0.2.1".parse().unwrap());
        r.helo_name = "mx.example.net".into();
        r.sender = "a@example.com".into();
        r.recipient = "b@example.org".into();
        r
    }

    #[test]
    fn quota_verdicts_read_like_policyd() {
        let v = ModuleVerdict {
            module: "Quotas",
            policy: Arc::from("Default"),
            name: Arc::from("per-ip"),
            action: Action::Reject(Some("slow down".into())),
            monitor: false,
            counter: Some(CounterLevel {
                key: "SenderIP:192.0.2.1".into(),
                used: 101,
                limit: 100,
            }),
        };
        assert_eq!(
            format_verdict(&request(), &v),
            "module=Quotas, action=reject, host=192.0.2.1, helo=mx.example.net, \
             from=a@example.com, to=b@example.org, policy=Default, quota=per-ip, counter=101/100"
        );
    }

    #[test]
    fn monitor_verdicts_say_so() {
        let v = ModuleVerdict {
            module: "AccessControl",
            policy: Arc::from("Blocked"),
            name: Arc::from("deny"),
            action: Action::Reject(None),
            monitor: true,
            counter: None,
        };
        assert_eq!(
            format_verdict(&request(), &v),
            "module=AccessControl, mode=monitor, action=reject, host=192.0.2.1, \
             helo=mx.example.net, from=a@example.com, to=b@example.org, policy=Blocked, rule=deny"
        );
    }
}
