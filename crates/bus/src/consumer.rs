//! The at-least-once consumer.
//!
//! One consumer per (service, region), in the region's own consumer group. It
//! hands each partition's events, in order, to a task of that partition, so a
//! slow partition holds up only itself: when a partition's queue is full, its
//! fetching is paused (what already arrived waits beside the queue) and
//! resumed once the queue has drained to half, while every other partition
//! goes on. The task takes what has arrived as a batch (up to
//! `bus.max_batch` events): events the handler does not act on are passed
//! over by their `event-type` header, unread; the others are handled
//! concurrently across orders and in turn within an order, so a slow order
//! holds up only itself. One offset is stored for the batch, and only once
//! every event of it was handled (or went to the dead-letter topic); the
//! client commits stored offsets in the background, when partitions are
//! revoked, and once more at shutdown.
//!
//! A transient failure (Redis or the broker unreachable) is retried without
//! limit, with a capped, jittered backoff: the partition waits, nothing is
//! lost. Only an event that can never succeed (undecodable, forged, or
//! rejected by its handler) goes to the dead-letter topic, with the reason.
//!
//! When the group takes partitions away, their tasks stop before their next
//! event: the event in hand is finished, the queued rest is dropped unhandled
//! and no offset is stored for it, so the new owner starts from the last
//! committed offset and nothing is handled twice by design (idempotent
//! handlers absorb the one event that may be).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use harvest_domain::Region;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
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
    /// Worth trying again (Redis or the broker unreachable, a timeout…):
    /// retried until it succeeds or the partition moves away.
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
        config
            .client_config()
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
            .create_with_context(MemberContext {
                group: group.clone(),
                lanes: Mutex::default(),
                paused: PausedCount {
                    gauge: ::metrics::gauge!(metrics::PARTITIONS_PAUSED, "group" => group.clone()),
                    count: AtomicUsize::new(0),
                },
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
        retries: ::metrics::counter!(metrics::HANDLER_RETRIES, "service" => spec.service),
        streams,
        region: spec.region.clone(),
        consumer: consumer.clone(),
        handler,
        publisher,
        dead_letter_topic: topology.dead_letter_topic(spec.service, &spec.region),
        service: spec.service,
        max_batch: config.max_batch,
        backoff: config.handler_backoff(),
    });
    let mut lanes: HashMap<(String, i32), Lane> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut refill = tokio::time::interval(REFILL_EVERY);
    refill.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let waiting = consumer.context().paused.any();
        let message = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            _ = refill.tick(), if waiting => {
                refill_lanes(&consumer, &mut lanes);
                continue;
            }
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
        let lane = match lanes.get_mut(&key) {
            Some(lane) if !lane.stop.is_revoked() => lane,
            _ => {
                let (sender, receiver) = mpsc::channel(config.partition_queue_depth);
                let stop = Arc::new(LaneStop {
                    token: shutdown.child_token(),
                    revoked: AtomicBool::new(false),
                });
                if let Ok(mut registered) = consumer.context().lanes.lock() {
                    registered.insert(key.clone(), stop.clone());
                }
                tasks.spawn(worker.clone().drain(receiver, stop.clone()));
                let lane = Lane {
                    sender,
                    overflow: VecDeque::new(),
                    paused: false,
                    stop,
                };
                if let Some(old) = lanes.insert(key.clone(), lane) {
                    old.forget(&consumer);
                }
                lanes.get_mut(&key).expect("just inserted")
            }
        };
        lane.push(message, &consumer);
        // Tasks of revoked partitions end by themselves; reap them.
        while tasks.try_join_next().is_some() {}
    }

    for lane in std::mem::take(&mut lanes).into_values() {
        lane.forget(&consumer);
    }
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

type Member = CloseOffThread<StreamConsumer<MemberContext>>;

/// How often partitions paused behind a full queue are looked at.
const REFILL_EVERY: Duration = Duration::from_millis(10);

/// One partition's way to its task.
struct Lane {
    sender: mpsc::Sender<OwnedMessage>,
    /// Events that arrived while the queue was full, in order: the partition
    /// is paused until they are in the queue and it has room again.
    overflow: VecDeque<OwnedMessage>,
    paused: bool,
    stop: Arc<LaneStop>,
}

