//! The typed policy request, validated from a [`RawRequest`].

use crate::codec::RawRequest;
use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

/// Where in the SMTP dialogue Postfix asks (`protocol_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProtocolState {
    /// Client connected (`smtpd_client_restrictions`).
    Connect,
    /// `EHLO` command.
    Ehlo,
    /// `HELO` command.
    Helo,
    /// `MAIL FROM`.
    Mail,
    /// `RCPT TO`: the state policies are resolved in.
    Rcpt,
    /// `DATA` (also reported for `BDAT`).
    Data,
    /// End of message data: `size` is the real size.
    EndOfMessage,
    /// `VRFY`.
    Vrfy,
    /// `ETRN`.
    Etrn,
}

impl ProtocolState {
    /// The protocol spelling (`RCPT`, `END-OF-MESSAGE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolState::Connect => "CONNECT",
            ProtocolState::Ehlo => "EHLO",
            ProtocolState::Helo => "HELO",
            ProtocolState::Mail => "MAIL",
            ProtocolState::Rcpt => "RCPT",
            ProtocolState::Data => "DATA",
            ProtocolState::EndOfMessage => "END-OF-MESSAGE",
            ProtocolState::Vrfy => "VRFY",
            ProtocolState::Etrn => "ETRN",
        }
    }
}

impl fmt::Display for ProtocolState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProtocolState {
    type Err = RequestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let known = [
            ProtocolState::Rcpt,
            ProtocolState::EndOfMessage,
            ProtocolState::Connect,
            ProtocolState::Ehlo,
            ProtocolState::Helo,
            ProtocolState::Mail,
            ProtocolState::Data,
            ProtocolState::Vrfy,
            ProtocolState::Etrn,
        ];
        if let Some(state) = known.into_iter().find(|k| k.as_str() == s) {
            return Ok(state);
        }
        Ok(match s.to_ascii_uppercase().as_str() {
            "CONNECT" => ProtocolState::Connect,
            "EHLO" => ProtocolState::Ehlo,
            "HELO" => ProtocolState::Helo,
            "MAIL" => ProtocolState::Mail,
            "RCPT" => ProtocolState::Rcpt,
            "DATA" | "BDAT" => ProtocolState::Data,
            "END-OF-MESSAGE" => ProtocolState::EndOfMessage,
            "VRFY" => ProtocolState::Vrfy,
            "ETRN" => ProtocolState::Etrn,
            other => return Err(RequestError::UnknownProtocolState(other.to_string())),
        })
    }
}

/// Why a well-framed request cannot be evaluated. The edge answers these with the configured
/// fallback action and logs the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// `request=` is present but is not `smtpd_access_policy`.
    #[error("unsupported request type {0:?} (expected smtpd_access_policy)")]
    UnsupportedRequest(String),
    /// `protocol_state` is missing or empty.
    #[error("missing protocol_state")]
    MissingProtocolState,
    /// `protocol_state` is not one Postfix sends.
    #[error("unknown protocol_state {0:?}")]
    UnknownProtocolState(String),
    /// `client_address` is missing or empty.
    #[error("missing client_address")]
    MissingClientAddress,
    /// `client_address` is not an IPv4/IPv6 address.
    #[error("invalid client_address {0:?}")]
    InvalidClientAddress(String),
    /// A numeric attribute is not a number.
    #[error("invalid number in {name}: {value:?}")]
    InvalidNumber {
        /// Attribute name.
        name: &'static str,
        /// The offending value.
        value: String,
    },
}

impl RequestError {
    /// A short bounded label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            RequestError::UnsupportedRequest(_) => "unsupported_request",
            RequestError::MissingProtocolState => "missing_protocol_state",
            RequestError::UnknownProtocolState(_) => "unknown_protocol_state",
            RequestError::MissingClientAddress => "missing_client_address",
            RequestError::InvalidClientAddress(_) => "invalid_client_address",
            RequestError::InvalidNumber { .. } => "invalid_number",
        }
    }
}

