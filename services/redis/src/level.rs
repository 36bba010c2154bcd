//! A counter's level without a script: `TIME` and `HGETALL` pipelined to the counter's node,
//! summed here with exactly the counter script's arithmetic for `level`.
//!
//! Reporting a level (an op already counted for the message, or recorded for
//! END-OF-MESSAGE) changes nothing, so it needs no atomicity beyond what the two commands
//! give; a plain read costs Redis a fraction of a script call.

use crate::conn::Conn;
use crate::scripts::CounterAnswer;
use redis::Value;
use sluice_engine::window::WindowSpec;
use sluice_engine::StateError;
use std::time::Duration;

/// Reads the level of the counter at `key` at `now_ms` (`None`: the node's own clock).
pub(crate) async fn read(
    conn: &Conn,
    timeout: Duration,
    key: &str,
    window: WindowSpec,
    now_ms: Option<u64>,
) -> Result<CounterAnswer, StateError> {
    let mut pipe = redis::pipe();
    if now_ms.is_none() {
        pipe.cmd("TIME");
    }
    pipe.cmd("HGETALL").arg(key);
    let values: Vec<Value> = conn.pipeline(&pipe, timeout).await?;
    let (now, fields) = match (now_ms, &values[..]) {
        (Some(now), [fields]) => (now, fields),
        (None, [time, fields]) => (redis_time_ms(time)?, fields),
        _ => return Err(unexpected(&values)),
    };
    let pairs: Vec<(String, String)> =
        redis::from_redis_value_ref(fields).map_err(|_| unexpected(&values))?;
    Ok(CounterAnswer {
        fits: true,
        level: level_at(&pairs, window, now),
        retry_after_ms: Some(0),
        now_ms: now,
    })
}

/// `TIME`'s answer (seconds, microseconds) in ms, as the script computes it.
fn redis_time_ms(v: &Value) -> Result<u64, StateError> {
    let (secs, micros): (u64, u64) =
        redis::from_redis_value_ref(v).map_err(|e| StateError::Unavailable(e.to_string()))?;
    Ok(secs * 1000 + micros / 1000)
}

/// The sum of the buckets still counted at `now` (the script's `level()`).
fn level_at(pairs: &[(String, String)], window: WindowSpec, now: u64) -> u64 {
    let oldest = now.saturating_sub(window.period_ms) / window.bucket_ms.max(1);
    pairs
        .iter()
        .filter_map(|(j, c)| Some((j.parse::<u64>().ok()?, c.parse::<i64>().ok()?)))
        .filter(|&(j, _)| j >= oldest)
        .map(|(_, c)| c)
        .sum::<i64>()
        .max(0) as u64
}

fn unexpected(values: &[Value]) -> StateError {
    StateError::Unavailable(format!("unexpected level reply {values:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_only_buckets_still_counted() {
        let w = WindowSpec::new(60_000, 60); // 1 s buckets
        let pairs = vec![
            ("99".to_string(), "5".to_string()),
            ("100".to_string(), "2".to_string()),
            ("159".to_string(), "3".to_string()),
        ];
        // now = 160.5 s: oldest = (160_500 - 60_000) / 1000 = 100.
        assert_eq!(level_at(&pairs, w, 160_500), 5);
        assert_eq!(level_at(&pairs, w, 159_000), 10);
        assert_eq!(level_at(&[], w, 159_000), 0);
    }
}
