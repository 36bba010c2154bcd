//! CheckHelo settings validated ([`compile_row`], [`compile_blacklist`],
//! [`compile_whitelist`]) and merged over the matched policies ([`merge`]), with Policyd's
//! defaults and Sluice's ranges; and the HELO's form ([`classify`]).

use super::def::{CheckHeloDef, HeloBlacklistDef, HeloWhitelistDef};
use crate::spec::{parse_network, Glob};
use ipnet::IpNet;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::Arc;

/// The longest blacklist or HRP period: 366 days.
pub const MAX_PERIOD_SECS: u64 = 366 * 86_400;
/// The highest HRP limit; also the most distinct HELOs kept per client address (the
/// oldest is forgotten beyond it, see [`super::record`]).
pub const MAX_HRP_LIMIT: u64 = 1000;
/// The longest HELO blacklist entry.
pub const MAX_HELO_LEN: usize = 255;

/// What a failed DNS lookup gives (`dns_failure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DnsFailure {
    /// `DEFER Invalid HELO/EHLO; Failure while trying to resolve '<helo>'`.
    #[default]
    Defer,
    /// The unresolvable check is skipped.
    Pass,
}

impl DnsFailure {
    /// Parses `defer` or `pass`.
    pub fn parse(s: &str) -> Option<DnsFailure> {
        match s.trim().to_ascii_lowercase().as_str() {
            "defer" => Some(DnsFailure::Defer),
            "pass" => Some(DnsFailure::Pass),
            _ => None,
        }
    }

    /// As written in the policy file.
    pub fn as_str(self) -> &'static str {
        match self {
            DnsFailure::Defer => "defer",
            DnsFailure::Pass => "pass",
        }
    }
}

/// One policy's CheckHelo row, validated (unset fields stay unset: they inherit).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeloRow {
    /// See [`CheckHeloDef`]; seconds and the limit range-checked.
    pub use_blacklist: Option<bool>,
    pub blacklist_period_secs: Option<u64>,
    pub use_hrp: Option<bool>,
    pub hrp_period_secs: Option<u64>,
    pub hrp_limit: Option<u64>,
    pub reject_invalid: Option<bool>,
    pub reject_ip: Option<bool>,
    pub reject_unresolvable: Option<bool>,
    pub dns_failure: Option<DnsFailure>,
}

/// The settings one request runs with: every matched policy's row merged, defaults filled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckHelo {
    /// Blacklist check on.
    pub use_blacklist: bool,
    /// Seconds a blacklisted HELO keeps its client rejected (0: the current HELO only).
    pub blacklist_period_secs: u64,
    /// HRP on.
    pub use_hrp: bool,
    /// HRP window, seconds (0: unset, an error with `use_hrp`).
    pub hrp_period_secs: u64,
    /// HRP limit (0: unset, an error with `use_hrp`).
    pub hrp_limit: u64,
    /// Syntax check on.
    pub reject_invalid: bool,
    /// Bare IPs rejected (with `reject_invalid`).
    pub reject_ip: bool,
    /// DNS check on (with `reject_invalid`).
    pub reject_unresolvable: bool,
    /// A failed lookup's answer.
    pub dns_failure: DnsFailure,
}

impl CheckHelo {
    /// Whether the request needs the state op (blacklist memory or HRP).
    pub fn needs_state(&self) -> bool {
        (self.use_blacklist && self.blacklist_period_secs > 0) || self.use_hrp
    }

    /// Whether the HELO's DNS records are asked.
    pub fn asks_dns(&self) -> bool {
        self.reject_invalid && self.reject_unresolvable
    }
}

