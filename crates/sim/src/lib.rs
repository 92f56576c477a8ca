//! Simulated Harvest users, for the demo, the end-to-end tests and the
//! benchmark alike: storefronts placing orders across regions (with a
//! festival spike), couriers picking up and delivering, an observer reading
//! the event streams, and the invariant checks of ARCHITECTURE.md at the end.

#![forbid(unsafe_code)]

pub mod couriers;
pub mod invariants;
pub mod observer;
pub mod report;
pub mod seed;
pub mod stats;
pub mod storefront;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use harvest_bus::Topology;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use harvest_stack::{ServiceKind, Stack};
use tokio_util::sync::CancellationToken;

use crate::couriers::{CourierBehavior, FleetCounts};
use crate::invariants::Findings;
use crate::observer::Observer;
use crate::stats::{RegionCounts, Samples};
use crate::storefront::{Calls, Traffic};

/// Everything a simulation run does.
#[derive(Clone, Debug)]
pub struct Plan {
    pub traffic: Traffic,
    pub couriers: CourierBehavior,
    pub couriers_per_point: usize,
    pub courier_capacity: i32,
    /// After the traffic stops, how long to wait for every order to end.
    pub drain_timeout: Duration,
}

/// One line per region of the live table.
#[derive(Clone, Debug, Default)]
pub struct RegionNow {
    pub counts: RegionCounts,
    /// PlaceOrder latency over the last interval.
    pub window: Samples,
}

/// The state of a run at one moment.
#[derive(Clone, Debug, Default)]
pub struct Tick {
    pub elapsed: Duration,
    pub draining: bool,
    pub regions: BTreeMap<String, RegionNow>,
}

/// A whole run, at its end.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub elapsed: Duration,
    pub traffic_seconds: f64,
    pub regions: BTreeMap<String, RegionCounts>,
    pub place_latency: BTreeMap<String, Samples>,
    pub placed_to_confirmed: BTreeMap<String, Samples>,
    pub placed_to_assigned: BTreeMap<String, Samples>,
    pub cancel_requests: u64,
    pub first_error: Option<String>,
    pub fleet_assignments: u64,
    pub fleet_delivered: u64,
    pub fleet_failed: u64,
    pub findings: Findings,
}

impl Summary {
    pub fn placed(&self) -> u64 {
        self.regions.values().map(|r| r.placed).sum()
    }

    pub fn errors(&self) -> u64 {
        self.regions.values().map(|r| r.errors).sum()
    }

    pub fn all_latencies(map: &BTreeMap<String, Samples>) -> Samples {
        let mut all = Samples::default();
        for samples in map.values() {
            all.extend(samples);
        }
        all
    }
}

/// What a simulation talks to: the services' APIs and the broker.
#[derive(Clone)]
pub struct Target {
    pub clients: Clients,
    pub bootstrap: String,
    pub topology: Topology,
}

impl Target {
    pub async fn of(stack: &Stack) -> anyhow::Result<Target> {
        Ok(Target {
            clients: Clients::connect(stack).await?,
            bootstrap: stack.bootstrap(),
            topology: Topology::new(&stack.bus_config(), stack.options().regions.clone()),
        })
    }
}

/// The gRPC clients of a running stack.
#[derive(Clone)]
pub struct Clients {
    pub catalog: CatalogServiceClient<tonic::transport::Channel>,
    pub orders: OrdersServiceClient<tonic::transport::Channel>,
    pub payments: PaymentsServiceClient<tonic::transport::Channel>,
    pub delivery: DeliveryServiceClient<tonic::transport::Channel>,
}

impl Clients {
    pub async fn connect(stack: &Stack) -> anyhow::Result<Clients> {
        let channel = |kind| async move {
            let endpoint = stack.endpoint(kind)?;
            tonic::transport::Endpoint::from_shared(endpoint.clone())?
                .connect()
                .await
                .with_context(|| format!("connecting to {kind} at {endpoint}"))
        };
        Ok(Clients {
            catalog: CatalogServiceClient::new(channel(ServiceKind::Catalog).await?),
            orders: OrdersServiceClient::new(channel(ServiceKind::Orders).await?),
            payments: PaymentsServiceClient::new(channel(ServiceKind::Payments).await?),
            delivery: DeliveryServiceClient::new(channel(ServiceKind::Delivery).await?),
        })
    }
}

