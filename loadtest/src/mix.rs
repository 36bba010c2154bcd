//! The requests a load run sends.
//!
//! Every request is a [`Template`]: its bytes with the `instance` value cut out, so each
//! replay of a message gets a fresh instance (a Postfix instance names one message on one
//! smtpd; reusing them would merge messages).

use std::fmt::Write;
use std::path::Path;

/// One request: literal bytes with holes that change from replay to replay.
#[derive(Debug, Clone)]
pub struct Template {
    pieces: Vec<Piece>,
}

/// A part of a [`Template`].
#[derive(Debug, Clone)]
enum Piece {
    /// Written as is.
    Text(Vec<u8>),
    /// A value written with `.` and the replay's tag after it: the `instance` (every replay
    /// is a new message) or, in the long-tail mix, a sender's local part (every replay is a
    /// new sender).
    Tagged(String),
    /// A client address out of [`LONG_TAIL_CLIENTS`]: this message's base index, moved on
    /// by the replay's sequence number (so replays use other addresses).
    ClientIp(u32),
}

/// Which replay of the mix a request belongs to.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Appended to tagged values: unique per connection and round over the mix.
    pub tag: String,
    /// A number unique per connection and round (moves long-tail client addresses).
    pub seq: u64,
}

impl Replay {
    /// The replay of connection `connection` in round `round` over the mix.
    pub fn new(round: u64, connection: usize) -> Replay {
        Replay {
            tag: format!("{round}-{connection}"),
            seq: round
                .wrapping_mul(1_000_003)
                .wrapping_add(connection as u64),
        }
    }
}

impl Template {
    /// Parses one request's text (`name=value` lines; the blank line is added). The
    /// `instance` value is renewed on every replay.
    pub fn from_lines(lines: &[&str]) -> Template {
        Template::build(lines, false, None)
    }

    /// `lines` as in [`Template::from_lines`]; with `tag_sender` the local part of
    /// `sender=` is renewed on every replay too, and with `client` the `client_address`
    /// is that long-tail address index, moved on every replay.
    fn build(lines: &[&str], tag_sender: bool, client: Option<u32>) -> Template {
        let mut pieces = Vec::new();
        let mut text = Vec::new();
        let flush = |text: &mut Vec<u8>, pieces: &mut Vec<Piece>, next: Piece| {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(text)));
            }
            pieces.push(next);
        };
        let mut seen_instance = false;
        for line in lines {
            if let (false, Some(v)) = (seen_instance, line.strip_prefix("instance=")) {
                seen_instance = true;
                text.extend_from_slice(b"instance=");
                flush(&mut text, &mut pieces, Piece::Tagged(v.to_string()));
                text.push(b'\n');
                continue;
            }
            if let (true, Some((local, domain))) = (
                tag_sender,
                line.strip_prefix("sender=").and_then(|v| v.split_once('@')),
            ) {
                text.extend_from_slice(b"sender=");
                flush(&mut text, &mut pieces, Piece::Tagged(local.to_string()));
                text.push(b'@');
                text.extend_from_slice(domain.as_bytes());
                text.push(b'\n');
                continue;
            }
            if let (Some(index), true) = (client, line.starts_with("client_address=")) {
                text.extend_from_slice(b"client_address=");
                flush(&mut text, &mut pieces, Piece::ClientIp(index));
                text.push(b'\n');
                continue;
            }
            text.extend_from_slice(line.as_bytes());
            text.push(b'\n');
        }
        text.push(b'\n');
        pieces.push(Piece::Text(text));
        Template { pieces }
    }

    /// Writes the request into `out` (cleared first) for `replay`: tagged values get `.`
    /// and the replay's tag appended, so that every replay is a new message (and, in the
    /// long-tail mix, comes from a new sender).
    pub fn render(&self, replay: &Replay, out: &mut Vec<u8>) {
        out.clear();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.extend_from_slice(t),
                Piece::Tagged(v) => {
                    out.extend_from_slice(v.as_bytes());
                    out.push(b'.');
                    out.extend_from_slice(replay.tag.as_bytes());
                }
                Piece::ClientIp(base) => {
                    let shift = replay.seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
                    let index = (u64::from(*base) + shift) % u64::from(LONG_TAIL_CLIENTS);
                    let _ = write!(Bytes(out), "{}", long_tail_client(index as u32));
                }
            }
        }
    }
}

/// `fmt::Write` into a byte vector.
struct Bytes<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Bytes<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// How many client addresses the long-tail mix uses.
pub const LONG_TAIL_CLIENTS: u32 = 50_000;

