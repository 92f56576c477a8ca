//! A courier system's consumer of Harvest delivery events: reads its courier
//! partner's topic (`--partner`), or one region's delivery topic, in its own
//! consumer group and prints every event.
//!
//! ```text
//! cargo run -p harvest-delivery --example courier_consumer -- --brokers 127.0.0.1:9092 --partner partner-demo
//! cargo run -p harvest-delivery --example courier_consumer -- --brokers 127.0.0.1:9092 --region east
//! ```
//!
//! It does what any courier system must do, in whatever language: decode the
//! protobuf `Envelope` from `proto/harvest/events/v1/envelope.proto`, drop
//! events whose `event_id` it has already handled (delivery is at least
//! once), and commit an offset only after the event is handled.

use std::collections::{HashSet, VecDeque};

use anyhow::Context;
use clap::Parser;
use harvest_proto::events::v1::Envelope;
use harvest_proto::events::v1::envelope::Payload;
use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::Message;

#[derive(Parser)]
struct Args {
    /// Comma-separated Kafka bootstrap servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// The courier partner whose own topic to read, `harvest.partner.<id>`:
    /// the events of the shipments its couriers carry, in every region.
    #[arg(long, conflicts_with = "region")]
    partner: Option<String>,
    /// The region whose delivery events to read (all shipments of the
    /// region), when no partner is given.
    #[arg(long, default_value = "east")]
    region: String,
    /// Prefix of the deployment's topic names, if it has one.
    #[arg(long, default_value = "")]
    topic_prefix: String,
    /// The consumer group: one per courier system, so each gets every event.
    #[arg(long, default_value = "courier-example")]
    group: String,
}

/// Remembers the last event ids seen, to drop redelivered events.
struct SeenEvents {
    ids: HashSet<String>,
    order: VecDeque<String>,
    capacity: usize,
}

impl SeenEvents {
    fn new(capacity: usize) -> Self {
        SeenEvents {
            ids: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// True the first time an id is seen.
    fn first_time(&mut self, event_id: &str) -> bool {
        if !self.ids.insert(event_id.to_owned()) {
            return false;
        }
        self.order.push_back(event_id.to_owned());
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        true
    }
}

fn describe(payload: &Payload) -> String {
    match payload {
        Payload::ShipmentCreated(created) => format!(
            "shipment {} created at {} ({} lines, cold chain: {})",
            created.shipment_id,
            created
                .pickup_point
                .as_ref()
                .map_or("?", |point| point.name.as_str()),
            created.lines.len(),
            created.cold_chain,
        ),
        Payload::CourierAssigned(assigned) => format!(
            "shipment {} assigned to courier {} ({} m away)",
            assigned.shipment_id, assigned.courier_id, assigned.distance_meters,
        ),
        Payload::ShipmentPickedUp(picked_up) => format!(
            "shipment {} picked up by courier {}",
            picked_up.shipment_id, picked_up.courier_id,
        ),
        Payload::ShipmentDelivered(delivered) => format!(
            "shipment {} delivered by courier {} to {}",
            delivered.shipment_id, delivered.courier_id, delivered.recipient_name,
        ),
        Payload::ShipmentFailed(failed) => format!(
            "shipment {} failed ({}): {}",
            failed.shipment_id,
            failed.reason().as_str_name(),
            failed.detail,
        ),
        Payload::ShipmentWithdrawn(withdrawn) => {
            format!("shipment {} withdrawn", withdrawn.shipment_id)
        }
        Payload::CourierReleased(released) => format!(
            "shipment {} taken back from courier {} ({})",
            released.shipment_id,
            released.courier_id,
            released.reason().as_str_name(),
        ),
        Payload::ShipmentOverdue(overdue) => format!(
            "shipment {} overdue with courier {}",
            overdue.shipment_id, overdue.courier_id,
        ),
        other => format!("{other:?}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let topic = match &args.partner {
        Some(partner) => format!("{}harvest.partner.{partner}", args.topic_prefix),
        None => format!("{}harvest.delivery.{}", args.topic_prefix, args.region),
    };
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        // Offsets are committed by hand, after each event is handled.
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("creating the consumer")?;
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    println!("reading {topic} as group {} (Ctrl-C to stop)", args.group);

    let mut seen = SeenEvents::new(100_000);
    loop {
        let message = tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            received = consumer.recv() => received.context("reading from the broker")?,
        };
        match Envelope::decode(message.payload().unwrap_or_default()) {
            Ok(envelope) if seen.first_time(&envelope.event_id) => {
                let what = envelope.payload.as_ref().map_or_else(
                    || format!("unknown event {}", envelope.event_type),
                    describe,
                );
                println!(
                    "[{} p{} @{}] order {}: {what}",
                    envelope.region,
                    message.partition(),
                    message.offset(),
                    envelope.order_id,
                );
            }
            Ok(envelope) => println!("(repeat of {} dropped)", envelope.event_id),
            Err(error) => eprintln!(
                "offset {} of partition {} is not an envelope: {error}",
                message.offset(),
                message.partition()
            ),
        }
        consumer
            .commit_message(&message, CommitMode::Async)
            .context("committing the offset")?;
    }
    consumer
        .commit_consumer_state(CommitMode::Sync)
        .or_else(|error| match error {
            // Nothing consumed since the last commit.
            rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            ) => Ok(()),
            other => Err(other),
        })
        .context("committing offsets at exit")?;
    Ok(())
}
