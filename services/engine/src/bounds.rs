//! The ranges the numbers of the policy model must lie in, in one place.
//!
//! Every way a policy set gets in (the policy file, the Policyd importer, the database, an
//! admin API) goes through [`crate::compile`], which refuses values outside these ranges
//! with a finding at the field. The ranges are chosen so that every quantity derived from
//! them — window lengths in milliseconds, sub-bucket widths and indexes, expiry times, sums
//! of charges, the near-limit percentage, and the numbers the Redis script handles as Lua
//! doubles (exact only up to 2^53) — fits with room to spare: no arithmetic on a valid policy
//! set can overflow, and a quota never silently stops holding.
//!
//! | field | range | why |
//! |---|---|---|
//! | quota `period` | 1 s ..= 366 days | a rolling window longer than a (leap) year is not a rate limit; 366 days are ~3.2·10^10 ms |
//! | `MessageCount` / `RecipientCount` limit | 0 ..= 1 000 000 000 | more is no limit at all (and usually a size written into a count) |
//! | `MessageCumulativeSize` limit | 0 ..= 100 TB (10^14 bytes) | sums of charges stay far below 2^53 |
//! | policy `priority` | -32 768 ..= 32 767 | Policyd's `SMALLINT` column; it only orders policies |
//! | `buckets` (sub-buckets per period, a server setting) | 1 ..= 3 600 | sub-buckets are at least 1 ms wide, so a 1 s period has at most 1 000 |
//! | `buckets` with counters in Redis (an edge, `serve --redis`), and the windows a quota service accepts | 1 ..= 512 | a Redis take reads and sums every sub-bucket of its counter: its time grows by ~0.5 µs per sub-bucket, and above 512 fields Redis stores the hash as a hashtable instead of a listpack (~55 instead of ~9 bytes per sub-bucket): measured by `loadtest/redis-bucket-cost.sh`, table in docs/quotas.md |
//!
//! A limit of 0 is valid and refuses everything it counts (with a warning: Policyd's
//! `counter > limit` test let one through per period). A limit so high that it could only
//! refuse above [`MAX_COUNT_RATE_PER_SEC`] (or [`MAX_SIZE_RATE_PER_SEC`]) loads with a
//! warning: it never binds in practice.

use crate::compile::LimitKind;

/// Seconds in a day.
const DAY: u64 = 86_400;

/// The shortest quota period, in seconds.
pub const MIN_PERIOD_SECS: u64 = 1;

/// The longest quota period, in seconds: 366 days.
pub const MAX_PERIOD_SECS: u64 = 366 * DAY;

/// The highest `MessageCount` or `RecipientCount` limit.
pub const MAX_COUNT_LIMIT: u64 = 1_000_000_000;

/// The highest `MessageCumulativeSize` limit, in bytes: 100 TB.
pub const MAX_SIZE_LIMIT: u64 = 100_000_000_000_000;

/// The lowest policy priority (Policyd's `SMALLINT`).
pub const MIN_PRIORITY: i64 = i16::MIN as i64;

/// The highest policy priority (Policyd's `SMALLINT`).
pub const MAX_PRIORITY: i64 = i16::MAX as i64;

/// The most sub-buckets per period a server may be configured with (`buckets`).
pub const MAX_BUCKETS_PER_PERIOD: u32 = 3_600;

/// The most sub-buckets per period with counters in Redis (an edge's `buckets`, `serve
/// --redis`, and the windows a quota service accepts from an edge): Redis keeps a counter of
/// up to 512 fields as a compact listpack (its default `hash-max-listpack-entries`), and a
/// take costs ~0.5 µs of Redis time per sub-bucket in the window. At 3 600 a full counter
/// took 206 KB and ~2 ms a take, against 584 B and ~35-50 µs at the default 60.
pub const MAX_REDIS_BUCKETS_PER_PERIOD: u32 = 512;

