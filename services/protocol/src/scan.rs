//! Finding the bytes that structure a request (`\n` and `=`) eight bytes at a time.
//!
//! A request is ~30 short lines: a SIMD search called once per delimiter pays its set-up
//! ~60 times per request, more than the search itself. Scanning whole 64-bit words (SWAR)
//! in one inlined loop finds every delimiter in a single pass, in safe code.

/// Each byte of the word set to `0x01`.
const ONES: u64 = 0x0101_0101_0101_0101;
/// The low seven bits of each byte.
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The high bit of each byte of `word` that equals `byte` (exact: no false positives).
#[inline]
fn bytes_equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (u64::from(byte) * ONES);
    !(((x & LOW7).wrapping_add(LOW7)) | x | LOW7)
}

/// Positions of every `\n` and `=` in a byte slice, in increasing order.
pub(crate) struct Delimiters<'a> {
    hay: &'a [u8],
    /// Offset of the next word to load.
    next_word: usize,
    /// Delimiters of the last loaded word not yet returned (high bit of each byte).
    pending: u64,
}

impl<'a> Delimiters<'a> {
    /// Iterates over the delimiters of `hay`.
    pub(crate) fn new(hay: &'a [u8]) -> Self {
        Delimiters {
            hay,
            next_word: 0,
            pending: 0,
        }
    }
}

impl Iterator for Delimiters<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        loop {
            if self.pending != 0 {
                let byte = (self.pending.trailing_zeros() / 8) as usize;
                self.pending &= self.pending - 1;
                return Some(self.next_word - 8 + byte);
            }
            let rest = self.hay.get(self.next_word..)?;
            let word = match rest.first_chunk::<8>() {
                Some(chunk) => u64::from_le_bytes(*chunk),
                None if rest.is_empty() => return None,
                None => {
                    // The last few bytes, padded with zeros (which are not delimiters).
                    let mut padded = [0u8; 8];
                    padded[..rest.len()].copy_from_slice(rest);
                    u64::from_le_bytes(padded)
                }
            };
            self.next_word += 8;
            self.pending = bytes_equal(word, b'\n') | bytes_equal(word, b'=');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(hay: &[u8]) -> Vec<usize> {
        hay.iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n' || b == b'=')
            .map(|(i, _)| i)
            .collect()
    }

    #[test]
    fn finds_every_delimiter_in_order() {
        // Every length up to a few words, and bytes next to the delimiters' values (which a
        // borrow-propagating bit trick would confuse with them).
        let alphabet = [
            b'\n',
            b'=',
            b'a',
            0,
            0xff,
            b'\n' + 1,
            b'=' - 1,
            0x80 | b'=',
            b'\r',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..40 {
            for _ in 0..200 {
                let hay: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        alphabet[(seed % alphabet.len() as u64) as usize]
                    })
                    .collect();
                assert_eq!(
                    Delimiters::new(&hay).collect::<Vec<_>>(),
                    naive(&hay),
                    "{hay:?}"
                );
            }
        }
    }
}
