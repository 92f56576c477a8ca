//! Per-buyer purchase limits: one buyer cannot take a whole product's stock
//! when its seller (or the catalog's default) says how much one buyer may
//! hold; what a buyer gives back counts no more, and only once.

use std::time::Duration;

use harvest_bus::{Envelope, Payload};
use harvest_catalog::model;
use harvest_catalog::store::{BuyerLimit, CatalogStore, Reservation, ReserveResult};
use harvest_domain::Date;
use harvest_kit::auth::Role;
use harvest_kit::issuer::{Issuer, bearer};
use harvest_proto::catalog::v1::{GetProductRequest, Product, UpdatePurchaseLimitRequest};
use harvest_proto::events::v1::{LineShortfall, ShortfallReason};
use harvest_testkit::{Redis, unique_name};
use tonic::Code;

use crate::helpers::{TestCatalog, WAIT, decode_all, order_cancelled, product_request};

/// Creates a product whose own per-buyer limit is `limit`, with 20 units.
async fn limited_product(catalog: &TestCatalog, name: &str, limit: i64) -> Product {
    let mut request = product_request(name, 6_800);
    request.per_buyer_limit = limit;
    let product = catalog
        .client
        .clone()
        .create_product(request)
        .await
        .expect("product created")
        .into_inner();
    catalog.lot(&product, "lot-1", 20, 30).await;
    product
}

/// The catalog's outcome for `order`: the reserved quantity, or the refusal.
async fn outcome(catalog: &TestCatalog, order: &Envelope) -> Result<i64, LineShortfall> {
    let outcome = catalog.outcome(&order.order_id).await;
    match outcome.payload {
        Some(Payload::StockReserved(reserved)) => {
            Ok(reserved.lines.iter().map(|line| line.quantity).sum())
        }
        Some(Payload::StockRejected(mut rejected)) => Err(rejected.shortfalls.remove(0)),
        other => panic!("expected a stock outcome, got {other:?}"),
    }
}

/// Without a limit, the hoarding a limit prevents: one buyer takes every
/// unit of a flash sale, and the next buyer finds none.
#[tokio::test]
async fn without_a_limit_one_buyer_takes_the_whole_stock() {
    let catalog = TestCatalog::start().await;
    let honey = limited_product(&catalog, "Flash-sale honey", 0).await;
    assert_eq!(honey.per_buyer_limit, 0);
    let product_id = honey.product_id.as_str();

    let hoard = catalog.place_as("buyer-hoarder", &[(product_id, 20)]).await;
    assert_eq!(outcome(&catalog, &hoard).await, Ok(20));
    let next = catalog.place_as("buyer-next", &[(product_id, 1)]).await;
    let refused = outcome(&catalog, &next).await.expect_err("nothing is left");
    assert_eq!(refused.reason(), ShortfallReason::InsufficientStock);
    assert_eq!(catalog.stock(&honey).await.available, 0);
}

/// With a limit of 2, a buyer holding 2 is refused with the limit named,
/// as is one asking for 3 at once; another buyer still gets theirs.
#[tokio::test]
async fn a_buyer_is_stopped_at_the_limit_and_other_buyers_are_not() {
    let catalog = TestCatalog::start().await;
    let honey = limited_product(&catalog, "Flash-sale honey", 2).await;
    assert_eq!(honey.per_buyer_limit, 2);
    let product_id = honey.product_id.as_str();

    let first = catalog.place_as("buyer-a", &[(product_id, 1)]).await;
    assert_eq!(outcome(&catalog, &first).await, Ok(1));
    let second = catalog.place_as("buyer-a", &[(product_id, 1)]).await;
    assert_eq!(outcome(&catalog, &second).await, Ok(1));

    let third = catalog.place_as("buyer-a", &[(product_id, 1)]).await;
    let refused = outcome(&catalog, &third).await.expect_err("over the limit");
    assert_eq!(
        refused,
        LineShortfall {
            product_id: product_id.to_owned(),
            requested: 1,
            available: 0,
            reason: ShortfallReason::PerBuyerLimit.into(),
            per_buyer_limit: 2,
            buyer_holds: 2,
            per_buyer_window_hours: 24,
        }
    );

    let greedy = catalog.place_as("buyer-b", &[(product_id, 3)]).await;
    let refused = outcome(&catalog, &greedy).await.expect_err("3 at once");
    assert_eq!(
        (refused.reason(), refused.buyer_holds, refused.available),
        (ShortfallReason::PerBuyerLimit, 0, 2)
    );
    let fair = catalog.place_as("buyer-b", &[(product_id, 2)]).await;
    assert_eq!(
        outcome(&catalog, &fair).await,
        Ok(2),
        "buyer-a's units are not buyer-b's"
    );

    let stock = catalog.stock(&honey).await;
    assert_eq!((stock.reserved, stock.available), (4, 16));
    catalog.audit(product_id).await;
}

