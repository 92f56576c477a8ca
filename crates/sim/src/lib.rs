//! Simulated Harvest users, for the demo, the end-to-end tests and the
//! benchmark alike: storefronts placing orders across regions (with a
//! festival spike), couriers picking up and delivering, an observer reading
//! the event streams, and the invariant checks of ARCHITECTURE.md at the end.

#![forbid(unsafe_code)]

pub mod bench;
pub mod couriers;
pub mod faults;
pub mod invariants;
pub mod observer;
pub mod report;
pub mod seed;
pub mod shop;
pub mod stats;
pub mod storefront;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use harvest_bus::Topology;
use harvest_kit::issuer::Minter;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::common::v1::OrderState;
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::orders::v1::{GetOrderRequest, Order};
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use harvest_stack::{ServiceKind, Stack};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

use crate::couriers::{CourierBehavior, Doorstep, FleetCounts};
use crate::invariants::Findings;
use crate::observer::{Ending, Observer, Track};
use crate::stats::{RegionCounts, Samples};
use crate::storefront::{Calls, Traffic};

/// How long the summary waits for the observer to read the endings the
/// orders service has already decided.
const OBSERVER_CATCH_UP: Duration = Duration::from_secs(5);

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
    /// Courier steps the delivery service refused.
    pub fleet_refused: u64,
    /// Restarts of services that exited during the run, by service; filled
    /// in by whoever supervised them.
    pub service_restarts: BTreeMap<String, u32>,
    pub findings: Findings,
}

impl Summary {
    pub fn placed(&self) -> u64 {
        self.regions.values().map(|r| r.placed).sum()
    }

    pub fn errors(&self) -> u64 {
        self.regions.values().map(|r| r.errors).sum()
    }

