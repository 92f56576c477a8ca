//! Products and stock.

use harvest_proto::catalog::v1::{Category, Product, Stock, StockLot, Unit};
use harvest_proto::common::v1::{Origin, PickupPoint, Seller, SellerKind};
use serde_json::{Value, json};

use super::{
    Align, Block, Table, date, join_present, json_date, json_point, json_time, money, section,
    time, yes_no,
};
use crate::enums::short_name;

fn origin_text(origin: Option<&Origin>) -> String {
    origin
        .map(|o| join_present(&[&o.village, &o.county, &o.province]))
        .unwrap_or_default()
}

fn json_origin(origin: Option<&Origin>) -> Value {
    origin
        .map(|o| json!({ "village": o.village, "county": o.county, "province": o.province }))
        .unwrap_or(Value::Null)
}

fn json_seller(seller: Option<&Seller>) -> Value {
    seller
        .map(|s| {
            json!({
                "seller_id": s.seller_id,
                "name": s.name,
                "kind": short_name::<SellerKind>(s.kind),
                "origin": json_origin(s.origin.as_ref()),
            })
        })
        .unwrap_or(Value::Null)
}

pub fn json_pickup_point(point: Option<&PickupPoint>) -> Value {
    point
        .map(|p| {
            json!({
                "pickup_point_id": p.pickup_point_id,
                "name": p.name,
                "location": json_point(p.location.as_ref()),
                "seller_id": p.seller_id,
                "origin": json_origin(p.origin.as_ref()),
            })
        })
        .unwrap_or(Value::Null)
}

/// A pickup point for people: its name and id, then where it is.
pub fn pickup_point(point: Option<&PickupPoint>) -> Option<String> {
    let p = point?;
    let name = format!("{} ({})", p.name, p.pickup_point_id);
    let place = origin_text(p.origin.as_ref());
    let whereabouts = match super::point(p.location.as_ref()) {
        Some(at) if place.is_empty() => at,
        Some(at) => format!("{place} ({at})"),
        None => place,
    };
    if whereabouts.is_empty() {
        return Some(name);
    }
    Some(format!("{name}\n{whereabouts}"))
}

pub fn product_json(product: &Product) -> Value {
    json!({
        "product_id": product.product_id,
        "name": product.name,
        "category": short_name::<Category>(product.category),
        "unit": short_name::<Unit>(product.unit),
        "price_fen": product.price_fen,
        "perishable": product.perishable,
        "shelf_life_days": product.shelf_life_days,
        "cold_chain": product.cold_chain,
        "per_buyer_limit": product.per_buyer_limit,
        "seller": json_seller(product.seller.as_ref()),
        "collection_point": json_pickup_point(product.collection_point.as_ref()),
        "availability": product.availability.as_ref().map(|a| json!({
            "available": a.available,
            "best_before": json_date(a.best_before.as_ref()),
        })),
        "created_at": json_time(product.created_at.as_ref()),
        "updated_at": json_time(product.updated_at.as_ref()),
    })
}

pub fn product_human(product: &Product) -> String {
    let seller = product.seller.as_ref().map(|s| {
        let who = format!(
            "{} ({}, {})",
            s.name,
            s.seller_id,
            short_name::<SellerKind>(s.kind)
        );
        match origin_text(s.origin.as_ref()) {
            origin if origin.is_empty() => who,
            origin => format!("{who}\n{origin}"),
        }
    });
    let perishable = if product.perishable {
        format!("yes, keeps {} days from harvest", product.shelf_life_days)
    } else {
        "no".to_owned()
    };
    Block::new()
        .field("Product", product.product_id.as_str())
        .field("Name", product.name.as_str())
        .field("Category", short_name::<Category>(product.category))
        .field(
            "Price",
            format!(
                "{} per {}",
                money(product.price_fen),
                unit_word(product.unit)
            ),
        )
        .field("Perishable", perishable)
        .field("Cold chain", yes_no(product.cold_chain))
        .maybe(
            "Limit",
            (product.per_buyer_limit > 0).then(|| {
                format!(
                    "{} per buyer within the catalog's window",
                    product.per_buyer_limit
                )
            }),
        )
        .maybe(
            "Available",
            product.availability.as_ref().map(|a| match &a.best_before {
                Some(best_before) => {
                    format!("{}, best before {}", a.available, date(Some(best_before)))
                }
                None => a.available.to_string(),
            }),
        )
        .maybe("Seller", seller)
        .maybe("Pickup", pickup_point(product.collection_point.as_ref()))
        .field("Created", time(product.created_at.as_ref()))
        .field("Updated", time(product.updated_at.as_ref()))
        .render()
}