/// One policy request, typed. Every attribute Postfix 2.1–3.12 sends has a field; unknown
/// attributes are ignored. Text fields hold `""` when Postfix sent nothing (or an empty value).
///
/// `sender`, `recipient` and `sasl_username` are lower-cased (as Policyd does) so matching and
/// counter keys are case-insensitive. The null sender `<>` is the empty string.
///
/// Text fields borrow from the [`RawRequest`] they were typed from (no copy, no allocation,
/// unless a value had to be lower-cased); [`PolicyRequest::into_owned`] detaches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest<'a> {
    /// `protocol_state`.
    pub protocol_state: ProtocolState,
    /// `protocol_name` (SMTP, ESMTP, ...).
    pub protocol_name: Cow<'a, str>,
    /// `helo_name` (case preserved).
    pub helo_name: Cow<'a, str>,
    /// `queue_id` (may be empty before MAIL FROM or without a queue file yet).
    pub queue_id: Cow<'a, str>,
    /// `sender`, lower-cased; empty for the null sender.
    pub sender: Cow<'a, str>,
    /// `recipient`, lower-cased.
    pub recipient: Cow<'a, str>,
    /// `recipient_count` (non-zero only at DATA and END-OF-MESSAGE).
    pub recipient_count: u64,
    /// `client_address`. IPv4-mapped IPv6 addresses are turned into IPv4.
    pub client_address: IpAddr,
    /// `client_name` (verified reverse name or `unknown`).
    pub client_name: Cow<'a, str>,
    /// `reverse_client_name` (unverified reverse name), lower-cased.
    pub reverse_client_name: Cow<'a, str>,
    /// `instance`: correlates the requests of one message on one smtpd.
    pub instance: Cow<'a, str>,
    /// `sasl_method`.
    pub sasl_method: Cow<'a, str>,
    /// `sasl_username`, lower-cased; empty when not authenticated.
    pub sasl_username: Cow<'a, str>,
    /// `sasl_sender`.
    pub sasl_sender: Cow<'a, str>,
    /// `size`: declared SIZE= at RCPT, the real size at END-OF-MESSAGE (bytes).
    pub size: u64,
    /// `ccert_subject`.
    pub ccert_subject: Cow<'a, str>,
    /// `ccert_issuer`.
    pub ccert_issuer: Cow<'a, str>,
    /// `ccert_fingerprint`.
    pub ccert_fingerprint: Cow<'a, str>,
    /// `ccert_pubkey_fingerprint`.
    pub ccert_pubkey_fingerprint: Cow<'a, str>,
    /// `encryption_protocol`.
    pub encryption_protocol: Cow<'a, str>,
    /// `encryption_cipher`.
    pub encryption_cipher: Cow<'a, str>,
    /// `encryption_keysize` (0 in plaintext).
    pub encryption_keysize: u32,
    /// `etrn_domain`.
    pub etrn_domain: Cow<'a, str>,
    /// `stress=yes` when smtpd is under stress.
    pub stress: bool,
    /// `client_port`.
    pub client_port: Option<u16>,
    /// `policy_context`.
    pub policy_context: Cow<'a, str>,
    /// `server_address`.
    pub server_address: Option<IpAddr>,
    /// `server_port`.
    pub server_port: Option<u16>,
    /// `compatibility_level`.
    pub compatibility_level: Cow<'a, str>,
    /// `mail_version`.
    pub mail_version: Cow<'a, str>,
    /// `tls_sni`.
    pub tls_sni: Cow<'a, str>,
    /// Not a protocol attribute: the address of the Postfix host that sent the request
    /// (the TCP peer), for `[ip/cidr]` member specs. `None` over a Unix socket.
    pub peer_address: Option<IpAddr>,
}

impl PolicyRequest<'_> {
    /// A request with the given state and client address and every other field empty.
    /// Handy for `explain` and tests.
    pub fn new(protocol_state: ProtocolState, client_address: IpAddr) -> Self {
        PolicyRequest {
            protocol_state,
            protocol_name: Cow::Borrowed(""),
            helo_name: Cow::Borrowed(""),
            queue_id: Cow::Borrowed(""),
            sender: Cow::Borrowed(""),
            recipient: Cow::Borrowed(""),
            recipient_count: 0,
            client_address,
            client_name: Cow::Borrowed(""),
            reverse_client_name: Cow::Borrowed(""),
            instance: Cow::Borrowed(""),
            sasl_method: Cow::Borrowed(""),
            sasl_username: Cow::Borrowed(""),
            sasl_sender: Cow::Borrowed(""),
            size: 0,
            ccert_subject: Cow::Borrowed(""),
            ccert_issuer: Cow::Borrowed(""),
            ccert_fingerprint: Cow::Borrowed(""),
            ccert_pubkey_fingerprint: Cow::Borrowed(""),
            encryption_protocol: Cow::Borrowed(""),
            encryption_cipher: Cow::Borrowed(""),
            encryption_keysize: 0,
            etrn_domain: Cow::Borrowed(""),
            stress: false,
            client_port: None,
            policy_context: Cow::Borrowed(""),
            server_address: None,
            server_port: None,
            compatibility_level: Cow::Borrowed(""),
            mail_version: Cow::Borrowed(""),
            tls_sni: Cow::Borrowed(""),
            peer_address: None,
        }
    }

    /// Validates and types a framed request. Unknown attributes are ignored; when a name
    /// repeats, the last value wins.
    pub fn from_raw(raw: &RawRequest) -> Result<PolicyRequest<'_>, RequestError> {
        let mut req = PolicyRequest::default();
        req.apply_raw(raw)?;
        Ok(req)
    }
}

