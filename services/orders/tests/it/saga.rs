//! The order saga, driven by the other services' events on the bus.

use std::time::{Duration, SystemTime};

use harvest_bus::Payload;
use harvest_proto::common::v1::{CancelReason, OrderState};
use harvest_proto::events::v1::{
    LineShortfall, PaymentAuthorized, PaymentDeclined, ShipmentFailureReason, ShortfallReason,
    StockRejected,
};
use harvest_proto::orders::v1::{CancelOrderRequest, GetOrderRequest, ListOrdersRequest};
use tonic::Code;

const REFUSED: &str = "harvest_orders_events_refused_total";
const PARKED: &str = "harvest_orders_events_parked_total";

use crate::helpers::{
    WAIT, World, assigned, delivered, failed, picked_up, place, stock_reserved, wait_state, watch,
};

async fn cancel(
    orders: &crate::helpers::Running,
    order_id: &str,
    reason: &str,
) -> Result<(), tonic::Status> {
    orders
        .client
        .clone()
        .cancel_order(CancelOrderRequest {
            order_id: order_id.to_owned(),
            buyer_id: "buyer-hangzhou-1".to_owned(),
            reason: reason.to_owned(),
        })
        .await
        .map(|_| ())
}

fn authorized() -> Payload {
    Payload::PaymentAuthorized(PaymentAuthorized {
        payment_id: "pay-1".to_owned(),
        amount_fen: 5_000,
        provider_reference: "ref".to_owned(),
    })
}