fn unit_word(unit: i32) -> String {
    short_name::<Unit>(unit).to_ascii_lowercase()
}

pub fn products_json(products: &[Product]) -> Value {
    json!({ "products": products.iter().map(product_json).collect::<Vec<_>>() })
}

pub fn products_human(products: &[Product]) -> String {
    if products.is_empty() {
        return "no products match\n".to_owned();
    }
    let mut table = Table::new(&[
        ("PRODUCT", Align::Left),
        ("NAME", Align::Left),
        ("CATEGORY", Align::Left),
        ("PRICE", Align::Right),
        ("UNIT", Align::Left),
        ("SELLER", Align::Left),
        ("ORIGIN", Align::Left),
    ]);
    for product in products {
        let seller = product.seller.as_ref();
        let origin = seller
            .and_then(|s| s.origin.as_ref())
            .map(|o| join_present(&[&o.county, &o.province]))
            .unwrap_or_default();
        table.row(vec![
            product.product_id.clone(),
            product.name.clone(),
            short_name::<Category>(product.category),
            money(product.price_fen),
            unit_word(product.unit),
            seller.map(|s| s.seller_id.clone()).unwrap_or_default(),
            origin,
        ]);
    }
    table.render()
}

fn lot_json(lot: &StockLot) -> Value {
    json!({
        "lot_id": lot.lot_id,
        "received": lot.received,
        "on_hand": lot.on_hand,
        "available": lot.available,
        "reserved": lot.reserved,
        "harvest_date": json_date(lot.harvest_date.as_ref()),
        "best_before": json_date(lot.best_before.as_ref()),
    })
}

pub fn stock_json(stock: &Stock) -> Value {
    json!({
        "product_id": stock.product_id,
        "on_hand": stock.on_hand,
        "available": stock.available,
        "reserved": stock.reserved,
        "lots": stock.lots.iter().map(lot_json).collect::<Vec<_>>(),
    })
}

pub fn stock_human(stock: &Stock) -> String {
    let totals = Block::new()
        .field("Product", stock.product_id.as_str())
        .field("On hand", stock.on_hand.to_string())
        .field("Available", stock.available.to_string())
        .field("Reserved", stock.reserved.to_string())
        .render();
    if stock.lots.is_empty() {
        return totals + &section("LOTS", "none received yet\n");
    }
    let mut lots = Table::new(&[
        ("LOT", Align::Left),
        ("RECEIVED", Align::Right),
        ("ON HAND", Align::Right),
        ("AVAILABLE", Align::Right),
        ("RESERVED", Align::Right),
        ("HARVESTED", Align::Left),
        ("BEST BEFORE", Align::Left),
    ]);
    for lot in &stock.lots {
        lots.row(vec![
            lot.lot_id.clone(),
            lot.received.to_string(),
            lot.on_hand.to_string(),
            lot.available.to_string(),
            lot.reserved.to_string(),
            date(lot.harvest_date.as_ref()),
            date(lot.best_before.as_ref()),
        ]);
    }
    totals + &section("LOTS", &lots.render())
}

#[cfg(test)]
mod tests {
    use harvest_proto::common::v1::{Date, GeoPoint};

    use super::*;

    fn apples() -> Product {
        Product {
            product_id: "prd_apples".to_owned(),
            seller: Some(Seller {
                seller_id: "coop-luochuan".to_owned(),
                name: "Luochuan Apple Cooperative".to_owned(),
                kind: SellerKind::Cooperative.into(),
                origin: Some(Origin {
                    village: "Fengqi".to_owned(),
                    county: "Luochuan".to_owned(),
                    province: "Shaanxi".to_owned(),
                }),
            }),
            name: "Fuji apples, 5 kg box".to_owned(),
            category: Category::Fruit.into(),
            unit: Unit::Box.into(),
            price_fen: 6_800,
            perishable: true,
            shelf_life_days: 45,
            cold_chain: false,
            availability: None,
            collection_point: Some(PickupPoint {
                pickup_point_id: "pp_fengqi".to_owned(),
                name: "Fengqi village square".to_owned(),
                location: Some(GeoPoint {
                    latitude: 35.76,
                    longitude: 109.43,
                }),
                seller_id: "coop-luochuan".to_owned(),
                origin: None,
            }),
            created_at: None,
            updated_at: None,
            per_buyer_limit: 0,
        }
    }

