//! Greylisting on Redis: one [`GreylistOp`] is one run of `greylisting.lua` on its network's
//! hash (`<prefix>:{g:<network>}:g`: one key, so one slot, and atomic), mirroring
//! [`sluice_engine::greylisting::record::run`].

use crate::backend::Backend;
use crate::cluster::request::Request;
use crate::conn::parse;
use sluice_engine::{GreyOutcome, GreylistOp, GreylistReply, StateError};
use std::sync::OnceLock;

/// The script.
const SOURCE: &str = include_str!("greylisting.lua");

/// Largest integer a Lua number (a double) holds exactly.
const MAX_EXACT: u64 = 1 << 53;

/// The script's SHA1, computed once.
fn sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(SOURCE).get_hash().to_string())
}

/// Runs `op` (`now_ms`: a test clock's time; `None`: Redis's own clock).
pub(crate) async fn greylist(
    b: &Backend,
    op: &GreylistOp,
    now_ms: Option<u64>,
) -> Result<GreylistReply, StateError> {
    let key = b.keys.greylisting(&op.network);
    let p = &op.params;
    let n = |v: u64| v.min(MAX_EXACT);
    let flag = |on: bool| if on { "1" } else { "0" };
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha())
        .arg(1)
        .arg(&key)
        .arg(now_ms.map_or(-1, |v| n(v) as i64))
        .arg(flag(op.dry_run))
        .arg(&op.triplet)
        .arg(n(p.period_ms))
        .arg(n(p.auth_validity_ms))
        .arg(n(p.unauth_validity_ms));
    for list in [p.awl, p.abl] {
        let l = list.unwrap_or(sluice_engine::greylisting::record::AutoList {
            period_ms: 0,
            count: 0,
            percentage: 0,
        });
        cmd.arg(flag(list.is_some()))
            .arg(n(l.period_ms))
            .arg(n(l.count))
            .arg(n(l.percentage));
    }
    cmd.arg(flag(p.training));
    let reply = b
        .conn
        .call(&Request::eval(&key, cmd, SOURCE), b.timeout)
        .await?;
    let raw: Vec<i64> = parse(reply.into_iter().next().unwrap_or(redis::Value::Nil))?;
    decode(&raw)
}

/// The script's reply as an outcome.
fn decode(raw: &[i64]) -> Result<GreylistReply, StateError> {
    let u = |v: i64| v.max(0) as u64;
    let [kind, a, b, c, d, now] = raw[..] else {
        return Err(StateError::Unavailable(format!(
            "unexpected greylisting script reply {raw:?}"
        )));
    };
    let outcome = match kind {
        1 => GreyOutcome::AutoWhitelisted { until_ms: u(a) },
        2 => GreyOutcome::Blacklisted {
            until_ms: u(a),
            listed_now: (b == 1).then_some((u(c), u(d))),
        },
        3 => GreyOutcome::Deferred {
            first_seen_ms: u(a),
            passes_at_ms: u(b),
            tries: u(c),
        },
        4 => GreyOutcome::Passed {
            first_seen_ms: u(a),
            training: b == 1,
            auto_whitelisted_until_ms: u64::try_from(c).ok(),
        },
        _ => {
            return Err(StateError::Unavailable(format!(
                "unexpected greylisting script reply {raw:?}"
            )))
        }
    };
    Ok(GreylistReply {
        outcome,
        now_ms: u(now),
    })
}
