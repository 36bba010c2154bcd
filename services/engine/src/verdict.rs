//! Module verdicts (as operators write them) and their mapping to Postfix actions, as
//! Policyd does it: `REJECT` with data `5NN text` and `DEFER` with `4NN text` set the code.

use sluice_protocol::Action;
use std::fmt;

/// A verdict an access control rule or a quota may give.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// Accept (stops the chain; later modules are skipped).
    Ok,
    /// DUNNO, and the chain goes on.
    Pass,
    /// Reject.
    Reject,
    /// Temporary failure.
    Defer,
    /// Put the message on hold.
    Hold,
    /// Quotas only: hold the message and release it when the quota has room
    /// ([`crate::hold`]).
    Delay,
    /// Accept and silently drop.
    Discard,
    /// Route through `transport:nexthop` (data).
    Filter,
    /// Deliver to another address (data).
    Redirect,
}

impl Verdict {
    /// Parses a verdict, case-insensitively.
    pub fn parse(s: &str) -> Option<Verdict> {
        Some(match s.trim().to_ascii_uppercase().as_str() {
            "OK" => Verdict::Ok,
            "PASS" | "DUNNO" => Verdict::Pass,
            "REJECT" => Verdict::Reject,
            "DEFER" => Verdict::Defer,
            "HOLD" => Verdict::Hold,
            "DELAY" => Verdict::Delay,
            "DISCARD" => Verdict::Discard,
            "FILTER" => Verdict::Filter,
            "REDIRECT" => Verdict::Redirect,
            _ => return None,
        })
    }

    /// Whether the verdict needs data (FILTER's transport, REDIRECT's address).
    pub fn needs_data(self) -> bool {
        matches!(self, Verdict::Filter | Verdict::Redirect)
    }

    /// The Postfix action for this verdict with `data` (or `default_text` when data is empty).
    pub fn to_action(self, data: Option<&str>, default_text: Option<&str>) -> Action {
        let text = data
            .filter(|d| !d.trim().is_empty())
            .or(default_text)
            .map(str::to_string);
        match self {
            Verdict::Ok => Action::Ok(text),
            Verdict::Pass => Action::Dunno,
            Verdict::Reject => coded(text, b'5').unwrap_or_else(Action::Reject),
            Verdict::Defer => coded(text, b'4').unwrap_or_else(Action::Defer),
            Verdict::Hold | Verdict::Delay => Action::Hold(text),
            Verdict::Discard => Action::Discard(text),
            Verdict::Filter => Action::Filter(text.unwrap_or_default()),
            Verdict::Redirect => Action::Redirect(text.unwrap_or_default()),
        }
    }
}

/// `5NN text` (or `4NN text`) → an explicit code; otherwise gives the text back.
fn coded(text: Option<String>, class: u8) -> Result<Action, Option<String>> {
    match text {
        Some(t) => {
            let b = t.as_bytes();
            if b.len() >= 4
                && b[0] == class
                && b[1].is_ascii_digit()
                && b[2].is_ascii_digit()
                && b[3] == b' '
            {
                let code = t[..3]
                    .parse()
                    .unwrap_or(if class == b'5' { 554 } else { 450 });
                Ok(Action::Code {
                    code,
                    text: t[4..].trim_start().to_string(),
                })
            } else {
                Err(Some(t))
            }
        }
        None => Err(None),
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "OK",
            Verdict::Pass => "PASS",
            Verdict::Reject => "REJECT",
            Verdict::Defer => "DEFER",
            Verdict::Hold => "HOLD",
            Verdict::Delay => "DELAY",
            Verdict::Discard => "DISCARD",
            Verdict::Filter => "FILTER",
            Verdict::Redirect => "REDIRECT",
        })
    }
}

/// Appends "try again in N minutes" (or seconds/hours) to a DEFER action's text.
pub fn with_retry_hint(action: Action, retry_after_ms: Option<u64>) -> Action {
    let Some(ms) = retry_after_ms else {
        return action;
    };
    let hint = retry_hint(ms);
    match action {
        Action::Defer(t) => Action::Defer(Some(append(t, &hint))),
        Action::Code { code, text } if code < 500 => Action::Code {
            code,
            text: append(Some(text), &hint),
        },
        other => other,
    }
}

fn append(text: Option<String>, hint: &str) -> String {
    match text {
        Some(t) if !t.is_empty() => format!("{t}; {hint}"),
        _ => hint.to_string(),
    }
}

/// "try again in 7 minutes" for a wait of `ms` milliseconds (rounded up).
pub fn retry_hint(ms: u64) -> String {
    let secs = ms.div_ceil(1000).max(1);
    if secs < 60 {
        format!("try again in {secs} second{}", plural(secs))
    } else if secs < 2 * 3600 {
        let m = secs.div_ceil(60);
        format!("try again in {m} minute{}", plural(m))
    } else {
        let h = secs.div_ceil(3600);
        format!("try again in {h} hours")
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_policyd() {
        assert_eq!(
            Verdict::Reject
                .to_action(Some("550 5.7.1 no"), None)
                .to_string(),
            "550 5.7.1 no"
        );
        assert_eq!(
            Verdict::Reject
                .to_action(Some("450 later"), None)
                .to_string(),
            "REJECT 450 later"
        );
        assert_eq!(
            Verdict::Defer.to_action(None, Some("full")).to_string(),
            "DEFER full"
        );
        assert_eq!(
            Verdict::Reject.to_action(Some(""), None).to_string(),
            "REJECT"
        );
        assert_eq!(Verdict::Pass.to_action(Some("x"), None), Action::Dunno);
    }

    #[test]
    fn retry_hints() {
        assert_eq!(retry_hint(6 * 60_000 + 1), "try again in 7 minutes");
        assert_eq!(retry_hint(1), "try again in 1 second");
        assert_eq!(
            with_retry_hint(
                Action::Code {
                    code: 451,
                    text: "4.7.1 slow down".into()
                },
                Some(60_000)
            )
            .to_string(),
            "451 4.7.1 slow down; try again in 1 minute"
        );
    }
}
