//! Applying what happens to an order: load it, ask the decider, write the
//! result back only if nobody else changed the order meanwhile, then publish
//! the events decided.
//!
//! Events to publish are written into the order's record (its outbox) in the
//! same write as the state change, and removed once the broker acknowledged
//! them; an outbox left behind by a crash is published by whoever touches the
//! order next, or by the sweeper. Every input carries an id; an id already
//! applied changes nothing.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use harvest_bus::{Envelope, Payload, PublishError, Publisher, new_envelope};
use harvest_domain::{Id, Region, deterministic_id};
use harvest_proto::common::v1::{CancelReason, PickupPoint};
use harvest_proto::events::v1::{
    LineShortfall, OrderCancelled, OrderConfirmed, OrderDelivered, OrderShipmentFailed,
    OrderStateChanged, ReservedLine, ShipmentFailed, ShipmentFailureReason, ShortfallReason,
};
use harvest_proto::orders::storage::v1::StoredOrder;
use harvest_proto::orders::v1::{FailedShipment, Order, PricedLine, Transition};

use crate::config::OrderRules;
use crate::decider::{self, Event, Outcome, Refused, Rejection, Rest, State};
use crate::store::{DeadlineKind, OrderStore, StepWrites, StoreError, now_millis};

/// Counter: orders that reached a terminal state, by `region`, `outcome`
/// and `reason`.
pub const SAGA_OUTCOMES: &str = "harvest_orders_outcomes_total";
/// Counter: transitions of orders' state machines, by `region` and the state
/// reached (`to`: RESERVED, CONFIRMED, … DELIVERED, CANCELLED).
pub const TRANSITIONS: &str = "harvest_orders_transitions_total";
/// Counter: events the state machine refused, by `event`.
pub const EVENTS_REFUSED: &str = "harvest_orders_events_refused_total";
/// Counter: events that arrived ahead of their order and were parked.
pub const EVENTS_PARKED: &str = "harvest_orders_events_parked_total";

/// Writes that lost a race are retried this many times.
const MAX_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum SagaError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("order {0} kept changing under concurrent writers")]
    Contended(String),
    #[error("order {0} has no valid state")]
    Corrupt(String),
}

/// Something that happens to an order.
#[derive(Clone, Debug)]
pub enum Input {
    /// An event of the catalog, payments or delivery stream.
    Event(Box<Envelope>),
    BuyerCancel {
        reason: String,
    },
    Deadline(DeadlineKind),
}

impl Input {
    /// The id that makes applying this input idempotent.
    fn id(&self, order_id: &str) -> String {
        match self {
            Input::Event(envelope) => envelope.event_id.clone(),
            Input::BuyerCancel { .. } => {
                deterministic_id("in", &[order_id, "buyer-cancel"]).to_string()
            }
            Input::Deadline(kind) => {
                deterministic_id("in", &[order_id, "deadline", &format!("{kind:?}")]).to_string()
            }
        }
    }

    fn cause(&self) -> String {
        match self {
            Input::Event(envelope) => envelope.event_type.clone(),
            Input::BuyerCancel { .. } => "harvest.orders.v1.OrdersService/CancelOrder".to_owned(),
            Input::Deadline(DeadlineKind::Placement) => "placement deadline".to_owned(),
            Input::Deadline(DeadlineKind::Payment) => "payment deadline".to_owned(),
            Input::Deadline(DeadlineKind::Pickup) => "pickup deadline".to_owned(),
        }
    }
}

/// What applying an input did.
#[derive(Clone, Debug)]
pub enum Applied {
    /// Accepted: the order moved on or recorded progress.
    Accepted(Order),
    /// Ahead of the order: kept, and applied once the order catches up.
    Parked(Order),
    /// Already applied before; nothing changed.
    Duplicate(Order),
    /// Impossible in the order's state; nothing changed.
    Refused(Order, Refused),
    /// Not something that concerns the order's state.
    Ignored,
    /// No such order.
    UnknownOrder,
}

#[derive(Clone)]
pub struct Saga {
    store: OrderStore,
    publisher: Publisher,
    rules: OrderRules,
}

