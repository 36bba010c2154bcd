//! Accounting's per-period totals (docs/accounting.md, "Reports"): the background writer
//! of `serve` and `edge` that takes what the request path left in the
//! [`sluice_edge::accounting_sink`] and stores it every second, and `sluice accounting
//! report`. Nothing here runs on the request path.

use crate::cli::DatabaseArgs;
use crate::config::redact;
use crate::database::{self, Schema};
use crate::history::HistoryConfig;
use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_edge::accounting_sink::{self, AccountingSink};
use sluice_engine::accounting::period::parse_key;
use sluice_runtime::warn_limited;
use sluice_store::{AccountingTotal, AccountingTotalRow, Store};
use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// How often the sums are written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Longest one write may take before the batch is given up.
const WRITE_DEADLINE: Duration = Duration::from_secs(10);
/// Keys summed between two writes, at most (a key beyond is dropped and logged).
const SINK_CAPACITY: usize = 100_000;

/// `sluice accounting ...`.
#[derive(Debug, Subcommand)]
pub enum AccountingCommand {
    /// Print the totals Accounting counted in one period (per policy, accounting row and
    /// track key), from the policy database.
    Report(ReportArgs),
}

/// `sluice accounting report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The period: a month (`2026-11`), an ISO week (`2026-W48`) or a day (`2026-11-30`).
    #[arg(long)]
    pub period: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// At most this many rows.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
    /// The policy database.
    #[command(flatten)]
    pub db: DatabaseArgs,
}

/// Runs `sluice accounting ...`.
pub async fn run(command: AccountingCommand) -> anyhow::Result<ExitCode> {
    match command {
        AccountingCommand::Report(args) => report(args).await,
    }
}

async fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let (kind, period) = parse_key(&args.period)?;
    let url = args.db.url();
    let store = database::open(&url, Schema::MigrateSqlite)
        .await
        .with_context(|| format!("cannot open the policy database {}", redact(&url)))?;
    let rows = store.accounting_report(&period, args.limit).await;
    store.close().await;
    let rows = rows?;
    if args.json {
        let out = serde_json::json!({
            "period": period,
            "kind": kind.as_str(),
            "rows": rows,
        });
        println!("{out}");
    } else {
        print!("{}", table(&period, kind.as_str(), &rows));
    }
    Ok(ExitCode::SUCCESS)
}

/// The report as a text table (columns aligned; numbers right-aligned).
pub fn table(period: &str, kind: &str, rows: &[AccountingTotalRow]) -> String {
    let mut out = format!("Accounting totals for {period} ({kind})\n");
    if rows.is_empty() {
        out.push_str("nothing counted\n");
        return out;
    }
    let head = ["POLICY", "ROW", "TRACK", "MESSAGES", "RECIPIENTS", "BYTES"];
    let cells: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.policy.clone(),
                r.name.clone(),
                r.track.clone(),
                r.messages.to_string(),
                r.recipients.to_string(),
                r.bytes.to_string(),
            ]
        })
        .collect();
    let mut width = head.map(str::len);
    for c in &cells {
        for (w, v) in width.iter_mut().zip(c) {
            *w = (*w).max(v.chars().count());
        }
    }
    let mut line = |values: [&str; 6]| {
        let mut l = String::new();
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            if i < 3 {
                l.push_str(&format!("{v:<w$}", w = width[i]));
            } else {
                l.push_str(&format!("{v:>w$}", w = width[i]));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(head);
    for c in &cells {
        line([
            c[0].as_str(),
            c[1].as_str(),
            c[2].as_str(),
            c[3].as_str(),
            c[4].as_str(),
            c[5].as_str(),
        ]);
    }
    out
}

/// The totals writer; [`Running::finish`] writes what is left.
#[derive(Debug)]
pub struct Running {
    writer: JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Running {
    /// Stops the writer once requests have drained, and waits (at most the write deadline)
    /// for its last batch.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = tokio::time::timeout(WRITE_DEADLINE + Duration::from_secs(1), self.writer).await;
    }
}

/// Starts writing Accounting's totals to `store` when the history is on (`history`: on in
/// `serve`, off on an edge unless granted the tables, docs/cluster.md): installs the sink
/// the edge adds to and the writer.
pub fn start(config: &HistoryConfig, store: &Store) -> Option<Running> {
    if !config.enabled {
        return None;
    }
    let sink = accounting_sink::install(SINK_CAPACITY)?;
    let node = crate::history::node_name();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(write(store.clone(), sink, node, async move {
        let _ = stop_rx.await;
    }));
    Some(Running { writer, stop })
}

/// Writes the sums every [`FLUSH_EVERY`]; after `stopped`, writes what is left and ends.
async fn write(
    store: Store,
    sink: Arc<AccountingSink>,
    node: String,
    stopped: impl Future<Output = ()>,
) {
    let mut stopped = std::pin::pin!(stopped);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stopped => break,
        }
        write_batch(&store, &sink, &node).await;
        let now = sink.dropped();
        if now > dropped {
            warn_limited!(
                dropped = now - dropped,
                "Accounting totals dropped: more keys counted within a second than the writer keeps"
            );
            dropped = now;
        }
    }
    write_batch(&store, &sink, &node).await;
}

async fn write_batch(store: &Store, sink: &AccountingSink, node: &str) {
    let taken = sink.take();
    if taken.is_empty() {
        return;
    }
    let at_ms = sluice_edge::history_sink::now_ms();
    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let rows: Vec<AccountingTotal> = taken
        .into_iter()
        .map(|(k, s)| AccountingTotal {
            at_ms,
            node: node.to_string(),
            policy: k.policy.to_string(),
            name: k.name.to_string(),
            period: k.period,
            track: k.track,
            messages: big(s.messages),
            recipients: big(s.recipients),
            bytes: big(s.bytes),
        })
        .collect();
    let n = rows.len();
    match tokio::time::timeout(WRITE_DEADLINE, store.insert_accounting_totals(&rows)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            warn_limited!(error = %e, rows = n, "Cannot write accounting totals; they are lost (an edge's database role needs INSERT on accounting_totals, see docs/cluster.md)")
        }
        Err(_) => warn_limited!(
            rows = n,
            "Writing accounting totals took too long; they are lost"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_its_columns() {
        let rows = vec![
            AccountingTotalRow {
                policy: "outbound".into(),
                name: "per domain".into(),
                track: "Sender:@example.com".into(),
                messages: 1200,
                recipients: 3400,
                bytes: 56_000_000,
            },
            AccountingTotalRow {
                policy: "outbound".into(),
                name: "per domain".into(),
                track: "Sender:@x.org".into(),
                messages: 3,
                recipients: 3,
                bytes: 0,
            },
        ];
        let t = table("2026-11", "month", &rows);
        let expected = "Accounting totals for 2026-11 (month)\n\
POLICY    ROW         TRACK                MESSAGES  RECIPIENTS     BYTES\n\
outbound  per domain  Sender:@example.com      1200        3400  56000000\n\
outbound  per domain  Sender:@x.org               3           3         0\n";
        assert_eq!(t, expected);
        assert!(table("2026-W48", "week", &[]).ends_with("nothing counted\n"));
    }
}