/// Whether `buckets` is a valid `buckets` setting, for counters in Redis (`in_redis`) or
/// in process; the error names the setting, the cap and why.
pub fn check_buckets(buckets: u32, in_redis: bool) -> Result<(), String> {
    if !(1..=MAX_BUCKETS_PER_PERIOD).contains(&buckets) {
        return Err(format!(
            "buckets must be between 1 and {MAX_BUCKETS_PER_PERIOD}, not {buckets}"
        ));
    }
    if in_redis && buckets > MAX_REDIS_BUCKETS_PER_PERIOD {
        return Err(format!(
            "buckets = {} is above {MAX_REDIS_BUCKETS_PER_PERIOD}, the most with counters in Redis: \
             every take reads all sub-buckets of its counter in Redis (at 3,600 a counter \
             costs ~200 KB and a take ~2 ms; see docs/quotas.md, \"Sub-buckets in Redis\")",
            grouped(u64::from(buckets))
        ));
    }
    Ok(())
}

/// Whether a counter window received from another process (period and sub-bucket width in
/// ms, as an edge sends them to a quota service) is one a valid setting produces: a period
/// in range, and at most [`MAX_REDIS_BUCKETS_PER_PERIOD`] sub-buckets.
pub fn check_redis_window(period_ms: u64, bucket_ms: u64) -> Result<(), String> {
    if period_ms == 0 || bucket_ms == 0 || bucket_ms > period_ms {
        return Err(format!(
            "period {period_ms} ms with sub-buckets of {bucket_ms} ms is not a window"
        ));
    }
    if period_ms > MAX_PERIOD_SECS * 1000 {
        return Err(format!(
            "period {} ms is longer than the maximum of 366 days",
            grouped(period_ms)
        ));
    }
    let buckets = period_ms.div_ceil(bucket_ms);
    if buckets > u64::from(MAX_REDIS_BUCKETS_PER_PERIOD) {
        return Err(format!(
            "{} sub-buckets per period ({period_ms} ms / {bucket_ms} ms) is above \
             {MAX_REDIS_BUCKETS_PER_PERIOD}, the most with counters in Redis (the edge's \
             buckets setting)",
            grouped(buckets)
        ));
    }
    Ok(())
}

/// A count limit that could only refuse above this many per second never binds in
/// practice: it loads with a warning.
pub const MAX_COUNT_RATE_PER_SEC: u64 = 100_000;

/// A size limit that could only refuse above this many bytes per second (10 GB/s) never
/// binds in practice: it loads with a warning.
pub const MAX_SIZE_RATE_PER_SEC: u64 = 10_000_000_000;

/// The most a single message size is checked or charged as (bytes). A size above every
/// allowed limit is refused whatever its exact value, so capping it here changes no
/// decision, and keeps every sum of charges far from overflowing.
pub const MAX_CHARGED_SIZE: u64 = MAX_SIZE_LIMIT + 1;

/// The largest integer a Lua number (a double) holds exactly: the Redis script's bound.
const LUA_EXACT: u64 = 1 << 53;

/// A timestamp in the year 9999, in ms since the epoch.
const YEAR_9999_MS: u64 = 253_402_300_799_000;

// What the ranges guarantee, checked when the crate compiles.
const _: () = {
    // Times in ms: a timestamp in the year 9999 plus a bucket and a period (an expiry time),
    // with room to spare, is far below 2^53.
    assert!(YEAR_9999_MS + MAX_PERIOD_SECS * 1000 * 4 < LUA_EXACT / 16);
    // Levels: a window holds at most its limit plus a charge in flight, far below 2^53,
    // and the near-limit test (x100) stays far within u64.
    assert!(MAX_SIZE_LIMIT + MAX_CHARGED_SIZE < LUA_EXACT / 16);
    assert!((MAX_SIZE_LIMIT + MAX_CHARGED_SIZE) * 100 < u64::MAX / 100);
    assert!(MAX_COUNT_LIMIT < MAX_SIZE_LIMIT);
    // The "never binds" test multiplies a rate by a period.
    assert!(MAX_SIZE_RATE_PER_SEC * MAX_PERIOD_SECS < u64::MAX / 10);
};

