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

    #[inline]
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

    /// All attributes `(name as bytes, value)` in the order received: the name is not
    /// sliced as text (no character-boundary checks for what is only compared).
    #[inline]
    pub(crate) fn attribute_bytes(&self) -> impl Iterator<Item = (&[u8], &str)> + '_ {
        self.spans.iter().map(|&(start, eq, end)| {
            (
                &self.text.as_bytes()[start as usize..eq as usize],
                &self.text[eq as usize + 1..end as usize],
            )
        })
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
///
/// Each byte is looked at once, in one search for line ends and equals signs: complete
/// lines are split into `name=value` spans as they arrive (a client sending byte by byte
/// does not make decoding quadratic), and the blank line that ends a request hands the
/// spans over without a second pass.
#[derive(Debug, Clone)]
pub struct RequestDecoder {
    limits: Limits,
    /// Where the request being decoded starts in the buffer (after stray blank lines).
    start: usize,
    /// Where the line not yet complete starts.
    line_start: usize,
    /// The first `=` of that line, once seen; [`NO_EQUALS`] before.
    equals: usize,
    /// How many bytes of the buffer were searched.
    scanned: usize,
    /// Attribute spans found so far, relative to the buffer (rebased on `start` when the
    /// request is taken: it is not 0 only after stray blank lines, so no line pays for it).
    spans: Vec<(u32, u32, u32)>,
    /// A request given back by the caller, whose buffers the next request reuses.
    spare: Option<RawRequest>,
    /// Whether a NUL byte was seen in the bytes searched or in bytes of the buffer before
    /// them (then the request is checked for one exactly; otherwise that second pass is
    /// skipped).
    nul_seen: bool,
}

/// Requests larger than this are not kept for reuse (a rare huge request does not pin its
/// memory for the life of the connection).
const MAX_RECYCLED_TEXT: usize = 8 * 1024;

/// [`RequestDecoder::equals`] while the line has no `=` yet.
const NO_EQUALS: usize = usize::MAX;

/// What one complete line is.
enum Line {
    /// Empty: ends the request (or is a stray blank line before one).
    Blank,
    /// `name=value` at `(start, equals sign, end)` in the buffer.
    Attribute((u32, u32, u32)),
}

/// Where a search of the buffer stopped.
enum Found {
    /// The blank line ending a request: `(end of the attribute block, end of the blank
    /// line)`.
    Request(usize, usize),
    /// A line that can never be part of a request.
    Error(FrameError),
}

