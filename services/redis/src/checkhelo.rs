//! CheckHelo on Redis: one [`HeloOp`] is one run of `checkhelo.lua` on its client address's
//! hash (`<prefix>:{h:<address>}:h`: one key, so one slot, and atomic), mirroring
//! [`sluice_engine::checkhelo::record::run`].

use crate::backend::Backend;
use crate::cluster::request::Request;
use crate::conn::parse;
use sluice_engine::checkhelo::record::MAX_HELOS;
use sluice_engine::{HeloOp, HeloOutcome, HeloReply, StateError};
use std::sync::OnceLock;

/// The script.
const SOURCE: &str = include_str!("checkhelo.lua");

/// Largest integer a Lua number (a double) holds exactly.
const MAX_EXACT: u64 = 1 << 53;

/// The script's SHA1, computed once.
fn sha() -> &'static str {
    static SHA: OnceLock<String> = OnceLock::new();
    SHA.get_or_init(|| redis::Script::new(SOURCE).get_hash().to_string())
}

/// Runs `op` (`now_ms`: a test clock's time; `None`: Redis's own clock; `dry_run`: change
/// nothing).
pub(crate) async fn check_helo(
    b: &Backend,
    op: &HeloOp,
    now_ms: Option<u64>,
    dry_run: bool,
) -> Result<HeloReply, StateError> {
    let key = b.keys.checkhelo(&op.address);
    let p = &op.params;
    let n = |v: u64| v.min(MAX_EXACT);
    let flag = |on: bool| if on { "1" } else { "0" };
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(sha())
        .arg(1)
        .arg(&key)
        .arg(now_ms.map_or(-1, |v| n(v) as i64))
        .arg(flag(dry_run || op.dry_run))
        .arg(op.helo.to_lowercase())
        .arg(n(p.hrp_window_ms))
        .arg(n(p.hrp_limit))
        .arg(n(p.blacklist_ms))
        .arg(flag(p.blacklisted_now))
        .arg(MAX_HELOS);
    let reply = b
        .conn
        .call(&Request::eval(&key, cmd, SOURCE), b.timeout)
        .await?;
    let raw: Vec<i64> = parse(reply.into_iter().next().unwrap_or(redis::Value::Nil))?;
    decode(&raw)
}

/// The script's reply as an outcome.
fn decode(raw: &[i64]) -> Result<HeloReply, StateError> {
    let u = |v: i64| v.max(0) as u64;
    let [kind, a, now] = raw[..] else {
        return Err(StateError::Unavailable(format!(
            "unexpected checkhelo script reply {raw:?}"
        )));
    };
    let outcome = match kind {
        1 => HeloOutcome::Passed { distinct: u(a) },
        2 => HeloOutcome::Blacklisted { until_ms: u(a) },
        3 => HeloOutcome::HrpExceeded { distinct: u(a) },
        _ => {
            return Err(StateError::Unavailable(format!(
                "unexpected checkhelo script reply {raw:?}"
            )))
        }
    };
    Ok(HeloReply {
        outcome,
        now_ms: u(now),
    })
}
