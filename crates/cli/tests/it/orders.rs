use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{WAIT, World, field};

const BUYER: &str = "buyer-hangzhou-7";

/// `order place` for `lines`, with everything else fixed, plus `extra`.
fn place_args<'a>(lines: &'a [String], extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "order",
        "place",
        "--buyer",
        BUYER,
        "--region",
        "east",
        "--recipient",
        "Zhang Wei",
        "--phone",
        "+86 138 0000 0000",
        "--province",
        "Zhejiang",
        "--county",
        "Xihu",
        "--street",
        "1 Wensan Road",
    ];
    for line in lines {
        args.extend(["--line", line.as_str()]);
    }
    args.extend_from_slice(extra);
    args
}

async fn order_json(world: &World, order_id: &str) -> Value {
    world
        .run(&["order", "show", order_id, "--json"])
        .await
        .json()
}

async fn wait_for_state(world: &World, order_id: &str, state: &str) -> Value {
    let found = harvest_testkit::eventually(WAIT, || async move {
        let order = order_json(world, order_id).await;
        (order["state"] == state).then_some(order)
    })
    .await;
    found.unwrap_or_else(|| panic!("{order_id} never reached {state}"))
}

async fn reserved_stock(world: &World, product_id: &str) -> i64 {
    let stock = world.run(&["stock", product_id, "--json"]).await.json();
    stock["reserved"].as_i64().expect("reserved")
}

#[tokio::test]
async fn places_retries_shows_lists_watches_and_cancels_an_order() {
    let world = World::start().await;
    let apples = world.product_of("coop-luochuan-apples");
    let lines = [format!("{apples}=3")];

    // Placing prints the order and the key that makes a retry safe.
    let placed = world.run(&place_args(&lines, &[])).await;
    let text = placed.ok();
    let order_id = field(text, "Order").to_owned();
    let key = field(text, "Key").to_owned();
    assert!(order_id.starts_with("ord_"), "{text}");
    assert!(text.contains(&format!("--key {key}")), "{text}");

    // The same request with the same key is the same order.
    let retried = world
        .run(&place_args(&lines, &["--key", &key, "--json"]))
        .await
        .json();
    assert_eq!(retried["order"]["order_id"], order_id.as_str());
    assert_eq!(retried["idempotency_key"], key.as_str());
    // The same key for another request is refused.
    let other_lines = [format!("{apples}=4")];
    let conflict = world.run(&place_args(&other_lines, &["--key", &key])).await;
    let error = conflict.failed(1);
    assert!(
        error.contains("ALREADY_EXISTS from the orders service"),
        "{error}"
    );

    // The catalog reserves the stock, which prices the order; with no payments
    // service running it stays reserved.
    let order = wait_for_state(&world, &order_id, "RESERVED").await;
    assert_eq!(order["total_fen"], 20_400);
    assert_eq!(order["lines"][0]["unit_price_fen"], 6_800);
    assert_eq!(order["history"][0]["to"], "PLACED");
    assert_eq!(order["history"][1]["to"], "RESERVED");
    assert!(
        order["created_at"]
            .as_str()
            .is_some_and(|at| at.ends_with('Z'))
    );
    assert_eq!(reserved_stock(&world, &apples).await, 3);

    let shown = world.run(&["order", "show", &order_id]).await;
    let text = shown.ok();
    assert_eq!(field(text, "State"), "RESERVED");
    assert_eq!(field(text, "Total"), "¥204.00");
    assert!(text.contains("\nLINES\nPRODUCT "), "{text}");
    assert!(text.contains("¥68.00"), "{text}");
    assert!(text.contains("\nHISTORY\nAT "), "{text}");
    assert!(text.contains("  PLACED  RESERVED  "), "{text}");

    let listed = world
        .run(&["order", "list", "--buyer", BUYER, "--json"])
        .await
        .json();
    let orders = listed["orders"].as_array().expect("a list");
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0]["order_id"], order_id.as_str());

    // A watcher sees the cancellation live and exits with 3.
    let mut watcher = world.spawn(&["order", "watch", &order_id]);
    let mut watched = BufReader::new(watcher.stdout.take().expect("piped")).lines();
    let first = tokio::time::timeout(WAIT, watched.next_line())
        .await
        .expect("the watcher prints the current state")
        .expect("readable")
        .expect("a line");
    assert!(
        first.ends_with(&format!("{order_id} is RESERVED")),
        "{first}"
    );

    let stranger = world
        .run(&[
            "order",
            "cancel",
            &order_id,
            "--buyer",
            "buyer-someone-else",
        ])
        .await;
    let error = stranger.failed(1);
    assert!(error.contains("PERMISSION_DENIED"), "{error}");

    let cancelled = world
        .run(&[
            "order",
            "cancel",
            &order_id,
            "--buyer",
            BUYER,
            "--reason",
            "changed my mind",
        ])
        .await;
    let text = cancelled.ok();
    assert_eq!(field(text, "State"), "CANCELLED");
    assert_eq!(
        field(text, "Cancelled"),
        "BUYER_CANCELLED: cancelled by the buyer: changed my mind"
    );

    let status = tokio::time::timeout(WAIT, watcher.wait())
        .await
        .expect("the watcher stops at the terminal state")
        .expect("exit status");
    let mut rest = Vec::new();
    while let Ok(Some(line)) = watched.next_line().await {
        rest.push(line);
    }
    assert_eq!(status.code(), Some(3), "{rest:?}");
    assert!(
        rest.iter()
            .any(|line| line.contains("RESERVED -> CANCELLED")),
        "{rest:?}"
    );

    // Cancelling released the stock.
    let released = harvest_testkit::eventually(WAIT, || async {
        (reserved_stock(&world, &apples).await == 0).then_some(())
    })
    .await;
    assert!(released.is_some(), "the reservation was never released");
}

