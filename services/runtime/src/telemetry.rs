//! One [`init`] for every role: the log output (plain or JSON lines, stderr or syslog,
//! filtered by level) and, when an OTLP endpoint is set, OpenTelemetry traces exported over
//! gRPC, sampled by trace id (parent-based: a quota service follows the edge's decision).
//!
//! Traces see spans only (never log events, which carry addresses), at INFO and above,
//! whatever the log level.

use crate::gathered::{gathered, GatheredGuard};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::KeyValue;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

static TRACES: AtomicBool = AtomicBool::new(false);

/// Whether OpenTelemetry traces are on: callers create request spans only then.
#[inline]
pub fn traces_enabled() -> bool {
    TRACES.load(Ordering::Relaxed)
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogTarget {
    /// Standard error, written by a background thread.
    #[default]
    Stderr,
    /// The local syslog socket (`/dev/log`), facility mail.
    Syslog,
}

/// What [`init`] sets up.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// The service name in traces and the syslog tag (`sluice`).
    pub service_name: String,
    /// The role (`serve`, `edge`, `quota`, or a command name), a trace resource attribute.
    pub role: String,
    /// Log filter in `tracing` EnvFilter syntax (`info`, `sluice_edge=debug`).
    pub log_level: String,
    /// Line format.
    pub log_format: LogFormat,
    /// Destination.
    pub log_target: LogTarget,
    /// The syslog socket (default [`crate::syslog::DEV_LOG`]).
    pub syslog_path: String,
    /// OTLP/gRPC collector (`http://127.0.0.1:4317`); `None` keeps traces off.
    pub otlp_endpoint: Option<String>,
    /// Share of traces kept, 0.0 to 1.0 (default 1.0).
    pub trace_sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            service_name: "sluice".into(),
            role: String::new(),
            log_level: "info".into(),
            log_format: LogFormat::Plain,
            log_target: LogTarget::Stderr,
            syslog_path: crate::syslog::DEV_LOG.into(),
            otlp_endpoint: None,
            trace_sample_ratio: 1.0,
        }
    }
}

/// Why telemetry cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter does not parse.
    #[error("invalid log level {0:?}: {1}")]
    Filter(String, String),
    /// The sample ratio is outside 0..=1.
    #[error("trace_sample_ratio must be between 0 and 1, not {0}")]
    Ratio(f64),
    /// The syslog socket cannot be reached.
    #[error("cannot reach syslog at {0}: {1}")]
    Syslog(String, std::io::Error),
    /// The OTLP exporter cannot be built.
    #[error("cannot set up the OTLP exporter for {0}: {1}")]
    Otlp(String, String),
    /// The log writer thread cannot be started.
    #[error("cannot start the log writer thread: {0}")]
    LogThread(std::io::Error),
    /// A global subscriber is installed already.
    #[error("cannot set up logging: {0}")]
    Install(String),
}

/// Keep until exit: dropping it flushes buffered log lines and exports pending spans.
pub struct Telemetry {
    _log: Option<GatheredGuard>,
    tracer: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the trace exporter (also done on drop).
    pub fn shutdown(&mut self) {
        if let Some(p) = self.tracer.take() {
            TRACES.store(false, Ordering::Relaxed);
            let _ = p.force_flush();
            let _ = p.shutdown();
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        self.shutdown();
    }
}

type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// Installs the global subscriber: logs per `config`, plus the OTLP trace layer when
/// `config.otlp_endpoint` is set. With an endpoint it must run within a tokio runtime (the
/// gRPC exporter's connection lives there).
pub fn init(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
    let filter = EnvFilter::try_new(&config.log_level)
        .map_err(|e| TelemetryError::Filter(config.log_level.clone(), e.to_string()))?;
    if !(0.0..=1.0).contains(&config.trace_sample_ratio) {
        return Err(TelemetryError::Ratio(config.trace_sample_ratio));
    }
    let (log_layer, guard) = log_layer(config)?;
    let mut layers: Vec<BoxedLayer> = vec![log_layer.with_filter(filter).boxed()];
    let tracer = match &config.otlp_endpoint {
        Some(endpoint) => {
            let provider = tracer_provider(config, endpoint)?;
            let tracer = provider.tracer("sluice");
            let spans_only = filter_fn(|m| m.is_span() && *m.level() <= tracing::Level::INFO);
            layers.push(
                tracing_opentelemetry::layer()
                    .with_tracer(tracer)
                    .with_tracked_inactivity(false)
                    .with_filter(spans_only)
                    .boxed(),
            );
            opentelemetry::global::set_text_map_propagator(
                opentelemetry_sdk::propagation::TraceContextPropagator::new(),
            );
            Some(provider)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .map_err(|e| TelemetryError::Install(e.to_string()))?;
    TRACES.store(tracer.is_some(), Ordering::Relaxed);
    Ok(Telemetry {
        _log: guard,
        tracer,
    })
}

fn log_layer(
    config: &TelemetryConfig,
) -> Result<(BoxedLayer, Option<GatheredGuard>), TelemetryError> {
    let base = tracing_subscriber::fmt::layer().with_target(false);
    Ok(match config.log_target {
        LogTarget::Stderr => {
            // Written by a background thread, gathered: a burst of lines (a monitor-mode
            // rule matching much traffic) costs a write(2) per few milliseconds, not per line.
            let (writer, guard) = gathered(std::io::stderr()).map_err(TelemetryError::LogThread)?;
            let layer = base
                .with_writer(writer)
                .with_ansi(std::io::stderr().is_terminal());
            let boxed = match config.log_format {
                LogFormat::Plain => layer.boxed(),
                LogFormat::Json => layer.json().flatten_event(true).boxed(),
            };
            (boxed, Some(guard))
        }
        LogTarget::Syslog => {
            let syslog = crate::syslog::Syslog::connect(&config.syslog_path, &config.service_name)
                .map_err(|e| TelemetryError::Syslog(config.syslog_path.clone(), e))?;
            let layer = base.with_writer(syslog).with_ansi(false).without_time();
            let boxed = match config.log_format {
                LogFormat::Plain => layer.boxed(),
                LogFormat::Json => layer.json().flatten_event(true).boxed(),
            };
            (boxed, None)
        }
    })
}

fn tracer_provider(
    config: &TelemetryConfig,
    endpoint: &str,
) -> Result<SdkTracerProvider, TelemetryError> {
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| TelemetryError::Otlp(endpoint.to_string(), e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("sluice.role", config.role.clone()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.trace_sample_ratio,
        ))))
        .with_resource(resource)
        .build())
}