impl<'a> PolicyRequest<'a> {
    /// Types `raw` into `self` in place: each attribute `raw` has sets its field (unknown
    /// ones are ignored; when a name repeats, the last value wins), the others keep their
    /// values. On a fresh [`PolicyRequest::default`] this is [`PolicyRequest::from_raw`]
    /// without moving the request out (it is ~600 bytes: a connection types each request
    /// straight into the place it is decided from). On an error `self` is partly updated.
    pub fn apply_raw(&mut self, raw: &'a RawRequest) -> Result<(), RequestError> {
        // One pass: the three attributes validation needs are picked up on the way.
        let (mut kind, mut state, mut client) = (None, None, None);
        for (name, v) in raw.attribute_bytes() {
            let Some(field) = Field::of(name) else {
                continue;
            };
            match field {
                Field::Request => kind = Some(v),
                Field::ProtocolState => state = Some(v),
                Field::ClientAddress => client = Some(v),
                Field::ProtocolName => self.protocol_name = Cow::Borrowed(v),
                Field::HeloName => self.helo_name = Cow::Borrowed(v),
                Field::QueueId => self.queue_id = Cow::Borrowed(v),
                Field::Sender => self.sender = lower(v),
                Field::Recipient => self.recipient = lower(v),
                Field::RecipientCount => self.recipient_count = number("recipient_count", v)?,
                Field::ClientName => self.client_name = Cow::Borrowed(v),
                Field::ReverseClientName => self.reverse_client_name = lower(v),
                Field::Instance => self.instance = Cow::Borrowed(v),
                Field::SaslMethod => self.sasl_method = Cow::Borrowed(v),
                Field::SaslUsername => self.sasl_username = lower(v),
                Field::SaslSender => self.sasl_sender = Cow::Borrowed(v),
                Field::Size => self.size = number("size", v)?,
                Field::CcertSubject => self.ccert_subject = Cow::Borrowed(v),
                Field::CcertIssuer => self.ccert_issuer = Cow::Borrowed(v),
                Field::CcertFingerprint => self.ccert_fingerprint = Cow::Borrowed(v),
                Field::CcertPubkeyFingerprint => self.ccert_pubkey_fingerprint = Cow::Borrowed(v),
                Field::EncryptionProtocol => self.encryption_protocol = Cow::Borrowed(v),
                Field::EncryptionCipher => self.encryption_cipher = Cow::Borrowed(v),
                Field::EncryptionKeysize => {
                    self.encryption_keysize = number("encryption_keysize", v)?
                }
                Field::EtrnDomain => self.etrn_domain = Cow::Borrowed(v),
                Field::Stress => self.stress = v.eq_ignore_ascii_case("yes"),
                Field::ClientPort => self.client_port = optional_number("client_port", v)?,
                Field::PolicyContext => self.policy_context = Cow::Borrowed(v),
                Field::ServerAddress => self.server_address = parse_ip(v),
                Field::ServerPort => self.server_port = optional_number("server_port", v)?,
                Field::CompatibilityLevel => self.compatibility_level = Cow::Borrowed(v),
                Field::MailVersion => self.mail_version = Cow::Borrowed(v),
                Field::TlsSni => self.tls_sni = Cow::Borrowed(v),
            }
        }
        if let Some(kind) = kind {
            if !kind.is_empty() && kind != "smtpd_access_policy" {
                return Err(RequestError::UnsupportedRequest(kind.to_string()));
            }
        }
        self.protocol_state = match state {
            None | Some("") => return Err(RequestError::MissingProtocolState),
            Some(s) => s.parse::<ProtocolState>()?,
        };
        self.client_address = match client {
            None | Some("") => return Err(RequestError::MissingClientAddress),
            Some(s) => parse_ip(s).ok_or_else(|| RequestError::InvalidClientAddress(s.into()))?,
        };
        Ok(())
    }