#[tokio::test]
async fn invalid_orders_are_usage_errors_naming_the_field() {
    let world = World::start().await;
    let apples = world.product_of("coop-luochuan-apples");
    let lines = [format!("{apples}=1")];

    let mut args = place_args(&lines, &[]);
    let phone = args
        .iter()
        .position(|arg| *arg == "--phone")
        .expect("phone")
        + 1;
    args[phone] = "call me";
    let run = world.run(&args).await;
    let error = run.failed(2);
    assert!(
        error.contains("INVALID_ARGUMENT from the orders service"),
        "{error}"
    );
    assert!(error.contains("ship_to.phone"), "{error}");
    assert!(!error.contains("retry"), "nothing was placed: {error}");

    let mut args = place_args(&lines, &[]);
    let region = args
        .iter()
        .position(|arg| *arg == "--region")
        .expect("region")
        + 1;
    args[region] = "atlantis";
    let run = world.run(&args).await;
    assert!(run.failed(2).contains("region"), "{run:#?}");

    // Caught before any call: the flag is named.
    let bad_line = ["apples".to_owned()];
    let run = world.run(&place_args(&bad_line, &[])).await;
    let error = run.failed(2);
    assert!(error.contains("--line"), "{error}");
    assert!(error.contains("PRODUCT=QUANTITY"), "{error}");

    // Nothing was placed by any of them.
    let listed = world
        .run(&["order", "list", "--buyer", BUYER, "--json"])
        .await
        .json();
    assert_eq!(listed["orders"], Value::Array(Vec::new()));

    // The order of an unknown product is placed, then cancelled by the saga;
    // a watcher started afterwards sees the end at once.
    let unknown = ["prd_nothing=1".to_owned()];
    let placed = world.run(&place_args(&unknown, &["--json"])).await.json();
    let order_id = placed["order"]["order_id"]
        .as_str()
        .expect("an id")
        .to_owned();
    wait_for_state(&world, &order_id, "CANCELLED").await;
    let watched = tokio::time::timeout(
        Duration::from_secs(10),
        world.run(&["order", "watch", &order_id, "--json"]),
    )
    .await
    .expect("a watch of a finished order ends at once");
    assert_eq!(watched.code, Some(3), "{watched:#?}");
    let update: Value = serde_json::from_str(watched.stdout.trim()).expect("one JSON line");
    assert_eq!(update["order"]["cancel_reason"], "UNKNOWN_PRODUCT");
    assert_eq!(update["transition"], Value::Null);
}