impl Saga {
    pub fn new(store: OrderStore, publisher: Publisher, rules: OrderRules) -> Self {
        Saga {
            store,
            publisher,
            rules,
        }
    }

    pub fn store(&self) -> &OrderStore {
        &self.store
    }

    /// Stores a new order (unless it exists already) and publishes its outbox.
    pub async fn create(&self, record: StoredOrder) -> Result<StoredOrder, SagaError> {
        let order = record.order.clone().unwrap_or_default();
        let region = region_of(&order)?;
        let created_ms = order.created_at.map_or(now_millis(), |at| {
            at.seconds * 1000 + i64::from(at.nanos) / 1_000_000
        });
        let outbox_at = now_millis();
        let placement_due = outbox_at + self.rules.placement_deadline().as_millis() as i64;
        let writes = StepWrites {
            region: &region,
            schedule: &[(DeadlineKind::Placement, placement_due)],
            outbox_at: Some(outbox_at),
            notify: false,
            buyer_index: Some((&order.buyer_id, created_ms)),
        };
        if let Some(version) = self
            .store
            .write_step(&order.order_id, 0, &record, &writes)
            .await?
        {
            return self
                .publish_outbox(&order.order_id, version, record, &region, outbox_at, &[])
                .await;
        }
        // Placed before (a retried call): finish what that call began.
        self.flush(&order.order_id).await?;
        self.store
            .load(&order.order_id)
            .await?
            .map(|stored| stored.record)
            .ok_or_else(|| SagaError::Corrupt(order.order_id.clone()))
    }

    #[tracing::instrument(skip_all, fields(order_id = %order_id, input = %input.cause()))]
    pub async fn apply(&self, order_id: &str, input: &Input) -> Result<Applied, SagaError> {
        let input_id = input.id(order_id);
        for _ in 0..MAX_ATTEMPTS {
            let Some(stored) = self.store.load(order_id).await? else {
                return Ok(Applied::UnknownOrder);
            };
            let mut record = stored.record;
            let state_before = current_state(&record)?;
            let history_before = history_len(&record);
            if record.seen_event_ids.contains(&input_id) {
                if !record.outbox.is_empty() {
                    self.flush(order_id).await?;
                }
                return Ok(Applied::Duplicate(record.order.unwrap_or_default()));
            }
            let mut deadlines = Vec::new();
            let parked = match self.step(&mut record, input, &input_id, &mut deadlines)? {
                Step::Ignored => return Ok(Applied::Ignored),
                Step::Refused(refused) => {
                    tracing::warn!(state = %refused.state, event = ?refused.event, "event refused by the order's state machine");
                    metrics::counter!(EVENTS_REFUSED, "event" => format!("{:?}", refused.event))
                        .increment(1);
                    return Ok(Applied::Refused(record.order.unwrap_or_default(), refused));
                }
                Step::Early(refused) => {
                    let Input::Event(envelope) = input else {
                        return Ok(Applied::Refused(record.order.unwrap_or_default(), refused));
                    };
                    tracing::info!(state = %refused.state, event = ?refused.event, "event ahead of the order; parked until it catches up");
                    metrics::counter!(EVENTS_PARKED).increment(1);
                    record.parked.push(envelope.as_ref().clone());
                    record.seen_event_ids.push(input_id.clone());
                    true
                }
                Step::Accepted => {
                    self.replay_parked(&mut record, &mut deadlines)?;
                    false
                }
            };
            let order = record.order.clone().unwrap_or_default();
            let region = region_of(&order)?;
            let state_after = current_state(&record)?;

            let outbox_at = (!record.outbox.is_empty()).then(now_millis);
            // A step can pass through a state and leave it (a parked payment
            // confirms the order its reservation just reserved): only the
            // deadlines of the state it ends in are worth keeping.
            deadlines.retain(|(kind, _)| guards(*kind, state_after));
            let writes = StepWrites {
                region: &region,
                schedule: &deadlines,
                outbox_at,
                notify: history_len(&record) != history_before,
                buyer_index: None,
            };
            let Some(version) = self
                .store
                .write_step(order_id, stored.version, &record, &writes)
                .await?
            else {
                continue;
            };
            if state_after != state_before {
                tracing::info!(from = %state_before, to = %state_after, "order moved");
            }
            if let Some(at) = outbox_at {
                let left_behind = deadlines_left_behind(state_before, state_after);
                self.publish_outbox(order_id, version, record, &region, at, &left_behind)
                    .await?;
            }
            return Ok(if parked {
                Applied::Parked(order)
            } else {
                Applied::Accepted(order)
            });
        }
        Err(SagaError::Contended(order_id.to_owned()))
    }

