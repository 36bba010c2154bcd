//! SIGHUP: operators send it out of habit to make a daemon "reload". It never stops a
//! role. Each hangup:
//!
//! - re-reads the configuration from the same sources as at start (file, environment,
//!   flags) and validates it: problems are logged and the running configuration stays;
//!   each changed setting is logged with a note that it takes effect at the next restart
//!   (listeners, pools and timeouts are built once at start);
//! - re-checks the policy database at once (policies reload by themselves within a second
//!   anyway; this also reopens a replaced SQLite file now);
//! - reopens the syslog connection (after a syslog daemon restart). Lines to stderr need no
//!   reopening: the supervisor (systemd, the container runtime) owns that file.

use crate::config::{self, Role, RoleArgs};
use sluice_store::Store;
use tokio::signal::unix::Signal;

/// SIGHUP taken over for a role (so a hangup never ends it), with what handling it needs.
pub struct Hangups {
    signal: Signal,
    role: Role,
    args: RoleArgs,
    running: String,
}

impl Hangups {
    /// Takes over SIGHUP now; hangups queue until [`Hangups::spawn`]. `args` are the role's
    /// arguments as given, `running` the configuration they resolved to.
    pub fn take_over(
        role: Role,
        args: RoleArgs,
        running: &config::Settings,
    ) -> anyhow::Result<Self> {
        Ok(Hangups {
            signal: crate::signal::hangups()?,
            role,
            args,
            running: running.to_string(),
        })
    }

    /// Handles every hangup in a background task until the process ends; `store` is the
    /// policy database, if the role has one.
    pub fn spawn(self, store: Option<Store>) {
        tokio::spawn(serve(self, store));
    }
}

async fn serve(hangups: Hangups, store: Option<Store>) {
    let Hangups {
        signal: mut hangups,
        role,
        args,
        running,
    } = hangups;
    while hangups.recv().await.is_some() {
        tracing::info!(
            role = %role,
            "SIGHUP received: re-reading the configuration, re-checking policies, reopening syslog (SIGTERM stops the service)"
        );
        sluice_runtime::syslog::reopen();
        if let Some(store) = &store {
            store.check_now();
        }
        match config::resolve(args.clone(), role) {
            Err(errors) => {
                for e in errors {
                    tracing::error!("SIGHUP: configuration: {e}; the running configuration stays");
                }
            }
            Ok(new) => {
                let changes = changed_lines(&running, &new.to_string());
                if changes.is_empty() {
                    tracing::info!("SIGHUP: configuration unchanged");
                }
                for (now, then) in changes {
                    tracing::warn!(
                        "SIGHUP: configuration now says `{now}` (running with `{then}`); it takes effect at the next restart"
                    );
                }
            }
        }
    }
}

/// The lines of `new` that differ from `old`'s line for the same key, paired with the old
/// line (or `""` when the key is new). Lines are `key = value`.
fn changed_lines(old: &str, new: &str) -> Vec<(String, String)> {
    let key = |line: &str| line.split(" = ").next().unwrap_or(line).to_string();
    let old_by_key: std::collections::HashMap<String, &str> =
        old.lines().map(|l| (key(l), l)).collect();
    new.lines()
        .filter_map(|line| {
            let then = old_by_key.get(&key(line)).copied().unwrap_or("");
            (then != line).then(|| (line.to_string(), then.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changed_keys_are_reported() {
        let old = "listen = [\"127.0.0.1:10031\"]\nmonitor = false\n";
        let new = "listen = [\"127.0.0.1:10031\"]\nmonitor = true\nextra = 1\n";
        assert_eq!(
            changed_lines(old, new),
            vec![
                ("monitor = true".to_string(), "monitor = false".to_string()),
                ("extra = 1".to_string(), String::new()),
            ]
        );
        assert!(changed_lines(old, old).is_empty());
    }
}