/// The long-tail mix's client address number `index` (below [`LONG_TAIL_CLIENTS`]): spread
/// over 10.0.0.0/8 by an odd multiplier (a bijection of 24-bit numbers), so nearly every
/// address is in a /24 of its own, as an inbound MX's clients are.
pub fn long_tail_client(index: u32) -> std::net::Ipv4Addr {
    let host = index.wrapping_mul(0x9E37_79B1) & 0x00FF_FFFF;
    std::net::Ipv4Addr::from(0x0A00_0000 | host)
}

/// Which keys the built-in mix uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Keys {
    /// 300 senders and 250 client addresses: every counter is hit again and again.
    Small,
    /// No sender seen twice in a run (every message's sender is new), 50,000 client
    /// addresses (nearly all in /24s of their own): most counters are seen a few times.
    LongTail,
}

/// A tiny deterministic PRNG (xorshift64*), so runs are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The built-in mix: `messages` messages, each 1–4 RCPT requests and an END-OF-MESSAGE, from
/// 300 senders over 40 domains, to 400 recipients, from 250 client IPs (a tenth of the
/// senders authenticated), with the attributes and order Postfix 3.7 uses.
pub fn builtin(messages: usize) -> Vec<Template> {
    builtin_with(messages, Keys::Small)
}

