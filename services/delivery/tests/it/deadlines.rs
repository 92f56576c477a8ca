//! Deadlines after the assignment: a shipment not picked up in time is taken
//! back from its courier and offered to another; one on the road too long is
//! flagged overdue once, then fails.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use harvest_bus::{Envelope, Payload};
use harvest_delivery::store::Step;
use harvest_domain::Id;
use harvest_proto::delivery::v1::{
    ConfirmDeliveryRequest, ConfirmPickupRequest, ShipmentState, StreamAssignmentsRequest,
};
use harvest_proto::events::v1::{CourierReleaseReason, ShipmentFailureReason};
use tokio_stream::StreamExt;
use tonic::Code;

use crate::helpers::{HANGZHOU, TestDelivery, WAIT, offset};

fn pick_up(courier: &str, shipment: &str) -> ConfirmPickupRequest {
    ConfirmPickupRequest {
        courier_id: courier.to_owned(),
        shipment_id: shipment.to_owned(),
    }
}

fn occurred(envelope: &Envelope) -> SystemTime {
    SystemTime::try_from(envelope.occurred_at.expect("dated")).expect("valid time")
}

/// The order's first event of the given type (without the package).
fn first_of<'a>(events: &'a [Envelope], kind: &str) -> &'a Envelope {
    events
        .iter()
        .find(|envelope| envelope.event_type.ends_with(kind))
        .unwrap_or_else(|| panic!("no {kind} event"))
}

/// Waits until the shipment is held by `courier`, reading Redis rather than
/// the stream, so that the courier can act well within a short deadline.
async fn wait_until_held_by(delivery: &TestDelivery, shipment_id: &Id, courier: &str) {
    let held = harvest_testkit::eventually(WAIT, || async {
        let shipment = delivery.store.shipment(shipment_id).await.ok()??;
        (shipment.state == harvest_delivery::model::State::Assigned
            && shipment.courier_id.as_ref().map(Id::as_str) == Some(courier))
        .then_some(())
    })
    .await;
    assert!(
        held.is_some(),
        "shipment {shipment_id} assigned to {courier}"
    );
}

async fn shipment_of(delivery: &TestDelivery, order: &Id) -> Id {
    harvest_testkit::eventually(WAIT, || async {
        delivery
            .store
            .order_shipments(order)
            .await
            .ok()?
            .into_iter()
            .next()
    })
    .await
    .expect("shipment created")
}

