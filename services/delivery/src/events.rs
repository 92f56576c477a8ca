//! The events of a shipment, derived from its stored state.
//!
//! A shipment's history fixes which events it has caused, in which order:
//! created; assigned then released for each assignment taken back from its
//! courier; assigned (if a courier holds it, or held it to the end), picked
//! up, overdue (if it was flagged), and one of delivered, failed or
//! withdrawn. Each event's id depends only on its cause (an assignment's on
//! its number and its courier), so whoever publishes it — the event handler,
//! the sweeper after a crash, a repeated gRPC call — publishes the same id,
//! and consumers drop repeats. The shipment remembers each event the broker
//! acknowledged under the event's name, so a crash at any point leaves
//! exactly the missing ones to publish.
//!
//! The events that concern a courier of a courier partner (its assignment,
//! release, pickup, overdue flag, delivery, failure or withdrawal) also go to
//! that partner's topic, with the same id: each partner hears of the
//! shipments its couriers carry and of nothing else. The shipment remembers
//! those copies as `partner:<event>`.

use harvest_bus::{Envelope, PartnerId, Payload, new_envelope};
use harvest_domain::{Id, deterministic_id};
use harvest_proto::events::v1::{
    CourierAssigned, CourierReleaseReason, CourierReleased, ShipmentCreated, ShipmentDelivered,
    ShipmentFailed, ShipmentFailureReason, ShipmentOverdue, ShipmentPickedUp, ShipmentWithdrawn,
};

use crate::model::{FailureKind, State, StoredShipment, timestamp};

/// The envelopes' `source`.
pub const SOURCE: &str = "delivery";

/// One event in a shipment's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Milestone {
    Created,
    /// The shipment's `n`th assignment, counting from 1.
    Assigned(usize),
    /// The `n`th assignment taken back from its courier.
    Released(usize),
    PickedUp,
    Overdue,
    Delivered,
    Failed,
    Withdrawn,
}

impl Milestone {
    /// The name under which the shipment remembers it was announced, part of
    /// its event id. The first assignment is plain "assigned", as it was
    /// before a shipment could have more than one.
    pub fn name(self) -> String {
        match self {
            Milestone::Created => "created".to_owned(),
            Milestone::Assigned(1) => "assigned".to_owned(),
            Milestone::Assigned(n) => format!("assigned:{n}"),
            Milestone::Released(n) => format!("released:{n}"),
            Milestone::PickedUp => "picked-up".to_owned(),
            Milestone::Overdue => "overdue".to_owned(),
            Milestone::Delivered => "delivered".to_owned(),
            Milestone::Failed => "failed".to_owned(),
            Milestone::Withdrawn => "withdrawn".to_owned(),
        }
    }
}

/// The events the shipment's state implies, oldest first.
pub fn history(shipment: &StoredShipment) -> Vec<Milestone> {
    let mut history = vec![Milestone::Created];
    for n in 1..=shipment.releases.len() {
        history.extend([Milestone::Assigned(n), Milestone::Released(n)]);
    }
    if shipment.courier_id.is_some() {
        history.push(Milestone::Assigned(shipment.releases.len() + 1));
    }
    if shipment.picked_up_at_ms.is_some() {
        history.push(Milestone::PickedUp);
    }
    if shipment.overdue_since_ms.is_some() {
        history.push(Milestone::Overdue);
    }
    match shipment.state {
        State::Delivered => history.push(Milestone::Delivered),
        State::Failed => history.push(Milestone::Failed),
        State::Withdrawn => history.push(Milestone::Withdrawn),
        State::Awaiting | State::Assigned | State::PickedUp => {}
    }
    history
}

/// One of the shipment's assignments, as far as it is known.
#[derive(Clone, Copy, Debug, Default)]
struct AssignmentOf<'a> {
    courier_id: Option<&'a Id>,
    partner_id: Option<&'a PartnerId>,
    assigned_at_ms: Option<i64>,
    distance_meters: i64,
}

