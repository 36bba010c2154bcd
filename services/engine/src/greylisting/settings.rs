//! Greylisting settings validated ([`compile_row`], [`compile_whitelist`]) and merged over
//! the matched policies ([`merge`]), with Policyd's defaults and Sluice's ranges.

use super::def::{GreylistWhitelistDef, GreylistingDef};
use crate::spec::{parse_network, Glob};
use ipnet::IpNet;
use sluice_protocol::PolicyRequest;
use std::net::IpAddr;
use std::sync::Arc;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// Default `period`, seconds.
pub const DEFAULT_PERIOD_SECS: u64 = 240;
/// Default `auth_validity`, seconds (7 days).
pub const DEFAULT_AUTH_VALIDITY_SECS: u64 = 7 * DAY;
/// Default `unauth_validity`, seconds (1 day).
pub const DEFAULT_UNAUTH_VALIDITY_SECS: u64 = DAY;
/// Default auto-whitelist and auto-blacklist period, seconds (7 days).
pub const DEFAULT_AUTO_PERIOD_SECS: u64 = 7 * DAY;
/// Default auto-whitelist and auto-blacklist count.
pub const DEFAULT_AUTO_COUNT: u64 = 100;
/// Default auto-whitelist and auto-blacklist percentage.
pub const DEFAULT_AUTO_PERCENTAGE: u64 = 90;
/// Default IPv4 prefix length of a triplet's network.
pub const DEFAULT_IPV4_PREFIX: u8 = 24;
/// Default IPv6 prefix length of a triplet's network.
pub const DEFAULT_IPV6_PREFIX: u8 = 64;
/// Policyd's default deferral text (Postfix gets `451 4.7.1 ` before it).
pub const DEFAULT_DEFER_MESSAGE: &str = "Greylisting in effect, please come back later";
/// Policyd's default blacklist rejection text.
pub const DEFAULT_BLACKLIST_MESSAGE: &str = "Greylisting in effect, sending server blacklisted";

/// The longest greylisting period: 30 days (a triplet deferred longer is a block).
pub const MAX_PERIOD_SECS: u64 = 30 * DAY;
/// The longest validity and auto-list period: 366 days.
pub const MAX_VALIDITY_SECS: u64 = 366 * DAY;
/// The highest auto-whitelist / auto-blacklist count.
pub const MAX_AUTO_COUNT: u64 = 1_000_000;
/// The longest deferral or blacklist text.
pub const MAX_MESSAGE_LEN: usize = 400;

/// One policy's greylisting row, validated (unset fields stay unset: they inherit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GreyRow {
    /// See [`GreylistingDef`]; seconds and prefix lengths range-checked.
    pub enabled: Option<bool>,
    pub period_secs: Option<u64>,
    pub ipv4_prefix: Option<u8>,
    pub ipv6_prefix: Option<u8>,
    pub auth_validity_secs: Option<u64>,
    pub unauth_validity_secs: Option<u64>,
    pub awl: Option<bool>,
    pub awl_period_secs: Option<u64>,
    pub awl_count: Option<u64>,
    pub awl_percentage: Option<u64>,
    pub abl: Option<bool>,
    pub abl_period_secs: Option<u64>,
    pub abl_count: Option<u64>,
    pub abl_percentage: Option<u64>,
    pub training: Option<bool>,
    pub defer_message: Option<Arc<str>>,
    pub blacklist_message: Option<Arc<str>>,
    pub skip_spf_pass: Option<bool>,
}