#[tokio::test]
async fn a_shipment_not_picked_up_in_time_goes_to_another_courier() {
    let delivery =
        TestDelivery::start_with(|config| config.assignment.pickup_deadline_secs = 2).await;
    delivery
        .courier("dawdler", "east", offset(HANGZHOU, 1.0, 0.0), 2, false)
        .await;
    delivery
        .courier("backup", "east", offset(HANGZHOU, 6.0, 0.0), 2, false)
        .await;
    let order = delivery.confirm_at("tea", HANGZHOU, false).await;
    let first = delivery.assigned(&order).await;
    assert_eq!(first.courier_id, "dawdler", "the nearest first");
    let shipment_id = Id::parse(&first.shipment_id).expect("valid");

    // The dawdler never picks it up: it goes to the backup, who does.
    wait_until_held_by(&delivery, &shipment_id, "backup").await;
    delivery
        .client
        .clone()
        .confirm_pickup(pick_up("backup", shipment_id.as_str()))
        .await
        .expect("the new courier picks it up");

    let released = delivery
        .wait_event(&order, |payload| match payload {
            Payload::CourierReleased(released) => Some(released.clone()),
            _ => None,
        })
        .await;
    assert_eq!(released.shipment_id, shipment_id.as_str());
    assert_eq!(released.courier_id, "dawdler");
    assert_eq!(released.reason(), CourierReleaseReason::NotPickedUp);

    let refused = delivery
        .client
        .clone()
        .confirm_pickup(pick_up("dawdler", shipment_id.as_str()))
        .await
        .expect_err("no longer the dawdler's");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("taken back"), "{refused:?}");
    assert_eq!(
        delivery.load_comes_to("dawdler", 0).await,
        0,
        "its unit is back"
    );
    assert_eq!(delivery.load_of("backup").await, 1);
    let dawdler = Id::parse("dawdler").expect("valid");
    assert!(
        delivery
            .store
            .open_shipments(&dawdler)
            .await
            .expect("redis")
            .is_empty()
    );

    // On the stream: released before the second assignment, every event
    // with its own id.
    delivery
        .wait_event(&order, |payload| {
            matches!(payload, Payload::ShipmentPickedUp(_)).then_some(())
        })
        .await;
    assert_eq!(
        delivery.event_types_of(&order),
        [
            "ShipmentCreated",
            "CourierAssigned",
            "CourierReleased",
            "CourierAssigned",
            "ShipmentPickedUp"
        ]
    );
    let events = delivery.events_of(&order);
    let assignments: Vec<(String, String)> = events
        .iter()
        .filter_map(|envelope| match &envelope.payload {
            Some(Payload::CourierAssigned(assigned)) => {
                Some((envelope.event_id.clone(), assigned.courier_id.clone()))
            }
            _ => None,
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(assignments.len(), 2, "{assignments:?}");
    let couriers: BTreeSet<&str> = assignments.iter().map(|(_, c)| c.as_str()).collect();
    assert_eq!(couriers, BTreeSet::from(["backup", "dawdler"]));
    assert_ne!(assignments[0].0, assignments[1].0);

    // The dawdler's assignment stream starts with its next shipment, not the
    // one taken back from it.
    let mut stream = delivery
        .client
        .clone()
        .stream_assignments(StreamAssignmentsRequest {
            courier_id: "dawdler".to_owned(),
        })
        .await
        .expect("stream opens")
        .into_inner();
    let next_order = delivery.confirm_at("tea", HANGZHOU, false).await;
    let next_shipment = shipment_of(&delivery, &next_order).await;
    let sent = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("an assignment in time")
        .expect("stream open")
        .expect("no error");
    assert_eq!(
        sent.shipment.expect("shipment").shipment_id,
        next_shipment.as_str()
    );
}

#[tokio::test]
async fn a_shipment_taken_back_with_nobody_else_around_fails_after_a_new_window() {
    let delivery = TestDelivery::start_with(|config| {
        config.assignment.pickup_deadline_secs = 1;
        config.assignment.deadline_secs = 2;
    })
    .await;
    delivery
        .courier("only", "east", offset(HANGZHOU, 1.0, 0.0), 3, false)
        .await;
    let order = delivery.confirm_at("honey", HANGZHOU, false).await;
    assert_eq!(delivery.assigned(&order).await.courier_id, "only");

    let failed = delivery.failed(&order).await;
    assert_eq!(failed.reason(), ShipmentFailureReason::NoCourier);
    assert!(failed.courier_id.is_empty());
    assert_eq!(
        delivery.event_types_of(&order),
        [
            "ShipmentCreated",
            "CourierAssigned",
            "CourierReleased",
            "ShipmentFailed"
        ]
    );
    let events = delivery.events_of(&order);
    let window = occurred(first_of(&events, "ShipmentFailed"))
        .duration_since(occurred(first_of(&events, "CourierReleased")))
        .expect("fails after the release");
    assert!(
        window >= Duration::from_secs(2),
        "searched for {window:?} after the release"
    );
    assert_eq!(delivery.load_comes_to("only", 0).await, 0);
}

#[tokio::test]
async fn a_shipment_on_the_road_too_long_is_flagged_overdue_once_then_fails() {
    let delivery = TestDelivery::start_with(|config| {
        config.assignment.transit_deadline_secs = 1;
        config.assignment.transit_give_up_secs = 3;
    })
    .await;
    delivery
        .courier("wanderer", "east", offset(HANGZHOU, 1.0, 0.0), 3, false)
        .await;
    let order = delivery.confirm_at("walnuts", HANGZHOU, false).await;
    let shipment_id = delivery.assigned(&order).await.shipment_id;
    let mut client = delivery.client.clone();
    client
        .confirm_pickup(pick_up("wanderer", &shipment_id))
        .await
        .expect("picked up");

    let failed = delivery.failed(&order).await;
    assert_eq!(failed.reason(), ShipmentFailureReason::DeliveryFailed);
    assert_eq!(failed.courier_id, "wanderer");
    assert!(
        failed.detail.contains("not delivered within 3 s of pickup"),
        "{}",
        failed.detail
    );
    assert_eq!(
        delivery.event_types_of(&order),
        [
            "ShipmentCreated",
            "CourierAssigned",
            "ShipmentPickedUp",
            "ShipmentOverdue",
            "ShipmentFailed"
        ]
    );

    let events = delivery.events_of(&order);
    let overdue: Vec<&Envelope> = events
        .iter()
        .filter(|envelope| matches!(envelope.payload, Some(Payload::ShipmentOverdue(_))))
        .collect();
    let ids: BTreeSet<&str> = overdue.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), 1, "flagged overdue once");
    let Some(Payload::ShipmentOverdue(flag)) = &overdue[0].payload else {
        unreachable!("filtered above");
    };
    assert_eq!(flag.courier_id, "wanderer");
    let picked_up_at = SystemTime::try_from(flag.picked_up_at.expect("set")).expect("valid");
    let overdue_since = SystemTime::try_from(flag.overdue_since.expect("set")).expect("valid");
    assert_eq!(
        overdue_since.duration_since(picked_up_at).ok(),
        Some(Duration::from_secs(1)),
        "overdue from the transit deadline on"
    );
    assert!(occurred(overdue[0]) >= overdue_since);
    let gave_up_after = occurred(first_of(&events, "ShipmentFailed"))
        .duration_since(picked_up_at)
        .expect("fails after the pickup");
    assert!(gave_up_after >= Duration::from_secs(3), "{gave_up_after:?}");

    // Over: the courier's unit is back, nothing is left to sweep, and the
    // courier can no longer deliver it.
    assert_eq!(delivery.load_comes_to("wanderer", 0).await, 0);
    let unscheduled = harvest_testkit::eventually(WAIT, || async {
        let pending = delivery.store.pending_count(&delivery.region).await.ok()?;
        (pending == 0).then_some(())
    })
    .await;
    assert!(unscheduled.is_some(), "nothing left to do for it");
    let late = client
        .confirm_delivery(ConfirmDeliveryRequest {
            courier_id: "wanderer".to_owned(),
            shipment_id: shipment_id.clone(),
            recipient_name: "Li Na".to_owned(),
            proof_reference: String::new(),
            delivery_code: crate::helpers::DELIVERY_CODE.to_owned(),
            override_reason: String::new(),
        })
        .await
        .expect_err("too late");
    assert_eq!(late.code(), Code::FailedPrecondition, "{late:?}");
    let shipment = delivery
        .store
        .shipment(&Id::parse(&shipment_id).expect("valid"))
        .await
        .expect("redis")
        .expect("kept");
    assert_eq!(shipment.state.to_proto(), ShipmentState::Failed);
}

