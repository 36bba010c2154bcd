//! Verdict log lines, one per module verdict, in one of three shapes ([`VerdictLines`],
//! chosen once at start with [`set_lines`]):
//!
//! - Sluice's lines, Policyd-like, for plain logs:
//!
//!   ```text
//!   module=Quotas, action=reject, host=192.0.2.1, helo=mx.example.net, from=a@example.com, to=b@example.org, policy=Default, quota=per-ip, counter=101/100
//!   module=AccessControl, mode=monitor, action=reject, host=..., policy=Blocked, rule=deny
//!   module=Quotas, action=reject, host=192.0.2.1, helo="evil, action=OK", from=, ...
//!   ```
//!
//! - The same fields as fields of the log event, for JSON logs: each its own key
//!   (`"module":"Quotas","action":"reject","host":"192.0.2.1",...,"used":101,"limit":100`).
//!
//! - Policyd's own mail.log lines (`--log-style policyd`), so that greps and logwatch
//!   scripts written for Policyd keep working ([`format_policyd`]):
//!
//!   ```text
//!   module=Quotas, action=defer, host=192.0.2.1, helo=mx.example.net, from=a@example.com, to=b@example.org, reason=quota_match, policy=Outbound, quota=per-sender, limit=MessageCount, track=Sender:a@example.com, counter=MessageCount, quota=301.00/300 (100.3%)
//!   module=Quotas, mode=update, host=192.0.2.1, ..., reason=quota_update, policy=Outbound, quota=per-sender, limit=MessageCount, track=Sender:a@example.com, counter=MessageCount, quota=12.00/300 (4.0%)
//!   module=AccessControl, action=reject, host=192.0.2.1, helo=..., from=..., to=..., reason=verdict
//!   ```
//!
//! Values come from the SMTP client (HELO, sender, recipient) and from the policies (names):
//! in the text lines a value that could be read as more than one field — one with a space,
//! comma, `=`, quote, backslash, control character or non-ASCII character — is written in
//! double quotes, with `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` escapes ([`field_value`]), so
//! request text can never make a field of its own. (JSON escapes its values itself.)

use sluice_engine::engine::{Decision, ModuleVerdict};
use sluice_protocol::PolicyRequest;
use std::fmt::{self, Write};
use std::sync::OnceLock;

/// The shape of verdict lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VerdictLines {
    /// Sluice's line as the event's message ([`format_verdict`]): for plain logs.
    #[default]
    Text,
    /// Sluice's fields as the event's fields, message `Verdict`: for JSON logs.
    Fields,
    /// Policyd's mail.log lines as the message ([`format_policyd`]), including a
    /// `mode=update` line for every quota that admitted a request.
    Policyd,
}

static LINES: OnceLock<VerdictLines> = OnceLock::new();

/// Sets the shape of verdict lines for this process, once, before serving (later calls
/// change nothing). Without it lines are [`VerdictLines::Text`].
pub fn set_lines(lines: VerdictLines) {
    let _ = LINES.set(lines);
}

/// The shape of verdict lines in this process.
pub fn lines() -> VerdictLines {
    LINES.get().copied().unwrap_or_default()
}

