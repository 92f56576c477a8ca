//! Logs and traces.
//!
//! With an OTLP endpoint configured, Harvest's own spans (not those of the
//! libraries under it) go through OpenTelemetry: a sampled request or event
//! has a trace id that crosses gRPC metadata and Kafka headers, and its spans
//! are exported. Without one, no span is recorded beyond what the log lines
//! need, so tracing costs nothing on the hot path.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::TelemetryConfig;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log filter {0:?}")]
    Filter(String, #[source] tracing_subscriber::filter::ParseError),
    #[error("could not build the OTLP exporter for {0}")]
    Exporter(String, #[source] opentelemetry_otlp::ExporterBuildError),
    #[error("a global tracing subscriber is already installed")]
    AlreadyInstalled(#[source] tracing_subscriber::util::TryInitError),
}

/// Keeps the tracer provider alive; flushes and stops it when dropped.
#[must_use = "dropping the guard stops span export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = &self.provider else {
            return;
        };
        if let Err(error) = provider.shutdown() {
            eprintln!("telemetry shutdown failed: {error}");
        }
    }
}

/// The crates whose spans are worth a trace: Harvest's own. The libraries
/// under them (h2, hyper, tower, the Redis and Kafka clients) would add
/// dozens of spans per request.
fn traced_targets() -> Targets {
    Targets::new().with_target("harvest", tracing::Level::INFO)
}

/// Installs the global subscriber: `service` names the spans' resource.
pub fn init(service: &str, config: &TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(&directives)
            .map_err(|error| TelemetryError::Filter(directives, error))?,
        _ => EnvFilter::try_new(&config.log_filter)
            .map_err(|error| TelemetryError::Filter(config.log_filter.clone(), error))?,
    };

    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let provider = match &config.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|error| TelemetryError::Exporter(endpoint.clone(), error))?;
            // The trace's first service decides; every later hop follows the
            // decision carried in `traceparent`.
            let sampler =
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.sample_ratio)));
            let provider = SdkTracerProvider::builder()
                .with_resource(
                    Resource::builder()
                        .with_service_name(service.to_owned())
                        .build(),
                )
                .with_sampler(sampler)
                .with_batch_exporter(exporter)
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            Some(provider)
        }
        None => None,
    };
    let otel_layer = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("harvest"))
            .with_filter(traced_targets())
    });

    let fmt_layer = if config.log_format == "json" {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .boxed()
    } else {
        // Colours only for a person at a terminal, not in log files.
        let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(ansi)
            .boxed()
    };

    tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer.with_filter(filter))
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}
