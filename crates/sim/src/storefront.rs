//! Simulated storefronts: buyers in every region placing orders at a fixed
//! arrival rate, whatever the system's answer time (an open loop), with an
//! optional festival spike in one region.

use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::Channel;
use crate::couriers::Doorstep;
use harvest_domain::Region;
use harvest_proto::catalog::v1::Product;
use harvest_proto::common::v1::{Address, GeoPoint, OrderLine};
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::orders::v1::{CancelOrderRequest, PlaceOrderRequest};
use rand::Rng;
use rand::rngs::StdRng;
use rand::{SeedableRng, seq::IndexedRandom};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::stats::Samples;

/// One region at `factor` times its base rate for a while.
#[derive(Clone, Debug)]
pub struct Spike {
    pub region: Region,
    pub factor: f64,
    pub start: Duration,
    pub length: Duration,
}

/// How the storefronts behave.
#[derive(Clone, Debug)]
pub struct Traffic {
    pub regions: Vec<Region>,
    /// Orders per second in each region outside a spike.
    pub rate_per_region: f64,
    pub duration: Duration,
    pub spike: Option<Spike>,
    /// Share of orders paid with a card that is declined.
    pub declined: f64,
    /// Share of orders whose payment fails transiently before it succeeds.
    pub flaky_payment: f64,
    /// Share of orders the buyer cancels soon after placing them.
    pub buyer_cancels: f64,
    /// PlaceOrder calls in flight at most; arrivals beyond are counted as
    /// errors rather than delayed, so the load stays open.
    pub max_in_flight: usize,
    /// Whether a PlaceOrder call that got no answer (unavailable, timed
    /// out) is made again with the same request and idempotency key, as a
    /// storefront does, up to [`RETRIES`] times ([`retry_wait`] apart) or
    /// until the traffic stops. Each failed attempt counts as an error.
    pub retry_unanswered: bool,
}

/// How many more times an unanswered PlaceOrder call is made.
pub const RETRIES: usize = 12;

/// The wait before retry `n` (from 0): 0.5, 1, 2 and 4 s, then 5 s.
pub fn retry_wait(n: usize) -> Duration {
    Duration::from_millis(500 << n.min(4)).min(Duration::from_secs(5))
}

/// Whether a failed call may have got no answer, rather than a refusal:
/// the request may or may not have been carried out.
fn unanswered(code: tonic::Code) -> bool {
    matches!(
        code,
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Unknown
            | tonic::Code::Cancelled
            | tonic::Code::Aborted
    )
}

impl Traffic {
    /// The arrival rate of `region` at `elapsed` into the run.
    pub fn rate(&self, region: &Region, elapsed: Duration) -> f64 {
        match &self.spike {
            Some(spike)
                if &spike.region == region
                    && elapsed >= spike.start
                    && elapsed < spike.start + spike.length =>
            {
                self.rate_per_region * spike.factor
            }
            _ => self.rate_per_region,
        }
    }
}

/// What the storefronts of one region saw.
#[derive(Clone, Debug, Default)]
pub struct RegionCalls {
    pub placed: u64,
    pub errors: u64,
    /// Of `placed`, the orders acknowledged only on a later attempt with
    /// the same idempotency key.
    pub placed_on_retry: u64,
    pub latency: Samples,
    /// Since the last [`Calls::take_window`].
    pub window: Samples,
}

/// What the storefronts saw, shared with whoever reports on it.
#[derive(Clone, Debug, Default)]
pub struct Calls {
    pub regions: BTreeMap<String, RegionCalls>,
    /// Every order a PlaceOrder call acknowledged.
    pub placed_orders: Vec<String>,
    pub cancel_requests: u64,
    pub first_error: Option<String>,
}

impl Calls {
    /// The latencies of each region's last window, starting a new one.
    pub fn take_window(&mut self) -> BTreeMap<String, Samples> {
        self.regions
            .iter_mut()
            .map(|(region, calls)| (region.clone(), std::mem::take(&mut calls.window)))
            .collect()
    }
}

