//! `loadgen`: drives a Postfix policy server over N persistent connections and reports
//! requests/s and latency percentiles.

use anyhow::Context;
use clap::Parser;
use sluice_loadtest::driver::{self, Plan, Stop};
use sluice_loadtest::report::{compare, Report};
use sluice_loadtest::{mix, target::Target};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Load generator for Postfix policy servers (loopback targets only).
#[derive(Debug, Parser)]
#[command(name = "loadgen")]
struct Args {
    /// Server address: 127.0.0.1:PORT, [::1]:PORT or unix:/path.
    #[arg(long)]
    target: Target,
    /// Concurrent connections, one request in flight each (as Postfix's smtpd processes).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured seconds (default 10 unless --requests is given).
    #[arg(long, conflicts_with = "requests")]
    duration: Option<f64>,
    /// Measured requests in total, instead of a duration.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds of unmeasured load first.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// `builtin` (a realistic RCPT + END-OF-MESSAGE mix) or a file of requests in the
    /// captured-requests format.
    #[arg(long, default_value = "builtin")]
    scenario: String,
    /// Keys of the built-in mix: `small` (300 senders, 250 client addresses) or
    /// `long-tail` (no sender repeated within the run, 50,000 client addresses).
    #[arg(long, value_enum, default_value = "small")]
    keys: mix::Keys,
    /// Seconds to wait for one reply before counting an error.
    #[arg(long, default_value_t = 10.0)]
    reply_timeout: f64,
    /// Hard cap on the whole run in seconds, warm-up included.
    #[arg(long, default_value_t = 600.0)]
    max_time: f64,
    /// Name of the run in reports.
    #[arg(long, default_value = "run")]
    label: String,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json_out: Option<PathBuf>,
    /// A JSON report of an earlier run to compare against.
    #[arg(long)]
    baseline: Option<PathBuf>,
}

fn secs(s: f64, what: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("invalid {what}: {s}"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mix = match args.scenario.as_str() {
        "builtin" => mix::builtin_with(5000, args.keys),
        path => {
            anyhow::ensure!(
                args.keys == mix::Keys::Small,
                "--keys applies to the builtin scenario only"
            );
            mix::from_file(&PathBuf::from(path))?
        }
    };
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, d) => Stop::Duration(secs(d.unwrap_or(10.0), "--duration")?),
    };
    let plan = Plan {
        target: args.target.clone(),
        connections: args.connections,
        warmup: secs(args.warmup, "--warmup")?,
        stop,
        reply_timeout: secs(args.reply_timeout, "--reply-timeout")?,
        max_time: secs(args.max_time, "--max-time")?,
    };
    let outcome = driver::run(&plan, Arc::new(mix)).await?;
    let report = Report::new(
        &args.label,
        &args.target.to_string(),
        args.connections,
        &outcome,
    );
    let json = serde_json::to_string_pretty(&report)?;
    if args.json {
        println!("{json}");
    } else {
        print!("{}", report.text());
    }
    if let Some(path) = &args.json_out {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &args.baseline {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let baseline: Report = serde_json::from_str(&text)?;
        print!("{}", compare(&report, &baseline));
    }
    anyhow::ensure!(report.requests > 0, "no request was answered");
    Ok(())
}
