//! One trace per order: with an OTLP endpoint configured, the spans of all
//! four services for one order share one trace id; without one, nothing is
//! traced.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use harvest_bus::{Stream, Topology};
use harvest_domain::Region;
use harvest_proto::common::v1::OrderState;
use harvest_testkit::kafka::{Probe, RawMessage};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use tonic::{Request, Response, Status};

use crate::helpers::{ANJI, System, WAIT, poll};

/// A span as received: its trace, its service, and its attribute values.
#[derive(Clone, Debug)]
struct ReceivedSpan {
    trace_id: Vec<u8>,
    service: String,
    name: String,
    values: Vec<String>,
}

/// A small OTLP/gRPC trace receiver that keeps every span.
#[derive(Clone, Default)]
struct Receiver {
    spans: Arc<Mutex<Vec<ReceivedSpan>>>,
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::StringValue(text) => Some(text.clone()),
        _ => None,
    }
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut received = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| text(attribute.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push(ReceivedSpan {
                        trace_id: span.trace_id.clone(),
                        service: service.clone(),
                        name: span.name.clone(),
                        values: span
                            .attributes
                            .iter()
                            .filter_map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
                            .collect(),
                    });
                }
            }
        }
        if let Ok(mut spans) = self.spans.lock() {
            spans.extend(received);
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tokio::test]
async fn one_order_is_one_trace_across_all_four_services() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(receiver.clone()))
        .serve_with_incoming(tokio_stream_from(listener));
    let _collector = tokio::spawn(server);

    let system = System::start_with(|options| {
        options.otlp_endpoint = Some(format!("http://{address}"));
    })
    .await;
    system.courier("courier-anji-trace", &ANJI, 5).await;
    let tea = system.product("Anji white tea, 250 g", &ANJI, 10).await;
    let order = system.place(&[(&tea, 1)], "approve").await;
    let id = order.order_id.clone();
    system.wait_order(&id, OrderState::Dispatching).await;

    // Spans leave each service in batches, within seconds.
    let services = poll(|| async {
        let spans = receiver.spans.lock().ok()?.clone();
        let traces: BTreeSet<&Vec<u8>> = spans
            .iter()
            .filter(|span| span.values.iter().any(|value| value == &id))
            .map(|span| &span.trace_id)
            .collect();
        let mut by_trace: HashMap<&Vec<u8>, BTreeSet<&str>> = HashMap::new();
        for span in spans.iter().filter(|span| traces.contains(&span.trace_id)) {
            by_trace
                .entry(&span.trace_id)
                .or_default()
                .insert(span.service.as_str());
        }
        let complete = by_trace.values().find(|services| services.len() == 4)?;
        Some(complete.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    })
    .await;
    let spans = receiver.spans.lock().map(|s| s.clone()).unwrap_or_default();
    let seen: BTreeSet<(String, String)> = spans
        .iter()
        .filter(|span| span.values.iter().any(|value| value == &id))
        .map(|span| (span.service.clone(), span.name.clone()))
        .collect();
    assert_eq!(
        services,
        Some(vec![
            "catalog".to_owned(),
            "delivery".to_owned(),
            "orders".to_owned(),
            "payments".to_owned()
        ]),
        "one trace with spans from all four services; spans naming the order: {seen:?}"
    );
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(stream, _)| stream);
        Some((accepted, listener))
    })
}

/// Without an OTLP endpoint nothing is traced: no span is recorded, so the
/// events of an order carry no trace context, in their headers or their
/// envelopes.
#[tokio::test]
async fn without_an_endpoint_events_carry_no_trace_context() {
    let system = System::start().await;
    let tea = system.product("Anji white tea, 250 g", &ANJI, 10).await;
    let order = system.place(&[(&tea, 1)], "approve").await;
    let id = order.order_id.clone();
    system.wait_order(&id, OrderState::Confirmed).await;

    let topology = Topology::new(
        &system.stack.bus_config(),
        system.stack.options().regions.clone(),
    );
    let region = Region::parse(&order.region).expect("a region");
    let topics: Vec<String> = [Stream::Orders, Stream::Catalog, Stream::Payments]
        .into_iter()
        .map(|stream| topology.topic(stream, &region))
        .collect();
    let probe = Probe::start(&system.stack.bootstrap(), &topics).expect("probe");
    // Placed, reserved, state changed, authorized, confirmed.
    let events = probe
        .wait_for(WAIT, |messages| {
            let ours: Vec<RawMessage> = messages
                .iter()
                .filter(|message| message.key.as_deref() == Some(id.as_bytes()))
                .cloned()
                .collect();
            (ours.len() >= 5).then_some(ours)
        })
        .await
        .expect("the order's events");
    for message in &events {
        assert_eq!(message.header("traceparent"), None);
    }
    for envelope in harvest_testkit::kafka::envelopes(&events) {
        assert!(
            envelope.traceparent.is_empty(),
            "{}: {}",
            envelope.event_type,
            envelope.traceparent
        );
    }
}
