//! Logs and traces for every subcommand, through [`sluice_runtime::init`]: plain or JSON
//! lines to stderr (written by a background thread, so a slow stderr never stalls the
//! request path) or to syslog; for the long-running roles also OTLP traces when
//! `otlp_endpoint` is set. The roles' verdict lines follow `--log-format` and `--log-style`
//! ([`verdict_log::set_lines`]).

use crate::cli::{LogArgs, LogFormat, LogStyle};
use crate::config::{LogTarget, Role, Settings};
use sluice_edge::verdict_log::{self, VerdictLines};
use sluice_runtime::{Telemetry, TelemetryConfig};

fn base(args: &LogArgs, role: &str) -> TelemetryConfig {
    TelemetryConfig {
        role: role.to_string(),
        log_level: args.log_level.clone(),
        log_format: match args.log_format {
            LogFormat::Plain => sluice_runtime::LogFormat::Plain,
            LogFormat::Json => sluice_runtime::LogFormat::Json,
        },
        ..TelemetryConfig::default()
    }
}

/// Logs to stderr for the short-lived commands. Keep the guard until exit.
pub fn init(args: &LogArgs) -> Result<Telemetry, String> {
    sluice_runtime::init(&base(args, "command")).map_err(|e| e.to_string())
}

/// Logs and traces of a long-running role, as configured. Must run inside the runtime.
pub fn init_role(args: &LogArgs, settings: &Settings, role: Role) -> anyhow::Result<Telemetry> {
    let config = TelemetryConfig {
        log_target: match settings.log_target {
            LogTarget::Stderr => sluice_runtime::LogTarget::Stderr,
            LogTarget::Syslog => sluice_runtime::LogTarget::Syslog,
        },
        otlp_endpoint: settings.otlp_endpoint.clone(),
        trace_sample_ratio: settings.trace_sample_ratio,
        ..base(args, &role.to_string())
    };
    let telemetry = sluice_runtime::init(&config)?;
    verdict_log::set_lines(match (args.log_style, args.log_format) {
        (LogStyle::Policyd, _) => VerdictLines::Policyd,
        (LogStyle::Sluice, LogFormat::Json) => VerdictLines::Fields,
        (LogStyle::Sluice, LogFormat::Plain) => VerdictLines::Text,
    });
    sluice_runtime::metrics::install(&role.to_string());
    if let Some(endpoint) = &settings.otlp_endpoint {
        tracing::info!(
            endpoint,
            sample_ratio = settings.trace_sample_ratio,
            "Exporting traces over OTLP"
        );
    }
    Ok(telemetry)
}

/// Flushes logs and pending spans off the async threads (the exporter may block).
pub async fn finish(telemetry: Telemetry) {
    let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
}