#[tokio::test]
async fn happy_path_to_delivered_with_two_pickups() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 3), ("prd_honey", 2)];
    let order = place(&orders.client, &lines).await;
    assert_eq!(order.state(), OrderState::Placed);
    let id = order.order_id.as_str();
    let placed = world
        .wait_event(id, |p| matches!(p, Payload::OrderPlaced(_)))
        .await;
    let Some(Payload::OrderPlaced(placed)) = placed.payload else {
        unreachable!()
    };
    assert_eq!(placed.lines.len(), 2);
    assert_eq!(placed.payment_method, "approve");

    world
        .send(id, "reserved", stock_reserved(&lines, None))
        .await;
    let reserved = wait_state(&orders.client, id, OrderState::Reserved).await;
    assert_eq!(reserved.total_fen, 5_000, "priced from the reservation");
    assert_eq!(reserved.lines[0].unit_price_fen, 1_000);

    world.send(id, "authorized", authorized()).await;
    wait_state(&orders.client, id, OrderState::Confirmed).await;
    let confirmed = world
        .wait_event(id, |p| matches!(p, Payload::OrderConfirmed(_)))
        .await;
    let Some(Payload::OrderConfirmed(confirmed)) = confirmed.payload else {
        unreachable!()
    };
    assert_eq!(confirmed.pickups.len(), 2);
    assert_eq!(confirmed.total_fen, 5_000);
    assert!(confirmed.ship_to.is_some());

    world.send(id, "assigned-1", assigned("shp-1")).await;
    wait_state(&orders.client, id, OrderState::Dispatching).await;
    world.send(id, "assigned-2", assigned("shp-2")).await;
    world.send(id, "picked-1", picked_up("shp-1")).await;
    wait_state(&orders.client, id, OrderState::InTransit).await;
    world.send(id, "picked-2", picked_up("shp-2")).await;
    world.send(id, "delivered-1", delivered("shp-1")).await;
    // One of two shipments delivered is not delivery of the order.
    let still = orders
        .client
        .clone()
        .get_order(GetOrderRequest {
            order_id: id.to_owned(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_ne!(still.state(), OrderState::Delivered);
    world.send(id, "delivered-2", delivered("shp-2")).await;
    let done = wait_state(&orders.client, id, OrderState::Delivered).await;

    let path: Vec<(OrderState, OrderState)> =
        done.history.iter().map(|t| (t.from(), t.to())).collect();
    assert_eq!(
        path,
        vec![
            (OrderState::Unspecified, OrderState::Placed),
            (OrderState::Placed, OrderState::Reserved),
            (OrderState::Reserved, OrderState::Confirmed),
            (OrderState::Confirmed, OrderState::Dispatching),
            (OrderState::Dispatching, OrderState::InTransit),
            (OrderState::InTransit, OrderState::Delivered),
        ]
    );
    let delivered_event = world
        .wait_event(id, |p| matches!(p, Payload::OrderDelivered(_)))
        .await;
    let Some(Payload::OrderDelivered(delivered_event)) = delivered_event.payload else {
        unreachable!()
    };
    assert_eq!(delivered_event.total_fen, 5_000);
    assert_eq!(
        delivered_event.lines.len(),
        2,
        "payments pays each seller from these"
    );
    // Operators see each region's orders move: one transition per step.
    let delivered_in_east = orders
        .metric(r#"harvest_orders_transitions_total{region="east",to="DELIVERED"}"#)
        .await;
    assert_eq!(delivered_in_east, 1.0);
    let confirmed_in_east = orders
        .metric(r#"harvest_orders_transitions_total{region="east",to="CONFIRMED"}"#)
        .await;
    assert_eq!(confirmed_in_east, 1.0);
}

/// The shipment of `product`'s pickup point (see `stock_reserved`).
fn shipment_of(order_id: &str, product: &str) -> String {
    harvest_domain::shipment_id(order_id, &format!("pp-{product}")).to_string()
}

/// Brings an order of `lines` to DISPATCHING, each line its own shipment.
async fn dispatching(
    world: &World,
    orders: &crate::helpers::Running,
    lines: &[(&str, i64)],
) -> String {
    let id = place(&orders.client, lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    for (product, _) in lines {
        let shipment = shipment_of(&id, product);
        world
            .send(&id, &format!("assigned-{product}"), assigned(&shipment))
            .await;
    }
    wait_state(&orders.client, &id, OrderState::Dispatching).await;
    id
}

/// A shipment that fails while another is under way leaves the order going
/// on without its lines: the buyer sees the failure at once (a transition
/// from the state to itself, and the failed shipment on the order), the
/// catalog is told to release its stock, and once the other shipment is
/// delivered the order is DELIVERED, charged for the delivered lines only.
#[tokio::test]
async fn a_failed_shipment_among_several_is_settled_on_its_own() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 3), ("prd_honey", 2)];
    let id = dispatching(&world, &orders, &lines).await;
    let mut updates = watch(&orders.client, &id).await;
    let first = updates.message().await.expect("stream").expect("first");
    assert_eq!(first.order.expect("order").state(), OrderState::Dispatching);

    let apples = shipment_of(&id, "prd_apples");
    let honey = shipment_of(&id, "prd_honey");
    world
        .send(
            &id,
            "no-courier",
            failed(&honey, ShipmentFailureReason::NoCourier),
        )
        .await;
    let update = updates.message().await.expect("stream").expect("an update");
    let transition = update.transition.expect("transition");
    assert_eq!(
        (transition.from(), transition.to()),
        (OrderState::Dispatching, OrderState::Dispatching)
    );
    assert!(transition.detail.contains(&honey), "{}", transition.detail);
    let order = update.order.expect("order");
    assert_eq!(order.state(), OrderState::Dispatching, "the order goes on");
    assert_eq!(order.failed_shipments.len(), 1);
    let failure = &order.failed_shipments[0];
    assert_eq!(failure.shipment_id, honey);
    assert_eq!(failure.pickup_point_id, "pp-prd_honey");
    assert_eq!(failure.pickup_point_name, "collection point of prd_honey");
    assert_eq!(failure.reason(), CancelReason::NoCourier);
    assert_eq!(failure.lines_fen, 2_000);
    assert_eq!(failure.lines.len(), 1);
    assert_eq!(failure.lines[0].product_id, "prd_honey");
    assert_eq!(order.charged_fen, 0, "charged once delivered");

    let dropped = world
        .wait_event(&id, |p| matches!(p, Payload::OrderShipmentFailed(_)))
        .await;
    let Some(Payload::OrderShipmentFailed(dropped)) = dropped.payload else {
        unreachable!()
    };
    assert_eq!(dropped.shipment_id, honey);
    assert_eq!(dropped.reason(), CancelReason::NoCourier);
    assert_eq!(dropped.lines.len(), 1, "the catalog releases these");
    assert_eq!(dropped.lines[0].product_id, "prd_honey");
    assert_eq!(dropped.lines_fen, 2_000);

    world.send(&id, "picked", picked_up(&apples)).await;
    world.send(&id, "delivered", delivered(&apples)).await;
    let done = wait_state(&orders.client, &id, OrderState::Delivered).await;
    assert_eq!(done.total_fen, 5_000);
    assert_eq!(done.charged_fen, 3_000, "the delivered lines only");
    assert_eq!(done.failed_shipments.len(), 1);
    assert!(
        done.history
            .last()
            .expect("history")
            .detail
            .contains("in part"),
        "{:?}",
        done.history.last()
    );
    let delivered_event = world
        .wait_event(&id, |p| matches!(p, Payload::OrderDelivered(_)))
        .await;
    let Some(Payload::OrderDelivered(delivered_event)) = delivered_event.payload else {
        unreachable!()
    };
    assert_eq!(delivered_event.total_fen, 3_000, "payments captures this");
    assert_eq!(delivered_event.lines.len(), 1);
    assert_eq!(delivered_event.lines[0].product_id, "prd_apples");
    assert_eq!(delivered_event.undelivered_fen, 2_000);
    assert_eq!(delivered_event.undelivered_lines.len(), 1);
    assert!(
        world
            .events_of(&id)
            .iter()
            .all(|e| !matches!(e.payload, Some(Payload::OrderCancelled(_))))
    );
}

/// The last shipment to end decides: a failure after the other shipment was
/// delivered ends the order DELIVERED (the failure announced first); a
/// failure after every other one failed cancels it.
#[tokio::test]
async fn the_last_shipment_to_end_decides_how_the_order_ends() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1), ("prd_honey", 1)];

    let id = dispatching(&world, &orders, &lines).await;
    let (apples, honey) = (
        shipment_of(&id, "prd_apples"),
        shipment_of(&id, "prd_honey"),
    );
    world.send(&id, "picked-apples", picked_up(&apples)).await;
    world.send(&id, "picked-honey", picked_up(&honey)).await;
    world.send(&id, "delivered", delivered(&apples)).await;
    wait_state(&orders.client, &id, OrderState::InTransit).await;
    world
        .send(
            &id,
            "lost",
            failed(&honey, ShipmentFailureReason::DeliveryFailed),
        )
        .await;
    let done = wait_state(&orders.client, &id, OrderState::Delivered).await;
    assert_eq!(done.charged_fen, 1_000);
    let tail: Vec<(OrderState, OrderState)> = done.history[done.history.len() - 2..]
        .iter()
        .map(|t| (t.from(), t.to()))
        .collect();
    assert_eq!(
        tail,
        [
            (OrderState::InTransit, OrderState::InTransit),
            (OrderState::InTransit, OrderState::Delivered)
        ]
    );
    assert_eq!(
        done.failed_shipments[0].reason(),
        CancelReason::DeliveryFailed
    );
    world
        .wait_event(&id, |p| matches!(p, Payload::OrderDelivered(_)))
        .await;
    let events = world.events_of(&id);
    let kinds: Vec<&str> = events
        .iter()
        .map(|e| e.event_type.as_str())
        .filter(|kind| kind.ends_with("OrderShipmentFailed") || kind.ends_with("OrderDelivered"))
        .map(|kind| kind.trim_start_matches("harvest.events.v1."))
        .collect();
    assert_eq!(kinds, ["OrderShipmentFailed", "OrderDelivered"]);

    let id = dispatching(&world, &orders, &lines).await;
    let (apples, honey) = (
        shipment_of(&id, "prd_apples"),
        shipment_of(&id, "prd_honey"),
    );
    world
        .send(
            &id,
            "no-courier",
            failed(&apples, ShipmentFailureReason::NoCourier),
        )
        .await;
    world
        .wait_event(&id, |p| matches!(p, Payload::OrderShipmentFailed(_)))
        .await;
    world
        .send(
            &id,
            "no-courier-either",
            failed(&honey, ShipmentFailureReason::NoCourier),
        )
        .await;
    let cancelled = wait_state(&orders.client, &id, OrderState::Cancelled).await;
    assert_eq!(cancelled.cancel_reason(), CancelReason::NoCourier);
    assert_eq!(cancelled.charged_fen, 0);
    let cancellation = world
        .wait_event(&id, |p| matches!(p, Payload::OrderCancelled(_)))
        .await;
    let Some(Payload::OrderCancelled(cancellation)) = cancellation.payload else {
        unreachable!()
    };
    assert_eq!(cancellation.lines.len(), 2, "every line is released");
    let failures = world
        .events_of(&id)
        .iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderShipmentFailed(_))))
        .count();
    assert_eq!(
        failures, 1,
        "the failure that cancels is not announced on its own"
    );
}

