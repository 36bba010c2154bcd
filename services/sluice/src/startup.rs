//! What a starting `serve` or `edge` says and exports before its first request: where its
//! policies and counters are (for the start-up log lines) and the request metrics that
//! must be in the scrape from the start (docs/metrics.md).

use crate::config::{Role, Settings};
use sluice_runtime::metrics::names;

/// Every frame-error kind and every invalid-request fallback reason, exported at 0: the
/// label values docs/metrics.md lists (the edge counts them under the same labels).
pub fn export_request_metrics() {
    for kind in [
        "line_too_long",
        "request_too_large",
        "too_many_attributes",
        "malformed_line",
        "nul_byte",
    ] {
        metrics::counter!(names::FRAME_ERRORS, "kind" => kind).increment(0);
    }
    for reason in [
        "unsupported_request",
        "missing_protocol_state",
        "unknown_protocol_state",
        "missing_client_address",
        "invalid_client_address",
        "invalid_number",
    ] {
        metrics::counter!(names::FALLBACK, "reason" => reason).increment(0);
    }
}

/// Where the counters are kept, for start-up lines.
pub fn where_counters_are(settings: &Settings, role: Role) -> String {
    let redacted = |urls: &[String]| {
        urls.iter()
            .map(|u| crate::config::redact(u))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match role {
        Role::Edge => format!("quota service {}", redacted(&settings.quota)),
        _ if !settings.redis.is_empty() => format!("Redis {}", redacted(&settings.redis)),
        _ => "in process".into(),
    }
}

/// Where the policies come from, for start-up lines: a SQLite file's absolute path (the
/// default `sqlite://sluice.db` is relative to the working directory), otherwise the URL
/// without its password.
pub fn where_policies_are(url: &str) -> String {
    let Some(file) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return crate::config::redact(url);
    };
    let file = file.split('?').next().unwrap_or(file);
    if file.contains(":memory:") {
        return url.to_string();
    }
    match std::path::absolute(file) {
        Ok(path) => format!("sqlite file {}", path.display()),
        Err(_) => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_files_are_shown_absolute_and_passwords_never() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            where_policies_are("sqlite://sluice.db"),
            format!("sqlite file {}", cwd.join("sluice.db").display())
        );
        assert_eq!(
            where_policies_are("sqlite:///var/lib/sluice/s.db?mode=rwc"),
            "sqlite file /var/lib/sluice/s.db"
        );
        assert_eq!(
            where_policies_are("postgres://sluice:secret@db/sluice"),
            "postgres://sluice:***@db/sluice"
        );
    }
}