/// A cancelled order gives its units back to the buyer's count, once: the
/// same cancellation again gives back nothing more. A line rolled back
/// because another line of its order failed gives its units back too.
#[tokio::test]
async fn released_and_rolled_back_units_are_given_back_once() {
    let catalog = TestCatalog::start().await;
    let honey = limited_product(&catalog, "Flash-sale honey", 2).await;
    let walnuts = catalog.product("Thin-shell walnuts", 4_500, false).await;
    catalog.lot(&walnuts, "w1", 1, 30).await;
    let (honey_id, walnuts_id) = (honey.product_id.as_str(), walnuts.product_id.as_str());

    let kept = catalog.place_as("buyer-a", &[(honey_id, 1)]).await;
    assert_eq!(outcome(&catalog, &kept).await, Ok(1));
    let dropped = catalog.place_as("buyer-a", &[(honey_id, 1)]).await;
    assert_eq!(outcome(&catalog, &dropped).await, Ok(1));

    let cancel = order_cancelled(&dropped.order_id, &catalog.region, &[(honey_id, 1)]);
    for _ in 0..2 {
        catalog
            .orders
            .publish(cancel.clone())
            .await
            .expect("published");
    }
    // Each delivery of the cancellation is answered (the repeat with the
    // same event again).
    catalog
        .catalog_events
        .wait_for(WAIT, |messages| {
            let released = decode_all(messages)
                .into_iter()
                .filter(|event| {
                    event.order_id == dropped.order_id
                        && matches!(event.payload, Some(Payload::StockReleased(_)))
                })
                .count();
            (released >= 2).then_some(())
        })
        .await
        .expect("both cancellations handled");

    // One unit came back, not two.
    let again = catalog.place_as("buyer-a", &[(honey_id, 1)]).await;
    assert_eq!(outcome(&catalog, &again).await, Ok(1));
    let over = catalog.place_as("buyer-a", &[(honey_id, 1)]).await;
    let refused = outcome(&catalog, &over).await.expect_err("at the limit");
    assert_eq!(
        (refused.reason(), refused.buyer_holds),
        (ShortfallReason::PerBuyerLimit, 2)
    );

    // buyer-b's honey line is rolled back because the walnuts are short.
    let mixed = catalog
        .place_as("buyer-b", &[(honey_id, 2), (walnuts_id, 5)])
        .await;
    let refused = outcome(&catalog, &mixed).await.expect_err("walnuts short");
    assert_eq!(refused.reason(), ShortfallReason::InsufficientStock);
    let retry = catalog.place_as("buyer-b", &[(honey_id, 2)]).await;
    assert_eq!(outcome(&catalog, &retry).await, Ok(2));

    let stock = catalog.stock(&honey).await;
    assert_eq!(stock.reserved, 4, "kept, again and retry");
    catalog.audit(honey_id).await;
}

/// `reservation.per_buyer_limit` applies to products without a limit of
/// their own; a product's own limit, set later by its seller, wins.
#[tokio::test]
async fn the_default_limit_applies_until_the_seller_sets_one() {
    let catalog = TestCatalog::start_with(|config| config.reservation.per_buyer_limit = 1).await;
    let honey = limited_product(&catalog, "Flash-sale honey", 0).await;
    let product_id = honey.product_id.as_str();

    let first = catalog.place_as("buyer-a", &[(product_id, 1)]).await;
    assert_eq!(outcome(&catalog, &first).await, Ok(1));
    let second = catalog.place_as("buyer-a", &[(product_id, 1)]).await;
    let refused = outcome(&catalog, &second).await.expect_err("default limit");
    assert_eq!(
        (refused.reason(), refused.per_buyer_limit),
        (ShortfallReason::PerBuyerLimit, 1)
    );

    let updated = catalog
        .client
        .clone()
        .update_purchase_limit(UpdatePurchaseLimitRequest {
            product_id: product_id.to_owned(),
            per_buyer_limit: 3,
        })
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.per_buyer_limit, 3);
    assert_eq!(updated.price_fen, honey.price_fen);
    let read = catalog
        .client
        .clone()
        .get_product(GetProductRequest {
            product_id: product_id.to_owned(),
        })
        .await
        .expect("read")
        .into_inner();
    assert_eq!(read.per_buyer_limit, 3);

    let third = catalog.place_as("buyer-a", &[(product_id, 2)]).await;
    assert_eq!(outcome(&catalog, &third).await, Ok(2), "1 + 2 within 3");
}