    /// Applies one input to the record in memory.
    fn step(
        &self,
        record: &mut StoredOrder,
        input: &Input,
        input_id: &str,
        deadlines: &mut Vec<(DeadlineKind, i64)>,
    ) -> Result<Step, SagaError> {
        let mut order = record.order.clone().unwrap_or_default();
        let state = current_state(record)?;
        let Some(event) = decider_event(record, input) else {
            return Ok(Step::Ignored);
        };
        let outcome = match decider::decide(state, event) {
            Ok(outcome) => outcome,
            Err(refused) if refused.is_early() => return Ok(Step::Early(refused)),
            Err(refused) => return Ok(Step::Refused(refused)),
        };
        let next = decider::next_state(state, outcome);
        let now = harvest_kit::clock::now();
        record_progress(record, input);
        // What a transition changes in the order, `watch::as_of` winds back
        // for watchers: keep the two in step.
        if let Some(failed) = dropped_shipment(input, outcome) {
            let failure = failed_shipment(record, &order, failed, now);
            order.history.push(Transition {
                from: state.to_proto().into(),
                to: state.to_proto().into(),
                at: Some(now.into()),
                cause: input.cause(),
                event_id: input_id.to_owned(),
                detail: failure.detail.clone(),
            });
            order.updated_at = Some(now.into());
            record
                .outbox
                .push(shipment_failed_event(&order, record, &failure)?);
            order.failed_shipments.push(failure);
        }
        if next != state {
            let detail = detail_of(input, outcome, &order, &self.rules);
            order.history.push(Transition {
                from: state.to_proto().into(),
                to: next.to_proto().into(),
                at: Some(now.into()),
                cause: input.cause(),
                event_id: input_id.to_owned(),
                detail: detail.clone(),
            });
            order.state = next.to_proto().into();
            order.updated_at = Some(now.into());
            if let Outcome::Cancelled(reason) = outcome {
                order.cancel_reason = reason.into();
                order.cancel_detail = detail;
            }
            if next == State::Reserved {
                apply_reservation(&mut order, record);
                deadlines.push((
                    DeadlineKind::Payment,
                    to_millis(now + self.rules.payment_deadline()),
                ));
            }
            if next == State::Confirmed
                && let Some(due) = pickup_deadline(record)
            {
                deadlines.push((DeadlineKind::Pickup, due));
            }
            if next == State::Delivered {
                order.charged_fen = order.total_fen
                    - order
                        .failed_shipments
                        .iter()
                        .map(|failed| failed.lines_fen)
                        .sum::<i64>();
            }
            if next.is_terminal() {
                let reason = match outcome {
                    Outcome::Cancelled(reason) => reason.as_str_name(),
                    _ => "",
                };
                let label = if next == State::Delivered {
                    "delivered"
                } else {
                    "cancelled"
                };
                metrics::counter!(
                    SAGA_OUTCOMES,
                    "region" => order.region.clone(),
                    "outcome" => label,
                    "reason" => reason
                )
                .increment(1);
            }
            metrics::counter!(TRANSITIONS, "region" => order.region.clone(), "to" => next.to_string())
                .increment(1);
            record.outbox.push(outgoing_event(
                &order, record, state, next, outcome, input_id,
            )?);
        }
        record.seen_event_ids.push(input_id.to_owned());
        record.order = Some(order);
        Ok(Step::Accepted)
    }

