//! Finding couriers: the nearest one that can carry a shipment, within its
//! capacity under concurrency, retried until a deadline, on any replica.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use futures::future::join_all;
use harvest_bus::Payload;
use harvest_domain::{Id, new_id};
use harvest_proto::events::v1::ShipmentFailureReason;

use crate::helpers::{
    HANGZHOU, SHIJIAZHUANG, TestDelivery, WAIT, count_by_kind, decode_all, offset, order_confirmed,
    pickup,
};

#[tokio::test]
async fn assigns_the_nearest_available_courier_with_spare_capacity() {
    let delivery = TestDelivery::start().await;
    let point = HANGZHOU;
    delivery
        .courier("resting", "east", offset(point, 0.5, 0.0), 5, false)
        .await;
    delivery.set_available("resting", false).await;
    delivery
        .courier("near", "east", offset(point, 2.0, 0.0), 1, false)
        .await;
    delivery
        .courier("middle", "east", offset(point, 0.0, 5.0), 3, false)
        .await;
    delivery
        .courier("far", "east", offset(point, -20.0, 0.0), 3, false)
        .await;

    let first = delivery.confirm_at("tea", point, false).await;
    let assigned = delivery.assigned(&first).await;
    assert_eq!(assigned.courier_id, "near");
    assert!(
        (1_800..2_200).contains(&assigned.distance_meters),
        "about 2 km: {}",
        assigned.distance_meters
    );
    let point_of_event = assigned.pickup_point.expect("pickup point");
    assert_eq!(point_of_event.pickup_point_id, "pp_tea");
    assert!(assigned.ship_to.is_some());

    // The nearest is full now; the next nearest takes the next one.
    let second = delivery.confirm_at("tea", point, false).await;
    assert_eq!(delivery.assigned(&second).await.courier_id, "middle");
    assert_eq!(delivery.load_of("near").await, 1);
    assert_eq!(delivery.load_of("middle").await, 1);
    assert_eq!(delivery.load_of("resting").await, 0);

    // Created comes before assigned, on the order's partition.
    assert_eq!(
        delivery.event_types_of(&first),
        ["ShipmentCreated", "CourierAssigned"]
    );
    let message = delivery
        .events
        .messages()
        .into_iter()
        .find(|message| message.key.as_deref() == Some(first.as_str().as_bytes()))
        .expect("keyed by order id");
    assert_eq!(
        message.header("event-type"),
        Some("harvest.events.v1.ShipmentCreated")
    );
}

#[tokio::test]
async fn cold_chain_goods_never_go_to_a_courier_without_cold_chain() {
    let delivery = TestDelivery::start_with(|config| config.assignment.deadline_secs = 3).await;
    let point = HANGZHOU;
    delivery
        .courier("tricycle", "east", offset(point, 1.0, 0.0), 10, false)
        .await;
    delivery
        .courier("fridge-van", "east", offset(point, 30.0, 0.0), 1, true)
        .await;

    let frozen = delivery.confirm_at("dumplings", point, true).await;
    assert_eq!(delivery.assigned(&frozen).await.courier_id, "fridge-van");
    let dry = delivery.confirm_at("walnuts", point, false).await;
    assert_eq!(delivery.assigned(&dry).await.courier_id, "tricycle");

    // The only cold-chain courier is full: the nearby tricycle has room, but
    // the shipment waits for cold chain and fails without it.
    let more_frozen = delivery.confirm_at("dumplings", point, true).await;
    let failed = delivery.failed(&more_frozen).await;
    assert_eq!(failed.reason(), ShipmentFailureReason::NoCourier);
    assert!(failed.courier_id.is_empty());
    assert_eq!(
        count_by_kind(&delivery.events_of(&more_frozen)).get("assigned"),
        None
    );
    assert_eq!(delivery.load_of("tricycle").await, 1);
    assert_eq!(delivery.load_of("fridge-van").await, 1);
}