/// Merges the rows of the matched policies, given in evaluation order (priority ascending):
/// a later row's set fields override. `None` when no row applies (CheckHelo does not run).
pub fn merge<'a>(rows: impl IntoIterator<Item = &'a HeloRow>) -> Option<CheckHelo> {
    let mut m: Option<HeloRow> = None;
    for r in rows {
        let acc = m.get_or_insert_with(HeloRow::default);
        macro_rules! over {
            ($($f:ident),*) => { $( if r.$f.is_some() { acc.$f = r.$f; } )* };
        }
        over!(
            use_blacklist,
            blacklist_period_secs,
            use_hrp,
            hrp_period_secs,
            hrp_limit,
            reject_invalid,
            reject_ip,
            reject_unresolvable,
            dns_failure
        );
    }
    let m = m?;
    Some(CheckHelo {
        use_blacklist: m.use_blacklist.unwrap_or(false),
        blacklist_period_secs: m.blacklist_period_secs.unwrap_or(0),
        use_hrp: m.use_hrp.unwrap_or(false),
        hrp_period_secs: m.hrp_period_secs.unwrap_or(0),
        hrp_limit: m.hrp_limit.unwrap_or(0),
        reject_invalid: m.reject_invalid.unwrap_or(false),
        reject_ip: m.reject_ip.unwrap_or(false),
        reject_unresolvable: m.reject_unresolvable.unwrap_or(false),
        dns_failure: m.dns_failure.unwrap_or_default(),
    })
}

/// A finding on one field of a CheckHelo row: (field, message).
pub type FieldError = (&'static str, String);

/// Validates a row; every out-of-range field is reported.
pub fn compile_row(d: &CheckHeloDef) -> Result<HeloRow, Vec<FieldError>> {
    let mut errs = Vec::new();
    let mut secs = |field: &'static str, v: Option<u64>, min: u64| -> Option<u64> {
        let v = v?;
        if v < min || v > MAX_PERIOD_SECS {
            errs.push((
                field,
                format!(
                    "{field} {v} s is out of range: it must be {min}..={MAX_PERIOD_SECS} seconds"
                ),
            ));
        }
        Some(v)
    };
    let blacklist_period_secs = secs("checkhelo.blacklist_period", d.blacklist_period, 0);
    let hrp_period_secs = secs("checkhelo.hrp_period", d.hrp_period, 1);
    if let Some(l) = d.hrp_limit.filter(|l| *l < 1 || *l > MAX_HRP_LIMIT) {
        errs.push((
            "checkhelo.hrp_limit",
            format!("checkhelo.hrp_limit {l} is out of range: it must be 1..={MAX_HRP_LIMIT}"),
        ));
    }
    let dns_failure = match d.dns_failure.as_deref() {
        None => None,
        Some(s) => match DnsFailure::parse(s) {
            Some(f) => Some(f),
            None => {
                errs.push((
                    "checkhelo.dns_failure",
                    format!("checkhelo.dns_failure {s:?}: write `defer` or `pass`"),
                ));
                None
            }
        },
    };
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(HeloRow {
        use_blacklist: d.use_blacklist,
        blacklist_period_secs,
        use_hrp: d.use_hrp,
        hrp_period_secs,
        hrp_limit: d.hrp_limit,
        reject_invalid: d.reject_invalid,
        reject_ip: d.reject_ip,
        reject_unresolvable: d.reject_unresolvable,
        dns_failure,
    })
}

/// The HELO blacklist: patterns with their text (for explanations).
pub type Blacklist = Vec<(Glob, Arc<str>)>;

/// Validates the blacklist; findings are (entry index, message).
pub fn compile_blacklist(defs: &[HeloBlacklistDef]) -> Result<Blacklist, Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, d) in defs.iter().enumerate() {
        let h = d.helo.trim();
        if !seen.insert(d.helo.as_str()) {
            errs.push((
                i,
                format!(
                    "checkhelo blacklist entry {:?} is listed twice: keep one",
                    d.helo
                ),
            ));
        } else if h.is_empty() || h.len() > MAX_HELO_LEN || h.contains(char::is_whitespace) {
            errs.push((
                i,
                format!("checkhelo blacklist entry {:?}: write a HELO name or a pattern with `*`, 1..={MAX_HELO_LEN} bytes without spaces", d.helo),
            ));
        } else if !d.disabled {
            out.push((Glob::new(h), Arc::from(h)));
        }
    }
    if errs.is_empty() {
        Ok(out)
    } else {
        Err(errs)
    }
}

/// The blacklist entry `helo` matches (case-insensitively), if any.
pub fn blacklisted<'b>(list: &'b Blacklist, helo: &str) -> Option<&'b Arc<str>> {
    let lower = helo.to_lowercase();
    list.iter().find(|(g, _)| g.matches(&lower)).map(|(_, t)| t)
}

