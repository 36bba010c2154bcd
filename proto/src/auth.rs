//! The shared bearer token of the gRPC link: the edge's interceptor that adds
//! `authorization: Bearer <token>` to every call ([`AddToken`]) and the quota service's
//! interceptor that refuses a call without that exact token with `UNAUTHENTICATED`
//! ([`RequireToken`], compared in constant time).
//!
//! The token comes from a file (a mounted secret): [`BearerToken::from_file_text`] takes
//! the file's text, trims surrounding whitespace (a trailing newline is common) and refuses
//! an empty token or one that cannot be sent as an HTTP header value.

use std::fmt;
use subtle::ConstantTimeEq;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The metadata key carrying the token.
pub const AUTHORIZATION: &str = "authorization";

/// Shortest token accepted: guessing it must be hopeless.
pub const MIN_TOKEN_LEN: usize = 16;

/// Why a token file's text is not a usable token.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Nothing but whitespace.
    #[error("the token file is empty: write a random token into it (e.g. `openssl rand -hex 32`)")]
    Empty,
    /// Too short to resist guessing.
    #[error("the token is {0} characters long, at least {MIN_TOKEN_LEN} are needed: use a random one (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    /// Not sendable as an HTTP/2 header value.
    #[error("the token holds characters other than visible ASCII: use a random hex or base64 token (e.g. `openssl rand -hex 32`)")]
    NotVisibleAscii,
}

/// A shared secret both sides of the gRPC link hold. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// The token in a file's text (surrounding whitespace removed).
    pub fn from_file_text(text: &str) -> Result<Self, TokenError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty);
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::NotVisibleAscii);
        }
        if token.len() < MIN_TOKEN_LEN {
            return Err(TokenError::TooShort(token.len()));
        }
        Ok(BearerToken(token.to_string()))
    }

    /// The `authorization` header value: `Bearer <token>`.
    fn header_value(&self) -> MetadataValue<Ascii> {
        format!("Bearer {}", self.0)
            .parse()
            .expect("a visible-ASCII token forms a header value")
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

/// The edge's interceptor: adds the token (if any) to every call.
#[derive(Clone, Debug, Default)]
pub struct AddToken(Option<MetadataValue<Ascii>>);

impl AddToken {
    /// Adds `token` to every call; `None` adds nothing.
    pub fn new(token: Option<&BearerToken>) -> Self {
        AddToken(token.map(BearerToken::header_value))
    }
}

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert(AUTHORIZATION, v.clone());
        }
        Ok(request)
    }
}

/// The quota service's interceptor: with a token configured, a call must carry
/// `authorization: Bearer <token>` or it is refused with `UNAUTHENTICATED` before any
/// handler runs; without one, every call passes (authentication is then mTLS's job, or
/// explicitly turned off).
#[derive(Clone, Debug, Default)]
pub struct RequireToken(Option<BearerToken>);

impl RequireToken {
    /// Requires `token` on every call; `None` requires nothing.
    pub fn new(token: Option<BearerToken>) -> Self {
        RequireToken(token)
    }

    /// Whether `header` (the `authorization` value) carries the token. The token bytes are
    /// compared in constant time (only the length can be learnt from timing).
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        bool::from(given.ct_eq(expected.0.as_bytes()))
    }
}

impl Interceptor for RequireToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get(AUTHORIZATION)
            .map(MetadataValue::as_bytes);
        if self.accepts(header) {
            Ok(request)
        } else {
            Err(Status::unauthenticated(
                "missing or wrong bearer token: set the edge's quota_token_file to the quota service's grpc_token_file",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(s: &str) -> BearerToken {
        BearerToken::from_file_text(s).unwrap()
    }

    #[test]
    fn token_files_are_trimmed_and_checked() {
        assert_eq!(token("0123456789abcdef\n"), token("0123456789abcdef"));
        assert_eq!(BearerToken::from_file_text(" \n"), Err(TokenError::Empty));
        assert_eq!(
            BearerToken::from_file_text("short"),
            Err(TokenError::TooShort(5))
        );
        assert_eq!(
            BearerToken::from_file_text("0123456789abcdef\u{e9}"),
            Err(TokenError::NotVisibleAscii)
        );
        assert_eq!(
            format!("{:?}", token("0123456789abcdef")),
            "BearerToken(***)"
        );
    }

    #[test]
    fn only_the_exact_token_passes() {
        let t = token("0123456789abcdef");
        let check = RequireToken::new(Some(t.clone()));
        assert!(check.accepts(Some(b"Bearer 0123456789abcdef")));
        assert!(!check.accepts(None));
        assert!(!check.accepts(Some(b"Bearer 0123456789abcdeF")));
        assert!(!check.accepts(Some(b"Bearer 0123456789abcde")));
        assert!(!check.accepts(Some(b"Bearer 0123456789abcdef0")));
        assert!(!check.accepts(Some(b"0123456789abcdef")));
        assert!(RequireToken::new(None).accepts(None));
        let mut add = AddToken::new(Some(&t));
        let r = add.call(Request::new(())).unwrap();
        let mut require = check;
        assert!(require.call(r).is_ok());
        let refused = require.call(Request::new(())).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
}
