//! Verdict log lines in Policyd's style, one per module verdict:
//!
//! ```text
//! module=Quotas, action=reject, host=192.0.2.1, helo=mx.example.net, from=a@example.com, to=b@example.org, policy=Default, quota=per-ip, counter=101/100
//! module=AccessControl, mode=monitor, action=reject, host=..., policy=Blocked, rule=deny
//! module=Quotas, action=reject, host=192.0.2.1, helo="evil, action=OK", from=, ...
//! ```
//!
//! Values come from the SMTP client (HELO, sender, recipient) and from the policies (names):
//! a value that could be read as more than one field — one with a space, comma, `=`, quote,
//! backslash, control character or non-ASCII character — is written in double quotes, with
//! `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` escapes ([`field_value`]), so request text
//! can never make a field of its own.

use sluice_engine::engine::{Decision, ModuleVerdict};
use sluice_protocol::PolicyRequest;
use std::fmt::{self, Write};

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
        field_value(&req.helo_name),
        field_value(&req.sender),
        field_value(&req.recipient),
        field_value(&v.policy)
    );
    if v.module == "Quotas" {
        let _ = write!(s, ", quota={}", field_value(&v.name));
    } else {
        let _ = write!(s, ", rule={}", field_value(&v.name));
    }
    if let Some(c) = &v.counter {
        let _ = write!(s, ", counter={}/{}", c.used, c.limit);
    }
    s
}

/// `value` as one field's value: as it is when it is plain (ASCII letters, digits and
/// `@.-_+/:[]<>` and the like), else in double quotes with escapes.
pub fn field_value(value: &str) -> FieldValue<'_> {
    FieldValue(value)
}

/// A value written by [`field_value`].
pub struct FieldValue<'a>(&'a str);

/// Whether `b` may appear in a value written without quotes.
fn plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b',' | b'=' | b'"' | b'\\')
}

impl fmt::Display for FieldValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.bytes().all(plain) {
            return f.write_str(self.0);
        }
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '"' => f.write_str("\\\"")?,
                '\\' => f.write_str("\\\\")?,
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                ' '..='~' => f.write_char(c)?,
                _ => write!(f, "\\u{{{:x}}}", c as u32)?,
            }
        }
        f.write_char('"')
    }
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
    fn request_text_cannot_make_fields() {
        let mut req = request();
        req.helo_name = "evil, action=OK, policy=Forged".into();
        req.sender = "a b@example.com".into();
        req.recipient = "x\ny=\"z\"\\\u{202e}é".into();
        let v = ModuleVerdict {
            module: "Quotas",
            policy: Arc::from("Default"),
            name: Arc::from("per sender"),
            action: Action::Reject(None),
            monitor: false,
            counter: None,
        };
        assert_eq!(
            format_verdict(&req, &v),
            "module=Quotas, action=reject, host=192.0.2.1, \
             helo=\"evil, action=OK, policy=Forged\", from=\"a b@example.com\", \
             to=\"x\\ny=\\\"z\\\"\\\\\\u{202e}\\u{e9}\", policy=Default, quota=\"per sender\""
        );
    }

    #[test]
    fn plain_values_stay_as_they_are() {
        for v in [
            "mx.example.net",
            "a+b@example.com",
            "[192.0.2.1]",
            "<>",
            "per-ip",
        ] {
            assert_eq!(field_value(v).to_string(), v);
        }
        assert_eq!(field_value("").to_string(), "");
        assert_eq!(field_value("a=b").to_string(), "\"a=b\"");
        assert_eq!(field_value("a,b").to_string(), "\"a,b\"");
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