async fn assert_cancelled(
    world: &World,
    client: &crate::helpers::Running,
    id: &str,
    reason: CancelReason,
) {
    let order = wait_state(&client.client, id, OrderState::Cancelled).await;
    assert_eq!(order.cancel_reason(), reason, "{order:?}");
    let event = world
        .wait_event(id, |p| matches!(p, Payload::OrderCancelled(_)))
        .await;
    let Some(Payload::OrderCancelled(cancelled)) = event.payload else {
        unreachable!()
    };
    assert_eq!(cancelled.reason(), reason);
    assert!(
        !cancelled.lines.is_empty(),
        "the lines travel with the cancellation, for releasing stock"
    );
}

#[tokio::test]
async fn every_cancellation_reason() {
    let world = World::with(|config| config.orders.payment_deadline_secs = 2).await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];

    // Out of stock, and unknown product.
    let id = place(&orders.client, &lines).await.order_id;
    let short = |reason: ShortfallReason| {
        Payload::StockRejected(StockRejected {
            shortfalls: vec![LineShortfall {
                product_id: "prd_apples".to_owned(),
                requested: 1,
                available: 0,
                reason: reason.into(),
                ..LineShortfall::default()
            }],
        })
    };
    world
        .send(&id, "rejected", short(ShortfallReason::InsufficientStock))
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::OutOfStock).await;
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "rejected", short(ShortfallReason::UnknownProduct))
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::UnknownProduct).await;

    // Over the product's per-buyer limit: the buyer is told the limit.
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(
            &id,
            "rejected",
            Payload::StockRejected(StockRejected {
                shortfalls: vec![LineShortfall {
                    product_id: "prd_apples".to_owned(),
                    requested: 1,
                    available: 0,
                    reason: ShortfallReason::PerBuyerLimit.into(),
                    per_buyer_limit: 2,
                    buyer_holds: 2,
                    per_buyer_window_hours: 24,
                }],
            }),
        )
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::PerBuyerLimit).await;
    let order = wait_state(&orders.client, &id, OrderState::Cancelled).await;
    assert_eq!(
        order.cancel_detail,
        "at most 2 per buyer of prd_apples within 24 h; you already hold 2, this order asks for 1"
    );

    // Payment declined.
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world
        .send(
            &id,
            "declined",
            Payload::PaymentDeclined(PaymentDeclined {
                payment_id: "pay".to_owned(),
                reason: "insufficient funds".to_owned(),
            }),
        )
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::PaymentDeclined).await;
    let order = wait_state(&orders.client, &id, OrderState::Cancelled).await;
    assert_eq!(order.cancel_detail, "insufficient funds");

    // Buyer cancelled.
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    wait_state(&orders.client, &id, OrderState::Reserved).await;
    cancel(&orders, &id, "ordered twice")
        .await
        .expect("cancelled");
    assert_cancelled(&world, &orders, &id, CancelReason::BuyerCancelled).await;

    // Payment deadline (2 s here).
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::PaymentDeadline).await;

    // No courier.
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    wait_state(&orders.client, &id, OrderState::Confirmed).await;
    world
        .send(
            &id,
            "no-courier",
            failed("shp-1", ShipmentFailureReason::NoCourier),
        )
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::NoCourier).await;

    // Pickup window missed: perishables that must leave within a second.
    let id = place(&orders.client, &lines).await.order_id;
    let soon = SystemTime::now() + Duration::from_secs(1);
    world
        .send(&id, "reserved", stock_reserved(&lines, Some(soon)))
        .await;
    world.send(&id, "authorized", authorized()).await;
    assert_cancelled(&world, &orders, &id, CancelReason::PickupWindowMissed).await;

    // Delivery failed in transit.
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    world.send(&id, "assigned", assigned("shp-1")).await;
    world.send(&id, "picked", picked_up("shp-1")).await;
    wait_state(&orders.client, &id, OrderState::InTransit).await;
    world
        .send(
            &id,
            "delivery-failed",
            failed("shp-1", ShipmentFailureReason::DeliveryFailed),
        )
        .await;
    assert_cancelled(&world, &orders, &id, CancelReason::DeliveryFailed).await;
}