/// The settings one request runs with: every matched policy's row merged, defaults filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Greylisting {
    /// Greylisting runs.
    pub enabled: bool,
    /// Seconds a new triplet is deferred.
    pub period_secs: u64,
    /// IPv4 prefix length of the triplet's network.
    pub ipv4_prefix: u8,
    /// IPv6 prefix length of the triplet's network.
    pub ipv6_prefix: u8,
    /// Seconds a passed triplet lives after its last use.
    pub auth_validity_secs: u64,
    /// Seconds a never-passed triplet lives after its last attempt.
    pub unauth_validity_secs: u64,
    /// Auto-whitelisting on.
    pub awl: bool,
    /// Its period, seconds.
    pub awl_period_secs: u64,
    /// Its count (0: never).
    pub awl_count: u64,
    /// Its percentage (0: by count).
    pub awl_percentage: u64,
    /// Auto-blacklisting on.
    pub abl: bool,
    /// Its period, seconds.
    pub abl_period_secs: u64,
    /// Its count (0: never).
    pub abl_count: u64,
    /// Its percentage (0: by count).
    pub abl_percentage: u64,
    /// Training mode.
    pub training: bool,
    /// Deferral text.
    pub defer_message: Arc<str>,
    /// Blacklist text.
    pub blacklist_message: Arc<str>,
    /// A triplet whose sender's SPF result is `pass` is not greylisted (beyond Policyd).
    pub skip_spf_pass: bool,
}

/// Merges the rows of the matched policies, given in evaluation order (priority ascending):
/// a later row's set fields override. `None` when no row applies (greylisting does not run).
pub fn merge<'a>(rows: impl IntoIterator<Item = &'a GreyRow>) -> Option<Greylisting> {
    let mut m: Option<GreyRow> = None;
    for r in rows {
        let acc = m.get_or_insert_with(GreyRow::default);
        macro_rules! over {
            ($($f:ident),*) => { $( if r.$f.is_some() { acc.$f = r.$f.clone(); } )* };
        }
        over!(
            enabled,
            period_secs,
            ipv4_prefix,
            ipv6_prefix,
            auth_validity_secs,
            unauth_validity_secs,
            awl,
            awl_period_secs,
            awl_count,
            awl_percentage,
            abl,
            abl_period_secs,
            abl_count,
            abl_percentage,
            training,
            defer_message,
            blacklist_message,
            skip_spf_pass
        );
    }
    let m = m?;
    Some(Greylisting {
        enabled: m.enabled.unwrap_or(true),
        period_secs: m.period_secs.unwrap_or(DEFAULT_PERIOD_SECS),
        ipv4_prefix: m.ipv4_prefix.unwrap_or(DEFAULT_IPV4_PREFIX),
        ipv6_prefix: m.ipv6_prefix.unwrap_or(DEFAULT_IPV6_PREFIX),
        auth_validity_secs: m.auth_validity_secs.unwrap_or(DEFAULT_AUTH_VALIDITY_SECS),
        unauth_validity_secs: m
            .unauth_validity_secs
            .unwrap_or(DEFAULT_UNAUTH_VALIDITY_SECS),
        awl: m.awl.unwrap_or(false),
        awl_period_secs: m.awl_period_secs.unwrap_or(DEFAULT_AUTO_PERIOD_SECS),
        awl_count: m.awl_count.unwrap_or(DEFAULT_AUTO_COUNT),
        awl_percentage: m.awl_percentage.unwrap_or(DEFAULT_AUTO_PERCENTAGE),
        abl: m.abl.unwrap_or(false),
        abl_period_secs: m.abl_period_secs.unwrap_or(DEFAULT_AUTO_PERIOD_SECS),
        abl_count: m.abl_count.unwrap_or(DEFAULT_AUTO_COUNT),
        abl_percentage: m.abl_percentage.unwrap_or(DEFAULT_AUTO_PERCENTAGE),
        training: m.training.unwrap_or(false),
        defer_message: m
            .defer_message
            .unwrap_or_else(|| Arc::from(DEFAULT_DEFER_MESSAGE)),
        blacklist_message: m
            .blacklist_message
            .unwrap_or_else(|| Arc::from(DEFAULT_BLACKLIST_MESSAGE)),
        skip_spf_pass: m.skip_spf_pass.unwrap_or(false),
    })
}