/// UpdatePurchaseLimit checks its input and, with authentication on, is for
/// the product's own seller only.
#[tokio::test]
async fn only_the_products_seller_changes_its_limit() {
    let dir = std::env::temp_dir().join(unique_name());
    let issuer = Issuer::in_dir(&dir, "https://id.harvest.test").expect("an issuer");
    let auth = issuer.config();
    let catalog = TestCatalog::start_with(move |config| config.auth = auth).await;
    let mut client = catalog.client.clone();
    let seller = issuer.token(Role::Seller, "coop-luochuan");
    let honey = client
        .create_product(bearer(product_request("Honey", 6_800), Some(&seller)))
        .await
        .expect("created")
        .into_inner();
    let request = |limit: i64| UpdatePurchaseLimitRequest {
        product_id: honey.product_id.clone(),
        per_buyer_limit: limit,
    };

    let other_seller = issuer.token(Role::Seller, "coop-fuping");
    let denied = client
        .update_purchase_limit(bearer(request(1), Some(&other_seller)))
        .await
        .expect_err("not theirs");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let buyer = issuer.token(Role::Buyer, "buyer-a");
    let denied = client
        .update_purchase_limit(bearer(request(1), Some(&buyer)))
        .await
        .expect_err("not a seller");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    let invalid = client
        .update_purchase_limit(bearer(request(-1), Some(&seller)))
        .await
        .expect_err("negative");
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    assert!(invalid.message().contains("per_buyer_limit"), "{invalid:?}");
    let missing = client
        .update_purchase_limit(bearer(
            UpdatePurchaseLimitRequest {
                product_id: "prd_missing".to_owned(),
                per_buyer_limit: 1,
            },
            Some(&seller),
        ))
        .await
        .expect_err("no such product");
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let unchanged = client
        .get_product(bearer(
            GetProductRequest {
                product_id: honey.product_id.clone(),
            },
            Some(&buyer),
        ))
        .await
        .expect("read")
        .into_inner();
    assert_eq!(unchanged.per_buyer_limit, 0, "refused calls change nothing");

    let updated = client
        .update_purchase_limit(bearer(request(2), Some(&seller)))
        .await
        .expect("the seller's own product")
        .into_inner();
    assert_eq!(updated.per_buyer_limit, 2);
    let _ = std::fs::remove_dir_all(dir);
}

/// A reservation counts for the window only: once it is older, the buyer
/// may take as much again, and a buyer idle for the window is forgotten.
/// Driven through the store, whose window can be a second.
#[tokio::test]
async fn reservations_older_than_the_window_stop_counting() {
    let redis = Redis::start().expect("redis starts");
    let config = redis.config(&format!("{}:", unique_name()));
    let prefix = config.key_prefix.clone();
    let connection = harvest_kit::store::connect(&config)
        .await
        .expect("redis connects");
    let window = Duration::from_secs(1);
    let store = CatalogStore::new(connection.clone(), &prefix).with_buyer_limit(BuyerLimit {
        default_units: 2,
        window,
    });
    let product = model::new_product(&product_request("Flash-sale honey", 6_800)).expect("valid");
    store.insert_product(&product).await.expect("inserted");
    let product_id = product.product_id.as_str();
    let today = Date::today();
    store
        .receive_lot(product_id, "lot-1", 20, today.plus_days(30), today)
        .await
        .expect("received");
    let reserve = |order: &'static str, buyer: &'static str, quantity: i64| {
        let store = store.clone();
        async move {
            match store
                .reserve(product_id, order, buyer, quantity, today)
                .await
                .expect("reserved")
            {
                ReserveResult::Recorded {
                    reservation,
                    fresh: true,
                } => reservation,
                other => panic!("expected a new record, got {other:?}"),
            }
        }
    };

    let started = std::time::Instant::now();
    assert!(matches!(
        reserve("ord-1", "buyer-a", 2).await,
        Reservation::Reserved(_)
    ));
    assert!(matches!(
        reserve("ord-idle", "buyer-idle", 1).await,
        Reservation::Reserved(_)
    ));
    assert_eq!(
        reserve("ord-2", "buyer-a", 1).await,
        Reservation::OverLimit {
            requested: 1,
            limit: 2,
            holds: 2
        }
    );

    // Wait for the window to pass (the clock is what is waited for).
    tokio::time::sleep((window + Duration::from_millis(200)).saturating_sub(started.elapsed()))
        .await;
    assert!(
        matches!(
            reserve("ord-3", "buyer-a", 2).await,
            Reservation::Reserved(_)
        ),
        "the first reservation no longer counts, though still held"
    );
    assert_eq!(
        reserve("ord-4", "buyer-a", 1).await,
        Reservation::OverLimit {
            requested: 1,
            limit: 2,
            holds: 2
        },
        "the new one does"
    );

    let mut redis = connection;
    let buyers_key = format!("{prefix}catalog:{{{product_id}}}:buyers");
    let buyers: Vec<String> = redis::cmd("HKEYS")
        .arg(&buyers_key)
        .query_async(&mut redis)
        .await
        .expect("hkeys");
    assert_eq!(
        buyers,
        vec!["buyer-a".to_owned()],
        "the idle buyer is forgotten"
    );
    let entries: String = redis::cmd("HGET")
        .arg(&buyers_key)
        .arg("buyer-a")
        .query_async(&mut redis)
        .await
        .expect("hget");
    assert!(
        entries.starts_with("ord-3=2@") && !entries.contains(';'),
        "only the reservation within the window is kept: {entries}"
    );
    store
        .snapshot(product_id)
        .await
        .expect("snapshot")
        .audit()
        .expect("consistent");
}
