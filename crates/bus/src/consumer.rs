//! The at-least-once consumer.
//!
//! One consumer per (service, region), in the region's own consumer group. It
//! hands each partition's events, in order, to a task of that partition, so a
//! slow partition holds up only itself. The task takes what has arrived as a
//! batch (up to `bus.max_batch` events): events the handler does not act on
//! are passed over by their `event-type` header, unread; the others are
//! handled concurrently across orders and in turn within an order, so a slow
//! order holds up only itself. One offset is stored for the batch, and only
//! once every event of it was handled (or went to the dead-letter topic); the
//! client commits stored offsets in the background and once more at shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harvest_domain::Region;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, ClientContext};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, field};

use crate::topology::Stream;
use crate::{BusConfig, CloseOffThread, Envelope, Publisher, event, metrics, trace};

/// An event as a handler sees it, with where it came from.
#[derive(Clone, Debug)]
pub struct IncomingEvent {
    pub envelope: Envelope,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// Why a handler did not finish an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth trying again (Redis or the broker unreachable, a timeout…).
    #[error("transient failure")]
    Transient(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Will never succeed (a payload that breaks the contract): goes straight
    /// to the dead-letter topic.
    #[error("event rejected: {0}")]
    Rejected(String),
}

impl HandlerError {
    pub fn transient(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        HandlerError::Transient(Box::new(error))
    }
}

/// Reacts to events. Must be idempotent: an event may arrive more than once.
/// Events of different orders may be handled concurrently; those of one order
/// arrive in turn.
pub trait Handler: Send + Sync + 'static {
    /// Whether the handler acts on events of this type (an envelope's
    /// `event_type`, also carried in the `event-type` header). Events it does
    /// not want are passed over before they are decoded.
    fn wants(&self, _event_type: &str) -> bool {
        true
    }

    fn handle(
        &self,
        event: &IncomingEvent,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// What one consumer reads.
#[derive(Clone, Debug)]
pub struct ConsumerSpec {
    /// The consuming service; names the group and the dead-letter topic.
    pub service: &'static str,
    pub region: Region,
    pub streams: Vec<Stream>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("could not create the Kafka consumer for group {group}")]
    Create {
        group: String,
        #[source]
        source: KafkaError,
    },
    #[error("could not subscribe group {group} to {topics:?}")]
    Subscribe {
        group: String,
        topics: Vec<String>,
        #[source]
        source: KafkaError,
    },
}

/// Consumes until `shutdown` is cancelled, then finishes the events in hand,
/// commits and returns.
pub async fn run<H: Handler>(
    config: &BusConfig,
    publisher: Publisher,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let topology = publisher.topology().clone();
    let group = topology.consumer_group(spec.service, &spec.region);
    let topics: Vec<String> = spec
        .streams
        .iter()
        .map(|stream| topology.topic(*stream, &spec.region))
        .collect();
    let (member, closed): (Member, _) = CloseOffThread::with_notice(
        ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("socket.nagle.disable", "true")
            .set("group.id", &group)
            .set(
                "client.id",
                format!("harvest-{}-{}", spec.service, spec.region),
            )
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout_ms.to_string())
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout_ms / 4).max(100).to_string(),
            )
            .set("statistics.interval.ms", "5000")
            .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
            .set("fetch.min.bytes", config.fetch_min_bytes.to_string())
            .create_with_context(LagReporter {
                group: group.clone(),
            })
            .map_err(|source| ConsumerError::Create {
                group: group.clone(),
                source,
            })?,
    );
    let consumer = Arc::new(member);
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topic_refs)
        .map_err(|source| ConsumerError::Subscribe {
            group: group.clone(),
            topics: topics.clone(),
            source,
        })?;
    tracing::info!(%group, ?topics, "consumer started");

    let streams = spec
        .streams
        .iter()
        .map(|stream| (topology.topic(*stream, &spec.region), *stream))
        .collect();
    let counters = topics
        .iter()
        .map(|topic| (topic.clone(), OutcomeCounters::new(spec.service, topic)))
        .collect();
    let worker = Arc::new(Worker {
        counters,
        handler_seconds: ::metrics::histogram!(metrics::HANDLER_SECONDS, "service" => spec.service),
        streams,
        region: spec.region.clone(),
        consumer: consumer.clone(),
        handler,
        publisher,
        dead_letter_topic: topology.dead_letter_topic(spec.service, &spec.region),
        service: spec.service,
        max_batch: config.max_batch,
        max_attempts: config.handler_max_attempts,
        first_backoff: Duration::from_millis(config.handler_backoff_ms),
        shutdown: shutdown.clone(),
    });
    let mut partitions: HashMap<(String, i32), mpsc::Sender<OwnedMessage>> = HashMap::new();
    let mut tasks = JoinSet::new();

    loop {
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            received = consumer.recv() => match received {
                Ok(message) => message.detach(),
                Err(error) => {
                    tracing::warn!(%group, error.cause_chain = ?error, "consumer poll failed");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            },
        };
        let key = (message.topic().to_owned(), message.partition());
        let sender = partitions.entry(key).or_insert_with(|| {
            let (sender, receiver) = mpsc::channel(config.partition_queue_depth);
            tasks.spawn(worker.clone().drain(receiver));
            sender
        });
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            sent = sender.send(message) => {
                if sent.is_err() {
                    tracing::error!(%group, "partition task ended early");
                }
            }
        }
    }

    drop(partitions);
    while tasks.join_next().await.is_some() {}
    // Committing and leaving the group wait on the broker: keep that off the
    // async workers.
    let closing = consumer.clone();
    let committed = tokio::task::spawn_blocking(move || {
        let committed = closing.commit_consumer_state(CommitMode::Sync);
        closing.unsubscribe();
        committed
    })
    .await;
    match committed {
        Ok(Ok(())) => {}
        // Nothing stored since the last commit.
        Ok(Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset))) => {}
        Ok(Err(error)) => tracing::warn!(%group, error.cause_chain = ?error, "final commit failed"),
        Err(error) => {
            tracing::warn!(%group, error.cause_chain = ?error, "final commit did not run")
        }
    }
    // Leave the group, so that the others take over its partitions at once,
    // but do not wait on a broker that is gone for longer than it would take
    // the group to notice by itself.
    drop(worker);
    drop(consumer);
    let leave_wait = Duration::from_millis(config.session_timeout_ms.into());
    if tokio::time::timeout(leave_wait, closed).await.is_err() {
        tracing::warn!(%group, "left the group without the broker's answer");
    }
    tracing::info!(%group, "consumer stopped");
    Ok(())
}

