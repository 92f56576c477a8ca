use std::collections::BTreeMap;
use std::time::Duration;

use harvest_bus::{Envelope, Payload, Publisher, Stream, Topology, new_envelope};
use harvest_delivery::store::DeliveryStore;
use harvest_delivery::{App, DeliveryConfig};
use harvest_domain::{Id, Region, deterministic_id, new_id};
use harvest_kit::ServerConfig;
use harvest_proto::common::v1::{
    Address, CancelReason, GeoPoint, OrderLine, OrderState, Origin, PickupPoint,
};
use harvest_proto::delivery::v1::delivery_service_client::DeliveryServiceClient;
use harvest_proto::delivery::v1::{
    Courier, RegisterCourierRequest, UpdateCourierStatusRequest, Vehicle,
};
use harvest_proto::events::v1::{OrderCancelled, OrderConfirmed, Pickup};
use harvest_testkit::kafka::Probe;
use harvest_testkit::{Broker, Redis, TestSettings};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// Hangzhou, Zhejiang (east).
pub const HANGZHOU: (f64, f64) = (30.27, 120.15);
/// Shijiazhuang, Hebei (north).
pub const SHIJIAZHUANG: (f64, f64) = (38.04, 114.51);

/// A running delivery service with its own Redis, broker, topics and groups.
pub struct TestDelivery {
    // First, so the service stops before the broker and Redis do.
    _service: Replica,
    _broker: Broker,
    pub config: DeliveryConfig,
    pub client: DeliveryServiceClient<Channel>,
    pub store: DeliveryStore,
    /// Writes the `orders` stream, as the orders service would.
    pub orders: Publisher,
    /// Everything delivery publishes in the test region.
    pub events: Probe,
    /// Delivery's dead letters in the test region.
    pub dead_letters: Probe,
    pub region: Region,
    _redis: Redis,
}

pub fn test_config(redis: &Redis, broker: &Broker) -> DeliveryConfig {
    let settings = TestSettings::new(redis, broker);
    let mut config = DeliveryConfig {
        server: ServerConfig::local(0, 0),
        bus: settings.bus,
        redis: settings.redis,
        regions: settings.regions,
        ..DeliveryConfig::default()
    };
    config.assignment.retry_interval_ms = 200;
    config.assignment.stream_poll_ms = 500;
    config
}

/// Another replica of a running service: same Redis, broker, topics and
/// groups, its own ports.
pub struct Replica {
    pub client: DeliveryServiceClient<Channel>,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<()>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.running.abort();
    }
}

impl Replica {
    /// Stands in for a replica that is gone.
    fn killed() -> Replica {
        let channel = Channel::from_static("http://127.0.0.1:9").connect_lazy();
        Replica {
            client: DeliveryServiceClient::new(channel),
            shutdown: CancellationToken::new(),
            running: tokio::spawn(async {}),
        }
    }
}

async fn run(config: DeliveryConfig) -> Replica {
    let app = App::build(config).await.expect("delivery builds");
    let grpc = app.grpc_addr();
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let running = tokio::spawn(async move {
        app.run_until_stopped(stop).await.expect("delivery runs");
    });
    let client = DeliveryServiceClient::connect(format!("http://{grpc}"))
        .await
        .expect("grpc connects");
    Replica {
        client,
        shutdown,
        running,
    }
}

impl TestDelivery {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts the service with `adjust`ed test settings.
    pub async fn start_with(adjust: impl FnOnce(&mut DeliveryConfig)) -> Self {
        let redis = Redis::start().expect("redis starts");
        let broker = Broker::shared().expect("the shared broker is up");
        let mut config = test_config(&redis, &broker);
        adjust(&mut config);
        let service = run(config.clone()).await;
        let redis_connection = harvest_kit::store::connect(&config.redis)
            .await
            .expect("redis connects");
        let store = DeliveryStore::new(redis_connection, &config.redis.key_prefix);
        let topology = Topology::new(&config.bus, config.regions.all.clone());
        let region = Region::parse("east").expect("valid");
        let orders =
            Publisher::new(&config.bus, topology.clone(), Stream::Orders).expect("publisher");
        let events = Probe::start(
            &broker.bootstrap(),
            &[topology.topic(Stream::Delivery, &region)],
        )
        .expect("probe");
        let dead_letters = Probe::start(
            &broker.bootstrap(),
            &[topology.dead_letter_topic("delivery", &region)],
        )
        .expect("probe");
        TestDelivery {
            client: service.client.clone(),
            _service: service,
            _broker: broker,
            config,
            store,
            orders,
            events,
            dead_letters,
            region,
            _redis: redis,
        }
    }

    /// Kills the service at once, as a crash would.
    pub fn kill(&mut self) {
        self._service = Replica::killed();
    }

    /// Starts the service again on the same Redis, broker, topics and groups.
    pub async fn start_again(&mut self) {
        self._service = self.replica().await;
        self.client = self._service.client.clone();
    }

    /// Starts a second replica of this service.
    pub async fn replica(&self) -> Replica {
        let mut config = self.config.clone();
        config.server = ServerConfig::local(0, 0);
        run(config).await
    }