/// A finding on one field of a greylisting row: (field, message).
pub type FieldError = (&'static str, String);

/// Parses `SenderIP:/N` (Policyd's only `Track`), giving N (0..=32).
pub fn parse_track(track: &str) -> Result<u8, String> {
    let t = track.trim();
    let rest = t
        .split_once(':')
        .filter(|(k, _)| k.eq_ignore_ascii_case("SenderIP"))
        .map(|(_, r)| r.trim())
        .ok_or_else(|| {
            format!("track {track:?} is not supported: greylisting tracks only `SenderIP:/N` (e.g. `SenderIP:/24`)")
        })?;
    let n = rest.strip_prefix('/').unwrap_or(rest);
    match n.parse::<u8>() {
        Ok(n) if n <= 32 => Ok(n),
        _ => Err(format!(
            "track {track:?}: the prefix length must be 0..=32 (IPv4; use ipv6_prefix for IPv6)"
        )),
    }
}

/// Validates a row; every out-of-range field is reported.
pub fn compile_row(d: &GreylistingDef) -> Result<GreyRow, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut secs = |field: &'static str, v: Option<u64>, min: u64, max: u64| -> Option<u64> {
        let v = v?;
        if v < min || v > max {
            errs.push((
                field,
                format!("{field} {v} s is out of range: it must be {min}..={max} seconds"),
            ));
        }
        Some(v)
    };
    let period_secs = secs("greylisting.period", d.period, 0, MAX_PERIOD_SECS);
    let auth = secs(
        "greylisting.auth_validity",
        d.auth_validity,
        1,
        MAX_VALIDITY_SECS,
    );
    let unauth = secs(
        "greylisting.unauth_validity",
        d.unauth_validity,
        1,
        MAX_VALIDITY_SECS,
    );
    let awlp = secs(
        "greylisting.auto_whitelist_period",
        d.auto_whitelist_period,
        1,
        MAX_VALIDITY_SECS,
    );
    let ablp = secs(
        "greylisting.auto_blacklist_period",
        d.auto_blacklist_period,
        1,
        MAX_VALIDITY_SECS,
    );
    let mut count = |field: &'static str, v: Option<u64>, max: u64| -> Option<u64> {
        let v = v?;
        if v > max {
            errs.push((
                field,
                format!("{field} {v} is out of range: it must be 0..={max}"),
            ));
        }
        Some(v)
    };
    let awlc = count(
        "greylisting.auto_whitelist_count",
        d.auto_whitelist_count,
        MAX_AUTO_COUNT,
    );
    let awlpct = count(
        "greylisting.auto_whitelist_percentage",
        d.auto_whitelist_percentage,
        100,
    );
    let ablc = count(
        "greylisting.auto_blacklist_count",
        d.auto_blacklist_count,
        MAX_AUTO_COUNT,
    );
    let ablpct = count(
        "greylisting.auto_blacklist_percentage",
        d.auto_blacklist_percentage,
        100,
    );
    let ipv4_prefix = match d.track.as_deref() {
        None => None,
        Some(t) => match parse_track(t) {
            Ok(n) => Some(n),
            Err(e) => {
                errs.push(("greylisting.track", e));
                None
            }
        },
    };
    if let Some(p) = d.ipv6_prefix.filter(|p| *p > 128) {
        errs.push((
            "greylisting.ipv6_prefix",
            format!("greylisting.ipv6_prefix {p} is out of range: it must be 0..=128"),
        ));
    }
    let mut text = |field: &'static str, v: &Option<String>| -> Option<Arc<str>> {
        let v = v.as_deref()?.trim();
        if v.is_empty() || v.len() > MAX_MESSAGE_LEN || v.contains(['\n', '\r']) {
            errs.push((
                field,
                format!("{field} must be one line of 1..={MAX_MESSAGE_LEN} bytes"),
            ));
        }
        Some(Arc::from(v))
    };
    let defer_message = text("greylisting.defer_message", &d.defer_message);
    let blacklist_message = text("greylisting.blacklist_message", &d.blacklist_message);
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(GreyRow {
        enabled: d.enabled,
        period_secs,
        ipv4_prefix,
        ipv6_prefix: d.ipv6_prefix,
        auth_validity_secs: auth,
        unauth_validity_secs: unauth,
        awl: d.auto_whitelist,
        awl_period_secs: awlp,
        awl_count: awlc,
        awl_percentage: awlpct,
        abl: d.auto_blacklist,
        abl_period_secs: ablp,
        abl_count: ablc,
        abl_percentage: ablpct,
        training: d.training,
        defer_message,
        blacklist_message,
        skip_spf_pass: d.skip_spf_pass,
    })
}

