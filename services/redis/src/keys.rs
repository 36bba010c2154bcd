//! Redis key names, designed for Redis Cluster.
//!
//! Every key carries a hash tag (`{...}`) so that the keys of one counter, and the keys of one
//! message session, live in one slot and a Lua script may touch them together:
//!
//! - counter window: `<prefix>:{<counter key>}:w` (a hash: sub-bucket index → count);
//! - message session: `<prefix>:{m:<instance>}:charged` (a set of counter keys charged once
//!   for the message) and `<prefix>:{m:<instance>}:eom` (a hash of the counters to charge at
//!   END-OF-MESSAGE);
//! - greylisting record of a client network: `<prefix>:{g:<network>}:g` (a hash);
//! - CheckHelo record of a client address: `<prefix>:{h:<address>}:h` (a hash);
//! - the ledger of held messages (DELAY quotas): `<prefix>:{held}:<part>` (see `held.rs`).
//!
//! Names that are long or contain `{`/`}` (keys hold operator-chosen names and addresses)
//! are tagged by a stable 64-bit FNV-1a hash instead, and the full name follows the tag so
//! that two names never share a key: `<prefix>:{#<16 hex digits>}:w:<counter key>`.

/// Longest name used as a hash tag as it is.
const MAX_PLAIN_TAG: usize = 64;

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// Keys under `prefix` (must not contain `{` or `}`: checked by the caller).
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    /// The hash holding one counter's sub-buckets.
    pub(crate) fn window(&self, counter: &str) -> String {
        self.key(counter, "w")
    }

    /// The set of counters charged once for a message.
    pub(crate) fn charged(&self, instance: &str) -> String {
        self.key(&format!("m:{instance}"), "charged")
    }

    /// The hash of counters to charge at END-OF-MESSAGE.
    pub(crate) fn eom(&self, instance: &str) -> String {
        self.key(&format!("m:{instance}"), "eom")
    }

    /// The hash of one client network's greylisting record (triplets, auto-whitelist and
    /// auto-blacklist entries): `<prefix>:{g:<network>}:g`.
    pub(crate) fn greylisting(&self, network: &str) -> String {
        self.key(&format!("g:{network}"), "g")
    }

    /// The hash of one client address's CheckHelo record (HELOs used, blacklisting):
    /// `<prefix>:{h:<address>}:h`.
    pub(crate) fn checkhelo(&self, address: &str) -> String {
        self.key(&format!("h:{address}"), "h")
    }

    /// Sorted set `n` of the live-counter index of `kind` (`r`: refused, `n`: near a
    /// limit): `<prefix>:{idx:<n>}:<kind>` (see `live.rs`).
    pub(crate) fn index(&self, n: u64, kind: &str) -> String {
        self.key(&format!("idx:{n}"), kind)
    }

    /// Part `kind` of the ledger of held messages: `<prefix>:{held}:<kind>` (one slot for
    /// the whole ledger, see `held.rs`).
    pub(crate) fn held(&self, kind: &str) -> String {
        self.key("held", kind)
    }

    fn key(&self, name: &str, kind: &str) -> String {
        if name.len() <= MAX_PLAIN_TAG && !name.contains(['{', '}']) && !name.is_empty() {
            format!("{}:{{{name}}}:{kind}", self.prefix)
        } else {
            format!("{}:{{#{:016x}}}:{kind}:{name}", self.prefix, fnv1a64(name))
        }
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (unlike `DefaultHasher`).
pub(crate) fn fnv1a64(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash tag Redis Cluster hashes for `key` (the whole key when it has none).
#[cfg(test)]
fn hash_tag(key: &str) -> &str {
    if let Some(open) = key.find('{') {
        if let Some(len) = key[open + 1..].find('}') {
            if len > 0 {
                return &key[open + 1..open + 1 + len];
            }
        }
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_plain_names_are_their_own_tag() {
        let k = Keys::new("sluice");
        assert_eq!(k.window("Sender:a@b.c"), "sluice:{Sender:a@b.c}:w");
        assert_eq!(k.charged("4F2A1"), "sluice:{m:4F2A1}:charged");
        assert_eq!(hash_tag(&k.charged("4F2A1")), hash_tag(&k.eom("4F2A1")));
    }

    #[test]
    fn braces_and_long_names_are_hashed_but_stay_distinct() {
        let k = Keys::new("sluice");
        let odd = k.window("Sender:{x}@b.c");
        assert!(odd.starts_with("sluice:{#"), "{odd}");
        assert_eq!(hash_tag(&odd).len(), 17);
        assert!(odd.ends_with(":w:Sender:{x}@b.c"));
        let long = "x".repeat(200);
        assert_ne!(k.window(&long), k.window(&"x".repeat(201)));
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        // An empty name would give an empty tag, which Redis ignores: hashed instead.
        assert!(k.window("").starts_with("sluice:{#"));
    }
}
