//! Finding the bytes that structure a request (`\n` and `=`), sixty-four bytes at a time.
//!
//! A request is ~30 short lines. [`masks`] classifies a 64-byte chunk at once (four SSE2
//! vectors) and returns bit masks of its `\n` and `=` bytes (bit `i` for byte `i`) and
//! whether it has a NUL: the framing loop then visits each line end once and finds the
//! line's first `=` with a mask operation, instead of stopping at every delimiter. On x86_64 this is SSE2 (part of the architecture's baseline; the one `unsafe` block of
//! the crate states why the call is sound); elsewhere a portable loop gives the same masks
//! (the compiler does not turn that loop into the same few instructions).

/// Bytes classified per call (four 16-byte vectors: fewer rounds of the framing loop than one
/// vector at a time, whose per-round work costs more than the classification itself).
pub(crate) const CHUNK: usize = 64;

/// The delimiters and suspicious bytes of one chunk, one bit per byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Masks {
    /// `\n` bytes.
    pub(crate) newlines: u64,
    /// `=` bytes.
    pub(crate) equals: u64,
    /// Whether the chunk has a NUL byte (only whether: a NUL is located again, exactly, in
    /// the rare request that has one).
    pub(crate) nul: bool,
}

/// Classifies the 64 bytes of `chunk`.
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
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi64x,
        _mm_setzero_si128,
    };
    let (newline, equals, nul) = (
        _mm_set1_epi8(b'\n' as i8),
        _mm_set1_epi8(b'=' as i8),
        _mm_set1_epi8(0),
    );
    let (mut newlines, mut equals_bits) = (0u64, 0u64);
    // The NUL compares of the four vectors are OR-ed and reduced to one flag at the end.
    let mut nuls = _mm_setzero_si128();
    for quarter in 0..CHUNK / 16 {
        let at = 16 * quarter;
        // One unaligned 16-byte load (built from a `u128`; from two `u64`s the compiler
        // loads the upper half a second time).
        let x = u128::from_le_bytes(chunk[at..at + 16].try_into().expect("16 bytes"));
        let v = _mm_set_epi64x((x >> 64) as i64, x as i64);
        let find = |byte| u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, byte)) as u16);
        newlines |= find(newline) << at;
        equals_bits |= find(equals) << at;
        nuls = _mm_or_si128(nuls, _mm_cmpeq_epi8(v, nul));
    }
    Masks {
        newlines,
        equals: equals_bits,
        nul: _mm_movemask_epi8(nuls) != 0,
    }
}

/// Classifies the 64 bytes of `chunk` (portable version).
#[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
#[inline]
pub(crate) fn masks(chunk: &[u8; CHUNK]) -> Masks {
    let mut m = Masks {
        newlines: 0,
        equals: 0,
        nul: false,
    };
    for (i, &b) in chunk.iter().enumerate() {
        m.newlines |= u64::from(b == b'\n') << i;
        m.equals |= u64::from(b == b'=') << i;
        m.nul |= b == 0;
    }
    m
}

/// The masks of the chunk of `buf` starting at `at`, and how many of its bytes are real. A
/// last, short chunk is classified as the last 64 bytes of `buf`, the bits of the bytes
/// before `at` shifted out (no copy); only a buffer shorter than a chunk is copied, padded
/// with spaces (neither delimiters nor NULs). The NUL flag may then also come from a byte
/// before `at`, which was classified before: it only asks for an exact search.
#[inline]
pub(crate) fn masks_at(buf: &[u8], at: usize) -> (Masks, usize) {
    let rest = &buf[at..];
    if let Some(chunk) = rest.first_chunk::<CHUNK>() {
        return (masks(chunk), CHUNK);
    }
    if let Some(chunk) = buf.last_chunk::<CHUNK>() {
        // `rest` is shorter than a chunk: the shift is 1 to 63 (or 0 for an empty `rest`).
        let before = CHUNK - rest.len();
        let m = masks(chunk);
        let shifted = |bits: u64| bits.checked_shr(before as u32).unwrap_or(0);
        let masks = Masks {
            newlines: shifted(m.newlines),
            equals: shifted(m.equals),
            nul: m.nul,
        };
        return (masks, rest.len());
    }
    let mut padded = [b' '; CHUNK];
    padded[..rest.len()].copy_from_slice(rest);
    (masks(&padded), rest.len())
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
                .fold(0u64, |m, (i, _)| m | 1 << i)
        };
        Masks {
            newlines: bits(b'\n'),
            equals: bits(b'='),
            nul: chunk.contains(&0),
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
                nul: false
            }
        );
    }

    #[test]
    fn a_last_short_chunk_gives_the_masks_of_its_bytes_only() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n) as usize
        };
        let alphabet = [b'\n', b'=', b'a', b'a', b'a', 0];
        for _ in 0..2000 {
            let len = next(200) + 1;
            let buf: Vec<u8> = (0..len).map(|_| alphabet[next(6)]).collect();
            for at in 0..len {
                let (m, n) = masks_at(&buf, at);
                let real = &buf[at..(at + CHUNK).min(len)];
                assert_eq!(n, real.len());
                let mut padded = [b' '; CHUNK];
                padded[..n].copy_from_slice(real);
                let want = naive(&padded);
                assert_eq!((m.newlines, m.equals), (want.newlines, want.equals));
                // The NUL flag may come from bytes before `at`, never from beyond the buffer.
                assert!(m.nul >= want.nul && (!m.nul || buf.contains(&0)));
            }
        }
    }
}