/// Stops one partition's task: at shutdown, or when the partition is revoked.
struct LaneStop {
    /// A child of the consumer's shutdown token.
    token: CancellationToken,
    revoked: AtomicBool,
}

impl LaneStop {
    fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
        self.token.cancel();
    }

    fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::SeqCst)
    }
}

impl Lane {
    /// Queues `message` for the partition's task, or sets it aside and
    /// pauses the partition when the queue is full.
    fn push(&mut self, message: OwnedMessage, consumer: &Member) {
        if self.overflow.is_empty() {
            match self.sender.try_send(message) {
                Ok(()) => return,
                Err(TrySendError::Full(message)) => self.overflow.push_back(message),
                Err(TrySendError::Closed(_)) => return,
            }
        } else {
            self.overflow.push_back(message);
        }
        if !self.paused {
            let front = self.overflow.front().expect("just pushed");
            if pause_partition(consumer, front.topic(), front.partition(), true) {
                self.paused = true;
                consumer.context().paused.add();
            }
        }
    }

    /// Moves what waits beside the queue into it; resumes the partition once
    /// all of it is queued and the queue is at most half full.
    fn refill(&mut self, consumer: &Member, topic: &str, partition: i32) {
        while let Some(message) = self.overflow.pop_front() {
            match self.sender.try_send(message) {
                Ok(()) => {}
                Err(TrySendError::Full(message)) => {
                    self.overflow.push_front(message);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.overflow.clear();
                    break;
                }
            }
        }
        let half_free = self.sender.capacity() * 2 >= self.sender.max_capacity();
        if self.paused && half_free && pause_partition(consumer, topic, partition, false) {
            self.paused = false;
            consumer.context().paused.remove();
        }
    }

    /// Lets the lane go: its task ends once the queue is empty (or at once,
    /// when revoked), and the partition is no longer counted as paused.
    fn forget(self, consumer: &Member) {
        if self.paused {
            consumer.context().paused.remove();
        }
    }
}

fn refill_lanes(consumer: &Member, lanes: &mut HashMap<(String, i32), Lane>) {
    lanes.retain(|(topic, partition), lane| {
        if lane.stop.is_revoked() {
            // Whoever owns the partition now reads it from its last commit.
            if lane.paused {
                consumer.context().paused.remove();
            }
            return false;
        }
        if lane.paused {
            lane.refill(consumer, topic, *partition);
        }
        true
    });
}

/// Pauses (or resumes) fetching one partition; false when the client
/// refused, which it does for a partition no longer assigned.
fn pause_partition(consumer: &Member, topic: &str, partition: i32, pause: bool) -> bool {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, partition);
    let done = if pause {
        consumer.pause(&list)
    } else {
        consumer.resume(&list)
    };
    match done {
        Ok(()) => {
            tracing::debug!(topic, partition, pause, "partition fetching switched");
            true
        }
        Err(error) => {
            tracing::debug!(topic, partition, pause, error.cause_chain = ?error, "could not switch partition fetching");
            false
        }
    }
}