/// The CheckHelo whitelist: networks with their text.
pub type Whitelist = Vec<(IpNet, Arc<str>)>;

/// Parses `SenderIP:<ip or CIDR>`.
pub fn parse_whitelist_entry(source: &str) -> Result<IpNet, String> {
    let s = source.trim();
    match s.split_once(':') {
        Some((k, v)) if k.trim().eq_ignore_ascii_case("SenderIP") => parse_network(v.trim())
            .map_err(|e| format!("checkhelo whitelist entry {source:?}: {e}")),
        _ => Err(format!(
            "checkhelo whitelist entry {source:?}: write `SenderIP:<ip or CIDR>` (the only form CheckHelo understands)"
        )),
    }
}

/// Validates the whitelist; findings are (entry index, message).
pub fn compile_whitelist(defs: &[HeloWhitelistDef]) -> Result<Whitelist, Vec<(usize, String)>> {
    let mut out = Vec::new();
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, d) in defs.iter().enumerate() {
        if !seen.insert(d.source.as_str()) {
            errs.push((
                i,
                format!(
                    "checkhelo whitelist entry {:?} is listed twice: keep one",
                    d.source
                ),
            ));
            continue;
        }
        match parse_whitelist_entry(&d.source) {
            Ok(n) if !d.disabled => out.push((n, Arc::from(d.source.trim()))),
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

/// The whitelist entry that holds `ip`, if any (IPv4-mapped IPv6 addresses as IPv4).
pub fn whitelisted(list: &Whitelist, ip: IpAddr) -> Option<&Arc<str>> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    list.iter().find(|(n, _)| n.contains(&ip)).map(|(_, t)| t)
}

/// The form of a HELO name (Policyd's `RejectInvalid` rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeloForm {
    /// A bare IPv4 or IPv6 address (valid unless `reject_ip`).
    BareIp,
    /// An address literal `[192.0.2.1]`, `[IPv6:2001:db8::1]` or `[2001:db8::1]`: valid.
    Literal,
    /// A FQDN (`label(.label)+`, labels of letters, digits, `_` and `-`): valid; resolved
    /// with `reject_unresolvable`.
    Fqdn,
    /// Anything else (`localhost`, `foo_bar!`): invalid.
    Invalid,
}

/// A byte that may be part of an IP address: a hex digit, `.` or `:`.
const MAY_BE_IP: u8 = 1;
/// A byte that may be part of a name: an ASCII letter or digit, `_`, `-`, `.` (between
/// labels) or a byte of a non-ASCII character (checked as a character afterwards).
const IN_NAME: u8 = 2;

/// [`MAY_BE_IP`] and [`IN_NAME`] of every byte.
const BYTE_CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b: u8 = 0;
    loop {
        if b.is_ascii_hexdigit() || b == b'.' || b == b':' {
            t[b as usize] |= MAY_BE_IP;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.' || !b.is_ascii() {
            t[b as usize] |= IN_NAME;
        }
        if b == u8::MAX {
            break t;
        }
        b += 1;
    }
};

/// HELO names longer than this are not remembered by [`classified`].
const MEMO_MAX_LEN: usize = 255;

thread_local! {
    /// The HELO name this thread classified last, and its form (`""` is
    /// [`HeloForm::Invalid`], as [`classify`] says).
    static LAST_CLASSIFIED: RefCell<(String, HeloForm)> =
        const { RefCell::new((String::new(), HeloForm::Invalid)) };
}

/// [`classify`], remembering the last name classified on this thread: a request's HELO is
/// classified when its lookups are listed and again when it is decided, most often on the
/// same thread with nothing in between, and the requests of one SMTP session share their
/// HELO. Then the second time costs a comparison of the names; the form is the same
/// ([`classify`] depends on the name only), and neither step needs to hand it to the other.
pub fn classified(helo: &str) -> HeloForm {
    if helo.len() > MEMO_MAX_LEN {
        return classify(helo);
    }
    LAST_CLASSIFIED.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return classify(helo);
        };
        if last.0 != helo {
            let form = classify(helo);
            last.0.clear();
            last.0.push_str(helo);
            last.1 = form;
        }
        last.1
    })
}

