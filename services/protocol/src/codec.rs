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

/// One framed request: its attributes in the order received. Values that are not valid
/// UTF-8 are decoded lossily (invalid bytes become U+FFFD) rather than refused, so a stray
/// Latin-1 byte in a HELO name does not cost the client its answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawRequest {
    attrs: Vec<(String, String)>,
}

impl RawRequest {
    /// Builds a request from attribute pairs (for tools and tests).
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        RawRequest {
            attrs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The value of `name`; the last one when the name repeats.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// All attributes in the order received.
    pub fn attributes(&self) -> &[(String, String)] {
        &self.attrs
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.attrs.len()
    }

    /// Whether there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

/// Incremental request decoder with hard caps.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// How far the buffer has already been scanned for the end of the request, so a slow
    /// client sending byte by byte does not make decoding quadratic.
    scanned: usize,
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder { limits, scanned: 0 }
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
        // Skip leading blank lines: they cannot start a request.
        let lead = buf
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        if lead > 0 {
            buf.drain(..lead);
            self.scanned = self.scanned.saturating_sub(lead);
        }
        let mut line_start = 0;
        let mut pos = self.scanned.min(buf.len());
        // Re-scan from the start of the line containing `pos` so line caps stay exact.
        if pos > 0 {
            line_start = buf[..pos]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |i| i + 1);
        }
        while pos < buf.len() {
            if buf[pos] == b'\n' {
                let line = trim_cr(&buf[line_start..pos]);
                if line.is_empty() {
                    let end = pos + 1;
                    if end > self.limits.max_request_len {
                        return Err(FrameError::RequestTooLarge {
                            limit: self.limits.max_request_len,
                        });
                    }
                    let req = self.parse(&buf[..line_start])?;
                    buf.drain(..end);
                    self.scanned = 0;
                    return Ok(Some(req));
                }
                if line.len() > self.limits.max_line_len {
                    return Err(FrameError::LineTooLong {
                        limit: self.limits.max_line_len,
                    });
                }
                line_start = pos + 1;
            }
            pos += 1;
        }
        self.scanned = pos;
        if buf.len() - line_start > self.limits.max_line_len + 1 {
            return Err(FrameError::LineTooLong {
                limit: self.limits.max_line_len,
            });
        }
        if buf.len() > self.limits.max_request_len {
            return Err(FrameError::RequestTooLarge {
                limit: self.limits.max_request_len,
            });
        }
        Ok(None)
    }

    fn parse(&self, block: &[u8]) -> Result<RawRequest, FrameError> {
        let mut attrs = Vec::with_capacity(32);
        for (i, raw_line) in block.split(|&b| b == b'\n').enumerate() {
            let line = trim_cr(raw_line);
            if line.is_empty() {
                continue;
            }
            let number = i + 1;
            if line.contains(&0) {
                return Err(FrameError::NulByte { line: number });
            }
            let eq = match line.iter().position(|&b| b == b'=') {
                Some(0) | None => return Err(FrameError::MalformedLine { line: number }),
                Some(eq) => eq,
            };
            if attrs.len() == self.limits.max_attributes {
                return Err(FrameError::TooManyAttributes {
                    limit: self.limits.max_attributes,
                });
            }
            let name = String::from_utf8_lossy(&line[..eq]).into_owned();
            let value = String::from_utf8_lossy(&line[eq + 1..]).into_owned();
            attrs.push((name, value));
        }
        Ok(RawRequest { attrs })
    }
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