/// An order the catalog never answers (its event lost to a dead letter, the
/// catalog down for long) does not stay PLACED: its placement deadline
/// cancels it, and the cancellation carries its lines so that stock reserved
/// after all is released. An order the catalog answers keeps no placement
/// deadline, and a late answer changes nothing on a cancelled one.
#[tokio::test]
async fn an_order_the_catalog_never_answers_is_cancelled_at_its_placement_deadline() {
    let world = World::with(|config| config.orders.placement_deadline_secs = 2).await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let unanswered = place(&orders.client, &lines).await.order_id;
    let answered = place(&orders.client, &lines).await.order_id;
    world
        .send(&answered, "reserved", stock_reserved(&lines, None))
        .await;
    let reserved = wait_state(&orders.client, &answered, OrderState::Reserved).await;
    assert!(deadline_gone(&world, &format!("placement:{answered}")).await);
    let pending = pending_deadlines(&world).await;
    assert!(
        pending.contains(&format!("placement:{unanswered}")),
        "{pending:?}"
    );

    assert_cancelled(
        &world,
        &orders,
        &unanswered,
        CancelReason::PlacementDeadline,
    )
    .await;
    let order = wait_state(&orders.client, &unanswered, OrderState::Cancelled).await;
    assert_eq!(
        order.cancel_detail,
        "the catalog did not answer within 2 s of placement"
    );
    assert!(
        deadline_gone(&world, &format!("placement:{unanswered}")).await,
        "done with"
    );

    world
        .send(&unanswered, "late-reserved", stock_reserved(&lines, None))
        .await;
    orders.wait_metric(REFUSED, 1.0).await;
    let still = wait_state(&orders.client, &unanswered, OrderState::Cancelled).await;
    assert_eq!(still.history.len(), order.history.len());
    let answered_order = wait_state(&orders.client, &answered, OrderState::Reserved).await;
    assert_eq!(
        answered_order.history.len(),
        reserved.history.len(),
        "the deadline never touched it"
    );
}

