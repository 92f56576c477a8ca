use std::path::{Path, PathBuf};
use std::time::Duration;

use harvest_domain::Regions;
use harvest_kit::auth::Role;
use harvest_kit::issuer::act_as;
use harvest_proto::catalog::v1::{
    Category, CollectionPointInput, CreateProductRequest, GetStockRequest, Product,
    ReceiveStockLotRequest, Stock, Unit,
};
use harvest_proto::common::v1::{
    Address, Date, GeoPoint, OrderLine, OrderState, Origin, Seller, SellerKind,
};
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, GetShipmentRequest, RegisterCourierRequest,
    Shipment, ShipmentState, Vehicle,
};
use harvest_proto::orders::v1::{GetOrderRequest, Order, PlaceOrderRequest};
use harvest_proto::payments::v1::{GetPaymentRequest, Payment, PaymentState};
use harvest_sim::Clients;
use harvest_stack::{ServiceKind, Stack, StackOptions};
use tonic::Status;

/// The courier partner that registers the tests' couriers.
pub const PARTNER: &str = "partner-e2e-express";

pub const WAIT: Duration = Duration::from_secs(60);

/// Seconds a reserved order may stay unpaid in these tests.
pub const PAYMENT_DEADLINE_SECS: u64 = 6;
/// Seconds a shipment may wait for a courier in these tests.
pub const COURIER_DEADLINE_SECS: u64 = 5;

/// A running Harvest: Redis and the four services as processes, on the
/// run's shared broker.
pub struct System {
    pub stack: Stack,
    pub clients: Clients,
    state_dir: PathBuf,
}

impl Drop for System {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl System {
    pub async fn start() -> System {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut StackOptions)) -> System {
        let state_dir =
            std::env::temp_dir().join(format!("harvest-e2e-{}", uuid::Uuid::new_v4().simple()));
        let mut options = StackOptions::new(&state_dir);
        // The run's shared broker, under topics and groups of this test's own.
        let broker = harvest_testkit::Broker::shared().expect("the shared broker is up");
        options.external_broker = Some(broker.bootstrap());
        options.topic_prefix = format!("{}.", harvest_testkit::unique_name());
        options.regions =
            Regions::try_from(vec!["east".to_owned(), "north".to_owned()]).expect("valid");
        options.partitions = 2;
        options.env = vec![(
            "HARVEST_BUS__SESSION_TIMEOUT_MS".to_owned(),
            "6000".to_owned(),
        )];
        let set = |kind, key: &str, value: String| (kind, key.to_owned(), value);
        options.service_env = vec![
            set(
                ServiceKind::Orders,
                "HARVEST_ORDERS__PAYMENT_DEADLINE_SECS",
                PAYMENT_DEADLINE_SECS.to_string(),
            ),
            set(
                ServiceKind::Orders,
                "HARVEST_ORDERS__DEADLINE_POLL_MS",
                "100".to_owned(),
            ),
            set(
                ServiceKind::Orders,
                "HARVEST_ORDERS__OUTBOX_STALE_SECS",
                "2".to_owned(),
            ),
            set(
                ServiceKind::Delivery,
                "HARVEST_ASSIGNMENT__RETRY_INTERVAL_MS",
                "300".to_owned(),
            ),
            set(
                ServiceKind::Delivery,
                "HARVEST_ASSIGNMENT__DEADLINE_SECS",
                COURIER_DEADLINE_SECS.to_string(),
            ),
            set(
                ServiceKind::Delivery,
                "HARVEST_ASSIGNMENT__STREAM_POLL_MS",
                "200".to_owned(),
            ),
        ];
        adjust(&mut options);
        let stack = Stack::start(options).await.expect("the stack starts");
        let clients = Clients::connect(&stack).await.expect("clients connect");
        System {
            stack,
            clients,
            state_dir,
        }
    }

    /// A product of a cooperative at a collection point, with `stock` units
    /// in one lot good for a month.
    pub async fn product(&self, name: &str, point: &Point, stock: i64) -> Product {
        let mut catalog = self.clients.catalog.clone();
        let seller = format!("coop-{}", point.county.to_lowercase());
        let create = CreateProductRequest {
            seller: Some(Seller {
                seller_id: seller.clone(),
                name: format!("{} cooperative", point.county),
                kind: SellerKind::Cooperative.into(),
                origin: Some(Origin {
                    village: "Dongcun".to_owned(),
                    county: point.county.to_owned(),
                    province: point.province.to_owned(),
                }),
            }),
            name: name.to_owned(),
            category: Category::Fruit.into(),
            unit: Unit::Box.into(),
            price_fen: 5_000,
            perishable: false,
            shelf_life_days: 0,
            cold_chain: false,
            collection_point: Some(CollectionPointInput {
                name: format!("{} collection point", point.county),
                location: Some(point.location()),
            }),
            request_id: String::new(),
            per_buyer_limit: 0,
        };
        let product = catalog
            .create_product(act_as(Role::Seller, &seller, create))
            .await
            .expect("product created")
            .into_inner();
        if stock > 0 {
            let today = harvest_domain::Date::today();
            let date = |d: harvest_domain::Date| {
                let (year, month, day) = d.ymd();
                Date { year, month, day }
            };
            let lot = ReceiveStockLotRequest {
                product_id: product.product_id.clone(),
                lot_id: "lot-1".to_owned(),
                quantity: stock,
                harvest_date: Some(date(today)),
                best_before: Some(date(today.plus_days(30))),
            };
            catalog
                .receive_stock_lot(act_as(Role::Seller, &seller, lot))
                .await
                .expect("stock received");
        }
        product
    }

