//! The typed policy request, validated from a [`RawRequest`].

use crate::codec::RawRequest;
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRequest {
    /// `protocol_state`.
    pub protocol_state: ProtocolState,
    /// `protocol_name` (SMTP, ESMTP, ...).
    pub protocol_name: String,
    /// `helo_name` (case preserved).
    pub helo_name: String,
    /// `queue_id` (may be empty before MAIL FROM or without a queue file yet).
    pub queue_id: String,
    /// `sender`, lower-cased; empty for the null sender.
    pub sender: String,
    /// `recipient`, lower-cased.
    pub recipient: String,
    /// `recipient_count` (non-zero only at DATA and END-OF-MESSAGE).
    pub recipient_count: u64,
    /// `client_address`. IPv4-mapped IPv6 addresses are turned into IPv4.
    pub client_address: IpAddr,
    /// `client_name` (verified reverse name or `unknown`).
    pub client_name: String,
    /// `reverse_client_name` (unverified reverse name), lower-cased.
    pub reverse_client_name: String,
    /// `instance`: correlates the requests of one message on one smtpd.
    pub instance: String,
    /// `sasl_method`.
    pub sasl_method: String,
    /// `sasl_username`, lower-cased; empty when not authenticated.
    pub sasl_username: String,
    /// `sasl_sender`.
    pub sasl_sender: String,
    /// `size`: declared SIZE= at RCPT, the real size at END-OF-MESSAGE (bytes).
    pub size: u64,
    /// `ccert_subject`.
    pub ccert_subject: String,
    /// `ccert_issuer`.
    pub ccert_issuer: String,
    /// `ccert_fingerprint`.
    pub ccert_fingerprint: String,
    /// `ccert_pubkey_fingerprint`.
    pub ccert_pubkey_fingerprint: String,
    /// `encryption_protocol`.
    pub encryption_protocol: String,
    /// `encryption_cipher`.
    pub encryption_cipher: String,
    /// `encryption_keysize` (0 in plaintext).
    pub encryption_keysize: u32,
    /// `etrn_domain`.
    pub etrn_domain: String,
    /// `stress=yes` when smtpd is under stress.
    pub stress: bool,
    /// `client_port`.
    pub client_port: Option<u16>,
    /// `policy_context`.
    pub policy_context: String,
    /// `server_address`.
    pub server_address: Option<IpAddr>,
    /// `server_port`.
    pub server_port: Option<u16>,
    /// `compatibility_level`.
    pub compatibility_level: String,
    /// `mail_version`.
    pub mail_version: String,
    /// `tls_sni`.
    pub tls_sni: String,
    /// Not a protocol attribute: the address of the Postfix host that sent the request
    /// (the TCP peer), for `[ip/cidr]` member specs. `None` over a Unix socket.
    pub peer_address: Option<IpAddr>,
}

impl PolicyRequest {
    /// A request with the given state and client address and every other field empty.
    /// Handy for `explain` and tests.
    pub fn new(protocol_state: ProtocolState, client_address: IpAddr) -> Self {
        PolicyRequest {
            protocol_state,
            protocol_name: String::new(),
            helo_name: String::new(),
            queue_id: String::new(),
            sender: String::new(),
            recipient: String::new(),
            recipient_count: 0,
            client_address,
            client_name: String::new(),
            reverse_client_name: String::new(),
            instance: String::new(),
            sasl_method: String::new(),
            sasl_username: String::new(),
            sasl_sender: String::new(),
            size: 0,
            ccert_subject: String::new(),
            ccert_issuer: String::new(),
            ccert_fingerprint: String::new(),
            ccert_pubkey_fingerprint: String::new(),
            encryption_protocol: String::new(),
            encryption_cipher: String::new(),
            encryption_keysize: 0,
            etrn_domain: String::new(),
            stress: false,
            client_port: None,
            policy_context: String::new(),
            server_address: None,
            server_port: None,
            compatibility_level: String::new(),
            mail_version: String::new(),
            tls_sni: String::new(),
            peer_address: None,
        }
    }