/// Thousands separated by commas (`31,622,400`), for messages.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Whether `secs` is a valid quota period; the error says why not.
pub fn check_period(secs: u64) -> Result<(), String> {
    if secs < MIN_PERIOD_SECS {
        return Err("period must be at least 1 second".into());
    }
    if secs > MAX_PERIOD_SECS {
        return Err(format!(
            "period {} s is longer than the maximum of 366 days ({} s)",
            grouped(secs),
            grouped(MAX_PERIOD_SECS)
        ));
    }
    Ok(())
}

/// A period in milliseconds. A value outside the valid range is first brought into it (a
/// compiled set never holds one: [`check_period`] refuses it), so this cannot overflow.
pub fn period_ms(secs: u64) -> u64 {
    secs.clamp(MIN_PERIOD_SECS, MAX_PERIOD_SECS) * 1000
}

/// The highest valid limit of `kind`.
pub fn max_limit(kind: LimitKind) -> u64 {
    match kind {
        LimitKind::MessageCount | LimitKind::RecipientCount => MAX_COUNT_LIMIT,
        LimitKind::MessageCumulativeSize => MAX_SIZE_LIMIT,
    }
}

/// Whether `value` is a valid limit of `kind`; the error says why not.
pub fn check_limit(kind: LimitKind, value: u64) -> Result<(), String> {
    if value <= max_limit(kind) {
        return Ok(());
    }
    Err(match kind {
        LimitKind::MessageCumulativeSize => format!(
            "{} limit {} bytes is above the maximum of 100 TB ({} bytes)",
            kind.as_str(),
            grouped(value),
            grouped(MAX_SIZE_LIMIT)
        ),
        LimitKind::MessageCount | LimitKind::RecipientCount => format!(
            "{} limit {} is above the maximum of {}: a limit this high never refuses \
             (was a size written into a count?)",
            kind.as_str(),
            grouped(value),
            grouped(MAX_COUNT_LIMIT)
        ),
    })
}

/// A warning when a limit of `kind` over a period of `period_secs` could only refuse at a
/// rate no mail system reaches.
pub fn unreachable_limit(kind: LimitKind, value: u64, period_secs: u64) -> Option<String> {
    let secs = period_secs.clamp(MIN_PERIOD_SECS, MAX_PERIOD_SECS);
    let (rate, unit) = match kind {
        LimitKind::MessageCount | LimitKind::RecipientCount => (MAX_COUNT_RATE_PER_SEC, ""),
        LimitKind::MessageCumulativeSize => (MAX_SIZE_RATE_PER_SEC, " bytes"),
    };
    // Both factors are bounded: the product fits (see the assertions above).
    (value > rate * secs).then(|| {
        format!(
            "{} limit {}{unit} per {} s could only refuse above {}{unit} per second: \
             it never refuses in practice (is the period too short?)",
            kind.as_str(),
            grouped(value),
            grouped(secs),
            grouped(rate)
        )
    })
}

/// Whether `priority` is a valid policy priority; the error says why not.
pub fn check_priority(priority: i64) -> Result<(), String> {
    if (MIN_PRIORITY..=MAX_PRIORITY).contains(&priority) {
        Ok(())
    } else {
        Err(format!(
            "priority {priority} is outside {MIN_PRIORITY}..={MAX_PRIORITY} \
             (Policyd's SMALLINT range; lower numbers are evaluated first)"
        ))
    }
}