type Member = CloseOffThread<StreamConsumer<LagReporter>>;

struct Worker<H> {
    /// Events handled, by topic and outcome: registered once, since this
    /// runs for every event.
    counters: HashMap<String, OutcomeCounters>,
    handler_seconds: ::metrics::Histogram,
    /// The stream each subscribed topic carries: an event is trusted only on
    /// its owner's stream.
    streams: HashMap<String, Stream>,
    region: Region,
    consumer: Arc<Member>,
    handler: Arc<H>,
    publisher: Publisher,
    dead_letter_topic: String,
    service: &'static str,
    max_batch: usize,
    max_attempts: u32,
    first_backoff: Duration,
    shutdown: CancellationToken,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Handled,
    /// Of a type the handler does not act on.
    Skipped,
    DeadLettered,
    /// Shutdown came first; the event will be delivered again.
    Abandoned,
}

/// The events-handled counters of one topic, one per outcome that counts.
struct OutcomeCounters {
    handled: ::metrics::Counter,
    skipped: ::metrics::Counter,
    dead_lettered: ::metrics::Counter,
}

impl OutcomeCounters {
    fn new(service: &'static str, topic: &str) -> Self {
        let counter = |outcome: &'static str| {
            ::metrics::counter!(
                metrics::EVENTS_HANDLED,
                "service" => service,
                "topic" => topic.to_owned(),
                "outcome" => outcome,
            )
        };
        OutcomeCounters {
            handled: counter("ok"),
            skipped: counter("skipped"),
            dead_lettered: counter("dead_letter"),
        }
    }

    fn of(&self, outcome: Outcome) -> Option<&::metrics::Counter> {
        match outcome {
            Outcome::Handled => Some(&self.handled),
            Outcome::Skipped => Some(&self.skipped),
            Outcome::DeadLettered => Some(&self.dead_lettered),
            Outcome::Abandoned => None,
        }
    }
}

