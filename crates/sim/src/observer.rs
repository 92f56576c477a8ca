//! Watching the saga from the outside: the `orders` and `delivery` streams of
//! every region, read the way any consumer of Harvest's events would.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use harvest_bus::{Envelope, Payload, Stream, Topology};
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::stats::Samples;

/// How one order ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    Delivered,
    Cancelled(i32),
}

/// What the streams said about one order.
#[derive(Clone, Debug, Default)]
pub struct Track {
    pub region: String,
    pub placed_at: Option<f64>,
    pub reserved_at: Option<f64>,
    pub confirmed_at: Option<f64>,
    pub assigned_at: Option<f64>,
    pub ending: Option<Ending>,
    pub ended_at: Option<f64>,
    /// Shipments' milestones seen on the delivery stream: picked up,
    /// delivered, failed.
    pub shipments_picked_up: u16,
    pub shipments_delivered: u16,
    pub shipments_failed: u16,
}

/// Per-region outcomes and latencies, taken from event times.
#[derive(Clone, Debug, Default)]
pub struct RegionView {
    pub confirmed: u64,
    pub delivered: u64,
    pub cancelled: BTreeMap<i32, u64>,
    pub placed_to_confirmed: Samples,
    pub placed_to_assigned: Samples,
}

#[derive(Default)]
struct State {
    orders: HashMap<String, Track>,
    regions: BTreeMap<String, RegionView>,
    events: u64,
}

/// Reads the streams in the background for as long as it lives.
pub struct Observer {
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn seconds(envelope: &Envelope) -> Option<f64> {
    envelope
        .occurred_at
        .map(|at| at.seconds as f64 + f64::from(at.nanos) / 1e9)
}

impl State {
    fn apply(&mut self, envelope: &Envelope) {
        self.events += 1;
        let at = seconds(envelope);
        let track = self.orders.entry(envelope.order_id.clone()).or_default();
        if track.region.is_empty() {
            track.region.clone_from(&envelope.region);
        }
        let view = self.regions.entry(envelope.region.clone()).or_default();
        match &envelope.payload {
            Some(Payload::OrderPlaced(_)) if track.placed_at.is_none() => {
                track.placed_at = at;
            }
            Some(Payload::OrderConfirmed(_)) if track.confirmed_at.is_none() => {
                track.confirmed_at = at;
                view.confirmed += 1;
                if let (Some(placed), Some(confirmed)) = (track.placed_at, at) {
                    view.placed_to_confirmed.record_seconds(confirmed - placed);
                }
            }
            Some(Payload::CourierAssigned(_)) if track.assigned_at.is_none() => {
                track.assigned_at = at;
                if let (Some(placed), Some(assigned)) = (track.placed_at, at) {
                    view.placed_to_assigned.record_seconds(assigned - placed);
                }
            }
            Some(Payload::OrderStateChanged(changed))
                if track.reserved_at.is_none()
                    && changed.to == harvest_proto::common::v1::OrderState::Reserved as i32 =>
            {
                track.reserved_at = at;
            }
            Some(Payload::ShipmentPickedUp(_)) => {
                track.shipments_picked_up = track.shipments_picked_up.saturating_add(1);
            }
            Some(Payload::ShipmentDelivered(_)) => {
                track.shipments_delivered = track.shipments_delivered.saturating_add(1);
            }
            Some(Payload::ShipmentFailed(_)) => {
                track.shipments_failed = track.shipments_failed.saturating_add(1);
            }
            Some(Payload::OrderDelivered(_)) if track.ending.is_none() => {
                track.ended_at = at;
                track.ending = Some(Ending::Delivered);
                view.delivered += 1;
            }
            Some(Payload::OrderCancelled(cancelled)) if track.ending.is_none() => {
                track.ended_at = at;
                track.ending = Some(Ending::Cancelled(cancelled.reason));
                *view.cancelled.entry(cancelled.reason).or_default() += 1;
            }
            _ => {}
        }
    }
}

impl Observer {
    /// Starts reading every partition of the orders and delivery streams of
    /// every region, from the beginning.
    pub fn start(bootstrap: &str, topology: &Topology) -> anyhow::Result<Observer> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("socket.nagle.disable", "true")
            .set(
                "group.id",
                format!("harvest-observer-{}", uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            // Latencies come from the events' own times, so reading them a
            // little late costs nothing, while polling often loads the broker.
            .set("fetch.wait.max.ms", "500")
            .create()
            .context("creating the observer's consumer")?;
        let mut assignment = TopicPartitionList::new();
        for region in topology.regions().iter() {
            for stream in [Stream::Orders, Stream::Delivery] {
                let topic = topology.topic(stream, region);
                let metadata = consumer
                    .fetch_metadata(Some(&topic), Duration::from_secs(10))
                    .with_context(|| format!("metadata of {topic}"))?;
                let partitions = metadata
                    .topics()
                    .first()
                    .map_or(0, |t| t.partitions().len());
                for partition in 0..partitions as i32 {
                    assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
                }
            }
        }
        consumer
            .assign(&assignment)
            .context("assigning the observer's partitions")?;
        let consumer = harvest_bus::CloseOffThread::new(consumer);
        let state = Arc::new(Mutex::new(State::default()));
        let sink = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(envelope) = message
                    .payload()
                    .and_then(|payload| Envelope::decode(payload).ok())
                else {
                    continue;
                };
                if let Ok(mut state) = sink.lock() {
                    state.apply(&envelope);
                }
            }
        });
        Ok(Observer { state, task })
    }

    /// Outcomes and latencies per region so far.
    pub fn regions(&self) -> BTreeMap<String, RegionView> {
        self.state
            .lock()
            .map(|state| state.regions.clone())
            .unwrap_or_default()
    }

    /// Events read so far.
    pub fn events(&self) -> u64 {
        self.state.lock().map(|state| state.events).unwrap_or(0)
    }

    /// The track of one order, if any event of it was seen.
    pub fn track(&self, order_id: &str) -> Option<Track> {
        self.state.lock().ok()?.orders.get(order_id).cloned()
    }

    /// The orders among `order_ids` that have not ended yet.
    pub fn unfinished<'a>(&self, order_ids: impl IntoIterator<Item = &'a String>) -> Vec<String> {
        let Ok(state) = self.state.lock() else {
            return Vec::new();
        };
        order_ids
            .into_iter()
            .filter(|id| {
                state
                    .orders
                    .get(*id)
                    .is_none_or(|track| track.ending.is_none())
            })
            .cloned()
            .collect()
    }

    /// The tracks of those among `order_ids` with any event seen, read at
    /// one moment.
    pub fn tracks<'a>(
        &self,
        order_ids: impl IntoIterator<Item = &'a String>,
    ) -> HashMap<String, Track> {
        let Ok(state) = self.state.lock() else {
            return HashMap::new();
        };
        order_ids
            .into_iter()
            .filter_map(|id| Some((id.clone(), state.orders.get(id)?.clone())))
            .collect()
    }

    /// Waits up to `timeout` until every order among `order_ids` has been
    /// seen to end.
    pub async fn wait_for_endings(&self, order_ids: &[String], timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.unfinished(order_ids).is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How every order seen ended, by order id.
    pub fn endings(&self) -> HashMap<String, Option<Ending>> {
        self.state
            .lock()
            .map(|state| {
                state
                    .orders
                    .iter()
                    .map(|(id, track)| (id.clone(), track.ending))
                    .collect()
            })
            .unwrap_or_default()
    }
}