    /// Parses one request written as protocol text (`name=value` lines; the final blank
    /// line may be left out), as `sluice explain` and the admin service's Explain take it.
    /// The error says what is wrong, for the operator who typed it.
    pub fn parse_text(text: &str) -> Result<PolicyRequest<'static>, String> {
        let mut buf = text.trim_end().as_bytes().to_vec();
        buf.extend_from_slice(b"\n\n");
        let raw = crate::RequestDecoder::default()
            .decode(&mut buf)
            .map_err(|e| format!("not a policy request: {e}"))?
            .ok_or("not a policy request: empty")?;
        PolicyRequest::from_raw(&raw)
            .map(PolicyRequest::into_owned)
            .map_err(|e| format!("cannot evaluate this request: {e}"))
    }

    /// The same request with every text field owned (no longer borrowing its raw request).
    pub fn into_owned(self) -> PolicyRequest<'static> {
        fn own(c: Cow<'_, str>) -> Cow<'static, str> {
            Cow::Owned(c.into_owned())
        }
        PolicyRequest {
            protocol_state: self.protocol_state,
            protocol_name: own(self.protocol_name),
            helo_name: own(self.helo_name),
            queue_id: own(self.queue_id),
            sender: own(self.sender),
            recipient: own(self.recipient),
            recipient_count: self.recipient_count,
            client_address: self.client_address,
            client_name: own(self.client_name),
            reverse_client_name: own(self.reverse_client_name),
            instance: own(self.instance),
            sasl_method: own(self.sasl_method),
            sasl_username: own(self.sasl_username),
            sasl_sender: own(self.sasl_sender),
            size: self.size,
            ccert_subject: own(self.ccert_subject),
            ccert_issuer: own(self.ccert_issuer),
            ccert_fingerprint: own(self.ccert_fingerprint),
            ccert_pubkey_fingerprint: own(self.ccert_pubkey_fingerprint),
            encryption_protocol: own(self.encryption_protocol),
            encryption_cipher: own(self.encryption_cipher),
            encryption_keysize: self.encryption_keysize,
            etrn_domain: own(self.etrn_domain),
            stress: self.stress,
            client_port: self.client_port,
            policy_context: own(self.policy_context),
            server_address: self.server_address,
            server_port: self.server_port,
            compatibility_level: own(self.compatibility_level),
            mail_version: own(self.mail_version),
            tls_sni: own(self.tls_sni),
            peer_address: self.peer_address,
        }
    }

    /// Renders the request back as protocol text (attribute lines plus the blank line), as
    /// Postfix would send it. Used by tools and tests.
    pub fn to_protocol_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::with_capacity(512);
        let mut put = |k: &str, v: &dyn fmt::Display| {
            let _ = writeln!(s, "{k}={v}");
        };
        put("request", &"smtpd_access_policy");
        put("protocol_state", &self.protocol_state);
        put("protocol_name", &self.protocol_name);
        put("client_address", &self.client_address);
        put("client_name", &self.client_name);
        if let Some(p) = self.client_port {
            put("client_port", &p);
        }
        put("reverse_client_name", &self.reverse_client_name);
        if let Some(a) = self.server_address {
            put("server_address", &a);
        }
        if let Some(p) = self.server_port {
            put("server_port", &p);
        }
        put("helo_name", &self.helo_name);
        put("sender", &self.sender);
        put("recipient", &self.recipient);
        put("recipient_count", &self.recipient_count);
        put("queue_id", &self.queue_id);
        put("instance", &self.instance);
        put("size", &self.size);
        put("etrn_domain", &self.etrn_domain);
        put("stress", &if self.stress { "yes" } else { "" });
        put("sasl_method", &self.sasl_method);
        put("sasl_username", &self.sasl_username);
        put("sasl_sender", &self.sasl_sender);
        put("ccert_subject", &self.ccert_subject);
        put("ccert_issuer", &self.ccert_issuer);
        put("ccert_fingerprint", &self.ccert_fingerprint);
        put("ccert_pubkey_fingerprint", &self.ccert_pubkey_fingerprint);
        put("encryption_protocol", &self.encryption_protocol);
        put("encryption_cipher", &self.encryption_cipher);
        put("encryption_keysize", &self.encryption_keysize);
        put("policy_context", &self.policy_context);
        if !self.compatibility_level.is_empty() {
            put("compatibility_level", &self.compatibility_level);
        }
        if !self.mail_version.is_empty() {
            put("mail_version", &self.mail_version);
        }
        if !self.tls_sni.is_empty() {
            put("tls_sni", &self.tls_sni);
        }
        s.push('\n');
        s
    }
}