#[tokio::test]
async fn the_pickup_provinces_couriers_carry_it() {
    let delivery = TestDelivery::start().await;
    // The order is from the east, the goods wait in Hebei (north).
    let point = SHIJIAZHUANG;
    delivery
        .courier("east-neighbour", "east", offset(point, 0.5, 0.0), 5, false)
        .await;
    delivery
        .courier("north-local", "north", offset(point, 8.0, 0.0), 5, false)
        .await;
    let order = delivery
        .confirm(vec![pickup("millet", "Hebei", point, false)])
        .await;
    assert_eq!(delivery.assigned(&order).await.courier_id, "north-local");

    // A province outside the deployment's regions falls back to the order's.
    let order = delivery
        .confirm(vec![pickup("millet", "Yunnan", point, false)])
        .await;
    assert_eq!(delivery.assigned(&order).await.courier_id, "east-neighbour");
}

#[tokio::test]
async fn capacity_holds_under_100_concurrent_confirmations() {
    let delivery = TestDelivery::start_with(|config| config.assignment.deadline_secs = 8).await;
    let point = HANGZHOU;
    let capacities = BTreeMap::from([("a", 7), ("b", 5), ("c", 8)]);
    for (index, (name, capacity)) in capacities.iter().enumerate() {
        delivery
            .courier(
                name,
                "east",
                offset(point, index as f64, 0.0),
                *capacity,
                false,
            )
            .await;
    }
    let orders: Vec<Id> = (0..100).map(|_| new_id("ord")).collect();
    let published = join_all(orders.iter().map(|order_id| {
        delivery.orders.publish(order_confirmed(
            order_id,
            &delivery.region,
            vec![pickup("apples", "Zhejiang", point, false)],
        ))
    }))
    .await;
    assert!(
        published.iter().all(Result::is_ok),
        "every order is published"
    );

    // Every shipment ends assigned or failed for want of a courier.
    delivery
        .wait_for_each(&orders, Duration::from_secs(60), |payload| {
            matches!(
                payload,
                Payload::CourierAssigned(_) | Payload::ShipmentFailed(_)
            )
        })
        .await;

    let envelopes = decode_all(&delivery.events.messages());
    let mut per_courier: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut failed = BTreeSet::new();
    for envelope in &envelopes {
        match &envelope.payload {
            Some(Payload::CourierAssigned(assigned)) => {
                per_courier
                    .entry(assigned.courier_id.clone())
                    .or_default()
                    .insert(assigned.shipment_id.clone());
            }
            Some(Payload::ShipmentFailed(shipment_failed)) => {
                assert_eq!(shipment_failed.reason(), ShipmentFailureReason::NoCourier);
                failed.insert(shipment_failed.shipment_id.clone());
            }
            _ => {}
        }
    }
    for (name, capacity) in &capacities {
        let carried = per_courier.get(*name).map_or(0, BTreeSet::len);
        assert_eq!(
            carried, *capacity as usize,
            "courier {name} is used to capacity, not beyond"
        );
        assert_eq!(delivery.load_of(name).await, *capacity);
    }
    let assigned: BTreeSet<&String> = per_courier.values().flatten().collect();
    assert_eq!(assigned.len(), 20, "no shipment is assigned twice");
    assert_eq!(failed.len(), 80, "the rest fail at the deadline");
    assert!(assigned.iter().all(|shipment| !failed.contains(*shipment)));
    let counts = count_by_kind(&envelopes);
    assert_eq!(counts.get("created"), Some(&100));
}

#[tokio::test]
async fn without_a_courier_the_search_is_retried_until_the_deadline() {
    let delivery = TestDelivery::start_with(|config| config.assignment.deadline_secs = 2).await;
    let order = delivery.confirm_at("honey", HANGZHOU, false).await;
    let failed = delivery.failed(&order).await;
    assert_eq!(failed.reason(), ShipmentFailureReason::NoCourier);
    assert!(failed.detail.contains("no courier"), "{}", failed.detail);

    let events = delivery.events_of(&order);
    let time_of = |kind: &str| -> SystemTime {
        let envelope = events
            .iter()
            .find(|envelope| envelope.event_type.ends_with(kind))
            .expect("event present");
        SystemTime::try_from(envelope.occurred_at.expect("dated")).expect("valid time")
    };
    let waited = time_of("ShipmentFailed")
        .duration_since(time_of("ShipmentCreated"))
        .expect("fails after creation");
    assert!(waited >= Duration::from_secs(2), "gave up after {waited:?}");
    assert!(waited < Duration::from_secs(10), "gave up after {waited:?}");

    let shipment = delivery
        .client
        .clone()
        .get_shipment(harvest_proto::delivery::v1::GetShipmentRequest {
            shipment_id: failed.shipment_id.clone(),
        })
        .await
        .expect("found")
        .into_inner();
    assert_eq!(
        shipment.state(),
        harvest_proto::delivery::v1::ShipmentState::Failed
    );
}

