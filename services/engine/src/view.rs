//! What policy matching and counter keys read from one request, derived once per request:
//! the sender and recipient split at their last `@` (otherwise every address spec and
//! address track would scan the address again).

use sluice_protocol::PolicyRequest;
use std::net::IpAddr;

/// An address and where its last `@` is.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Address<'r> {
    /// The address as the request gives it.
    pub text: &'r str,
    /// Byte offset of the last `@` (`None`: no `@`, all local part).
    pub at: Option<usize>,
}

impl<'r> Address<'r> {
    /// `text`, split once.
    pub fn new(text: &'r str) -> Self {
        // A vector search from the end (a byte loop costs ~3 instructions per byte).
        Address {
            text,
            at: memchr::memrchr(b'@', text.as_bytes()),
        }
    }

    /// The local part (everything before the last `@`).
    pub fn user(&self) -> &'r str {
        self.at.map_or(self.text, |at| &self.text[..at])
    }

    /// The domain (after the last `@`; empty without one).
    pub fn domain(&self) -> &'r str {
        self.at.map_or("", |at| &self.text[at + 1..])
    }
}

/// The source side of a request: everything a source spec may read, and nothing else
/// ([`crate::spec::SpecKind`] matches the source side from this alone). The recipients of
/// one message share it, so a connection keeps which members' sources matched for the
/// last one seen ([`KeptSource`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SourceSide<'r> {
    /// `client_address`.
    pub client: IpAddr,
    /// The address of the host asking (the Postfix server).
    pub peer: Option<IpAddr>,
    /// `sender`, split.
    pub sender: Address<'r>,
    /// `sasl_username`.
    pub sasl: &'r str,
    /// `reverse_client_name`.
    pub reverse: &'r str,
    /// `server_port`: the listener's port.
    pub server_port: Option<u16>,
    /// `server_address`: the listener's address.
    pub server_address: Option<IpAddr>,
    /// `policy_context`.
    pub policy_context: &'r str,
}

/// An owned copy of a [`SourceSide`], to tell whether a later request has the same one.
/// Both methods take every field apart (no `..`): a field added to [`SourceSide`] does not
/// compile until it is kept and compared here.
#[derive(Debug, Default)]
pub(crate) struct KeptSource {
    client: Option<IpAddr>,
    peer: Option<IpAddr>,
    sender: String,
    sasl: String,
    reverse: String,
    server_port: Option<u16>,
    server_address: Option<IpAddr>,
    policy_context: String,
}

impl KeptSource {
    /// Whether `now` is the kept source side.
    pub fn is(&self, now: &SourceSide<'_>) -> bool {
        let SourceSide {
            client,
            peer,
            sender,
            sasl,
            reverse,
            server_port,
            server_address,
            policy_context,
        } = now;
        self.client == Some(*client)
            && self.peer == *peer
            && self.sender == sender.text
            && self.sasl == *sasl
            && self.reverse == *reverse
            && self.server_port == *server_port
            && self.server_address == *server_address
            && self.policy_context == *policy_context
    }

    /// Keeps `now` (reusing the strings' buffers).
    pub fn keep(&mut self, now: &SourceSide<'_>) {
        let SourceSide {
            client,
            peer,
            sender,
            sasl,
            reverse,
            server_port,
            server_address,
            policy_context,
        } = now;
        self.client = Some(*client);
        self.peer = *peer;
        self.server_port = *server_port;
        self.server_address = *server_address;
        for (kept, now) in [
            (&mut self.sender, sender.text),
            (&mut self.sasl, *sasl),
            (&mut self.reverse, *reverse),
            (&mut self.policy_context, *policy_context),
        ] {
            kept.clear();
            kept.push_str(now);
        }
    }
}

/// A request with its addresses split.
pub(crate) struct RequestView<'r, 'a> {
    /// The request.
    pub req: &'r PolicyRequest<'a>,
    /// The source side (with `sender`, split).
    pub source: SourceSide<'r>,
    /// `recipient`.
    pub recipient: Address<'r>,
}

impl<'r, 'a> RequestView<'r, 'a> {
    /// The view of `req`.
    pub fn new(req: &'r PolicyRequest<'a>) -> Self {
        RequestView {
            req,
            source: SourceSide {
                client: req.client_address,
                peer: req.peer_address,
                sender: Address::new(&req.sender),
                sasl: &req.sasl_username,
                reverse: &req.reverse_client_name,
                server_port: req.server_port,
                server_address: req.server_address,
                policy_context: &req.policy_context,
            },
            recipient: Address::new(&req.recipient),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Addresses with zero, one and two `@`, empty parts and nothing at all, with their
    /// local part and domain (split at the last `@`; no `@`: all local part).
    pub(crate) const SAMPLE_ADDRESSES: [(&str, &str, &str); 8] = [
        ("a@b", "a", "b"),
        ("alice@example.com", "alice", "example.com"),
        ("x@y@z", "x@y", "z"),
        ("@d", "", "d"),
        ("u@", "u", ""),
        ("@", "", ""),
        ("plain", "plain", ""),
        ("", "", ""),
    ];

    #[test]
    fn splits_at_the_last_at_sign() {
        for (addr, user, domain) in SAMPLE_ADDRESSES {
            let a = Address::new(addr);
            assert_eq!((a.user(), a.domain()), (user, domain), "{addr:?}");
        }
    }
}
