//! JSON log lines that join traces: each line carries the `trace_id` and
//! `span_id` of the span it was written in (when tracing is on), beside the
//! time, level, target, the event's fields and the fields of the spans it
//! is in (an order's id, a shipment's id).

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_opentelemetry::OtelData;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// Formats one event as one JSON object per line.
pub struct TraceJson;

impl<S> FormatEvent<S, JsonFields> for TraceJson
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        context: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = Map::new();
        line.insert(
            "timestamp".to_owned(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        let metadata = event.metadata();
        line.insert(
            "level".to_owned(),
            Value::String(metadata.level().to_string()),
        );
        line.insert(
            "target".to_owned(),
            Value::String(metadata.target().to_owned()),
        );
        let mut fields = Map::new();
        event.record(&mut Fields(&mut fields));
        line.insert("fields".to_owned(), Value::Object(fields));
        let mut ids = None;
        if let Some(scope) = context.event_scope() {
            let mut spans = Vec::new();
            for span in scope.from_root() {
                let mut entry = Map::new();
                entry.insert("name".to_owned(), Value::String(span.name().to_owned()));
                let extensions = span.extensions();
                // The innermost traced span's ids: later spans override.
                if let Some(found) = extensions.get::<OtelData>().and_then(trace_ids) {
                    ids = Some(found);
                }
                if let Some(Value::Object(recorded)) = extensions
                    .get::<FormattedFields<JsonFields>>()
                    .and_then(|formatted| serde_json::from_str(formatted.as_str()).ok())
                {
                    entry.extend(recorded);
                }
                spans.push(Value::Object(entry));
            }
            if let Some(innermost) = spans.last().cloned() {
                line.insert("span".to_owned(), innermost);
            }
            line.insert("spans".to_owned(), Value::Array(spans));
        }
        if let Some((trace_id, span_id)) = ids {
            line.insert("trace_id".to_owned(), Value::String(trace_id));
            line.insert("span_id".to_owned(), Value::String(span_id));
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// A span's W3C trace and span ids, once it is traced (entered, with a
/// valid trace).
fn trace_ids(data: &OtelData) -> Option<(String, String)> {
    let (trace_id, span_id) = (data.trace_id()?, data.span_id()?);
    (trace_id != opentelemetry::TraceId::INVALID)
        .then(|| (trace_id.to_string(), span_id.to_string()))
}

/// Collects an event's fields as JSON values.
struct Fields<'a>(&'a mut Map<String, Value>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    /// Collects what the formatter writes.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_line_in_a_traced_span_carries_its_trace_and_span_ids_and_fields() {
        let lines = Lines::default();
        let writer = lines.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")))
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(JsonFields::new())
                    .event_format(TraceJson)
                    .with_writer(move || writer.clone()),
            );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("apply", order_id = "ord_1");
            let _entered = span.enter();
            tracing::info!(attempt = 2, "order moved");
        });
        tracing::subscriber::with_default(tracing_subscriber::registry(), || {});
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["level"], "INFO");
        assert_eq!(line["fields"]["message"], "order moved");
        assert_eq!(line["fields"]["attempt"], 2);
        assert_eq!(line["span"]["name"], "apply");
        assert_eq!(line["span"]["order_id"], "ord_1");
        let trace_id = line["trace_id"].as_str().expect("a trace id");
        assert_eq!(trace_id.len(), 32);
        assert_ne!(trace_id, "0".repeat(32));
        assert_eq!(line["span_id"].as_str().expect("a span id").len(), 16);
    }

    #[test]
    fn a_line_outside_any_trace_has_no_ids() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(TraceJson)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || tracing::warn!("no span"));
        let text = String::from_utf8(lines.0.lock().expect("lock").clone()).expect("utf-8");
        let line: Value = serde_json::from_str(text.trim()).expect("one JSON line");
        assert_eq!(line["fields"]["message"], "no span");
        assert!(line.get("trace_id").is_none());
        assert!(line.get("span").is_none());
    }
}