#[tokio::test]
async fn a_release_cut_short_by_a_crash_is_announced_before_the_next_assignment() {
    let mut delivery = TestDelivery::start().await;
    delivery
        .courier("first", "east", offset(HANGZHOU, 1.0, 0.0), 2, false)
        .await;
    let order = delivery.confirm_at("chilli", HANGZHOU, false).await;
    let first = delivery.assigned(&order).await;
    assert_eq!(first.courier_id, "first");
    let shipment_id = Id::parse(&first.shipment_id).expect("valid");
    delivery
        .courier("second", "east", offset(HANGZHOU, 3.0, 0.0), 2, false)
        .await;
    delivery.kill();

    // As if the replica died right after taking the shipment back: the
    // release is in Redis, its event unpublished, the unit still held, and
    // the shipment due again once the dead replica's lease ran out.
    let first_courier = Id::parse("first").expect("valid");
    let store = &delivery.store;
    let released = store
        .step(
            &shipment_id,
            Step::Release {
                courier: &first_courier,
                assign_by_ms: harvest_delivery::model::now_ms() + 60_000,
            },
            harvest_delivery::model::now_ms(),
        )
        .await
        .expect("redis");
    assert_eq!(released, harvest_delivery::store::StepOutcome::Changed);
    assert_eq!(delivery.load_of("first").await, 1);
    store
        .schedule(&delivery.region, &shipment_id, 0)
        .await
        .expect("redis");

    delivery.start_again().await;

    let second = delivery
        .wait_event(&order, |payload| match payload {
            Payload::CourierAssigned(assigned) if assigned.courier_id != "first" => {
                Some(assigned.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(second.courier_id, "second");
    assert_eq!(
        delivery.event_types_of(&order),
        [
            "ShipmentCreated",
            "CourierAssigned",
            "CourierReleased",
            "CourierAssigned"
        ]
    );
    assert_eq!(
        delivery.load_comes_to("first", 0).await,
        0,
        "the unit is given back"
    );
    assert_eq!(delivery.load_of("second").await, 1);
}
