//! Quota tracks: what one counter counts (`SenderIP:/24`, `Sender:user@domain`, ...), and the
//! key a request gives it. Keys are rendered as Policyd renders them.

use crate::view::{Address, RequestView};
use ipnet::{Ipv4Net, Ipv6Net};
use sluice_protocol::PolicyRequest;
use std::fmt::Write;
use std::net::IpAddr;

/// Which part of an address a track keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    /// `user@domain`: the whole address.
    Full,
    /// `user@`: the local part (any domain).
    User,
    /// `@domain`: the domain (any user).
    Domain,
}

/// What a quota counts per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The client address masked: `SenderIP:/N` (IPv4 /N, IPv6 /64), `SenderIP:/N/M`
    /// (IPv4 /N, IPv6 /M), or `SenderIP:/M` with M > 32 (IPv6 /M, IPv4 /32).
    SenderIp {
        /// IPv4 mask.
        v4: u8,
        /// IPv6 mask.
        v6: u8,
    },
    /// The sender address.
    Sender(AddressPart),
    /// The recipient address.
    Recipient(AddressPart),
    /// The SASL username. Applies to authenticated mail only: a request without a SASL
    /// username is not counted by such a quota (see [`Track::applies_to`]).
    SaslUsername,
    /// One counter for everything the policy matches.
    Policy,
}

impl Track {
    /// Parses a track as written in Policyd (`SenderIP:/24`, `Sender:user@domain`, ...).
    pub fn parse(s: &str) -> Result<Track, String> {
        let t = s.trim();
        let (method, spec) = match t.split_once(':') {
            Some((m, s)) => (m.trim(), Some(s.trim())),
            None => (t, None),
        };
        let method_l = method.to_ascii_lowercase();
        match (method_l.as_str(), spec) {
            ("policy", None) => Ok(Track::Policy),
            ("saslusername", _) => Ok(Track::SaslUsername),
            ("senderip", Some(spec)) => parse_masks(spec).ok_or_else(|| {
                format!("bad SenderIP track {t:?}: expected SenderIP:/N (0-32, or 33-128 for IPv6) or SenderIP:/N/M")
            }),
            ("senderip", None) => Err(format!("track {t:?} needs a mask, e.g. SenderIP:/32")),
            ("sender", Some(spec)) => address_part(spec).map(Track::Sender).ok_or_else(|| {
                format!("bad track {t:?}: expected Sender:user@domain, Sender:@domain or Sender:user@")
            }),
            ("recipient", Some(spec)) => address_part(spec).map(Track::Recipient).ok_or_else(|| {
                format!("bad track {t:?}: expected Recipient:user@domain, Recipient:@domain or Recipient:user@")
            }),
            _ => Err(format!(
                "unknown track {t:?}: expected SenderIP:/N, Sender:user@domain|@domain|user@, Recipient:..., SASLUsername or Policy"
            )),
        }
    }

    /// Whether a quota with this track counts `req` at all: a `SASLUsername` track counts
    /// authenticated mail only (Policyd gave all unauthenticated mail one shared counter,
    /// `SASLUsername:-`, so one user's outbound limit throttled all inbound mail together).
    /// Every other track applies to every request. The one place this is decided: the
    /// engine skips the quota, and explanations say so, from this answer.
    pub fn applies_to(&self, req: &PolicyRequest<'_>) -> bool {
        match self {
            Track::SaslUsername => !req.sasl_username.is_empty(),
            _ => true,
        }
    }

