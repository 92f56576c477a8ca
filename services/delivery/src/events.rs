//! The events of a shipment, derived from its stored state.
//!
//! A shipment's history fixes which events it has caused, in which order:
//! created, then assigned (if a courier took it), picked up, and one of
//! delivered, failed or withdrawn. Each event's id depends only on its cause,
//! so whoever publishes it — the event handler, the sweeper after a crash, a
//! repeated gRPC call — publishes the same id, and consumers drop repeats.

use harvest_bus::{Envelope, Payload, new_envelope};
use harvest_domain::{Id, deterministic_id};
use harvest_proto::events::v1::{
    CourierAssigned, ShipmentCreated, ShipmentDelivered, ShipmentFailed, ShipmentFailureReason,
    ShipmentPickedUp, ShipmentWithdrawn,
};

use crate::model::{FailureKind, State, StoredShipment, timestamp};

/// The envelopes' `source`.
pub const SOURCE: &str = "delivery";

/// One event in a shipment's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    Created,
    Assigned,
    PickedUp,
    Delivered,
    Failed,
    Withdrawn,
}

impl Milestone {
    /// The name under which the shipment remembers it was announced.
    pub fn name(self) -> &'static str {
        match self {
            Milestone::Created => "created",
            Milestone::Assigned => "assigned",
            Milestone::PickedUp => "picked-up",
            Milestone::Delivered => "delivered",
            Milestone::Failed => "failed",
            Milestone::Withdrawn => "withdrawn",
        }
    }
}

/// The events the shipment's state implies, oldest first.
pub fn history(shipment: &StoredShipment) -> Vec<Milestone> {
    let mut history = vec![Milestone::Created];
    if shipment.courier_id.is_some() {
        history.push(Milestone::Assigned);
    }
    if shipment.picked_up_at_ms.is_some() {
        history.push(Milestone::PickedUp);
    }
    match shipment.state {
        State::Delivered => history.push(Milestone::Delivered),
        State::Failed => history.push(Milestone::Failed),
        State::Withdrawn => history.push(Milestone::Withdrawn),
        State::Awaiting | State::Assigned | State::PickedUp => {}
    }
    history
}

/// The events of the history the broker has not acknowledged yet, oldest first.
pub fn unannounced(shipment: &StoredShipment) -> Vec<Milestone> {
    history(shipment)
        .into_iter()
        .filter(|milestone| !shipment.announced.contains(milestone.name()))
        .collect()
}

/// The id of a milestone's event: the same whenever it is published again.
pub fn event_id(shipment: &StoredShipment, milestone: Milestone) -> Id {
    let courier = shipment
        .courier_id
        .as_ref()
        .map(Id::as_str)
        .unwrap_or_default();
    let shipment_id = shipment.shipment_id.as_str();
    match milestone {
        Milestone::Assigned | Milestone::PickedUp | Milestone::Delivered => {
            deterministic_id("evt", &[shipment_id, milestone.name(), courier])
        }
        Milestone::Created | Milestone::Failed | Milestone::Withdrawn => {
            deterministic_id("evt", &[shipment_id, milestone.name()])
        }
    }
}