#[tokio::test]
async fn a_courier_who_turns_up_later_gets_the_waiting_shipment() {
    let delivery = TestDelivery::start().await;
    let order = delivery.confirm_at("chilli", HANGZHOU, false).await;
    delivery
        .wait_event(&order, |payload| {
            matches!(payload, Payload::ShipmentCreated(_)).then_some(())
        })
        .await;
    // Nobody around: it waits.
    assert!(
        delivery
            .events
            .wait_for(Duration::from_millis(600), |messages| {
                decode_all(messages).into_iter().find(|envelope| {
                    envelope.order_id == order.as_str()
                        && matches!(envelope.payload, Some(Payload::CourierAssigned(_)))
                })
            })
            .await
            .is_none()
    );
    delivery
        .courier("latecomer", "east", offset(HANGZHOU, 3.0, 3.0), 2, false)
        .await;
    assert_eq!(delivery.assigned(&order).await.courier_id, "latecomer");
}

#[tokio::test]
async fn two_replicas_assign_each_waiting_shipment_once() {
    let delivery = TestDelivery::start().await;
    let _second = delivery.replica().await;
    let point = HANGZHOU;
    let orders: Vec<Id> = (0..30).map(|_| new_id("ord")).collect();
    for order_id in &orders {
        delivery
            .orders
            .publish(order_confirmed(
                order_id,
                &delivery.region,
                vec![pickup("pears", "Zhejiang", point, false)],
            ))
            .await
            .expect("published");
    }
    delivery
        .wait_for_each(&orders, WAIT, |payload| {
            matches!(payload, Payload::ShipmentCreated(_))
        })
        .await;

    // Both replicas' sweepers now race for the same waiting shipments.
    let capacities = [("x", 6), ("y", 9), ("z", 5)];
    for (index, (name, capacity)) in capacities.iter().enumerate() {
        delivery
            .courier(
                name,
                "east",
                offset(point, 0.0, index as f64),
                *capacity,
                false,
            )
            .await;
    }
    let assignments = delivery
        .events
        .wait_for(WAIT, |messages| {
            let assigned: Vec<(String, String)> = decode_all(messages)
                .into_iter()
                .filter_map(|envelope| match envelope.payload {
                    Some(Payload::CourierAssigned(assigned)) => {
                        Some((assigned.shipment_id, assigned.courier_id))
                    }
                    _ => None,
                })
                .collect();
            let shipments: BTreeSet<&String> =
                assigned.iter().map(|(shipment, _)| shipment).collect();
            (shipments.len() == 20).then_some(assigned)
        })
        .await
        .expect("every courier is filled");
    let mut couriers_of: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (shipment, courier) in assignments {
        couriers_of.entry(shipment).or_default().insert(courier);
    }
    assert!(
        couriers_of.values().all(|couriers| couriers.len() == 1),
        "each shipment has exactly one courier: {couriers_of:?}"
    );
    for (name, capacity) in capacities {
        let carried = couriers_of
            .values()
            .filter(|couriers| couriers.contains(name))
            .count();
        assert_eq!(carried, capacity as usize, "courier {name}");
        // No unit of capacity is held by a shipment that went elsewhere.
        assert_eq!(delivery.load_of(name).await, capacity);
        let open = delivery
            .store
            .open_shipments(&Id::parse(name).expect("valid"))
            .await
            .expect("redis");
        assert_eq!(open.len(), capacity as usize, "courier {name}");
    }
}