    /// Registers an available courier of `region` at `at`.
    pub async fn courier(
        &self,
        name: &str,
        region: &str,
        at: (f64, f64),
        capacity: i32,
        cold_chain: bool,
    ) -> Courier {
        self.client
            .clone()
            .register_courier(courier_request(name, region, at, capacity, cold_chain))
            .await
            .expect("courier registered")
            .into_inner()
    }

    /// Sets a courier's availability.
    pub async fn set_available(&self, courier_id: &str, available: bool) -> Courier {
        self.client
            .clone()
            .update_courier_status(UpdateCourierStatusRequest {
                courier_id: courier_id.to_owned(),
                location: None,
                available,
            })
            .await
            .expect("status updated")
            .into_inner()
    }

    /// The courier's load once it has come to `expected`, or as it stands
    /// after [`WAIT`]: a shipment's events go out before the capacity it no
    /// longer needs is given back, so a unit returns just after the event
    /// that ends its shipment.
    pub async fn load_comes_to(&self, courier_id: &str, expected: i32) -> i32 {
        let settled = harvest_testkit::eventually(WAIT, || async {
            (self.load_of(courier_id).await == expected).then_some(expected)
        })
        .await;
        match settled {
            Some(load) => load,
            None => self.load_of(courier_id).await,
        }
    }

    pub async fn load_of(&self, courier_id: &str) -> i32 {
        let id = Id::parse(courier_id).expect("valid");
        self.store
            .courier(&id)
            .await
            .expect("redis")
            .expect("courier exists")
            .load
    }

    /// Publishes an OrderConfirmed of a new order in the test region.
    pub async fn confirm(&self, pickups: Vec<Pickup>) -> Id {
        let order_id = new_id("ord");
        self.orders
            .publish(order_confirmed(&order_id, &self.region, pickups))
            .await
            .expect("published");
        order_id
    }

    /// Returns once the service has handled every order event published so
    /// far to `partition` of the test region: events of a partition are
    /// handled in order, so a marker published after them comes after them.
    pub async fn handled_up_to(&self, partition: i32) {
        loop {
            let marker = new_id("ord");
            let published = self
                .orders
                .publish(order_cancelled(&marker, &self.region))
                .await
                .expect("published");
            if published.partition != partition {
                continue;
            }
            let handled = harvest_testkit::eventually(WAIT, || async {
                self.store
                    .is_cancelled(&marker)
                    .await
                    .ok()
                    .filter(|cancelled| *cancelled)
            })
            .await;
            assert!(handled.is_some(), "partition {partition} is handled");
            return;
        }
    }

    /// Publishes an OrderConfirmed of one pickup in Zhejiang (east).
    pub async fn confirm_at(&self, point: &str, at: (f64, f64), cold_chain: bool) -> Id {
        self.confirm(vec![pickup(point, "Zhejiang", at, cold_chain)])
            .await
    }

    /// Waits until every one of `orders` has an event matching `wanted`.
    pub async fn wait_for_each(
        &self,
        orders: &[Id],
        timeout: Duration,
        wanted: impl Fn(&Payload) -> bool,
    ) {
        let remaining: std::collections::BTreeSet<&str> = orders.iter().map(Id::as_str).collect();
        let found = self
            .events
            .wait_for(timeout, |messages| {
                let matched: std::collections::BTreeSet<String> = decode_all(messages)
                    .into_iter()
                    .filter(|envelope| remaining.contains(envelope.order_id.as_str()))
                    .filter(|envelope| envelope.payload.as_ref().is_some_and(&wanted))
                    .map(|envelope| envelope.order_id)
                    .collect();
                (matched.len() == remaining.len()).then_some(())
            })
            .await;
        assert!(found.is_some(), "every order has the event in time");
    }

    pub async fn cancel(&self, order_id: &Id) {
        self.orders
            .publish(order_cancelled(order_id, &self.region))
            .await
            .expect("published");
    }

    /// Every delivery event of `order_id` read so far, in the order of its
    /// partition.
    pub fn events_of(&self, order_id: &Id) -> Vec<Envelope> {
        decode_all(&self.events.messages())
            .into_iter()
            .filter(|envelope| envelope.order_id == order_id.as_str())
            .collect()
    }

    /// The types of the order's distinct events read so far (without the
    /// package), in the order of its partition: repeats of an event id are
    /// dropped, as a consumer would.
    pub fn event_types_of(&self, order_id: &Id) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.events_of(order_id)
            .into_iter()
            .filter(|envelope| seen.insert(envelope.event_id.clone()))
            .map(|envelope| envelope.event_type.replace("harvest.events.v1.", ""))
            .collect()
    }

    /// Waits for a delivery event of `order_id` matching `wanted`.
    pub async fn wait_event<T>(&self, order_id: &Id, wanted: impl Fn(&Payload) -> Option<T>) -> T {
        self.events
            .wait_for(WAIT, |messages| {
                decode_all(messages)
                    .into_iter()
                    .filter(|envelope| envelope.order_id == order_id.as_str())
                    .find_map(|envelope| envelope.payload.as_ref().and_then(&wanted))
            })
            .await
            .unwrap_or_else(|| panic!("no matching delivery event for {order_id}"))
    }

    /// The courier assigned to the order's (only) shipment.
    pub async fn assigned(&self, order_id: &Id) -> harvest_proto::events::v1::CourierAssigned {
        self.wait_event(order_id, |payload| match payload {
            Payload::CourierAssigned(assigned) => Some(assigned.clone()),
            _ => None,
        })
        .await
    }

    pub async fn failed(&self, order_id: &Id) -> harvest_proto::events::v1::ShipmentFailed {
        self.wait_event(order_id, |payload| match payload {
            Payload::ShipmentFailed(failed) => Some(failed.clone()),
            _ => None,
        })
        .await
    }
}

