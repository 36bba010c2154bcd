//! Framing: bytes in, [`RawRequest`]s out, with hard caps.
//!
//! A request is a sequence of `name=value` lines ended by an empty line. `\r\n` is accepted
//! as a line end. The decoder is incremental: [`RequestDecoder::decode`] returns `Ok(None)`
//! while the buffer holds only part of a request, and consumes exactly one request's bytes
//! when it returns one. Any cap violation or malformed line is a [`FrameError`]: the caller
//! must log it and close the connection (Postfix's protocol has no way to answer it).

/// Hard bounds on what one request may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest accepted line, in bytes, without its line end.
    pub max_line_len: usize,
    /// Largest accepted request, in bytes, including line ends and the final blank line.
    pub max_request_len: usize,
    /// Most attribute lines in one request.
    pub max_attributes: usize,
}

impl Default for Limits {
    /// 4 KiB lines, 64 KiB requests, 256 attributes: several times what Postfix ever sends
    /// (about 30 attributes, well under 2 KiB even with long TLS certificate subjects).
    fn default() -> Self {
        Limits {
            max_line_len: 4096,
            max_request_len: 64 * 1024,
            max_attributes: 256,
        }
    }
}

/// Why a byte stream is not a policy request. Each of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A line is longer than [`Limits::max_line_len`].
    #[error("line longer than {limit} bytes")]
    LineTooLong {
        /// The configured cap.
        limit: usize,
    },
    /// The request is larger than [`Limits::max_request_len`].
    #[error("request larger than {limit} bytes")]
    RequestTooLarge {
        /// The configured cap.
        limit: usize,
    },
    /// More attributes than [`Limits::max_attributes`].
    #[error("more than {limit} attributes")]
    TooManyAttributes {
        /// The configured cap.
        limit: usize,
    },
    /// A line is not `name=value` (no `=`, or an empty name).
    #[error("line {line} is not name=value")]
    MalformedLine {
        /// 1-based line number within the request.
        line: usize,
    },
    /// A NUL byte, which the protocol forbids in names and values.
    #[error("NUL byte in line {line}")]
    NulByte {
        /// 1-based line number within the request.
        line: usize,
    },
}

impl FrameError {
    /// A short bounded label for metrics and logs.
    pub fn kind_label(&self) -> &'static str {
        match self {
            FrameError::LineTooLong { .. } => "line_too_long",
            FrameError::RequestTooLarge { .. } => "request_too_large",
            FrameError::TooManyAttributes { .. } => "too_many_attributes",
            FrameError::MalformedLine { .. } => "malformed_line",
            FrameError::NulByte { .. } => "nul_byte",
        }
    }
}

/// One framed request: its attributes in the order received. The request's text is kept in
/// one buffer with offsets per attribute, so framing costs two allocations whatever the
/// number of attributes. Values that are not valid UTF-8 are decoded lossily (invalid bytes
/// become U+FFFD) rather than refused, so a stray Latin-1 byte in a HELO name does not cost
/// the client its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRequest {
    text: String,
    /// `(start, equals sign, end)` of each attribute line in `text`.
    spans: Vec<(u32, u32, u32)>,
}