/// A place in each region where buyers live.
fn address_in(region: &Region, buyer: u32) -> Address {
    let (province, county, street, latitude, longitude) = match region.as_str() {
        "north" => ("Beijing", "Chaoyang", "Sanlitun Road", 39.93, 116.45),
        "northeast" => ("Liaoning", "Heping", "Zhongshan Road", 41.80, 123.43),
        "east" => ("Zhejiang", "Xihu", "Wensan Road", 30.28, 120.13),
        "central" => ("Hubei", "Wuchang", "Zhongnan Road", 30.54, 114.34),
        "south" => ("Guangdong", "Tianhe", "Tiyu West Road", 23.14, 113.32),
        "southwest" => ("Sichuan", "Wuhou", "Kehua North Road", 30.63, 104.07),
        "northwest" => ("Shaanxi", "Yanta", "Xiaozhai Road", 34.22, 108.95),
        _ => ("Zhejiang", "Xihu", "Wensan Road", 30.28, 120.13),
    };
    Address {
        recipient: format!("Buyer {buyer}"),
        phone: format!("+86 139 {:04} {:04}", buyer / 10_000, buyer % 10_000),
        province: province.to_owned(),
        county: county.to_owned(),
        street: format!("{} {street}", 1 + buyer % 300),
        location: Some(GeoPoint {
            latitude,
            longitude,
        }),
    }
}

/// Runs the storefronts until the traffic's duration is over or `stop`.
pub async fn run(
    orders: OrdersServiceClient<Channel>,
    products: Vec<Product>,
    traffic: Traffic,
    calls: Arc<Mutex<Calls>>,
    doorstep: Arc<Doorstep>,
    stop: CancellationToken,
) {
    let in_flight = Arc::new(Semaphore::new(traffic.max_in_flight));
    let started = Instant::now();
    let products = Arc::new(products);
    let mut regions = tokio::task::JoinSet::new();
    for (index, region) in traffic.regions.iter().enumerate() {
        let (orders, products, traffic, calls, stop, in_flight) = (
            orders.clone(),
            products.clone(),
            traffic.clone(),
            calls.clone(),
            stop.clone(),
            in_flight.clone(),
        );
        let (region, doorstep) = (region.clone(), doorstep.clone());
        regions.spawn(async move {
            let mut rng = StdRng::seed_from_u64(0x5eed + index as u64);
            let mut next = tokio::time::Instant::now();
            let mut sequence = 0u64;
            while !stop.is_cancelled() {
                let elapsed = started.elapsed();
                if elapsed >= traffic.duration {
                    break;
                }
                // Poisson arrivals: exponential gaps at the current rate.
                let rate = traffic.rate(&region, elapsed).max(0.001);
                let gap: f64 = -rng.random::<f64>().max(1e-12).ln() / rate;
                next += Duration::from_secs_f64(gap);
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(next) => {}
                }
                sequence += 1;
                let request = order_request(&region, sequence, &products, &traffic, &mut rng);
                let cancel_after = (rng.random::<f64>() < traffic.buyer_cancels)
                    .then(|| Duration::from_millis(rng.random_range(200..3_000)));
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    record_error(
                        &calls,
                        &region,
                        "too many PlaceOrder calls in flight".to_owned(),
                    );
                    continue;
                };
                let (mut orders, calls, region) = (orders.clone(), calls.clone(), region.clone());
                let (doorstep, stop) = (doorstep.clone(), stop.clone());
                let retry = traffic.retry_unanswered;
                tokio::spawn(async move {
                    let _permit = permit;
                    let buyer_id = request.buyer_id.clone();
                    let began = Instant::now();
                    let mut waits = (0..RETRIES).map(retry_wait);
                    let mut retried = false;
                    let placed = loop {
                        let placed = orders
                            .place_order(act_as(Role::Buyer, &buyer_id, request.clone()))
                            .await;
                        let Err(status) = &placed else {
                            break placed;
                        };
                        if !(retry && unanswered(status.code())) {
                            break placed;
                        }
                        let Some(wait) = waits.next() else {
                            break placed;
                        };
                        record_error(&calls, &region, failure(status));
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = tokio::time::sleep(wait) => {}
                        }
                        retried = true;
                    };
                    let elapsed = began.elapsed();
                    let order_id = match placed {
                        Ok(order) => {
                            let order = order.into_inner();
                            doorstep.remember(&order.order_id, &order.delivery_code);
                            order.order_id
                        }
                        Err(status) => {
                            record_error(&calls, &region, failure(&status));
                            return;
                        }
                    };
                    if let Ok(mut calls) = calls.lock() {
                        let entry = calls.regions.entry(region.to_string()).or_default();
                        entry.placed += 1;
                        entry.placed_on_retry += u64::from(retried);
                        entry.latency.record(elapsed);
                        entry.window.record(elapsed);
                        calls.placed_orders.push(order_id.clone());
                    }
                    if let Some(delay) = cancel_after {
                        tokio::time::sleep(delay).await;
                        let cancel = act_as(
                            Role::Buyer,
                            &buyer_id.clone(),
                            CancelOrderRequest {
                                order_id,
                                buyer_id,
                                reason: "changed my mind".to_owned(),
                            },
                        );
                        // Refused once the goods are on their way; that is fine.
                        let _ = orders.cancel_order(cancel).await;
                        if let Ok(mut calls) = calls.lock() {
                            calls.cancel_requests += 1;
                        }
                    }
                });
            }
        });
    }
    while regions.join_next().await.is_some() {}
}