#[tokio::test]
async fn early_events_wait_and_redelivered_or_impossible_events_change_nothing() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let id = place(&orders.client, &lines).await.order_id;

    // Ahead of the order: a payment for a reservation the orders service has
    // not seen yet (the catalog stream lags) waits instead of being lost.
    let payment = world.send(&id, "authorized", authorized()).await;
    orders.wait_metric(PARKED, 1.0).await;
    let reserved = world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    let order = wait_state(&orders.client, &id, OrderState::Confirmed).await;
    assert_eq!(
        order.history.len(),
        3,
        "reserved, then the parked payment confirmed it"
    );
    // Reserved and confirmed in one step: no payment deadline was left to
    // fire on a paid order.
    assert!(
        !pending_deadlines(&world)
            .await
            .contains(&format!("payment:{id}")),
        "no payment deadline for a confirmed order"
    );

    // Redelivered: the same events again change nothing.
    world.catalog.publish(reserved).await.expect("published");
    world.payments.publish(payment).await.expect("published");
    // Impossible: a second, different authorization of a confirmed order.
    world.send(&id, "authorized-again", authorized()).await;
    orders.wait_metric(REFUSED, 1.0).await;
    world.send(&id, "assigned", assigned("shp-1")).await;
    let order_after = wait_state(&orders.client, &id, OrderState::Dispatching).await;
    assert_eq!(order_after.history.len(), order.history.len() + 1);
    // Events of one order share a partition: once the later state change is
    // read, any second confirmation would have been read before it.
    world
        .wait_event(&id, |p| {
            matches!(p, Payload::OrderStateChanged(c) if c.to == OrderState::Dispatching as i32)
        })
        .await;
    let confirmations = world
        .events_of(&id)
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderConfirmed(_))))
        .count();
    assert_eq!(
        confirmations, 1,
        "one confirmation however often payment was reported"
    );

    // A cancelled order refuses everything that comes late.
    cancel(&orders, &id, "").await.expect("cancelled");
    world.send(&id, "late-pickup", picked_up("shp-1")).await;
    world.send(&id, "late-assignment", assigned("shp-2")).await;
    world.send(&id, "late-delivery", delivered("shp-1")).await;
    orders.wait_metric(REFUSED, 4.0).await;
    let cancelled = wait_state(&orders.client, &id, OrderState::Cancelled).await;
    assert_eq!(
        cancelled.history.len(),
        5,
        "placed, reserved, confirmed, dispatching, cancelled"
    );
    assert_eq!(cancelled.cancel_reason(), CancelReason::BuyerCancelled);
    world
        .wait_event(&id, |p| matches!(p, Payload::OrderCancelled(_)))
        .await;
    let cancellations = world
        .events_of(&id)
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderCancelled(_))))
        .count();
    assert_eq!(cancellations, 1);
}

#[tokio::test]
async fn cancel_is_for_the_buyer_and_only_until_pickup() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let id = place(&orders.client, &lines).await.order_id;
    let mut client = orders.client.clone();

    let other_buyer = client
        .cancel_order(CancelOrderRequest {
            order_id: id.clone(),
            buyer_id: "someone-else".to_owned(),
            reason: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(other_buyer.code(), Code::PermissionDenied);
    let missing = client
        .cancel_order(CancelOrderRequest {
            order_id: "ord_missing".to_owned(),
            buyer_id: "buyer-hangzhou-1".to_owned(),
            reason: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(missing.code(), Code::NotFound);

    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    world.send(&id, "assigned", assigned("shp-1")).await;
    world.send(&id, "picked", picked_up("shp-1")).await;
    wait_state(&orders.client, &id, OrderState::InTransit).await;
    let too_late = client
        .cancel_order(CancelOrderRequest {
            order_id: id.clone(),
            buyer_id: "buyer-hangzhou-1".to_owned(),
            reason: String::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(too_late.code(), Code::FailedPrecondition);
    assert!(
        too_late.message().contains("IN_TRANSIT"),
        "{}",
        too_late.message()
    );
    let order = wait_state(&orders.client, &id, OrderState::InTransit).await;
    assert_eq!(order.history.len(), 5, "nothing changed");
}

#[tokio::test]
async fn watch_order_sees_every_transition_in_order_and_ends() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 2)];
    let id = place(&orders.client, &lines).await.order_id;

    let mut first = watch(&orders.client, &id).await;
    // A second watcher that leaves early must not disturb the first.
    let quitter = watch(&orders.client, &id).await;
    drop(quitter);

    let initial = first
        .message()
        .await
        .expect("stream")
        .expect("first message");
    assert!(initial.transition.is_none());
    assert_eq!(
        initial.order.as_ref().map(|o| o.state()),
        Some(OrderState::Placed)
    );

    let driving = async {
        world
            .send(&id, "reserved", stock_reserved(&lines, None))
            .await;
        world.send(&id, "authorized", authorized()).await;
        world.send(&id, "assigned", assigned("shp-1")).await;
        world.send(&id, "picked", picked_up("shp-1")).await;
        world.send(&id, "delivered", delivered("shp-1")).await;
    };
    let watching = async {
        let mut seen = Vec::new();
        while let Some(update) = first.message().await.expect("stream") {
            let transition = update.transition.expect("a transition");
            seen.push(transition.to());
        }
        seen
    };
    let ((), seen) = tokio::join!(
        driving,
        tokio::time::timeout(Duration::from_secs(60), watching)
    );
    assert_eq!(
        seen.expect("the stream ends at the terminal state"),
        vec![
            OrderState::Reserved,
            OrderState::Confirmed,
            OrderState::Dispatching,
            OrderState::InTransit,
            OrderState::Delivered,
        ]
    );
}

#[tokio::test]
async fn each_watch_update_carries_the_order_as_of_its_transition() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 2)];
    let id = place(&orders.client, &lines).await.order_id;
    let mut updates = watch(&orders.client, &id).await;
    let initial = updates.message().await.expect("stream").expect("first");
    assert_eq!(
        initial.order.as_ref().map(|o| o.state()),
        Some(OrderState::Placed)
    );

    // The payment comes first and is parked; the reservation then moves the
    // order to RESERVED and CONFIRMED in one write, microseconds apart. The
    // rest follows back to back.
    world.send(&id, "authorized", authorized()).await;
    orders.wait_metric(PARKED, 1.0).await;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "assigned", assigned("shp-1")).await;
    world.send(&id, "picked", picked_up("shp-1")).await;
    world.send(&id, "delivered", delivered("shp-1")).await;

    let watching = async {
        let mut received = Vec::new();
        while let Some(update) = updates.message().await.expect("stream") {
            received.push(update);
        }
        received
    };
    let received = tokio::time::timeout(Duration::from_secs(60), watching)
        .await
        .expect("the stream ends at the terminal state");
    let mut seen = Vec::new();
    for update in &received {
        let transition = update.transition.clone().expect("a transition");
        let order = update.order.clone().expect("an order");
        assert_eq!(
            order.state(),
            transition.to(),
            "the snapshot of {:?} → {:?} is the order after it",
            transition.from(),
            transition.to()
        );
        assert_eq!(order.history.last(), Some(&transition));
        assert_eq!(order.updated_at, transition.at);
        assert_eq!(order.total_fen, 2_000, "priced since the reservation");
        seen.push(transition.to());
    }
    assert_eq!(
        seen,
        vec![
            OrderState::Reserved,
            OrderState::Confirmed,
            OrderState::Dispatching,
            OrderState::InTransit,
            OrderState::Delivered,
        ]
    );
}