    /// Why [`Track::applies_to`] is false for `req`, for explanations (`None` when it
    /// applies).
    pub fn skip_reason(&self, req: &PolicyRequest<'_>) -> Option<&'static str> {
        (!self.applies_to(req))
            .then_some("the mail is not authenticated (no sasl_username): SASLUsername quotas count authenticated mail only")
    }

    /// Whether keys depend on the recipient (charged per recipient at END-OF-MESSAGE).
    pub fn per_recipient(&self) -> bool {
        matches!(self, Track::Recipient(_))
    }

    /// The key of `req` for this track (Policyd's rendering).
    pub fn key(&self, req: &PolicyRequest<'_>) -> String {
        let mut k = String::with_capacity(48);
        self.write_key(req, &mut k);
        k
    }

    /// Appends the key of `req` for this track to `k` (no allocation when `k` has room).
    pub fn write_key(&self, req: &PolicyRequest<'_>, k: &mut String) {
        k.push_str(self.label());
        self.write_value(&RequestView::new(req), k);
    }

    /// What every key of this track starts with (`Sender:`, ...; all of it for `Policy`).
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Track::Policy => "Policy",
            Track::SaslUsername => "SASLUsername:",
            Track::Sender(_) => "Sender:",
            Track::Recipient(_) => "Recipient:",
            Track::SenderIp { .. } => "SenderIP:",
        }
    }

    /// Appends the key of a request for this track after its [`Track::label`] (so that a
    /// counter key's constant head can be copied in one piece).
    pub(crate) fn write_value(&self, view: &RequestView<'_, '_>, k: &mut String) {
        let req = view.req;
        match self {
            Track::Policy => {}
            // Only rendered for requests it applies to ([`Track::applies_to`]); `-` keeps
            // the key well-formed if it ever is rendered for another.
            Track::SaslUsername => {
                k.push_str(if req.sasl_username.is_empty() {
                    "-"
                } else {
                    &req.sasl_username
                });
            }
            Track::Sender(part) => {
                if req.sender.is_empty() {
                    k.push_str("<>");
                } else {
                    push_part(k, &view.source.sender, *part);
                }
            }
            Track::Recipient(part) => push_part(k, &view.recipient, *part),
            Track::SenderIp { v4, v6 } => match req.client_address {
                IpAddr::V4(a) => {
                    let net = Ipv4Net::new(a, *v4).map(|n| n.network()).unwrap_or(a);
                    for (i, octet) in net.octets().into_iter().enumerate() {
                        if i > 0 {
                            k.push('.');
                        }
                        push_decimal(k, octet);
                    }
                    k.push('/');
                    push_decimal(k, *v4);
                }
                IpAddr::V6(a) => {
                    let net = Ipv6Net::new(a, *v6).map(|n| n.network()).unwrap_or(a);
                    for (i, seg) in net.segments().iter().enumerate() {
                        if i > 0 {
                            k.push(':');
                        }
                        let _ = write!(k, "{seg:04x}");
                    }
                    k.push('/');
                    push_decimal(k, *v6);
                }
            },
        }
    }
}

/// Appends `n` in decimal (what `Display` gives, without the formatting machinery).
fn push_decimal(k: &mut String, n: u8) {
    if n >= 100 {
        k.push(char::from(b'0' + n / 100));
    }
    if n >= 10 {
        k.push(char::from(b'0' + n / 10 % 10));
    }
    k.push(char::from(b'0' + n % 10));
}

/// Appends a part of `addr`: `user@domain`, `user@` or `@domain`, split at the last `@` (no
/// `@`: all local part). With an `@`, each part is one slice of the address.
fn push_part(k: &mut String, addr: &Address<'_>, part: AddressPart) {
    match (addr.at, part) {
        (Some(_), AddressPart::Full) => k.push_str(addr.text),
        (Some(at), AddressPart::User) => k.push_str(&addr.text[..=at]),
        (Some(at), AddressPart::Domain) => k.push_str(&addr.text[at..]),
        (None, AddressPart::Full | AddressPart::User) => {
            k.push_str(addr.text);
            k.push('@');
        }
        (None, AddressPart::Domain) => k.push('@'),
    }
}

fn address_part(spec: &str) -> Option<AddressPart> {
    match spec.to_ascii_lowercase().as_str() {
        "user@domain" => Some(AddressPart::Full),
        "user@" => Some(AddressPart::User),
        "@domain" => Some(AddressPart::Domain),
        _ => None,
    }
}

