//! Logs and traces.
//!
//! With an OTLP endpoint configured, Harvest's own spans (not those of the
//! libraries under it) go through OpenTelemetry: a sampled request or event
//! has a trace id that crosses gRPC metadata and Kafka headers, and its spans
//! are exported. Without one, no span is recorded beyond what the log lines
//! need, so tracing costs nothing on the hot path.
//!
//! The standard OpenTelemetry variables work as operators expect:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_EXPORTER_OTLP_ENDPOINT` when
//! `telemetry.otlp_endpoint` is not set (and the exporter's other
//! `OTEL_EXPORTER_OTLP_*` settings), `OTEL_SDK_DISABLED=true` and
//! `OTEL_TRACES_EXPORTER=none` to export nothing, `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` for the resource, and `OTEL_TRACES_SAMPLER`
//! (`always_on`, `always_off`, `traceidratio` or their `parentbased_` forms)
//! with `OTEL_TRACES_SAMPLER_ARG` over `telemetry.sample_ratio`. JSON logs
//! carry each line's `trace_id` and `span_id` ([`crate::json_log`]).

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::subscriber::Interest;
use tracing::{Metadata, Subscriber};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
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

/// A per-layer filter asked about every span and event as it is made.
///
/// Each layer's filter passes its decision to the layer through a
/// thread-local state that the next span or event on the thread takes. A
/// callsite every filter accepts outright would skip the question, and
/// take whatever an earlier question on the thread left there. The Kafka
/// client asks whether its log lines are wanted, through `log`, when it
/// builds a client, and asks nothing more: the next Harvest span on that
/// thread went without its exporter, and work under it started a trace of
/// its own. Answering "sometimes" instead of "always" costs one filter look
/// per span or event.
struct AskedEachTime<F>(F);

impl<S, F: Filter<S>> Filter<S> for AskedEachTime<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        cx: Context<'_, S>,
    ) {
        self.0.on_new_span(attrs, id, cx);
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        cx: Context<'_, S>,
    ) {
        self.0.on_record(id, values, cx);
    }

    fn on_enter(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx);
    }

    fn on_exit(&self, id: &tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx);
    }

    fn on_close(&self, id: tracing::span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx);
    }
}

/// Spans to `provider` (Harvest's own), log lines through `filter`.
fn subscriber(
    provider: Option<&SdkTracerProvider>,
    filter: EnvFilter,
    log_format: &str,
) -> impl Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static {
    let otel_layer = provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("harvest"))
            .with_filter(AskedEachTime(traced_targets()))
    });

    let fmt_layer = if log_format == "json" {
        tracing_subscriber::fmt::layer()
            .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
            .event_format(crate::json_log::TraceJson)
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
        .with(fmt_layer.with_filter(AskedEachTime(filter)))
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
    let settings = Export::decide(config, |name| std::env::var(name).ok());
    let provider = match &settings.endpoint {
        Some(endpoint) => {
            let builder = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            // From the environment, the exporter reads the endpoint itself,
            // with the rest of its `OTEL_EXPORTER_OTLP_*` settings.
            let builder = match endpoint {
                Endpoint::Configured(url) => builder.with_endpoint(url),
                Endpoint::FromEnvironment(_) => builder,
            };
            let exporter = builder
                .build()
                .map_err(|error| TelemetryError::Exporter(endpoint.to_string(), error))?;
            // The trace's first service decides; every later hop follows the
            // decision carried in `traceparent`.
            let sampler =
                Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
            let mut resource = Resource::builder();
            if !settings.service_name_from_environment {
                resource = resource.with_service_name(service.to_owned());
            }
            let provider = SdkTracerProvider::builder()
                .with_resource(resource.build())
                .with_sampler(sampler)
                .with_batch_exporter(exporter)
                .build();
            opentelemetry::global::set_tracer_provider(provider.clone());
            Some(provider)
        }
        None => None,
    };

    subscriber(provider.as_ref(), filter, &config.log_format)
        .try_init()
        .map_err(TelemetryError::AlreadyInstalled)?;
    Ok(TelemetryGuard { provider })
}

/// Where spans go.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Endpoint {
    /// `telemetry.otlp_endpoint`.
    Configured(String),
    /// An `OTEL_EXPORTER_OTLP_*ENDPOINT` variable, which the exporter reads.
    FromEnvironment(String),
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Configured(url) | Endpoint::FromEnvironment(url) => f.write_str(url),
        }
    }
}

