use std::time::Duration;

use harvest_bus::{Envelope, Payload, Publisher, Stream, Topology, new_envelope};
use harvest_domain::{Id, Region, deterministic_id, new_id};
use harvest_kit::ServerConfig;
use harvest_payments::config::ProviderConfig;
use harvest_payments::ledger::Ledger;
use harvest_payments::sandbox::{SandboxProvider, SandboxRecord};
use harvest_payments::store::PaymentStore;
use harvest_payments::{App, PaymentsConfig};
use harvest_proto::common::v1::{CancelReason, OrderLine, OrderState};
use harvest_proto::events::v1::{OrderCancelled, OrderDelivered, ReservedLine, StockReserved};
use harvest_proto::payments::v1::payments_service_client::PaymentsServiceClient;
use harvest_proto::payments::v1::{GetPaymentRequest, LedgerEntryKind, Payment};
use harvest_testkit::kafka::{Probe, RawMessage};
use harvest_testkit::{Broker, Redis, TestSettings};
use prost::Message;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const WAIT: Duration = Duration::from_secs(30);

/// A running payments service with its own Redis, broker, topics and groups.
pub struct TestPayments {
    pub config: PaymentsConfig,
    pub client: PaymentsServiceClient<Channel>,
    pub store: PaymentStore,
    pub sandbox: SandboxProvider,
    /// Writes the `catalog` stream, as the catalog would.
    pub catalog: Publisher,
    /// Writes the `orders` stream, as the orders service would.
    pub orders: Publisher,
    /// Everything payments publishes in the test region.
    pub payment_events: Probe,
    /// Payments' dead letters in the test region.
    pub dead_letters: Probe,
    pub region: Region,
    pub admin_addr: std::net::SocketAddr,
    shutdown: CancellationToken,
    running: tokio::task::JoinHandle<()>,
    _broker: Broker,
    _redis: Redis,
}

impl Drop for TestPayments {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.running.abort();
    }
}

pub fn test_config(redis: &Redis, broker: &Broker) -> PaymentsConfig {
    let settings = TestSettings::new(redis, broker);
    PaymentsConfig {
        server: ServerConfig::local(0, 0),
        bus: settings.bus,
        redis: settings.redis,
        regions: settings.regions,
        provider: ProviderConfig {
            max_attempts: 3,
            backoff_ms: 10,
            latency_ms: 0,
        },
        ..PaymentsConfig::default()
    }
}

impl TestPayments {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut PaymentsConfig)) -> Self {
        let redis = Redis::start().expect("redis starts");
        let broker = Broker::shared().expect("the shared broker is up");
        let mut config = test_config(&redis, &broker);
        adjust(&mut config);
        let app = App::build(config.clone()).await.expect("payments builds");
        let grpc = app.grpc_addr();
        let admin_addr = app.admin_addr();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let running = tokio::spawn(async move {
            app.run_until_stopped(stop).await.expect("payments runs");
        });