impl<H: Handler> Worker<H> {
    async fn drain(self: Arc<Self>, mut receiver: mpsc::Receiver<OwnedMessage>) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            batch.clear();
            if receiver.recv_many(&mut batch, self.max_batch).await == 0 {
                return;
            }
            if self.shutdown.is_cancelled() {
                return;
            }
            let done = self.process_batch(&batch).await;
            if let Some(last) = done.checked_sub(1).map(|index| &batch[index]) {
                self.store_offset(last);
            }
            if done < batch.len() {
                // Shutdown came in the middle: the rest is delivered again.
                return;
            }
        }
    }

    /// Handles a batch of one partition's events: each order's events in
    /// turn, different orders concurrently. Returns how many events from the
    /// start of the batch are done, so that an offset never passes an event
    /// that is not.
    async fn process_batch(&self, batch: &[OwnedMessage]) -> usize {
        let mut by_order: Vec<(Option<&[u8]>, Vec<usize>)> = Vec::new();
        for (index, message) in batch.iter().enumerate() {
            let key = message.key();
            match by_order.iter_mut().find(|(known, _)| *known == key) {
                Some((_, indices)) => indices.push(index),
                None => by_order.push((key, vec![index])),
            }
        }
        let mut outcomes = vec![Outcome::Abandoned; batch.len()];
        let handled = futures::future::join_all(by_order.iter().map(|(_, indices)| async move {
            let mut results = Vec::with_capacity(indices.len());
            for &index in indices {
                // The event in hand is finished; the next waits for whoever
                // takes the partition over.
                if self.shutdown.is_cancelled() {
                    results.push((index, Outcome::Abandoned));
                    break;
                }
                let started = Instant::now();
                let outcome = self.process(&batch[index]).await;
                results.push((index, outcome));
                if outcome == Outcome::Abandoned {
                    break;
                }
                self.count(&batch[index], outcome, started);
            }
            results
        }))
        .await;
        for (index, outcome) in handled.into_iter().flatten() {
            outcomes[index] = outcome;
        }
        outcomes
            .iter()
            .position(|outcome| *outcome == Outcome::Abandoned)
            .unwrap_or(batch.len())
    }

    fn store_offset(&self, message: &OwnedMessage) {
        if let Err(error) =
            self.consumer
                .store_offset(message.topic(), message.partition(), message.offset())
        {
            // The partition moved to another member; it will see the events
            // again and the handler's idempotence absorbs them.
            tracing::debug!(
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                error.cause_chain = ?error,
                "could not store offset",
            );
        }
    }

    fn count(&self, message: &OwnedMessage, outcome: Outcome, started: Instant) {
        if let Some(counter) = self
            .counters
            .get(message.topic())
            .and_then(|counters| counters.of(outcome))
        {
            counter.increment(1);
        }
        if outcome != Outcome::Skipped {
            self.handler_seconds.record(started.elapsed().as_secs_f64());
        }
    }

    /// The event type a message declares in its header, when it declares one.
    fn declared_type(message: &OwnedMessage) -> Option<&str> {
        message
            .headers()?
            .iter()
            .find(|header| header.key == "event-type")
            .and_then(|header| header.value)
            .and_then(|value| std::str::from_utf8(value).ok())
    }

    async fn process(&self, message: &OwnedMessage) -> Outcome {
        if Self::declared_type(message).is_some_and(|declared| !self.handler.wants(declared)) {
            return Outcome::Skipped;
        }
        let topic = message.topic();
        let span = tracing::info_span!(
            "process",
            otel.name = format!("{topic} process"),
            otel.kind = "consumer",
            messaging.system = "kafka",
            messaging.operation.type = "process",
            messaging.destination.name = %topic,
            messaging.consumer.group.name = self.service,
            messaging.destination.partition.id = message.partition(),
            messaging.kafka.offset = message.offset(),
            messaging.message.id = field::Empty,
            event_type = field::Empty,
            order_id = field::Empty,
        );
        trace::set_parent_from_headers(&span, message.headers().map(|h| h.as_borrowed()));
        async {
            let envelope = match event::decode(message.payload().unwrap_or_default()) {
                Ok(envelope) => envelope,
                Err(error) => {
                    tracing::warn!(
                        topic,
                        partition = message.partition(),
                        offset = message.offset(),
                        error.cause_chain = ?error,
                        "undecodable event",
                    );
                    return self
                        .dead_letter(message, &format!("undecodable: {error}"), 0)
                        .await;
                }
            };
            let span = tracing::Span::current();
            span.record("messaging.message.id", envelope.event_id.as_str());
            span.record("event_type", envelope.event_type.as_str());
            span.record("order_id", envelope.order_id.as_str());
            let untrusted = match self.streams.get(topic) {
                Some(stream) => event::untrusted(&envelope, *stream, &self.region),
                None => Some(format!("{topic} is not a topic this consumer reads")),
            };
            if let Some(reason) = untrusted {
                tracing::warn!(
                    topic,
                    partition = message.partition(),
                    offset = message.offset(),
                    %reason,
                    "untrusted event",
                );
                return self
                    .dead_letter(message, &format!("untrusted: {reason}"), 0)
                    .await;
            }
            let event = IncomingEvent {
                envelope,
                topic: topic.to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            };
            self.handle_with_retries(message, &event).await
        }
        .instrument(span)
        .await
    }

    async fn handle_with_retries(&self, message: &OwnedMessage, event: &IncomingEvent) -> Outcome {
        let mut backoff = self.first_backoff;
        for attempt in 1..=self.max_attempts {
            let error = match self.handler.handle(event).await {
                Ok(()) => return Outcome::Handled,
                Err(HandlerError::Rejected(reason)) => {
                    tracing::warn!(
                        topic = %event.topic,
                        partition = event.partition,
                        offset = event.offset,
                        %reason,
                        "event rejected by handler",
                    );
                    return self
                        .dead_letter(message, &format!("rejected: {reason}"), attempt)
                        .await;
                }
                Err(HandlerError::Transient(error)) => error,
            };
            tracing::warn!(
                topic = %event.topic,
                partition = event.partition,
                offset = event.offset,
                attempt,
                max_attempts = self.max_attempts,
                error.cause_chain = ?error,
                "handler failed",
            );
            if attempt == self.max_attempts {
                let reason = format!(
                    "failed {attempt} times, last: {}",
                    harvest_domain::cause_chain(&*error)
                );
                return self.dead_letter(message, &reason, attempt).await;
            }
            ::metrics::counter!(metrics::HANDLER_RETRIES, "service" => self.service).increment(1);
            tokio::select! {
                () = self.shutdown.cancelled() => return Outcome::Abandoned,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        Outcome::Abandoned
    }

    /// Writes the original key, bytes and headers to the dead-letter topic with
    /// the reason. Keeps trying until the broker takes it or shutdown comes:
    /// an event is never skipped without a trace.
    async fn dead_letter(&self, message: &OwnedMessage, reason: &str, attempts: u32) -> Outcome {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut headers = OwnedHeaders::new();
            if let Some(original) = message.headers() {
                for header in original.iter() {
                    headers = headers.insert(header);
                }
            }
            let partition = message.partition().to_string();
            let offset = message.offset().to_string();
            let attempts = attempts.to_string();
            for (key, value) in [
                ("dead-letter-reason", reason),
                ("dead-letter-service", self.service),
                ("dead-letter-original-topic", message.topic()),
                ("dead-letter-original-partition", partition.as_str()),
                ("dead-letter-original-offset", offset.as_str()),
                ("dead-letter-attempts", attempts.as_str()),
            ] {
                headers = headers.insert(Header {
                    key,
                    value: Some(value.as_bytes()),
                });
            }
            let sent = self
                .publisher
                .send(
                    &self.dead_letter_topic,
                    message.key().unwrap_or_default(),
                    message.payload().unwrap_or_default(),
                    headers,
                )
                .await;
            match sent {
                Ok(_) => {
                    tracing::warn!(
                        topic = message.topic(),
                        partition = message.partition(),
                        offset = message.offset(),
                        dead_letter_topic = %self.dead_letter_topic,
                        %reason,
                        "event sent to dead-letter topic",
                    );
                    return Outcome::DeadLettered;
                }
                Err(error) => {
                    tracing::error!(
                        dead_letter_topic = %self.dead_letter_topic,
                        error.cause_chain = ?error,
                        "could not write dead letter; retrying",
                    );
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return Outcome::Abandoned,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// Publishes each topic's consumer lag from the client's statistics.
struct LagReporter {
    group: String,
}

impl ClientContext for LagReporter {
    fn stats(&self, statistics: Statistics) {
        for (name, topic) in statistics.topics {
            let lag: i64 = topic
                .partitions
                .values()
                .filter(|partition| partition.partition >= 0 && partition.consumer_lag >= 0)
                .map(|partition| partition.consumer_lag)
                .sum();
            ::metrics::gauge!(metrics::CONSUMER_LAG, "group" => self.group.clone(), "topic" => name)
                .set(lag as f64);
        }
    }
}

impl ConsumerContext for LagReporter {}
