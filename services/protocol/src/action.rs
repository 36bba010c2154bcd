//! The reply: one `action=...` attribute followed by a blank line.

use std::fmt;
use std::str::FromStr;

/// What Postfix is told to do with the request (see access(5)).
///
/// Texts are optional where Postfix allows them; [`Action::Code`] carries an explicit SMTP
/// reply code (`4NN text` / `5NN text`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `DUNNO`: no opinion, Postfix goes on with the next restriction.
    Dunno,
    /// `OK [text]`: accept (short-circuits the restriction list).
    Ok(Option<String>),
    /// `REJECT [text]`.
    Reject(Option<String>),
    /// `DEFER [text]`.
    Defer(Option<String>),
    /// `DEFER_IF_PERMIT [text]`.
    DeferIfPermit(Option<String>),
    /// `DEFER_IF_REJECT [text]`.
    DeferIfReject(Option<String>),
    /// `HOLD [text]`.
    Hold(Option<String>),
    /// `DISCARD [text]`.
    Discard(Option<String>),
    /// `FILTER transport:destination`.
    Filter(String),
    /// `REDIRECT user@domain`.
    Redirect(String),
    /// `PREPEND header: value`.
    Prepend(String),
    /// `WARN [text]` (logged by Postfix only).
    Warn(Option<String>),
    /// `4NN text` or `5NN text`: an explicit SMTP reply code.
    Code {
        /// The three-digit SMTP code (400-599).
        code: u16,
        /// The text after the code (may start with an enhanced status code).
        text: String,
    },
}

impl Action {
    /// Writes the full reply (`action=...\n\n`) to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        // The same text as `Display`, without the formatting machinery (once per request):
        // the whole reply of the keyword alone, written in one go when there is no text.
        let (reply, text): (&[u8], Option<&str>) = match self {
            Action::Dunno => (b"action=DUNNO\n\n", None),
            Action::Ok(t) => (b"action=OK\n\n", non_empty(t)),
            Action::Reject(t) => (b"action=REJECT\n\n", non_empty(t)),
            Action::Defer(t) => (b"action=DEFER\n\n", non_empty(t)),
            Action::DeferIfPermit(t) => (b"action=DEFER_IF_PERMIT\n\n", non_empty(t)),
            Action::DeferIfReject(t) => (b"action=DEFER_IF_REJECT\n\n", non_empty(t)),
            Action::Hold(t) => (b"action=HOLD\n\n", non_empty(t)),
            Action::Discard(t) => (b"action=DISCARD\n\n", non_empty(t)),
            Action::Filter(t) => (b"action=FILTER\n\n", Some(t.as_str())),
            Action::Redirect(t) => (b"action=REDIRECT\n\n", Some(t.as_str())),
            Action::Prepend(t) => (b"action=PREPEND\n\n", Some(t.as_str())),
            Action::Warn(t) => (b"action=WARN\n\n", non_empty(t)),
            Action::Code { .. } => {
                use std::io::Write;
                let _ = write!(out, "action={self}");
                out.extend_from_slice(b"\n\n");
                return;
            }
        };
        let Some(text) = text else {
            out.extend_from_slice(reply);
            return;
        };
        out.extend_from_slice(&reply[..reply.len() - 2]);
        out.push(b' ');
        out.extend(text.bytes().map(|b| match b {
            b'\n' | b'\r' | 0 => b' ',
            b => b,
        }));
        out.extend_from_slice(b"\n\n");
    }

    /// The full reply as bytes (`action=...\n\n`).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode_into(&mut out);
        out
    }

    /// Whether this action ends the module chain (everything but DUNNO and PREPEND).
    pub fn is_final(&self) -> bool {
        !matches!(self, Action::Dunno | Action::Prepend(_) | Action::Warn(_))
    }

    /// The keyword, lower-case, for logs and metric labels (`reject`, `defer`, `dunno`, `450`...).
    pub fn keyword(&self) -> &'static str {
        match self {
            Action::Dunno => "dunno",
            Action::Ok(_) => "ok",
            Action::Reject(_) => "reject",
            Action::Defer(_) => "defer",
            Action::DeferIfPermit(_) => "defer_if_permit",
            Action::DeferIfReject(_) => "defer_if_reject",
            Action::Hold(_) => "hold",
            Action::Discard(_) => "discard",
            Action::Filter(_) => "filter",
            Action::Redirect(_) => "redirect",
            Action::Prepend(_) => "prepend",
            Action::Warn(_) => "warn",
            Action::Code { code, .. } if *code >= 500 => "reject",
            Action::Code { .. } => "defer",
        }
    }
}

/// An action's optional text, when there is some (an empty text is no text).
fn non_empty(text: &Option<String>) -> Option<&str> {
    text.as_deref().filter(|t| !t.is_empty())
}

fn write_opt(f: &mut fmt::Formatter<'_>, word: &str, text: &Option<String>) -> fmt::Result {
    match text {
        Some(t) if !t.is_empty() => write!(f, "{word} {}", sanitize(t)),
        _ => f.write_str(word),
    }
}

/// Replies must be a single line: newlines and NULs in operator texts become spaces.
fn sanitize(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['\n', '\r', '\0']) {
        text.replace(['\n', '\r', '\0'], " ").into()
    } else {
        text.into()
    }
}