/// A static whitelist entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhitelistEntry {
    /// `SenderIP:<net>`: the client address is within.
    Network(IpNet),
    /// `SenderDomain:<domain>`: the sender's domain is it (or, with `subdomains`, ends
    /// with `.<domain>`).
    SenderDomain {
        /// Lower-case, without a leading dot.
        domain: String,
        /// Written with a leading `.`: subdomains match too.
        subdomains: bool,
    },
    /// `ReverseDNS:<pattern>`: the client's reverse DNS name matches (`*` wildcards; a
    /// leading `.` matches any name below).
    ReverseDns {
        /// The pattern.
        pattern: Glob,
        /// Written with a leading `.`.
        suffix: bool,
    },
}

/// The static whitelist, with each entry's text (for explanations).
pub type Whitelist = Vec<(WhitelistEntry, Arc<str>)>;

/// Parses one whitelist entry.
pub fn parse_whitelist_entry(source: &str) -> Result<WhitelistEntry, String> {
    let s = source.trim();
    let (kind, value) = s.split_once(':').ok_or_else(|| {
        format!("greylisting whitelist entry {source:?}: write `SenderIP:<ip/cidr>`, `SenderDomain:<domain>` or `ReverseDNS:<pattern>`")
    })?;
    let value = value.trim();
    match kind.trim().to_ascii_lowercase().as_str() {
        "senderip" => parse_network(value)
            .map(WhitelistEntry::Network)
            .map_err(|e| format!("greylisting whitelist entry {source:?}: {e}")),
        "senderdomain" => {
            let subdomains = value.starts_with('.');
            let domain = value.trim_start_matches('.').to_ascii_lowercase();
            if domain.is_empty() || domain.contains(['@', ' ', ',']) {
                return Err(format!(
                    "greylisting whitelist entry {source:?}: not a domain name"
                ));
            }
            Ok(WhitelistEntry::SenderDomain { domain, subdomains })
        }
        "reversedns" => {
            let suffix = value.starts_with('.');
            let pattern = value.trim_start_matches('.');
            if pattern.is_empty() || pattern.contains([' ', ',']) {
                return Err(format!(
                    "greylisting whitelist entry {source:?}: not a host name pattern"
                ));
            }
            Ok(WhitelistEntry::ReverseDns {
                pattern: Glob::new(pattern),
                suffix,
            })
        }
        _ => Err(format!(
            "greylisting whitelist entry {source:?}: unknown kind {kind:?}; write `SenderIP:`, `SenderDomain:` or `ReverseDNS:`"
        )),
    }
}

