//! Simulated couriers: a fleet registered near the collection points, each
//! following its stream of assignments, picking up and delivering after a
//! while, and now and then failing a delivery.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Channel;
use harvest_domain::{Regions, default_region_of_province};
use harvest_proto::common::v1::GeoPoint;
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, Courier, RegisterCourierRequest,
    ReportFailureRequest, Shipment, StreamAssignmentsRequest, Vehicle,
};
use harvest_proto::orders::v1::GetOrderRequest;
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::seed::SAMPLE_PRODUCTS;

/// How simulated couriers behave.
#[derive(Clone, Debug)]
pub struct CourierBehavior {
    /// From assignment to pickup, uniformly within.
    pub pickup_after: (Duration, Duration),
    /// From pickup to delivery, uniformly within.
    pub deliver_after: (Duration, Duration),
    /// Share of deliveries that fail.
    pub failures: f64,
}

impl Default for CourierBehavior {
    fn default() -> Self {
        CourierBehavior {
            pickup_after: (Duration::from_millis(300), Duration::from_millis(1_500)),
            deliver_after: (Duration::from_millis(500), Duration::from_millis(2_500)),
            failures: 0.01,
        }
    }
}

/// What the fleet did.
#[derive(Debug, Default)]
pub struct FleetCounts {
    pub assignments: AtomicU64,
    pub picked_up: AtomicU64,
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub refused: AtomicU64,
}

/// The buyers' delivery codes, by order, as the storefronts got them when
/// placing: what a buyer tells the courier at the door.
#[derive(Default)]
pub struct Doorstep {
    codes: Mutex<HashMap<String, String>>,
    /// For orders placed elsewhere (a person's storefront): the buyer looks
    /// the code up in their order, as they would at the door.
    buyers: Option<OrdersServiceClient<Channel>>,
}

impl Doorstep {
    /// A doorstep whose buyers, for an order it was not told of, read their
    /// code from the orders service.
    pub fn asking_buyers(orders: OrdersServiceClient<Channel>) -> Doorstep {
        Doorstep {
            codes: Mutex::default(),
            buyers: Some(orders),
        }
    }

    pub fn remember(&self, order_id: &str, code: &str) {
        if let Ok(mut codes) = self.codes.lock() {
            codes.insert(order_id.to_owned(), code.to_owned());
        }
    }

    /// The code the buyer of `order_id` gives (empty when unknown).
    pub async fn code(&self, order_id: &str) -> String {
        let known = self
            .codes
            .lock()
            .ok()
            .and_then(|codes| codes.get(order_id).cloned());
        if let Some(code) = known {
            return code;
        }
        let Some(orders) = &self.buyers else {
            return String::new();
        };
        let request = || GetOrderRequest {
            order_id: order_id.to_owned(),
        };
        // Who the buyer is, then the buyer's own view of the order: only it
        // shows the code.
        let Ok(order) = orders
            .clone()
            .get_order(act_as(Role::Operator, "sim-doorstep", request()))
            .await
        else {
            return String::new();
        };
        let buyer = order.into_inner().buyer_id;
        match orders
            .clone()
            .get_order(act_as(Role::Buyer, &buyer, request()))
            .await
        {
            Ok(order) => order.into_inner().delivery_code,
            Err(_) => String::new(),
        }
    }
}

/// The courier partner (company) that registers the simulated fleet.
pub const PARTNER: &str = "partner-sim-express";

