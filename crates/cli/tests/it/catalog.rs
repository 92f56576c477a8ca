use harvest_proto::catalog::v1::Category;
use harvest_sim::seed::SAMPLE_PRODUCTS;

use crate::helpers::{World, field};

#[tokio::test]
async fn lists_products_following_pages_and_filters() {
    let world = World::start().await;

    let all = world.run(&["products", "--json"]).await.json();
    let listed = all["products"].as_array().expect("a list");
    assert_eq!(listed.len(), SAMPLE_PRODUCTS.len());
    assert!(
        listed
            .iter()
            .all(|p| p["price_fen"].as_i64().is_some_and(|fen| fen > 0))
    );

    let paged = world
        .run(&["products", "--json", "--page-size", "5"])
        .await
        .json();
    assert_eq!(paged, all, "three pages of five make the same list");

    let limited = world
        .run(&["products", "--json", "--limit", "3", "--page-size", "2"])
        .await
        .json();
    assert_eq!(limited["products"].as_array().map(Vec::len), Some(3));

    let fruit = world
        .run(&["products", "--category", "fruit", "--json"])
        .await
        .json();
    let fruit = fruit["products"].as_array().expect("a list");
    let sample_fruit = SAMPLE_PRODUCTS
        .iter()
        .filter(|p| p.category == Category::Fruit)
        .count();
    assert_eq!(fruit.len(), sample_fruit);
    assert!(fruit.iter().all(|p| p["category"] == "FRUIT"));

    let shaanxi = world.run(&["products", "--province", "Shaanxi"]).await;
    let text = shaanxi.ok();
    assert!(text.starts_with("PRODUCT "), "{text}");
    assert!(text.contains("Fuji apples, 5 kg box"), "{text}");
    assert!(text.contains("Wild jujube honey, 500 g jar"), "{text}");
    assert!(!text.contains("walnuts"), "{text}");
    assert_eq!(
        text.lines().count(),
        3,
        "a header and two products:\n{text}"
    );
}

#[tokio::test]
async fn shows_a_product_and_its_stock_per_lot() {
    let world = World::start().await;
    let apples = world.product_of("coop-luochuan-apples");

    let product = world.run(&["product", &apples]).await;
    let text = product.ok();
    assert_eq!(field(text, "Name"), "Fuji apples, 5 kg box");
    assert_eq!(field(text, "Price"), "¥68.00 per box");
    assert_eq!(field(text, "Category"), "FRUIT");
    // Both lots are on offer; the earlier best-before is served first.
    let available = field(text, "Available");
    assert!(available.starts_with("700, best before 20"), "{available}");
    let json = world.run(&["product", &apples, "--json"]).await.json();
    assert_eq!(json["availability"]["available"], 700);
    let stock = world.run(&["stock", &apples, "--json"]).await.json();
    let earliest = stock["lots"]
        .as_array()
        .expect("lots")
        .iter()
        .filter_map(|lot| lot["best_before"].as_str())
        .min()
        .expect("best-before dates")
        .to_owned();
    assert_eq!(json["availability"]["best_before"], earliest.as_str());

    let stock = world.run(&["stock", &apples]).await;
    let text = stock.ok();
    assert_eq!(field(text, "On hand"), "700");
    assert_eq!(field(text, "Available"), "700");
    assert_eq!(field(text, "Reserved"), "0");
    assert!(text.contains("\nLOTS\nLOT "), "{text}");
    assert!(text.contains("coop-luochuan-apples-lot1"), "{text}");
    assert!(text.contains("coop-luochuan-apples-lot2"), "{text}");

    let json = world.run(&["stock", &apples, "--json"]).await.json();
    assert_eq!(json["product_id"], apples.as_str());
    assert_eq!(json["on_hand"], 700);
    let received: Vec<i64> = json["lots"]
        .as_array()
        .expect("lots")
        .iter()
        .filter_map(|lot| lot["received"].as_i64())
        .collect();
    assert_eq!(received.iter().sum::<i64>(), 700);
    assert_eq!(received.len(), 2);

    let missing = world.run(&["stock", "prd_missing"]).await;
    let error = missing.failed(1);
    assert!(
        error.contains("NOT_FOUND from the catalog service"),
        "{error}"
    );
}