pub fn courier_request(
    name: &str,
    region: &str,
    (latitude, longitude): (f64, f64),
    capacity: i32,
    cold_chain: bool,
) -> RegisterCourierRequest {
    RegisterCourierRequest {
        courier_id: name.to_owned(),
        name: format!("Courier {name}"),
        home_county: "Anji".to_owned(),
        home_province: "Zhejiang".to_owned(),
        region: region.to_owned(),
        vehicle: if cold_chain {
            Vehicle::Van.into()
        } else {
            Vehicle::Tricycle.into()
        },
        cold_chain,
        capacity,
        location: Some(GeoPoint {
            latitude,
            longitude,
        }),
    }
}

/// A point `north_km` north and `east_km` east of `from` (roughly).
pub fn offset((latitude, longitude): (f64, f64), north_km: f64, east_km: f64) -> (f64, f64) {
    let east_degrees = east_km / (111.32 * latitude.to_radians().cos());
    (latitude + north_km / 110.57, longitude + east_degrees)
}

/// A pickup of one line at a point named `point` in `province`.
pub fn pickup(point: &str, province: &str, at: (f64, f64), cold_chain: bool) -> Pickup {
    Pickup {
        point: Some(PickupPoint {
            pickup_point_id: format!("pp_{point}"),
            name: format!("{point} collection point"),
            location: Some(GeoPoint {
                latitude: at.0,
                longitude: at.1,
            }),
            seller_id: "coop-1".to_owned(),
            origin: Some(Origin {
                village: "Yucun".to_owned(),
                county: "Anji".to_owned(),
                province: province.to_owned(),
            }),
        }),
        lines: vec![OrderLine {
            product_id: format!("prd_{point}"),
            quantity: 2,
        }],
        cold_chain,
        pickup_by: None,
    }
}

/// The buyer's delivery code of every order these tests confirm.
pub const DELIVERY_CODE: &str = "424242";

pub fn order_confirmed(order_id: &Id, region: &Region, pickups: Vec<Pickup>) -> Envelope {
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "confirmed"]),
        order_id,
        region,
        "orders",
        Payload::OrderConfirmed(OrderConfirmed {
            buyer_id: "buyer-1".to_owned(),
            ship_to: Some(Address {
                recipient: "Li Na".to_owned(),
                phone: "13800000000".to_owned(),
                province: "Jiangsu".to_owned(),
                county: "Gulou".to_owned(),
                street: "1 Zhongshan Road".to_owned(),
                location: Some(GeoPoint {
                    latitude: 32.06,
                    longitude: 118.78,
                }),
            }),
            lines: Vec::new(),
            pickups,
            total_fen: 6_800,
            delivery_code_digest: harvest_domain::delivery_code::digest_of(
                order_id.as_str(),
                DELIVERY_CODE,
            ),
        }),
    )
}

pub fn order_cancelled(order_id: &Id, region: &Region) -> Envelope {
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "cancelled"]),
        order_id,
        region,
        "orders",
        Payload::OrderCancelled(OrderCancelled {
            reason: CancelReason::BuyerCancelled.into(),
            detail: "changed my mind".to_owned(),
            lines: Vec::new(),
            previous_state: OrderState::Dispatching.into(),
        }),
    )
}

pub use harvest_testkit::kafka::envelopes as decode_all;

/// Distinct events (by id) of each payload kind among `envelopes`.
pub fn count_by_kind(envelopes: &[Envelope]) -> BTreeMap<&'static str, usize> {
    let mut seen = std::collections::HashSet::new();
    let mut counts = BTreeMap::new();
    for envelope in envelopes {
        if !seen.insert(envelope.event_id.clone()) {
            continue;
        }
        let kind = match envelope.payload {
            Some(Payload::ShipmentCreated(_)) => "created",
            Some(Payload::CourierAssigned(_)) => "assigned",
            Some(Payload::ShipmentPickedUp(_)) => "picked_up",
            Some(Payload::ShipmentDelivered(_)) => "delivered",
            Some(Payload::ShipmentFailed(_)) => "failed",
            Some(Payload::ShipmentWithdrawn(_)) => "withdrawn",
            Some(Payload::CourierReleased(_)) => "released",
            Some(Payload::ShipmentOverdue(_)) => "overdue",
            _ => "other",
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    counts
}