impl RequestDecoder {
    /// A decoder enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        RequestDecoder {
            limits,
            start: 0,
            line_start: 0,
            equals: NO_EQUALS,
            scanned: 0,
            spans: Vec::new(),
            spare: None,
            nul_seen: false,
        }
    }

    /// The caps this decoder enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Tries to take one request from the front of `buf`.
    ///
    /// Returns `Ok(Some(request))` and removes its bytes from `buf`; `Ok(None)` when more
    /// bytes are needed (nothing is removed); `Err` when the bytes can never form a valid
    /// request. Empty lines before a request (stray blank lines) are skipped. Between calls
    /// that return `Ok(None)` the caller may only append to `buf`. When the request was all
    /// `buf` held, `buf`'s vector becomes the request's text and `buf` is left with another,
    /// empty one (a recycled request's text, of its own capacity) instead of a copy.
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<RawRequest>, FrameError> {
        if self.scanned > buf.len() {
            // The caller replaced the buffer: start over.
            self.reset();
        }
        match self.search(buf) {
            Some(Found::Error(e)) => {
                self.reset();
                Err(e)
            }
            Some(Found::Request(block_end, total)) => {
                if total - self.start > self.limits.max_request_len {
                    return Err(self.too_large());
                }
                self.take(buf, block_end, total).map(Some)
            }
            None => {
                if self.spans.is_empty() && self.start > 0 && self.start == self.line_start {
                    // Only stray blank lines so far: drop them now.
                    buf.drain(..self.start);
                    self.reset();
                }
                // The line still incomplete may already be over the caps: fail now, not at
                // 1 MiB.
                if buf.len() - self.line_start > self.limits.max_line_len + 1 {
                    self.reset();
                    return Err(FrameError::LineTooLong {
                        limit: self.limits.max_line_len,
                    });
                }
                if buf.len() - self.start > self.limits.max_request_len {
                    return Err(self.too_large());
                }
                Ok(None)
            }
        }
    }

    /// Searches the bytes not searched yet, splitting complete lines, up to the blank line
    /// that ends a request or to an invalid line.
    ///
    /// Per chunk, `equals` holds the chunk's `=` bits that can still be a line's first: the
    /// bits up to each line end are cleared when the line is split, so the lowest bit left
    /// is the next line's first `=` when it comes before that line's end. The position,
    /// line start and first `=` of the line still incomplete live in locals during the
    /// search and are stored when it runs out of bytes (every other way out resets them).
    fn search(&mut self, buf: &[u8]) -> Option<Found> {
        let mut pos = self.scanned;
        let mut line_start = self.line_start;
        let mut line_equals = self.equals;
        while pos < buf.len() {
            let (masks, len) = crate::scan::masks_at(buf, pos);
            self.nul_seen |= masks.nul;
            let mut newlines = masks.newlines;
            let mut equals = masks.equals;
            if line_equals != NO_EQUALS {
                // The line continued from the chunk before has its `=`: the ones up to its end
                // are not first ones.
                equals &= !(newlines ^ newlines.wrapping_sub(1));
            }
            while newlines != 0 {
                let bit = newlines.trailing_zeros();
                newlines &= newlines - 1;
                let first_equals = equals.trailing_zeros();
                if first_equals < bit {
                    line_equals = pos + first_equals as usize;
                }
                // Clears bits 0 to `bit`.
                equals &= (u64::MAX << 1) << bit;
                let at = pos + bit as usize;
                let line = (line_start, line_equals, at);
                (line_start, line_equals) = (at + 1, NO_EQUALS);
                match self.split_line(buf, line) {
                    Err(e) => return Some(Found::Error(e)),
                    Ok(Line::Blank) if self.spans.is_empty() => {
                        // A stray blank line before a request: skipped.
                        self.start = at + 1;
                    }
                    Ok(Line::Blank) => return Some(Found::Request(line.0, at + 1)),
                    Ok(Line::Attribute(span)) => {
                        if self.spans.len() == self.limits.max_attributes {
                            return Some(Found::Error(FrameError::TooManyAttributes {
                                limit: self.limits.max_attributes,
                            }));
                        }
                        self.spans.push(span);
                    }
                }
            }
            // The line still incomplete at the end of the chunk: its first `=` so far.
            if line_equals == NO_EQUALS && equals != 0 {
                line_equals = pos + equals.trailing_zeros() as usize;
            }
            pos += len;
        }
        self.scanned = buf.len();
        self.line_start = line_start;
        self.equals = line_equals;
        None
    }

    /// Classifies the complete line `(start, first '=' or NO_EQUALS, end)` of `buf` (its
    /// `\n`, at the end, excluded).
    #[inline]
    fn split_line(
        &self,
        buf: &[u8],
        (line_start, equals, line_end): (usize, usize, usize),
    ) -> Result<Line, FrameError> {
        let end = if line_end > line_start && buf[line_end - 1] == b'\r' {
            line_end - 1
        } else {
            line_end
        };
        if end == line_start {
            return Ok(Line::Blank);
        }
        if end - line_start > self.limits.max_line_len {
            return Err(FrameError::LineTooLong {
                limit: self.limits.max_line_len,
            });
        }
        // An `=` after the line's first byte (a name is not empty); NO_EQUALS is not.
        if !(line_start + 1..end).contains(&equals) {
            // The 1-based number of this attribute line.
            let line = self.spans.len() + 1;
            if memchr::memchr(0, &buf[line_start..end]).is_some() {
                return Err(FrameError::NulByte { line });
            }
            return Err(FrameError::MalformedLine { line });
        }
        Ok(Line::Attribute((
            line_start as u32,
            equals as u32,
            end as u32,
        )))
    }

    /// Builds the request from its attribute block (`buf[start..block_end]`, the blank line
    /// excluded) and the spans found, removes the request's `total` bytes from `buf`, and
    /// resets for the next request. The buffers of a request given back with
    /// [`RequestDecoder::recycle`] are reused.
    fn take(
        &mut self,
        buf: &mut Vec<u8>,
        block_end: usize,
        total: usize,
    ) -> Result<RawRequest, FrameError> {
        let mut raw = self.spare.take().unwrap_or_default();
        raw.spans.clear();
        std::mem::swap(&mut raw.spans, &mut self.spans);
        rebase(&mut raw.spans, self.start);
        if self.spans.capacity() == 0 {
            // The next request likely has as many attributes: one allocation, no regrowth.
            self.spans.reserve(raw.spans.len().max(8));
        }
        let (start, nul_seen) = (self.start, self.nul_seen);
        self.reset();
        let spare = std::mem::take(&mut raw.text).into_bytes();
        let block = take_block(buf, start..block_end, total, spare);
        if let Some(at) = nul_seen.then(|| memchr::memchr(0, &block)).flatten() {
            let line = memchr::memchr_iter(b'\n', &block[..at]).count() + 1;
            return Err(FrameError::NulByte { line });
        }
        match String::from_utf8(block) {
            Ok(text) => {
                raw.text = text;
                Ok(raw)
            }
            // Lossy decoding moves offsets: split the decoded text again (rare).
            Err(e) => self.parse_lossy(String::from_utf8_lossy(e.as_bytes()).into_owned()),
        }
    }

    /// Gives back a request this decoder returned, once it is no longer needed: its buffers
    /// are reused for the next request (no allocation per request on a busy connection).
    pub fn recycle(&mut self, raw: RawRequest) {
        if raw.text.capacity() <= MAX_RECYCLED_TEXT {
            self.spare = Some(raw);
        }
    }

    /// Splits an already complete, decoded attribute block into spans.
    fn parse_lossy(&mut self, text: String) -> Result<RawRequest, FrameError> {
        let mut line_begin = 0usize;
        let bytes = text.as_bytes();
        let mut spans = Vec::with_capacity(32);
        let ends = memchr::memchr_iter(b'\n', bytes).chain(std::iter::once(bytes.len()));
        for (index, line_end) in ends.enumerate() {
            if line_begin >= bytes.len() {
                break;
            }
            let line = trim_cr(&bytes[line_begin..line_end]);
            let begin = line_begin;
            line_begin = line_end + 1;
            if line.is_empty() {
                continue;
            }
            let Some(eq) = line.iter().position(|&b| b == b'=').filter(|&eq| eq > 0) else {
                return Err(FrameError::MalformedLine { line: index + 1 });
            };
            spans.push((
                begin as u32,
                (begin + eq) as u32,
                (begin + line.len()) as u32,
            ));
        }
        Ok(RawRequest { text, spans })
    }

    fn reset(&mut self) {
        self.start = 0;
        self.line_start = 0;
        self.equals = NO_EQUALS;
        self.scanned = 0;
        self.spans.clear();
        self.nul_seen = false;
    }

    fn too_large(&mut self) -> FrameError {
        self.reset();
        FrameError::RequestTooLarge {
            limit: self.limits.max_request_len,
        }
    }
}

