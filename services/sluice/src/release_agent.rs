//! `sluice release-agent`: runs beside one Postfix (with the rights of `postsuper`) and
//! carries out what Sluice's ledger of held messages decides (docs/delay.md).
//!
//! Every `--interval-ms` it lists the MTA's queue (`postqueue -j`), reports it to the admin
//! service (`POST /api/held/sync`, with an admin's API token) and does what the answer says:
//! `postsuper -H` then `postqueue -i` for messages to release (charged by Sluice already),
//! `postsuper -f` for messages to return to their senders, `postsuper -d` for messages an
//! operator deleted. The agent keeps no state: Sluice's ledger forgets a message only once
//! the agent reports it gone from the hold queue, so an agent that stops halfway acts again
//! after a restart, and nothing is charged twice.
//!
//! The decisions (order, pace, room) are the server's; the agent is the only part that
//! touches Postfix's queue. It speaks HTTP with `ureq` (blocking: one request per interval
//! needs no async runtime).

use crate::cli::ReleaseAgentArgs;
use serde::Deserialize;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Duration;

/// Longest one sync may take.
const SYNC_DEADLINE: Duration = Duration::from_secs(10);

/// What the server answers (`SyncReply` of the admin API).
#[derive(Debug, Deserialize)]
struct SyncReply {
    release: Vec<String>,
    r#return: Vec<String>,
    delete: Vec<String>,
    waiting: u64,
    forgotten: u64,
    unknown: u64,
}

/// One line of `postqueue -j`.
#[derive(Debug, Deserialize)]
struct QueueLine {
    queue_name: String,
    queue_id: String,
}

/// Runs the agent until stopped (or once with `--once`).
pub async fn run(args: ReleaseAgentArgs) -> anyhow::Result<ExitCode> {
    tokio::task::spawn_blocking(move || run_blocking(&args)).await?
}

fn run_blocking(args: &ReleaseAgentArgs) -> anyhow::Result<ExitCode> {
    let token = read_token(args)?;
    let agent = crate::alerts::agent(args.ca_file.as_deref())
        .map_err(|e| anyhow::anyhow!("--ca-file: {e}"))?;
    let url = format!("{}/api/held/sync", args.admin_url.trim_end_matches('/'));
    let interval = Duration::from_millis(args.interval_ms.max(100));
    tracing::info!(url = %url, mta = %args.mta, interval_ms = interval.as_millis() as u64, "Release agent started");
    loop {
        match once(args, &agent, &url, &token) {
            Ok(()) => {}
            Err(e) if args.once => return Err(e),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "Release agent: sync failed; retrying")
            }
        }
        if args.once {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(interval);
    }
}

fn read_token(args: &ReleaseAgentArgs) -> anyhow::Result<String> {
    let token = match (&args.token_file, std::env::var("SLUICE_ADMIN_TOKEN")) {
        (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!("cannot read the API token from {}: {e}", path.display())
        })?,
        (None, Ok(token)) => token,
        (None, Err(_)) => anyhow::bail!(
            "no API token: give --token-file FILE (or SLUICE_ADMIN_TOKEN) with an admin's token (sluice admin token add)"
        ),
    };
    let token = token.trim().to_string();
    anyhow::ensure!(!token.is_empty(), "the API token is empty");
    Ok(token)
}