/// What the configuration and the `OTEL_*` variables decide about export.
#[derive(Clone, Debug, PartialEq)]
struct Export {
    endpoint: Option<Endpoint>,
    sample_ratio: f64,
    service_name_from_environment: bool,
}

impl Export {
    fn decide(config: &TelemetryConfig, env: impl Fn(&str) -> Option<String>) -> Export {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        let disabled = set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
            || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"));
        let endpoint = if disabled {
            None
        } else if let Some(url) = &config.otlp_endpoint {
            Some(Endpoint::Configured(url.clone()))
        } else {
            set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT"))
                .map(Endpoint::FromEnvironment)
        };
        let argument =
            set("OTEL_TRACES_SAMPLER_ARG").and_then(|arg| arg.trim().parse::<f64>().ok());
        let sample_ratio = match set("OTEL_TRACES_SAMPLER").as_deref().map(str::trim) {
            Some("always_on" | "parentbased_always_on") => 1.0,
            Some("always_off" | "parentbased_always_off") => 0.0,
            Some("traceidratio" | "parentbased_traceidratio") => argument.unwrap_or(1.0),
            _ => config.sample_ratio,
        }
        .clamp(0.0, 1.0);
        Export {
            endpoint,
            sample_ratio,
            service_name_from_environment: set("OTEL_SERVICE_NAME").is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn decide(config: &TelemetryConfig, vars: &[(&str, &str)]) -> Export {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        Export::decide(config, |name| vars.get(name).cloned())
    }

    /// Whether the exporter's layer took `span`: only then has it a trace.
    fn traced(span: &tracing::Span) -> bool {
        use opentelemetry::trace::TraceContextExt as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        span.context().span().span_context().is_valid()
    }

    #[test]
    fn a_span_made_just_after_a_kafka_client_is_built_is_still_traced() {
        // The services' `log` records reach tracing through this logger, as
        // the installed subscriber arranges.
        let _ = tracing_log::LogTracer::init();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = subscriber(Some(&provider), EnvFilter::new("info,rdkafka=warn"), "json");
        tracing::subscriber::with_default(subscriber, || {
            let process = || tracing::info_span!(target: "harvest_bus::consumer", "process");
            assert!(traced(&process()), "a Harvest span is traced");
            // Building a client asks whether librdkafka's lines are wanted.
            let _config = rdkafka::ClientConfig::new();
            assert!(
                traced(&process()),
                "the span made right after building a Kafka client is traced"
            );
            let library = tracing::info_span!(target: "h2::proto", "poll");
            assert!(!traced(&library), "a library's span is not");
        });
    }

    #[test]
    fn the_standard_variables_work_as_operators_expect() {
        let none = TelemetryConfig::default();
        assert_eq!(
            decide(&none, &[]).endpoint,
            None,
            "nothing exported by default"
        );
        let from_env = decide(
            &none,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")],
        );
        assert_eq!(
            from_env.endpoint,
            Some(Endpoint::FromEnvironment(
                "http://127.0.0.1:4317".to_owned()
            ))
        );
        let traces_first = decide(
            &none,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://127.0.0.1:14317",
                ),
            ],
        );
        assert_eq!(
            traces_first.endpoint,
            Some(Endpoint::FromEnvironment(
                "http://127.0.0.1:14317".to_owned()
            ))
        );
        let configured = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:4000".to_owned()),
            sample_ratio: 0.5,
            ..TelemetryConfig::default()
        };
        let both = decide(
            &configured,
            &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")],
        );
        assert_eq!(
            both.endpoint,
            Some(Endpoint::Configured("http://127.0.0.1:4000".to_owned())),
            "the setting wins over the environment"
        );
        assert_eq!(both.sample_ratio, 0.5);
        assert!(!both.service_name_from_environment);
        for off in [
            ("OTEL_SDK_DISABLED", "true"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(decide(&configured, &[off]).endpoint, None, "{off:?}");
        }
        let sampled = decide(
            &configured,
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
                ("OTEL_SERVICE_NAME", "orders-east"),
            ],
        );
        assert_eq!(sampled.sample_ratio, 0.25);
        assert!(sampled.service_name_from_environment);
        assert_eq!(
            decide(&configured, &[("OTEL_TRACES_SAMPLER", "always_off")]).sample_ratio,
            0.0
        );
    }
}