fn lower(v: &str) -> Cow<'_, str> {
    if needs_lowering(v.as_bytes()) {
        Cow::Owned(v.to_lowercase())
    } else {
        Cow::Borrowed(v)
    }
}

/// Whether `bytes` has an ASCII upper-case letter or a non-ASCII byte, eight bytes at a time
/// (addresses are checked on every request); the bytes after the last whole word are checked
/// as the last eight bytes, a word that overlaps the one before.
#[inline]
fn needs_lowering(bytes: &[u8]) -> bool {
    let Some(last) = bytes.last_chunk::<8>() else {
        // Shorter than a word.
        return bytes
            .iter()
            .any(|b| b.is_ascii_uppercase() || !b.is_ascii());
    };
    let (words, rest) = bytes.as_chunks::<8>();
    words
        .iter()
        .any(|w| word_needs_lowering(u64::from_le_bytes(*w)))
        || (!rest.is_empty() && word_needs_lowering(u64::from_le_bytes(*last)))
}

/// Whether the eight bytes of `w` have an ASCII upper-case letter or a non-ASCII byte.
#[inline]
fn word_needs_lowering(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    if w & HIGH != 0 {
        return true;
    }
    // Every byte is ASCII (< 0x80), so these sums never carry into the next byte: the high
    // bit of `w + (0x80 - 'A')` says `byte >= 'A'`, of `w + (0x80 - 'Z' - 1)` says
    // `byte > 'Z'`.
    let at_least_a = w + (0x80 - u64::from(b'A')) * ONES;
    let above_z = w + (0x80 - u64::from(b'Z') - 1) * ONES;
    at_least_a & !above_z & HIGH != 0
}

/// Numeric attributes: empty means 0 (Postfix's "unavailable"). Inlined: the usual value
/// (a few plain digits) takes no call and builds no `Result` in memory.
#[inline]
fn number<T: FromStr + TryFrom<u64>>(name: &'static str, v: &str) -> Result<T, RequestError> {
    match plain_digits(v).map(T::try_from) {
        Some(Ok(n)) => Ok(n),
        _ => parse_number(name, v),
    }
}

/// `v` as a number when it is at most 19 plain digits (19 digits never overflow a `u64`);
/// `Some(0)` when it is empty. One pass without branches per digit: a non-digit makes
/// `digits` false and the wrapped value is not used.
#[inline]
fn plain_digits(v: &str) -> Option<u64> {
    if v.len() > 19 {
        return None;
    }
    let (mut n, mut digits) = (0u64, true);
    for b in v.bytes() {
        let d = b.wrapping_sub(b'0');
        digits &= d <= 9;
        n = n.wrapping_mul(10).wrapping_add(u64::from(d));
    }
    digits.then_some(n)
}

/// A number that is not plain digits (spaces around it, a sign) or does not fit `T`: the
/// general parser, or the error.
#[cold]
fn parse_number<T: FromStr>(name: &'static str, v: &str) -> Result<T, RequestError> {
    v.trim().parse().map_err(|_| RequestError::InvalidNumber {
        name,
        value: v.to_string(),
    })
}

/// Optional numeric attributes: empty or 0 mean "not available".
#[inline]
fn optional_number(name: &'static str, v: &str) -> Result<Option<u16>, RequestError> {
    match number::<u16>(name, v)? {
        0 => Ok(None),
        n => Ok(Some(n)),
    }
}

/// Parses an IPv4/IPv6 address as Postfix sends it; IPv4-mapped IPv6 becomes IPv4, and an
/// `ipv6:` prefix or brackets are tolerated. Inlined: the usual case, a plain IPv4 address
/// with nothing to trim or strip, takes no call.
#[inline]
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    match parse_dotted_quad(s) {
        Some(v4) => Some(IpAddr::V4(v4)),
        None => parse_other_ip(s),
    }
}