#[tokio::test]
async fn a_pending_deadline_fires_after_a_restart() {
    let world = World::with(|config| config.orders.payment_deadline_secs = 4).await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    wait_state(&orders.client, &id, OrderState::Reserved).await;

    // Down while the deadline is pending; two replicas come back.
    orders.stop().await;
    let first = world.start().await;
    let second = world.start().await;
    let order = wait_state(&first.client, &id, OrderState::Cancelled).await;
    assert_eq!(order.cancel_reason(), CancelReason::PaymentDeadline);
    let reserved_at = order.history[1].at.expect("time");
    let cancelled_at = order.history[2].at.expect("time");
    assert!(
        cancelled_at.seconds - reserved_at.seconds >= 3,
        "not before the deadline"
    );

    // Fired once: one cancellation in the history and one event on the bus,
    // even with two replicas watching the same deadlines.
    let deadlines = format!("{}orders:deadlines:{{east}}", world.config.redis.key_prefix);
    let mut redis = world.plain_redis().await;
    harvest_testkit::eventually(Duration::from_secs(10), || {
        let mut redis = redis.clone();
        let key = deadlines.clone();
        async move {
            let pending: i64 = redis::cmd("ZCARD")
                .arg(key)
                .query_async(&mut redis)
                .await
                .ok()?;
            (pending == 0).then_some(())
        }
    })
    .await
    .expect("the deadline is done with");
    let _: () = redis::cmd("PING")
        .query_async(&mut redis)
        .await
        .expect("ping");
    let order = wait_state(&second.client, &id, OrderState::Cancelled).await;
    assert_eq!(order.history.len(), 3);
    world
        .wait_event(&id, |p| matches!(p, Payload::OrderCancelled(_)))
        .await;
    let cancellations = world
        .events_of(&id)
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderCancelled(_))))
        .count();
    assert_eq!(cancellations, 1);
}

