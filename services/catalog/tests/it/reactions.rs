//! The catalog's reactions to the saga, driven through the broker.

use std::collections::HashSet;
use std::time::Duration;

use futures::future::join_all;
use harvest_bus::{Payload, new_envelope};
use harvest_domain::{Id, deterministic_id, new_id};
use harvest_proto::common::v1::{CancelReason, OrderLine};
use harvest_proto::events::v1::{
    OrderShipmentFailed, ReservedLine, ShipmentPickedUp, ShortfallReason,
};
use prost::Message;

use crate::helpers::{TestCatalog, WAIT, decode_all, order_cancelled, order_placed};

#[tokio::test]
async fn concurrent_orders_never_oversell_one_product() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    // 120 units in three lots; 200 orders of one unit each.
    catalog.lot(&apples, "lot-a", 50, 30).await;
    catalog.lot(&apples, "lot-b", 40, 60).await;
    catalog.lot(&apples, "lot-c", 30, 90).await;
    let product_id = apples.product_id.as_str();

    let orders: Vec<Id> = (0..200).map(|_| new_id("ord")).collect();
    let envelopes: Vec<_> = orders
        .iter()
        .map(|order_id| order_placed(order_id, &catalog.region, &[(product_id, 1)]))
        .collect();
    let publishing = join_all(
        envelopes
            .into_iter()
            .map(|envelope| catalog.orders.publish(envelope)),
    );

    // Audit the stock arithmetic over and over while the orders are reserved.
    let auditing = async {
        let mut audits = 0;
        let wanted: HashSet<&str> = orders.iter().map(Id::as_str).collect();
        loop {
            let snapshot = catalog.store.snapshot(product_id).await.expect("snapshot");
            snapshot
                .audit()
                .unwrap_or_else(|problem| panic!("after {audits} audits: {problem}"));
            audits += 1;
            let decided = decode_all(&catalog.catalog_events.messages())
                .into_iter()
                .filter(|envelope| wanted.contains(envelope.order_id.as_str()))
                .map(|envelope| envelope.order_id)
                .collect::<HashSet<_>>()
                .len();
            if decided == orders.len() {
                return audits;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (published, audits) = tokio::join!(
        publishing,
        tokio::time::timeout(Duration::from_secs(120), auditing)
    );
    assert!(
        published.iter().all(Result::is_ok),
        "every order is published"
    );
    let audits = audits.expect("every order is decided in time");
    assert!(
        audits > 3,
        "the audit ran while orders were being reserved ({audits} times)"
    );

    let mut reserved = 0;
    let mut rejected = 0;
    for envelope in decode_all(&catalog.catalog_events.messages()) {
        match envelope.payload {
            Some(Payload::StockReserved(event)) => {
                assert_eq!(event.total_fen, 6_800);
                reserved += event.lines.iter().map(|line| line.quantity).sum::<i64>();
            }
            Some(Payload::StockRejected(event)) => {
                assert_eq!(
                    event.shortfalls[0].reason(),
                    ShortfallReason::InsufficientStock
                );
                rejected += 1;
            }
            _ => {}
        }
    }
    assert_eq!(reserved, 120, "exactly the stock is reserved");
    assert_eq!(rejected, 80, "every other order is rejected");

    let stock = catalog.stock(&apples).await;
    assert_eq!(
        (stock.on_hand, stock.reserved, stock.available),
        (120, 120, 0)
    );
    for lot in &stock.lots {
        assert_eq!(
            lot.on_hand,
            lot.available + lot.reserved,
            "lot {}",
            lot.lot_id
        );
        assert_eq!(lot.available, 0, "lot {} is sold out", lot.lot_id);
    }
    catalog.audit(product_id).await;
}

#[tokio::test]
async fn reserves_earliest_best_before_first_and_skips_lots_expiring_before_delivery() {
    let catalog = TestCatalog::start().await;
    let honey = catalog.product("Wild jujube honey", 9_900, true).await;
    // Delivery takes two days by default: a lot good for one more day is useless.
    catalog.lot(&honey, "expiring", 100, 1).await;
    catalog.lot(&honey, "later", 5, 40).await;
    catalog.lot(&honey, "sooner", 3, 10).await;

    let order = catalog.place(&[(&honey.product_id, 6)]).await;
    let outcome = catalog.outcome(&order.order_id).await;
    let Some(Payload::StockReserved(reserved)) = outcome.payload else {
        panic!("expected a reservation, got {outcome:?}");
    };
    let allocations: Vec<(String, i64)> = reserved.lines[0]
        .allocations
        .iter()
        .map(|a| (a.lot_id.clone(), a.quantity))
        .collect();
    assert_eq!(
        allocations,
        vec![("sooner".to_owned(), 3), ("later".to_owned(), 3)]
    );
    assert_eq!(reserved.lines[0].line_total_fen, 6 * 9_900);
    assert_eq!(reserved.pickups.len(), 1);
    assert!(
        reserved.pickups[0].pickup_by.is_some(),
        "perishables carry a pickup deadline"
    );

    // Only two usable units are left; the expiring lot does not count.
    let order = catalog.place(&[(&honey.product_id, 3)]).await;
    let outcome = catalog.outcome(&order.order_id).await;
    let Some(Payload::StockRejected(rejected)) = outcome.payload else {
        panic!("expected a rejection, got {outcome:?}");
    };
    assert_eq!(rejected.shortfalls[0].requested, 3);
    assert_eq!(rejected.shortfalls[0].available, 2);
    let stock = catalog.stock(&honey).await;
    assert_eq!(stock.reserved, 6);
    assert_eq!(stock.available, 102);
}

#[tokio::test]
async fn a_failed_line_rolls_back_the_others_and_unknown_products_are_named() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    let walnuts = catalog.product("Thin-shell walnuts", 4_500, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;
    catalog.lot(&walnuts, "w1", 2, 30).await;

    let order = catalog
        .place(&[
            (&apples.product_id, 4),
            (&walnuts.product_id, 5),
            ("prd_does_not_exist", 1),
        ])
        .await;
    let outcome = catalog.outcome(&order.order_id).await;
    let Some(Payload::StockRejected(rejected)) = outcome.payload else {
        panic!("expected a rejection, got {outcome:?}");
    };
    let shortfalls: Vec<(String, ShortfallReason, i64)> = rejected
        .shortfalls
        .iter()
        .map(|s| (s.product_id.clone(), s.reason(), s.available))
        .collect();
    assert_eq!(
        shortfalls,
        vec![
            (
                walnuts.product_id.clone(),
                ShortfallReason::InsufficientStock,
                2
            ),
            (
                "prd_does_not_exist".to_owned(),
                ShortfallReason::UnknownProduct,
                0
            ),
        ]
    );
    // The apples reserved for the first line went back.
    let stock = catalog.stock(&apples).await;
    assert_eq!((stock.available, stock.reserved), (10, 0));
    let stock = catalog.stock(&walnuts).await;
    assert_eq!((stock.available, stock.reserved), (2, 0));
}

/// An order whose total would be above what one order may cost (a price
/// set very high, a large quantity) is rejected before any line is
/// reserved, naming the lines that do not fit: no stock is held for it, and
/// nothing goes to the dead-letter topic.
#[tokio::test]
async fn an_order_too_large_to_pay_for_is_rejected_before_anything_is_reserved() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    let honey = catalog
        .product("Wild mountain honey", 600_000_000_000, false)
        .await;
    catalog.lot(&apples, "a1", 10, 30).await;
    catalog.lot(&honey, "h1", 5, 30).await;

    let order = catalog
        .place(&[(&apples.product_id, 3), (&honey.product_id, 2)])
        .await;
    let outcome = catalog.outcome(&order.order_id).await;
    let Some(Payload::StockRejected(rejected)) = outcome.payload else {
        panic!("expected a rejection, got {outcome:?}");
    };
    let shortfalls: Vec<(String, ShortfallReason, i64, i64)> = rejected
        .shortfalls
        .iter()
        .map(|s| (s.product_id.clone(), s.reason(), s.requested, s.available))
        .collect();
    assert_eq!(
        shortfalls,
        vec![(
            honey.product_id.clone(),
            ShortfallReason::TotalTooLarge,
            2,
            0
        )]
    );
    for (product, on_hand) in [(&apples, 10), (&honey, 5)] {
        let stock = catalog.stock(product).await;
        assert_eq!((stock.available, stock.reserved), (on_hand, 0));
    }

    // One jar fits.
    let fits = catalog.place(&[(&honey.product_id, 1)]).await;
    let outcome = catalog.outcome(&fits.order_id).await;
    assert!(
        matches!(outcome.payload, Some(Payload::StockReserved(_))),
        "{outcome:?}"
    );
    assert!(catalog.dead_letters.messages().is_empty());
}

/// A settled reservation record (released, committed, rolled back, short)
/// is kept for the retention, so that a redelivered event finds it, and is
/// forgotten afterwards, as later orders of the product are reserved: a
/// product's records do not grow with every order it ever had.
#[tokio::test]
async fn settled_reservations_are_forgotten_after_the_retention() {
    let catalog = TestCatalog::start_with(|config| config.redis.retention_secs = 1).await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;
    let product_id = apples.product_id.as_str();

    let first = catalog.place(&[(product_id, 2)]).await;
    catalog.outcome(&first.order_id).await;
    catalog
        .orders
        .publish(order_cancelled(
            &first.order_id,
            &catalog.region,
            &[(product_id, 2)],
        ))
        .await
        .expect("published");
    let released = harvest_testkit::eventually(WAIT, || async {
        let snapshot = catalog.store.snapshot(product_id).await.ok()?;
        matches!(
            snapshot.reservations.get(&first.order_id),
            Some(harvest_catalog::store::Reservation::Released(_))
        )
        .then_some(())
    })
    .await;
    assert!(released.is_some(), "the first order's stock was released");

    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let second = catalog.place(&[(product_id, 1)]).await;
    catalog.outcome(&second.order_id).await;
    let snapshot = catalog.store.snapshot(product_id).await.expect("snapshot");
    let orders: Vec<&String> = snapshot.reservations.keys().collect();
    assert_eq!(
        orders,
        vec![&second.order_id],
        "the first record is forgotten"
    );
    snapshot.audit().expect("the arithmetic still holds");
    let stock = catalog.stock(&apples).await;
    assert_eq!((stock.available, stock.reserved), (9, 1));
}

#[tokio::test]
async fn a_redelivered_order_reserves_nothing_twice() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;

    let order = catalog.place(&[(&apples.product_id, 4)]).await;
    let first = catalog.outcome(&order.order_id).await;
    assert!(matches!(first.payload, Some(Payload::StockReserved(_))));

    // The same event again, as after a consumer crash before its commit.
    catalog
        .orders
        .publish(order.clone())
        .await
        .expect("published");
    // And once more after losing the stored outcome, as after a crash between
    // reserving and recording it: the per-product records still hold.
    let mut redis = catalog.redis.connect().await.expect("connects");
    let outcome_key = format!(
        "{}catalog:{{{}}}:outcome",
        catalog.config.redis.key_prefix, order.order_id
    );
    let deleted: i64 = redis::cmd("DEL")
        .arg(&outcome_key)
        .query_async(&mut redis)
        .await
        .expect("del");
    assert_eq!(
        deleted, 1,
        "the outcome was stored under the documented key"
    );
    catalog
        .orders
        .publish(order.clone())
        .await
        .expect("published");

    let outcomes = catalog
        .catalog_events
        .wait_for(WAIT, |messages| {
            let outcomes: Vec<_> = decode_all(messages)
                .into_iter()
                .filter(|e| e.order_id == order.order_id)
                .collect();
            (outcomes.len() >= 3).then_some(outcomes)
        })
        .await
        .expect("every delivery is answered");
    for outcome in &outcomes {
        assert_eq!(
            outcome.event_id, first.event_id,
            "the same event id every time"
        );
        let Some(Payload::StockReserved(reserved)) = &outcome.payload else {
            panic!("expected a reservation, got {outcome:?}");
        };
        assert_eq!(reserved.lines[0].quantity, 4);
    }
    let stock = catalog.stock(&apples).await;
    assert_eq!((stock.reserved, stock.available), (4, 6), "reserved once");
}

