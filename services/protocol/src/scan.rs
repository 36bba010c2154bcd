//! Finding the bytes that structure a request (`\n` and `=`), sixteen bytes at a time.
//!
//! A request is ~30 short lines. [`masks`] classifies a 16-byte chunk at once and returns
//! bit masks (bit `i` for byte `i`): the framing loop then visits each line end once and
//! finds the line's first `=` with a mask operation, instead of stopping at every
//! delimiter. On x86_64 this is SSE2 (part of the architecture's baseline; the one `unsafe` block of
//! the crate states why the call is sound); elsewhere a portable loop gives the same masks
//! (the compiler does not turn that loop into the same few instructions).

/// Bytes classified per call.
pub(crate) const CHUNK: usize = 16;

/// The delimiters and suspicious bytes of one chunk, one bit per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Masks {
    /// `\n` bytes.
    pub(crate) newlines: u32,
    /// `=` bytes.
    pub(crate) equals: u32,
    /// NUL bytes.
    pub(crate) nuls: u32,
}

/// Classifies the 16 bytes of `chunk`.
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[inline]
#[allow(unsafe_code)]
pub(crate) fn masks(chunk: &[u8; CHUNK]) -> Masks {
    // SAFETY: the only requirement of calling a `#[target_feature(enable = "sse2")]`
    // function is that the CPU has SSE2, and this code is only compiled when SSE2 is enabled
    // for the whole build (`cfg(target_feature = "sse2")`, part of every x86_64 target's
    // baseline). `masks_sse2` itself touches no memory but `chunk` (a reference).
    unsafe { masks_sse2(chunk) }
}

#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
#[target_feature(enable = "sse2")]
#[inline]
fn masks_sse2(chunk: &[u8; CHUNK]) -> Masks {
    use std::arch::x86_64::{_mm_cmpeq_epi8, _mm_movemask_epi8, _mm_set1_epi8, _mm_set_epi64x};
    let (lo, hi) = chunk.split_at(8);
    let word = |half: &[u8]| i64::from_le_bytes(half.try_into().expect("eight bytes"));
    // Two 64-bit halves: the compiler turns this into one unaligned 16-byte load.
    let v = _mm_set_epi64x(word(hi), word(lo));
    let find = |byte: u8| _mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_set1_epi8(byte as i8))) as u32;
    Masks {
        newlines: find(b'\n'),
        equals: find(b'='),
        nuls: find(0),
    }
}

/// Classifies the 16 bytes of `chunk` (portable version).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(crate) fn masks(chunk: &[u8; CHUNK]) -> Masks {
    let mut m = Masks {
        newlines: 0,
        equals: 0,
        nuls: 0,
    };
    for (i, &b) in chunk.iter().enumerate() {
        m.newlines |= u32::from(b == b'\n') << i;
        m.equals |= u32::from(b == b'=') << i;
        m.nuls |= u32::from(b == 0) << i;
    }
    m
}

/// The masks of the chunk of `buf` starting at `at`, and how many of its bytes are real. A
/// last, short chunk is padded with spaces (neither delimiters nor NULs).
#[inline]
pub(crate) fn masks_at(buf: &[u8], at: usize) -> (Masks, usize) {
    let rest = &buf[at..];
    match rest.first_chunk::<CHUNK>() {
        Some(chunk) => (masks(chunk), CHUNK),
        None => {
            let mut padded = [b' '; CHUNK];
            padded[..rest.len()].copy_from_slice(rest);
            (masks(&padded), rest.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(chunk: &[u8; CHUNK]) -> Masks {
        let bits = |want: u8| {
            chunk
                .iter()
                .enumerate()
                .filter(|(_, &b)| b == want)
                .fold(0u32, |m, (i, _)| m | 1 << i)
        };
        Masks {
            newlines: bits(b'\n'),
            equals: bits(b'='),
            nuls: bits(0),
        }
    }

    #[test]
    fn classifies_every_byte() {
        // Bytes next to the delimiters' values, and high-bit bytes (signed compares would
        // confuse nothing here, but check anyway).
        let alphabet = [
            b'\n',
            b'=',
            b'a',
            0,
            0xff,
            b'\n' + 1,
            b'=' - 1,
            0x80 | b'=',
            0x80 | b'\n',
            0x80,
            b'\r',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..5000 {
            let mut chunk = [0u8; CHUNK];
            for b in chunk.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *b = alphabet[(seed % alphabet.len() as u64) as usize];
            }
            assert_eq!(masks(&chunk), naive(&chunk), "{chunk:?}");
        }
    }

    #[test]
    fn pads_the_last_chunk_with_nothing_it_looks_for() {
        let buf = b"abc\n=";
        let (m, len) = masks_at(buf, 2);
        assert_eq!(len, 3);
        assert_eq!(
            m,
            Masks {
                newlines: 0b10,
                equals: 0b100,
                nuls: 0
            }
        );
    }
}
