//! Requests with the attributes (and the order, and the empty values) Postfix sends.

use std::fmt::Write;

/// A policy request as attribute pairs. Constructors fill every attribute Postfix 3.7 sends
/// (see `captured-requests-3.7.11.txt`); setters replace or remove single attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    attrs: Vec<(String, String)>,
}

/// A `RCPT` request from `sender` to `recipient`, from client `client_ip`, for message
/// `instance`.
pub fn rcpt(sender: &str, recipient: &str, client_ip: &str, instance: &str) -> Request {
    Request::new("RCPT", client_ip)
        .set("sender", sender)
        .set("recipient", recipient)
        .set("instance", instance)
}

/// An `END-OF-MESSAGE` request for message `instance` with its real `size` and
/// `recipient_count`.
pub fn end_of_message(
    sender: &str,
    recipient_count: u64,
    size: u64,
    client_ip: &str,
    instance: &str,
) -> Request {
    Request::new("END-OF-MESSAGE", client_ip)
        .set("sender", sender)
        .set("recipient_count", &recipient_count.to_string())
        .set("size", &size.to_string())
        .set("instance", instance)
}

impl Request {
    /// A request in `protocol_state` (`RCPT`, `END-OF-MESSAGE`, `CONNECT`, ...) from
    /// `client_ip`, with every other attribute as Postfix sends it when unknown.
    pub fn new(protocol_state: &str, client_ip: &str) -> Request {
        let pairs = [
            ("request", "smtpd_access_policy"),
            ("protocol_state", protocol_state),
            ("protocol_name", "ESMTP"),
            ("client_address", client_ip),
            ("client_name", "unknown"),
            ("client_port", "40000"),
            ("reverse_client_name", "unknown"),
            ("server_address", "127.0.0.1"),
            ("server_port", "25"),
            ("helo_name", "client.example.net"),
            ("sender", ""),
            ("recipient", ""),
            ("recipient_count", "0"),
            ("queue_id", ""),
            ("instance", ""),
            ("size", "0"),
            ("etrn_domain", ""),
            ("stress", ""),
            ("sasl_method", ""),
            ("sasl_username", ""),
            ("sasl_sender", ""),
            ("ccert_subject", ""),
            ("ccert_issuer", ""),
            ("ccert_fingerprint", ""),
            ("ccert_pubkey_fingerprint", ""),
            ("encryption_protocol", ""),
            ("encryption_cipher", ""),
            ("encryption_keysize", "0"),
            ("policy_context", ""),
        ];
        Request {
            attrs: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A request made of exactly `attrs`.
    pub fn from_attrs(attrs: &[(&str, &str)]) -> Request {
        Request {
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// Sets `name` to `value` (replacing it, or appending it if absent).
    pub fn set(mut self, name: &str, value: &str) -> Request {
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value.to_string(),
            None => self.attrs.push((name.to_string(), value.to_string())),
        }
        self
    }

    /// Removes `name`.
    pub fn without(mut self, name: &str) -> Request {
        self.attrs.retain(|(k, _)| k != name);
        self
    }

    /// Sets `sasl_username` (and `sasl_method=PLAIN`).
    pub fn sasl(self, username: &str) -> Request {
        self.set("sasl_method", "PLAIN")
            .set("sasl_username", username)
    }

    /// Sets `size`.
    pub fn size(self, bytes: u64) -> Request {
        self.set("size", &bytes.to_string())
    }

    /// Sets `helo_name`.
    pub fn helo(self, helo: &str) -> Request {
        self.set("helo_name", helo)
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The attributes, in order.
    pub fn attrs(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// The protocol bytes: `name=value` lines and the blank line.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::with_capacity(600);
        for (k, v) in &self.attrs {
            let _ = writeln!(s, "{k}={v}");
        }
        s.push('\n');
        s.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rcpt_looks_like_postfix() {
        let r = rcpt("a@example.com", "b@example.org", "192.0.2.1", "i1");
        assert_eq!(r.attrs().len(), 29);
        assert_eq!(r.get("protocol_state"), Some("RCPT"));
        assert_eq!(r.get("recipient"), Some("b@example.org"));
        let text = String::from_utf8(r.without("policy_context").to_bytes()).unwrap();
        assert!(text.starts_with("request=smtpd_access_policy\nprotocol_state=RCPT\n"));
        assert!(text.ends_with("encryption_keysize=0\n\n"));
    }

    #[test]
    fn set_replaces_or_appends() {
        let r = Request::new("RCPT", "192.0.2.1")
            .set("size", "10")
            .set("tls_sni", "x");
        assert_eq!(r.get("size"), Some("10"));
        assert_eq!(r.attrs().last().unwrap().0, "tls_sni");
    }
}