/// [`parse_ip`] for anything but a plain IPv4 address.
fn parse_other_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    let s = s
        .strip_prefix("ipv6:")
        .or_else(|| s.strip_prefix("IPv6:"))
        .unwrap_or(s);
    let s = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    if let Some(v4) = parse_dotted_quad(s) {
        return Some(IpAddr::V4(v4));
    }
    let ip: IpAddr = s.parse().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    })
}

/// A plain `a.b.c.d` IPv4 address (what Postfix sends for IPv4 clients), parsed without the
/// general address parser; `None` for anything else (the caller falls back to it). Octets
/// are read one after the other: a first digit, then up to two more unless the first is a
/// `0` (no leading zeros: the standard parser refuses them too), then a `.` or the end.
#[inline]
fn parse_dotted_quad(s: &str) -> Option<Ipv4Addr> {
    let b = s.as_bytes();
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (k, octet) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let first = b.get(at)?.wrapping_sub(b'0');
        if first > 9 {
            return None;
        }
        at += 1;
        let mut value = u16::from(first);
        if first != 0 {
            for _ in 0..2 {
                match b.get(at) {
                    Some(&c) if c.is_ascii_digit() => {
                        value = value * 10 + u16::from(c - b'0');
                        at += 1;
                    }
                    _ => break,
                }
            }
        }
        *octet = u8::try_from(value).ok()?;
    }
    (at == b.len()).then(|| Ipv4Addr::from(octets))
}