struct Worker<H> {
    /// Events handled, by topic and outcome: registered once, since this
    /// runs for every event.
    counters: HashMap<String, OutcomeCounters>,
    handler_seconds: ::metrics::Histogram,
    retries: ::metrics::Counter,
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
    backoff: ExponentialBuilder,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Handled,
    /// Of a type the handler does not act on.
    Skipped,
    DeadLettered,
    /// Shutdown or revocation came first; the event will be delivered again.
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
    async fn drain(
        self: Arc<Self>,
        mut receiver: mpsc::Receiver<OwnedMessage>,
        stop: Arc<LaneStop>,
    ) {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            batch.clear();
            let received = tokio::select! {
                biased;
                () = stop.token.cancelled() => 0,
                received = receiver.recv_many(&mut batch, self.max_batch) => received,
            };
            if received == 0 || stop.token.is_cancelled() {
                return;
            }
            let done = self.process_batch(&batch, &stop.token).await;
            // A revoked partition's offsets are its new owner's to store.
            if let Some(last) = done.checked_sub(1).map(|index| &batch[index])
                && !stop.is_revoked()
            {
                self.store_offset(last);
            }
            if done < batch.len() {
                // Shutdown or revocation came in the middle: the rest is
                // delivered again.
                return;
            }
        }
    }

    /// Handles a batch of one partition's events: each order's events in
    /// turn, different orders concurrently. Returns how many events from the
    /// start of the batch are done, so that an offset never passes an event
    /// that is not.
    async fn process_batch(&self, batch: &[OwnedMessage], stop: &CancellationToken) -> usize {
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
                if stop.is_cancelled() {
                    results.push((index, Outcome::Abandoned));
                    break;
                }
                let started = Instant::now();
                let outcome = self.process(&batch[index], stop).await;
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

    async fn process(&self, message: &OwnedMessage, stop: &CancellationToken) -> Outcome {
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
                        .dead_letter(message, &format!("undecodable: {error}"), 0, stop)
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
                    .dead_letter(message, &format!("untrusted: {reason}"), 0, stop)
                    .await;
            }
            let event = IncomingEvent {
                envelope,
                topic: topic.to_owned(),
                partition: message.partition(),
                offset: message.offset(),
            };
            self.handle_with_retries(message, &event, stop).await
        }
        .instrument(span)
        .await
    }

    /// Handles `event` until it is done: a transient failure is retried
    /// after a growing, jittered wait, for as long as it takes; a rejection
    /// sends the event to the dead-letter topic.
    async fn handle_with_retries(
        &self,
        message: &OwnedMessage,
        event: &IncomingEvent,
        stop: &CancellationToken,
    ) -> Outcome {
        let mut waits = self.backoff.build();
        let mut attempt: u32 = 0;
        loop {
            attempt = attempt.saturating_add(1);
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
                        .dead_letter(message, &format!("rejected: {reason}"), attempt, stop)
                        .await;
                }
                Err(HandlerError::Transient(error)) => error,
            };
            // The builder sets no limit of attempts: there is always a wait.
            let wait = waits.next().unwrap_or(Duration::from_secs(1));
            tracing::warn!(
                topic = %event.topic,
                partition = event.partition,
                offset = event.offset,
                attempt,
                retry_in_ms = wait.as_millis() as u64,
                error.cause_chain = ?error,
                "handler failed; retrying",
            );
            self.retries.increment(1);
            tokio::select! {
                () = stop.cancelled() => return Outcome::Abandoned,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Writes the original key, bytes and headers to the dead-letter topic with
    /// the reason. Keeps trying until the broker takes it or shutdown comes:
    /// an event is never skipped without a trace.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
        attempts: u32,
        stop: &CancellationToken,
    ) -> Outcome {
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
                () = stop.cancelled() => return Outcome::Abandoned,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }
}

/// A group member's context: publishes each topic's consumer lag from the
/// client's statistics, and stops the tasks of partitions the group takes
/// away.
struct MemberContext {
    group: String,
    /// The stop handle of each partition this member runs a task for.
    lanes: Mutex<HashMap<(String, i32), Arc<LaneStop>>>,
    /// Partitions paused behind a full queue.
    paused: PausedCount,
}

/// How many partitions are paused: kept for the poll loop (which looks
/// after them only while there are some) and published as a gauge.
struct PausedCount {
    gauge: ::metrics::Gauge,
    count: AtomicUsize,
}

impl PausedCount {
    fn add(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
        self.gauge.increment(1);
    }

    fn remove(&self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        self.gauge.decrement(1);
    }

    fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }
}

impl ClientContext for MemberContext {
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

impl ConsumerContext for MemberContext {
    /// Runs before the revoked partitions' offsets are committed: their
    /// tasks store nothing from here on and stop before their next event.
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(revoked) = rebalance else {
            return;
        };
        // Runs inside the client's callback: never panic here.
        let Ok(mut lanes) = self.lanes.lock() else {
            return;
        };
        for element in revoked.elements() {
            if let Some(stop) = lanes.remove(&(element.topic().to_owned(), element.partition())) {
                stop.revoke();
            }
        }
        tracing::info!(group = %self.group, partitions = revoked.count(), "partitions revoked");
    }

    /// A partition paused before it was revoked comes back unpaused.
    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Assign(assigned) = rebalance else {
            return;
        };
        if assigned.count() > 0
            && let Err(error) = consumer.resume(assigned)
        {
            tracing::debug!(group = %self.group, error.cause_chain = ?error, "could not resume assigned partitions");
        }
        tracing::info!(group = %self.group, partitions = assigned.count(), "partitions assigned");
    }
}