/// The shipment's `n`th assignment: a released one, or the current one.
fn assignment(shipment: &StoredShipment, n: usize) -> AssignmentOf<'_> {
    let released = n
        .checked_sub(1)
        .and_then(|index| shipment.releases.get(index));
    if let Some(release) = released {
        return AssignmentOf {
            courier_id: Some(&release.courier_id),
            partner_id: release.partner_id.as_ref(),
            assigned_at_ms: Some(release.assigned_at_ms),
            distance_meters: release.distance_meters,
        };
    }
    if n != shipment.releases.len() + 1 {
        return AssignmentOf::default();
    }
    AssignmentOf {
        courier_id: shipment.courier_id.as_ref(),
        partner_id: shipment.partner_id.as_ref(),
        assigned_at_ms: shipment.assigned_at_ms,
        distance_meters: shipment.distance_meters,
    }
}

/// The courier a milestone is about: the one assigned or released, else the
/// shipment's current one.
fn courier_of(shipment: &StoredShipment, milestone: Milestone) -> Option<&Id> {
    match milestone {
        Milestone::Assigned(n) | Milestone::Released(n) => assignment(shipment, n).courier_id,
        _ => shipment.courier_id.as_ref(),
    }
}

/// The courier partner a milestone's event goes to as well: the partner of
/// the courier it is about, if that courier has one. None for the shipment's
/// creation, and for what happens to it while no courier holds it.
pub fn partner_of(shipment: &StoredShipment, milestone: Milestone) -> Option<&PartnerId> {
    match milestone {
        Milestone::Created => None,
        Milestone::Assigned(n) | Milestone::Released(n) => assignment(shipment, n).partner_id,
        _ => shipment
            .courier_id
            .as_ref()
            .and(shipment.partner_id.as_ref()),
    }
}

/// The name under which the shipment remembers the broker acknowledged the
/// partner's copy of a milestone's event.
pub fn partner_copy_name(milestone: Milestone) -> String {
    format!("partner:{}", milestone.name())
}

/// A milestone whose event, or whose partner's copy, the broker has not
/// acknowledged yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unannounced<'a> {
    pub milestone: Milestone,
    /// The event on the delivery stream is still to go out.
    pub event: bool,
    /// The partner whose copy is still to go out.
    pub partner: Option<&'a PartnerId>,
}

/// Every milestone with something still to publish, oldest first.
pub fn unannounced_anywhere(shipment: &StoredShipment) -> Vec<Unannounced<'_>> {
    history(shipment)
        .into_iter()
        .filter_map(|milestone| {
            let event = !shipment.announced.contains(&milestone.name());
            let partner = partner_of(shipment, milestone)
                .filter(|_| !shipment.announced.contains(&partner_copy_name(milestone)));
            (event || partner.is_some()).then_some(Unannounced {
                milestone,
                event,
                partner,
            })
        })
        .collect()
}

/// The partner's copy of a milestone's event: the same event, id and all,
/// without the operator who confirmed a delivery without the buyer's code
/// (the reason stays).
pub fn partner_envelope(shipment: &StoredShipment, milestone: Milestone) -> Envelope {
    let mut envelope = envelope(shipment, milestone);
    if let Some(Payload::ShipmentDelivered(delivered)) = &mut envelope.payload {
        delivered.overridden_by.clear();
    }
    envelope
}

/// The id of a milestone's event: the same whenever it is published again.
pub fn event_id(shipment: &StoredShipment, milestone: Milestone) -> Id {
    let courier = courier_of(shipment, milestone)
        .map(Id::as_str)
        .unwrap_or_default();
    let shipment_id = shipment.shipment_id.as_str();
    let name = milestone.name();
    match milestone {
        Milestone::Assigned(_)
        | Milestone::Released(_)
        | Milestone::PickedUp
        | Milestone::Delivered => deterministic_id("evt", &[shipment_id, &name, courier]),
        Milestone::Created | Milestone::Overdue | Milestone::Failed | Milestone::Withdrawn => {
            deterministic_id("evt", &[shipment_id, &name])
        }
    }
}