    /// Orders acknowledged only on a later attempt with the same key.
    pub fn placed_on_retry(&self) -> u64 {
        self.regions.values().map(|r| r.placed_on_retry).sum()
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

/// A connection to a service whose requests carry tokens for whoever they
/// act as ([`harvest_kit::issuer::act_as`]), when the stack has
/// authentication on.
pub type Channel = InterceptedService<tonic::transport::Channel, Minter>;

/// The gRPC clients of a running stack.
#[derive(Clone)]
pub struct Clients {
    pub catalog: CatalogServiceClient<Channel>,
    pub orders: OrdersServiceClient<Channel>,
    pub payments: PaymentsServiceClient<Channel>,
    pub delivery: DeliveryServiceClient<Channel>,
}

impl Clients {
    pub async fn connect(stack: &Stack) -> anyhow::Result<Clients> {
        let minter = Minter::new(stack.issuer().cloned());
        let tls = stack.client_tls()?;
        let channel = |kind| {
            let (minter, tls) = (minter.clone(), tls.clone());
            async move {
                let endpoint = stack.endpoint(kind)?;
                let mut connection = tonic::transport::Endpoint::from_shared(endpoint.clone())?;
                if let Some(tls) = tls {
                    connection = connection.tls_config(tls)?;
                }
                let channel = connection
                    .connect()
                    .await
                    .with_context(|| format!("connecting to {kind} at {endpoint}"))?;
                anyhow::Ok(InterceptedService::new(channel, minter))
            }
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
    let session = Session::open(
        target,
        &Setup {
            couriers: plan.couriers.clone(),
            couriers_per_point: plan.couriers_per_point,
            courier_capacity: plan.courier_capacity,
            stock_factor: 1,
            // The demo's storefront and `harvest` place orders too.
            buyers_at_the_door: true,
        },
    )
    .await?;
    session.traffic(&plan.traffic, &stop, &mut on_tick).await;
    session.drain(plan.drain_timeout, &stop, &mut on_tick).await;
    session.finish().await
}

/// How a session's world is set up.
#[derive(Clone, Debug)]
pub struct Setup {
    pub couriers: CourierBehavior,
    pub couriers_per_point: usize,
    pub courier_capacity: i32,
    /// Stock of every sample lot is multiplied by this.
    pub stock_factor: i64,
    /// Couriers carrying an order the simulated storefronts did not place
    /// (a person's, from the reference storefront or `harvest`) get its
    /// delivery code from its buyer at the door; otherwise they have none.
    pub buyers_at_the_door: bool,
}

/// A seeded system with couriers working and an observer reading the
/// streams, through which traffic can be run in phases.
pub struct Session {
    clients: Clients,
    observer: Observer,
    products: Vec<harvest_proto::catalog::v1::Product>,
    calls: Arc<Mutex<Calls>>,
    fleet_counts: Arc<FleetCounts>,
    /// The buyers' delivery codes, from the storefronts to the couriers.
    doorstep: Arc<Doorstep>,
    couriers_stop: CancellationToken,
    couriers: tokio::task::JoinHandle<()>,
    started: Instant,
    traffic_seconds: Mutex<f64>,
}

/// What one phase of traffic did, for the orders placed in it.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub seconds: f64,
    pub placed: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub place_latency: BTreeMap<String, Samples>,
    pub placed_to_confirmed: BTreeMap<String, Samples>,
    pub placed_to_assigned: BTreeMap<String, Samples>,
    /// Orders of the phase that were neither confirmed nor ended when the
    /// phase was measured.
    pub unconfirmed: BTreeMap<String, u64>,
    pub first_error: Option<String>,
}

impl Phase {
    pub fn total(map: &BTreeMap<String, u64>) -> u64 {
        map.values().sum()
    }
}

impl Session {
    pub async fn open(target: &Target, setup: &Setup) -> anyhow::Result<Session> {
        let mut clients = target.clients.clone();
        let products = seed::seed_catalog_with(&mut clients.catalog, setup.stock_factor)
            .await
            .context("seeding the catalog")?;
        let fleet = couriers::register_fleet(
            &mut clients.delivery,
            target.topology.regions(),
            setup.couriers_per_point,
            setup.courier_capacity,
        )
        .await
        .context("registering couriers")?;
        let observer = Observer::start(&target.bootstrap, &target.topology)?;
        let fleet_counts = Arc::new(FleetCounts::default());
        let doorstep = Arc::new(if setup.buyers_at_the_door {
            Doorstep::asking_buyers(clients.orders.clone())
        } else {
            Doorstep::default()
        });
        let couriers_stop = CancellationToken::new();
        let couriers = tokio::spawn(couriers::run_fleet(
            clients.delivery.clone(),
            fleet,
            setup.couriers.clone(),
            fleet_counts.clone(),
            doorstep.clone(),
            couriers_stop.clone(),
        ));
        Ok(Session {
            clients,
            observer,
            products,
            calls: Arc::new(Mutex::new(Calls::default())),
            fleet_counts,
            doorstep,
            couriers_stop,
            couriers,
            started: Instant::now(),
            traffic_seconds: Mutex::new(0.0),
        })
    }

    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    pub fn products(&self) -> &[harvest_proto::catalog::v1::Product] {
        &self.products
    }

    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// Orders acknowledged so far, in all phases.
    pub fn placed_orders(&self) -> Vec<String> {
        self.calls
            .lock()
            .map(|c| c.placed_orders.clone())
            .unwrap_or_default()
    }

    /// Runs the storefronts for the traffic's duration (or until `stop`),
    /// ticking once a second.
    pub async fn traffic(
        &self,
        traffic: &Traffic,
        stop: &CancellationToken,
        on_tick: &mut impl FnMut(&Tick),
    ) {
        let began = Instant::now();
        let traffic_stop = stop.child_token();
        let mut storefronts = tokio::spawn(storefront::run(
            self.clients.orders.clone(),
            self.products.clone(),
            traffic.clone(),
            self.calls.clone(),
            self.doorstep.clone(),
            traffic_stop.clone(),
        ));
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    on_tick(&snapshot(&self.calls, &self.observer, self.started.elapsed(), false));
                }
                _ = &mut storefronts => break,
            }
        }
        traffic_stop.cancel();
        if let Ok(mut seconds) = self.traffic_seconds.lock() {
            *seconds += began.elapsed().as_secs_f64();
        }
    }