/// Seeds the catalog and the courier fleet, runs the traffic, waits for every
/// order to end, and checks the invariants. `on_tick` is called about once a
/// second; `stop` ends the traffic early (the checks still run).
pub async fn run(
    target: &Target,
    plan: &Plan,
    stop: CancellationToken,
    mut on_tick: impl FnMut(&Tick),
) -> anyhow::Result<Summary> {
    let mut clients = target.clients.clone();
    let products = seed::seed_catalog(&mut clients.catalog)
        .await
        .context("seeding the catalog")?;
    let fleet = couriers::register_fleet(
        &mut clients.delivery,
        target.topology.regions(),
        plan.couriers_per_point,
        plan.courier_capacity,
    )
    .await
    .context("registering couriers")?;
    let observer = Observer::start(&target.bootstrap, &target.topology)?;

    let started = Instant::now();
    let calls = Arc::new(Mutex::new(Calls::default()));
    let fleet_counts = Arc::new(FleetCounts::default());
    let couriers_stop = CancellationToken::new();
    let couriers = tokio::spawn(couriers::run_fleet(
        clients.delivery.clone(),
        fleet,
        plan.couriers.clone(),
        fleet_counts.clone(),
        couriers_stop.clone(),
    ));
    let traffic_stop = stop.child_token();
    let mut storefronts = tokio::spawn(storefront::run(
        clients.orders.clone(),
        products,
        plan.traffic.clone(),
        calls.clone(),
        traffic_stop.clone(),
    ));

    // Traffic, then the drain: one tick a second throughout.
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let mut traffic_done = false;
    let mut traffic_seconds = 0.0;
    let mut drain_deadline = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut storefronts, if !traffic_done => {
                traffic_done = true;
                traffic_seconds = started.elapsed().as_secs_f64();
                drain_deadline = Some(tokio::time::Instant::now() + plan.drain_timeout);
            }
            () = stop.cancelled(), if drain_deadline.is_some() => break,
        }
        let tick = snapshot(&calls, &observer, started.elapsed(), traffic_done);
        on_tick(&tick);
        if let Some(deadline) = drain_deadline {
            let placed = calls
                .lock()
                .map(|c| c.placed_orders.clone())
                .unwrap_or_default();
            let seen_unfinished = observer.unfinished(&placed);
            // The observer may trail the streams; the orders service decides.
            let done = seen_unfinished.is_empty()
                || (seen_unfinished.len() <= 200
                    && still_open(&clients, &seen_unfinished).await.is_empty());
            if done || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
    }
    traffic_stop.cancel();
    couriers_stop.cancel();
    let _ = couriers.await;

    let calls = calls.lock().map(|c| c.clone()).unwrap_or_default();
    let views = observer.regions();
    let mut summary = Summary {
        elapsed: started.elapsed(),
        traffic_seconds: if traffic_done {
            traffic_seconds
        } else {
            started.elapsed().as_secs_f64()
        },
        cancel_requests: calls.cancel_requests,
        first_error: calls.first_error.clone(),
        fleet_assignments: fleet_counts
            .assignments
            .load(std::sync::atomic::Ordering::Relaxed),
        fleet_delivered: fleet_counts
            .delivered
            .load(std::sync::atomic::Ordering::Relaxed),
        fleet_failed: fleet_counts
            .failed
            .load(std::sync::atomic::Ordering::Relaxed),
        ..Summary::default()
    };
    for (region, view) in &views {
        summary
            .placed_to_confirmed
            .insert(region.clone(), view.placed_to_confirmed.clone());
        summary
            .placed_to_assigned
            .insert(region.clone(), view.placed_to_assigned.clone());
    }
    for (region, counts) in merge_counts(&calls, &views) {
        summary.regions.insert(region, counts);
    }
    for (region, region_calls) in &calls.regions {
        summary
            .place_latency
            .insert(region.clone(), region_calls.latency.clone());
    }

    let mut findings = Findings::default();
    invariants::check_stock(&mut clients.catalog, &mut findings)
        .await
        .context("auditing stock")?;
    findings.unfinished_orders =
        still_open(&clients, &observer.unfinished(&calls.placed_orders)).await;
    let endings = observer.endings();
    invariants::check_payments(&clients.payments, &endings, &mut findings).await;
    summary.findings = findings;
    Ok(summary)
}

/// The orders among `order_ids` that the orders service has not ended
/// (or could not say).
async fn still_open(clients: &Clients, order_ids: &[String]) -> Vec<String> {
    use futures::StreamExt;
    use harvest_proto::common::v1::OrderState;
    use harvest_proto::orders::v1::GetOrderRequest;
    futures::stream::iter(order_ids.iter().cloned().map(|order_id| {
        let mut orders = clients.orders.clone();
        async move {
            let request = GetOrderRequest {
                order_id: order_id.clone(),
            };
            let ended = orders.get_order(request).await.is_ok_and(|order| {
                matches!(
                    order.get_ref().state(),
                    OrderState::Delivered | OrderState::Cancelled
                )
            });
            (!ended).then_some(order_id)
        }
    }))
    .buffer_unordered(32)
    .filter_map(std::future::ready)
    .collect()
    .await
}

fn merge_counts(
    calls: &Calls,
    views: &BTreeMap<String, observer::RegionView>,
) -> BTreeMap<String, RegionCounts> {
    let mut merged: BTreeMap<String, RegionCounts> = BTreeMap::new();
    for (region, region_calls) in &calls.regions {
        let entry = merged.entry(region.clone()).or_default();
        entry.placed = region_calls.placed;
        entry.errors = region_calls.errors;
    }
    for (region, view) in views {
        let entry = merged.entry(region.clone()).or_default();
        entry.confirmed = view.confirmed;
        entry.delivered = view.delivered;
        entry.cancelled.clone_from(&view.cancelled);
    }
    merged
}

fn snapshot(calls: &Mutex<Calls>, observer: &Observer, elapsed: Duration, draining: bool) -> Tick {
    let (counts, windows) = match calls.lock() {
        Ok(mut calls) => {
            let windows = calls.take_window();
            (merge_counts(&calls, &observer.regions()), windows)
        }
        Err(_) => Default::default(),
    };
    let regions = counts
        .into_iter()
        .map(|(region, counts)| {
            let window = windows.get(&region).cloned().unwrap_or_default();
            (region, RegionNow { counts, window })
        })
        .collect();
    Tick {
        elapsed,
        draining,
        regions,
    }
}