#[tokio::test]
async fn cancel_releases_and_pickup_commits_each_once() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;
    let product_id = apples.product_id.as_str();

    let cancelled_order = catalog.place(&[(product_id, 3)]).await;
    let kept_order = catalog.place(&[(product_id, 2)]).await;
    catalog.outcome(&cancelled_order.order_id).await;
    catalog.outcome(&kept_order.order_id).await;
    assert_eq!(catalog.stock(&apples).await.reserved, 5);

    let cancel = order_cancelled(
        &cancelled_order.order_id,
        &catalog.region,
        &[(product_id, 3)],
    );
    catalog
        .orders
        .publish(cancel.clone())
        .await
        .expect("published");
    catalog
        .orders
        .publish(cancel)
        .await
        .expect("published again");
    let released = catalog
        .wait_event(&cancelled_order.order_id, |p| {
            matches!(p, Payload::StockReleased(_))
        })
        .await;
    let Some(Payload::StockReleased(released)) = released.payload else {
        unreachable!()
    };
    assert_eq!(released.lines[0].quantity, 3);

    let kept_id = Id::parse(&kept_order.order_id).expect("valid");
    let picked_up = new_envelope(
        &deterministic_id("evt", &[kept_id.as_str(), "delivery", "picked-up", "shp_1"]),
        &kept_id,
        &catalog.region,
        "delivery",
        Payload::ShipmentPickedUp(ShipmentPickedUp {
            shipment_id: "shp_1".to_owned(),
            courier_id: "courier-1".to_owned(),
            lines: vec![OrderLine {
                product_id: product_id.to_owned(),
                quantity: 2,
            }],
        }),
    );
    catalog
        .delivery
        .publish(picked_up.clone())
        .await
        .expect("published");
    catalog
        .delivery
        .publish(picked_up)
        .await
        .expect("published again");
    catalog
        .wait_event(&kept_order.order_id, |p| {
            matches!(p, Payload::StockCommitted(_))
        })
        .await;

    // Wait until both duplicates have been handled too: they republish.
    catalog
        .catalog_events
        .wait_for(WAIT, |messages| {
            let events = decode_all(messages);
            let count = |order: &str| events.iter().filter(|e| e.order_id == order).count();
            (count(&cancelled_order.order_id) >= 3 && count(&kept_order.order_id) >= 3)
                .then_some(())
        })
        .await
        .expect("duplicates handled");
    let stock = catalog.stock(&apples).await;
    assert_eq!(
        (stock.on_hand, stock.reserved, stock.available),
        (8, 0, 8),
        "3 released once, 2 committed once"
    );
    catalog.audit(product_id).await;
}

