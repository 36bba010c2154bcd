//! Human units in the policy file: periods (`"1h"`) and sizes (`"10MB"`).
//!
//! These only turn text into numbers, refusing what does not even fit a `u64`; the ranges a
//! period or a limit must lie in are the engine's ([`sluice_engine::bounds`]), checked when
//! the set is compiled, so that every way in (file, Policyd import, database) agrees.

use std::num::{IntErrorKind, ParseIntError};

use sluice_engine::bounds::{MAX_PERIOD_SECS, MAX_SIZE_LIMIT};

/// Whether a failed integer parse failed because the number is too large.
fn overflowed(e: &ParseIntError) -> bool {
    *e.kind() == IntErrorKind::PosOverflow
}

/// Parses a period: whole seconds (`"90"`) or a number with one unit: `s`, `m`, `h`, `d` or
/// `w` (`"90s"`, `"30m"`, `"1h"`, `"1d"`, `"2w"`).
pub fn parse_period(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid period {text:?}: expected seconds or a whole number with a unit \
             s, m, h, d or w (like \"90s\", \"30m\", \"1h\", \"1d\")"
        )
    };
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return Err(invalid()),
    };
    let too_long =
        || format!("period {text:?} is too long: the maximum is 366 days ({MAX_PERIOD_SECS} s)");
    let n: u64 = digits.parse().map_err(|e| {
        if overflowed(&e) {
            too_long()
        } else {
            invalid()
        }
    })?;
    n.checked_mul(mult).ok_or_else(too_long)
}

/// Parses a size in bytes: a whole or decimal number with an optional unit, case-insensitive:
/// `B`; `KB`, `MB`, `GB`, `TB` (1000-based; `K`, `M`, `G`, `T` alike); `KiB`, `MiB`, `GiB`,
/// `TiB` (1024-based). `"10MB"` is 10 000 000 bytes, `"512KiB"` 524 288.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let invalid = || {
        format!(
            "invalid size {text:?}: expected bytes or a number with a unit \
             KB, MB, GB (1000-based) or KiB, MiB, GiB (1024-based), like \"10MB\" or \"512KiB\""
        )
    };
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return Err(invalid()),
    };
    let too_big = || {
        format!(
            "size {text:?} is too large: the maximum size limit is 100 TB ({MAX_SIZE_LIMIT} bytes)"
        )
    };
    let parse = |digits: &str| -> Result<u64, String> {
        digits
            .parse()
            .map_err(|e| if overflowed(&e) { too_big() } else { invalid() })
    };
    match number.split_once('.') {
        None => parse(number)?.checked_mul(mult).ok_or_else(too_big),
        Some((whole, frac)) => {
            if frac.is_empty() || frac.len() > 9 || frac.contains('.') {
                return Err(invalid());
            }
            let whole: u64 = if whole.is_empty() { 0 } else { parse(whole)? };
            let frac_n: u128 = frac.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(frac.len() as u32);
            let bytes = u128::from(whole) * u128::from(mult) + frac_n * u128::from(mult) / scale;
            u64::try_from(bytes).map_err(|_| too_big())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods() {
        assert_eq!(parse_period("3600"), Ok(3600));
        assert_eq!(parse_period("90s"), Ok(90));
        assert_eq!(parse_period("30m"), Ok(1800));
        assert_eq!(parse_period("1h"), Ok(3600));
        assert_eq!(parse_period("1d"), Ok(86_400));
        assert_eq!(parse_period(" 2 W "), Ok(1_209_600));
        for bad in ["", "h", "1x", "-5m", "1.5h", "1h30m"] {
            assert!(parse_period(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_period("99999999999999999999d").is_err());
    }

    /// Numbers too large for a u64 (or whose seconds are) are refused as too long or too
    /// large, not as malformed; numbers that fit are left to the engine's range check.
    #[test]
    fn overflow_is_refused_as_too_long_or_too_large() {
        for text in [
            "99999999999999999999h",
            "99999999999999999999",
            "18446744073709551616s",
            "30500568904944w",
            "213503982334602d",
        ] {
            let err = parse_period(text).unwrap_err();
            assert!(
                err.contains("too long") && err.contains("366 days"),
                "{err}"
            );
        }
        // Fits in a u64: parsed; the engine refuses it (bounds::check_period).
        assert_eq!(
            parse_period("18446744073709552s"),
            Ok(18_446_744_073_709_552)
        );
        assert_eq!(parse_period("18446744073709551615"), Ok(u64::MAX));
        for text in [
            "100000000TB",
            "18446744073709551616",
            "99999999999999999999.5KB",
            "20000000TiB",
        ] {
            let err = parse_size(text).unwrap_err();
            assert!(err.contains("too large") && err.contains("100 TB"), "{err}");
        }
        // Fits in a u64: parsed; the engine refuses it (bounds::check_limit).
        assert_eq!(parse_size("1000000T"), Ok(1_000_000_000_000_000_000));
        assert_eq!(parse_size("100TB"), Ok(MAX_SIZE_LIMIT));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("123"), Ok(123));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("10mb"), Ok(10_000_000));
        assert_eq!(parse_size("512KiB"), Ok(524_288));
        assert_eq!(parse_size("1G"), Ok(1_000_000_000));
        assert_eq!(parse_size("1GiB"), Ok(1_073_741_824));
        assert_eq!(parse_size("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_size("0.5KB"), Ok(500));
        for bad in ["", "MB", "10XB", "1.2.3MB", "-1MB", "1.MB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_size("100000000TB").is_err());
    }
}