/// One round: list the queue, sync, act.
fn once(
    args: &ReleaseAgentArgs,
    agent: &ureq::Agent,
    url: &str,
    token: &str,
) -> anyhow::Result<()> {
    let queue = list_queue(args)?;
    let body = serde_json::json!({ "mta": args.mta, "queue": queue.iter().map(|q| serde_json::json!({"queue_id": q.queue_id, "queue_name": q.queue_name})).collect::<Vec<_>>() });
    let mut resp = agent
        .post(url)
        .config()
        .timeout_global(Some(SYNC_DEADLINE))
        .build()
        .header("content-type", "application/json")
        .header("authorization", &format!("Bearer {token}"))
        .send(body.to_string())
        .map_err(|e| anyhow::anyhow!("cannot reach {url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| anyhow::anyhow!("reading the answer of {url}: {e}"))?;
    anyhow::ensure!(status.is_success(), "{url} answered {status}: {text}");
    let reply: SyncReply = serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("unexpected answer from {url} ({e}): {text}"))?;
    if !reply.release.is_empty() {
        postsuper(args, "-H", &reply.release)?;
        // Released mail waits in the deferred queue for the next queue run: deliver now.
        for id in &reply.release {
            if let Err(e) = postfix_command(args, "postqueue", &["-i", id]) {
                tracing::warn!(queue_id = %id, error = %format!("{e:#}"), "Cannot schedule a released message for delivery; Postfix sends it at its next queue run");
            }
        }
        tracing::info!(messages = reply.release.len(), ids = %reply.release.join(" "), "Released held messages");
    }
    if !reply.r#return.is_empty() {
        postsuper(args, "-f", &reply.r#return)?;
        tracing::info!(messages = reply.r#return.len(), ids = %reply.r#return.join(" "), "Returned held messages to their senders (held too long)");
    }
    if !reply.delete.is_empty() {
        postsuper(args, "-d", &reply.delete)?;
        tracing::info!(messages = reply.delete.len(), ids = %reply.delete.join(" "), "Deleted held messages");
    }
    tracing::debug!(
        waiting = reply.waiting,
        forgotten = reply.forgotten,
        unknown = reply.unknown,
        "Synced"
    );
    Ok(())
}

/// The MTA's queue, from `postqueue -j` (one JSON object per line).
fn list_queue(args: &ReleaseAgentArgs) -> anyhow::Result<Vec<QueueLine>> {
    let out = postfix_command(args, "postqueue", &["-j"])?;
    parse_queue(&out)
}

fn parse_queue(out: &str) -> anyhow::Result<Vec<QueueLine>> {
    out.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("unexpected line from postqueue -j ({e}): {l}"))
        })
        .collect()
}

/// `postsuper FLAG -` with the queue IDs on its standard input (one per line), so any
/// number of them fit.
fn postsuper(args: &ReleaseAgentArgs, flag: &str, ids: &[String]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut cmd = Command::new(program(args, "postsuper"));
    if let Some(dir) = &args.postfix_config_dir {
        cmd.arg("-c").arg(dir);
    }
    let mut child = cmd
        .args([flag, "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot run postsuper: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{}\n", ids.join("\n")).as_bytes())?;
    }
    let out = child.wait_with_output()?;
    anyhow::ensure!(
        out.status.success(),
        "postsuper {flag} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

fn program(args: &ReleaseAgentArgs, name: &str) -> std::path::PathBuf {
    match &args.postfix_bin_dir {
        Some(dir) => Path::new(dir).join(name),
        None => name.into(),
    }
}

fn postfix_command(args: &ReleaseAgentArgs, name: &str, rest: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(program(args, name));
    if let Some(dir) = &args.postfix_config_dir {
        cmd.arg("-c").arg(dir);
    }
    let out = cmd
        .args(rest)
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {name}: {e}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{name} {} failed ({}): {}",
        rest.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_postqueue_json_lines() {
        let out = r#"{"queue_name": "hold", "queue_id": "4F2C91E0A1", "arrival_time": 1733500000, "message_size": 412, "forced_expire": false, "sender": "a@example.org", "recipients": [{"address": "b@example.net"}]}
{"queue_name": "deferred", "queue_id": "5A1B", "arrival_time": 1733500001, "message_size": 10, "sender": "", "recipients": []}
"#;
        let q = parse_queue(out).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].queue_name, "hold");
        assert_eq!(q[1].queue_id, "5A1B");
        assert!(parse_queue("not json\n").is_err());
        assert!(parse_queue("").unwrap().is_empty());
    }
}