impl RawRequest {
    /// Builds a request from attribute pairs (for tools and tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut raw = RawRequest::default();
        for (k, v) in pairs {
            let start = raw.text.len() as u32;
            raw.text.push_str(k.as_ref());
            let eq = raw.text.len() as u32;
            raw.text.push('=');
            raw.text.push_str(v.as_ref());
            raw.spans.push((start, eq, raw.text.len() as u32));
            raw.text.push('\n');
        }
        raw
    }

    fn pair(&self, &(start, eq, end): &(u32, u32, u32)) -> (&str, &str) {
        (
            &self.text[start as usize..eq as usize],
            &self.text[eq as usize + 1..end as usize],
        )
    }

    /// The value of `name`; the last one when the name repeats.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.spans
            .iter()
            .rev()
            .map(|s| self.pair(s))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// All attributes `(name, value)` in the order received.
    pub fn attributes(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.spans.iter().map(|s| self.pair(s))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// Incremental request decoder with hard caps.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// How much of the buffer was already searched for the blank line that ends a request:
    /// a client sending byte by byte does not make decoding quadratic.
    resume: usize,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder { limits, resume: 0 }
    }

    /// The caps this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Tries to take one request from the front of `buf`.
    ///
    /// Returns `Ok(Some(request))` and removes its bytes from `buf`; `Ok(None)` when more
    /// bytes are needed (nothing is removed); `Err` when the bytes can never form a valid
    /// request. Empty lines before a request (stray blank lines) are skipped.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<RawRequest>, FrameError> {
        if self.resume == 0 {
            let lead = buf
                .iter()
                .take_while(|&&b| b == b'\n' || b == b'\r')
                .count();
            if lead > 0 {
                buf.drain(..lead);
            }
        }
        // Bytes before `resume` were searched already; step back so a blank line split
        // across two reads is still found.
        let from = self.resume.saturating_sub(2).min(buf.len());
        if let Some((block_end, total)) = find_blank_line(buf, from) {
            if total > self.limits.max_request_len {
                return Err(self.too_large());
            }
            let req = self.parse(&buf[..block_end])?;
            buf.drain(..total);
            return Ok(Some(req));
        }
        self.resume = buf.len();
        // The line still incomplete may already be over the caps: fail now, not at 1 MiB.
        let tail_start = memchr::memrchr(b'\n', buf).map_or(0, |i| i + 1);
        if buf.len() - tail_start > self.limits.max_line_len + 1 {
            self.resume = 0;
            return Err(FrameError::LineTooLong {
                limit: self.limits.max_line_len,
            });
        }
        if buf.len() > self.limits.max_request_len {
            return Err(self.too_large());
        }
        Ok(None)
    }

    fn too_large(&mut self) -> FrameError {
        self.resume = 0;
        FrameError::RequestTooLarge {
            limit: self.limits.max_request_len,
        }
    }

    fn parse(&mut self, block: &[u8]) -> Result<RawRequest, FrameError> {
        self.resume = 0;
        let text = match std::str::from_utf8(block) {
            Ok(t) => t.to_owned(),
            Err(_) => String::from_utf8_lossy(block).into_owned(),
        };
        let mut spans = Vec::with_capacity(32);
        let bytes = text.as_bytes();
        if let Some(at) = memchr::memchr(0, bytes) {
            let line = memchr::memchr_iter(b'\n', &bytes[..at]).count() + 1;
            return Err(FrameError::NulByte { line });
        }
        let mut line_begin = 0usize;
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for (index, line_end) in ends.enumerate() {
            let number = index + 1;
            if line_begin >= bytes.len() {
                break;
            }
            let line = trim_cr(&bytes[line_begin..line_end]);
            if line.len() > self.limits.max_line_len {
                return Err(FrameError::LineTooLong {
                    limit: self.limits.max_line_len,
                });
            }
            let begin = line_begin;
            line_begin = line_end + 1;
            if line.is_empty() {
                continue;
            }
            // Names are short: a plain scan beats a SIMD search's set-up here.
            let eq = match line.iter().position(|&b| b == b'=') {
                Some(0) | None => return Err(FrameError::MalformedLine { line: number }),
                Some(eq) => eq,
            };
            if spans.len() == self.limits.max_attributes {
                return Err(FrameError::TooManyAttributes {
                    limit: self.limits.max_attributes,
                });
            }
            spans.push((
                begin as u32,
                (begin + eq) as u32,
                (begin + line.len()) as u32,
            ));
        }
        Ok(RawRequest { text, spans })
    }
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

/// The first blank line at or after `from`: `(end of the attribute block, end of the blank
/// line)`. Postfix ends lines with `\n`; `\r\n` is accepted too.
fn find_blank_line(buf: &[u8], from: usize) -> Option<(usize, usize)> {
    let hay = &buf[from..];
    let lf = memchr::memmem::find(hay, b"\n\n").map(|p| (from + p + 1, from + p + 2));
    if memchr::memchr(b'\r', hay).is_none() {
        return lf;
    }
    let crlf = memchr::memmem::find(hay, b"\n\r\n").map(|p| (from + p + 1, from + p + 3));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
