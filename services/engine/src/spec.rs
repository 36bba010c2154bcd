//! Member specs: what a policy member's source/destination items mean, and how they match.
//!
//! Grammar of one item (after an optional `!` negation): `any`; `%group`; IPv4 with
//! Policyd's short forms (`10` = 10.0.0.0/8, `10.1` = /16, `10.1.2` = /24, full = /32) or a
//! CIDR; IPv6 address or CIDR; `[ip/cidr]` for the Postfix host that asks (TCP peer);
//! `$sasl` (`$-` = not authenticated, `$*` = any authenticated user, `*` wildcards);
//! `@` (the null sender); `user@domain`, `@domain` (any user at exactly that domain),
//! `user@` (that user at any domain), with `*` wildcards; a reverse-DNS hostname pattern
//! (`mx.example.com` exact, `.example.com` any subdomain, `*` wildcards).
//! Listener specs tell apart the Postfix listeners that ask (so port 25, 465 and 587 get
//! different policies): `server_port=587` (the port the client connected to),
//! `server_address=192.0.2.1` or a CIDR (the address it connected to), and
//! `policy_context=submission` (what `check_policy_service { ..., policy_context=... }`
//! sends, Postfix 3.1+; compared case-insensitively). A request without the attribute
//! matches none of them (so `!server_port=25` matches it).
//! Destinations accept only address specs, groups and `any`.

use crate::view::{Address, RequestView, SourceSide};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use sluice_protocol::PolicyRequest;
use std::net::{IpAddr, Ipv4Addr};

/// Which side of a member a spec is matched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client: IP, hostname, SASL user, or the sender address.
    Source,
    /// The recipient address.
    Destination,
}

/// A `*` wildcard pattern (`*` = any run of non-space characters), matched case-insensitively
/// against lower-cased input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    /// Whether the pattern has a `*` (else matching is plain equality).
    wild: bool,
    /// For a pattern that is `*` followed by text without `*` (`*.example`, the usual
    /// domain wildcard): the length of that text, matched as a suffix without backtracking.
    star_suffix: Option<usize>,
}

impl Glob {
    /// A pattern; lower-cased.
    pub fn new(pattern: &str) -> Self {
        let pattern = pattern.to_lowercase();
        let star_suffix = pattern
            .strip_prefix('*')
            .filter(|rest| !rest.contains('*'))
            .map(str::len);
        Glob {
            wild: pattern.contains('*'),
            star_suffix,
            pattern,
        }
    }

    /// Whether `text` (already lower-case) matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        if !self.wild {
            return self.pattern == text;
        }
        let has_space = if text.is_ascii() {
            text.bytes().any(|b| b.is_ascii_whitespace())
        } else {
            text.contains(char::is_whitespace)
        };
        if has_space {
            return false;
        }
        if let Some(len) = self.star_suffix {
            // `*` takes whatever precedes the suffix (possibly nothing).
            let suffix = &self.pattern.as_bytes()[self.pattern.len() - len..];
            return text.as_bytes().ends_with(suffix);
        }
        glob_match(self.pattern.as_bytes(), text.as_bytes())
    }
}

/// Iterative wildcard matching with backtracking on the last `*` (linear in practice).
fn glob_match(p: &[u8], t: &[u8]) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&b| b == b'*')
}

/// What one item tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecKind {
    /// `any`.
    Any,
    /// Client address within a network.
    Ip(IpNet),
    /// The asking Postfix host (TCP peer) within a network.
    Peer(IpNet),
    /// `$-`: no SASL username.
    SaslNone,
    /// `$*`: any SASL username.
    SaslAny,
    /// `$pattern`: SASL username matching.
    Sasl(Glob),
    /// `@`: the null sender.
    NullSender,
    /// An address pattern; `None` parts match anything.
    Email {
        /// Local part (`None` for `@domain`).
        user: Option<Glob>,
        /// Domain (`None` for `user@`).
        domain: Option<Glob>,
    },
    /// A reverse-DNS hostname pattern.
    Hostname {
        /// Leading `.`: any name below the domain.
        suffix: bool,
        /// The pattern without the leading dot.
        pattern: Glob,
    },
    /// `%group`, by index into the compiled groups.
    Group(usize),
    /// `server_port=N`: the port the client connected to.
    ServerPort(u16),
    /// `server_address=ip[/cidr]`: the address the client connected to.
    ServerAddress(IpNet),
    /// `policy_context=text`: Postfix's `policy_context`, case-insensitively.
    PolicyContext(String),
}