/// A shipment that fails while its order goes on gives its lines' stock
/// back, and only theirs: the order's other lines stay reserved.
#[tokio::test]
async fn a_failed_shipment_releases_its_lines_only() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    let honey = catalog.product("Acacia honey", 4_200, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;
    catalog.lot(&honey, "h1", 10, 30).await;
    let (apples_id, honey_id) = (apples.product_id.as_str(), honey.product_id.as_str());
    let order = catalog.place(&[(apples_id, 3), (honey_id, 2)]).await;
    catalog.outcome(&order.order_id).await;

    let order_id = Id::parse(&order.order_id).expect("valid");
    let failed = new_envelope(
        &deterministic_id(
            "evt",
            &[order_id.as_str(), "orders", "shipment-failed", "shp_honey"],
        ),
        &order_id,
        &catalog.region,
        "orders",
        Payload::OrderShipmentFailed(OrderShipmentFailed {
            shipment_id: "shp_honey".to_owned(),
            pickup_point_id: "pp_honey".to_owned(),
            reason: CancelReason::NoCourier.into(),
            detail: "no courier could take it".to_owned(),
            lines: vec![ReservedLine {
                product_id: honey_id.to_owned(),
                quantity: 2,
                ..ReservedLine::default()
            }],
            lines_fen: 8_400,
        }),
    );
    catalog.orders.publish(failed).await.expect("published");
    let released = catalog
        .wait_event(&order.order_id, |p| matches!(p, Payload::StockReleased(_)))
        .await;
    let Some(Payload::StockReleased(released)) = released.payload else {
        unreachable!()
    };
    assert_eq!(
        released.lines,
        vec![OrderLine {
            product_id: honey_id.to_owned(),
            quantity: 2
        }]
    );
    let honey_stock = catalog.stock(&honey).await;
    assert_eq!((honey_stock.reserved, honey_stock.available), (0, 10));
    let apples_stock = catalog.stock(&apples).await;
    assert_eq!(apples_stock.reserved, 3, "the other line stays reserved");
}