        let client = PaymentsServiceClient::connect(format!("http://{grpc}"))
            .await
            .expect("grpc connects");
        let connection = harvest_kit::store::connect(&config.redis)
            .await
            .expect("redis connects");
        let store = PaymentStore::new(connection.clone(), &config.redis.key_prefix);
        let sandbox = SandboxProvider::new(connection, &config.redis.key_prefix, Duration::ZERO);
        let topology = Topology::new(&config.bus, config.regions.all.clone());
        let region = Region::parse("east").expect("valid");
        let catalog =
            Publisher::new(&config.bus, topology.clone(), Stream::Catalog).expect("publisher");
        let orders =
            Publisher::new(&config.bus, topology.clone(), Stream::Orders).expect("publisher");
        let payment_events = Probe::start(
            &broker.bootstrap(),
            &[topology.topic(Stream::Payments, &region)],
        )
        .expect("probe");
        let dead_letters = Probe::start(
            &broker.bootstrap(),
            &[topology.dead_letter_topic("payments", &region)],
        )
        .expect("probe");
        TestPayments {
            config,
            client,
            store,
            sandbox,
            catalog,
            orders,
            payment_events,
            dead_letters,
            region,
            admin_addr,
            shutdown,
            running,
            _broker: broker,
            _redis: redis,
        }
    }

    /// Publishes a StockReserved for a new order paid with `method`, with one
    /// line per (seller, line total).
    pub async fn reserve(&self, method: &str, lines: &[(&str, i64)]) -> Envelope {
        let envelope = stock_reserved(&new_id("ord"), &self.region, method, lines);
        self.catalog
            .publish(envelope.clone())
            .await
            .expect("published");
        envelope
    }

    /// Publishes the OrderDelivered of a reserved order.
    pub async fn deliver(&self, reserved: &Envelope) -> Envelope {
        self.publish_order_event(order_delivered(reserved)).await
    }

    /// Publishes the OrderDelivered of a reserved order of which only the
    /// first `delivered` lines arrived.
    pub async fn deliver_in_part(&self, reserved: &Envelope, delivered: usize) -> Envelope {
        self.publish_order_event(order_delivered_in_part(reserved, delivered))
            .await
    }

    /// Publishes an OrderCancelled for `order_id`.
    pub async fn cancel(&self, order_id: &str) -> Envelope {
        self.publish_order_event(order_cancelled(order_id, &self.region))
            .await
    }

    async fn publish_order_event(&self, envelope: Envelope) -> Envelope {
        self.orders
            .publish(envelope.clone())
            .await
            .expect("published");
        envelope
    }

    /// Waits for a payments event of `order_id` matching `wanted`.
    pub async fn wait_event(&self, order_id: &str, wanted: impl Fn(&Payload) -> bool) -> Envelope {
        self.payment_events
            .wait_for(WAIT, |messages| {
                decode_all(messages).into_iter().find(|envelope| {
                    envelope.order_id == order_id && envelope.payload.as_ref().is_some_and(&wanted)
                })
            })
            .await
            .unwrap_or_else(|| panic!("no matching payments event for {order_id}"))
    }

    /// Waits until at least `count` payments events of `order_id` match.
    pub async fn wait_events(
        &self,
        order_id: &str,
        count: usize,
        wanted: impl Fn(&Payload) -> bool,
    ) -> Vec<Envelope> {
        self.payment_events
            .wait_for(WAIT, |messages| {
                let found: Vec<Envelope> = decode_all(messages)
                    .into_iter()
                    .filter(|envelope| {
                        envelope.order_id == order_id
                            && envelope.payload.as_ref().is_some_and(&wanted)
                    })
                    .collect();
                (found.len() >= count).then_some(found)
            })
            .await
            .unwrap_or_else(|| panic!("fewer than {count} matching payments events for {order_id}"))
    }

    /// Every payments event of `order_id` read so far.
    pub fn events_of(&self, order_id: &str) -> Vec<Envelope> {
        decode_all(&self.payment_events.messages())
            .into_iter()
            .filter(|envelope| envelope.order_id == order_id)
            .collect()
    }

    /// Waits until payments has handled the event (it remembers handled
    /// event ids with the payment).
    pub async fn wait_handled(&self, event: &Envelope) {
        harvest_testkit::eventually(WAIT, || async {
            let payment = self.store.payment(&event.order_id).await.ok().flatten()?;
            payment.seen(&event.event_id).map(|_| ())
        })
        .await
        .unwrap_or_else(|| panic!("event {} was not handled", event.event_type));
    }

    /// An order paid with `approve`, authorized and, when `deliver`,
    /// captured.
    pub async fn paid_order(&self, total: i64, deliver: bool) -> Envelope {
        let reserved = self.reserve("approve", &[("farmer-li", total)]).await;
        self.wait_event(&reserved.order_id, |p| {
            matches!(p, Payload::PaymentAuthorized(_))
        })
        .await;
        if deliver {
            self.deliver(&reserved).await;
            self.wait_event(&reserved.order_id, |p| {
                matches!(p, Payload::PaymentCaptured(_))
            })
            .await;
        }
        reserved
    }

    pub async fn payment(&self, order_id: &str) -> Payment {
        self.client
            .clone()
            .get_payment(GetPaymentRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .expect("payment found")
            .into_inner()
    }

    /// The Prometheus page of the admin port.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.admin_addr)
            .await
            .expect("admin port connects");
        stream
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await
            .expect("request sent");
        let mut page = String::new();
        stream
            .read_to_string(&mut page)
            .await
            .expect("response read");
        page
    }

    /// What the sandbox provider remembers of a step of an order.
    /// How long Redis keeps `key` (given without the key prefix), in ms: -1
    /// for a key without a time to live, -2 for none.
    pub async fn pttl(&self, key: &str) -> i64 {
        let mut redis = harvest_kit::store::connect(&self.config.redis)
            .await
            .expect("redis connects");
        redis::cmd("PTTL")
            .arg(format!("{}{key}", self.config.redis.key_prefix))
            .query_async(&mut redis)
            .await
            .expect("redis")
    }

    /// Whether `ttl_ms` (from [`TestPayments::pttl`]) is the retention,
    /// less the moments since it was set.
    pub fn is_the_retention(&self, ttl_ms: i64) -> bool {
        let retention = self.config.redis.retention().as_millis() as i64;
        ttl_ms > retention - 60_000 && ttl_ms <= retention
    }

    pub async fn provider_record(&self, order_id: &str, step: &str) -> Option<SandboxRecord> {
        self.sandbox
            .record(&format!("{order_id}:{step}"))
            .await
            .expect("sandbox record")
    }
}