/// Registers `per_point` couriers near every sample collection point, half of
/// them with cold chain. Each joins the region of the point's province; where
/// the deployment lacks that region (the delivery service then looks in the
/// buyer's region), the point's couriers are spread over every region.
pub async fn register_fleet(
    delivery: &mut DeliveryServiceClient<Channel>,
    regions: &Regions,
    per_point: usize,
    capacity: i32,
) -> Result<Vec<Courier>, tonic::Status> {
    let deployed: Vec<String> = regions.iter().map(ToString::to_string).collect();
    let vehicles = [
        Vehicle::Van,
        Vehicle::Tricycle,
        Vehicle::Truck,
        Vehicle::Motorcycle,
    ];
    let mut fleet = Vec::new();
    for sample in SAMPLE_PRODUCTS {
        let home = default_region_of_province(sample.province)
            .filter(|region| deployed.iter().any(|known| known == region));
        let count = match home {
            Some(_) => per_point,
            None => per_point.max(deployed.len()),
        };
        for index in 0..count {
            let region = match home {
                Some(region) => region.to_owned(),
                None => deployed[index % deployed.len()].clone(),
            };
            // A few kilometres around the point, in a ring.
            let angle = index as f64 * std::f64::consts::TAU / count as f64;
            let courier = delivery
                .register_courier(act_as(
                    Role::Partner,
                    PARTNER,
                    RegisterCourierRequest {
                        courier_id: format!("courier-{}-{index}", sample.seller_id),
                        name: format!("{} courier {}", sample.county, index + 1),
                        home_county: sample.county.to_owned(),
                        home_province: sample.province.to_owned(),
                        region,
                        vehicle: vehicles[index % vehicles.len()].into(),
                        cold_chain: index % 2 == 0,
                        capacity,
                        location: Some(GeoPoint {
                            latitude: sample.latitude + 0.03 * angle.sin(),
                            longitude: sample.longitude + 0.03 * angle.cos(),
                        }),
                    },
                ))
                .await?
                .into_inner();
            fleet.push(courier);
        }
    }
    Ok(fleet)
}

fn between(range: (Duration, Duration)) -> Duration {
    let (low, high) = range;
    if high <= low {
        return low;
    }
    rand::rng().random_range(low..high)
}

/// Runs every courier of `fleet` until `stop`.
pub async fn run_fleet(
    delivery: DeliveryServiceClient<Channel>,
    fleet: Vec<Courier>,
    behavior: CourierBehavior,
    counts: Arc<FleetCounts>,
    doorstep: Arc<Doorstep>,
    stop: CancellationToken,
) {
    let mut couriers = tokio::task::JoinSet::new();
    for courier in fleet {
        couriers.spawn(run_courier(
            delivery.clone(),
            courier.courier_id,
            behavior.clone(),
            counts.clone(),
            doorstep.clone(),
            stop.clone(),
        ));
    }
    while couriers.join_next().await.is_some() {}
}

async fn run_courier(
    delivery: DeliveryServiceClient<Channel>,
    courier_id: String,
    behavior: CourierBehavior,
    counts: Arc<FleetCounts>,
    doorstep: Arc<Doorstep>,
    stop: CancellationToken,
) {
    // Assignments already being worked on: the stream repeats open ones when
    // it reconnects.
    let working: Arc<Mutex<HashSet<String>>> = Arc::default();
    while !stop.is_cancelled() {
        let request = StreamAssignmentsRequest {
            courier_id: courier_id.clone(),
        };
        let request = act_as(Role::Courier, &courier_id, request);
        let mut stream = match delivery.clone().stream_assignments(request).await {
            Ok(stream) => stream.into_inner(),
            Err(_) => {
                // The delivery service may be restarting.
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                }
            }
        };
        loop {
            let next = tokio::select! {
                () = stop.cancelled() => return,
                next = stream.message() => next,
            };
            let Ok(Some(assignment)) = next else {
                break;
            };
            let Some(shipment) = assignment.shipment else {
                continue;
            };
            let fresh = working
                .lock()
                .map(|mut working| working.insert(shipment.shipment_id.clone()))
                .unwrap_or(false);
            if !fresh {
                continue;
            }
            counts.assignments.fetch_add(1, Ordering::Relaxed);
            let carrying = carry(
                delivery.clone(),
                courier_id.clone(),
                shipment.clone(),
                doorstep.clone(),
                behavior.clone(),
                counts.clone(),
                stop.clone(),
            );
            let working = working.clone();
            tokio::spawn(async move {
                carrying.await;
                // Done with, one way or another: should the stream offer it
                // again (it is still open), it is taken up again.
                if let Ok(mut working) = working.lock() {
                    working.remove(&shipment.shipment_id);
                }
            });
        }
    }
}