/// The built-in mix with the given keys: [`Keys::Small`] as [`builtin`]; [`Keys::LongTail`]
/// the same messages (40 sender domains, 400 recipients, a tenth authenticated as one of 30
/// users) but every message from a sender of its own, new on every replay
/// (`userN.mK.<replay>@domainM.example`),
/// and one of 50,000 client addresses.
pub fn builtin_with(messages: usize, keys: Keys) -> Vec<Template> {
    let long_tail = keys == Keys::LongTail;
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut out = Vec::with_capacity(messages * 3);
    for m in 0..messages {
        let s = rng.below(300);
        let sender = if long_tail {
            // This message's own sender; every replay appends its tag (see `Template`).
            format!("user{s}.m{m}@domain{}.example", s % 40)
        } else {
            format!("user{s}@domain{}.example", s % 40)
        };
        let client_ip = format!("10.{}.{}.{}", s % 4, rng.below(8), 1 + rng.below(250) % 250);
        let client = long_tail.then(|| rng.below(u64::from(LONG_TAIL_CLIENTS)) as u32);
        let sasl = if s < 30 {
            format!("user{s}")
        } else {
            String::new()
        };
        let instance = format!("{:x}.{:x}.{m}", rng.below(0xffff), rng.below(0xffff_ffff));
        let size = 1000 + rng.below(200_000);
        let rcpts = 1 + rng.below(4);
        let mut accepted = 0;
        for _ in 0..rcpts {
            let r = rng.below(400);
            let recipient = format!("rcpt{r}@dest{}.example", r % 25);
            let req = render(
                "RCPT", &client_ip, &sender, &recipient, 0, &instance, size, &sasl, client,
            );
            out.push(req);
            accepted += 1;
        }
        let eom = render(
            "END-OF-MESSAGE",
            &client_ip,
            &sender,
            "",
            accepted,
            &instance,
            size,
            &sasl,
            client,
        );
        out.push(eom);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn render(
    state: &str,
    client_ip: &str,
    sender: &str,
    recipient: &str,
    recipient_count: u64,
    instance: &str,
    size: u64,
    sasl: &str,
    long_tail_client: Option<u32>,
) -> Template {
    let mut s = String::with_capacity(700);
    let method = if sasl.is_empty() { "" } else { "PLAIN" };
    let _ = write!(
        s,
        "request=smtpd_access_policy\nprotocol_state={state}\nprotocol_name=ESMTP\n\
         client_address={client_ip}\nclient_name=unknown\nclient_port=41234\n\
         reverse_client_name=unknown\nserver_address=127.0.0.1\nserver_port=25\n\
         helo_name=mail.client.example\nsender={sender}\nrecipient={recipient}\n\
         recipient_count={recipient_count}\nqueue_id=\ninstance={instance}\nsize={size}\n\
         etrn_domain=\nstress=\nsasl_method={method}\nsasl_username={sasl}\nsasl_sender=\n\
         ccert_subject=\nccert_issuer=\nccert_fingerprint=\nccert_pubkey_fingerprint=\n\
         encryption_protocol=TLSv1.3\nencryption_cipher=TLS_AES_256_GCM_SHA384\n\
         encryption_keysize=256\npolicy_context="
    );
    let lines: Vec<&str> = s.lines().collect();
    Template::build(&lines, long_tail_client.is_some(), long_tail_client)
}

/// Reads requests from a file in the format of `captured-requests-*.txt`: `name=value`
/// lines, requests separated by blank lines; lines starting with `#` or `---` are ignored.
pub fn from_file(path: &Path) -> anyhow::Result<Vec<Template>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = Vec::new();
    let mut lines: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('#') || line.starts_with("---") {
            continue;
        }
        if line.trim().is_empty() {
            if !lines.is_empty() {
                out.push(Template::from_lines(&lines));
                lines.clear();
            }
            continue;
        }
        lines.push(line);
    }
    if !lines.is_empty() {
        out.push(Template::from_lines(&lines));
    }
    anyhow::ensure!(!out.is_empty(), "{} holds no requests", path.display());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_renew_the_instance() {
        let t = Template::from_lines(&["request=smtpd_access_policy", "instance=abc", "size=1"]);
        let mut out = Vec::new();
        let replay = Replay {
            tag: "7".to_string(),
            seq: 0,
        };
        t.render(&replay, &mut out);
        assert_eq!(
            out,
            b"request=smtpd_access_policy\ninstance=abc.7\nsize=1\n\n"
        );
        let t = Template::from_lines(&["request=smtpd_access_policy"]);
        t.render(&replay, &mut out);
        assert_eq!(out, b"request=smtpd_access_policy\n\n");
    }

    #[test]
    fn builtin_mix_is_realistic() {
        let mix = builtin(100);
        assert!(mix.len() >= 200 && mix.len() <= 500);
        let mut out = Vec::new();
        mix[0].render(&Replay::new(0, 0), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("protocol_state=RCPT\n"));
        assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 29);
        assert!(text.ends_with("policy_context=\n\n"));
    }

    fn attribute(text: &str, name: &str) -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|l| l.strip_prefix('=')))
            .unwrap_or_else(|| panic!("no {name} in {text}"))
            .to_string()
    }

    fn rendered(t: &Template, replay: &Replay) -> String {
        let mut out = Vec::new();
        t.render(replay, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn small_mix_repeats_senders_and_clients() {
        let mix = builtin(100);
        let (a, b) = (
            rendered(&mix[0], &Replay::new(0, 0)),
            rendered(&mix[0], &Replay::new(1, 3)),
        );
        assert_eq!(attribute(&a, "sender"), attribute(&b, "sender"));
        assert_eq!(
            attribute(&a, "client_address"),
            attribute(&b, "client_address")
        );
        assert_ne!(attribute(&a, "instance"), attribute(&b, "instance"));
    }

    #[test]
    fn long_tail_mix_never_repeats_a_sender_and_spreads_clients() {
        let mix = builtin_with(500, Keys::LongTail);
        let mut senders_by_message = std::collections::HashMap::new();
        let mut clients = std::collections::HashSet::new();
        let mut networks = std::collections::HashSet::new();
        for round in 0..3 {
            for connection in 0..4 {
                let replay = Replay::new(round, connection);
                for t in &mix {
                    let text = rendered(t, &replay);
                    let (sender, instance) =
                        (attribute(&text, "sender"), attribute(&text, "instance"));
                    let client = attribute(&text, "client_address");
                    // Every request of one message has its message's sender and client.
                    let first = senders_by_message
                        .entry(instance)
                        .or_insert_with(|| (sender.clone(), client.clone()));
                    assert_eq!(*first, (sender, client.clone()));
                    let ip: std::net::Ipv4Addr = client.parse().unwrap();
                    assert_eq!(ip.octets()[0], 10);
                    networks.insert(u32::from(ip) >> 8);
                    clients.insert(ip);
                }
            }
        }
        // 500 messages × 12 replays, each a sender of its own.
        let senders: std::collections::HashSet<_> = senders_by_message
            .values()
            .map(|(s, _)| s.clone())
            .collect();
        assert_eq!(senders_by_message.len(), 6000);
        assert_eq!(senders.len(), 6000);
        assert!(
            senders.iter().all(|s| s.ends_with(".example")),
            "{senders:?}"
        );
        assert!(clients.len() > 5000, "{} clients", clients.len());
        assert!(
            networks.len() > clients.len() * 9 / 10,
            "{} /24s",
            networks.len()
        );
    }

    #[test]
    fn long_tail_clients_are_distinct() {
        let all: std::collections::HashSet<_> =
            (0..LONG_TAIL_CLIENTS).map(long_tail_client).collect();
        assert_eq!(all.len(), LONG_TAIL_CLIENTS as usize);
    }
}
