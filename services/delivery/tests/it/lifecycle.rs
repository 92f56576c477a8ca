//! How delivery follows orders through the broker: redelivered events change
//! nothing twice, cancellations withdraw what is not on the road yet, and
//! malformed events go to the dead-letter topic.

use harvest_bus::{Payload, new_envelope};
use harvest_domain::{Id, deterministic_id, new_id};
use harvest_proto::delivery::v1::{ConfirmPickupRequest, GetShipmentRequest, ShipmentState};
use harvest_proto::events::v1::{OrderConfirmed, OrderPlaced};

use harvest_delivery::store::{Claim, Step, StepOutcome};
use harvest_proto::common::v1::GeoPoint;

use crate::helpers::{
    HANGZHOU, SHIJIAZHUANG, TestDelivery, WAIT, count_by_kind, decode_all, offset, order_cancelled,
    order_confirmed, pickup,
};

#[tokio::test]
async fn a_redelivered_confirmation_creates_no_second_shipment() {
    let delivery = TestDelivery::start().await;
    delivery
        .courier("only", "east", offset(HANGZHOU, 1.0, 0.0), 10, false)
        .await;
    let order_id = new_id("ord");
    let pickups = vec![
        pickup("tea", "Zhejiang", HANGZHOU, false),
        pickup("bamboo", "Zhejiang", offset(HANGZHOU, 2.0, 2.0), false),
    ];
    let confirmed = order_confirmed(&order_id, &delivery.region, pickups);
    delivery
        .orders
        .publish(confirmed.clone())
        .await
        .expect("published");
    let both_assigned = delivery
        .events
        .wait_for(WAIT, |messages| {
            let counts = count_by_kind(
                &decode_all(messages)
                    .into_iter()
                    .filter(|envelope| envelope.order_id == order_id.as_str())
                    .collect::<Vec<_>>(),
            );
            (counts.get("assigned") == Some(&2)).then_some(())
        })
        .await;
    assert!(both_assigned.is_some(), "one shipment per pickup point");

    // The same event again, and the same order confirmed under another id.
    let partition = delivery
        .orders
        .publish(confirmed.clone())
        .await
        .expect("published")
        .partition;
    let mut again = confirmed;
    again.event_id = deterministic_id("evt", &[order_id.as_str(), "confirmed-again"]).to_string();
    delivery.orders.publish(again).await.expect("published");
    delivery.handled_up_to(partition).await;

    let events = delivery.events_of(&order_id);
    let counts = count_by_kind(&events);
    assert_eq!(counts.get("created"), Some(&2));
    assert_eq!(counts.get("assigned"), Some(&2));
    assert_eq!(counts.len(), 2, "{counts:?}");
    let shipments = delivery
        .store
        .order_shipments(&order_id)
        .await
        .expect("redis");
    assert_eq!(shipments.len(), 2);
    assert_eq!(
        delivery.load_of("only").await,
        2,
        "capacity is taken once per shipment"
    );
}

#[tokio::test]
async fn cancellation_withdraws_what_is_not_picked_up_and_frees_the_courier() {
    let delivery = TestDelivery::start().await;
    let tea_point = HANGZHOU;
    let bamboo_point = offset(HANGZHOU, 40.0, 0.0);
    delivery
        .courier("tea-runner", "east", offset(tea_point, 1.0, 0.0), 1, false)
        .await;
    delivery
        .courier(
            "bamboo-runner",
            "east",
            offset(bamboo_point, 1.0, 0.0),
            1,
            false,
        )
        .await;
    let order = delivery
        .confirm(vec![
            pickup("tea", "Zhejiang", tea_point, false),
            pickup("bamboo", "Zhejiang", bamboo_point, false),
        ])
        .await;
    let assigned: Vec<(String, String)> = delivery
        .events
        .wait_for(WAIT, |messages| {
            let assigned: Vec<(String, String)> = decode_all(messages)
                .into_iter()
                .filter(|envelope| envelope.order_id == order.as_str())
                .filter_map(|envelope| match envelope.payload {
                    Some(Payload::CourierAssigned(assigned)) => {
                        Some((assigned.courier_id, assigned.shipment_id))
                    }
                    _ => None,
                })
                .collect();
            (assigned.len() == 2).then_some(assigned)
        })
        .await
        .expect("both shipments assigned");
    let shipment_of = |courier: &str| {
        assigned
            .iter()
            .find(|(name, _)| name == courier)
            .map(|(_, shipment)| shipment.clone())
            .expect("assigned")
    };
    let tea_shipment = shipment_of("tea-runner");
    let bamboo_shipment = shipment_of("bamboo-runner");
    delivery
        .client
        .clone()
        .confirm_pickup(ConfirmPickupRequest {
            courier_id: "tea-runner".to_owned(),
            shipment_id: tea_shipment.clone(),
        })
        .await
        .expect("picked up");

    delivery.cancel(&order).await;
    let withdrawn = delivery
        .wait_event(&order, |payload| match payload {
            Payload::ShipmentWithdrawn(withdrawn) => Some(withdrawn.clone()),
            _ => None,
        })
        .await;
    assert_eq!(withdrawn.shipment_id, bamboo_shipment);
    assert_eq!(withdrawn.courier_id, "bamboo-runner");
    assert_eq!(delivery.load_comes_to("bamboo-runner", 0).await, 0);
    assert_eq!(
        delivery.load_of("tea-runner").await,
        1,
        "goods on the road stay"
    );
    let state_of = |shipment_id: String| {
        let mut client = delivery.client.clone();
        async move {
            client
                .get_shipment(GetShipmentRequest { shipment_id })
                .await
                .expect("found")
                .into_inner()
                .state()
        }
    };
    assert_eq!(state_of(tea_shipment).await, ShipmentState::PickedUp);
    assert_eq!(state_of(bamboo_shipment).await, ShipmentState::Withdrawn);

    // The freed courier takes the next order at once.
    let next = delivery.confirm_at("bamboo", bamboo_point, false).await;
    assert_eq!(delivery.assigned(&next).await.courier_id, "bamboo-runner");
    assert_eq!(
        count_by_kind(&delivery.events_of(&order)).get("withdrawn"),
        Some(&1)
    );
}