/// Validates the whitelist; findings are (entry index, message).
pub fn compile_whitelist(defs: &[GreylistWhitelistDef]) -> Result<Whitelist, Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        match parse_whitelist_entry(&d.source) {
            Ok(e) if !d.disabled => out.push((e, Arc::from(d.source.trim()))),
            Ok(_) => {}
            Err(e) => errs.push((i, e)),
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

impl WhitelistEntry {
    /// Whether `req` is whitelisted by this entry.
    pub fn matches(&self, req: &PolicyRequest<'_>) -> bool {
        match self {
            WhitelistEntry::Network(net) => net.contains(&req.client_address),
            WhitelistEntry::SenderDomain { domain, subdomains } => {
                let Some((_, d)) = req.sender.rsplit_once('@') else {
                    return false;
                };
                let d = d.to_ascii_lowercase();
                d == *domain
                    || (*subdomains
                        && d.len() > domain.len()
                        && d.ends_with(domain.as_str())
                        && d.as_bytes()[d.len() - domain.len() - 1] == b'.')
            }
            WhitelistEntry::ReverseDns { pattern, suffix } => {
                let name = req.reverse_client_name.to_ascii_lowercase();
                if name.is_empty() || name == "unknown" {
                    return false;
                }
                if *suffix {
                    name.char_indices()
                        .filter(|(_, c)| *c == '.')
                        .any(|(i, _)| pattern.matches(&name[i + 1..]))
                } else {
                    pattern.matches(&name)
                }
            }
        }
    }
}

/// The client's network for the triplet: the address masked to the prefix length of its
/// family, written `a.b.c.d/N` or `x::/N`.
pub fn network_of(ip: IpAddr, ipv4_prefix: u8, ipv6_prefix: u8) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    let net = match ip {
        IpAddr::V4(a) => IpNet::V4(
            ipnet::Ipv4Net::new(a, ipv4_prefix.min(32))
                .expect("prefix in range")
                .trunc(),
        ),
        IpAddr::V6(a) => IpNet::V6(
            ipnet::Ipv6Net::new(a, ipv6_prefix.min(128))
                .expect("prefix in range")
                .trunc(),
        ),
    };
    net.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_override_in_priority_order() {
        let low = GreyRow {
            period_secs: Some(60),
            awl: Some(true),
            ..Default::default()
        };
        let high = GreyRow {
            period_secs: Some(120),
            ..Default::default()
        };
        let g = merge([&low, &high]).unwrap();
        assert_eq!(g.period_secs, 120);
        assert!(g.awl);
        assert!(
            g.enabled,
            "a row that never sets enabled greylists (Policyd)"
        );
        assert_eq!(&*g.defer_message, DEFAULT_DEFER_MESSAGE);
        assert_eq!(&*g.blacklist_message, DEFAULT_BLACKLIST_MESSAGE);
        assert!(merge(std::iter::empty()).is_none());
    }

    #[test]
    fn ranges_are_checked() {
        let d = GreylistingDef {
            period: Some(MAX_PERIOD_SECS + 1),
            auto_whitelist_percentage: Some(101),
            ipv6_prefix: Some(129),
            track: Some("Sender:@domain".into()),
            ..Default::default()
        };
        let errs = compile_row(&d).unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.0).collect();
        assert_eq!(
            fields,
            [
                "greylisting.period",
                "greylisting.auto_whitelist_percentage",
                "greylisting.track",
                "greylisting.ipv6_prefix"
            ]
        );
        assert_eq!(parse_track("SenderIP:/24"), Ok(24));
        assert!(parse_track("SenderIP:/33").is_err());
    }

    #[test]
    fn networks_are_masked() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(network_of(ip("192.0.2.77"), 24, 64), "192.0.2.0/24");
        assert_eq!(
            network_of(ip("2001:db8:1:2:3::9"), 24, 64),
            "2001:db8:1:2::/64"
        );
        assert_eq!(network_of(ip("::ffff:192.0.2.9"), 24, 64), "192.0.2.0/24");
    }

    #[test]
    fn whitelist_entries() {
        assert!(parse_whitelist_entry("Sender:x").is_err());
        assert!(parse_whitelist_entry("SenderIP:300.1.1.1").is_err());
        let dom = parse_whitelist_entry("SenderDomain:.example.com").unwrap();
        let rdns = parse_whitelist_entry("ReverseDNS:.google.com").unwrap();
        let mut req = PolicyRequest {
            sender: "a@mx.Example.com".into(),
            ..Default::default()
        };
        assert!(dom.matches(&req));
        req.sender = "a@badexample.com".into();
        assert!(!dom.matches(&req));
        req.reverse_client_name = "mail-1.google.com".into();
        assert!(rdns.matches(&req));
        req.reverse_client_name = "google.com.evil".into();
        assert!(!rdns.matches(&req));
    }
}
