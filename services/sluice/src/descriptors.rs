//! The file-descriptor budget of serve and edge (docs/failure-modes.md, "File
//! descriptors"): every policy listener may hold `max_connections` connections, the metrics
//! listener [`sluice_runtime::http::MAX_CONNECTIONS`], the admin service (serve, when
//! `admin_listen` is set) its own cap (64), and the rest of the process (database
//! and counter-backend connections, log sockets, the runtime) needs a few more. At start the
//! soft `RLIMIT_NOFILE` is raised to the hard limit, and a budget that still does not fit
//! is logged as a warning: the edge then closes idle connections when `accept` runs out of
//! descriptors, but the caps no longer say how many connections it keeps.

use crate::config::Settings;

/// Descriptors kept for everything but the listeners' connections: database pool, quota
/// service or Redis connections, syslog, the runtime's own.
pub const RESERVE: u64 = 128;

/// Descriptors serve or edge may need with `settings`.
pub fn budget(settings: &Settings) -> u64 {
    let listeners = settings.listen.len() as u64;
    let policy = listeners.saturating_mul(settings.edge.max_connections as u64);
    let http = if settings.metrics.is_some() {
        sluice_runtime::http::MAX_CONNECTIONS as u64
    } else {
        0
    };
    let admin = if settings.admin_listen.is_some() {
        sluice_admin::AdminOptions::default().limits.max_connections as u64
    } else {
        0
    };
    policy
        .saturating_add(http)
        .saturating_add(admin)
        .saturating_add(RESERVE)
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and warns when `needed` does not fit
/// in it. Returns the soft limit in force.
pub fn raise_limit(needed: u64) -> Option<u64> {
    let before = rlimit::Resource::NOFILE.get().ok();
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "Cannot raise the file-descriptor limit (RLIMIT_NOFILE)");
            before?.0
        }
    };
    if let Some((soft, _)) = before {
        if soft < limit {
            tracing::info!(from = soft, to = limit, "Raised the file-descriptor limit");
        }
    }
    if limit < needed {
        tracing::warn!(
            limit,
            needed,
            "The file-descriptor limit is below what the connection caps allow (listeners x max_connections + metrics connections + reserve): raise LimitNOFILE / ulimit -n, or lower max_connections; until then, idle connections are closed when descriptors run out"
        );
    }
    Some(limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Role, RoleArgs};

    #[test]
    fn the_budget_counts_every_listener_and_the_metrics_connections() {
        let s = resolve(
            RoleArgs {
                policy: crate::role_args::PolicySettings {
                    listen: Some(vec!["127.0.0.1:1".into(), "unix:/tmp/x.sock".into()]),
                    max_connections: Some(1000),
                    ..Default::default()
                },
                ..Default::default()
            },
            Role::Serve,
        )
        .unwrap();
        assert_eq!(
            budget(&s),
            2000 + sluice_runtime::http::MAX_CONNECTIONS as u64 + RESERVE
        );
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let (soft, _) = rlimit::Resource::NOFILE.get().unwrap();
        let now = raise_limit(1).unwrap();
        assert!(now >= soft);
    }
}