/// A failed call as the run's first error shows it.
fn failure(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

fn record_error(calls: &Mutex<Calls>, region: &Region, error: String) {
    if let Ok(mut calls) = calls.lock() {
        calls.regions.entry(region.to_string()).or_default().errors += 1;
        calls.first_error.get_or_insert(error);
    }
}

fn order_request(
    region: &Region,
    sequence: u64,
    products: &[Product],
    traffic: &Traffic,
    rng: &mut StdRng,
) -> PlaceOrderRequest {
    let buyer = rng.random_range(0..5_000u32);
    let wanted = match rng.random_range(0..100) {
        0..70 => 1,
        70..95 => 2,
        _ => 3,
    };
    let lines: Vec<OrderLine> = products
        .choose_multiple(rng, wanted)
        .map(|product| OrderLine {
            product_id: product.product_id.clone(),
            quantity: rng.random_range(1..=3),
        })
        .collect();
    let roll: f64 = rng.random();
    let payment_method = if roll < traffic.declined {
        "decline:insufficient funds"
    } else if roll < traffic.declined + traffic.flaky_payment {
        "transient:1"
    } else {
        "approve"
    };
    PlaceOrderRequest {
        idempotency_key: format!("sim-{region}-{sequence}-{}", uuid::Uuid::new_v4().simple()),
        buyer_id: format!("buyer-{region}-{buyer}"),
        region: region.to_string(),
        ship_to: Some(address_in(region, buyer)),
        lines,
        payment_method: payment_method.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spike_multiplies_one_region_for_its_window_only() {
        let east = Region::parse("east").expect("valid");
        let north = Region::parse("north").expect("valid");
        let traffic = Traffic {
            regions: vec![east.clone(), north.clone()],
            rate_per_region: 4.0,
            duration: Duration::from_secs(60),
            spike: Some(Spike {
                region: east.clone(),
                factor: 10.0,
                start: Duration::from_secs(20),
                length: Duration::from_secs(10),
            }),
            declined: 0.0,
            flaky_payment: 0.0,
            buyer_cancels: 0.0,
            max_in_flight: 10,
            retry_unanswered: false,
        };
        assert_eq!(traffic.rate(&east, Duration::from_secs(10)), 4.0);
        assert_eq!(traffic.rate(&east, Duration::from_secs(25)), 40.0);
        assert_eq!(traffic.rate(&north, Duration::from_secs(25)), 4.0);
        assert_eq!(traffic.rate(&east, Duration::from_secs(30)), 4.0);
    }

    #[test]
    fn an_unanswered_call_is_made_again_sooner_then_every_five_seconds() {
        let waits: Vec<f64> = (0..RETRIES).map(|n| retry_wait(n).as_secs_f64()).collect();
        assert_eq!(waits[..6], [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]);
        assert!(waits.iter().all(|wait| *wait <= 5.0));
        // Under a minute in all: within the two minutes a courier waits at
        // the door for a code.
        assert!(waits.iter().sum::<f64>() < 60.0);
    }
}
