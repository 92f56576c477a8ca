use std::time::Duration;

use harvest_bus::{Envelope, Payload, Publisher, Stream, Topology, new_envelope};
use harvest_domain::{Id, Region, deterministic_id};
use harvest_kit::ServerConfig;
use harvest_orders::{App, OrdersConfig};
use harvest_proto::common::v1::{Address, OrderLine, OrderState, PickupPoint};
use harvest_proto::events::v1::{
    CourierAssigned, Pickup, ReservedLine, ShipmentDelivered, ShipmentFailed,
    ShipmentFailureReason, ShipmentPickedUp, StockReserved,
};
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_proto::orders::v1::{
    GetOrderRequest, ListOrdersRequest, Order, OrderUpdate, PlaceOrderRequest, WatchOrderRequest,
};
use harvest_testkit::kafka::Probe;
use harvest_testkit::{Broker, Redis, TestSettings, unique_name};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// The shared servers and names of one test.
pub struct World {
    pub broker: Broker,
    pub redis: Redis,
    pub config: OrdersConfig,
    pub region: Region,
    pub catalog: Publisher,
    pub payments: Publisher,
    pub delivery: Publisher,
    /// Everything the orders service publishes in the test region.
    pub orders_events: Probe,
}

/// One running orders service.
pub struct Running {
    pub client: OrdersServiceClient<Channel>,
    pub grpc_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops it as SIGTERM would, and waits until it has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Running {
    /// The sum of a counter's series on the admin port's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut http) = tokio::net::TcpStream::connect(self.admin_addr).await else {
            return 0.0;
        };
        if http
            .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .await
            .is_err()
        {
            return 0.0;
        }
        let mut body = String::new();
        let _ = http.read_to_string(&mut body).await;
        body.lines()
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until a counter reaches `value`.
    pub async fn wait_metric(&self, name: &str, value: f64) {
        let reached = harvest_testkit::eventually(WAIT, || async move {
            (self.metric(name).await >= value).then_some(())
        })
        .await;
        assert!(
            reached.is_some(),
            "{name} never reached {value}; at {}",
            self.metric(name).await
        );
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl World {
    pub async fn new() -> World {
        Self::with(|_| {}).await
    }

    pub async fn with(adjust: impl FnOnce(&mut OrdersConfig)) -> World {
        Self::on(Broker::shared().expect("the shared broker is up"), adjust).await
    }

    /// On `broker`: a private one, for a test that stops it.
    pub async fn on(broker: Broker, adjust: impl FnOnce(&mut OrdersConfig)) -> World {
        let redis = Redis::start().expect("redis starts");
        let settings = TestSettings::new(&redis, &broker);
        let mut config = OrdersConfig {
            server: ServerConfig::local(0, 0),
            bus: settings.bus,
            redis: settings.redis,
            regions: settings.regions,
            ..OrdersConfig::default()
        };
        config.orders.deadline_poll_ms = 50;
        adjust(&mut config);
        let topology = Topology::new(&config.bus, config.regions.all.clone());
        harvest_bus::admin::ensure_topics(&config.bus, &topology.all_topics())
            .await
            .expect("topics");
        let region = Region::parse("east").expect("valid");
        let publisher =
            |owner| Publisher::new(&config.bus, topology.clone(), owner).expect("publisher");
        let orders_events = Probe::start(
            &broker.bootstrap(),
            &[topology.topic(Stream::Orders, &region)],
        )
        .expect("probe");
        World {
            catalog: publisher(Stream::Catalog),
            payments: publisher(Stream::Payments),
            delivery: publisher(Stream::Delivery),
            broker,
            redis,
            config,
            region,
            orders_events,
        }
    }

    /// A connection to this world's Redis, for looking under the store (on
    /// a cluster, each command goes to the node of its key).
    pub async fn plain_redis(&self) -> harvest_kit::store::Redis {
        self.redis.connect().await.expect("connects")
    }

    /// The orders service's store on this world's Redis, for a test that
    /// writes what a crash or a race would leave.
    pub async fn store(&self) -> harvest_orders::store::OrderStore {
        let redis = harvest_kit::store::connect(&self.config.redis)
            .await
            .expect("connects");
        harvest_orders::store::OrderStore::new(
            redis,
            &self.config.redis.key_prefix,
            self.config.redis.retention(),
        )
    }

    /// Starts an orders service on this world's Redis and broker.
    pub async fn start(&self) -> Running {
        let app = App::build(self.config.clone())
            .await
            .expect("orders builds");
        let grpc = app.grpc_addr();
        let admin_addr = app.admin_addr();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("orders runs");
        });
        let client = OrdersServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("grpc connects");
        Running {
            client,
            grpc_addr: grpc,
            admin_addr,
            shutdown,
            task: Some(task),
        }
    }

    /// Every event the orders service published for `order_id`, in order.
    pub fn events_of(&self, order_id: &str) -> Vec<Envelope> {
        decode_all(&self.orders_events.messages())
            .into_iter()
            .filter(|envelope| envelope.order_id == order_id)
            .collect()
    }

    /// Waits for an event of `order_id` matching `wanted`.
    pub async fn wait_event(&self, order_id: &str, wanted: impl Fn(&Payload) -> bool) -> Envelope {
        self.orders_events
            .wait_for(WAIT, |messages| {
                decode_all(messages).into_iter().find(|envelope| {
                    envelope.order_id == order_id && envelope.payload.as_ref().is_some_and(&wanted)
                })
            })
            .await
            .unwrap_or_else(|| panic!("no matching orders event for {order_id}"))
    }