    /// Applies parked events the order has caught up with, until none is.
    fn replay_parked(
        &self,
        record: &mut StoredOrder,
        deadlines: &mut Vec<(DeadlineKind, i64)>,
    ) -> Result<(), SagaError> {
        loop {
            let mut progressed = false;
            for envelope in std::mem::take(&mut record.parked) {
                let input = Input::Event(Box::new(envelope.clone()));
                match self.step(record, &input, &envelope.event_id, deadlines)? {
                    Step::Accepted => progressed = true,
                    Step::Early(_) => record.parked.push(envelope),
                    Step::Refused(refused) => {
                        tracing::warn!(state = %refused.state, event = ?refused.event, "parked event no longer applies; dropped");
                    }
                    Step::Ignored => {}
                }
            }
            if !progressed || record.parked.is_empty() {
                return Ok(());
            }
        }
    }

    /// Publishes the outbox of a record just written at `version`, its
    /// events' acknowledgements awaited together, then empties the outbox in
    /// one write. When someone else wrote the order meanwhile, falls back to
    /// [`Saga::flush`], which reads it again (a repeated event is harmless:
    /// its id is the same).
    async fn publish_outbox(
        &self,
        order_id: &str,
        version: u64,
        mut record: StoredOrder,
        region: &Region,
        outbox_at: i64,
        left_behind: &[DeadlineKind],
    ) -> Result<StoredOrder, SagaError> {
        futures::future::try_join_all(
            record
                .outbox
                .iter()
                .map(|envelope| self.publisher.publish(envelope.clone())),
        )
        .await?;
        record.outbox.clear();
        if self
            .store
            .finish_outbox(order_id, version, &record, region, outbox_at, left_behind)
            .await?
            .is_none()
        {
            self.flush(order_id).await?;
        }
        Ok(record)
    }

    /// Publishes every event in the order's outbox, then removes them from it.
    pub async fn flush(&self, order_id: &str) -> Result<(), SagaError> {
        for _ in 0..MAX_ATTEMPTS {
            let loaded_at = now_millis();
            let Some(stored) = self.store.load(order_id).await? else {
                return Ok(());
            };
            let order = stored.record.order.clone().unwrap_or_default();
            if stored.record.outbox.is_empty() {
                let region = region_of(&order)?;
                self.store
                    .clear_outbox_mark(&region, order_id, loaded_at)
                    .await?;
                return Ok(());
            }
            let mut published = Vec::with_capacity(stored.record.outbox.len());
            for envelope in &stored.record.outbox {
                self.publisher.publish(envelope.clone()).await?;
                published.push(envelope.event_id.clone());
            }
            self.remove_from_outbox(order_id, &published, loaded_at)
                .await?;
        }
        Err(SagaError::Contended(order_id.to_owned()))
    }

    /// Takes `published` out of the order's outbox. When that empties it,
    /// also forgets the outbox note made before `loaded_at` and the
    /// deadlines the order's state no longer needs, as a step's own finish
    /// would have.
    async fn remove_from_outbox(
        &self,
        order_id: &str,
        published: &[String],
        loaded_at: i64,
    ) -> Result<(), SagaError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(stored) = self.store.load(order_id).await? else {
                return Ok(());
            };
            let mut record = stored.record;
            let before = record.outbox.len();
            record
                .outbox
                .retain(|envelope| !published.contains(&envelope.event_id));
            if record.outbox.len() == before {
                return Ok(());
            }
            let written = if record.outbox.is_empty() {
                let region = region_of(&record.order.clone().unwrap_or_default())?;
                let state = current_state(&record)?;
                let moot: Vec<DeadlineKind> = ALL_DEADLINES
                    .into_iter()
                    .filter(|kind| !guards(*kind, state))
                    .collect();
                self.store
                    .finish_outbox(order_id, stored.version, &record, &region, loaded_at, &moot)
                    .await?
            } else {
                self.store
                    .compare_and_set(order_id, stored.version, &record)
                    .await?
            };
            if written.is_some() {
                return Ok(());
            }
        }
        Err(SagaError::Contended(order_id.to_owned()))
    }
}

/// What one input did to a record in memory.
enum Step {
    Accepted,
    Early(Refused),
    Refused(Refused),
    Ignored,
}

const ALL_DEADLINES: [DeadlineKind; 3] = [
    DeadlineKind::Placement,
    DeadlineKind::Payment,
    DeadlineKind::Pickup,
];

