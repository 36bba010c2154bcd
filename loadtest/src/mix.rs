//! The requests a load run sends.
//!
//! Every request is a [`Template`]: its bytes with the `instance` value cut out, so each
//! replay of a message gets a fresh instance (a Postfix instance names one message on one
//! smtpd; reusing them would merge messages).

use std::fmt::Write;
use std::path::Path;

/// One request, with a hole where the `instance` value goes.
#[derive(Debug, Clone)]
pub struct Template {
    /// Everything up to and including `instance=` (or the whole request but the blank
    /// line, when it has no instance).
    head: Vec<u8>,
    /// The instance value as written (empty when there is none).
    instance: String,
    /// The rest, including the final blank line.
    tail: Vec<u8>,
    has_instance: bool,
}

impl Template {
    /// Parses one request's text (`name=value` lines; the blank line is added).
    pub fn from_lines(lines: &[&str]) -> Template {
        let mut head = String::new();
        let mut tail = String::new();
        let mut instance = None;
        for line in lines {
            match (instance.is_some(), line.strip_prefix("instance=")) {
                (false, Some(v)) => {
                    head.push_str("instance=");
                    instance = Some(v.to_string());
                }
                (false, None) => {
                    head.push_str(line);
                    head.push('\n');
                }
                (true, _) => {
                    tail.push_str(line);
                    tail.push('\n');
                }
            }
        }
        let has_instance = instance.is_some();
        if has_instance {
            tail.insert(0, '\n');
        }
        tail.push('\n');
        Template {
            head: head.into_bytes(),
            instance: instance.unwrap_or_default(),
            tail: tail.into_bytes(),
            has_instance,
        }
    }

    /// Writes the request into `out` (cleared first), its instance suffixed with `round`
    /// (which replay this is) so that every replay is a new message.
    pub fn render(&self, round: &str, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.head);
        if self.has_instance {
            out.extend_from_slice(self.instance.as_bytes());
            out.push(b'.');
            out.extend_from_slice(round.as_bytes());
        }
        out.extend_from_slice(&self.tail);
    }
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
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut out = Vec::with_capacity(messages * 3);
    for m in 0..messages {
        let s = rng.below(300);
        let sender = format!("user{s}@domain{}.example", s % 40);
        let client_ip = format!("10.{}.{}.{}", s % 4, rng.below(8), 1 + rng.below(250) % 250);
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
                "RCPT", &client_ip, &sender, &recipient, 0, &instance, size, &sasl,
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
    Template::from_lines(&lines)
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
        t.render("7", &mut out);
        assert_eq!(
            out,
            b"request=smtpd_access_policy\ninstance=abc.7\nsize=1\n\n"
        );
        let t = Template::from_lines(&["request=smtpd_access_policy"]);
        t.render("7", &mut out);
        assert_eq!(out, b"request=smtpd_access_policy\n\n");
    }

    #[test]
    fn builtin_mix_is_realistic() {
        let mix = builtin(100);
        assert!(mix.len() >= 200 && mix.len() <= 500);
        let mut out = Vec::new();
        mix[0].render("0", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("protocol_state=RCPT\n"));
        assert_eq!(text.lines().filter(|l| !l.is_empty()).count(), 29);
        assert!(text.ends_with("policy_context=\n\n"));
    }
}