#[tokio::test]
async fn a_waiting_shipment_of_a_cancelled_order_is_withdrawn_and_never_assigned() {
    let delivery = TestDelivery::start().await;
    let order = delivery.confirm_at("honey", HANGZHOU, false).await;
    delivery
        .wait_event(&order, |payload| {
            matches!(payload, Payload::ShipmentCreated(_)).then_some(())
        })
        .await;
    delivery.cancel(&order).await;
    let withdrawn = delivery
        .wait_event(&order, |payload| match payload {
            Payload::ShipmentWithdrawn(withdrawn) => Some(withdrawn.clone()),
            _ => None,
        })
        .await;
    assert!(withdrawn.courier_id.is_empty());

    // Out of the sweeper's sight for good.
    let unscheduled = harvest_testkit::eventually(WAIT, || async {
        let pending = delivery.store.pending_count(&delivery.region).await.ok()?;
        (pending == 0).then_some(())
    })
    .await;
    assert!(unscheduled.is_some(), "nothing left to do for it");

    // A courier turns up and takes the next order, not the withdrawn one.
    delivery
        .courier("eager", "east", offset(HANGZHOU, 1.0, 0.0), 3, false)
        .await;
    let next = delivery.confirm_at("honey", HANGZHOU, false).await;
    assert_eq!(delivery.assigned(&next).await.courier_id, "eager");
    assert_eq!(delivery.load_of("eager").await, 1);
    assert_eq!(
        count_by_kind(&delivery.events_of(&order)).get("assigned"),
        None
    );
}

#[tokio::test]
async fn a_confirmation_after_the_cancellation_creates_nothing() {
    let delivery = TestDelivery::start().await;
    delivery
        .courier("idle", "east", offset(HANGZHOU, 1.0, 0.0), 3, false)
        .await;
    let order_id = new_id("ord");
    delivery
        .orders
        .publish(order_cancelled(&order_id, &delivery.region))
        .await
        .expect("published");
    let partition = delivery
        .orders
        .publish(order_confirmed(
            &order_id,
            &delivery.region,
            vec![pickup("tea", "Zhejiang", HANGZHOU, false)],
        ))
        .await
        .expect("published")
        .partition;
    delivery.handled_up_to(partition).await;
    assert!(delivery.events_of(&order_id).is_empty());
    assert!(
        delivery
            .store
            .order_shipments(&order_id)
            .await
            .expect("redis")
            .is_empty()
    );
}