/// Many orders' events waiting on the bus come to the service as batches:
/// different orders side by side, one order's events in turn. Every event
/// delivered twice changes nothing the second time.
#[tokio::test]
async fn a_batch_of_many_orders_delivered_twice_moves_each_order_once() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(place(&orders.client, &lines).await.order_id);
    }
    // Down while the events arrive: they wait on the bus and come in batches.
    orders.stop().await;
    for _delivery in 0..2 {
        for id in &ids {
            world
                .send(id, "reserved", stock_reserved(&lines, None))
                .await;
            world.send(id, "authorized", authorized()).await;
        }
    }
    let orders = world.start().await;
    for id in &ids {
        let order = wait_state(&orders.client, id, OrderState::Confirmed).await;
        assert_eq!(
            order.history.len(),
            3,
            "placed, reserved, confirmed: each once"
        );
    }

    // One more event per order: once it is applied, every repeat before it
    // on the order's partitions was read.
    for id in &ids {
        world.send(id, "assigned", assigned("shp-1")).await;
    }
    for id in &ids {
        let order = wait_state(&orders.client, id, OrderState::Dispatching).await;
        assert_eq!(order.history.len(), 4);
        world
            .wait_event(id, |p| {
                matches!(p, Payload::OrderStateChanged(c) if c.to == OrderState::Dispatching as i32)
            })
            .await;
        // Published again under the same id is allowed (an outbox sweep
        // racing a slow publish): consumers take an event id once.
        let confirmations: std::collections::HashSet<String> = world
            .events_of(id)
            .into_iter()
            .filter(|e| matches!(e.payload, Some(Payload::OrderConfirmed(_))))
            .map(|e| e.event_id)
            .collect();
        assert_eq!(confirmations.len(), 1, "order {id} confirmed once");
    }
}

/// The deadlines waiting in the test region, as `kind:order`.
/// Whether `member` leaves the pending deadlines within [`WAIT`]: a step's
/// finish drops the deadlines it left behind a moment after its write.
async fn deadline_gone(world: &World, member: &str) -> bool {
    harvest_testkit::eventually(WAIT, || async {
        (!pending_deadlines(world).await.iter().any(|m| m == member)).then_some(())
    })
    .await
    .is_some()
}

async fn pending_deadlines(world: &World) -> Vec<String> {
    let mut redis = world.plain_redis().await;
    redis::cmd("ZRANGE")
        .arg(format!(
            "{}orders:deadlines:{{east}}",
            world.config.redis.key_prefix
        ))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("deadlines")
}