/// One item of a spec list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecItem {
    /// Leading `!`.
    pub negate: bool,
    /// What it tests.
    pub kind: SpecKind,
    /// As written, for explanations.
    pub text: String,
}

/// Parses one item. Groups are resolved through `group_index`; an unknown group is an error.
pub fn parse_item(
    text: &str,
    side: Side,
    group_index: &dyn Fn(&str) -> Option<usize>,
) -> Result<SpecItem, String> {
    let raw = text.trim();
    let (negate, body) = match raw.strip_prefix('!') {
        Some(rest) => (true, rest.trim()),
        None => (false, raw),
    };
    if body.is_empty() {
        return Err(format!("empty item in {text:?}"));
    }
    let kind = parse_kind(body, side, group_index)?;
    Ok(SpecItem {
        negate,
        kind,
        text: raw.to_string(),
    })
}

fn parse_kind(
    body: &str,
    side: Side,
    group_index: &dyn Fn(&str) -> Option<usize>,
) -> Result<SpecKind, String> {
    if body.eq_ignore_ascii_case("any") {
        return Ok(SpecKind::Any);
    }
    if let Some(name) = body.strip_prefix('%') {
        return group_index(name)
            .map(SpecKind::Group)
            .ok_or_else(|| format!("unknown group %{name}"));
    }
    if let Some(kind) = parse_listener(body, side)? {
        return Ok(kind);
    }
    if let Some(sasl) = body.strip_prefix('$') {
        if side == Side::Destination {
            return Err(format!("{body:?}: SASL specs are source specs"));
        }
        return Ok(match sasl {
            "-" => SpecKind::SaslNone,
            "*" => SpecKind::SaslAny,
            "" => return Err("empty SASL spec `$`".into()),
            p => SpecKind::Sasl(Glob::new(p)),
        });
    }
    if body.contains('@') {
        if body == "@" {
            return match side {
                Side::Source => Ok(SpecKind::NullSender),
                Side::Destination => Err("`@` (null sender) is a source spec".into()),
            };
        }
        let (user, domain) = body.split_once('@').unwrap_or((body, ""));
        if domain.contains('@') || body.contains(char::is_whitespace) {
            return Err(format!("invalid address spec {body:?}"));
        }
        return Ok(SpecKind::Email {
            user: (!user.is_empty()).then(|| Glob::new(user)),
            domain: (!domain.is_empty()).then(|| Glob::new(domain)),
        });
    }
    if side == Side::Destination {
        return Err(format!(
            "{body:?} is not valid in a destination (only addresses, @domain, user@, %group, any)"
        ));
    }
    if let Some(inner) = body.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
        return parse_network(inner).map(SpecKind::Peer);
    }
    if looks_like_ip(body) {
        return parse_network(body).map(SpecKind::Ip);
    }
    if is_hostname_pattern(body) {
        let lower = body.to_lowercase();
        return Ok(match lower.strip_prefix('.') {
            Some(rest) => SpecKind::Hostname {
                suffix: true,
                pattern: Glob::new(rest),
            },
            None => SpecKind::Hostname {
                suffix: false,
                pattern: Glob::new(&lower),
            },
        });
    }
    Err(format!("{body:?} is not a valid specification"))
}

/// The names of the listener specs (`name=value`).
pub const LISTENER_SPECS: [&str; 3] = ["server_port", "server_address", "policy_context"];