#[tokio::test]
async fn malformed_events_are_dead_lettered_and_others_ignored() {
    let delivery = TestDelivery::start().await;
    delivery
        .courier("steady", "east", offset(HANGZHOU, 1.0, 0.0), 3, false)
        .await;
    let order_id = new_id("ord");
    let no_pickups = new_envelope(
        &deterministic_id("evt", &[order_id.as_str(), "orders", "confirmed"]),
        &order_id,
        &delivery.region,
        "orders",
        Payload::OrderConfirmed(OrderConfirmed::default()),
    );
    delivery
        .orders
        .publish(no_pickups)
        .await
        .expect("published");
    // Not for delivery: ignored without a trace.
    let placed_id = new_id("ord");
    let placed = new_envelope(
        &deterministic_id("evt", &[placed_id.as_str(), "orders", "placed"]),
        &placed_id,
        &delivery.region,
        "orders",
        Payload::OrderPlaced(OrderPlaced::default()),
    );
    let placed_partition = delivery
        .orders
        .publish(placed)
        .await
        .expect("published")
        .partition;

    let reason = delivery
        .dead_letters
        .wait_for(WAIT, |messages| {
            messages
                .iter()
                .find(|message| message.key.as_deref() == Some(order_id.as_str().as_bytes()))
                .and_then(|message| message.header("dead-letter-reason").map(str::to_owned))
        })
        .await
        .expect("dead-lettered");
    assert!(reason.contains("no pickups"), "{reason}");

    // The consumer carries on.
    let next = delivery.confirm_at("tea", HANGZHOU, false).await;
    assert_eq!(delivery.assigned(&next).await.courier_id, "steady");
    delivery.handled_up_to(placed_partition).await;
    assert!(delivery.events_of(&order_id).is_empty());
    assert!(delivery.events_of(&placed_id).is_empty());
    let dead = delivery.dead_letters.messages();
    assert!(
        dead.iter()
            .all(|message| message.key.as_deref() != Some(placed_id.as_str().as_bytes()))
    );
}

#[tokio::test]
async fn work_cut_short_by_a_crash_is_finished_from_redis() {
    let mut delivery = TestDelivery::start().await;
    // Goods in Hebei and no north courier yet: both shipments wait.
    let waiting = delivery
        .confirm(vec![pickup("millet", "Hebei", SHIJIAZHUANG, false)])
        .await;
    let abandoned = delivery
        .confirm(vec![pickup("dates", "Hebei", SHIJIAZHUANG, false)])
        .await;
    let shipment_of = |order: &Id| {
        let order = order.clone();
        let store = delivery.store.clone();
        async move {
            harvest_testkit::eventually(WAIT, || async {
                store.order_shipments(&order).await.ok()?.into_iter().next()
            })
            .await
            .expect("shipment created")
        }
    };
    let waiting_shipment = shipment_of(&waiting).await;
    let abandoned_shipment = shipment_of(&abandoned).await;
    // Registered far away, so that nobody assigns it before the crash.
    delivery
        .courier(
            "north-1",
            "north",
            offset(SHIJIAZHUANG, 900.0, 0.0),
            3,
            false,
        )
        .await;
    let north = Id::parse("north-1").expect("valid");
    let pool = harvest_domain::Region::parse("north").expect("valid");
    delivery.kill();

    // As if the replica died half-way through its work on each shipment: one
    // is assigned in Redis but its event was never published; the other
    // holds a unit of the courier that it never got.
    let store = &delivery.store;
    let near = GeoPoint {
        latitude: SHIJIAZHUANG.0,
        longitude: SHIJIAZHUANG.1 + 0.01,
    };
    store
        .update_courier_status(&north, true, Some(&near), 0)
        .await
        .expect("redis");
    for shipment in [&waiting_shipment, &abandoned_shipment] {
        store.record_claim(shipment, &north).await.expect("redis");
        let claim = store
            .claim_courier(&north, shipment, &pool, false, 0)
            .await
            .expect("redis");
        assert_eq!(claim, Claim::Claimed);
    }
    let assigned = store
        .step(
            &waiting_shipment,
            Step::Assign {
                courier: &north,
                distance_meters: 1_000,
                partner: None,
            },
            // Now, so that its pickup deadline is still ahead.
            harvest_delivery::model::now_ms(),
        )
        .await
        .expect("redis");
    assert_eq!(assigned, StepOutcome::Changed);
    assert_eq!(delivery.load_of("north-1").await, 2);

    delivery.start_again().await;

    // The restarted service announces the assignment...
    let event = delivery.assigned(&waiting).await;
    assert_eq!(event.courier_id, "north-1");
    assert_eq!(event.shipment_id, waiting_shipment.as_str());
    // ...and the other shipment still gets its courier, whose capacity is
    // counted once.
    let event = delivery.assigned(&abandoned).await;
    assert_eq!(event.courier_id, "north-1");
    assert_eq!(delivery.load_of("north-1").await, 2);

    // Withdrawing one gives its unit back, claims included.
    delivery.cancel(&abandoned).await;
    delivery
        .wait_event(&abandoned, |payload| {
            matches!(payload, Payload::ShipmentWithdrawn(_)).then_some(())
        })
        .await;
    assert_eq!(delivery.load_comes_to("north-1", 1).await, 1);
}
