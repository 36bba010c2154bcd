//! N persistent connections, one request in flight each, until a deadline or a request count.

use crate::mix::{Replay, Template};
use crate::target::{Io, Target};
use hdrhistogram::Histogram;
use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep, timeout, Instant};

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this long (warm-up not included).
    Duration(Duration),
    /// After this many measured requests in total (warm-up not included).
    Requests(u64),
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where to connect.
    pub target: Target,
    /// Concurrent connections.
    pub connections: usize,
    /// Requests sent but not measured at first.
    pub warmup: Duration,
    /// When to stop.
    pub stop: Stop,
    /// How long to wait for one reply before counting an error and reconnecting.
    pub reply_timeout: Duration,
    /// A hard cap on the whole run, warm-up included.
    pub max_time: Duration,
}

/// What a run measured.
#[derive(Debug)]
pub struct Outcome {
    /// Measured requests answered.
    pub requests: u64,
    /// Failed exchanges and connects (timeouts, closed connections).
    pub errors: u64,
    /// Measured wall time.
    pub elapsed: Duration,
    /// Latency of measured requests, in microseconds.
    pub latency_us: Histogram<u64>,
    /// Replies by action keyword (`DUNNO`, `REJECT`, `DEFER_IF_PERMIT`, `450`...).
    pub actions: BTreeMap<String, u64>,
}

struct Clock {
    measure_from: Instant,
    end: Instant,
}

/// Runs `plan` with requests from `mix` (each connection starts at a different place in it).
pub async fn run(plan: &Plan, mix: Arc<Vec<Template>>) -> anyhow::Result<Outcome> {
    anyhow::ensure!(!mix.is_empty(), "no requests to send");
    anyhow::ensure!(plan.connections > 0, "at least one connection is needed");
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = match plan.stop {
        Stop::Duration(d) => (measure_from + d).min(start + plan.max_time),
        Stop::Requests(_) => start + plan.max_time,
    };
    let per_conn = match plan.stop {
        Stop::Requests(n) => Some(n.div_ceil(plan.connections as u64)),
        Stop::Duration(_) => None,
    };
    let clock = Arc::new(Clock { measure_from, end });
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..plan.connections {
        let plan = plan.clone();
        let mix = Arc::clone(&mix);
        let clock = Arc::clone(&clock);
        let first = id * mix.len() / plan.connections;
        tasks.spawn(async move { connection(id, first, &plan, &mix, &clock, per_conn).await });
    }
    let mut total = Outcome {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latency_us: new_histogram(),
        actions: BTreeMap::new(),
    };
    let mut last_done = measure_from;
    while let Some(r) = tasks.join_next().await {
        let c = r?;
        total.requests += c.requests;
        total.errors += c.errors;
        total.latency_us.add(&c.latency_us)?;
        for (k, v) in c.actions {
            *total.actions.entry(k).or_default() += v;
        }
        last_done = last_done.max(c.last_done);
    }
    total.elapsed = last_done.saturating_duration_since(measure_from);
    Ok(total)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

struct ConnStats {
    requests: u64,
    errors: u64,
    latency_us: Histogram<u64>,
    actions: BTreeMap<String, u64>,
    last_done: Instant,
}

async fn connection(
    id: usize,
    first: usize,
    plan: &Plan,
    mix: &[Template],
    clock: &Clock,
    quota: Option<u64>,
) -> ConnStats {
    let mut stats = ConnStats {
        requests: 0,
        errors: 0,
        latency_us: new_histogram(),
        actions: BTreeMap::new(),
        last_done: clock.measure_from,
    };
    let mut stream: Option<Box<dyn Io>> = None;
    let (mut wbuf, mut rbuf) = (Vec::with_capacity(1024), Vec::with_capacity(256));
    let mut next = first;
    let mut round = 0u64;
    let mut replay = Replay::new(round, id);
    loop {
        let now = Instant::now();
        if now >= clock.end || quota.is_some_and(|q| stats.requests >= q) {
            break;
        }
        let s = match stream.as_mut() {
            Some(s) => s,
            None => match timeout(plan.reply_timeout, plan.target.connect()).await {
                Ok(Ok(s)) => stream.insert(s),
                _ => {
                    stats.errors += 1;
                    sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        mix[next].render(&replay, &mut wbuf);
        next += 1;
        if next == mix.len() {
            next = 0;
            round += 1;
            replay = Replay::new(round, id);
        }
        let t0 = Instant::now();
        match timeout(plan.reply_timeout, exchange(s, &wbuf, &mut rbuf)).await {
            Ok(Ok(reply_len)) => {
                let done = Instant::now();
                if t0 >= clock.measure_from {
                    let us = done.duration_since(t0).as_micros() as u64;
                    stats.latency_us.saturating_record(us.max(1));
                    stats.requests += 1;
                    stats.last_done = done;
                    let keyword = action_keyword(&rbuf[..reply_len]);
                    match stats.actions.get_mut(keyword) {
                        Some(n) => *n += 1,
                        None => {
                            stats.actions.insert(keyword.to_string(), 1);
                        }
                    }
                }
                rbuf.drain(..reply_len);
            }
            _ => {
                stats.errors += 1;
                stream = None;
                rbuf.clear();
            }
        }
    }
    stats
}

/// Sends one request and reads until a full reply (ended by a blank line) is buffered.
/// Returns the reply's length.
async fn exchange(s: &mut Box<dyn Io>, request: &[u8], rbuf: &mut Vec<u8>) -> io::Result<usize> {
    s.write_all(request).await?;
    let mut scanned: usize = 0;
    loop {
        if let Some(pos) = rbuf[scanned.saturating_sub(1)..]
            .windows(2)
            .position(|w| w == b"\n\n")
        {
            return Ok(scanned.saturating_sub(1) + pos + 2);
        }
        scanned = rbuf.len();
        if rbuf.len() > 64 * 1024 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "reply too long"));
        }
        rbuf.reserve(512);
        if s.read_buf(rbuf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// `DUNNO` from `action=DUNNO\n\n`, `REJECT` from `action=REJECT text\n\n`; `?` when the
/// reply has no action.
fn action_keyword(reply: &[u8]) -> &str {
    let Some(rest) = reply.strip_prefix(b"action=") else {
        return "?";
    };
    let end = rest
        .iter()
        .position(|&b| b == b' ' || b == b'\n' || b == b'\r')
        .unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(action_keyword(b"action=DUNNO\n\n"), "DUNNO");
        assert_eq!(action_keyword(b"action=REJECT too many\n\n"), "REJECT");
        assert_eq!(action_keyword(b"nope\n\n"), "?");
    }
}