/// The deadlines an order no longer has once it moved from `before` to
/// `after`: the payment deadline once it left RESERVED, the pickup deadline
/// once its goods were picked up or it ended.
fn deadlines_left_behind(before: State, after: State) -> Vec<DeadlineKind> {
    ALL_DEADLINES
        .into_iter()
        .filter(|kind| guards(*kind, before) && !guards(*kind, after))
        .collect()
}

/// Whether a deadline of `kind` still has something to guard in `state`.
fn guards(kind: DeadlineKind, state: State) -> bool {
    match kind {
        DeadlineKind::Placement => state == State::Placed,
        DeadlineKind::Payment => state == State::Reserved,
        DeadlineKind::Pickup => matches!(state, State::Confirmed | State::Dispatching),
    }
}

fn current_state(record: &StoredOrder) -> Result<State, SagaError> {
    let order = record.order.as_ref();
    order
        .and_then(|order| State::from_proto(order.state()))
        .ok_or_else(|| SagaError::Corrupt(order.map(|o| o.order_id.clone()).unwrap_or_default()))
}

fn region_of(order: &Order) -> Result<Region, SagaError> {
    Region::parse(&order.region).map_err(|_| SagaError::Corrupt(order.order_id.clone()))
}

fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// The decider's view of an input, or `None` when it does not concern the
/// order's state.
fn decider_event(record: &StoredOrder, input: &Input) -> Option<Event> {
    let envelope = match input {
        Input::BuyerCancel { .. } => return Some(Event::BuyerCancelled),
        Input::Deadline(DeadlineKind::Placement) => return Some(Event::PlacementDeadlinePassed),
        Input::Deadline(DeadlineKind::Payment) => return Some(Event::PaymentDeadlinePassed),
        Input::Deadline(DeadlineKind::Pickup) => return Some(Event::PickupWindowMissed),
        Input::Event(envelope) => envelope,
    };
    Some(match envelope.payload.as_ref()? {
        Payload::StockReserved(_) => Event::StockReserved,
        Payload::StockRejected(rejected) => {
            let any = |reason| rejected.shortfalls.iter().any(|s| s.reason() == reason);
            Event::StockRejected(if any(ShortfallReason::TotalTooLarge) {
                Rejection::TotalTooLarge
            } else if any(ShortfallReason::UnknownProduct) {
                Rejection::UnknownProduct
            } else if any(ShortfallReason::PerBuyerLimit) {
                Rejection::PerBuyerLimit
            } else {
                Rejection::OutOfStock
            })
        }
        Payload::PaymentAuthorized(_) => Event::PaymentAuthorized,
        Payload::PaymentDeclined(_) => Event::PaymentDeclined,
        Payload::CourierAssigned(_) => Event::CourierAssigned,
        Payload::ShipmentPickedUp(_) => Event::PickedUp,
        Payload::ShipmentDelivered(delivered) => Event::ShipmentDelivered {
            last: others_under_way(record, &delivered.shipment_id) == 0,
        },
        Payload::ShipmentFailed(failed) => Event::ShipmentFailed {
            no_courier: failed.reason() == ShipmentFailureReason::NoCourier,
            rest: if others_under_way(record, &failed.shipment_id) > 0 {
                Rest::UnderWay
            } else if record
                .delivered_shipments
                .iter()
                .any(|delivered| *delivered != failed.shipment_id)
            {
                Rest::Delivered
            } else {
                Rest::NoneDelivered
            },
        },
        _ => return None,
    })
}

/// The order's shipments, one per pickup point: (shipment id, pickup point).
fn shipments(record: &StoredOrder) -> Vec<(String, &PickupPoint)> {
    let order_id = record
        .order
        .as_ref()
        .map(|order| order.order_id.as_str())
        .unwrap_or_default();
    record
        .pickups
        .iter()
        .filter_map(|pickup| pickup.point.as_ref())
        .map(|point| {
            let shipment = harvest_domain::shipment_id(order_id, &point.pickup_point_id);
            (shipment.to_string(), point)
        })
        .collect()
}

