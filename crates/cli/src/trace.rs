//! W3C trace context on every outgoing call, so that what a person does with
//! `harvest` shows up inside the trace they are already following.

use std::collections::HashMap;

use opentelemetry::propagation::Injector;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;

/// Installs the W3C propagator and, when `TRACEPARENT` (and `TRACESTATE`) are
/// set, makes that trace current, the convention for handing a trace to a
/// child process. Keep the guard for as long as calls are made.
pub fn join_caller_trace() -> Option<opentelemetry::ContextGuard> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let mut carrier = HashMap::new();
    for name in ["traceparent", "tracestate"] {
        if let Ok(value) = std::env::var(name.to_ascii_uppercase()) {
            carrier.insert(name.to_owned(), value);
        }
    }
    let context =
        opentelemetry::global::get_text_map_propagator(|propagator| propagator.extract(&carrier));
    context
        .span()
        .span_context()
        .is_valid()
        .then(|| context.attach())
}

/// Adds `traceparent` (and `tracestate`) for the current trace, if there is
/// one; with no trace or no propagator installed it adds nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContext;

impl Interceptor for TraceContext {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        let context = opentelemetry::Context::current();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&context, &mut MetadataInjector(request.metadata_mut()));
        });
        Ok(request)
    }
}

struct MetadataInjector<'a>(&'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // A propagator only produces valid header names and values; anything
        // else is dropped rather than failing the call.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

    use super::*;

    #[test]
    fn injects_the_current_trace_and_nothing_without_one() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

        let untraced = TraceContext.call(tonic::Request::new(())).expect("passes");
        assert!(untraced.metadata().get("traceparent").is_none());

        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").expect("hex"),
            SpanId::from_hex("00f067aa0ba902b7").expect("hex"),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let _attached = opentelemetry::Context::new()
            .with_remote_span_context(span)
            .attach();
        let traced = TraceContext.call(tonic::Request::new(())).expect("passes");
        assert_eq!(
            traced
                .metadata()
                .get("traceparent")
                .and_then(|value| value.to_str().ok()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
    }
}
