//! Following an order as an operator does: one order placed and delivered
//! with the trace viewer of `make run` (Zipkin) behind the services, then its
//! trace opened in headless Chromium, which must show spans of all four
//! services and every Kafka hop. The screenshot is kept in
//! `target/trace-viewer/trace.png`; `docs/images/trace.png` is a copy.
//!
//! Needs Zipkin's jar (`make deps`), Debian's Chromium and playwright-core
//! (`make browser-deps`); `make test` installs all three.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use harvest_bus::{Stream, Topology};
use harvest_domain::Region;
use harvest_stack::TraceViewer;
use serde_json::Value;

use crate::helpers::{ANJI, System, poll};

const COURIER: &str = "courier-anji-viewer";
const SERVICES: [&str; 4] = ["catalog", "orders", "payments", "delivery"];

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                repository().join(dir)
            }
        })
        .unwrap_or_else(|| repository().join("target"))
}

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
    let script = repository().join("e2e-browser/trace.mjs");
    assert!(
        repository()
            .join("e2e-browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run `make browser-deps`"
    );
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
    let browser = tokio::process::Command::new("node")
        .arg(&script)
        .arg(viewer.trace_url(&trace_id))
        .arg(&screenshot)
        .arg(SERVICES.join(","))
        .arg(hops.join(","))
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(120), browser)
        .await
        .expect("the browser finishes within two minutes")
        .expect("node runs (Node.js 20 or newer on PATH)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the trace page of {id} lacks a service or a Kafka hop ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
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