impl fmt::Display for Action {
    /// The value of the `action` attribute (without `action=` and without the blank line).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Dunno => f.write_str("DUNNO"),
            Action::Ok(t) => write_opt(f, "OK", t),
            Action::Reject(t) => write_opt(f, "REJECT", t),
            Action::Defer(t) => write_opt(f, "DEFER", t),
            Action::DeferIfPermit(t) => write_opt(f, "DEFER_IF_PERMIT", t),
            Action::DeferIfReject(t) => write_opt(f, "DEFER_IF_REJECT", t),
            Action::Hold(t) => write_opt(f, "HOLD", t),
            Action::Discard(t) => write_opt(f, "DISCARD", t),
            Action::Filter(t) => write!(f, "FILTER {}", sanitize(t)),
            Action::Redirect(t) => write!(f, "REDIRECT {}", sanitize(t)),
            Action::Prepend(t) => write!(f, "PREPEND {}", sanitize(t)),
            Action::Warn(t) => write_opt(f, "WARN", t),
            Action::Code { code, text } if text.is_empty() => write!(f, "{code}"),
            Action::Code { code, text } => write!(f, "{code} {}", sanitize(text)),
        }
    }
}

/// Why a string is not an action (in configuration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid action {0:?}: expected DUNNO, OK, REJECT, DEFER, DEFER_IF_PERMIT, DEFER_IF_REJECT, HOLD, DISCARD, FILTER, REDIRECT, PREPEND, WARN [text] or a 4NN/5NN code with text")]
pub struct ParseActionError(pub String);

impl FromStr for Action {
    type Err = ParseActionError;

    /// Parses an action as written in configuration (`DEFER_IF_PERMIT Service unavailable`,
    /// `451 4.3.0 Try later`, `DUNNO`). Keywords are case-insensitive.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let (word, rest) = match s.split_once(char::is_whitespace) {
            Some((w, r)) => (w, r.trim()),
            None => (s, ""),
        };
        let text = (!rest.is_empty()).then(|| rest.to_string());
        let needs = |t: Option<String>| t.ok_or_else(|| ParseActionError(s.to_string()));
        Ok(match word.to_ascii_uppercase().as_str() {
            "DUNNO" if rest.is_empty() => Action::Dunno,
            "OK" => Action::Ok(text),
            "REJECT" => Action::Reject(text),
            "DEFER" => Action::Defer(text),
            "DEFER_IF_PERMIT" => Action::DeferIfPermit(text),
            "DEFER_IF_REJECT" => Action::DeferIfReject(text),
            "HOLD" => Action::Hold(text),
            "DISCARD" => Action::Discard(text),
            "FILTER" => Action::Filter(needs(text)?),
            "REDIRECT" => Action::Redirect(needs(text)?),
            "PREPEND" => Action::Prepend(needs(text)?),
            "WARN" => Action::Warn(text),
            w if w.len() == 3
                && (w.starts_with('4') || w.starts_with('5'))
                && w.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Action::Code {
                    code: w.parse().map_err(|_| ParseActionError(s.to_string()))?,
                    text: rest.to_string(),
                }
            }
            _ => return Err(ParseActionError(s.to_string())),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_writes_what_display_shows() {
        let texts = [None, Some(""), Some("4.7.1 slow down"), Some("a\nb\r\0c")];
        let mut actions = vec![Action::Dunno];
        for t in texts {
            let t = t.map(String::from);
            actions.extend([
                Action::Ok(t.clone()),
                Action::Reject(t.clone()),
                Action::Defer(t.clone()),
                Action::DeferIfPermit(t.clone()),
                Action::DeferIfReject(t.clone()),
                Action::Hold(t.clone()),
                Action::Discard(t.clone()),
                Action::Warn(t.clone()),
            ]);
            let t = t.unwrap_or_default();
            actions.extend([
                Action::Filter(t.clone()),
                Action::Redirect(t.clone()),
                Action::Prepend(t.clone()),
                Action::Code {
                    code: 450,
                    text: t.clone(),
                },
            ]);
        }
        for a in actions {
            assert_eq!(
                String::from_utf8(a.encode()).unwrap(),
                format!("action={a}\n\n"),
                "{a:?}"
            );
        }
    }

    #[test]
    fn encodes_plain_and_texted_actions() {
        assert_eq!(Action::Dunno.encode(), b"action=DUNNO\n\n");
        assert_eq!(Action::Reject(None).encode(), b"action=REJECT\n\n");
        assert_eq!(
            Action::Reject(Some("too many".into())).encode(),
            b"action=REJECT too many\n\n"
        );
        assert_eq!(
            Action::Code {
                code: 451,
                text: "4.7.1 later".into()
            }
            .encode(),
            b"action=451 4.7.1 later\n\n"
        );
        assert_eq!(
            Action::Defer(Some("a\nb".into())).encode(),
            b"action=DEFER a b\n\n"
        );
    }

    #[test]
    fn parses_configured_actions() {
        for text in [
            "DUNNO",
            "DEFER_IF_PERMIT Service unavailable",
            "451 4.3.0 Try later",
            "REJECT",
            "FILTER smtp:[::1]:25",
        ] {
            assert_eq!(text.parse::<Action>().unwrap().to_string(), text);
        }
        assert_eq!(
            "defer later".parse::<Action>().unwrap(),
            Action::Defer(Some("later".into()))
        );
        assert!("BOUNCE".parse::<Action>().is_err());
        assert!("FILTER".parse::<Action>().is_err());
    }

    #[test]
    fn finality_follows_policyd() {
        assert!(!Action::Dunno.is_final());
        assert!(!Action::Prepend("X-A: b".into()).is_final());
        assert!(Action::Ok(None).is_final());
        assert!(Action::Hold(None).is_final());
    }
}