impl Default for PolicyRequest<'_> {
    fn default() -> Self {
        PolicyRequest::new(ProtocolState::Rcpt, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The attributes Postfix sends, recognised by length and first word (see [`Field::of`])
/// rather than compared with each known name.
#[derive(Debug, Clone, Copy)]
enum Field {
    Request,
    ProtocolState,
    ClientAddress,
    ProtocolName,
    HeloName,
    QueueId,
    Sender,
    Recipient,
    RecipientCount,
    ClientName,
    ReverseClientName,
    Instance,
    SaslMethod,
    SaslUsername,
    SaslSender,
    Size,
    CcertSubject,
    CcertIssuer,
    CcertFingerprint,
    CcertPubkeyFingerprint,
    EncryptionProtocol,
    EncryptionCipher,
    EncryptionKeysize,
    EtrnDomain,
    Stress,
    ClientPort,
    PolicyContext,
    ServerAddress,
    ServerPort,
    CompatibilityLevel,
    MailVersion,
    TlsSni,
}

impl Field {
    /// The field `name` names. Length and first eight bytes (four for names shorter than
    /// eight) tell the 32 names apart (a unit test checks it); the rest of the candidate is
    /// then compared as the last eight (or four) bytes, and the middle word of names longer
    /// than 16 bytes.
    #[inline(always)]
    fn of(bytes: &[u8]) -> Option<Field> {
        use Field::*;
        let n = bytes.len();
        if n < 8 {
            let (Some(head), Some(tail)) = (bytes.first_chunk::<4>(), bytes.last_chunk::<4>())
            else {
                return None;
            };
            let (head, tail) = (u32::from_le_bytes(*head), u32::from_le_bytes(*tail));
            // Each arm compares with its own name: the name's words are constants in the
            // code, and once this is inlined each field has its own path to the code that
            // stores it.
            let is = |known: &str, field| (tail == half(known, n - 4)).then_some(field);
            return match (n, head) {
                (4, h) if h == half("size", 0) => is("size", Size),
                (6, h) if h == half("sender", 0) => is("sender", Sender),
                (6, h) if h == half("stress", 0) => is("stress", Stress),
                (7, h) if h == half("request", 0) => is("request", Request),
                (7, h) if h == half("tls_sni", 0) => is("tls_sni", TlsSni),
                _ => None,
            };
        }
        let (Some(head), Some(tail)) = (bytes.first_chunk::<8>(), bytes.last_chunk::<8>()) else {
            return None;
        };
        let (head, tail) = (u64::from_le_bytes(*head), u64::from_le_bytes(*tail));
        let is = |known: &str, field| {
            let middle = || {
                bytes[8..]
                    .first_chunk::<8>()
                    .map(|w| u64::from_le_bytes(*w))
            };
            let middle = n <= 16 || middle() == Some(word(known, 8));
            (tail == word(known, n - 8) && middle).then_some(field)
        };
        match (n, head) {
            (8, h) if h == word("instance", 0) => is("instance", Instance),
            (8, h) if h == word("queue_id", 0) => is("queue_id", QueueId),
            (9, h) if h == word("helo_name", 0) => is("helo_name", HeloName),
            (9, h) if h == word("recipient", 0) => is("recipient", Recipient),
            (11, h) if h == word("client_name", 0) => is("client_name", ClientName),
            (11, h) if h == word("client_port", 0) => is("client_port", ClientPort),
            (11, h) if h == word("etrn_domain", 0) => is("etrn_domain", EtrnDomain),
            (11, h) if h == word("sasl_method", 0) => is("sasl_method", SaslMethod),
            (11, h) if h == word("sasl_sender", 0) => is("sasl_sender", SaslSender),
            (11, h) if h == word("server_port", 0) => is("server_port", ServerPort),
            (12, h) if h == word("ccert_issuer", 0) => is("ccert_issuer", CcertIssuer),
            (12, h) if h == word("mail_version", 0) => is("mail_version", MailVersion),
            (13, h) if h == word("ccert_subject", 0) => is("ccert_subject", CcertSubject),
            (13, h) if h == word("protocol_name", 0) => is("protocol_name", ProtocolName),
            (13, h) if h == word("sasl_username", 0) => is("sasl_username", SaslUsername),
            (14, h) if h == word("client_address", 0) => is("client_address", ClientAddress),
            (14, h) if h == word("policy_context", 0) => is("policy_context", PolicyContext),
            (14, h) if h == word("protocol_state", 0) => is("protocol_state", ProtocolState),
            (14, h) if h == word("server_address", 0) => is("server_address", ServerAddress),
            (15, h) if h == word("recipient_count", 0) => is("recipient_count", RecipientCount),
            (17, h) if h == word("ccert_fingerprint", 0) => {
                is("ccert_fingerprint", CcertFingerprint)
            }
            (17, h) if h == word("encryption_cipher", 0) => {
                is("encryption_cipher", EncryptionCipher)
            }
            (18, h) if h == word("encryption_keysize", 0) => {
                is("encryption_keysize", EncryptionKeysize)
            }
            (19, h) if h == word("compatibility_level", 0) => {
                is("compatibility_level", CompatibilityLevel)
            }
            (19, h) if h == word("encryption_protocol", 0) => {
                is("encryption_protocol", EncryptionProtocol)
            }
            (19, h) if h == word("reverse_client_name", 0) => {
                is("reverse_client_name", ReverseClientName)
            }
            (24, h) if h == word("ccert_pubkey_fingerprint", 0) => {
                is("ccert_pubkey_fingerprint", CcertPubkeyFingerprint)
            }
            _ => None,
        }
    }
}

/// The eight bytes of a known name at `at`, as a word (a constant once inlined).
#[inline(always)]
fn word(name: &str, at: usize) -> u64 {
    u64::from_le_bytes(name.as_bytes()[at..at + 8].try_into().expect("eight bytes"))
}

/// The four bytes of a known name at `at`, as a word (a constant once inlined).
#[inline(always)]
fn half(name: &str, at: usize) -> u32 {
    u32::from_le_bytes(name.as_bytes()[at..at + 4].try_into().expect("four bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dotted-quad parser before the octet-by-octet one (the reference).
    fn dotted_quad_reference(s: &str) -> Option<Ipv4Addr> {
        let mut octets = [0u8; 4];
        let (mut index, mut value, mut digits) = (0usize, 0u16, 0u8);
        for &b in s.as_bytes() {
            match b {
                b'0'..=b'9' => {
                    if digits == 3 || (digits == 1 && value == 0) {
                        return None;
                    }
                    value = value * 10 + u16::from(b - b'0');
                    digits += 1;
                }
                b'.' if digits > 0 && index < 3 => {
                    octets[index] = u8::try_from(value).ok()?;
                    (index, value, digits) = (index + 1, 0, 0);
                }
                _ => return None,
            }
        }
        if index != 3 || digits == 0 {
            return None;
        }
        octets[3] = u8::try_from(value).ok()?;
        Some(Ipv4Addr::from(octets))
    }

    fn xorshift(seed: &mut u64, n: u64) -> u64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    }

    #[test]
    fn dotted_quads_parse_as_the_reference_and_the_standard_parser_do() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let alphabet = b"0123456789.0125.x ";
        let mut parsed = 0;
        for i in 0..200_000 {
            let s: String = if i % 2 == 0 {
                // Mostly well-formed: four octets of 1-4 digits, sometimes damaged.
                let mut s = (0..4)
                    .map(|_| {
                        (0..1 + xorshift(&mut seed, 4))
                            .map(|_| char::from(b'0' + xorshift(&mut seed, 10) as u8))
                            .collect::<String>()
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                if xorshift(&mut seed, 4) == 0 {
                    let at = xorshift(&mut seed, s.len() as u64 + 1) as usize;
                    let c = alphabet[xorshift(&mut seed, alphabet.len() as u64) as usize];
                    s.insert(at, char::from(c));
                }
                s
            } else {
                (0..xorshift(&mut seed, 18))
                    .map(|_| {
                        char::from(alphabet[xorshift(&mut seed, alphabet.len() as u64) as usize])
                    })
                    .collect()
            };
            let got = parse_dotted_quad(&s);
            assert_eq!(got, dotted_quad_reference(&s), "{s:?}");
            assert_eq!(got, s.parse::<Ipv4Addr>().ok(), "{s:?}");
            parsed += usize::from(got.is_some());
        }
        assert!(
            parsed > 3_000,
            "too few valid addresses generated: {parsed}"
        );
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "256.1.1.1",
            "01.1.1.1",
            "1.1.1",
            "1.1.1.1.",
            "",
        ] {
            assert_eq!(parse_dotted_quad(s), dotted_quad_reference(s), "{s:?}");
        }
    }

    #[test]
    fn numbers_parse_as_the_standard_parser_does() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let alphabet = b"0123456789 +-a";
        for i in 0..100_000 {
            let len = xorshift(&mut seed, if i % 2 == 0 { 6 } else { 22 });
            let s: String = (0..len)
                .map(|_| {
                    let n = if i % 3 == 0 { alphabet.len() } else { 10 };
                    char::from(alphabet[xorshift(&mut seed, n as u64) as usize])
                })
                .collect();
            let expected_u64 = if s.is_empty() {
                Some(0)
            } else {
                s.trim().parse::<u64>().ok()
            };
            assert_eq!(number::<u64>("n", &s).ok(), expected_u64, "{s:?}");
            let expected_u16 = if s.is_empty() {
                Some(0)
            } else {
                s.trim().parse::<u16>().ok()
            };
            assert_eq!(number::<u16>("n", &s).ok(), expected_u16, "{s:?}");
        }
    }

    /// Every attribute name Postfix sends, with its field.
    const NAMES: [&str; 32] = [
        "request",
        "protocol_state",
        "client_address",
        "protocol_name",
        "helo_name",
        "queue_id",
        "sender",
        "recipient",
        "recipient_count",
        "client_name",
        "reverse_client_name",
        "instance",
        "sasl_method",
        "sasl_username",
        "sasl_sender",
        "size",
        "ccert_subject",
        "ccert_issuer",
        "ccert_fingerprint",
        "ccert_pubkey_fingerprint",
        "encryption_protocol",
        "encryption_cipher",
        "encryption_keysize",
        "etrn_domain",
        "stress",
        "client_port",
        "policy_context",
        "server_address",
        "server_port",
        "compatibility_level",
        "mail_version",
        "tls_sni",
    ];

    #[test]
    fn lowering_is_needed_exactly_for_upper_case_and_non_ascii_bytes() {
        let naive = |b: &[u8]| b.iter().any(|b| b.is_ascii_uppercase() || !b.is_ascii());
        for byte in 0..=255u8 {
            for len in 1..20 {
                for at in 0..len {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = byte;
                    assert_eq!(needs_lowering(&bytes), naive(&bytes), "{bytes:?}");
                }
            }
        }
        assert!(!needs_lowering(b""));
        assert!(!needs_lowering(b"user41@domain1.example"));
        assert!(needs_lowering(b"user41@domain1.exampLe"));
    }

    #[test]
    fn every_known_name_is_recognised_and_only_it() {
        for name in NAMES {
            let field =
                Field::of(name.as_bytes()).unwrap_or_else(|| panic!("{name} not recognised"));
            assert!(
                format!("{field:?}").eq_ignore_ascii_case(&name.replace('_', "")),
                "{name} -> {field:?}"
            );
            // One byte different anywhere: not a known name.
            for at in 0..name.len() {
                let mut other = name.as_bytes().to_vec();
                other[at] = b'#';
                assert!(Field::of(&other).is_none(), "{other:?}");
            }
        }
        for unknown in ["", "s", "sizE", "x_future_attr", "senders", "recipient "] {
            assert!(Field::of(unknown.as_bytes()).is_none(), "{unknown:?}");
        }
    }
}