    /// A courier next to `point`.
    pub async fn courier(&self, id: &str, point: &Point, capacity: i32) {
        self.clients
            .delivery
            .clone()
            .register_courier(act_as(
                Role::Partner,
                PARTNER,
                RegisterCourierRequest {
                    courier_id: id.to_owned(),
                    name: format!("courier {id}"),
                    home_county: point.county.to_owned(),
                    home_province: point.province.to_owned(),
                    region: point.region.to_owned(),
                    vehicle: Vehicle::Van.into(),
                    cold_chain: true,
                    capacity,
                    location: Some(GeoPoint {
                        latitude: point.latitude + 0.01,
                        longitude: point.longitude + 0.01,
                    }),
                },
            ))
            .await
            .expect("courier registered");
    }

    /// `courier`, given the order's shipment of `product`, picks it up and
    /// delivers it; the order, once delivered.
    pub async fn carry(&self, courier: &str, order_id: &str, product: &Product) -> Order {
        let shipment = self
            .wait_shipment(order_id, product, ShipmentState::Assigned)
            .await;
        self.pick_up(courier, &shipment.shipment_id)
            .await
            .expect("picked up");
        self.deliver(courier, &shipment.shipment_id, "photo-0001")
            .await
            .expect("delivered");
        self.wait_order(order_id, OrderState::Delivered).await
    }

    /// The order's delivery code, as its buyer (and nobody else) sees it.
    pub async fn delivery_code(&self, order_id: &str) -> String {
        let buyer = self.order(order_id).await.buyer_id;
        let request = GetOrderRequest {
            order_id: order_id.to_owned(),
        };
        self.clients
            .orders
            .clone()
            .get_order(act_as(Role::Buyer, &buyer, request))
            .await
            .expect("the buyer reads the order")
            .into_inner()
            .delivery_code
    }

    /// `courier` picks its shipment up.
    pub async fn pick_up(&self, courier: &str, shipment_id: &str) -> Result<Shipment, Status> {
        let request = ConfirmPickupRequest {
            courier_id: courier.to_owned(),
            shipment_id: shipment_id.to_owned(),
        };
        self.clients
            .delivery
            .clone()
            .confirm_pickup(act_as(Role::Courier, courier, request))
            .await
            .map(tonic::Response::into_inner)
    }

    /// `courier` hands its shipment over to Chen Jing.
    pub async fn deliver(
        &self,
        courier: &str,
        shipment_id: &str,
        proof_reference: &str,
    ) -> Result<Shipment, Status> {
        let shipment = self
            .clients
            .delivery
            .clone()
            .get_shipment(GetShipmentRequest {
                shipment_id: shipment_id.to_owned(),
            })
            .await?
            .into_inner();
        let request = ConfirmDeliveryRequest {
            courier_id: courier.to_owned(),
            shipment_id: shipment_id.to_owned(),
            recipient_name: "Chen Jing".to_owned(),
            proof_reference: proof_reference.to_owned(),
            delivery_code: self.delivery_code(&shipment.order_id).await,
            override_reason: String::new(),
        };
        self.clients
            .delivery
            .clone()
            .confirm_delivery(act_as(Role::Courier, courier, request))
            .await
            .map(tonic::Response::into_inner)
    }

    pub fn order_request(
        &self,
        key: &str,
        buyer: &str,
        lines: &[(&Product, i64)],
        payment: &str,
    ) -> PlaceOrderRequest {
        PlaceOrderRequest {
            idempotency_key: key.to_owned(),
            buyer_id: buyer.to_owned(),
            region: "east".to_owned(),
            ship_to: Some(Address {
                recipient: "Chen Jing".to_owned(),
                phone: "+86 137 1234 5678".to_owned(),
                province: "Jiangsu".to_owned(),
                county: "Gulou".to_owned(),
                street: "8 Zhongshan Road".to_owned(),
                location: None,
            }),
            lines: lines
                .iter()
                .map(|(product, quantity)| OrderLine {
                    product_id: product.product_id.clone(),
                    quantity: *quantity,
                })
                .collect(),
            payment_method: payment.to_owned(),
        }
    }

    pub async fn place(&self, lines: &[(&Product, i64)], payment: &str) -> Order {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let request = self.order_request(&key, "buyer-nanjing-1", lines, payment);
        self.clients
            .orders
            .clone()
            .place_order(act_as(Role::Buyer, "buyer-nanjing-1", request))
            .await
            .expect("order placed")
            .into_inner()
    }