    fn day(day: i32) -> Option<Date> {
        Some(Date {
            year: 2025,
            month: 6,
            day,
        })
    }

    fn stock() -> Stock {
        Stock {
            product_id: "prd_apples".to_owned(),
            on_hand: 700,
            available: 690,
            reserved: 10,
            lots: vec![
                StockLot {
                    lot_id: "lot-1".to_owned(),
                    product_id: "prd_apples".to_owned(),
                    received: 400,
                    on_hand: 400,
                    available: 390,
                    reserved: 10,
                    harvest_date: day(1),
                    best_before: day(20),
                },
                StockLot {
                    lot_id: "lot-2".to_owned(),
                    product_id: "prd_apples".to_owned(),
                    received: 300,
                    on_hand: 300,
                    available: 300,
                    reserved: 0,
                    harvest_date: day(2),
                    best_before: None,
                },
            ],
        }
    }

    #[test]
    fn stock_shows_totals_then_lots() {
        assert_eq!(
            stock_human(&stock()),
            "\
Product    prd_apples
On hand    700
Available  690
Reserved   10

LOTS
LOT    RECEIVED  ON HAND  AVAILABLE  RESERVED  HARVESTED   BEST BEFORE
lot-1       400      400        390        10  2025-06-01  2025-06-20
lot-2       300      300        300         0  2025-06-02  -
"
        );
    }

    #[test]
    fn stock_json_has_totals_and_lots() {
        let json = stock_json(&stock());
        assert_eq!(json["on_hand"], 700);
        assert_eq!(json["lots"][0]["best_before"], "2025-06-20");
        assert_eq!(json["lots"][1]["best_before"], Value::Null);
        assert_eq!(json["lots"][1]["available"], 300);
    }

    #[test]
    fn product_shows_price_seller_and_pickup() {
        let text = product_human(&apples());
        assert!(text.contains("Price       ¥68.00 per box\n"), "{text}");
        assert!(!text.contains("Limit"), "no limit of its own: {text}");
        let limited = product_human(&Product {
            per_buyer_limit: 2,
            ..apples()
        });
        assert!(
            limited.contains("Limit       2 per buyer within the catalog's window\n"),
            "{limited}"
        );
        assert_eq!(product_json(&apples())["per_buyer_limit"], 0);
        assert!(text.contains("Category    FRUIT\n"), "{text}");
        assert!(
            text.contains("Perishable  yes, keeps 45 days from harvest\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "Seller      Luochuan Apple Cooperative (coop-luochuan, COOPERATIVE)\n            Fengqi, Luochuan, Shaanxi\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "Pickup      Fengqi village square (pp_fengqi)\n            35.7600, 109.4300\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn pickup_points_show_where_they_are() {
        let mut product = apples();
        if let Some(point) = product.collection_point.as_mut() {
            point.origin = product.seller.as_ref().and_then(|s| s.origin.clone());
        }
        assert_eq!(
            pickup_point(product.collection_point.as_ref()).as_deref(),
            Some(
                "Fengqi village square (pp_fengqi)\nFengqi, Luochuan, Shaanxi (35.7600, 109.4300)"
            )
        );
        if let Some(point) = product.collection_point.as_mut() {
            point.location = None;
        }
        assert_eq!(
            pickup_point(product.collection_point.as_ref()).as_deref(),
            Some("Fengqi village square (pp_fengqi)\nFengqi, Luochuan, Shaanxi")
        );
    }

    #[test]
    fn products_table_and_json() {
        let text = products_human(&[apples()]);
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some(
                "PRODUCT     NAME                   CATEGORY   PRICE  UNIT  SELLER         ORIGIN"
            )
        );
        assert_eq!(
            lines.next(),
            Some(
                "prd_apples  Fuji apples, 5 kg box  FRUIT     ¥68.00  box   coop-luochuan  Luochuan, Shaanxi"
            )
        );
        assert_eq!(products_human(&[]), "no products match\n");

        let json = products_json(&[apples()]);
        let product = &json["products"][0];
        assert_eq!(product["price_fen"], 6_800);
        assert_eq!(product["category"], "FRUIT");
        assert_eq!(product["seller"]["kind"], "COOPERATIVE");
        assert_eq!(product["collection_point"]["location"]["latitude"], 35.76);
        assert_eq!(product["created_at"], Value::Null);
    }
}
