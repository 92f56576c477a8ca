use std::time::Duration;

use harvest_bus::{Envelope, Payload, Publisher, Stream, Topology, new_envelope};
use harvest_catalog::store::CatalogStore;
use harvest_catalog::{App, CatalogConfig};
use harvest_domain::{Id, Region, deterministic_id, new_id};
use harvest_kit::ServerConfig;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::catalog::v1::{
    Category, CollectionPointInput, CreateProductRequest, Product, ReceiveStockLotRequest, Unit,
};
use harvest_proto::common::v1 as common;
use harvest_proto::common::v1::CancelReason;
use harvest_proto::events::v1::{OrderCancelled, OrderPlaced};
use harvest_testkit::kafka::Probe;
use harvest_testkit::{Broker, Redis, TestSettings};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// A running catalog with its own Redis, broker, topics and groups.
pub struct TestCatalog {
    pub broker: Broker,
    pub config: CatalogConfig,
    pub client: CatalogServiceClient<Channel>,
    pub store: CatalogStore,
    /// Writes the `orders` stream, as the orders service would.
    pub orders: Publisher,
    /// Writes the `delivery` stream, as the delivery service would.
    pub delivery: Publisher,
    /// Everything the catalog publishes in the test region.
    pub catalog_events: Probe,
    /// The catalog's dead letters in the test region.
    pub dead_letters: Probe,
    pub region: Region,
    pub grpc_addr: std::net::SocketAddr,
    pub admin_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<()>,
    pub redis: Redis,
}

impl Drop for TestCatalog {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.running.abort();
    }
}

pub fn test_config(redis: &Redis, broker: &Broker) -> CatalogConfig {
    let settings = TestSettings::new(redis, broker);
    CatalogConfig {
        server: ServerConfig::local(0, 0),
        bus: settings.bus,
        redis: settings.redis,
        regions: settings.regions,
        ..CatalogConfig::default()
    }
}

impl TestCatalog {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut CatalogConfig)) -> Self {
        let redis = Redis::start().expect("redis starts");
        let broker = Broker::shared().expect("the shared broker is up");
        let mut config = test_config(&redis, &broker);
        adjust(&mut config);
        let app = App::build(config.clone()).await.expect("catalog builds");
        let grpc = app.grpc_addr();
        let admin_addr = app.admin_addr();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let running = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("catalog runs");
        });

        let client = CatalogServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("grpc connects");
        let redis_connection = harvest_kit::store::connect(&config.redis)
            .await
            .expect("redis connects");
        let store = CatalogStore::new(redis_connection, &config.redis.key_prefix);
        let topology = Topology::new(&config.bus, config.regions.all.clone());
        let region = Region::parse("east").expect("valid");
        let orders =
            Publisher::new(&config.bus, topology.clone(), Stream::Orders).expect("publisher");
        let delivery =
            Publisher::new(&config.bus, topology.clone(), Stream::Delivery).expect("publisher");
        let catalog_events = Probe::start(
            &broker.bootstrap(),
            &[topology.topic(Stream::Catalog, &region)],
        )
        .expect("probe");
        let dead_letters = Probe::start(
            &broker.bootstrap(),
            &[topology.dead_letter_topic("catalog", &region)],
        )
        .expect("probe");
        TestCatalog {
            broker,
            config,
            client,
            store,
            orders,
            delivery,
            catalog_events,
            dead_letters,
            region,
            grpc_addr: grpc,
            admin_addr,
            shutdown,
            running,
            redis,
        }
    }

    /// Creates a product of a cooperative in `province`.
    pub async fn product(&self, name: &str, price_fen: i64, perishable: bool) -> Product {
        let mut request = product_request(name, price_fen);
        request.perishable = perishable;
        request.shelf_life_days = if perishable { 20 } else { 0 };
        self.client
            .clone()
            .create_product(request)
            .await
            .expect("product created")
            .into_inner()
    }

    /// Receives a lot of `quantity` whose best-before is `days` from today.
    pub async fn lot(&self, product: &Product, lot_id: &str, quantity: i64, days: i32) {
        let today = harvest_domain::Date::today();
        self.client
            .clone()
            .receive_stock_lot(ReceiveStockLotRequest {
                product_id: product.product_id.clone(),
                lot_id: lot_id.to_owned(),
                quantity,
                harvest_date: Some(date(today)),
                best_before: Some(date(today.plus_days(days))),
            })
            .await
            .expect("lot received");
    }

    /// Publishes an OrderPlaced for `lines` and returns its envelope.
    pub async fn place(&self, lines: &[(&str, i64)]) -> Envelope {
        self.place_as("buyer-1", lines).await
    }

    /// Publishes an OrderPlaced of `buyer` for `lines` and returns its envelope.
    pub async fn place_as(&self, buyer: &str, lines: &[(&str, i64)]) -> Envelope {
        let order_id = new_id("ord");
        let envelope = order_placed_by(&order_id, &self.region, buyer, lines);
        self.orders
            .publish(envelope.clone())
            .await
            .expect("published");
        envelope
    }

    /// The stock event the catalog published for an order.
    pub async fn outcome(&self, order_id: &str) -> Envelope {
        self.wait_event(order_id, |payload| {
            matches!(
                payload,
                Payload::StockReserved(_) | Payload::StockRejected(_)
            )
        })
        .await
    }

    /// Waits for a catalog event of `order_id` matching `wanted`.
    pub async fn wait_event(&self, order_id: &str, wanted: impl Fn(&Payload) -> bool) -> Envelope {
        self.catalog_events
            .wait_for(WAIT, |messages| {
                decode_all(messages).into_iter().find(|envelope| {
                    envelope.order_id == order_id && envelope.payload.as_ref().is_some_and(&wanted)
                })
            })
            .await
            .unwrap_or_else(|| panic!("no matching catalog event for {order_id}"))
    }

    /// Fails the test if the product's stock arithmetic does not hold.
    pub async fn audit(&self, product_id: &str) {
        self.store
            .snapshot(product_id)
            .await
            .expect("snapshot")
            .audit()
            .expect("consistent");
    }

    /// The first page of every product, as ListProducts lists them.
    pub async fn listed(&self) -> Vec<Product> {
        self.client
            .clone()
            .list_products(harvest_proto::catalog::v1::ListProductsRequest::default())
            .await
            .expect("listed")
            .into_inner()
            .products
    }

    pub async fn stock(&self, product: &Product) -> harvest_proto::catalog::v1::Stock {
        self.client
            .clone()
            .get_stock(harvest_proto::catalog::v1::GetStockRequest {
                product_id: product.product_id.clone(),
            })
            .await
            .expect("stock")
            .into_inner()
    }
}

