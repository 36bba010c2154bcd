//! A counter's level and checks without a script: `TIME` and `HGETALL` pipelined to the
//! counter's node, read into the engine's [`Window`] (the one Rust home of the window
//! arithmetic, which the counter script mirrors) for `level` and `check` (used level, fits,
//! retry-after). Nothing is computed here.
//!
//! Reporting a level (an op already counted for the message, or recorded for
//! END-OF-MESSAGE) and checking whether a cost would fit change nothing, so they need no
//! atomicity beyond what the two commands give; a plain read costs Redis a fraction of a
//! script call.

use crate::cluster::request::Request;
use crate::conn::Conn;
use crate::scripts::CounterAnswer;
use redis::Value;
use sluice_engine::window::{TakeOutcome, Window, WindowSpec};
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
    let (now, pairs) = buckets(conn, timeout, key, now_ms).await?;
    Ok(CounterAnswer::read(level_at(&pairs, window, now), now))
}

/// Whether `cost` would fit under `limit` in the counter at `key` at `now_ms` (`None`: the
/// node's own clock): the counter script's `check`, charging nothing.
pub(crate) async fn check(
    conn: &Conn,
    timeout: Duration,
    key: &str,
    spec: Limited,
    now_ms: Option<u64>,
) -> Result<CounterAnswer, StateError> {
    let (now, pairs) = buckets(conn, timeout, key, now_ms).await?;
    Ok(check_at(&pairs, spec, now))
}

/// What a check is about: the counter's window, the cost and the limit.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limited {
    pub window: WindowSpec,
    pub cost: u64,
    pub limit: u64,
}

/// The time (`now_ms`, or the node's clock) and the counter's (bucket, count) fields.
pub(crate) async fn buckets(
    conn: &Conn,
    timeout: Duration,
    key: &str,
    now_ms: Option<u64>,
) -> Result<(u64, Vec<(String, String)>), StateError> {
    let mut hgetall = redis::cmd("HGETALL");
    hgetall.arg(key);
    let cmds = now_ms.is_none().then(|| redis::cmd("TIME")).into_iter();
    let req = Request::reads(key, cmds.chain([hgetall]));
    let values = conn.call(&req, timeout).await?;
    let (now, fields) = match (now_ms, &values[..]) {
        (Some(now), [fields]) => (now, fields),
        (None, [time, fields]) => (redis_time_ms(time)?, fields),
        _ => return Err(unexpected(&values)),
    };
    let pairs: Vec<(String, String)> =
        redis::from_redis_value_ref(fields).map_err(|_| unexpected(&values))?;
    Ok((now, pairs))
}

/// `TIME`'s answer (seconds, microseconds) in ms, as the script computes it.
fn redis_time_ms(v: &Value) -> Result<u64, StateError> {
    let (secs, micros): (u64, u64) =
        redis::from_redis_value_ref(v).map_err(|e| StateError::Unavailable(e.to_string()))?;
    Ok(secs * 1000 + micros / 1000)
}

/// The counter's fields as a [`Window`] at `now` (unparseable fields, which the script
/// never writes, are ignored).
pub(crate) fn window_at(pairs: &[(String, String)], window: WindowSpec, now: u64) -> Window {
    let buckets = pairs
        .iter()
        .filter_map(|(j, c)| Some((j.parse::<u64>().ok()?, c.parse::<u64>().ok()?)));
    Window::restore(window, now, buckets)
}

/// The level counted at `now` (the script's `level`): [`Window::used`].
fn level_at(pairs: &[(String, String)], window: WindowSpec, now: u64) -> u64 {
    window_at(pairs, window, now).used(window, now)
}

/// The script's `check` at `now`: the level before, whether the cost fits, and when it
/// would fit if it does not (`None`: never, the cost exceeds the limit), all from
/// [`Window`]'s arithmetic.
fn check_at(pairs: &[(String, String)], spec: Limited, now: u64) -> CounterAnswer {
    let w = window_at(pairs, spec.window, now);
    let used = w.used(spec.window, now);
    let (fits, retry_after_ms) = match w.check(spec.window, now, spec.cost, spec.limit) {
        TakeOutcome::Admitted { .. } => (true, Some(0)),
        TakeOutcome::Refused { retry_after_ms, .. } => (false, retry_after_ms),
    };
    CounterAnswer {
        fits,
        level: used,
        retry_after_ms,
        now_ms: now,
        leased: 0,
        valid_ms: 0,
    }
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

    #[test]
    fn checks_like_the_script() {
        let window = WindowSpec::new(60_000, 60); // 1 s buckets
        let pairs = vec![
            ("159".to_string(), "3".to_string()),
            ("99".to_string(), "5".to_string()),
            ("100".to_string(), "2".to_string()),
        ];
        let spec = |cost, limit| Limited {
            window,
            cost,
            limit,
        };
        // now = 160.5 s: live buckets 100 (2) and 159 (3), used 5.
        let fits = check_at(&pairs, spec(5, 10), 160_500);
        assert_eq!(
            (fits.fits, fits.level, fits.retry_after_ms),
            (true, 5, Some(0))
        );
        // 2 more than fit: bucket 100 must expire first, at (100 + 1) * 1000 + 60_000.
        let refused = check_at(&pairs, spec(7, 10), 160_500);
        assert_eq!(
            (refused.fits, refused.level, refused.retry_after_ms),
            (false, 5, Some(161_000 - 160_500))
        );
        let never = check_at(&pairs, spec(11, 10), 160_500);
        assert_eq!((never.fits, never.retry_after_ms), (false, None));
    }
}
