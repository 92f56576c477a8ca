//! The reference storefront in a real browser: Debian's Chromium, driven by
//! `e2e-browser/storefront.mjs`, shops from the pages the local stack
//! serves, which call the services with gRPC-Web. Simulated couriers pick
//! up and deliver while the order page follows the order live.
//!
//! Needs the built storefront (`make storefront`), Debian's Chromium and
//! playwright-core (`make browser-deps`); `make test` makes all three.

use std::sync::Arc;
use std::time::Duration;

use harvest_kit::issuer::bearer;
use harvest_proto::catalog::v1::GetStockRequest;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_proto::orders::v1::ListOrdersRequest;
use harvest_proto::orders::v1::orders_service_client::OrdersServiceClient;
use harvest_sim::couriers::{CourierBehavior, Doorstep, FleetCounts};
use harvest_sim::shop::{self, Shop};
use harvest_stack::ServiceKind;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::{Point, System, browser_script, repository, run_browser_script, target_dir};

/// A collection point in Hainan: in the test's catalog, only the product
/// that runs out is there.
const HAINAN: Point = Point {
    county: "Wenchang",
    province: "Hainan",
    // The test stack has no southern region; couriers here join the east.
    region: "east",
    latitude: 19.54,
    longitude: 110.80,
};

/// One HTTP/1.1 request to the storefront's server: its status and body.
async fn http(url: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&host)
        .await
        .expect("the storefront's server answers");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("request sent");
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .await
        .expect("answer read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// A stack, and the storefront served beside it, whose origin the services
/// let in.
struct Storefront {
    system: System,
    url: String,
    stop: CancellationToken,
}

impl Drop for Storefront {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Storefront {
    async fn start() -> Storefront {
        let dist = repository().join(shop::DIST_DIR);
        assert!(
            dist.join("index.html").is_file(),
            "the storefront is not built: run `make storefront`"
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the storefront");
        let origin = shop::origin(&listener).expect("bound");
        let system = System::start_with(|options| {
            options
                .env
                .push(("HARVEST_SERVER__WEB_ORIGINS".to_owned(), origin.clone()));
        })
        .await;
        let regions = system.stack.options().regions.clone();
        let site = Shop::for_stack(&system.stack, &regions, &dist).expect("the shop's settings");
        let stop = CancellationToken::new();
        tokio::spawn(shop::serve(listener, site, stop.clone()));
        Storefront {
            system,
            url: format!("{origin}/"),
            stop,
        }
    }

    /// Runs a scenario of `e2e-browser/storefront.mjs`; its output when it
    /// fails.
    async fn browse(&self, args: &[&str]) {
        let script = browser_script("storefront.mjs");
        let started = std::time::Instant::now();
        let output = run_browser_script(
            &script,
            ["--url", self.url.as_str()].iter().chain(args),
            Duration::from_secs(240),
            &format!("the storefront scenario {args:?} failed"),
        )
        .await;
        println!(
            "{output}scenario {args:?} passed in {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_buyer_shops_checks_out_and_follows_the_order_to_the_door_in_chromium() {
    let shop = Storefront::start().await;
    let system = &shop.system;
    let mut clients = system.clients.clone();
    harvest_sim::seed::seed_catalog(&mut clients.catalog)
        .await
        .expect("the sample catalog");
    // Couriers at every sample collection point, slow enough that the page
    // shows each step arrive.
    let fleet = harvest_sim::couriers::register_fleet(
        &mut clients.delivery,
        &system.stack.options().regions,
        1,
        10,
    )
    .await
    .expect("couriers registered");
    let counts = Arc::new(FleetCounts::default());
    tokio::spawn(harvest_sim::couriers::run_fleet(
        clients.delivery.clone(),
        fleet,
        CourierBehavior {
            pickup_after: (Duration::from_secs(3), Duration::from_secs(4)),
            deliver_after: (Duration::from_secs(3), Duration::from_secs(4)),
            failures: 0.0,
        },
        counts.clone(),
        Arc::new(Doorstep::asking_buyers(clients.orders.clone())),
        shop.stop.clone(),
    ));

    let screenshots = target_dir().join("storefront");
    std::fs::create_dir_all(&screenshots).expect("a folder for the screenshot");
    let screenshot = screenshots.join("order-delivered.png");
    let _ = std::fs::remove_file(&screenshot);
    shop.browse(&[
        "--scenario",
        "order",
        "--screenshot",
        screenshot.to_str().expect("a UTF-8 path"),
    ])
    .await;
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    // Two villages, two shipments, both delivered with the buyer's code.
    assert_eq!(
        counts.delivered.load(std::sync::atomic::Ordering::Relaxed),
        2,
        "both villages' shipments were delivered"
    );
}

#[tokio::test]
async fn a_buyer_is_told_plainly_when_stock_runs_out_mid_checkout() {
    let shop = Storefront::start().await;
    let system = &shop.system;
    let lychees = system
        .product("Feizixiao lychees, 2 kg box", &HAINAN, 3)
        .await;
    // Whoever gets the last boxes waits for a courier rather than giving
    // them back for want of one.
    system.courier("courier-wenchang-1", &HAINAN, 5).await;
    shop.browse(&["--scenario", "sold-out", "--product", &lychees.product_id])
        .await;

    // What the pages said is what happened: one buyer holds two boxes, the
    // other's order took none, one is left.
    let stock = system
        .clients
        .catalog
        .clone()
        .get_stock(GetStockRequest {
            product_id: lychees.product_id.clone(),
        })
        .await
        .expect("stock")
        .into_inner();
    assert_eq!((stock.reserved, stock.available), (2, 1));
}

#[tokio::test]
async fn the_storefront_signs_in_demo_buyers_and_nobody_else() {
    let shop = Storefront::start().await;
    let system = &shop.system;

    // Where the services are, and only the provinces of the stack's regions
    // (east and north here) to ship to.
    let (status, config) = http(&shop.url, "GET", "/config.json", "").await;
    assert_eq!(status, 200, "{config}");
    let config: Value = serde_json::from_str(&config).expect("JSON");
    assert_eq!(
        config["orders"],
        system
            .stack
            .endpoint(ServiceKind::Orders)
            .expect("running")
            .as_str()
    );
    assert_eq!(config["auth"], true);
    let provinces = config["provinces"].as_array().expect("provinces");
    assert!(
        provinces
            .iter()
            .any(|p| p["name"] == "Zhejiang" && p["name_zh"] == "浙江" && p["region"] == "east")
    );
    assert!(
        provinces
            .iter()
            .any(|p| p["name"] == "Beijing" && p["region"] == "north")
    );
    assert!(
        provinces
            .iter()
            .all(|p| p["region"] == "east" || p["region"] == "north")
    );

    // A new demo buyer gets a buyer's token: its own orders, nothing more.
    let (status, signed) = http(&shop.url, "POST", "/demo/sign-in", "{}").await;
    assert_eq!(status, 200, "{signed}");
    let signed: Value = serde_json::from_str(&signed).expect("JSON");
    let buyer = signed["buyer"].as_str().expect("a buyer").to_owned();
    let token = signed["token"].as_str().expect("a token").to_owned();
    let token = Some(token.as_str());
    assert!(buyer.starts_with("buyer-web-"), "{buyer}");
    let channel = |kind| async move {
        Channel::from_shared(system.stack.endpoint(kind).expect("running"))
            .expect("an endpoint")
            .connect()
            .await
            .expect("connected")
    };
    let mut orders = OrdersServiceClient::new(channel(ServiceKind::Orders).await);
    let mut catalog = CatalogServiceClient::new(channel(ServiceKind::Catalog).await);
    let own = orders
        .list_orders(bearer(ListOrdersRequest::default(), token))
        .await
        .expect("a buyer lists its own orders");
    assert!(own.into_inner().orders.is_empty());
    let others = orders
        .list_orders(bearer(
            ListOrdersRequest {
                buyer_id: "buyer-hangzhou-1".to_owned(),
                ..Default::default()
            },
            token,
        ))
        .await
        .expect_err("another buyer's orders");
    assert_eq!(others.code(), Code::PermissionDenied, "{others:?}");
    let stock = catalog
        .get_stock(bearer(
            GetStockRequest {
                product_id: "prd_anything".to_owned(),
            },
            token,
        ))
        .await
        .expect_err("stock is for sellers and operators");
    assert_eq!(stock.code(), Code::PermissionDenied, "{stock:?}");

    // The same buyer again, for a fresh token; never anyone else.
    let again = format!(r#"{{"buyer": "{buyer}"}}"#);
    let (status, renewed) = http(&shop.url, "POST", "/demo/sign-in", &again).await;
    assert_eq!(status, 200, "{renewed}");
    let renewed: Value = serde_json::from_str(&renewed).expect("JSON");
    assert_eq!(renewed["buyer"], buyer.as_str());
    for someone in [
        r#"{"buyer": "ops-1"}"#,
        r#"{"buyer": "buyer-hangzhou-1"}"#,
        "not json",
    ] {
        let (status, refused) = http(&shop.url, "POST", "/demo/sign-in", someone).await;
        assert_eq!(status, 400, "{someone}: {refused}");
        assert!(refused.contains("error"), "{refused}");
    }

    // The pages, and nothing outside them.
    let (status, page) = http(&shop.url, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("app.js"), "{page}");
    let (status, _) = http(&shop.url, "GET", "/../Cargo.toml", "").await;
    assert_eq!(status, 404);
}