/// How many of the order's shipments (one per pickup point) other than
/// `shipment_id` have neither been delivered nor failed.
fn others_under_way(record: &StoredOrder, shipment_id: &str) -> usize {
    let failed = record
        .order
        .iter()
        .flat_map(|order| &order.failed_shipments)
        .map(|failed| failed.shipment_id.as_str());
    let ended: HashSet<&str> = record
        .delivered_shipments
        .iter()
        .map(String::as_str)
        .chain(failed)
        .chain([shipment_id])
        .collect();
    record.pickups.len().saturating_sub(ended.len())
}

/// The shipment failure the order goes on without: a failed shipment that
/// did not cancel the order.
fn dropped_shipment(input: &Input, outcome: Outcome) -> Option<&ShipmentFailed> {
    let Input::Event(envelope) = input else {
        return None;
    };
    match (&envelope.payload, outcome) {
        (Some(Payload::ShipmentFailed(failed)), Outcome::ShipmentDropped | Outcome::Moved(_)) => {
            Some(failed)
        }
        _ => None,
    }
}

/// The order's reserved lines collected at `pickup_point_id`.
fn lines_at<'a>(
    record: &'a StoredOrder,
    pickup_point_id: &'a str,
) -> impl Iterator<Item = &'a ReservedLine> {
    record
        .reserved_lines
        .iter()
        .filter(move |line| line.pickup_point_id == pickup_point_id)
}

/// A failed shipment as the buyer sees it: its pickup point, its lines and
/// why it failed.
fn failed_shipment(
    record: &StoredOrder,
    order: &Order,
    failed: &ShipmentFailed,
    now: SystemTime,
) -> FailedShipment {
    let (pickup_point_id, pickup_point_name) = shipments(record)
        .into_iter()
        .find(|(shipment, _)| *shipment == failed.shipment_id)
        .map(|(_, point)| (point.pickup_point_id.clone(), point.name.clone()))
        .unwrap_or_default();
    let lines: Vec<PricedLine> = lines_at(record, &pickup_point_id)
        .map(priced_line)
        .collect();
    let lines_fen = lines.iter().map(|line| line.line_total_fen).sum();
    let no_courier = failed.reason() == ShipmentFailureReason::NoCourier;
    let cause = if no_courier {
        "no courier could take it".to_owned()
    } else if failed.detail.is_empty() {
        "the delivery failed".to_owned()
    } else {
        format!("the delivery failed: {}", failed.detail)
    };
    FailedShipment {
        detail: format!(
            "shipment {} of order {} failed ({cause}); its lines are not charged",
            failed.shipment_id, order.order_id
        ),
        shipment_id: failed.shipment_id.clone(),
        pickup_point_id,
        pickup_point_name,
        reason: if no_courier {
            CancelReason::NoCourier
        } else {
            CancelReason::DeliveryFailed
        }
        .into(),
        lines,
        lines_fen,
        failed_at: Some(now.into()),
    }
}

/// Keeps what the input teaches about the order (pricing, pickups, shipment
/// progress) in the record.
fn record_progress(record: &mut StoredOrder, input: &Input) {
    let Input::Event(envelope) = input else {
        return;
    };
    let remember = |list: &mut Vec<String>, id: &str| {
        if !list.iter().any(|known| known == id) {
            list.push(id.to_owned());
        }
    };
    match &envelope.payload {
        Some(Payload::StockReserved(reserved)) => {
            record.pickups.clone_from(&reserved.pickups);
            record.reserved_lines.clone_from(&reserved.lines);
        }
        Some(Payload::CourierAssigned(assigned)) => {
            remember(&mut record.assigned_shipments, &assigned.shipment_id);
        }
        Some(Payload::ShipmentPickedUp(picked)) => {
            remember(&mut record.picked_up_shipments, &picked.shipment_id);
        }
        Some(Payload::ShipmentDelivered(delivered)) => {
            remember(&mut record.delivered_shipments, &delivered.shipment_id);
        }
        _ => {}
    }
}

