//! Following an order as an operator does: one order placed and delivered
//! with the trace viewer of `make run` (Zipkin) behind the services, then its
//! trace opened in headless Chromium, which must show spans of all four
//! services and every Kafka hop. The screenshot is kept in
//! `target/trace-viewer/trace.png`; `docs/images/trace.png` is a copy.
//!
//! Needs Zipkin's jar (`make deps`), Debian's Chromium and playwright-core
//! (`make browser-deps`); `make test` installs all three.

use std::collections::BTreeSet;
use std::time::Duration;

use harvest_bus::{Stream, Topology};
use harvest_domain::Region;
use harvest_stack::TraceViewer;
use serde_json::Value;

use crate::helpers::{ANJI, System, browser_script, poll, run_browser_script, target_dir};

const COURIER: &str = "courier-anji-viewer";
const SERVICES: [&str; 4] = ["catalog", "orders", "payments", "delivery"];

/// What a trace holds: (service, span name) of every span, lowercase.
fn spans_of(trace: &Value) -> BTreeSet<(String, String)> {
    trace
        .as_array()
        .into_iter()
        .flatten()
        .map(|span| {
            let service = span["localEndpoint"]["serviceName"]
                .as_str()
                .unwrap_or_default();
            let name = span["name"].as_str().unwrap_or_default();
            (service.to_lowercase(), name.to_lowercase())
        })
        .collect()
}

#[tokio::test]
async fn an_orders_trace_opens_in_the_trace_viewer_with_every_service_and_kafka_hop() {
    let script = browser_script("trace.mjs");
    let work = std::env::temp_dir().join(format!(
        "harvest-trace-viewer-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let viewer = TraceViewer::start(&work.join("zipkin.log"))
        .await
        .expect("the trace viewer starts (`make deps` fetches Zipkin)");
    let endpoint = viewer.otlp_endpoint();
    let system = System::start_with(|options| options.otlp_endpoint = Some(endpoint)).await;

    system.courier(COURIER, &ANJI, 5).await;
    let tea = system.product("Anji white tea, 250 g", &ANJI, 10).await;
    let order = system.place(&[(&tea, 1)], "approve").await;
    let id = order.order_id.clone();
    system.carry(COURIER, &id, &tea).await;

    // Every stream of the order's region is written by its owner and read by
    // another service, all within the PlaceOrder trace.
    let topology = Topology::new(
        &system.stack.bus_config(),
        system.stack.options().regions.clone(),
    );
    let region = Region::parse(&order.region).expect("a region");
    let hops: Vec<String> = [
        Stream::Orders,
        Stream::Catalog,
        Stream::Payments,
        Stream::Delivery,
    ]
    .into_iter()
    .flat_map(|stream| {
        let topic = topology.topic(stream, &region);
        [format!("{topic} publish"), format!("{topic} process")]
    })
    .map(|name| name.to_lowercase())
    .collect();

    // Spans reach Zipkin in batches, within seconds.
    let complete = |trace: &Value| {
        let spans = spans_of(trace);
        let services: BTreeSet<&str> = spans.iter().map(|(service, _)| service.as_str()).collect();
        let names: BTreeSet<&str> = spans.iter().map(|(_, name)| name.as_str()).collect();
        SERVICES.iter().all(|service| services.contains(service))
            && hops.iter().all(|hop| names.contains(hop.as_str()))
    };
    let trace_id = poll(|| async {
        let traces = viewer.traces_tagged("order_id", &id).await.ok()?;
        let trace = traces.iter().find(|trace| complete(trace))?;
        trace[0]["traceId"].as_str().map(str::to_owned)
    })
    .await;
    let seen: Vec<BTreeSet<(String, String)>> = viewer
        .traces_tagged("order_id", &id)
        .await
        .unwrap_or_default()
        .iter()
        .map(spans_of)
        .collect();
    let trace_id = trace_id.unwrap_or_else(|| {
        panic!("no trace of {id} in Zipkin with all four services and the hops {hops:?}; traces seen: {seen:?}")
    });

    let screenshots = target_dir().join("trace-viewer");
    std::fs::create_dir_all(&screenshots).expect("a folder for the screenshot");
    let screenshot = screenshots.join("trace.png");
    let started = std::time::Instant::now();
    run_browser_script(
        &script,
        [
            viewer.trace_url(&trace_id).into(),
            screenshot.clone().into_os_string(),
            SERVICES.join(",").into(),
            hops.join(",").into(),
        ],
        Duration::from_secs(120),
        &format!("the trace page of {id} lacks a service or a Kafka hop"),
    )
    .await;
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    println!(
        "trace of {id} checked in Chromium in {:?}; screenshot {}",
        started.elapsed(),
        screenshot.display()
    );
    drop(system);
    drop(viewer);
    let _ = std::fs::remove_dir_all(&work);
}