    /// Runs one phase of traffic and reports on the orders placed in it,
    /// waiting up to `settle` after it for them to be confirmed or end.
    pub async fn phase(
        &self,
        traffic: &Traffic,
        settle: Duration,
        stop: &CancellationToken,
    ) -> Phase {
        let (orders_before, latency_before) = self.mark();
        let began = Instant::now();
        self.traffic(traffic, stop, &mut |_| {}).await;
        let seconds = began.elapsed().as_secs_f64();
        let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();
        let orders: Vec<String> =
            calls.placed_orders[orders_before.min(calls.placed_orders.len())..].to_vec();
        let deadline = tokio::time::Instant::now() + settle;
        while tokio::time::Instant::now() < deadline && !stop.is_cancelled() {
            let waiting = orders
                .iter()
                .filter(|id| {
                    self.observer
                        .track(id)
                        .is_none_or(|t| t.confirmed_at.is_none() && t.ending.is_none())
                })
                .count();
            if waiting == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut phase = Phase {
            seconds,
            first_error: calls.first_error.clone(),
            ..Phase::default()
        };
        for (region, region_calls) in &calls.regions {
            let (placed_before, errors_before, samples_before) =
                latency_before.get(region).cloned().unwrap_or_default();
            phase
                .placed
                .insert(region.clone(), region_calls.placed - placed_before);
            phase
                .errors
                .insert(region.clone(), region_calls.errors - errors_before);
            phase
                .place_latency
                .insert(region.clone(), region_calls.latency.since(&samples_before));
        }
        for order_id in &orders {
            let Some(track) = self.observer.track(order_id) else {
                continue;
            };
            let region = track.region.clone();
            match (track.placed_at, track.confirmed_at) {
                (Some(placed), Some(confirmed)) => phase
                    .placed_to_confirmed
                    .entry(region.clone())
                    .or_default()
                    .record_seconds(confirmed - placed),
                (_, None) if track.ending.is_none() => {
                    *phase.unconfirmed.entry(region.clone()).or_default() += 1;
                }
                _ => {}
            }
            if let (Some(placed), Some(assigned)) = (track.placed_at, track.assigned_at) {
                phase
                    .placed_to_assigned
                    .entry(region)
                    .or_default()
                    .record_seconds(assigned - placed);
            }
        }
        phase
    }

    /// How far the calls have got: orders so far, and per region (placed,
    /// errors, latency samples).
    fn mark(&self) -> (usize, BTreeMap<String, (u64, u64, Samples)>) {
        self.calls
            .lock()
            .map(|calls| {
                let regions = calls
                    .regions
                    .iter()
                    .map(|(region, c)| (region.clone(), (c.placed, c.errors, c.latency.clone())))
                    .collect();
                (calls.placed_orders.len(), regions)
            })
            .unwrap_or_default()
    }

    /// Waits up to `timeout` (or `stop`) for every acknowledged order to end,
    /// ticking once a second.
    pub async fn drain(
        &self,
        timeout: Duration,
        stop: &CancellationToken,
        on_tick: &mut impl FnMut(&Tick),
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = stop.cancelled() => return,
            }
            on_tick(&snapshot(
                &self.calls,
                &self.observer,
                self.started.elapsed(),
                true,
            ));
            let seen_unfinished = self.observer.unfinished(&self.placed_orders());
            // The observer may trail the streams; the orders service decides.
            let done = seen_unfinished.is_empty()
                || (seen_unfinished.len() <= 200
                    && still_open(&self.clients, &seen_unfinished).await.is_empty());
            if done || tokio::time::Instant::now() >= deadline {
                return;
            }
        }
    }

    /// Stops the couriers and checks the invariants. The summary's counts
    /// and the invariant checks describe the same final truth: an order the
    /// observer has not seen end is counted as the orders service answers
    /// for it, the answer the unfinished-orders check uses too.
    pub async fn finish(self) -> anyhow::Result<Summary> {
        self.couriers_stop.cancel();
        let _ = self.couriers.await;
        let mut clients = self.clients.clone();
        let calls = self.calls.lock().map(|c| c.clone()).unwrap_or_default();

        // The observer trails the broker; the orders service decides.
        let lagging = self.observer.unfinished(&calls.placed_orders);
        let decided = orders_of(&clients, &lagging).await;
        let (unfinished, ended): (Vec<String>, Vec<String>) = lagging
            .into_iter()
            .partition(|id| open_at_the_service(id, &decided));
        // Let the observer read what is already decided, so that latencies
        // count those orders too; what it still misses comes from `decided`.
        self.observer
            .wait_for_endings(&ended, OBSERVER_CATCH_UP)
            .await;
        let tracks = self.observer.tracks(&calls.placed_orders);
        let views = self.observer.regions();

        let relaxed = std::sync::atomic::Ordering::Relaxed;
        let mut summary = Summary {
            elapsed: self.started.elapsed(),
            traffic_seconds: self.traffic_seconds.lock().map(|s| *s).unwrap_or_default(),
            regions: final_counts(&calls, &tracks, &decided),
            cancel_requests: calls.cancel_requests,
            first_error: calls.first_error.clone(),
            fleet_assignments: self.fleet_counts.assignments.load(relaxed),
            fleet_delivered: self.fleet_counts.delivered.load(relaxed),
            fleet_failed: self.fleet_counts.failed.load(relaxed),
            fleet_refused: self.fleet_counts.refused.load(relaxed),
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
        for (region, region_calls) in &calls.regions {
            summary
                .place_latency
                .insert(region.clone(), region_calls.latency.clone());
        }
        let mut findings = Findings::default();
        invariants::check_stock(&mut clients.catalog, &mut findings)
            .await
            .context("auditing stock")?;
        findings.unfinished_orders = unfinished;
        let mut endings = self.observer.endings();
        for (order_id, order) in &decided {
            if let Some(ending) = ending_of(order) {
                endings.insert(order_id.clone(), Some(ending));
            }
        }
        invariants::check_payments(&clients.payments, &endings, &mut findings).await;
        summary.findings = findings;
        Ok(summary)
    }
}

