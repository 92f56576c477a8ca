//! The event bus against a real Apache Kafka broker: retries, dead letters,
//! trace context and graceful shutdown.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harvest_bus::consumer::{self, ConsumerSpec};
use harvest_bus::{
    BusConfig, Envelope, Handler, HandlerError, IncomingEvent, Payload, Publisher, Stream,
    Topology, new_envelope,
};
use harvest_domain::{Region, Regions, deterministic_id, new_id};
use harvest_proto::events::v1::OrderDelivered;
use harvest_testkit::kafka::Probe;
use harvest_testkit::{Broker, unique_name};
use opentelemetry::trace::TracerProvider as _;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_subscriber::layer::SubscriberExt;

mod batches;
mod contract;
mod outages;
mod secure;

const WAIT: Duration = Duration::from_secs(30);

struct Bus {
    broker: Arc<Broker>,
    config: BusConfig,
    topology: Topology,
    region: Region,
}

impl Bus {
    /// On the run's shared broker.
    async fn start() -> Bus {
        Self::start_on(Broker::shared().expect("the shared broker is up")).await
    }

    async fn start_on(broker: Broker) -> Bus {
        Self::start_with(broker, 2).await
    }

    async fn start_with(broker: Broker, partitions: i32) -> Bus {
        let config = BusConfig {
            brokers: broker.bootstrap(),
            topic_prefix: format!("{}.", unique_name()),
            partitions,
            session_timeout_ms: 6_000,
            handler_backoff_ms: 10,
            ..BusConfig::default()
        };
        Self::over(Arc::new(broker), config).await
    }

    /// On `broker`, reached as `config` says, in region east; its topics
    /// made.
    async fn over(broker: Arc<Broker>, config: BusConfig) -> Bus {
        let regions = Regions::try_from(vec!["east".to_owned()]).expect("valid");
        let topology = Topology::new(&config, regions);
        harvest_bus::admin::ensure_topics(&config, &topology.all_topics())
            .await
            .expect("topics");
        Bus {
            broker,
            config,
            topology,
            region: Region::parse("east").expect("valid"),
        }
    }

    fn publisher(&self, owner: Stream) -> Publisher {
        Publisher::new(&self.config, self.topology.clone(), owner).expect("publisher")
    }

    fn event(&self) -> Envelope {
        self.event_of(
            "delivered",
            Payload::OrderDelivered(OrderDelivered::default()),
        )
    }

    /// An event of a new order in the bus's region, whatever its payload.
    fn event_of(&self, step: &str, payload: Payload) -> Envelope {
        let order_id = new_id("ord");
        new_envelope(
            &deterministic_id("evt", &[order_id.as_str(), step]),
            &order_id,
            &self.region,
            "orders",
            payload,
        )
    }

    /// Runs a catalog-like consumer of the orders stream with `handler`.
    fn consume<H: Handler>(
        &self,
        handler: Arc<H>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let spec = ConsumerSpec {
            service: "catalog",
            region: self.region.clone(),
            streams: vec![Stream::Orders],
        };
        let config = self.config.clone();
        let publisher = self.publisher(Stream::Catalog);
        tokio::spawn(async move {
            consumer::run(&config, publisher, spec, handler, shutdown)
                .await
                .expect("consumer runs");
        })
    }

    /// Publishes a new event on the orders stream and waits until `handler`
    /// has handled it.
    async fn deliver_to(&self, handler: &Flaky) -> Envelope {
        let event = self.event();
        self.publisher(Stream::Orders)
            .publish(event.clone())
            .await
            .expect("published");
        harvest_testkit::eventually(WAIT, || {
            std::future::ready(handler.handled().contains(&event.event_id).then_some(()))
        })
        .await
        .expect("the event is handled");
        event
    }

    fn dead_letters(&self) -> Probe {
        Probe::start(
            &self.broker.bootstrap(),
            &[self.topology.dead_letter_topic("catalog", &self.region)],
        )
        .expect("probe")
    }
}

/// Asks a consumer to stop, and requires it to finish what it has in hand
/// and stop within 20 s.
async fn stop_in_time(shutdown: &CancellationToken, consuming: tokio::task::JoinHandle<()>) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(20), consuming)
        .await
        .expect("the consumer stops in time")
        .expect("cleanly");
}

/// Fails the first `failures` attempts of every event, then records it.
#[derive(Default)]
struct Flaky {
    failures: u32,
    attempts: AtomicU32,
    handled: Mutex<Vec<String>>,
    delay: Duration,
}

#[derive(Debug, thiserror::Error)]
#[error("redis is down (attempt {0})")]
struct Down(u32);

