//! PlaceOrder and the rest of the storefront API: idempotency, validation,
//! listing.

use futures::future::join_all;
use harvest_bus::Payload;
use harvest_proto::common::v1::OrderLine;
use harvest_proto::orders::v1::{
    GetOrderRequest, ListOrdersRequest, PlaceOrderRequest, WatchOrderRequest,
};
use tonic::Code;

use crate::helpers::{World, place, place_as_only_order, place_request};

#[tokio::test]
async fn fifty_concurrent_calls_with_one_key_place_one_order() {
    let world = World::new().await;
    let orders = world.start().await;
    let request = place_request("checkout-7731", &[("prd_apples", 2), ("prd_walnuts", 1)]);

    let calls = (0..50).map(|_| {
        let mut client = orders.client.clone();
        let request = request.clone();
        async move {
            client
                .place_order(request)
                .await
                .map(tonic::Response::into_inner)
        }
    });
    let results = join_all(calls).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|result| result.expect("every call succeeds").order_id)
        .collect();
    assert_eq!(ids.len(), 1, "one order: {ids:?}");
    let order_id = ids.into_iter().next().expect("one");

    // A later retry, after everything settled, gets the same order too.
    let again = orders
        .client
        .clone()
        .place_order(request.clone())
        .await
        .expect("retry")
        .into_inner();
    assert_eq!(again.order_id, order_id);

    // The same key with a different request is refused.
    let mut different = request.clone();
    different.lines[0].quantity = 3;
    let conflict = orders
        .client
        .clone()
        .place_order(different)
        .await
        .expect_err("refused");
    assert_eq!(conflict.code(), Code::AlreadyExists);
    assert!(
        conflict.message().contains("idempotency_key"),
        "{}",
        conflict.message()
    );
    assert!(
        conflict.message().contains(&order_id),
        "{}",
        conflict.message()
    );

    // Exactly one order-placed event reached the bus.
    world
        .wait_event(&order_id, |p| matches!(p, Payload::OrderPlaced(_)))
        .await;
    let listed = orders
        .client
        .clone()
        .list_orders(ListOrdersRequest {
            buyer_id: request.buyer_id.clone(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.orders.len(), 1);
    let placed_events: Vec<_> = world
        .events_of(&order_id)
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderPlaced(_))))
        .collect();
    assert_eq!(placed_events.len(), 1, "one order-placed event");
    let all_placed = crate::helpers::decode_all(&world.orders_events.messages())
        .into_iter()
        .filter(|e| matches!(e.payload, Some(Payload::OrderPlaced(_))))
        .count();
    assert_eq!(all_placed, 1, "no other order was placed");
}

/// Breaks one field of a good request.
type Spoiler = fn(&mut PlaceOrderRequest);

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_change_nothing() {
    let world = World::new().await;
    let orders = world.start().await;
    let mut client = orders.client.clone();

    let cases: Vec<(Spoiler, &str)> = vec![
        (|r| r.idempotency_key.clear(), "idempotency_key"),
        (
            |r| r.idempotency_key = "has spaces".to_owned(),
            "idempotency_key",
        ),
        (|r| r.buyer_id.clear(), "buyer_id"),
        (|r| r.region = "atlantis".to_owned(), "region"),
        (|r| r.ship_to = None, "ship_to"),
        (
            |r| r.ship_to.iter_mut().for_each(|a| a.street.clear()),
            "ship_to.street",
        ),
        (|r| r.lines.clear(), "lines"),
        (|r| r.lines[0].quantity = 0, "lines[0].quantity"),
        (|r| r.lines[0].quantity = -1, "lines[0].quantity"),
        (|r| r.lines[0].quantity = 1_000_000, "lines[0].quantity"),
        (|r| r.lines.push(r.lines[0].clone()), "lines[1].product_id"),
        (
            |r| r.lines[0].product_id = "{slot}".to_owned(),
            "lines[0].product_id",
        ),
        (|r| r.payment_method.clear(), "payment_method"),
        (
            |r| {
                r.lines = (0..60)
                    .map(|i| OrderLine {
                        product_id: format!("prd_{i}"),
                        quantity: 1,
                    })
                    .collect()
            },
            "lines",
        ),
    ];
    for (spoil, field) in cases {
        let mut request = place_request("bad-1", &[("prd_apples", 1)]);
        spoil(&mut request);
        let status = client.place_order(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {}",
            status.message()
        );
    }

    // A request far too large is refused before it is read.
    let mut huge = place_request("bad-2", &[("prd_apples", 1)]);
    huge.ship_to
        .iter_mut()
        .for_each(|a| a.street = "x".repeat(100_000));
    let status = client.place_order(huge).await.expect_err("refused");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");

    for (order_id, code) in [("", Code::InvalidArgument), ("ord_missing", Code::NotFound)] {
        let status = client
            .get_order(GetOrderRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code);
        let status = client
            .watch_order(WatchOrderRequest {
                order_id: order_id.to_owned(),
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), code);
    }
    for request in [
        ListOrdersRequest {
            buyer_id: String::new(),
            ..Default::default()
        },
        ListOrdersRequest {
            buyer_id: "b".to_owned(),
            page_size: -5,
            ..Default::default()
        },
        ListOrdersRequest {
            buyer_id: "b".to_owned(),
            page_token: "nonsense".to_owned(),
            ..Default::default()
        },
    ] {
        let status = client.list_orders(request).await.expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument);
    }

    // Nothing was placed: the good request with the same key works, and it is
    // the buyer's only order.
    let order = place_as_only_order(&client, "bad-1").await;
    world
        .wait_event(&order.order_id, |p| matches!(p, Payload::OrderPlaced(_)))
        .await;
    let placed = crate::helpers::decode_all(&world.orders_events.messages()).len();
    assert_eq!(placed, 1, "only the good request reached the bus");
}

