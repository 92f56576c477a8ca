//! The orders API with authentication on: who may call which method.

use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::orders::v1::{GetOrderRequest, ListOrdersRequest};
use tonic::Code;

use crate::helpers::{World, place_request};

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    bearer(message, Some(token))
}

/// An orders world with authentication on, trusting a new issuer kept in
/// a directory of its own, its settings adjusted by `adjust`.
async fn with_issuer(
    adjust: impl FnOnce(&mut harvest_kit::auth::AuthConfig),
) -> (World, Issuer, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(harvest_testkit::unique_name());
    let issuer = Issuer::in_dir(&dir, "https://id.harvest.test").expect("an issuer");
    let mut auth = issuer.config();
    adjust(&mut auth);
    let world = World::with(move |config| config.auth = auth).await;
    (world, issuer, dir)
}

/// With `auth.mode = "jwt"`, a call needs a token of the configured issuer,
/// unexpired, whose role the method's rule names; a buyer acts as the
/// token's subject and sees only their own orders.
#[tokio::test]
async fn with_authentication_on_each_call_needs_a_valid_token_of_an_allowed_role() {
    let (world, issuer, dir) = with_issuer(|_| {}).await;
    let orders = world.start().await;
    let mut client = orders.client.clone();

    let buyer = issuer.token(Role::Buyer, "buyer-hangzhou-1");
    let placed = client
        .place_order(with_token(
            place_request("with-a-token", &[("prd_apples", 1)]),
            &buyer,
        ))
        .await
        .expect("a buyer places an order")
        .into_inner();

    let missing = client
        .get_order(GetOrderRequest {
            order_id: placed.order_id.clone(),
        })
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("Bearer"),
        "{}",
        missing.message()
    );

    let expired = issuer.token_with(Role::Buyer, "buyer-hangzhou-1", -120);
    let refused = client
        .get_order(with_token(
            GetOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &expired,
        ))
        .await
        .expect_err("expired");
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert!(
        refused.message().contains("expired"),
        "{}",
        refused.message()
    );

    let stranger =
        Issuer::in_dir(&dir.join("other"), "https://id.harvest.test").expect("another issuer");
    let forged = stranger.token(Role::Operator, "mallory");
    let refused = client
        .list_orders(with_token(ListOrdersRequest::default(), &forged))
        .await
        .expect_err("another issuer's key");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let seller = issuer.token(Role::Seller, "coop-luochuan");
    let denied = client
        .place_order(with_token(
            place_request("a-seller-buys", &[("prd_apples", 1)]),
            &seller,
        ))
        .await
        .expect_err("sellers do not place orders");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(denied.message().contains("buyer"), "{}", denied.message());

    let operator = issuer.token(Role::Operator, "ops-1");
    let read = client
        .get_order(with_token(
            GetOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &operator,
        ))
        .await
        .expect("an operator reads any order")
        .into_inner();
    assert_eq!(read.order_id, placed.order_id);

    // A buyer acts as themself, and sees their own orders only.
    let mut own = place_request("buyer-id-from-the-token", &[("prd_apples", 1)]);
    own.buyer_id.clear();
    let filled = client
        .place_order(with_token(own, &buyer))
        .await
        .expect("the token names the buyer")
        .into_inner();
    assert_eq!(filled.buyer_id, "buyer-hangzhou-1");
    let other = issuer.token(Role::Buyer, "buyer-chengdu-7");
    let for_someone_else = client
        .place_order(with_token(
            place_request("for-someone-else", &[("prd_apples", 1)]),
            &other,
        ))
        .await
        .expect_err("buyer_id is another buyer");
    assert_eq!(for_someone_else.code(), Code::PermissionDenied);
    let peeking = client
        .get_order(with_token(
            GetOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &other,
        ))
        .await
        .expect_err("another buyer's order");
    assert_eq!(peeking.code(), Code::PermissionDenied);
    let listing = client
        .list_orders(with_token(
            ListOrdersRequest {
                buyer_id: "buyer-hangzhou-1".to_owned(),
                ..Default::default()
            },
            &other,
        ))
        .await
        .expect_err("another buyer's list");
    assert_eq!(listing.code(), Code::PermissionDenied);
    let mine = client
        .list_orders(with_token(ListOrdersRequest::default(), &buyer))
        .await
        .expect("their own list")
        .into_inner();
    assert_eq!(mine.orders.len(), 2);
    let watching = client
        .watch_order(with_token(
            harvest_proto::orders::v1::WatchOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &other,
        ))
        .await
        .err()
        .map(|status| status.code());
    assert_eq!(watching, Some(Code::PermissionDenied));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A buyer calling faster than `auth.requests_per_second` allows, or
/// holding more watches open than `auth.streams_per_caller`, is answered
/// `RESOURCE_EXHAUSTED`; other buyers and operators go on, and a closed
/// watch frees its place.
#[tokio::test]
async fn a_buyer_over_the_limits_is_slowed_and_others_are_not() {
    let (world, issuer, dir) = with_issuer(|auth| {
        auth.requests_per_second = 1;
        auth.request_burst = 4;
        auth.streams_per_caller = 1;
    })
    .await;
    let orders = world.start().await;
    let mut client = orders.client.clone();
    let buyer = issuer.token(Role::Buyer, "buyer-hangzhou-1");
    let placed = client
        .place_order(with_token(
            place_request("limits", &[("prd_apples", 1)]),
            &buyer,
        ))
        .await
        .expect("placed")
        .into_inner();
    let get = || GetOrderRequest {
        order_id: placed.order_id.clone(),
    };

    let watching = client
        .watch_order(with_token(
            harvest_proto::orders::v1::WatchOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &buyer,
        ))
        .await
        .expect("one watch");
    let second = client
        .watch_order(with_token(
            harvest_proto::orders::v1::WatchOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &buyer,
        ))
        .await
        .expect_err("a second watch");
    assert_eq!(second.code(), Code::ResourceExhausted, "{second:?}");
    drop(watching);

    // The burst spent, reads are refused: well before fifty of them, at a
    // refill of one a second.
    let started = std::time::Instant::now();
    let mut answered = 0;
    let slowed = loop {
        match client.get_order(with_token(get(), &buyer)).await {
            Ok(_) => answered += 1,
            Err(status) => break status,
        }
        assert!(answered < 50, "never slowed");
    };
    assert_eq!(slowed.code(), Code::ResourceExhausted, "{slowed:?}");
    assert!(slowed.message().contains("buyer-hangzhou-1"), "{slowed:?}");
    let allowed = 4 + started.elapsed().as_secs() + 1;
    assert!(
        answered <= allowed,
        "{answered} reads answered, at most {allowed} allowed"
    );

    let operator = issuer.token(Role::Operator, "ops-1");
    for _ in 0..10 {
        client
            .get_order(with_token(get(), &operator))
            .await
            .expect("operators are not limited");
    }
    // A second later the buyer may call again, and watch again: the
    // closed watch gave its place back.
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    client
        .watch_order(with_token(
            harvest_proto::orders::v1::WatchOrderRequest {
                order_id: placed.order_id.clone(),
            },
            &buyer,
        ))
        .await
        .expect("a watch again");
    let _ = std::fs::remove_dir_all(&dir);
}