/// Classifies `helo` (Policyd: bare IPv4/IPv6, `[address]`, `^[\w-]+(\.[\w-]+)+$`).
///
/// One pass over the bytes finds whether the name may be an address (only hex digits, `.`
/// and `:`: a name is not parsed as one) and whether it is `label(.label)+`; a label's
/// non-ASCII characters are checked as characters (`\w` is Unicode's alphanumerics).
pub fn classify(helo: &str) -> HeloForm {
    let bytes = helo.as_bytes();
    let mut classes = MAY_BE_IP | IN_NAME;
    let mut labels = 1usize;
    let mut label_start = 0usize;
    let mut empty_label = bytes.is_empty();
    for (i, &b) in bytes.iter().enumerate() {
        classes &= BYTE_CLASSES[usize::from(b)];
        if b == b'.' {
            empty_label |= i == label_start;
            labels += 1;
            label_start = i + 1;
        }
    }
    empty_label |= label_start == bytes.len();
    let may_be_ip = classes & MAY_BE_IP != 0;
    let mut names_ok = classes & IN_NAME != 0 && !empty_label;
    if may_be_ip && helo.parse::<IpAddr>().is_ok() {
        return HeloForm::BareIp;
    }
    if let Some(inner) = helo.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let inner = inner
            .strip_prefix("IPv6:")
            .or_else(|| inner.strip_prefix("ipv6:"))
            .unwrap_or(inner);
        return if inner.parse::<IpAddr>().is_ok() {
            HeloForm::Literal
        } else {
            HeloForm::Invalid
        };
    }
    // Non-ASCII characters (rare): each must be alphanumeric.
    if names_ok && !helo.is_ascii() {
        names_ok = helo.chars().all(|c| c.is_ascii() || c.is_alphanumeric());
    }
    if names_ok && labels >= 2 {
        HeloForm::Fqdn
    } else {
        HeloForm::Invalid
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_listed_twice_is_refused_naming_it() {
        let twice = |helo: &str| HeloBlacklistDef {
            helo: helo.into(),
            ..Default::default()
        };
        let errs = compile_blacklist(&[twice("a.example"), twice("b.example"), twice("a.example")])
            .unwrap_err();
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 2);
        assert!(errs[0].1.contains("listed twice"), "{}", errs[0].1);
        let w = |source: &str| HeloWhitelistDef {
            source: source.into(),
            ..Default::default()
        };
        let errs = compile_whitelist(&[w("SenderIP:192.0.2.0/24"), w("SenderIP:192.0.2.0/24")])
            .unwrap_err();
        assert_eq!(
            errs,
            vec![(
                1,
                "checkhelo whitelist entry \"SenderIP:192.0.2.0/24\" is listed twice: keep one"
                    .to_string()
            )]
        );
    }

    #[test]
    fn forms() {
        assert_eq!(classify("192.0.2.1"), HeloForm::BareIp);
        assert_eq!(classify("2001:db8::1"), HeloForm::BareIp);
        assert_eq!(classify("2001:DB8::1"), HeloForm::BareIp);
        assert_eq!(classify("::ffff:192.0.2.1"), HeloForm::BareIp);
        // Hex digits only, but not an address: a name.
        assert_eq!(classify("cafe.bad.beef"), HeloForm::Fqdn);
        assert_eq!(classify("[192.0.2.1]"), HeloForm::Literal);
        assert_eq!(classify("[IPv6:2001:db8::1]"), HeloForm::Literal);
        assert_eq!(classify("[mail.example.org]"), HeloForm::Invalid);
        assert_eq!(classify("mail.example.org"), HeloForm::Fqdn);
        assert_eq!(classify("mail-1.ex_ample.org"), HeloForm::Fqdn);
        assert_eq!(classify("localhost"), HeloForm::Invalid);
        assert_eq!(classify("foo_bar!"), HeloForm::Invalid);
        assert_eq!(classify("mail..example.org"), HeloForm::Invalid);
        assert_eq!(classify("mail.example.org."), HeloForm::Invalid);
        assert_eq!(classify(""), HeloForm::Invalid);
        assert_eq!(classify(".example.org"), HeloForm::Invalid);
        assert_eq!(classify("."), HeloForm::Invalid);
        assert_eq!(classify("mail example.org"), HeloForm::Invalid);
        // `\w` is Unicode's: letters of any script, not symbols.
        assert_eq!(classify("mail.bücher.example"), HeloForm::Fqdn);
        assert_eq!(classify("mail.b\u{2603}.example"), HeloForm::Invalid);
    }

    #[test]
    fn remembered_forms_are_the_forms() {
        let long = format!("{}.example", "a".repeat(MEMO_MAX_LEN));
        let names = [
            "mail.example.org",
            "mail.example.org",
            "192.0.2.1",
            "",
            "localhost",
            "[192.0.2.1]",
            "mail.example.org",
            "",
            long.as_str(),
            "mail.example.or",
            "mail.example.org.",
        ];
        for n in names {
            assert_eq!(classified(n), classify(n), "{n:?}");
        }
        // Another thread starts with nothing remembered.
        std::thread::spawn(|| assert_eq!(classified(""), HeloForm::Invalid))
            .join()
            .unwrap();
    }

    #[test]
    fn merge_in_priority_order_with_defaults() {
        let low = HeloRow {
            use_hrp: Some(true),
            hrp_limit: Some(3),
            reject_invalid: Some(true),
            ..Default::default()
        };
        let high = HeloRow {
            hrp_limit: Some(5),
            hrp_period_secs: Some(60),
            ..Default::default()
        };
        let m = merge([&low, &high]).unwrap();
        assert!(m.use_hrp && m.reject_invalid && !m.reject_ip);
        assert_eq!((m.hrp_limit, m.hrp_period_secs), (5, 60));
        assert_eq!(m.dns_failure, DnsFailure::Defer);
        assert!(merge(std::iter::empty()).is_none());
    }

    #[test]
    fn ranges_are_checked() {
        let d = CheckHeloDef {
            hrp_period: Some(0),
            hrp_limit: Some(MAX_HRP_LIMIT + 1),
            blacklist_period: Some(MAX_PERIOD_SECS + 1),
            dns_failure: Some("maybe".into()),
            ..Default::default()
        };
        let fields: Vec<_> = compile_row(&d).unwrap_err().iter().map(|e| e.0).collect();
        assert_eq!(
            fields,
            [
                "checkhelo.blacklist_period",
                "checkhelo.hrp_period",
                "checkhelo.hrp_limit",
                "checkhelo.dns_failure"
            ]
        );
    }

    #[test]
    fn blacklist_exact_and_wildcard_and_whitelist() {
        let mut defs = HeloBlacklistDef::policyd_seed();
        defs.push(HeloBlacklistDef {
            helo: "*.Localdomain".into(),
            ..Default::default()
        });
        let bl = compile_blacklist(&defs).unwrap();
        assert_eq!(
            blacklisted(&bl, "LOCALHOST").map(|t| &**t),
            Some("localhost")
        );
        assert_eq!(
            blacklisted(&bl, "[127.0.0.1]").map(|t| &**t),
            Some("[127.0.0.1]")
        );
        assert_eq!(
            blacklisted(&bl, "box.localdomain").map(|t| &**t),
            Some("*.Localdomain")
        );
        assert_eq!(blacklisted(&bl, "mail.example.org"), None);
        assert!(compile_blacklist(&[HeloBlacklistDef {
            helo: "a b".into(),
            ..Default::default()
        }])
        .is_err());
        let wl = compile_whitelist(&[HeloWhitelistDef {
            source: "SenderIP:192.0.2.0/24".into(),
            ..Default::default()
        }])
        .unwrap();
        assert!(whitelisted(&wl, "192.0.2.9".parse().unwrap()).is_some());
        assert!(whitelisted(&wl, "::ffff:192.0.2.9".parse().unwrap()).is_some());
        assert!(whitelisted(&wl, "198.51.100.1".parse().unwrap()).is_none());
        assert!(parse_whitelist_entry("SenderDomain:example.org").is_err());
    }
}