/// Replays a payment's ledger, checking every rule, and checks that its
/// totals agree with the ledger.
pub fn audit(payment: &Payment) -> Ledger {
    let ledger = Ledger::from_entries(&payment.entries)
        .unwrap_or_else(|problem| panic!("ledger of {}: {problem}", payment.order_id));
    ledger.check().expect("invariants hold");
    assert_eq!(
        (
            ledger.authorized().get(),
            ledger.captured().get(),
            ledger.refunded().get()
        ),
        (
            payment.authorized_fen,
            payment.captured_fen,
            payment.refunded_fen
        ),
        "totals of {} agree with its ledger",
        payment.order_id
    );
    assert!(payment.authorized_fen >= payment.captured_fen);
    assert!(payment.captured_fen >= payment.refunded_fen && payment.refunded_fen >= 0);
    ledger
}

pub fn count_entries(payment: &Payment, kind: LedgerEntryKind) -> usize {
    payment
        .entries
        .iter()
        .filter(|entry| entry.kind() == kind)
        .count()
}

pub fn decode_all(messages: &[RawMessage]) -> Vec<Envelope> {
    messages
        .iter()
        .filter_map(|message| Envelope::decode(message.payload.as_slice()).ok())
        .collect()
}

fn reserved_lines(lines: &[(&str, i64)]) -> Vec<ReservedLine> {
    lines
        .iter()
        .enumerate()
        .map(|(index, (seller_id, line_total))| ReservedLine {
            product_id: format!("prd_{index}"),
            seller_id: (*seller_id).to_owned(),
            quantity: 1,
            unit_price_fen: *line_total,
            line_total_fen: *line_total,
            product_name: format!("product {index}"),
            ..ReservedLine::default()
        })
        .collect()
}

pub fn stock_reserved(
    order_id: &Id,
    region: &Region,
    method: &str,
    lines: &[(&str, i64)],
) -> Envelope {
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "catalog", "stock-outcome"]),
        order_id,
        region,
        "catalog",
        Payload::StockReserved(StockReserved {
            buyer_id: "buyer-1".to_owned(),
            payment_method: method.to_owned(),
            lines: reserved_lines(lines),
            total_fen: lines.iter().map(|(_, total)| total).sum(),
            pickups: Vec::new(),
        }),
    )
}

pub fn order_delivered(reserved: &Envelope) -> Envelope {
    let Some(Payload::StockReserved(stock)) = &reserved.payload else {
        panic!("not a reservation: {reserved:?}");
    };
    order_delivered_in_part(reserved, stock.lines.len())
}

/// The OrderDelivered of a reserved order whose first `delivered` lines
/// arrived and whose other lines' shipments failed.
pub fn order_delivered_in_part(reserved: &Envelope, delivered: usize) -> Envelope {
    let Some(Payload::StockReserved(stock)) = &reserved.payload else {
        panic!("not a reservation: {reserved:?}");
    };
    let (lines, undelivered_lines) = stock.lines.split_at(delivered);
    let total = |lines: &[ReservedLine]| lines.iter().map(|line| line.line_total_fen).sum();
    let order_id = Id::parse(&reserved.order_id).expect("valid");
    let region = Region::parse(&reserved.region).expect("valid");
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "delivered"]),
        &order_id,
        &region,
        "orders",
        Payload::OrderDelivered(OrderDelivered {
            lines: lines.to_vec(),
            total_fen: total(lines),
            undelivered_lines: undelivered_lines.to_vec(),
            undelivered_fen: total(undelivered_lines),
        }),
    )
}

pub fn order_cancelled(order_id: &str, region: &Region) -> Envelope {
    let order_id = Id::parse(order_id).expect("valid");
    new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "cancelled"]),
        &order_id,
        region,
        "orders",
        Payload::OrderCancelled(OrderCancelled {
            reason: CancelReason::BuyerCancelled.into(),
            detail: "changed my mind".to_owned(),
            lines: vec![OrderLine {
                product_id: "prd_0".to_owned(),
                quantity: 1,
            }],
            previous_state: OrderState::Confirmed.into(),
        }),
    )
}