/// A listener spec (`server_port=587`, `server_address=ip[/cidr]`, `policy_context=x`);
/// `None` when `body` is not one.
fn parse_listener(body: &str, side: Side) -> Result<Option<SpecKind>, String> {
    // Addresses (`a=b@example.com`, VERP and SRS local parts) and SASL names may hold `=`.
    if body.starts_with('$') || body.contains('@') {
        return Ok(None);
    }
    let Some((name, value)) = body.split_once('=') else {
        return Ok(None);
    };
    let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
    if !LISTENER_SPECS.contains(&name.as_str()) {
        return Err(format!(
            "{body:?} is not a valid specification (name=value specs are server_port=, server_address= and policy_context=)"
        ));
    }
    if side == Side::Destination {
        return Err(format!(
            "{body:?}: {name}= describes the listener, it is a source spec"
        ));
    }
    if value.is_empty() {
        return Err(format!("{body:?}: {name}= needs a value"));
    }
    Ok(Some(match name.as_str() {
        "server_port" => SpecKind::ServerPort(
            value
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{body:?}: server_port must be a port number (1-65535)"))?,
        ),
        "server_address" => SpecKind::ServerAddress(
            parse_network(value).map_err(|e| format!("{body:?}: server_address: {e}"))?,
        ),
        _ => {
            if value.contains(char::is_whitespace) {
                return Err(format!("{body:?}: policy_context has no spaces"));
            }
            SpecKind::PolicyContext(value.to_string())
        }
    }))
}

fn looks_like_ip(s: &str) -> bool {
    s.contains(':')
        || s.split('/').next().is_some_and(|a| {
            a.split('.')
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// `^\.?([a-z0-9\-_*]+\.)+[a-z0-9*]+$`, case-insensitive.
fn is_hostname_pattern(s: &str) -> bool {
    let s = s.strip_prefix('.').unwrap_or(s);
    let labels: Vec<&str> = s.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
        })
}

/// Parses an IPv4 (with Policyd's short forms) or IPv6 address or network.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    let (addr, mask) = match s.split_once('/') {
        Some((a, m)) => (
            a,
            Some(
                m.parse::<u8>()
                    .map_err(|_| format!("bad network mask in {s:?}"))?,
            ),
        ),
        None => (s, None),
    };
    if addr.contains(':') {
        let ip: std::net::Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("bad IPv6 address {addr:?}"))?;
        let net = Ipv6Net::new(ip, mask.unwrap_or(128))
            .map_err(|_| format!("bad IPv6 mask in {s:?} (0-128)"))?;
        return Ok(IpNet::V6(net.trunc()));
    }
    let parts: Vec<&str> = addr.split('.').collect();
    if parts.is_empty() || parts.len() > 4 {
        return Err(format!("bad IPv4 address {addr:?}"));
    }
    let mut octets = [0u8; 4];
    for (i, p) in parts.iter().enumerate() {
        octets[i] = p
            .parse::<u8>()
            .map_err(|_| format!("bad IPv4 address {addr:?} (octet {p:?})"))?;
    }
    let implied = (parts.len() * 8) as u8;
    let net = Ipv4Net::new(Ipv4Addr::from(octets), mask.unwrap_or(implied))
        .map_err(|_| format!("bad IPv4 mask in {s:?} (0-32)"))?;
    Ok(IpNet::V4(net.trunc()))
}

impl SpecKind {
    /// Whether this (non-group) kind matches `req` on `side`. Groups are resolved by the
    /// caller; here they never match.
    pub fn matches_leaf(&self, req: &PolicyRequest<'_>, side: Side) -> bool {
        self.matches_view(&RequestView::new(req), side)
    }

    /// [`SpecKind::matches_leaf`] on a request whose addresses are already split (inlined
    /// into the matching loop: a call per item costs more than most items' tests).
    #[inline]
    pub(crate) fn matches_view(&self, view: &RequestView<'_, '_>, side: Side) -> bool {
        match side {
            Side::Source => self.matches_source(&view.source),
            Side::Destination => match self {
                SpecKind::Any => true,
                SpecKind::Email { user, domain } => email_matches(user, domain, &view.recipient),
                // Every other kind describes the source side.
                _ => false,
            },
        }
    }

