//! W3C trace context in Kafka headers.

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rdkafka::message::{BorrowedHeaders, Header, Headers, OwnedHeaders};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// `traceparent` and `tracestate` of the current span, if it is being traced.
pub(crate) fn current_context_fields() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut fields = FieldCollector(Vec::new());
    TraceContextPropagator::new().inject_context(&context, &mut fields);
    fields.0
}

/// The W3C `traceparent` of the current span, if it is being traced: for
/// keeping with a record, so later work on it joins the same trace.
pub fn current_traceparent() -> Option<String> {
    current_context_fields()
        .into_iter()
        .find(|(key, _)| key == "traceparent")
        .map(|(_, value)| value)
}

/// Makes `span` a child of `traceparent` (as kept by
/// [`current_traceparent`]); nothing happens for an empty or invalid one.
pub fn set_parent(span: &tracing::Span, traceparent: &str) {
    if traceparent.is_empty() {
        return;
    }
    let fields = [("traceparent".to_owned(), traceparent.to_owned())];
    let context = TraceContextPropagator::new().extract(&FieldExtractor(&fields));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

struct FieldExtractor<'a>(&'a [(String, String)]);

impl Extractor for FieldExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k.as_str()).collect()
    }
}

struct FieldCollector(Vec<(String, String)>);

impl Injector for FieldCollector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

pub(crate) fn add_headers(mut headers: OwnedHeaders, fields: &[(String, String)]) -> OwnedHeaders {
    for (key, value) in fields {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// Makes `span` a child of the trace context in `headers`, when they carry one.
pub(crate) fn set_parent_from_headers(span: &tracing::Span, headers: Option<&BorrowedHeaders>) {
    let Some(headers) = headers else {
        return;
    };
    let context = TraceContextPropagator::new().extract(&HeaderExtractor(headers));
    if context.span().span_context().is_valid() {
        let _ = span.set_parent(context);
    }
}

struct HeaderExtractor<'a>(&'a BorrowedHeaders);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|header| header.key == key)
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|header| header.key).collect()
    }
}