/// What a message of `size` bytes is checked and charged as: its size, capped at
/// [`MAX_CHARGED_SIZE`] (no allowed limit tells the two apart).
pub fn charged_size(size: u64) -> u64 {
    size.min(MAX_CHARGED_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::{TakeOutcome, Window, WindowSpec};

    #[test]
    fn periods_at_the_boundaries() {
        assert!(check_period(0).is_err());
        assert_eq!(check_period(1), Ok(()));
        assert_eq!(check_period(MAX_PERIOD_SECS), Ok(()));
        assert_eq!(MAX_PERIOD_SECS, 31_622_400);
        let err = check_period(MAX_PERIOD_SECS + 1).unwrap_err();
        assert!(
            err.contains("31,622,401 s") && err.contains("366 days"),
            "{err}"
        );
        // The values of the attack: a period whose milliseconds wrap a u64, and Policyd's
        // BIGINT maximum.
        for secs in [18_446_744_073_709_552, 9_223_372_036_854_775_807, u64::MAX] {
            assert!(check_period(secs).is_err(), "{secs}");
        }
    }

    #[test]
    fn milliseconds_never_wrap() {
        assert_eq!(period_ms(1), 1_000);
        assert_eq!(period_ms(MAX_PERIOD_SECS), 31_622_400_000);
        assert_eq!(period_ms(0), 1_000);
        for secs in [18_446_744_073_709_552, u64::MAX] {
            assert_eq!(period_ms(secs), 31_622_400_000);
        }
    }

    #[test]
    fn limits_at_the_boundaries() {
        for kind in [LimitKind::MessageCount, LimitKind::RecipientCount] {
            assert_eq!(check_limit(kind, 0), Ok(()));
            assert_eq!(check_limit(kind, MAX_COUNT_LIMIT), Ok(()));
            let err = check_limit(kind, MAX_COUNT_LIMIT + 1).unwrap_err();
            assert!(err.contains("1,000,000,000"), "{err}");
            assert!(check_limit(kind, u64::MAX).is_err());
        }
        let size = LimitKind::MessageCumulativeSize;
        assert_eq!(check_limit(size, 0), Ok(()));
        assert_eq!(check_limit(size, MAX_SIZE_LIMIT), Ok(()));
        let err = check_limit(size, MAX_SIZE_LIMIT + 1).unwrap_err();
        assert!(err.contains("100 TB"), "{err}");
        // "1000000T" in a policy file.
        assert!(check_limit(size, 1_000_000 * 1_000_000_000_000).is_err());
    }

    #[test]
    fn limits_that_never_bind_are_told_apart() {
        let count = LimitKind::RecipientCount;
        assert_eq!(unreachable_limit(count, 100_000, 1), None);
        assert!(unreachable_limit(count, 100_001, 1).is_some());
        assert!(unreachable_limit(count, MAX_COUNT_LIMIT, 3600).is_some());
        assert_eq!(unreachable_limit(count, MAX_COUNT_LIMIT, 86_400), None);
        assert_eq!(
            unreachable_limit(count, MAX_COUNT_LIMIT, MAX_PERIOD_SECS),
            None
        );
        let size = LimitKind::MessageCumulativeSize;
        assert_eq!(unreachable_limit(size, 10_000_000_000, 1), None);
        assert!(unreachable_limit(size, 10_000_000_001, 1).is_some());
        assert_eq!(unreachable_limit(size, MAX_SIZE_LIMIT, 86_400), None);
        // Out-of-range inputs do not overflow either.
        assert!(unreachable_limit(size, u64::MAX, u64::MAX).is_some());
        assert!(unreachable_limit(count, u64::MAX, 0).is_some());
    }

    #[test]
    fn priorities_at_the_boundaries() {
        assert_eq!(check_priority(-32_768), Ok(()));
        assert_eq!(check_priority(0), Ok(()));
        assert_eq!(check_priority(32_767), Ok(()));
        assert!(check_priority(32_768).is_err());
        assert!(check_priority(-32_769).is_err());
        assert!(check_priority(i64::MAX).is_err());
    }

    #[test]
    fn buckets_are_capped_in_redis() {
        assert_eq!(check_buckets(60, true), Ok(()));
        assert_eq!(check_buckets(MAX_REDIS_BUCKETS_PER_PERIOD, true), Ok(()));
        assert_eq!(check_buckets(MAX_BUCKETS_PER_PERIOD, false), Ok(()));
        let err = check_buckets(MAX_REDIS_BUCKETS_PER_PERIOD + 1, true).unwrap_err();
        assert!(err.contains("513 is above 512"), "{err}");
        let err = check_buckets(3_600, true).unwrap_err();
        assert!(
            err.contains("3,600") && err.contains("docs/quotas.md"),
            "{err}"
        );
        assert!(check_buckets(0, false).is_err());
        assert!(check_buckets(MAX_BUCKETS_PER_PERIOD + 1, false).is_err());
        // Every window a valid setting produces passes the wire check, whatever the period.
        for secs in [MIN_PERIOD_SECS, 7, 3600, MAX_PERIOD_SECS] {
            for buckets in [1, 60, 511, MAX_REDIS_BUCKETS_PER_PERIOD] {
                let w = WindowSpec::new(period_ms(secs), buckets);
                assert_eq!(check_redis_window(w.period_ms, w.bucket_ms), Ok(()));
            }
            let w = WindowSpec::new(period_ms(secs), MAX_BUCKETS_PER_PERIOD);
            if secs >= 7 {
                assert!(check_redis_window(w.period_ms, w.bucket_ms).is_err());
            }
        }
        assert!(check_redis_window(3_600_000, 1).is_err());
        assert!(check_redis_window(0, 1).is_err());
        assert!(check_redis_window(1, 2).is_err());
        assert!(check_redis_window(u64::MAX, u64::MAX).is_err());
    }

    #[test]
    fn sizes_are_capped_above_every_limit() {
        assert_eq!(charged_size(0), 0);
        assert_eq!(charged_size(10_000_000), 10_000_000);
        assert_eq!(charged_size(MAX_SIZE_LIMIT), MAX_SIZE_LIMIT);
        assert_eq!(charged_size(u64::MAX), MAX_SIZE_LIMIT + 1);
    }

    /// At the extremes of every range the window arithmetic stays exact: widths of at least
    /// 1 ms, expiries after now, levels summed without overflow, and limits enforced.
    #[test]
    fn window_arithmetic_at_the_extremes() {
        for secs in [MIN_PERIOD_SECS, 7, 3600, MAX_PERIOD_SECS] {
            for buckets in [1, 60, 1000, 1001, MAX_BUCKETS_PER_PERIOD] {
                let spec = WindowSpec::new(period_ms(secs), buckets);
                assert!(spec.bucket_ms >= 1 && spec.bucket_ms <= spec.period_ms);
                // Never more live buckets than asked for (+1), nor than ms in the period.
                let live = spec.period_ms.div_ceil(spec.bucket_ms) + 1;
                assert!(live <= u64::from(buckets) + 1, "{secs} s / {buckets}");
                for now in [0, 1_700_000_000_000, YEAR_9999_MS] {
                    let j = spec.bucket_of(now);
                    assert!(spec.expiry_of(j) > now);
                    assert!(spec.expiry_of(j) - now <= spec.period_ms + spec.bucket_ms);
                }
                for limit in [0, 1, MAX_COUNT_LIMIT, MAX_SIZE_LIMIT] {
                    let now = YEAR_9999_MS;
                    let mut w = Window::new();
                    assert_eq!(
                        w.take(spec, now, limit, limit),
                        TakeOutcome::Admitted { used: limit }
                    );
                    // Full: one more is refused, with a wait of at most a period and a bucket.
                    match w.take(spec, now, 1, limit) {
                        TakeOutcome::Refused {
                            used,
                            retry_after_ms,
                        } => {
                            assert_eq!(used, limit);
                            if limit > 0 {
                                let wait = retry_after_ms.unwrap();
                                assert!(wait > 0 && wait <= spec.period_ms + spec.bucket_ms);
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                    // The largest charge never fits, and says so.
                    assert_eq!(
                        Window::new().take(spec, now, MAX_CHARGED_SIZE, limit),
                        TakeOutcome::Refused {
                            used: 0,
                            retry_after_ms: None
                        }
                    );
                }
            }
        }
    }
}
