//! Secrets: argon2id password hashes, random API tokens and session cookies, and the SHA-256
//! digests under which tokens and sessions are stored (the database never holds a token, a
//! cookie or a password).

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use sha2::Digest;

/// Shortest password accepted for an account.
pub const MIN_PASSWORD_LEN: usize = 12;

/// Why a password cannot be used or hashed.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Too short.
    #[error("the password is too short: use at least {MIN_PASSWORD_LEN} characters")]
    TooShort,
    /// The system's random source failed.
    #[error("cannot read random bytes from the system: {0}")]
    Random(String),
    /// argon2 failed (should not happen with the default parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The argon2id PHC string of `password` (random salt, the crate's default parameters).
pub fn hash_password(password: &str) -> Result<String, SecretError> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(SecretError::TooShort);
    }
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| SecretError::Hash(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// A hash to verify against when the account does not exist, so that a wrong name takes as
/// long as a wrong password.
pub fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| {
        hash_password("not-a-password-of-anyone").unwrap_or_else(|_| String::from("$invalid"))
    })
}

/// 256 random bits as 64 hex digits.
pub fn random_hex() -> Result<String, SecretError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| SecretError::Random(e.to_string()))?;
    Ok(hex(&bytes))
}

/// A new API token: `sluice_` and 256 random bits in hex. Shown once; only its
/// [`digest`] is stored.
pub fn new_token() -> Result<String, SecretError> {
    Ok(format!("sluice_{}", random_hex()?))
}

/// SHA-256 of `secret`, hex: how tokens and session cookies are stored and looked up.
pub fn digest(secret: &str) -> String {
    hex(&sha2::Sha256::digest(secret.as_bytes()))
}

/// Compares two strings in time independent of where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_salt_and_verify() {
        let a = hash_password("correct horse battery").unwrap();
        let b = hash_password("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify_password("correct horse battery", &a));
        assert!(!verify_password("correct horse batterY", &a));
        assert!(!verify_password("x", "not a phc string"));
        assert!(matches!(hash_password("short"), Err(SecretError::TooShort)));
    }

    #[test]
    fn tokens_are_random_and_digests_fixed() {
        let t = new_token().unwrap();
        assert_eq!(t.len(), "sluice_".len() + 64);
        assert_ne!(t, new_token().unwrap());
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(same("abc", "abc") && !same("abc", "abd") && !same("abc", "ab"));
    }
}