    pub async fn order(&self, order_id: &str) -> Order {
        self.clients
            .orders
            .clone()
            .get_order(GetOrderRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .expect("order")
            .into_inner()
    }

    /// Waits until the order is in `state`; fails at once if it ends in
    /// another final state.
    pub async fn wait_order(&self, order_id: &str, state: OrderState) -> Order {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let order = self.order(order_id).await;
            if order.state() == state {
                return order;
            }
            let ended = matches!(order.state(), OrderState::Delivered | OrderState::Cancelled);
            assert!(
                !ended,
                "order {order_id} ended {:?} ({:?}: {}), not {state:?}",
                order.state(),
                order.cancel_reason(),
                order.cancel_detail
            );
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} stuck at {:?}, not {state:?}",
                order.state()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn stock(&self, product: &Product) -> Stock {
        self.clients
            .catalog
            .clone()
            .get_stock(GetStockRequest {
                product_id: product.product_id.clone(),
            })
            .await
            .expect("stock")
            .into_inner()
    }

    pub async fn payment(&self, order_id: &str) -> Option<Payment> {
        self.clients
            .payments
            .clone()
            .get_payment(GetPaymentRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .ok()
            .map(tonic::Response::into_inner)
    }

    pub async fn wait_payment(&self, order_id: &str, state: PaymentState) -> Payment {
        let found = poll(|| async {
            self.payment(order_id)
                .await
                .filter(|payment| payment.state() == state)
        })
        .await;
        let last = self.payment(order_id).await.map(|p| p.state());
        found.unwrap_or_else(|| panic!("payment of {order_id} is {last:?}, not {state:?}"))
    }

    /// The shipment of `order_id` from `product`'s collection point, once it
    /// exists.
    pub async fn shipment(&self, order_id: &str, product: &Product) -> Shipment {
        let point = product.collection_point.as_ref().expect("point");
        let shipment_id = harvest_domain::shipment_id(order_id, &point.pickup_point_id).to_string();
        poll(|| async {
            self.clients
                .delivery
                .clone()
                .get_shipment(GetShipmentRequest {
                    shipment_id: shipment_id.clone(),
                })
                .await
                .ok()
                .map(tonic::Response::into_inner)
        })
        .await
        .unwrap_or_else(|| panic!("no shipment {shipment_id} for order {order_id}"))
    }

    pub async fn wait_shipment(
        &self,
        order_id: &str,
        product: &Product,
        state: ShipmentState,
    ) -> Shipment {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let shipment = self.shipment(order_id, product).await;
            if shipment.state() == state {
                return shipment;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "shipment of {order_id} is {:?}, not {state:?}",
                shipment.state()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls `check` every 100 ms for up to a minute.
pub async fn poll<T, F, Fut>(mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(found) = check().await {
            return Some(found);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A collection point: where goods wait and couriers come.
pub struct Point {
    pub county: &'static str,
    pub province: &'static str,
    pub region: &'static str,
    pub latitude: f64,
    pub longitude: f64,
}

impl Point {
    pub fn location(&self) -> GeoPoint {
        GeoPoint {
            latitude: self.latitude,
            longitude: self.longitude,
        }
    }
}

/// In Zhejiang (east), where the tests' couriers work.
pub const ANJI: Point = Point {
    county: "Anji",
    province: "Zhejiang",
    region: "east",
    latitude: 30.63,
    longitude: 119.68,
};

/// In Hebei (north), where no courier works.
pub const FUPING: Point = Point {
    county: "Fuping",
    province: "Hebei",
    region: "north",
    latitude: 38.85,
    longitude: 114.20,
};

/// The repository's root.
pub fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate is inside the repository")
        .to_path_buf()
}

/// The build's output folder: `CARGO_TARGET_DIR`, else `target/`.
pub fn target_dir() -> PathBuf {
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

/// The path of a browser script of `e2e-browser/`, once playwright-core,
/// which it drives Chromium with, is there.
pub fn browser_script(name: &str) -> PathBuf {
    assert!(
        repository()
            .join("e2e-browser/node_modules/playwright-core")
            .is_dir(),
        "playwright-core is not installed: run `make browser-deps`"
    );
    repository().join("e2e-browser").join(name)
}

/// Runs `script` in Node with `args`, within `limit`; fails the test with
/// `what`, the exit status and both outputs unless it succeeds. Its output.
pub async fn run_browser_script<I, A>(script: &Path, args: I, limit: Duration, what: &str) -> String
where
    I: IntoIterator<Item = A>,
    A: AsRef<std::ffi::OsStr>,
{
    let browser = tokio::process::Command::new("node")
        .arg(script)
        .args(args)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(limit, browser)
        .await
        .unwrap_or_else(|_| panic!("{what}: the browser did not finish within {limit:?}"))
        .expect("node runs (Node.js 20 or newer on PATH)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what} ({:?}):\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}