/// The orders among `order_ids` that the orders service has not ended
/// (or could not say).
async fn still_open(clients: &Clients, order_ids: &[String]) -> Vec<String> {
    let answered = orders_of(clients, order_ids).await;
    order_ids
        .iter()
        .filter(|id| open_at_the_service(id, &answered))
        .cloned()
        .collect()
}

/// Whether the orders service, as `answered`, has not ended `order_id` (or
/// could not say).
fn open_at_the_service(order_id: &str, answered: &HashMap<String, Order>) -> bool {
    answered
        .get(order_id)
        .is_none_or(|order| ending_of(order).is_none())
}

/// The orders among `order_ids` as the orders service has them now, for
/// those it could answer for.
async fn orders_of(clients: &Clients, order_ids: &[String]) -> HashMap<String, Order> {
    use futures::StreamExt;
    futures::stream::iter(order_ids.iter().cloned().map(|order_id| {
        let mut orders = clients.orders.clone();
        async move {
            let request = GetOrderRequest {
                order_id: order_id.clone(),
            };
            let order = orders.get_order(request).await.ok()?.into_inner();
            Some((order_id, order))
        }
    }))
    .buffer_unordered(32)
    .filter_map(std::future::ready)
    .collect()
    .await
}

/// How an order ended, if it has.
fn ending_of(order: &Order) -> Option<Ending> {
    match order.state() {
        OrderState::Delivered => Some(Ending::Delivered),
        OrderState::Cancelled => Some(Ending::Cancelled(order.cancel_reason)),
        _ => None,
    }
}

/// The final counts per region of the acknowledged orders: placed and
/// errors from the calls; confirmed, delivered and cancelled from `decided`
/// (the orders service's answer) for an order it holds, else from the
/// observer's track. Orders neither knows of count as placed only.
pub fn final_counts(
    calls: &Calls,
    tracks: &HashMap<String, Track>,
    decided: &HashMap<String, Order>,
) -> BTreeMap<String, RegionCounts> {
    let mut counts = counts_from_calls(calls);
    for order_id in &calls.placed_orders {
        let (region, confirmed, ending) = match (decided.get(order_id), tracks.get(order_id)) {
            (Some(order), _) => (
                order.region.clone(),
                order
                    .history
                    .iter()
                    .any(|transition| transition.to() == OrderState::Confirmed),
                ending_of(order),
            ),
            (None, Some(track)) => (
                track.region.clone(),
                track.confirmed_at.is_some(),
                track.ending,
            ),
            (None, None) => continue,
        };
        let entry = counts.entry(region).or_default();
        entry.confirmed += u64::from(confirmed);
        match ending {
            Some(Ending::Delivered) => entry.delivered += 1,
            Some(Ending::Cancelled(reason)) => *entry.cancelled.entry(reason).or_default() += 1,
            None => {}
        }
    }
    counts
}

/// Placed and errors per region, as the storefronts' calls counted them.
fn counts_from_calls(calls: &Calls) -> BTreeMap<String, RegionCounts> {
    let mut counts: BTreeMap<String, RegionCounts> = BTreeMap::new();
    for (region, region_calls) in &calls.regions {
        let entry = counts.entry(region.clone()).or_default();
        entry.placed = region_calls.placed;
        entry.errors = region_calls.errors;
        entry.placed_on_retry = region_calls.placed_on_retry;
    }
    counts
}