    /// Publishes an event of another service about `order_id`.
    pub async fn send(&self, order_id: &str, step: &str, payload: Payload) -> Envelope {
        let id = Id::parse(order_id).expect("valid");
        let (publisher, source) = match payload {
            Payload::StockReserved(_) | Payload::StockRejected(_) => (&self.catalog, "catalog"),
            Payload::PaymentAuthorized(_) | Payload::PaymentDeclined(_) => {
                (&self.payments, "payments")
            }
            _ => (&self.delivery, "delivery"),
        };
        let envelope = new_envelope(
            &deterministic_id("evt", &[order_id, source, step]),
            &id,
            &self.region,
            source,
            payload,
        );
        publisher
            .publish(envelope.clone())
            .await
            .expect("published");
        envelope
    }
}

pub use harvest_testkit::kafka::envelopes as decode_all;

pub fn place_request(key: &str, lines: &[(&str, i64)]) -> PlaceOrderRequest {
    PlaceOrderRequest {
        idempotency_key: key.to_owned(),
        buyer_id: "buyer-hangzhou-1".to_owned(),
        region: "east".to_owned(),
        ship_to: Some(Address {
            recipient: "Zhang Wei".to_owned(),
            phone: "+86 138 0000 0000".to_owned(),
            province: "Zhejiang".to_owned(),
            county: "Xihu".to_owned(),
            street: "1 Wensan Road".to_owned(),
            location: None,
        }),
        lines: lines
            .iter()
            .map(|(product_id, quantity)| OrderLine {
                product_id: (*product_id).to_owned(),
                quantity: *quantity,
            })
            .collect(),
        payment_method: "approve".to_owned(),
    }
}

pub async fn place(client: &OrdersServiceClient<Channel>, lines: &[(&str, i64)]) -> Order {
    client
        .clone()
        .place_order(place_request(&unique_name(), lines))
        .await
        .expect("order placed")
        .into_inner()
}

/// Places a good order under `key` and checks it is its buyer's only order:
/// whatever was refused under that key before claimed nothing.
pub async fn place_as_only_order(client: &OrdersServiceClient<Channel>, key: &str) -> Order {
    let mut client = client.clone();
    let order = client
        .place_order(place_request(key, &[("prd_apples", 1)]))
        .await
        .expect("placed")
        .into_inner();
    let listed = client
        .list_orders(ListOrdersRequest {
            buyer_id: order.buyer_id.clone(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    order
}

/// Starts watching an order.
pub async fn watch(
    client: &OrdersServiceClient<Channel>,
    order_id: &str,
) -> tonic::Streaming<OrderUpdate> {
    client
        .clone()
        .watch_order(WatchOrderRequest {
            order_id: order_id.to_owned(),
        })
        .await
        .expect("watching")
        .into_inner()
}

/// Waits until the order is in `state`.
pub async fn wait_state(
    client: &OrdersServiceClient<Channel>,
    order_id: &str,
    state: OrderState,
) -> Order {
    let found = harvest_testkit::eventually(WAIT, || {
        let mut client = client.clone();
        let order_id = order_id.to_owned();
        async move {
            let order = client
                .get_order(GetOrderRequest { order_id })
                .await
                .ok()?
                .into_inner();
            (order.state() == state).then_some(order)
        }
    })
    .await;
    found.unwrap_or_else(|| panic!("order {order_id} never reached {state:?}"))
}

/// A reservation of every line at 1,000 fen a unit, each product from its own
/// pickup point.
pub fn stock_reserved(lines: &[(&str, i64)], pickup_by: Option<std::time::SystemTime>) -> Payload {
    let reserved: Vec<ReservedLine> = lines
        .iter()
        .map(|(product_id, quantity)| ReservedLine {
            product_id: (*product_id).to_owned(),
            seller_id: format!("seller-of-{product_id}"),
            quantity: *quantity,
            unit_price_fen: 1_000,
            line_total_fen: 1_000 * quantity,
            pickup_point_id: format!("pp-{product_id}"),
            ..ReservedLine::default()
        })
        .collect();
    let pickups = lines
        .iter()
        .map(|(product_id, quantity)| Pickup {
            point: Some(PickupPoint {
                pickup_point_id: format!("pp-{product_id}"),
                name: format!("collection point of {product_id}"),
                ..PickupPoint::default()
            }),
            lines: vec![OrderLine {
                product_id: (*product_id).to_owned(),
                quantity: *quantity,
            }],
            cold_chain: false,
            pickup_by: pickup_by.map(Into::into),
        })
        .collect();
    Payload::StockReserved(StockReserved {
        buyer_id: "buyer-hangzhou-1".to_owned(),
        payment_method: "approve".to_owned(),
        total_fen: reserved.iter().map(|line| line.line_total_fen).sum(),
        lines: reserved,
        pickups,
    })
}

pub fn assigned(shipment: &str) -> Payload {
    Payload::CourierAssigned(CourierAssigned {
        shipment_id: shipment.to_owned(),
        courier_id: "courier-1".to_owned(),
        ..CourierAssigned::default()
    })
}

pub fn picked_up(shipment: &str) -> Payload {
    Payload::ShipmentPickedUp(ShipmentPickedUp {
        shipment_id: shipment.to_owned(),
        courier_id: "courier-1".to_owned(),
        lines: Vec::new(),
    })
}

pub fn delivered(shipment: &str) -> Payload {
    Payload::ShipmentDelivered(ShipmentDelivered {
        shipment_id: shipment.to_owned(),
        courier_id: "courier-1".to_owned(),
        recipient_name: "Zhang Wei".to_owned(),
        proof_reference: String::new(),
        ..ShipmentDelivered::default()
    })
}

pub fn failed(shipment: &str, reason: ShipmentFailureReason) -> Payload {
    Payload::ShipmentFailed(ShipmentFailed {
        shipment_id: shipment.to_owned(),
        courier_id: String::new(),
        reason: reason.into(),
        detail: "test".to_owned(),
    })
}