fn priced_line(line: &ReservedLine) -> PricedLine {
    PricedLine {
        product_id: line.product_id.clone(),
        quantity: line.quantity,
        unit_price_fen: line.unit_price_fen,
        line_total_fen: line.line_total_fen,
        seller_id: line.seller_id.clone(),
    }
}

fn history_len(record: &StoredOrder) -> usize {
    record.order.as_ref().map_or(0, |order| order.history.len())
}

/// Prices the order's lines from its reservation.
fn apply_reservation(order: &mut Order, record: &StoredOrder) {
    order.lines = record.reserved_lines.iter().map(priced_line).collect();
    order.total_fen = record
        .reserved_lines
        .iter()
        .map(|line| line.line_total_fen)
        .sum();
}

/// The earliest time by which a perishable pickup must happen.
fn pickup_deadline(record: &StoredOrder) -> Option<i64> {
    record
        .pickups
        .iter()
        .filter_map(|pickup| pickup.pickup_by)
        .map(|at| at.seconds * 1000 + i64::from(at.nanos) / 1_000_000)
        .min()
}

fn detail_of(input: &Input, outcome: Outcome, order: &Order, rules: &OrderRules) -> String {
    let envelope = match input {
        Input::BuyerCancel { reason } if reason.is_empty() => {
            return "cancelled by the buyer".to_owned();
        }
        Input::BuyerCancel { reason } => return format!("cancelled by the buyer: {reason}"),
        Input::Deadline(DeadlineKind::Placement) => {
            return format!(
                "the catalog did not answer within {} s of placement",
                rules.placement_deadline_secs
            );
        }
        Input::Deadline(DeadlineKind::Payment) => {
            return format!(
                "not paid within {} s of reservation",
                rules.payment_deadline_secs
            );
        }
        Input::Deadline(DeadlineKind::Pickup) => {
            return "perishable goods were not picked up in time".to_owned();
        }
        Input::Event(envelope) => envelope,
    };
    if outcome == Outcome::Moved(State::Delivered) && !order.failed_shipments.is_empty() {
        return format!(
            "delivered in part: {} shipment(s) failed and are not charged",
            order.failed_shipments.len()
        );
    }
    match (&envelope.payload, outcome) {
        (Some(Payload::StockRejected(rejected)), _) => rejected
            .shortfalls
            .iter()
            .map(shortfall_detail)
            .collect::<Vec<_>>()
            .join("; "),
        (Some(Payload::PaymentDeclined(declined)), _) => declined.reason.clone(),
        (Some(Payload::ShipmentFailed(failed)), _) => {
            if failed.detail.is_empty() {
                format!("shipment {} failed", failed.shipment_id)
            } else {
                format!("shipment {} failed: {}", failed.shipment_id, failed.detail)
            }
        }
        _ => String::new(),
    }
}

/// What the buyer is told about one line the catalog could not reserve.
fn shortfall_detail(shortfall: &LineShortfall) -> String {
    let product = &shortfall.product_id;
    match shortfall.reason() {
        ShortfallReason::UnknownProduct => format!("{product}: no such product"),
        ShortfallReason::TotalTooLarge => format!(
            "{product}: {} would take the order above the most one order may cost",
            shortfall.requested
        ),
        ShortfallReason::PerBuyerLimit => format!(
            "at most {} per buyer of {product} within {} h; you already hold {}, this order asks for {}",
            shortfall.per_buyer_limit,
            shortfall.per_buyer_window_hours,
            shortfall.buyer_holds,
            shortfall.requested
        ),
        _ => format!(
            "{product}: {} wanted, {} available",
            shortfall.requested, shortfall.available
        ),
    }
}