impl Default for RequestDecoder {
    fn default() -> Self {
        RequestDecoder::new(Limits::default())
    }
}

/// The bytes of `buf[block]` in a vector of their own, and `buf` without the request's
/// first `total` bytes. When the request is all `buf` holds (the usual case: one request
/// per read), `buf`'s vector itself is returned, without a copy, and `buf` gets `spare`
/// (emptied) instead; otherwise the block is copied into `spare`.
fn take_block(
    buf: &mut Vec<u8>,
    block: std::ops::Range<usize>,
    total: usize,
    mut spare: Vec<u8>,
) -> Vec<u8> {
    spare.clear();
    if total == buf.len() {
        let mut bytes = std::mem::replace(buf, spare);
        bytes.truncate(block.end);
        bytes.drain(..block.start);
        bytes
    } else {
        spare.extend_from_slice(&buf[block]);
        buf.drain(..total);
        spare
    }
}

/// Makes spans found in the buffer relative to the request's `start` (positions are kept
/// as `u32`: wrapping arithmetic gives the same offsets as subtracting before truncating).
fn rebase(spans: &mut [(u32, u32, u32)], start: usize) {
    if start == 0 {
        return;
    }
    let start = start as u32;
    for (begin, equals, end) in spans {
        *begin = begin.wrapping_sub(start);
        *equals = equals.wrapping_sub(start);
        *end = end.wrapping_sub(start);
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}