    /// Whether this (non-group) kind matches the source side `src`: all a source spec may
    /// read (so a connection can keep source results while the source side stays the same).
    #[inline]
    fn matches_source(&self, src: &SourceSide<'_>) -> bool {
        match self {
            SpecKind::Any => true,
            SpecKind::Group(_) => false,
            SpecKind::Email { user, domain } => email_matches(user, domain, &src.sender),
            SpecKind::Ip(net) => ip_in(net, src.client),
            SpecKind::Peer(net) => src.peer.is_some_and(|p| ip_in(net, p)),
            SpecKind::SaslNone => src.sasl.is_empty(),
            SpecKind::SaslAny => !src.sasl.is_empty(),
            SpecKind::Sasl(g) => !src.sasl.is_empty() && g.matches(src.sasl),
            SpecKind::NullSender => src.sender.text.is_empty(),
            SpecKind::ServerPort(port) => src.server_port == Some(*port),
            SpecKind::ServerAddress(net) => src.server_address.is_some_and(|a| ip_in(net, a)),
            SpecKind::PolicyContext(c) => {
                !src.policy_context.is_empty() && src.policy_context.eq_ignore_ascii_case(c)
            }
            SpecKind::Hostname { suffix, pattern } => {
                let name = src.reverse;
                if name.is_empty() || name == "unknown" {
                    return false;
                }
                if *suffix {
                    // Any name strictly below the domain: "x.<pattern>".
                    name.char_indices()
                        .filter(|(_, c)| *c == '.')
                        .any(|(i, _)| pattern.matches(&name[i + 1..]))
                } else {
                    pattern.matches(name)
                }
            }
        }
    }
}

/// Whether an address spec (`user@domain`, either part optional) matches `addr` (never an
/// empty address).
#[inline]
fn email_matches(user: &Option<Glob>, domain: &Option<Glob>, addr: &Address<'_>) -> bool {
    if addr.text.is_empty() {
        return false;
    }
    user.as_ref().is_none_or(|g| g.matches(addr.user()))
        && domain.as_ref().is_none_or(|g| g.matches(addr.domain()))
}