fn merge_counts(
    calls: &Calls,
    views: &BTreeMap<String, observer::RegionView>,
) -> BTreeMap<String, RegionCounts> {
    let mut merged = counts_from_calls(calls);
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

#[cfg(test)]
mod tests {
    use harvest_proto::common::v1::CancelReason;
    use harvest_proto::orders::v1::Transition;

    use super::*;

    fn calls(placed: &[(&str, &str)]) -> Calls {
        let mut calls = Calls::default();
        for (order_id, region) in placed {
            calls
                .regions
                .entry((*region).to_owned())
                .or_default()
                .placed += 1;
            calls.placed_orders.push((*order_id).to_owned());
        }
        calls
    }

    fn track(region: &str, confirmed: bool, ending: Option<Ending>) -> Track {
        Track {
            region: region.to_owned(),
            confirmed_at: confirmed.then_some(2.0),
            ending,
            ..Track::default()
        }
    }

    fn order(region: &str, path: &[OrderState], reason: CancelReason) -> Order {
        Order {
            region: region.to_owned(),
            state: path.last().copied().unwrap_or(OrderState::Placed).into(),
            cancel_reason: reason.into(),
            history: path
                .iter()
                .map(|to| Transition {
                    to: (*to).into(),
                    ..Transition::default()
                })
                .collect(),
            ..Order::default()
        }
    }

    #[test]
    fn orders_the_observer_has_not_seen_end_count_as_the_orders_service_says() {
        let calls = calls(&[
            ("ord_1", "east"),
            ("ord_2", "east"),
            ("ord_3", "east"),
            ("ord_4", "north"),
            ("ord_5", "north"),
        ]);
        // The observer saw two orders end and trails on the rest.
        let tracks: HashMap<String, Track> = [
            ("ord_1", track("east", true, Some(Ending::Delivered))),
            (
                "ord_2",
                track(
                    "east",
                    false,
                    Some(Ending::Cancelled(CancelReason::OutOfStock.into())),
                ),
            ),
            ("ord_3", track("east", true, None)),
        ]
        .into_iter()
        .map(|(id, track)| (id.to_owned(), track))
        .collect();
        let delivered_path = [
            OrderState::Placed,
            OrderState::Reserved,
            OrderState::Confirmed,
            OrderState::Dispatching,
            OrderState::InTransit,
            OrderState::Delivered,
        ];
        let decided: HashMap<String, Order> = [
            (
                "ord_3",
                order("east", &delivered_path, CancelReason::Unspecified),
            ),
            (
                "ord_4",
                order(
                    "north",
                    &[
                        OrderState::Placed,
                        OrderState::Reserved,
                        OrderState::Cancelled,
                    ],
                    CancelReason::PaymentDeclined,
                ),
            ),
            (
                "ord_5",
                order("north", &delivered_path, CancelReason::Unspecified),
            ),
        ]
        .into_iter()
        .map(|(id, order)| (id.to_owned(), order))
        .collect();

        let counts = final_counts(&calls, &tracks, &decided);
        let east = &counts["east"];
        assert_eq!(
            (
                east.placed,
                east.confirmed,
                east.delivered,
                east.cancelled_total()
            ),
            (3, 2, 2, 1)
        );
        let north = &counts["north"];
        assert_eq!(
            (
                north.placed,
                north.confirmed,
                north.delivered,
                north.cancelled_total()
            ),
            (2, 1, 1, 1)
        );
        assert_eq!(north.cancelled_by_reason(), "payment_declined 1");
        for region in counts.values() {
            assert_eq!(region.placed, region.delivered + region.cancelled_total());
        }
    }

    #[test]
    fn an_order_still_open_at_the_service_is_not_counted_as_ended() {
        let calls = calls(&[("ord_1", "east")]);
        let tracks = HashMap::new();
        let decided: HashMap<String, Order> = [(
            "ord_1".to_owned(),
            order(
                "east",
                &[OrderState::Placed, OrderState::Reserved],
                CancelReason::Unspecified,
            ),
        )]
        .into_iter()
        .collect();
        let east = &final_counts(&calls, &tracks, &decided)["east"];
        assert_eq!(
            (
                east.placed,
                east.confirmed,
                east.delivered,
                east.cancelled_total()
            ),
            (1, 0, 0, 0)
        );
    }
}