    /// Validates and types a framed request. Unknown attributes are ignored; when a name
    /// repeats, the last value wins.
    pub fn from_raw(raw: &RawRequest) -> Result<Self, RequestError> {
        // One pass: the three attributes validation needs are picked up on the way.
        let (mut kind, mut state, mut client) = (None, None, None);
        let mut req = PolicyRequest::new(ProtocolState::Rcpt, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        for (name, v) in raw.attributes() {
            let Some(field) = Field::of(name) else {
                continue;
            };
            match field {
                Field::Request => kind = Some(v),
                Field::ProtocolState => state = Some(v),
                Field::ClientAddress => client = Some(v),
                Field::ProtocolName => req.protocol_name = v.to_string(),
                Field::HeloName => req.helo_name = v.to_string(),
                Field::QueueId => req.queue_id = v.to_string(),
                Field::Sender => req.sender = lower(v),
                Field::Recipient => req.recipient = lower(v),
                Field::RecipientCount => req.recipient_count = number("recipient_count", v)?,
                Field::ClientName => req.client_name = v.to_string(),
                Field::ReverseClientName => req.reverse_client_name = lower(v),
                Field::Instance => req.instance = v.to_string(),
                Field::SaslMethod => req.sasl_method = v.to_string(),
                Field::SaslUsername => req.sasl_username = lower(v),
                Field::SaslSender => req.sasl_sender = v.to_string(),
                Field::Size => req.size = number("size", v)?,
                Field::CcertSubject => req.ccert_subject = v.to_string(),
                Field::CcertIssuer => req.ccert_issuer = v.to_string(),
                Field::CcertFingerprint => req.ccert_fingerprint = v.to_string(),
                Field::CcertPubkeyFingerprint => req.ccert_pubkey_fingerprint = v.to_string(),
                Field::EncryptionProtocol => req.encryption_protocol = v.to_string(),
                Field::EncryptionCipher => req.encryption_cipher = v.to_string(),
                Field::EncryptionKeysize => {
                    req.encryption_keysize = number("encryption_keysize", v)?
                }
                Field::EtrnDomain => req.etrn_domain = v.to_string(),
                Field::Stress => req.stress = v.eq_ignore_ascii_case("yes"),
                Field::ClientPort => req.client_port = optional_number("client_port", v)?,
                Field::PolicyContext => req.policy_context = v.to_string(),
                Field::ServerAddress => req.server_address = parse_ip(v),
                Field::ServerPort => req.server_port = optional_number("server_port", v)?,
                Field::CompatibilityLevel => req.compatibility_level = v.to_string(),
                Field::MailVersion => req.mail_version = v.to_string(),
                Field::TlsSni => req.tls_sni = v.to_string(),
            }
        }
        if let Some(kind) = kind {
            if !kind.is_empty() && kind != "smtpd_access_policy" {
                return Err(RequestError::UnsupportedRequest(kind.to_string()));
            }
        }
        req.protocol_state = match state {
            None | Some("") => return Err(RequestError::MissingProtocolState),
            Some(s) => s.parse::<ProtocolState>()?,
        };
        req.client_address = match client {
            None | Some("") => return Err(RequestError::MissingClientAddress),
            Some(s) => parse_ip(s).ok_or_else(|| RequestError::InvalidClientAddress(s.into()))?,
        };
        Ok(req)
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

fn lower(v: &str) -> String {
    if v.bytes().any(|b| b.is_ascii_uppercase()) {
        v.to_lowercase()
    } else {
        v.to_string()
    }
}

/// Numeric attributes: empty means 0 (Postfix's "unavailable").
fn number<T: FromStr + Default + TryFrom<u64>>(
    name: &'static str,
    v: &str,
) -> Result<T, RequestError> {
    if v.is_empty() {
        return Ok(T::default());
    }
    // The usual case, a few plain digits, without the general parser.
    if v.len() <= 19 && v.bytes().all(|b| b.is_ascii_digit()) {
        let n = v.bytes().fold(0u64, |n, b| n * 10 + u64::from(b - b'0'));
        if let Ok(n) = T::try_from(n) {
            return Ok(n);
        }
    }
    v.trim().parse().map_err(|_| RequestError::InvalidNumber {
        name,
        value: v.to_string(),
    })
}

/// Optional numeric attributes: empty or 0 mean "not available".
fn optional_number(name: &'static str, v: &str) -> Result<Option<u16>, RequestError> {
    match number::<u16>(name, v)? {
        0 => Ok(None),
        n => Ok(Some(n)),
    }
}

/// Parses an IPv4/IPv6 address as Postfix sends it; IPv4-mapped IPv6 becomes IPv4, and an
/// `ipv6:` prefix or brackets are tolerated.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
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
/// general address parser; `None` for anything else (the caller falls back to it).
fn parse_dotted_quad(s: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let (mut index, mut value, mut digits) = (0usize, 0u16, 0u8);
    for &b in s.as_bytes() {
        match b {
            b'0'..=b'9' => {
                // No leading zeros (the standard parser refuses them too) and at most three
                // digits.
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

impl Default for PolicyRequest {
    fn default() -> Self {
        PolicyRequest::new(ProtocolState::Rcpt, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
}

/// The attributes Postfix sends, recognised by length first (one comparison per attribute
/// instead of one per known name).
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
    fn of(name: &str) -> Option<Field> {
        use Field::*;
        let f = match name.len() {
            4 => match name {
                "size" => Size,
                _ => return None,
            },
            6 => match name {
                "sender" => Sender,
                "stress" => Stress,
                _ => return None,
            },
            7 => match name {
                "request" => Request,
                "tls_sni" => TlsSni,
                _ => return None,
            },
            8 => match name {
                "queue_id" => QueueId,
                "instance" => Instance,
                _ => return None,
            },
            9 => match name {
                "recipient" => Recipient,
                "helo_name" => HeloName,
                _ => return None,
            },
            11 => match name {
                "client_name" => ClientName,
                "sasl_method" => SaslMethod,
                "sasl_sender" => SaslSender,
                "etrn_domain" => EtrnDomain,
                "client_port" => ClientPort,
                "server_port" => ServerPort,
                _ => return None,
            },
            12 => match name {
                "ccert_issuer" => CcertIssuer,
                "mail_version" => MailVersion,
                _ => return None,
            },
            13 => match name {
                "protocol_name" => ProtocolName,
                "sasl_username" => SaslUsername,
                "ccert_subject" => CcertSubject,
                _ => return None,
            },
            14 => match name {
                "protocol_state" => ProtocolState,
                "client_address" => ClientAddress,
                "policy_context" => PolicyContext,
                "server_address" => ServerAddress,
                _ => return None,
            },
            15 => match name {
                "recipient_count" => RecipientCount,
                _ => return None,
            },
            17 => match name {
                "ccert_fingerprint" => CcertFingerprint,
                "encryption_cipher" => EncryptionCipher,
                _ => return None,
            },
            18 => match name {
                "encryption_keysize" => EncryptionKeysize,
                _ => return None,
            },
            19 => match name {
                "reverse_client_name" => ReverseClientName,
                "encryption_protocol" => EncryptionProtocol,
                "compatibility_level" => CompatibilityLevel,
                _ => return None,
            },
            24 => match name {
                "ccert_pubkey_fingerprint" => CcertPubkeyFingerprint,
                _ => return None,
            },
            _ => return None,
        };
        Some(f)
    }
}
