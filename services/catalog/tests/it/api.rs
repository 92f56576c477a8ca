//! The catalog's gRPC API: what it accepts, and what it refuses without
//! changing anything.

use harvest_proto::catalog::v1::{
    Category, GetProductRequest, GetStockRequest, ListProductsRequest, ReceiveStockLotRequest,
    UpdatePriceRequest,
};
use harvest_proto::common::v1 as common;
use tonic::Code;

use crate::helpers::{TestCatalog, date, product_request};

/// Breaks one field of a valid request.
type Spoiler = Box<dyn Fn(&mut harvest_proto::catalog::v1::CreateProductRequest)>;

fn assert_status<T: std::fmt::Debug>(result: Result<T, tonic::Status>, code: Code, mentions: &str) {
    let status = result.expect_err("the request must fail");
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().contains(mentions),
        "message {:?} should mention {mentions:?}",
        status.message()
    );
}

#[tokio::test]
async fn create_and_list_products_with_filters_and_pages() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let mut created = Vec::new();
    for (index, (province, category)) in [
        ("Shaanxi", Category::Fruit),
        ("Yunnan", Category::Tea),
        ("Shaanxi", Category::Nuts),
        ("Yunnan", Category::Fruit),
        ("Shaanxi", Category::Fruit),
    ]
    .into_iter()
    .enumerate()
    {
        let mut request = product_request(&format!("product {index}"), 1_000 + index as i64);
        request.category = category.into();
        if let Some(origin) = request.seller.as_mut().and_then(|s| s.origin.as_mut()) {
            origin.province = province.to_owned();
        }
        if let Some(seller) = request.seller.as_mut().filter(|_| index % 2 == 1) {
            seller.seller_id = "farmer-li".to_owned();
        }
        created.push(
            client
                .create_product(request)
                .await
                .expect("created")
                .into_inner(),
        );
    }

    let fetched = client
        .get_product(GetProductRequest {
            product_id: created[0].product_id.clone(),
        })
        .await
        .expect("found")
        .into_inner();
    // As created, with nothing on offer yet.
    assert_eq!(
        fetched.availability,
        Some(harvest_proto::catalog::v1::Availability::default())
    );
    assert_eq!(
        harvest_proto::catalog::v1::Product {
            availability: None,
            ..fetched
        },
        created[0]
    );

    // Two at a time through everything, in creation order.
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_products(ListProductsRequest {
                page_size: 2,
                page_token: page_token.clone(),
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(page.products.len() <= 2);
        seen.extend(page.products.into_iter().map(|p| p.product_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let all: Vec<String> = created.iter().map(|p| p.product_id.clone()).collect();
    assert_eq!(seen, all);

    let list = |request: ListProductsRequest| {
        let mut client = client.clone();
        async move {
            client
                .list_products(request)
                .await
                .expect("listed")
                .into_inner()
                .products
                .into_iter()
                .map(|p| p.name)
                .collect::<Vec<_>>()
        }
    };
    let fruit_from_shaanxi = list(ListProductsRequest {
        category: Category::Fruit.into(),
        origin_province: "Shaanxi".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(fruit_from_shaanxi, vec!["product 0", "product 4"]);
    let from_farmer_li = list(ListProductsRequest {
        seller_id: "farmer-li".to_owned(),
        ..Default::default()
    })
    .await;
    assert_eq!(from_farmer_li, vec!["product 1", "product 3"]);
}

#[tokio::test]
async fn a_retried_create_with_a_request_id_returns_the_first_product() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let mut request = product_request("Sichuan peppercorns", 3_200);
    request.request_id = "create-pepper-1".to_owned();
    let first = client
        .create_product(request.clone())
        .await
        .expect("created")
        .into_inner();
    let again = client
        .create_product(request.clone())
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(first.product_id, again.product_id);

    request.price_fen = 9_999;
    assert_status(
        client.create_product(request).await,
        Code::AlreadyExists,
        "request_id",
    );
    let listed = catalog.listed().await;
    assert_eq!(
        listed.len(),
        1,
        "one product, however often it was asked for"
    );
}

/// A first call that claimed its request id and died before storing its
/// product holds the id for the lease only: a retry within it is told to
/// retry, one after it creates the product, once.
#[tokio::test]
async fn a_request_id_whose_first_call_stored_nothing_is_taken_over_after_the_lease() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let request_id = harvest_domain::Id::parse("create-lost-1").expect("valid");
    let lost = harvest_domain::Id::parse("prd_lost").expect("valid");
    let claimed = catalog
        .store
        .claim_create_request(&request_id, &lost)
        .await
        .expect("redis");
    assert_eq!(claimed, None, "the dead call's claim");
    let mut request = product_request("Yunnan coffee", 5_600);
    request.request_id = request_id.to_string();

    assert_status(
        client.create_product(request.clone()).await,
        Code::FailedPrecondition,
        "still being created; retry",
    );

    // The lease runs out (its claim made longer ago than that).
    let mut redis = harvest_kit::store::connect(&catalog.config.redis)
        .await
        .expect("redis connects");
    let key = format!(
        "{}catalog:create:{{{request_id}}}",
        catalog.config.redis.key_prefix
    );
    let long_ago = harvest_catalog::store::unix_millis(std::time::SystemTime::now())
        - harvest_catalog::store::CREATE_LEASE.as_millis() as i64
        - 1_000;
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(format!("{lost}|{long_ago}"))
        .arg("KEEPTTL")
        .query_async(&mut redis)
        .await
        .expect("redis");

    let created = client
        .create_product(request.clone())
        .await
        .expect("taken over")
        .into_inner();
    assert_ne!(created.product_id, lost.as_str());
    let again = client
        .create_product(request)
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(again.product_id, created.product_id);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .expect("redis");
    assert!(ttl > 29 * 24 * 3600, "remembered for 30 days: {ttl} s");
    assert_eq!(catalog.listed().await.len(), 1, "created once");
}

#[tokio::test]
async fn bad_requests_get_clear_statuses_and_change_nothing() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let apples = catalog.product("Fuji apples", 6_800, true).await;
    catalog.lot(&apples, "a1", 10, 20).await;
    let stock_before = catalog.stock(&apples).await;
    let today = harvest_domain::Date::today();

    // CreateProduct
    let cases: Vec<(Spoiler, &str)> = vec![
        (Box::new(|r| r.price_fen = 0), "price_fen"),
        (Box::new(|r| r.price_fen = -100), "price_fen"),
        (Box::new(|r| r.name = "  ".to_owned()), "name"),
        (Box::new(|r| r.category = 0), "category"),
        (Box::new(|r| r.unit = 42), "unit"),
        (Box::new(|r| r.seller = None), "seller"),
        (
            Box::new(|r| r.seller.as_mut().expect("set").seller_id = "a b".to_owned()),
            "seller.seller_id",
        ),
        (
            Box::new(|r| r.seller.as_mut().expect("set").kind = 0),
            "seller.kind",
        ),
        (Box::new(|r| r.perishable = true), "shelf_life_days"),
        (Box::new(|r| r.shelf_life_days = 5), "shelf_life_days"),
        (Box::new(|r| r.collection_point = None), "collection_point"),
        (
            Box::new(|r| {
                r.collection_point.as_mut().expect("set").location = Some(common::GeoPoint {
                    latitude: 95.0,
                    longitude: 0.0,
                })
            }),
            "collection_point.location.latitude",
        ),
        (
            Box::new(|r| r.request_id = "{slot}".to_owned()),
            "request_id",
        ),
    ];
    for (spoil, field) in cases {
        let mut request = product_request("Broken", 100);
        spoil(&mut request);
        assert_status(
            client.create_product(request).await,
            Code::InvalidArgument,
            field,
        );
    }

    // GetProduct
    assert_status(
        client
            .get_product(GetProductRequest {
                product_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "product_id",
    );
    assert_status(
        client
            .get_product(GetProductRequest {
                product_id: "prd_missing".to_owned(),
            })
            .await,
        Code::NotFound,
        "prd_missing",
    );

    // ListProducts
    assert_status(
        client
            .list_products(ListProductsRequest {
                page_size: -1,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        client
            .list_products(ListProductsRequest {
                page_token: "garbage".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "page_token",
    );
    assert_status(
        client
            .list_products(ListProductsRequest {
                category: 77,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "category",
    );

    // UpdatePrice
    assert_status(
        client
            .update_price(UpdatePriceRequest {
                product_id: apples.product_id.clone(),
                price_fen: -1,
            })
            .await,
        Code::InvalidArgument,
        "price_fen",
    );
    assert_status(
        client
            .update_price(UpdatePriceRequest {
                product_id: "prd_missing".to_owned(),
                price_fen: 100,
            })
            .await,
        Code::NotFound,
        "prd_missing",
    );

    // ReceiveStockLot
    let lot = |quantity: i64,
               harvested: harvest_domain::Date,
               best_before: Option<harvest_domain::Date>| {
        ReceiveStockLotRequest {
            product_id: apples.product_id.clone(),
            lot_id: String::new(),
            quantity,
            harvest_date: Some(date(harvested)),
            best_before: best_before.map(date),
        }
    };
    assert_status(
        client.receive_stock_lot(lot(0, today, None)).await,
        Code::InvalidArgument,
        "quantity",
    );
    assert_status(
        client.receive_stock_lot(lot(20_000_000, today, None)).await,
        Code::InvalidArgument,
        "quantity",
    );
    assert_status(
        client
            .receive_stock_lot(lot(5, today.plus_days(3), None))
            .await,
        Code::InvalidArgument,
        "harvest_date",
    );
    assert_status(
        client
            .receive_stock_lot(lot(5, today, Some(today.plus_days(-1))))
            .await,
        Code::InvalidArgument,
        "best_before",
    );
    assert_status(
        client
            .receive_stock_lot(lot(5, today.plus_days(-30), Some(today.plus_days(-2))))
            .await,
        Code::FailedPrecondition,
        "best-before",
    );
    let mut impossible_date = lot(5, today, None);
    impossible_date.harvest_date = Some(common::Date {
        year: 2026,
        month: 2,
        day: 30,
    });
    assert_status(
        client.receive_stock_lot(impossible_date).await,
        Code::InvalidArgument,
        "harvest_date",
    );
    let mut unknown = lot(5, today, None);
    unknown.product_id = "prd_missing".to_owned();
    assert_status(
        client.receive_stock_lot(unknown).await,
        Code::NotFound,
        "prd_missing",
    );
    let mut reused = lot(99, today, None);
    reused.lot_id = "a1".to_owned();
    assert_status(
        client.receive_stock_lot(reused).await,
        Code::AlreadyExists,
        "a1",
    );

    // GetStock
    assert_status(
        client
            .get_stock(GetStockRequest {
                product_id: "{x}".to_owned(),
            })
            .await,
        Code::InvalidArgument,
        "product_id",
    );
    assert_status(
        client
            .get_stock(GetStockRequest {
                product_id: "prd_missing".to_owned(),
            })
            .await,
        Code::NotFound,
        "prd_missing",
    );

    // Nothing changed (the listing adds what is on offer).
    let products: Vec<_> = client
        .list_products(ListProductsRequest::default())
        .await
        .expect("listed")
        .into_inner()
        .products
        .into_iter()
        .map(|product| harvest_proto::catalog::v1::Product {
            availability: None,
            ..product
        })
        .collect();
    assert_eq!(
        products,
        vec![apples.clone()],
        "no product was created or altered"
    );
    assert_eq!(catalog.stock(&apples).await, stock_before, "no stock moved");
}

#[tokio::test]
async fn price_updates_and_retried_lots() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let apples = catalog.product("Fuji apples", 6_800, true).await;
    let updated = client
        .update_price(UpdatePriceRequest {
            product_id: apples.product_id.clone(),
            price_fen: 5_900,
        })
        .await
        .expect("updated")
        .into_inner();
    assert_eq!(updated.price_fen, 5_900);
    assert_eq!(updated.name, apples.name);

    let today = harvest_domain::Date::today();
    let request = ReceiveStockLotRequest {
        product_id: apples.product_id.clone(),
        lot_id: "harvest-2026-11".to_owned(),
        quantity: 40,
        harvest_date: Some(date(today)),
        best_before: None,
    };
    let lot = client
        .receive_stock_lot(request.clone())
        .await
        .expect("received")
        .into_inner();
    // A perishable's best-before defaults to harvest plus shelf life.
    assert_eq!(lot.best_before, Some(date(today.plus_days(20))));
    let again = client
        .receive_stock_lot(request)
        .await
        .expect("retried")
        .into_inner();
    assert_eq!(lot, again);
    let stock = catalog.stock(&apples).await;
    assert_eq!(
        (stock.on_hand, stock.available, stock.reserved),
        (40, 40, 0),
        "received once"
    );
}

#[tokio::test]
async fn serves_health_reflection_and_metrics() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let catalog = TestCatalog::start().await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", catalog.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");

    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: "harvest.catalog.v1.CatalogService".to_owned(),
        })
        .await
        .expect("health answers")
        .into_inner();
    assert_eq!(health.status(), ServingStatus::Serving);

    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .expect("reflection answers")
        .into_inner();
    let response = responses
        .message()
        .await
        .expect("a response")
        .expect("not empty");
    let Some(MessageResponse::ListServicesResponse(listed)) = response.message_response else {
        panic!("expected a service list, got {response:?}");
    };
    let names: Vec<String> = listed.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"harvest.catalog.v1.CatalogService".to_owned()),
        "{names:?}"
    );

    // One request, so the request histogram has a sample to show.
    catalog.product("Fuji apples", 6_800, false).await;
    // And calls to methods that do not exist, each under a made-up name.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", catalog.grpc_addr))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let mut grpc = tonic::client::Grpc::new(channel);
    for attempt in 0..3 {
        grpc.ready().await.expect("ready");
        let path = format!("/harvest.catalog.v1.CatalogService/MadeUp{attempt}");
        let answer: Result<tonic::Response<()>, tonic::Status> = grpc
            .unary(
                tonic::Request::new(()),
                path.parse().expect("a path"),
                tonic_prost::ProstCodec::<(), ()>::default(),
            )
            .await;
        let status = answer.expect_err("no such method");
        assert_eq!(status.code(), Code::Unimplemented);
    }
    let mut http = tokio::net::TcpStream::connect(catalog.admin_addr)
        .await
        .expect("admin port");
    http.write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    http.read_to_string(&mut body).await.expect("response");
    assert!(
        body.starts_with("HTTP/1.0 200") || body.starts_with("HTTP/1.1 200"),
        "{body}"
    );
    assert!(
        body.contains("harvest_grpc_request_seconds_bucket{method=\"/harvest.catalog.v1.CatalogService/CreateProduct\",code=\"0\""),
        "{body}"
    );
    assert!(
        body.contains("harvest_grpc_request_seconds_count{method=\"unknown\",code=\"12\"} 3"),
        "{body}"
    );
    assert!(
        !body.contains("MadeUp"),
        "a made-up path became a label: {body}"
    );
}

#[tokio::test]
async fn a_request_over_the_size_limit_is_refused_and_changes_nothing() {
    let catalog = TestCatalog::start().await;
    let mut client = catalog.client.clone();
    let mut huge = product_request("Luochuan apples", 5_000);
    huge.name = "x".repeat(4 * 1024 * 1024);
    assert_status(
        client.create_product(huge).await,
        Code::ResourceExhausted,
        "the limit is 16384 bytes (16 KiB)",
    );
    let products = client
        .list_products(ListProductsRequest::default())
        .await
        .expect("the catalog still serves")
        .into_inner()
        .products;
    assert!(products.is_empty(), "nothing was created: {products:?}");
}

/// With Redis frozen, a call answers UNAVAILABLE ("retry") once the
/// connection's response timeout passes, not INTERNAL; once Redis is back,
/// the same call answers.
#[tokio::test]
async fn with_redis_frozen_calls_answer_unavailable_and_then_recover() {
    let catalog = TestCatalog::start().await;
    let product = catalog.product("Fuji apples", 6_800, false).await;
    let request = GetProductRequest {
        product_id: product.product_id.clone(),
    };
    catalog.redis.pause();
    let refused = catalog
        .client
        .clone()
        .get_product(request.clone())
        .await
        .expect_err("no answer from Redis");
    catalog.redis.resume();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("retry"), "{}", refused.message());
    let answered = harvest_testkit::eventually(std::time::Duration::from_secs(20), || {
        let mut client = catalog.client.clone();
        let request = request.clone();
        async move { client.get_product(request).await.ok() }
    })
    .await
    .expect("answers again")
    .into_inner();
    assert_eq!(answered.product_id, product.product_id);
}

#[tokio::test]
async fn buyers_see_what_they_can_order_and_its_earliest_best_before() {
    let catalog = TestCatalog::start().await;
    let honey = catalog.product("Jujube honey", 4_800, true).await;
    let today = harvest_domain::Date::today();
    let availability = |product: &harvest_proto::catalog::v1::Product| {
        product.availability.expect("availability is set")
    };
    let get = || async {
        catalog
            .client
            .clone()
            .get_product(GetProductRequest {
                product_id: honey.product_id.clone(),
            })
            .await
            .expect("product")
            .into_inner()
    };
    // Creating answers with the product as written, before any stock.
    assert_eq!(honey.availability, None);
    let fresh = availability(&get().await);
    assert_eq!((fresh.available, fresh.best_before), (0, None));

    // A lot too close to its best-before to be delivered in time (the
    // reservation's lead is 2 days) is not on offer; the others are, the
    // earliest best-before first.
    catalog.lot(&honey, "lot-old", 5, 1).await;
    catalog.lot(&honey, "lot-late", 7, 30).await;
    catalog.lot(&honey, "lot-soon", 4, 10).await;
    let stocked = availability(&get().await);
    assert_eq!(stocked.available, 11);
    assert_eq!(stocked.best_before, Some(date(today.plus_days(10))));

    // Units an order holds are not on offer; a lot all held is no longer
    // the earliest.
    let placed = catalog.place(&[(&honey.product_id, 4)]).await;
    catalog.outcome(&placed.order_id).await;
    let held = availability(&get().await);
    assert_eq!(held.available, 7);
    assert_eq!(held.best_before, Some(date(today.plus_days(30))));

    // The listing says the same, product by product.
    let listed = catalog
        .client
        .clone()
        .list_products(ListProductsRequest::default())
        .await
        .expect("listed")
        .into_inner();
    let found = listed
        .products
        .iter()
        .find(|product| product.product_id == honey.product_id)
        .expect("listed");
    assert_eq!(availability(found), held);
}
