//! Per-message caps: the largest message and the most recipients one message may have, per
//! policy (what Policyd users did through Amavis' `max_message_size`, and what iRedAPD
//! offers). The rules live here (settings, ranges, the per-field merge, texts, counter
//! keys); the chain's steps are in `modules/message_caps.rs`.
//!
//! - **Size**: refused at RCPT when the declared `size` (ESMTP `SIZE=`) is above the cap,
//!   with no state; refused at END-OF-MESSAGE when the real size is (a record made at RCPT
//!   names the cap, and END-OF-MESSAGE charges the size to a counter of its own for the
//!   message: the usual all-or-nothing rule then keeps the size quotas recorded after it
//!   from charging a refused message).
//! - **Recipients**: counted at RCPT in a counter of the message (keyed by Postfix's
//!   `instance`; in process or in Redis, like every counter), so the recipient after the cap
//!   is refused (`452 4.5.3`) and the ones before it go through; checked again at
//!   END-OF-MESSAGE against `recipient_count` (Postfix sends the count only at DATA and
//!   END-OF-MESSAGE).
//!
//! Settings merge over the matched policies as Policyd merges its per-policy module rows:
//! lowest priority number first, and every field a later policy sets overrides it (so a
//! default policy sets a cap and a more specific one raises or lowers it).

pub mod def;

use crate::compile::Policy;
use crate::window::WindowSpec;
use sluice_protocol::Action;

/// The module's name in verdicts, logs and metrics.
pub const MODULE: &str = "MessageCaps";

/// The largest recipient cap (Postfix's own `smtpd_recipient_limit` defaults to 1000).
pub const MAX_RECIPIENTS: u64 = 1_000_000;

/// How long a message's recipient counter counts (ms): far longer than the RCPT commands
/// of one SMTP transaction take. A transaction paced slower than this to slip recipients
/// past the cap is caught at END-OF-MESSAGE by `recipient_count`.
pub const RECIPIENT_WINDOW_MS: u64 = 3_600_000;

/// The window of the END-OF-MESSAGE record's counter (one per message, charged once).
pub const EOM_WINDOW: WindowSpec = WindowSpec {
    period_ms: 60_000,
    bucket_ms: 60_000,
};

/// A policy's caps, validated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// Largest message, in bytes.
    pub max_message_size: Option<u64>,
    /// Most recipients of one message.
    pub max_recipients: Option<u64>,
}

/// Validates a policy's caps: `Err` lists (field, message) for every value out of range.
pub fn compile_caps(d: &def::MessageCapsDef) -> Result<Caps, Vec<(&'static str, String)>> {
    let mut errs = Vec::new();
    if let Some(v) = d.max_message_size {
        if !(1..=crate::bounds::MAX_SIZE_LIMIT).contains(&v) {
            errs.push((
                "message_caps.max_message_size",
                format!(
                    "message_caps.max_message_size {v} is outside 1 byte ..= 100 TB ({} bytes)",
                    crate::bounds::MAX_SIZE_LIMIT
                ),
            ));
        }
    }
    if let Some(v) = d.max_recipients {
        if !(1..=MAX_RECIPIENTS).contains(&v) {
            errs.push((
                "message_caps.max_recipients",
                format!("message_caps.max_recipients {v} is outside 1..={MAX_RECIPIENTS}"),
            ));
        }
    }
    if errs.is_empty() {
        Ok(Caps {
            max_message_size: d.max_message_size,
            max_recipients: d.max_recipients,
        })
    } else {
        Err(errs)
    }
}

/// One merged cap: its value and the policy that set it (its index in the set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap {
    /// The value.
    pub value: u64,
    /// The policy whose setting won.
    pub policy: usize,
}

/// The caps that apply to a request: each field from the last matched policy (highest
/// priority number) that sets it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Merged {
    /// The size cap.
    pub size: Option<Cap>,
    /// The recipient cap.
    pub recipients: Option<Cap>,
}

impl Merged {
    /// Merges the caps of `matched` (in evaluation order, lowest priority number first).
    pub(crate) fn of(matched: &[(usize, &Policy)]) -> Merged {
        let mut m = Merged::default();
        for &(pi, p) in matched {
            let Some(c) = p.message_caps else { continue };
            if let Some(value) = c.max_message_size {
                m.size = Some(Cap { value, policy: pi });
            }
            if let Some(value) = c.max_recipients {
                m.recipients = Some(Cap { value, policy: pi });
            }
        }
        m
    }

    /// Whether no cap applies.
    pub fn is_empty(&self) -> bool {
        self.size.is_none() && self.recipients.is_none()
    }
}

/// The answer to a message above its size cap (at RCPT from the declared size, at
/// END-OF-MESSAGE from the real one): `552 5.3.4`, what RFC 1870 gives for a message that
/// exceeds a fixed size limit and what Postfix's own `message_size_limit` answers.
pub fn size_action(cap: u64) -> Action {
    Action::Code {
        code: 552,
        text: format!("5.3.4 Message size exceeds fixed limit of {cap} bytes"),
    }
}