pub use harvest_testkit::kafka::envelopes as decode_all;

pub fn date(date: harvest_domain::Date) -> common::Date {
    let (year, month, day) = date.ymd();
    common::Date { year, month, day }
}

pub fn order_placed(order_id: &Id, region: &Region, lines: &[(&str, i64)]) -> Envelope {
    order_placed_by(order_id, region, "buyer-1", lines)
}

pub fn order_placed_by(
    order_id: &Id,
    region: &Region,
    buyer: &str,
    lines: &[(&str, i64)],
) -> Envelope {
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "placed"]),
        order_id,
        region,
        "orders",
        Payload::OrderPlaced(OrderPlaced {
            buyer_id: buyer.to_owned(),
            lines: order_lines(lines),
            ship_to: None,
            payment_method: "approve".to_owned(),
            placed_at: None,
        }),
    )
}

fn order_lines(lines: &[(&str, i64)]) -> Vec<common::OrderLine> {
    lines
        .iter()
        .map(|(product_id, quantity)| common::OrderLine {
            product_id: (*product_id).to_owned(),
            quantity: *quantity,
        })
        .collect()
}

/// An OrderCancelled of `order_id` by its buyer, with the lines as placed.
pub fn order_cancelled(order_id: &str, region: &Region, lines: &[(&str, i64)]) -> Envelope {
    let order_id = Id::parse(order_id).expect("valid");
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "cancelled"]),
        &order_id,
        region,
        "orders",
        Payload::OrderCancelled(OrderCancelled {
            reason: CancelReason::BuyerCancelled.into(),
            detail: "changed my mind".to_owned(),
            lines: order_lines(lines),
            previous_state: common::OrderState::Reserved.into(),
        }),
    )
}

pub fn product_request(name: &str, price_fen: i64) -> CreateProductRequest {
    CreateProductRequest {
        seller: Some(common::Seller {
            seller_id: "coop-luochuan".to_owned(),
            name: "Luochuan Apple Cooperative".to_owned(),
            kind: common::SellerKind::Cooperative.into(),
            origin: Some(common::Origin {
                village: "Fengqi".to_owned(),
                county: "Luochuan".to_owned(),
                province: "Shaanxi".to_owned(),
            }),
        }),
        name: name.to_owned(),
        category: Category::Fruit.into(),
        unit: Unit::Box.into(),
        price_fen,
        perishable: false,
        shelf_life_days: 0,
        cold_chain: false,
        collection_point: Some(CollectionPointInput {
            name: "Fengqi village square".to_owned(),
            location: Some(common::GeoPoint {
                latitude: 35.76,
                longitude: 109.43,
            }),
        }),
        request_id: String::new(),
        per_buyer_limit: 0,
    }
}