impl Handler for Flaky {
    async fn handle(&self, event: &IncomingEvent) -> Result<(), HandlerError> {
        let attempt = self.attempts.fetch_add(1, Ordering::SeqCst) + 1;
        tokio::time::sleep(self.delay).await;
        if attempt <= self.failures {
            return Err(HandlerError::transient(Down(attempt)));
        }
        self.handled
            .lock()
            .expect("lock")
            .push(event.envelope.event_id.clone());
        Ok(())
    }
}

impl Flaky {
    fn handled(&self) -> Vec<String> {
        self.handled.lock().expect("lock").clone()
    }
}

#[tokio::test]
async fn a_failing_handler_is_retried_until_it_succeeds() {
    let bus = Bus::start().await;
    let handler = Arc::new(Flaky {
        failures: 2,
        ..Flaky::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    let event = bus.event();
    bus.publisher(Stream::Orders)
        .publish(event.clone())
        .await
        .expect("published");

    let handled = harvest_testkit::eventually(WAIT, || {
        let handled = handler.handled();
        std::future::ready((!handled.is_empty()).then_some(handled))
    })
    .await
    .expect("handled after retries");
    assert_eq!(handled, vec![event.event_id]);
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 3);
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

/// Redis failing over or the broker restarting fails a handler for as long
/// as it lasts: the event is retried until it goes through, however many
/// attempts that takes, and is never dead-lettered.
#[tokio::test]
async fn a_transient_failure_is_retried_without_limit_and_never_dead_lettered() {
    let mut bus = Bus::start().await;
    bus.config.handler_backoff_max_ms = 40;
    let dead_letters = bus.dead_letters();
    let handler = Arc::new(Flaky {
        failures: 25,
        ..Flaky::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());

    let event = bus.deliver_to(&handler).await;
    assert_eq!(handler.handled(), vec![event.event_id.clone()]);
    assert_eq!(handler.attempts.load(Ordering::SeqCst), 26);

    // The consumer goes on with the next event, and nothing was
    // dead-lettered on the way.
    let next = bus.deliver_to(&handler).await;
    assert_eq!(handler.handled(), vec![event.event_id, next.event_id]);
    stop_in_time(&shutdown, consuming).await;
    assert!(
        dead_letters.messages().is_empty(),
        "{:?}",
        dead_letters.messages()
    );
}

/// Anyone who can write to a topic can write anything: a payment authorized
/// on the orders stream, an event of another region, or a payload under
/// another type's name is forged or misrouted. Each goes to the dead-letter
/// topic with the reason, the handler never sees it, and the consumer goes
/// on.
#[tokio::test]
async fn events_off_their_owners_stream_are_dead_lettered_unhandled() {
    let bus = Bus::start().await;
    let dead_letters = bus.dead_letters();
    let handler = Arc::new(Flaky::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(handler.clone(), shutdown.clone());
    let orders_topic = bus.topology.topic(Stream::Orders, &bus.region);

    let authorized = bus.event_of("authorized", Payload::PaymentAuthorized(Default::default()));
    let north = Region::parse("north").expect("valid");
    let mut elsewhere = bus.event();
    elsewhere.region = north.to_string();
    let mut mislabelled = bus.event();
    mislabelled.event_type = "harvest.events.v1.OrderPlaced".to_owned();
    let forged = [
        (authorized, "belongs to the payments stream"),
        (elsewhere, "region \"north\""),
        (mislabelled, "event_type says"),
    ];
    for (envelope, _) in &forged {
        harvest_testkit::kafka::send_raw(
            &bus.broker.bootstrap(),
            &orders_topic,
            envelope.order_id.as_bytes(),
            &prost::Message::encode_to_vec(envelope),
            &[("event-type", envelope.event_type.as_str())],
        )
        .await
        .expect("written");
    }
    let genuine = bus.deliver_to(&handler).await;

    let dead = dead_letters
        .wait_for(WAIT, |messages| {
            (messages.len() >= forged.len()).then(|| messages.to_vec())
        })
        .await
        .expect("every forged event is dead-lettered");
    // Keyed by different orders, they may sit on different partitions.
    for (envelope, expected) in &forged {
        let bytes = prost::Message::encode_to_vec(envelope);
        let message = dead
            .iter()
            .find(|message| message.payload == bytes)
            .expect("dead-lettered as it was written");
        let reason = message.header("dead-letter-reason").unwrap_or_default();
        assert!(
            reason.starts_with("untrusted: ") && reason.contains(expected),
            "{reason}"
        );
    }
    assert_eq!(
        handler.handled(),
        vec![genuine.event_id],
        "only the genuine event reached the handler"
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

#[tokio::test]
async fn a_publisher_sends_only_its_own_streams_events() {
    let bus = Bus::start().await;
    let authorized = bus.event_of("authorized", Payload::PaymentAuthorized(Default::default()));
    let refused = bus.publisher(Stream::Orders).publish(authorized).await;
    assert!(
        matches!(
            refused,
            Err(harvest_bus::PublishError::NotOwner {
                owner: Stream::Payments,
                stream: Stream::Orders,
                ..
            })
        ),
        "{refused:?}"
    );

    // Nothing reached the topic: the next event there is the first.
    let probe = Probe::start(
        &bus.broker.bootstrap(),
        &[bus.topology.topic(Stream::Orders, &bus.region)],
    )
    .expect("probe");
    let genuine = bus.event();
    bus.publisher(Stream::Orders)
        .publish(genuine.clone())
        .await
        .expect("published");
    let seen = probe
        .wait_for(WAIT, |messages| {
            let envelopes = harvest_testkit::kafka::envelopes(messages);
            envelopes
                .iter()
                .any(|e| e.event_id == genuine.event_id)
                .then_some(envelopes)
        })
        .await
        .expect("the genuine event arrives");
    assert_eq!(seen.len(), 1, "only the genuine event is on the topic");
}

#[tokio::test]
async fn shutdown_finishes_the_event_in_hand_and_commits_it() {
    let bus = Bus::start().await;
    let slow = Arc::new(Flaky {
        delay: Duration::from_secs(2),
        ..Flaky::default()
    });
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(slow.clone(), shutdown.clone());
    let event = bus.event();
    bus.publisher(Stream::Orders)
        .publish(event.clone())
        .await
        .expect("published");

    // Stop while the handler is busy with the event.
    harvest_testkit::eventually(WAIT, || {
        std::future::ready((slow.attempts.load(Ordering::SeqCst) > 0).then_some(()))
    })
    .await
    .expect("the handler started");
    stop_in_time(&shutdown, consuming).await;
    assert_eq!(
        slow.handled(),
        vec![event.event_id.clone()],
        "finished, not dropped"
    );

    // A new member of the group starts after the committed offset: it never
    // sees the finished event again, only the next one.
    let fresh = Arc::new(Flaky::default());
    let shutdown = CancellationToken::new();
    let consuming = bus.consume(fresh.clone(), shutdown.clone());
    let next = bus.deliver_to(&fresh).await;
    assert_eq!(
        fresh.handled(),
        vec![next.event_id],
        "the committed event is not redelivered"
    );
    shutdown.cancel();
    consuming.await.expect("consumer stops");
}

#[tokio::test]
async fn trace_context_travels_in_headers_and_envelope() {
    let bus = Bus::start().await;
    let probe = Probe::start(
        &bus.broker.bootstrap(),
        &[bus.topology.topic(Stream::Orders, &bus.region)],
    )
    .expect("probe");
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
    let _default = tracing::subscriber::set_default(subscriber);

    let publisher = bus.publisher(Stream::Orders);
    let span = tracing::info_span!("place order");
    let trace_id = {
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.context().span().span_context().trace_id().to_string()
    };
    let event = bus.event();
    publisher
        .publish(event.clone())
        .instrument(span)
        .await
        .expect("published");

    let message = probe
        .wait_for(WAIT, |messages| messages.first().cloned())
        .await
        .expect("message");
    let traceparent = message
        .header("traceparent")
        .expect("traceparent header")
        .to_owned();
    assert!(
        traceparent.starts_with(&format!("00-{trace_id}-")),
        "{traceparent}"
    );
    let envelope: Envelope = prost::Message::decode(message.payload.as_slice()).expect("envelope");
    assert_eq!(envelope.traceparent, traceparent);
    assert_eq!(
        message.header("event-type"),
        Some("harvest.events.v1.OrderDelivered")
    );
}

#[tokio::test]
async fn a_publisher_refuses_regions_outside_the_deployment() {
    let bus = Bus::start().await;
    let mut event = bus.event();
    event.region = "atlantis".to_owned();
    let refused = bus.publisher(Stream::Orders).publish(event).await;
    assert!(
        matches!(refused, Err(harvest_bus::PublishError::UnknownRegion(region)) if region == "atlantis")
    );
}

/// Closing a consumer leaves its group, which waits on the broker. A service
/// stopped after its broker died must still stop: dropping the runtime that
/// runs a consumer returns at once although the group can no longer be left.
#[test]
fn a_consumer_whose_broker_died_does_not_hold_up_its_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let bus = runtime.block_on(async {
        // The broker dies with `bus`: it must be this test's own.
        let bus = Bus::start_on(Broker::private().expect("a private broker starts")).await;
        let handler = Arc::new(Flaky::default());
        let _consuming = bus.consume(handler.clone(), CancellationToken::new());
        // Handling an event means the consumer has joined its group.
        bus.deliver_to(&handler).await;
        bus
    });
    drop(bus);

    let (dropped, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        drop(runtime);
        let _ = dropped.send(());
    });
    // Leaving the group would wait at least the session timeout (6 s here).
    assert!(
        done.recv_timeout(Duration::from_secs(3)).is_ok(),
        "dropping the runtime waited on the dead broker"
    );
}
