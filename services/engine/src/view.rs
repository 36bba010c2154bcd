//! What policy matching and counter keys read from one request, derived once per request:
//! the sender and recipient split at their last `@` (otherwise every address spec and
//! address track would scan the address again).

use crate::spec::Side;
use sluice_protocol::PolicyRequest;

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

/// A request with its addresses split.
pub(crate) struct RequestView<'r, 'a> {
    /// The request.
    pub req: &'r PolicyRequest<'a>,
    /// `sender`.
    pub sender: Address<'r>,
    /// `recipient`.
    pub recipient: Address<'r>,
}

impl<'r, 'a> RequestView<'r, 'a> {
    /// The view of `req`.
    pub fn new(req: &'r PolicyRequest<'a>) -> Self {
        RequestView {
            req,
            sender: Address::new(&req.sender),
            recipient: Address::new(&req.recipient),
        }
    }

    /// The address a spec on `side` looks at.
    pub fn address(&self, side: Side) -> &Address<'r> {
        match side {
            Side::Source => &self.sender,
            Side::Destination => &self.recipient,
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