/// The answer to the recipient after the cap, at RCPT: `452 4.5.3`, as RFC 5321
/// §4.5.3.1.10 requires of a server limiting RCPT commands and as Postfix's own
/// `smtpd_recipient_limit` answers. The client delivers the message to the recipients
/// already accepted and sends the rest in a later transaction: nothing is lost.
pub fn recipients_rcpt_action(cap: u64) -> Action {
    Action::Code {
        code: 452,
        text: format!("4.5.3 Too many recipients (at most {cap} per message)"),
    }
}

/// The answer at END-OF-MESSAGE when `recipient_count` is above the cap: `554 5.5.3`, for
/// the whole message. Permanent: a temporary answer would have the client send the same
/// message with the same recipients again until it expires.
pub fn recipients_eom_action(cap: u64) -> Action {
    Action::Code {
        code: 554,
        text: format!("5.5.3 Too many recipients (at most {cap} per message)"),
    }
}

/// The counter of a message's recipients under `policy`'s cap.
pub fn recipients_key(policy: &str, instance: &str) -> String {
    format!("{}/message-caps/Recipients/{instance}", escape(policy))
}

/// The counter END-OF-MESSAGE charges the real size to, for `policy`'s caps.
pub fn eom_key(policy: &str, instance: &str) -> String {
    format!("{}/message-caps/EndOfMessage/{instance}", escape(policy))
}

/// Marks an END-OF-MESSAGE label as the caps' (quota labels never start with it).
const LABEL_MARK: char = '\u{1e}';

/// What an END-OF-MESSAGE record checks: the size cap, the recipient cap, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EomChecks {
    /// The record's limit is the size cap.
    pub size: bool,
    /// `recipient_count` is checked against the policy's recipient cap.
    pub recipients: bool,
}

/// The label of an END-OF-MESSAGE record of `policy`'s caps.
pub fn eom_label(policy: &str, checks: EomChecks) -> String {
    let flags = match (checks.size, checks.recipients) {
        (true, true) => "sr",
        (true, false) => "s",
        (false, true) => "r",
        (false, false) => "-",
    };
    format!("{LABEL_MARK}{flags}\u{1f}{policy}")
}

/// The policy name and checks of a caps label (`None`: not the caps').
pub fn parse_eom_label(label: &str) -> Option<(&str, EomChecks)> {
    let rest = label.strip_prefix(LABEL_MARK)?;
    let (flags, policy) = rest.split_once('\u{1f}')?;
    Some((
        policy,
        EomChecks {
            size: flags.contains('s'),
            recipients: flags.contains('r'),
        },
    ))
}

/// A policy name as a key part (`/` and `%` escaped, as quota counter keys do).
fn escape(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['/', '%']) {
        s.replace('%', "%25").replace('/', "%2F").into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_checked() {
        let ok = def::MessageCapsDef {
            max_message_size: Some(10_000_000),
            max_recipients: Some(50),
            ..Default::default()
        };
        assert!(compile_caps(&ok).is_ok());
        for (size, rcpt, n) in [
            (Some(0), None, 1),
            (None, Some(0), 1),
            (Some(u64::MAX), Some(MAX_RECIPIENTS + 1), 2),
            (Some(crate::bounds::MAX_SIZE_LIMIT), Some(MAX_RECIPIENTS), 0),
        ] {
            let d = def::MessageCapsDef {
                max_message_size: size,
                max_recipients: rcpt,
                ..Default::default()
            };
            let got = compile_caps(&d).err().map_or(0, |e| e.len());
            assert_eq!(got, n, "{d:?}");
        }
    }

    #[test]
    fn labels_round_trip_and_never_look_like_quota_labels() {
        for (size, recipients) in [(true, true), (true, false), (false, true)] {
            let checks = EomChecks { size, recipients };
            let label = eom_label("pol\u{1f}icy", checks);
            assert_eq!(parse_eom_label(&label), Some(("pol\u{1f}icy", checks)));
        }
        assert_eq!(parse_eom_label("policy\u{1f}quota"), None);
    }

    #[test]
    fn texts_carry_the_codes_operators_expect() {
        assert_eq!(
            size_action(1000).to_string(),
            "552 5.3.4 Message size exceeds fixed limit of 1000 bytes"
        );
        assert_eq!(
            recipients_rcpt_action(5).to_string(),
            "452 4.5.3 Too many recipients (at most 5 per message)"
        );
        assert_eq!(
            recipients_eom_action(5).to_string(),
            "554 5.5.3 Too many recipients (at most 5 per message)"
        );
        assert_eq!(
            recipients_key("a/b", "1.2"),
            "a%2Fb/message-caps/Recipients/1.2"
        );
    }
}