/// Whether `ip` is in `net` (its first prefix-length bits equal the network's): what
/// `IpNet::contains` answers, without deriving the network and broadcast addresses.
fn ip_in(net: &IpNet, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpNet::V4(n), IpAddr::V4(a)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(n.prefix_len()))
                .unwrap_or(0);
            (u32::from(a) ^ u32::from(n.addr())) & mask == 0
        }
        (IpNet::V6(n), IpAddr::V6(a)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(n.prefix_len()))
                .unwrap_or(0);
            (u128::from(a) ^ u128::from(n.addr())) & mask == 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_groups(_: &str) -> Option<usize> {
        None
    }

    fn item(s: &str) -> SpecItem {
        parse_item(s, Side::Source, &no_groups).unwrap()
    }

    fn req() -> PolicyRequest<'static> {
        let mut r = PolicyRequest::new(
            sluice_protocol::ProtocolState::Rcpt,
            "192.168.1.20".parse().unwrap(),
        );
        r.sender = "alice@example.com".into();
        r.recipient = "bob@example.net".into();
        r.reverse_client_name = "mx1.mail.example.org".into();
        r
    }

    #[test]
    fn leading_star_patterns_match_as_the_general_matcher_does() {
        let patterns = ["*", "*.example", "*a", "*aa", "*ab", "*.b.c", "**x", "*x*"];
        let texts = [
            "",
            "a",
            "aa",
            "aaa",
            "ba",
            "ab",
            "xab",
            "d1.example",
            ".example",
            "example",
            "x.b.c",
            "b.c",
            "x",
            "xx",
            "a b",
            "axa",
        ];
        for p in patterns {
            let g = Glob::new(p);
            for t in texts {
                let general = !t.contains(' ') && glob_match(p.as_bytes(), t.as_bytes());
                assert_eq!(g.matches(t), general, "{p:?} on {t:?}");
            }
        }
    }

    #[test]
    fn ip_in_agrees_with_contains() {
        let nets = [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "10.1.2.3/32",
            "10.1.2.0/31",
            "192.168.0.0/16",
            "128.0.0.0/1",
            "::/0",
            "2001:db8::/32",
            "2001:db8::1/128",
            "8000::/1",
            "2001:db8:1:2::/127",
        ];
        let ips = [
            "0.0.0.0",
            "10.0.0.1",
            "10.1.2.3",
            "10.1.2.1",
            "10.1.2.4",
            "11.0.0.0",
            "192.168.255.255",
            "200.1.1.1",
            "::",
            "2001:db8::1",
            "2001:db8:1:2::1",
            "2001:db9::",
            "ffff::1",
        ];
        for n in nets {
            let net: IpNet = n.parse().unwrap();
            for ip in ips {
                let ip: IpAddr = ip.parse().unwrap();
                assert_eq!(ip_in(&net, ip), net.contains(&ip), "{n} {ip}");
            }
        }
    }

    #[test]
    fn ipv4_short_forms_and_cidrs() {
        assert_eq!(parse_network("10").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_network("10.1").unwrap().to_string(), "10.1.0.0/16");
        assert_eq!(parse_network("10.1.2").unwrap().to_string(), "10.1.2.0/24");
        assert_eq!(
            parse_network("10.1.2.3").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(
            parse_network("10.1.2.3/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("300.1.1.1").is_err());
        assert_eq!(
            parse_network("2001:db8::1/32").unwrap().to_string(),
            "2001:db8::/32"
        );
    }

    #[test]
    fn leaf_matching() {
        let r = req();
        let m = |s: &str| item(s).kind.matches_leaf(&r, Side::Source);
        assert!(m("192.168.1.0/24"));
        assert!(m("192.168"));
        assert!(!m("192.169"));
        assert!(!m("::/0"));
        assert!(m("@example.com"));
        assert!(!m("@sub.example.com"));
        assert!(m("alice@"));
        assert!(m("a*@*.com"));
        assert!(!m("bob@example.com"));
        assert!(m(".example.org"));
        assert!(m(".mail.example.org"));
        assert!(!m(".mx1.mail.example.org.x"));
        assert!(m("mx1.mail.example.org"));
        assert!(m("mx*.mail.example.org"));
        assert!(m("$-"));
        let mut sasl = r.clone();
        sasl.sasl_username = "bob@example.com".into();
        assert!(item("$*@example.com")
            .kind
            .matches_leaf(&sasl, Side::Source));
        assert!(!item("$*@example.org")
            .kind
            .matches_leaf(&sasl, Side::Source));
        assert!(!m("$*"));
        assert!(!m("@"));
        assert!(!m("[127.0.0.1]"));
    }

    #[test]
    fn listener_specs_match_the_listener_fields() {
        let mut r = req();
        let m = |r: &PolicyRequest<'_>, s: &str| {
            let it = item(s);
            it.kind.matches_leaf(r, Side::Source) != it.negate
        };
        for s in [
            "server_port=587",
            "server_address=10.0.0.0/8",
            "policy_context=x",
        ] {
            assert!(!m(&r, s), "{s} without the attribute");
            assert!(m(&r, &format!("!{s}")), "!{s} without the attribute");
        }
        r.server_port = Some(587);
        r.server_address = Some("10.1.2.3".parse().unwrap());
        r.policy_context = "Submission".into();
        assert!(m(&r, "server_port=587"));
        assert!(!m(&r, "server_port=25"));
        assert!(m(&r, " SERVER_PORT = 587 "));
        assert!(m(&r, "server_address=10.1.2.3"));
        assert!(m(&r, "server_address=10.1"));
        assert!(!m(&r, "server_address=10.1.3.0/24"));
        assert!(!m(&r, "server_address=::/0"));
        assert!(m(&r, "policy_context=submission"));
        assert!(!m(&r, "policy_context=smtps"));
        assert!(!m(&r, "!policy_context=submission"));
        // `=` in addresses and SASL names is not a listener spec.
        r.sender = "bounce+x=y@example.com".into();
        assert!(m(&r, "bounce+x=y@example.com"));
        assert!(item("$a=b").kind == SpecKind::Sasl(Glob::new("a=b")));
        for bad in [
            "server_port=0",
            "server_port=65536",
            "server_port=x",
            "server_port=",
            "server_address=300.1.1.1",
            "policy_context=a b",
            "client_port=25",
        ] {
            assert!(parse_item(bad, Side::Source, &no_groups).is_err(), "{bad}");
        }
        let e = parse_item("server_port=25", Side::Destination, &no_groups).unwrap_err();
        assert!(e.contains("source spec"), "{e}");
    }

    #[test]
    fn destination_accepts_only_addresses() {
        assert!(parse_item("10.0.0.0/8", Side::Destination, &no_groups).is_err());
        assert!(parse_item("@example.com", Side::Destination, &no_groups).is_ok());
        assert!(parse_item("%missing", Side::Source, &no_groups).is_err());
        assert!(parse_item("foo_bar!", Side::Source, &no_groups).is_err());
    }
}