/// An order that ended is kept for the retention (`redis.retention_secs`)
/// from its last step, then it is gone from GetOrder and its buyer's list;
/// an open order is kept for as long as it is open. A buyer's list forgets
/// orders placed twice the retention ago as the buyer orders again.
#[tokio::test]
async fn ended_orders_expire_after_the_retention_and_open_ones_stay() {
    let world = World::with(|config| config.redis.retention_secs = 2).await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let ended = place(&orders.client, &lines).await.order_id;
    let open = place(&orders.client, &lines).await.order_id;
    cancel(&orders, &ended, "changed my mind")
        .await
        .expect("cancelled");
    wait_state(&orders.client, &ended, OrderState::Cancelled).await;
    let mut redis = world.plain_redis().await;
    let ttl = |order: &str| {
        let mut command = redis::cmd("PTTL");
        command.arg(format!(
            "{}orders:{{{order}}}:order",
            world.config.redis.key_prefix
        ));
        command
    };
    let kept_for: i64 = ttl(&ended).query_async(&mut redis).await.expect("pttl");
    assert!((1..=2_000).contains(&kept_for), "{kept_for}");
    let open_for: i64 = ttl(&open).query_async(&mut redis).await.expect("pttl");
    assert_eq!(open_for, -1, "an open order does not expire");

    tokio::time::sleep(Duration::from_millis(4_200)).await;
    let gone = orders
        .client
        .clone()
        .get_order(GetOrderRequest {
            order_id: ended.clone(),
        })
        .await
        .expect_err("expired");
    assert_eq!(gone.code(), tonic::Code::NotFound);
    let still = orders
        .client
        .clone()
        .get_order(GetOrderRequest {
            order_id: open.clone(),
        })
        .await
        .expect("still there")
        .into_inner();
    assert_eq!(still.state(), OrderState::Placed);

    // Placed more than twice the retention after the first two: the
    // buyer's list keeps only the orders that may still exist.
    let next = place(&orders.client, &lines).await.order_id;
    let listed = orders
        .client
        .clone()
        .list_orders(ListOrdersRequest {
            buyer_id: "buyer-hangzhou-1".to_owned(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    let ids: Vec<String> = listed.orders.into_iter().map(|o| o.order_id).collect();
    assert_eq!(
        ids,
        vec![next.clone()],
        "a list shows the orders placed within twice the retention"
    );
    let indexed: Vec<String> = redis::cmd("ZRANGE")
        .arg(format!(
            "{}orders:buyer:{{buyer-hangzhou-1}}",
            world.config.redis.key_prefix
        ))
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .expect("zrange");
    assert_eq!(indexed, vec![next]);
    let list_kept_for: i64 = redis::cmd("PTTL")
        .arg(format!(
            "{}orders:buyer:{{buyer-hangzhou-1}}",
            world.config.redis.key_prefix
        ))
        .query_async(&mut redis)
        .await
        .expect("pttl");
    assert!(
        (1..=4_000).contains(&list_kept_for),
        "a buyer's list goes twice the retention after their last order: {list_kept_for}"
    );
}

/// A crash (or an unreachable Redis) between a step's write and its finish
/// leaves the step's events in the outbox and the deadlines of the state
/// the order left behind. The outbox sweeper publishes the events and, as
/// the step's finish would have, drops those deadlines: they do not wait
/// to fire and be refused.
#[tokio::test]
async fn the_outbox_sweeper_drops_the_deadlines_an_interrupted_step_left() {
    let world = World::with(|config| config.orders.outbox_stale_secs = 1).await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let id = place(&orders.client, &lines).await.order_id;
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    wait_state(&orders.client, &id, OrderState::Confirmed).await;
    orders.stop().await;

    // As a step interrupted after its write left it: an event still in the
    // outbox, the outbox note, and the payment deadline of RESERVED.
    let store = world.store().await;
    let stored = store.load(&id).await.expect("load").expect("stored");
    let mut record = stored.record.clone();
    let mut again = world
        .wait_event(&id, |p| matches!(p, Payload::OrderConfirmed(_)))
        .await;
    again.event_id = format!("{}-again", again.event_id);
    record.outbox.push(again);
    store
        .compare_and_set(&id, stored.version, &record)
        .await
        .expect("written")
        .expect("not contended");
    let mut plain = world.plain_redis().await;
    let prefix = &world.config.redis.key_prefix;
    let _: () = redis::pipe()
        .zadd(
            format!("{prefix}orders:deadlines:{{east}}"),
            format!("payment:{id}"),
            i64::MAX / 2,
        )
        .zadd(format!("{prefix}orders:outbox:{{east}}"), &id, 1)
        .query_async(&mut plain)
        .await
        .expect("written");
    assert!(
        pending_deadlines(&world)
            .await
            .contains(&format!("payment:{id}"))
    );

    let _orders = world.start().await;
    let swept = harvest_testkit::eventually(WAIT, || async {
        let stored = store.load(&id).await.ok()??;
        stored.record.outbox.is_empty().then_some(())
    })
    .await;
    assert!(swept.is_some(), "the sweeper published the left-over event");
    assert!(
        deadline_gone(&world, &format!("payment:{id}")).await,
        "{:?}",
        pending_deadlines(&world).await
    );
}

/// The outbox note of an order never moves back in time: a write that lost
/// its race (or arrived late) with an older note leaves the newer one, and
/// the finisher of that older note cannot remove it while newer events wait.
#[tokio::test]
async fn a_late_or_losing_write_never_moves_the_outbox_note_back() {
    use harvest_orders::store::StepWrites;
    let world = World::new().await;
    let orders = world.start().await;
    let id = place(&orders.client, &[("prd_apples", 1)]).await.order_id;
    orders.stop().await;
    let store = world.store().await;
    let stored = store.load(&id).await.expect("load").expect("stored");
    let region = harvest_domain::Region::parse("east").expect("valid");
    let writes = |at| StepWrites {
        region: &region,
        schedule: &[],
        outbox_at: Some(at),
        notify: false,
        buyer_index: None,
    };
    let newer = store
        .write_step(&id, stored.version, &stored.record, &writes(2_000_000))
        .await
        .expect("written");
    assert!(newer.is_some());
    let lost = store
        .write_step(&id, stored.version, &stored.record, &writes(1_000_000))
        .await
        .expect("answered");
    assert!(lost.is_none(), "the version moved on");
    let _ = store
        .finish_outbox(&id, stored.version, &stored.record, &region, 1_000_000, &[])
        .await
        .expect("answered");
    let mut plain = world.plain_redis().await;
    let note: Option<i64> = redis::cmd("ZSCORE")
        .arg(format!(
            "{}orders:outbox:{{east}}",
            world.config.redis.key_prefix
        ))
        .arg(&id)
        .query_async(&mut plain)
        .await
        .expect("zscore");
    assert_eq!(note, Some(2_000_000), "the newer note stays as it was");
}

/// A step's write is a pipeline of script calls, which Redis refuses once it
/// forgot the scripts (a restart, `SCRIPT FLUSH`): the store loads them again
/// and the step goes on. The connection counts every request it awaits.
#[tokio::test]
async fn steps_go_on_after_redis_forgets_its_scripts_and_every_round_trip_is_counted() {
    let world = World::new().await;
    let orders = world.start().await;
    let lines = [("prd_apples", 1)];
    let before = orders.metric("harvest_redis_round_trips_total").await;
    let id = place(&orders.client, &lines).await.order_id;
    orders
        .wait_metric("harvest_redis_round_trips_total", before + 3.0)
        .await;
    assert!(
        orders.metric("harvest_redis_commands_total").await
            >= orders.metric("harvest_redis_round_trips_total").await,
        "a pipeline counts one round trip and every command in it"
    );

    let mut redis = world.plain_redis().await;
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .expect("flushed");
    world
        .send(&id, "reserved", stock_reserved(&lines, None))
        .await;
    world.send(&id, "authorized", authorized()).await;
    let order = wait_state(&orders.client, &id, OrderState::Confirmed).await;
    assert_eq!(order.history.len(), 3);
}