#[tokio::test]
async fn an_undecodable_event_goes_to_the_dead_letter_topic_and_the_consumer_goes_on() {
    let catalog = TestCatalog::start().await;
    let apples = catalog.product("Fuji apples", 6_800, false).await;
    catalog.lot(&apples, "a1", 10, 30).await;
    let topology = catalog.orders.topology().clone();
    let orders_topic = topology.topic(harvest_bus::Stream::Orders, &catalog.region);

    // Same key as the next order, so both land on one partition, in order.
    let order_id = new_id("ord");
    let garbage = b"\x08\x96\x01 this is not an envelope \xff\xfe";
    harvest_testkit::kafka::send_raw(
        &catalog.broker.bootstrap(),
        &orders_topic,
        order_id.as_str().as_bytes(),
        garbage,
        &[("origin", "a broken producer")],
    )
    .await
    .expect("sent");
    let order = order_placed(&order_id, &catalog.region, &[(&apples.product_id, 1)]);
    catalog.orders.publish(order).await.expect("published");

    let dead = catalog
        .dead_letters
        .wait_for(WAIT, |messages| messages.first().cloned())
        .await
        .expect("a dead letter");
    assert_eq!(dead.payload, garbage, "the original bytes are kept");
    assert_eq!(dead.key.as_deref(), Some(order_id.as_str().as_bytes()));
    assert!(
        dead.header("dead-letter-reason")
            .is_some_and(|r| r.starts_with("undecodable"))
    );
    assert_eq!(
        dead.header("dead-letter-original-topic"),
        Some(orders_topic.as_str())
    );
    assert_eq!(
        dead.header("origin"),
        Some("a broken producer"),
        "original headers kept"
    );

    let outcome = catalog.outcome(order_id.as_str()).await;
    assert!(matches!(outcome.payload, Some(Payload::StockReserved(_))));

    // A well-formed envelope that breaks the contract is dead-lettered too.
    let bad_order = order_placed(&new_id("ord"), &catalog.region, &[(&apples.product_id, -4)]);
    catalog
        .orders
        .publish(bad_order.clone())
        .await
        .expect("published");
    let dead = catalog
        .dead_letters
        .wait_for(WAIT, |messages| messages.get(1).cloned())
        .await
        .expect("a second dead letter");
    assert!(
        dead.header("dead-letter-reason")
            .is_some_and(|r| r.contains("quantity"))
    );
    assert_eq!(
        harvest_bus::Envelope::decode(dead.payload.as_slice()).ok(),
        Some(bad_order)
    );
    assert_eq!(catalog.stock(&apples).await.reserved, 1);
}