/// The envelope of a milestone, dated when the milestone happened.
pub fn envelope(shipment: &StoredShipment, milestone: Milestone) -> Envelope {
    let contents = &shipment.contents;
    let shipment_id = shipment.shipment_id.to_string();
    let courier_id = courier_of(shipment, milestone)
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
        Milestone::Assigned(n) => {
            let assignment = assignment(shipment, n);
            (
                Payload::CourierAssigned(CourierAssigned {
                    shipment_id,
                    courier_id,
                    pickup_point: contents.pickup_point.clone(),
                    ship_to: contents.ship_to.clone(),
                    distance_meters: assignment.distance_meters,
                }),
                assignment.assigned_at_ms,
            )
        }
        Milestone::Released(n) => (
            Payload::CourierReleased(CourierReleased {
                shipment_id,
                courier_id,
                reason: CourierReleaseReason::NotPickedUp.into(),
            }),
            n.checked_sub(1)
                .and_then(|index| shipment.releases.get(index))
                .map(|release| release.released_at_ms),
        ),
        Milestone::PickedUp => (
            Payload::ShipmentPickedUp(ShipmentPickedUp {
                shipment_id,
                courier_id,
                lines: contents.lines.clone(),
            }),
            shipment.picked_up_at_ms,
        ),
        Milestone::Overdue => (
            Payload::ShipmentOverdue(ShipmentOverdue {
                shipment_id,
                courier_id,
                picked_up_at: shipment.picked_up_at_ms.map(timestamp),
                overdue_since: shipment.overdue_since_ms.map(timestamp),
            }),
            shipment.overdue_at_ms,
        ),
        Milestone::Delivered => (
            Payload::ShipmentDelivered(ShipmentDelivered {
                shipment_id,
                courier_id,
                recipient_name: shipment.recipient_name.clone(),
                proof_reference: shipment.proof_reference.clone(),
                overridden_by: shipment.overridden_by.clone(),
                override_reason: shipment.override_reason.clone(),
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

    use super::*;
    use crate::model::{Release, sample_shipment};

    fn id(text: &str) -> Id {
        Id::parse(text).expect("valid")
    }

    /// The milestones whose delivery-stream event is still to go out.
    fn unannounced(shipment: &StoredShipment) -> Vec<Milestone> {
        unannounced_anywhere(shipment)
            .into_iter()
            .filter(|missing| missing.event)
            .map(|missing| missing.milestone)
            .collect()
    }

    fn shipment(state: State) -> StoredShipment {
        sample_shipment(state)
    }

    fn assigned(state: State) -> StoredShipment {
        StoredShipment {
            courier_id: Some(id("cou_1")),
            assigned_at_ms: Some(2_000),
            ..shipment(state)
        }
    }

    /// Assigned to `cou_1`, taken back, then (with `second`) assigned to
    /// `cou_2`.
    fn reassigned(state: State, second: bool) -> StoredShipment {
        let release = Release {
            courier_id: id("cou_1"),
            assigned_at_ms: 2_000,
            distance_meters: 700,
            released_at_ms: 3_602_000,
            partner_id: None,
        };
        StoredShipment {
            courier_id: second.then(|| id("cou_2")),
            assigned_at_ms: second.then_some(3_700_000),
            distance_meters: if second { 1_500 } else { 0 },
            releases: vec![release],
            ..shipment(state)
        }
    }

    #[test]
    fn history_follows_the_state() {
        use Milestone::*;
        assert_eq!(history(&shipment(State::Awaiting)), [Created]);
        assert_eq!(history(&assigned(State::Assigned)), [Created, Assigned(1)]);
        let no_courier = StoredShipment {
            failure: Some(FailureKind::NoCourier),
            ..shipment(State::Failed)
        };
        assert_eq!(history(&no_courier), [Created, Failed]);
        assert_eq!(history(&shipment(State::Withdrawn)), [Created, Withdrawn]);
        assert_eq!(
            history(&assigned(State::Withdrawn)),
            [Created, Assigned(1), Withdrawn]
        );
        let delivered = StoredShipment {
            picked_up_at_ms: Some(3_000),
            ..assigned(State::Delivered)
        };
        assert_eq!(
            history(&delivered),
            [Created, Assigned(1), PickedUp, Delivered]
        );
        let failed_on_the_road = StoredShipment {
            picked_up_at_ms: Some(3_000),
            failure: Some(FailureKind::DeliveryFailed),
            ..assigned(State::Failed)
        };
        assert_eq!(
            history(&failed_on_the_road),
            [Created, Assigned(1), PickedUp, Failed]
        );
    }

    #[test]
    fn a_taken_back_assignment_stays_in_the_history_before_the_next_one() {
        use Milestone::*;
        assert_eq!(
            history(&reassigned(State::Awaiting, false)),
            [Created, Assigned(1), Released(1)]
        );
        assert_eq!(
            history(&reassigned(State::Assigned, true)),
            [Created, Assigned(1), Released(1), Assigned(2)]
        );
        let nobody_else = StoredShipment {
            failure: Some(FailureKind::NoCourier),
            ..reassigned(State::Failed, false)
        };
        assert_eq!(
            history(&nobody_else),
            [Created, Assigned(1), Released(1), Failed]
        );
        let given_up = StoredShipment {
            picked_up_at_ms: Some(3_800_000),
            overdue_since_ms: Some(4_000_000),
            overdue_at_ms: Some(4_000_100),
            failure: Some(FailureKind::DeliveryFailed),
            ..reassigned(State::Failed, true)
        };
        assert_eq!(
            history(&given_up),
            [
                Created,
                Assigned(1),
                Released(1),
                Assigned(2),
                PickedUp,
                Overdue,
                Failed
            ]
        );
    }

    #[test]
    fn only_unacknowledged_events_are_announced_again() {
        let mut shipment = assigned(State::Assigned);
        shipment.announced.insert("created".to_owned());
        assert_eq!(unannounced(&shipment), [Milestone::Assigned(1)]);
        shipment.announced.insert("assigned".to_owned());
        assert!(unannounced(&shipment).is_empty());
    }

    #[test]
    fn after_a_crash_exactly_the_missing_events_go_out_again_with_their_ids() {
        use Milestone::*;
        let shipment = reassigned(State::Assigned, true);
        let everything = history(&shipment);
        let ids: Vec<Id> = everything
            .iter()
            .map(|milestone| event_id(&shipment, *milestone))
            .collect();
        // A crash after any number of acknowledged events, in order.
        for acknowledged in 0..=everything.len() {
            let mut after_crash = shipment.clone();
            after_crash.announced = everything[..acknowledged]
                .iter()
                .map(|milestone| milestone.name())
                .collect();
            let missing = unannounced(&after_crash);
            assert_eq!(missing, everything[acknowledged..]);
            let missing_ids: Vec<Id> = missing
                .iter()
                .map(|milestone| event_id(&after_crash, *milestone))
                .collect();
            assert_eq!(missing_ids, ids[acknowledged..]);
        }
        // The release's events do not change as the shipment moves on.
        let waiting = reassigned(State::Awaiting, false);
        for milestone in [Assigned(1), Released(1)] {
            assert_eq!(
                event_id(&waiting, milestone),
                event_id(&shipment, milestone)
            );
            assert_eq!(
                envelope(&waiting, milestone).payload,
                envelope(&shipment, milestone).payload
            );
        }
        // The first assignment keeps the id it had before reassignment.
        assert_eq!(
            event_id(&shipment, Assigned(1)),
            event_id(&assigned(State::Assigned), Assigned(1))
        );
        let distinct: BTreeSet<&Id> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "every event has its own id");
    }

    #[test]
    fn each_assignment_and_release_names_its_own_courier() {
        let shipment = reassigned(State::Assigned, true);
        let first = envelope(&shipment, Milestone::Assigned(1));
        match first.payload {
            Some(Payload::CourierAssigned(assigned)) => {
                assert_eq!(assigned.courier_id, "cou_1");
                assert_eq!(assigned.distance_meters, 700);
            }
            other => panic!("unexpected payload {other:?}"),
        }
        assert_eq!(first.occurred_at, Some(timestamp(2_000)));
        let released = envelope(&shipment, Milestone::Released(1));
        match released.payload {
            Some(Payload::CourierReleased(released)) => {
                assert_eq!(released.courier_id, "cou_1");
                assert_eq!(released.shipment_id, "shp_1");
                assert_eq!(released.reason(), CourierReleaseReason::NotPickedUp);
            }
            other => panic!("unexpected payload {other:?}"),
        }
        assert_eq!(released.occurred_at, Some(timestamp(3_602_000)));
        let second = envelope(&shipment, Milestone::Assigned(2));
        match second.payload {
            Some(Payload::CourierAssigned(assigned)) => {
                assert_eq!(assigned.courier_id, "cou_2");
                assert_eq!(assigned.distance_meters, 1_500);
            }
            other => panic!("unexpected payload {other:?}"),
        }
        assert_eq!(second.occurred_at, Some(timestamp(3_700_000)));
        assert_eq!(Milestone::Assigned(2).name(), "assigned:2");
        assert_eq!(Milestone::Released(1).name(), "released:1");
    }

    fn partner(name: &str) -> PartnerId {
        PartnerId::parse(name).expect("valid")
    }

    #[test]
    fn each_partner_gets_the_events_of_its_own_couriers_assignments() {
        use Milestone::*;
        let mut shipment = reassigned(State::PickedUp, true);
        shipment.picked_up_at_ms = Some(3_800_000);
        shipment.releases[0].partner_id = Some(partner("partner-a"));
        shipment.partner_id = Some(partner("partner-b"));
        let copies: Vec<(Milestone, Option<&str>)> = history(&shipment)
            .into_iter()
            .map(|milestone| {
                let to = partner_of(&shipment, milestone).map(PartnerId::as_str);
                (milestone, to)
            })
            .collect();
        assert_eq!(
            copies,
            [
                (Created, None),
                (Assigned(1), Some("partner-a")),
                (Released(1), Some("partner-a")),
                (Assigned(2), Some("partner-b")),
                (PickedUp, Some("partner-b")),
            ]
        );
        // Once the stream has every event, only the copies are missing; once
        // they are acknowledged too, nothing is.
        shipment.announced = history(&shipment).iter().map(|m| m.name()).collect();
        let missing = unannounced_anywhere(&shipment);
        assert_eq!(missing.len(), 4);
        assert!(missing.iter().all(|missing| !missing.event));
        shipment
            .announced
            .extend(history(&shipment).into_iter().map(partner_copy_name));
        assert!(unannounced_anywhere(&shipment).is_empty());
        // A shipment nobody holds tells no partner of its end.
        let mut expired = reassigned(State::Failed, false);
        expired.failure = Some(FailureKind::NoCourier);
        expired.releases[0].partner_id = Some(partner("partner-a"));
        assert_eq!(partner_of(&expired, Failed), None);
    }

    #[test]
    fn a_partners_copy_leaves_out_the_operator_who_overrode_the_code() {
        let delivered = StoredShipment {
            picked_up_at_ms: Some(3_000),
            delivered_at_ms: Some(4_000),
            overridden_by: "ops-wang".to_owned(),
            override_reason: "phone broken".to_owned(),
            partner_id: Some(partner("partner-b")),
            ..assigned(State::Delivered)
        };
        let copy = partner_envelope(&delivered, Milestone::Delivered);
        let original = envelope(&delivered, Milestone::Delivered);
        assert_eq!(copy.event_id, original.event_id);
        match (copy.payload, original.payload) {
            (
                Some(Payload::ShipmentDelivered(copy)),
                Some(Payload::ShipmentDelivered(original)),
            ) => {
                assert_eq!(original.overridden_by, "ops-wang");
                assert_eq!(copy.overridden_by, "");
                assert_eq!(copy.override_reason, "phone broken");
            }
            other => panic!("unexpected payloads {other:?}"),
        }
    }

    #[test]
    fn the_overdue_event_carries_the_pickup_and_the_deadline() {
        let overdue = StoredShipment {
            picked_up_at_ms: Some(10_000),
            overdue_since_ms: Some(20_000),
            overdue_at_ms: Some(20_300),
            ..assigned(State::PickedUp)
        };
        let envelope = envelope(&overdue, Milestone::Overdue);
        assert_eq!(envelope.occurred_at, Some(timestamp(20_300)));
        match envelope.payload {
            Some(Payload::ShipmentOverdue(payload)) => {
                assert_eq!(payload.courier_id, "cou_1");
                assert_eq!(payload.picked_up_at, Some(timestamp(10_000)));
                assert_eq!(payload.overdue_since, Some(timestamp(20_000)));
            }
            other => panic!("unexpected payload {other:?}"),
        }
    }

    #[test]
    fn event_ids_depend_on_the_cause_only() {
        let first = assigned(State::Assigned);
        let mut later = assigned(State::PickedUp);
        later.updated_at_ms = 9_999;
        assert_eq!(
            event_id(&first, Milestone::Assigned(1)),
            event_id(&later, Milestone::Assigned(1))
        );
        assert_ne!(
            event_id(&first, Milestone::Created),
            event_id(&first, Milestone::Assigned(1))
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
