//! The idempotent producer.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use harvest_domain::Region;
use prost::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use tracing::Instrument;

use crate::topology::{PartnerId, Stream, Topology};
use crate::{BusConfig, Envelope, metrics, trace};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("could not create the Kafka producer")]
    Create(#[source] KafkaError),
    #[error("event for region {0:?}, which is not a region of this deployment")]
    UnknownRegion(String),
    #[error(
        "{event_type} belongs to the {owner} stream; this publisher writes only the {stream} stream"
    )]
    NotOwner {
        event_type: String,
        owner: Stream,
        stream: Stream,
    },
    #[error("the broker did not acknowledge the event on {topic}")]
    NotAcknowledged {
        topic: String,
        #[source]
        source: KafkaError,
    },
}

/// Where the broker stored an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Publishes events to the stream of the service that owns it. Cheap to clone.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Inner>,
}

struct Inner {
    producer: FutureProducer,
    topology: Topology,
    owner: Stream,
    timeout: Duration,
    /// Events published, by topic: registered once per topic, since this
    /// runs for every event.
    published: RwLock<HashMap<String, ::metrics::Counter>>,
    publish_seconds: ::metrics::Histogram,
}

impl Publisher {
    /// A publisher that writes `owner`'s stream (and its dead-letter topics).
    pub fn new(
        config: &BusConfig,
        topology: Topology,
        owner: Stream,
    ) -> Result<Self, PublishError> {
        let producer: FutureProducer = config
            .client_config()
            // Small requests must not wait for the broker's delayed ACKs.
            .set("socket.nagle.disable", "true")
            .set("client.id", format!("harvest-{}", owner.name()))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger_ms.to_string())
            .set("message.timeout.ms", config.publish_timeout_ms.to_string())
            .create()
            .map_err(PublishError::Create)?;
        Ok(Publisher {
            inner: Arc::new(Inner {
                producer,
                topology,
                owner,
                timeout: config.publish_timeout(),
                published: RwLock::default(),
                publish_seconds: ::metrics::histogram!(metrics::PUBLISH_SECONDS),
            }),
        })
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    pub fn owner(&self) -> Stream {
        self.inner.owner
    }

    /// Publishes `envelope` to its region's topic of the owner's stream, keyed
    /// by order id, with the current trace context. Resolves once the broker
    /// has acknowledged it.
    pub async fn publish(&self, envelope: Envelope) -> Result<Published, PublishError> {
        let region = Region::parse(&envelope.region)
            .ok()
            .filter(|region| self.inner.topology.regions().contains(region))
            .ok_or_else(|| PublishError::UnknownRegion(envelope.region.clone()))?;
        self.check_owner(&envelope, self.inner.owner)?;
        let topic = self.inner.topology.topic(self.inner.owner, &region);
        self.publish_on(topic, None, envelope).await
    }

    /// Publishes `envelope`, a delivery event, to the topic of the courier
    /// partner whose courier it concerns; only the delivery stream's
    /// publisher may. Keyed and traced like [`Publisher::publish`].
    pub async fn publish_for_partner(
        &self,
        partner: &PartnerId,
        envelope: Envelope,
    ) -> Result<Published, PublishError> {
        self.check_owner(&envelope, Stream::Delivery)?;
        let topic = self.inner.topology.partner_topic(partner);
        let label = self.inner.topology.partner_topics_label();
        self.publish_on(topic, Some(label), envelope).await
    }

    /// Refuses an event of another stream than `stream`, or a publisher that
    /// does not write `stream`.
    fn check_owner(&self, envelope: &Envelope, stream: Stream) -> Result<(), PublishError> {
        let Some(payload) = &envelope.payload else {
            return Ok(());
        };
        let owner = crate::event::owning_stream(payload);
        if owner != self.inner.owner || owner != stream {
            return Err(PublishError::NotOwner {
                event_type: crate::event::event_type(payload).to_owned(),
                owner,
                stream: self.inner.owner,
            });
        }
        Ok(())
    }

    /// Publishes to `topic`, counted under `label` (the topic itself when
    /// `None`).
    async fn publish_on(
        &self,
        topic: String,
        label: Option<String>,
        mut envelope: Envelope,
    ) -> Result<Published, PublishError> {
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("{topic} publish"),
            otel.kind = "producer",
            messaging.system = "kafka",
            messaging.operation.type = "send",
            messaging.destination.name = %topic,
            messaging.message.id = %envelope.event_id,
            event_type = %envelope.event_type,
            order_id = %envelope.order_id,
        );
        async {
            let context = trace::current_context_fields();
            for (key, value) in &context {
                match key.as_str() {
                    "traceparent" => envelope.traceparent.clone_from(value),
                    "tracestate" => envelope.tracestate.clone_from(value),
                    _ => {}
                }
            }
            let headers = trace::add_headers(OwnedHeaders::new(), &context)
                .insert(Header {
                    key: "event-type",
                    value: Some(envelope.event_type.as_bytes()),
                })
                .insert(Header {
                    key: "event-id",
                    value: Some(envelope.event_id.as_bytes()),
                });
            let payload = envelope.encode_to_vec();
            self.send_counted(
                &topic,
                label.as_deref().unwrap_or(&topic),
                envelope.order_id.as_bytes(),
                &payload,
                headers,
            )
            .await
        }
        .instrument(span)
        .await
    }

    /// Writes bytes as they are to `topic`: for dead letters, which keep the
    /// original message.
    pub(crate) async fn send(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Published, PublishError> {
        self.send_counted(topic, topic, key, payload, headers).await
    }

    async fn send_counted(
        &self,
        topic: &str,
        label: &str,
        key: &[u8],
        payload: &[u8],
        headers: OwnedHeaders,
    ) -> Result<Published, PublishError> {
        let started = Instant::now();
        let record = FutureRecord::to(topic)
            .key(key)
            .payload(payload)
            .headers(headers);
        let result = self.inner.producer.send(record, self.inner.timeout).await;
        self.inner
            .publish_seconds
            .record(started.elapsed().as_secs_f64());
        match result {
            Ok(delivery) => {
                self.count_published(label);
                Ok(Published {
                    topic: topic.to_owned(),
                    partition: delivery.partition,
                    offset: delivery.offset,
                })
            }
            Err((source, _message)) => Err(PublishError::NotAcknowledged {
                topic: topic.to_owned(),
                source,
            }),
        }
    }

    fn count_published(&self, topic: &str) {
        if let Ok(known) = self.inner.published.read()
            && let Some(counter) = known.get(topic)
        {
            counter.increment(1);
            return;
        }
        if let Ok(mut known) = self.inner.published.write() {
            known
                .entry(topic.to_owned())
                .or_insert_with(
                    || ::metrics::counter!(metrics::EVENTS_PUBLISHED, "topic" => topic.to_owned()),
                )
                .increment(1);
        }
    }

    /// Whether a broker answers a metadata request within `timeout`. Blocks
    /// the calling thread.
    pub fn broker_answers(&self, timeout: Duration) -> bool {
        self.inner
            .producer
            .client()
            .fetch_metadata(None, timeout)
            .is_ok()
    }

    /// Waits up to `timeout` for events still in the producer's queue.
    pub fn flush(&self, timeout: Duration) {
        if let Err(error) = self.inner.producer.flush(timeout) {
            tracing::warn!(error.cause_chain = ?error, "producer flush did not finish");
        }
    }
}