fn parse_masks(spec: &str) -> Option<Track> {
    let rest = spec.strip_prefix('/')?;
    let (a, b) = match rest.split_once('/') {
        Some((a, b)) => (a.parse::<u8>().ok()?, Some(b.parse::<u8>().ok()?)),
        None => (rest.parse::<u8>().ok()?, None),
    };
    match b {
        Some(v6) if a <= 32 && v6 <= 128 => Some(Track::SenderIp { v4: a, v6 }),
        Some(_) => None,
        None if a <= 32 => Some(Track::SenderIp { v4: a, v6: 64 }),
        None if a <= 128 => Some(Track::SenderIp { v4: 32, v6: a }),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocol::ProtocolState;

    #[test]
    fn fast_renderings_equal_the_plain_ones() {
        for (addr, user, domain) in crate::view::tests::SAMPLE_ADDRESSES {
            for (part, want) in [
                (AddressPart::Full, format!("{user}@{domain}")),
                (AddressPart::User, format!("{user}@")),
                (AddressPart::Domain, format!("@{domain}")),
            ] {
                let mut k = String::new();
                push_part(&mut k, &Address::new(addr), part);
                assert_eq!(k, want, "{addr:?} {part:?}");
            }
        }
        let mut r = PolicyRequest::new(ProtocolState::Rcpt, "0.0.0.0".parse().unwrap());
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.9.99.100",
            "192.168.1.77",
            "1.20.3.40",
        ] {
            let a: std::net::Ipv4Addr = ip.parse().unwrap();
            r.client_address = IpAddr::V4(a);
            for v4 in [0, 1, 8, 9, 16, 24, 31, 32] {
                let net = Ipv4Net::new(a, v4).unwrap().network();
                let want = format!("SenderIP:{net}/{v4}");
                assert_eq!(Track::SenderIp { v4, v6: 64 }.key(&r), want);
            }
        }
    }

    #[test]
    fn keys_render_like_policyd() {
        let mut r = PolicyRequest::new(ProtocolState::Rcpt, "192.168.1.77".parse().unwrap());
        r.sender = "alice@example.com".into();
        r.recipient = "bob@example.net".into();
        let key = |r: &PolicyRequest<'_>, t: &str| Track::parse(t).unwrap().key(r);
        assert_eq!(key(&r, "SenderIP:/24"), "SenderIP:192.168.1.0/24");
        assert_eq!(key(&r, "SenderIP:/32"), "SenderIP:192.168.1.77/32");
        assert_eq!(key(&r, "SenderIP:/0"), "SenderIP:0.0.0.0/0");
        r.client_address = "10.0.9.250".parse().unwrap();
        assert_eq!(key(&r, "SenderIP:/31"), "SenderIP:10.0.9.250/31");
        r.client_address = "192.168.1.77".parse().unwrap();
        assert_eq!(key(&r, "Sender:user@domain"), "Sender:alice@example.com");
        assert_eq!(key(&r, "sender:@domain"), "Sender:@example.com");
        assert_eq!(key(&r, "Sender:user@"), "Sender:alice@");
        assert_eq!(key(&r, "Recipient:@domain"), "Recipient:@example.net");
        assert_eq!(key(&r, "SASLUsername"), "SASLUsername:-");
        let sasl = Track::parse("SASLUsername").unwrap();
        assert!(!sasl.applies_to(&r), "unauthenticated mail is not counted");
        assert!(sasl.skip_reason(&r).unwrap().contains("not authenticated"));
        assert!(Track::parse("Sender:user@domain").unwrap().applies_to(&r));
        r.sasl_username = "alice".into();
        assert!(sasl.applies_to(&r));
        assert_eq!(sasl.skip_reason(&r), None);
        assert_eq!(key(&r, "SASLUsername"), "SASLUsername:alice");
        r.sasl_username = "".into();
        assert_eq!(key(&r, "Policy"), "Policy");
        r.client_address = "2001:db8:1:2:3::9".parse().unwrap();
        assert_eq!(
            key(&r, "SenderIP:/24/48"),
            "SenderIP:2001:0db8:0001:0000:0000:0000:0000:0000/48"
        );
        assert_eq!(
            key(&r, "SenderIP:/64"),
            "SenderIP:2001:0db8:0001:0002:0000:0000:0000:0000/64"
        );
        r.sender = "".into();
        assert_eq!(key(&r, "Sender:user@domain"), "Sender:<>");
        assert!(Track::parse("SenderIP").is_err());
        assert!(Track::parse("Sender").is_err());
        assert!(Track::parse("Sendr:user@domain").is_err());
    }
}