#[tokio::test]
async fn lists_a_buyers_orders_newest_first_a_page_at_a_time() {
    let world = World::new().await;
    let orders = world.start().await;
    let mut placed = Vec::new();
    for _ in 0..7 {
        placed.push(place(&orders.client, &[("prd_apples", 1)]).await.order_id);
    }
    placed.reverse();
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = orders
            .client
            .clone()
            .list_orders(ListOrdersRequest {
                buyer_id: "buyer-hangzhou-1".to_owned(),
                page_size: 3,
                page_token: page_token.clone(),
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.orders.len() <= 3);
        seen.extend(page.orders.into_iter().map(|o| o.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, placed);
    let nobody = orders
        .client
        .clone()
        .list_orders(ListOrdersRequest {
            buyer_id: "buyer-nobody".to_owned(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    assert!(nobody.orders.is_empty());
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_changes_nothing() {
    let world = World::new().await;
    let orders = world.start().await;
    let mut client = orders.client.clone();
    for street_bytes in [100_000, 4 * 1024 * 1024] {
        let mut huge = place_request("huge-1", &[("prd_apples", 1)]);
        huge.ship_to
            .iter_mut()
            .for_each(|a| a.street = "x".repeat(street_bytes));
        let status = client.place_order(huge).await.expect_err("refused");
        assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
        let limit = "the limit is 65536 bytes (64 KiB)";
        assert!(status.message().contains(limit), "{}", status.message());
    }

    // The refused requests claimed nothing: the key places a good order, the
    // buyer's only one.
    place_as_only_order(&client, "huge-1").await;
}

/// With the broker down, PlaceOrder answers `UNAVAILABLE` within its bounded
/// wait (not after the publish timeout), telling the client to retry with
/// the same key; retries answer the same while it is down. Once it is back,
/// the same key returns the order that was stored: one order, published
/// once it could be.
#[tokio::test]
async fn with_the_broker_down_place_order_answers_unavailable_and_the_same_key_gets_the_order_later()
 {
    let mut world = World::on(
        harvest_testkit::Broker::private().expect("a private broker starts"),
        |config| config.orders.placement_wait_ms = 1_500,
    )
    .await;
    let orders = world.start().await;
    let before = place(&orders.client, &[("prd_apples", 1)]).await;

    world.broker.crash();
    let request = place_request("checkout-during-outage", &[("prd_walnuts", 2)]);
    for _ in 0..2 {
        let started = std::time::Instant::now();
        let refused = orders
            .client
            .clone()
            .place_order(request.clone())
            .await
            .expect_err("no broker to acknowledge it");
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
        assert!(
            refused
                .message()
                .contains("retry with the same idempotency_key"),
            "{}",
            refused.message()
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "answered within the bounded wait, not the publish timeout: {:?}",
            started.elapsed()
        );
    }

    // Operators see events waiting to go out.
    const OUTBOX_OVERDUE: &str = r#"harvest_orders_overdue_seconds{region="east",kind="outbox"}"#;
    orders.wait_metric(OUTBOX_OVERDUE, 1.0).await;

    world.broker.restart().await.expect("the broker restarts");
    let placed = harvest_testkit::eventually(crate::helpers::WAIT, || {
        let mut client = orders.client.clone();
        let request = request.clone();
        async move { client.place_order(request).await.ok() }
    })
    .await
    .expect("the retry returns the order")
    .into_inner();
    assert_eq!(placed.lines.len(), 1);
    let listed = orders
        .client
        .clone()
        .list_orders(ListOrdersRequest {
            buyer_id: placed.buyer_id.clone(),
            ..Default::default()
        })
        .await
        .expect("listed")
        .into_inner();
    let mut ids: Vec<String> = listed.orders.into_iter().map(|o| o.order_id).collect();
    ids.sort();
    let caught_up = harvest_testkit::eventually(crate::helpers::WAIT, || async {
        (orders.metric(OUTBOX_OVERDUE).await == 0.0).then_some(())
    })
    .await;
    assert!(caught_up.is_some(), "nothing waits once the broker is back");
    let mut expected = vec![before.order_id.clone(), placed.order_id.clone()];
    expected.sort();
    assert_eq!(
        ids, expected,
        "one order for the key, beside the one before"
    );
    let events = harvest_testkit::eventually(crate::helpers::WAIT, || {
        let events = world.events_of(&placed.order_id);
        std::future::ready(
            events
                .iter()
                .any(|event| matches!(event.payload, Some(Payload::OrderPlaced(_))))
                .then_some(events),
        )
    })
    .await
    .expect("the order-placed event is published");
    assert!(!events.is_empty());
    orders.stop().await;
}