/// Logs every verdict of `decision` at info level (target `sluice::verdict`), in the shape
/// set with [`set_lines`].
pub fn log_decision(req: &PolicyRequest<'_>, decision: &Decision) {
    if decision.verdicts.is_empty() && decision.admitted.is_empty() {
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
    match lines() {
        VerdictLines::Text => {
            for v in &decision.verdicts {
                tracing::info!(target: "sluice::verdict", "{}", format_verdict(req, v));
            }
        }
        VerdictLines::Fields => {
            for v in &decision.verdicts {
                log_fields(req, v);
            }
        }
        VerdictLines::Policyd => {
            // Policyd logs its update lines only when no quota refused (then nothing is
            // counted). Enforced and monitor-mode quotas are counted apart.
            let refused = |monitor: bool| {
                decision
                    .verdicts
                    .iter()
                    .any(|r| r.module == "Quotas" && r.monitor == monitor)
            };
            for v in decision.admitted.iter().filter(|v| !refused(v.monitor)) {
                tracing::info!(target: "sluice::verdict", "{}", format_policyd(req, v, true));
            }
            for v in &decision.verdicts {
                tracing::info!(target: "sluice::verdict", "{}", format_policyd(req, v, false));
            }
        }
    }
}

/// One verdict as an event with one field per item (JSON: one key each).
fn log_fields(req: &PolicyRequest<'_>, v: &ModuleVerdict) {
    let (quota, rule) = if v.module == "Quotas" {
        (Some(&*v.name), None)
    } else {
        (None, Some(&*v.name))
    };
    let counter = v.counter.as_ref();
    tracing::info!(
        target: "sluice::verdict",
        module = v.module,
        mode = v.monitor.then_some("monitor"),
        action = v.action.keyword(),
        host = %req.client_address,
        helo = &*req.helo_name,
        from = &*req.sender,
        to = &*req.recipient,
        policy = &*v.policy,
        quota,
        rule,
        counter = counter.map(|c| c.key.as_str()),
        used = counter.map(|c| c.used),
        limit = counter.map(|c| c.limit),
        "Verdict"
    );
}

/// The log line for one verdict.
pub fn format_verdict(req: &PolicyRequest<'_>, v: &ModuleVerdict) -> String {
    let mut s = String::with_capacity(200);
    let _ = write!(s, "module={}, ", v.module);
    if v.monitor {
        s.push_str("mode=monitor, ");
    }
    write_request(&mut s, &v.action, req, true);
    let _ = write!(s, ", policy={}", field_value(&v.policy));
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

/// `action=..., host=..., helo=..., from=..., to=...` (without `action=` unless
/// `with_action`).
fn write_request(
    s: &mut String,
    action: &sluice_protocol::Action,
    req: &PolicyRequest<'_>,
    with_action: bool,
) {
    if with_action {
        let _ = write!(s, "action={}, ", action.keyword());
    }
    let _ = write!(
        s,
        "host={}, helo={}, from={}, to={}",
        req.client_address,
        field_value(&req.helo_name),
        field_value(&req.sender),
        field_value(&req.recipient),
    );
}

/// The Policyd mail.log line for one verdict, as Policyd 2's modules write it
/// (`cbp/modules/Quotas.pm`, `AccessControl.pm`). `admitted`: the `mode=update` line of a
/// quota that admitted the request, else the verdict's line.
///
/// Sluice has names where Policyd has numeric IDs: `policy=` and `quota=` are names, and
/// `limit=` (the limit's ID in Policyd) is the limit's type. The counter is Sluice's
/// rolling-window level, in messages, recipients or bytes (Policyd: a decaying counter, sizes
/// in kB), written as Policyd writes it (`%.2f`, percentage `%.1f`). A monitor-mode verdict
/// has `mode=monitor, ` after `module=...`, which Policyd never writes.
pub fn format_policyd(req: &PolicyRequest<'_>, v: &ModuleVerdict, admitted: bool) -> String {
    let mut s = String::with_capacity(240);
    let _ = write!(s, "module={}, ", v.module);
    if admitted {
        s.push_str("mode=update, ");
    } else if v.monitor {
        s.push_str("mode=monitor, ");
    }
    write_request(&mut s, &v.action, req, !admitted);
    let Some(c) = v.counter.as_ref().filter(|_| v.module == "Quotas") else {
        s.push_str(", reason=verdict");
        return s;
    };
    // The key is `policy/quota/LimitType/track key`; names have their `/` escaped.
    let mut parts = c.key.splitn(4, '/');
    let (kind, track) = match (parts.nth(2), parts.next()) {
        (Some(kind), Some(track)) => (kind, track),
        _ => ("", c.key.as_str()),
    };
    let percent = if c.limit == 0 {
        100.0
    } else {
        c.used as f64 / c.limit as f64 * 100.0
    };
    let _ = write!(
        s,
        ", reason={}, policy={}, quota={}, limit={kind}, track={}, counter={kind}, quota={:.2}/{} ({percent:.1}%)",
        if admitted { "quota_update" } else { "quota_match" },
        field_value(&v.policy),
        field_value(&v.name),
        field_value(track),
        c.used as f64,
        c.limit,
    );
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

    fn quota(used: u64, action: Action) -> ModuleVerdict {
        ModuleVerdict {
            module: "Quotas",
            policy: Arc::from("Outbound"),
            name: Arc::from("per-sender"),
            action,
            monitor: false,
            counter: Some(CounterLevel {
                key: sluice_engine::engine::counter_key(
                    "Outbound",
                    "per-sender",
                    sluice_engine::compile::LimitKind::MessageCount,
                    "Sender:a@example.com",
                ),
                used,
                limit: 300,
            }),
        }
    }

    #[test]
    fn policyd_lines_are_policyds() {
        assert_eq!(
            format_policyd(&request(), &quota(301, Action::Defer(None)), false),
            "module=Quotas, action=defer, host=192.0.2.1, helo=mx.example.net, \
             from=a@example.com, to=b@example.org, reason=quota_match, policy=Outbound, \
             quota=per-sender, limit=MessageCount, track=Sender:a@example.com, \
             counter=MessageCount, quota=301.00/300 (100.3%)"
        );
        assert_eq!(
            format_policyd(&request(), &quota(12, Action::Dunno), true),
            "module=Quotas, mode=update, host=192.0.2.1, helo=mx.example.net, \
             from=a@example.com, to=b@example.org, reason=quota_update, policy=Outbound, \
             quota=per-sender, limit=MessageCount, track=Sender:a@example.com, \
             counter=MessageCount, quota=12.00/300 (4.0%)"
        );
        let rule = ModuleVerdict {
            module: "AccessControl",
            policy: Arc::from("Blocked"),
            name: Arc::from("deny"),
            action: Action::Reject(None),
            monitor: false,
            counter: None,
        };
        assert_eq!(
            format_policyd(&request(), &rule, false),
            "module=AccessControl, action=reject, host=192.0.2.1, helo=mx.example.net, \
             from=a@example.com, to=b@example.org, reason=verdict"
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