/// The envelope of a milestone, dated when the milestone happened.
pub fn envelope(shipment: &StoredShipment, milestone: Milestone) -> Envelope {
    let contents = &shipment.contents;
    let shipment_id = shipment.shipment_id.to_string();
    let courier_id = shipment
        .courier_id
        .as_ref()
        .map(Id::to_string)
        .unwrap_or_default();
    let (payload, at_ms) = match milestone {
        Milestone::Created => (
            Payload::ShipmentCreated(ShipmentCreated {
                shipment_id,
                pickup_point: contents.pickup_point.clone(),
                ship_to: contents.ship_to.clone(),
                lines: contents.lines.clone(),
                cold_chain: contents.cold_chain,
                pickup_by: contents.pickup_by,
            }),
            Some(shipment.created_at_ms),
        ),
        Milestone::Assigned => (
            Payload::CourierAssigned(CourierAssigned {
                shipment_id,
                courier_id,
                pickup_point: contents.pickup_point.clone(),
                ship_to: contents.ship_to.clone(),
                distance_meters: shipment.distance_meters,
            }),
            shipment.assigned_at_ms,
        ),
        Milestone::PickedUp => (
            Payload::ShipmentPickedUp(ShipmentPickedUp {
                shipment_id,
                courier_id,
                lines: contents.lines.clone(),
            }),
            shipment.picked_up_at_ms,
        ),
        Milestone::Delivered => (
            Payload::ShipmentDelivered(ShipmentDelivered {
                shipment_id,
                courier_id,
                recipient_name: shipment.recipient_name.clone(),
                proof_reference: shipment.proof_reference.clone(),
            }),
            shipment.delivered_at_ms,
        ),
        Milestone::Failed => {
            let reason = match shipment.failure {
                Some(FailureKind::NoCourier) => ShipmentFailureReason::NoCourier,
                Some(FailureKind::DeliveryFailed) => ShipmentFailureReason::DeliveryFailed,
                None => ShipmentFailureReason::Unspecified,
            };
            (
                Payload::ShipmentFailed(ShipmentFailed {
                    shipment_id,
                    courier_id,
                    reason: reason.into(),
                    detail: shipment.failure_reason.clone(),
                }),
                shipment.failed_at_ms,
            )
        }
        Milestone::Withdrawn => (
            Payload::ShipmentWithdrawn(ShipmentWithdrawn {
                shipment_id,
                courier_id,
            }),
            shipment.withdrawn_at_ms,
        ),
    };
    let mut envelope = new_envelope(
        &event_id(shipment, milestone),
        &shipment.order_id,
        &shipment.region,
        SOURCE,
        payload,
    );
    if let Some(at_ms) = at_ms {
        envelope.occurred_at = Some(timestamp(at_ms));
    }
    envelope
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use harvest_domain::Region;
    use harvest_proto::common::v1::OrderLine;
    use harvest_proto::delivery::v1::Shipment;

    use super::*;

    fn shipment(state: State) -> StoredShipment {
        let id = |text: &str| Id::parse(text).expect("valid");
        StoredShipment {
            shipment_id: id("shp_1"),
            order_id: id("ord_1"),
            region: Region::parse("east").expect("valid"),
            pool: Region::parse("east").expect("valid"),
            state,
            courier_id: None,
            contents: Shipment {
                lines: vec![OrderLine {
                    product_id: "prd_1".to_owned(),
                    quantity: 2,
                }],
                ..Shipment::default()
            },
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
            assign_by_ms: 601_000,
            assigned_at_ms: None,
            distance_meters: 0,
            picked_up_at_ms: None,
            delivered_at_ms: None,
            recipient_name: String::new(),
            proof_reference: String::new(),
            failed_at_ms: None,
            failure: None,
            failure_reason: String::new(),
            withdrawn_at_ms: None,
            announced: BTreeSet::new(),
        }
    }

    fn assigned(state: State) -> StoredShipment {
        StoredShipment {
            courier_id: Some(Id::parse("cou_1").expect("valid")),
            assigned_at_ms: Some(2_000),
            ..shipment(state)
        }
    }

    #[test]
    fn history_follows_the_state() {
        use Milestone::*;
        assert_eq!(history(&shipment(State::Awaiting)), [Created]);
        assert_eq!(history(&assigned(State::Assigned)), [Created, Assigned]);
        let no_courier = StoredShipment {
            failure: Some(FailureKind::NoCourier),
            ..shipment(State::Failed)
        };
        assert_eq!(history(&no_courier), [Created, Failed]);
        assert_eq!(history(&shipment(State::Withdrawn)), [Created, Withdrawn]);
        assert_eq!(
            history(&assigned(State::Withdrawn)),
            [Created, Assigned, Withdrawn]
        );
        let delivered = StoredShipment {
            picked_up_at_ms: Some(3_000),
            ..assigned(State::Delivered)
        };
        assert_eq!(
            history(&delivered),
            [Created, Assigned, PickedUp, Delivered]
        );
        let failed_on_the_road = StoredShipment {
            picked_up_at_ms: Some(3_000),
            failure: Some(FailureKind::DeliveryFailed),
            ..assigned(State::Failed)
        };
        assert_eq!(
            history(&failed_on_the_road),
            [Created, Assigned, PickedUp, Failed]
        );
    }

    #[test]
    fn only_unacknowledged_events_are_announced_again() {
        let mut shipment = assigned(State::Assigned);
        shipment.announced.insert("created".to_owned());
        assert_eq!(unannounced(&shipment), [Milestone::Assigned]);
        shipment.announced.insert("assigned".to_owned());
        assert!(unannounced(&shipment).is_empty());
    }

    #[test]
    fn event_ids_depend_on_the_cause_only() {
        let first = assigned(State::Assigned);
        let mut later = assigned(State::PickedUp);
        later.updated_at_ms = 9_999;
        assert_eq!(
            event_id(&first, Milestone::Assigned),
            event_id(&later, Milestone::Assigned)
        );
        assert_ne!(
            event_id(&first, Milestone::Created),
            event_id(&first, Milestone::Assigned)
        );
        let envelope = envelope(&later, Milestone::PickedUp);
        assert_eq!(envelope.source, SOURCE);
        assert_eq!(envelope.order_id, "ord_1");
        match envelope.payload {
            Some(Payload::ShipmentPickedUp(picked_up)) => {
                assert_eq!(picked_up.lines.len(), 1, "picked-up carries the lines");
                assert_eq!(picked_up.courier_id, "cou_1");
            }
            other => panic!("unexpected payload {other:?}"),
        }
    }
}