/// The event announcing a transition; its id is the same every time the same
/// transition is decided.
fn outgoing_event(
    order: &Order,
    record: &StoredOrder,
    from: State,
    to: State,
    outcome: Outcome,
    cause_id: &str,
) -> Result<Envelope, SagaError> {
    let order_id =
        Id::parse(&order.order_id).map_err(|_| SagaError::Corrupt(order.order_id.clone()))?;
    let region = region_of(order)?;
    let (step, payload) = match to {
        State::Confirmed => (
            "confirmed",
            Payload::OrderConfirmed(OrderConfirmed {
                buyer_id: order.buyer_id.clone(),
                ship_to: order.ship_to.clone(),
                lines: record.reserved_lines.clone(),
                pickups: record.pickups.clone(),
                total_fen: order.total_fen,
                // An order placed before codes were made asks for none.
                delivery_code_digest: if order.delivery_code.is_empty() {
                    String::new()
                } else {
                    harvest_domain::delivery_code::digest_of(&order.order_id, &order.delivery_code)
                },
            }),
        ),
        State::Cancelled => (
            "cancelled",
            Payload::OrderCancelled(OrderCancelled {
                reason: match outcome {
                    Outcome::Cancelled(reason) => reason.into(),
                    _ => CancelReason::Unspecified.into(),
                },
                detail: order.cancel_detail.clone(),
                lines: record.placed_lines.clone(),
                previous_state: from.to_proto().into(),
            }),
        ),
        State::Delivered => {
            let failed_at = |line: &ReservedLine| {
                order
                    .failed_shipments
                    .iter()
                    .any(|failed| failed.pickup_point_id == line.pickup_point_id)
            };
            let (undelivered_lines, lines): (Vec<ReservedLine>, Vec<ReservedLine>) =
                record.reserved_lines.iter().cloned().partition(failed_at);
            (
                "delivered",
                Payload::OrderDelivered(OrderDelivered {
                    lines,
                    total_fen: order.charged_fen,
                    undelivered_fen: order.total_fen - order.charged_fen,
                    undelivered_lines,
                }),
            )
        }
        State::Placed | State::Reserved | State::Dispatching | State::InTransit => (
            to.to_proto().as_str_name(),
            Payload::OrderStateChanged(OrderStateChanged {
                from: from.to_proto().into(),
                to: to.to_proto().into(),
                cause_event_id: cause_id.to_owned(),
            }),
        ),
    };
    Ok(new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", step]),
        &order_id,
        &region,
        "orders",
        payload,
    ))
}

/// The event telling the other services that `failure`'s lines left the
/// order; its id is the same every time the same shipment fails.
fn shipment_failed_event(
    order: &Order,
    record: &StoredOrder,
    failure: &FailedShipment,
) -> Result<Envelope, SagaError> {
    let order_id =
        Id::parse(&order.order_id).map_err(|_| SagaError::Corrupt(order.order_id.clone()))?;
    let region = region_of(order)?;
    Ok(new_envelope(
        &deterministic_id(
            "evt",
            &[
                order_id.as_str(),
                "orders",
                "shipment-failed",
                &failure.shipment_id,
            ],
        ),
        &order_id,
        &region,
        "orders",
        Payload::OrderShipmentFailed(OrderShipmentFailed {
            shipment_id: failure.shipment_id.clone(),
            pickup_point_id: failure.pickup_point_id.clone(),
            reason: failure.reason,
            detail: failure.detail.clone(),
            lines: lines_at(record, &failure.pickup_point_id)
                .cloned()
                .collect(),
            lines_fen: failure.lines_fen,
        }),
    ))
}

/// How long to wait between looks while another call places an order.
pub const PLACEMENT_POLL: Duration = Duration::from_millis(20);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_shortfall_tells_the_buyer_why() {
        let shortfall = |reason: ShortfallReason| LineShortfall {
            product_id: "prd_apples".to_owned(),
            requested: 3,
            available: 1,
            reason: reason.into(),
            ..LineShortfall::default()
        };
        assert_eq!(
            shortfall_detail(&shortfall(ShortfallReason::InsufficientStock)),
            "prd_apples: 3 wanted, 1 available"
        );
        assert_eq!(
            shortfall_detail(&shortfall(ShortfallReason::UnknownProduct)),
            "prd_apples: no such product"
        );
        let over_limit = LineShortfall {
            per_buyer_limit: 2,
            buyer_holds: 2,
            per_buyer_window_hours: 24,
            available: 0,
            ..shortfall(ShortfallReason::PerBuyerLimit)
        };
        assert_eq!(
            shortfall_detail(&over_limit),
            "at most 2 per buyer of prd_apples within 24 h; you already hold 2, this order asks for 3"
        );
    }
}