/// How long a courier waits at the door for a buyer who has no code yet:
/// longer than a storefront goes on placing an unanswered order again
/// ([`crate::storefront::retry_wait`]).
const WAIT_FOR_CODE: Duration = Duration::from_secs(120);

/// Picks a shipment up and delivers it (or fails to), as a courier would.
async fn carry(
    delivery: DeliveryServiceClient<Channel>,
    courier_id: String,
    shipment: Shipment,
    doorstep: Arc<Doorstep>,
    behavior: CourierBehavior,
    counts: Arc<FleetCounts>,
    stop: CancellationToken,
) {
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(between(behavior.pickup_after)) => {}
    }
    let shipment_id = shipment.shipment_id;
    let pickup = ConfirmPickupRequest {
        courier_id: courier_id.clone(),
        shipment_id: shipment_id.clone(),
    };
    if retry(
        &stop,
        || {
            let (mut client, request) = (delivery.clone(), pickup.clone());
            let request = act_as(Role::Courier, &request.courier_id.clone(), request);
            async move { client.confirm_pickup(request).await }
        },
        &counts,
    )
    .await
    .is_none()
    {
        return;
    }
    counts.picked_up.fetch_add(1, Ordering::Relaxed);
    tokio::select! {
        () = stop.cancelled() => return,
        () = tokio::time::sleep(between(behavior.deliver_after)) => {}
    }
    if rand::rng().random::<f64>() < behavior.failures {
        let failure = ReportFailureRequest {
            courier_id,
            shipment_id,
            reason: "nobody at the address, phone unanswered".to_owned(),
        };
        if retry(
            &stop,
            || {
                let (mut client, request) = (delivery.clone(), failure.clone());
                let request = act_as(Role::Courier, &request.courier_id.clone(), request);
                async move { client.report_failure(request).await }
            },
            &counts,
        )
        .await
        .is_some()
        {
            counts.failed.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    // A buyer whose storefront is still placing the order again (its first
    // call got no answer) has no code yet: the courier waits at the door and
    // asks again, for a while.
    let waiting = tokio::time::Instant::now();
    let delivery_code = loop {
        let code = doorstep.code(&shipment.order_id).await;
        if !code.is_empty() || waiting.elapsed() >= WAIT_FOR_CODE {
            break code;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    };
    let delivered = ConfirmDeliveryRequest {
        courier_id,
        shipment_id,
        recipient_name: "the buyer".to_owned(),
        proof_reference: String::new(),
        delivery_code,
        override_reason: String::new(),
    };
    if retry(
        &stop,
        || {
            let (mut client, request) = (delivery.clone(), delivered.clone());
            let request = act_as(Role::Courier, &request.courier_id.clone(), request);
            async move { client.confirm_delivery(request).await }
        },
        &counts,
    )
    .await
    .is_some()
    {
        counts.delivered.fetch_add(1, Ordering::Relaxed);
    }
}

/// Calls until the service answers for good, as a courier's app would: a
/// service that cannot answer now (restarting, or waiting on Redis or the
/// broker) is asked again until `stop`; a refusal ends it and the courier
/// drops the shipment: it was withdrawn (`FAILED_PRECONDITION`), or taken
/// back from this courier for not being picked up in time
/// (`PERMISSION_DENIED`; the assignment stream does not offer it again).
async fn retry<T, F, Fut>(stop: &CancellationToken, mut call: F, counts: &FleetCounts) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    // Jittered, so that a fleet whose calls failed together (a service
    // restarting) does not come back in step.
    let mut waits = backon::BackoffBuilder::build(
        backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(Duration::from_secs(2))
            .with_jitter()
            .without_max_times(),
    );
    loop {
        match call().await {
            Ok(response) => return Some(response.into_inner()),
            Err(status)
                if matches!(
                    status.code(),
                    tonic::Code::Unavailable
                        | tonic::Code::Internal
                        | tonic::Code::Unknown
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Aborted
                        | tonic::Code::ResourceExhausted
                ) =>
            {
                tokio::select! {
                    () = stop.cancelled() => return None,
                    () = tokio::time::sleep(waits.next().unwrap_or(Duration::from_secs(2))) => {}
                }
            }
            Err(_) => {
                counts.refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
        }
    }
}
