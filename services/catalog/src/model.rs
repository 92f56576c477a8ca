//! Checking requests and shaping replies: every field of a request is
//! validated here, before anything is written.

use std::time::SystemTime;

use harvest_domain::{Date, Fen, Id, Quantity};
use harvest_proto::catalog::v1::{
    Availability, Category, CreateProductRequest, Product, ReceiveStockLotRequest, StockLot, Unit,
};
use harvest_proto::common::v1 as common;

use crate::error::CatalogError;
use crate::store::LotState;

const MAX_NAME_CHARS: usize = 120;
const MAX_PLACE_CHARS: usize = 64;
const MAX_SHELF_LIFE_DAYS: i32 = 3650;

pub fn parse_id(field: &str, value: &str) -> Result<Id, CatalogError> {
    Id::parse(value).map_err(|error| CatalogError::invalid(field, error))
}

fn text(field: &str, value: &str, max_chars: usize) -> Result<String, CatalogError> {
    harvest_domain::clean_text(value, max_chars)
        .map_err(|error| CatalogError::invalid(field, error))
}

pub fn price(field: &str, fen: i64) -> Result<Fen, CatalogError> {
    if fen == 0 {
        return Err(CatalogError::invalid(field, "must be positive"));
    }
    Fen::parse(fen).map_err(|error| CatalogError::invalid(field, error))
}

pub fn quantity(field: &str, units: i64) -> Result<Quantity, CatalogError> {
    Quantity::parse(units).map_err(|error| CatalogError::invalid(field, error))
}

/// A per-buyer limit: 0 (the catalog's default applies) up to the largest
/// quantity.
pub fn per_buyer_limit(field: &str, units: i64) -> Result<i64, CatalogError> {
    if units == 0 {
        return Ok(0);
    }
    if units < 0 {
        return Err(CatalogError::invalid(
            field,
            format!("must not be negative, got {units}; 0 leaves the catalog's default"),
        ));
    }
    Ok(quantity(field, units)?.get())
}

pub fn date(field: &str, date: Option<&common::Date>) -> Result<Date, CatalogError> {
    let date = date.ok_or_else(|| CatalogError::invalid(field, "is required"))?;
    Date::from_ymd(date.year, date.month, date.day)
        .map_err(|error| CatalogError::invalid(field, error))
}

pub fn date_to_proto(date: Date) -> common::Date {
    let (year, month, day) = date.ymd();
    common::Date { year, month, day }
}

fn origin(field: &str, origin: Option<&common::Origin>) -> Result<common::Origin, CatalogError> {
    let origin = origin.ok_or_else(|| CatalogError::invalid(field, "is required"))?;
    Ok(common::Origin {
        village: text(
            &format!("{field}.village"),
            &origin.village,
            MAX_PLACE_CHARS,
        )?,
        county: text(&format!("{field}.county"), &origin.county, MAX_PLACE_CHARS)?,
        province: text(
            &format!("{field}.province"),
            &origin.province,
            MAX_PLACE_CHARS,
        )?,
    })
}

pub fn location(
    field: &str,
    point: Option<&common::GeoPoint>,
) -> Result<common::GeoPoint, CatalogError> {
    let point = point.ok_or_else(|| CatalogError::invalid(field, "is required"))?;
    if !(point.latitude.is_finite() && (-90.0..=90.0).contains(&point.latitude)) {
        return Err(CatalogError::invalid(
            format!("{field}.latitude"),
            "must be between -90 and 90",
        ));
    }
    if !(point.longitude.is_finite() && (-180.0..=180.0).contains(&point.longitude)) {
        return Err(CatalogError::invalid(
            format!("{field}.longitude"),
            "must be between -180 and 180",
        ));
    }
    Ok(*point)
}

/// The id of a seller's collection point: the same for every product the
/// seller hands over at a point of that name.
pub fn pickup_point_id(seller_id: &Id, point_name: &str) -> Id {
    harvest_domain::deterministic_id("pp", &[seller_id.as_str(), point_name])
}

/// A product built from a valid request, with a fresh id.
pub fn new_product(request: &CreateProductRequest) -> Result<Product, CatalogError> {
    let seller = request
        .seller
        .as_ref()
        .ok_or_else(|| CatalogError::invalid("seller", "is required"))?;
    let seller_id = parse_id("seller.seller_id", &seller.seller_id)?;
    let kind = common::SellerKind::try_from(seller.kind)
        .ok()
        .filter(|kind| *kind != common::SellerKind::Unspecified)
        .ok_or_else(|| CatalogError::invalid("seller.kind", "must be FARMER or COOPERATIVE"))?;
    let seller = common::Seller {
        seller_id: seller_id.to_string(),
        name: text("seller.name", &seller.name, MAX_NAME_CHARS)?,
        kind: kind.into(),
        origin: Some(origin("seller.origin", seller.origin.as_ref())?),
    };

    let name = text("name", &request.name, MAX_NAME_CHARS)?;
    let category = Category::try_from(request.category)
        .ok()
        .filter(|category| *category != Category::Unspecified)
        .ok_or_else(|| CatalogError::invalid("category", "must be a known category"))?;
    let unit = Unit::try_from(request.unit)
        .ok()
        .filter(|unit| *unit != Unit::Unspecified)
        .ok_or_else(|| CatalogError::invalid("unit", "must be a known unit"))?;
    let price_fen = price("price_fen", request.price_fen)?;
    let per_buyer_limit = per_buyer_limit("per_buyer_limit", request.per_buyer_limit)?;
    if request.perishable {
        if !(1..=MAX_SHELF_LIFE_DAYS).contains(&request.shelf_life_days) {
            return Err(CatalogError::invalid(
                "shelf_life_days",
                format!("must be between 1 and {MAX_SHELF_LIFE_DAYS} for perishables"),
            ));
        }
    } else if request.shelf_life_days != 0 {
        return Err(CatalogError::invalid(
            "shelf_life_days",
            "applies to perishables only; leave it 0",
        ));
    }
    let point = request
        .collection_point
        .as_ref()
        .ok_or_else(|| CatalogError::invalid("collection_point", "is required"))?;
    let point_name = text("collection_point.name", &point.name, MAX_NAME_CHARS)?;
    let point = common::PickupPoint {
        pickup_point_id: pickup_point_id(&seller_id, &point_name).to_string(),
        name: point_name,
        location: Some(location(
            "collection_point.location",
            point.location.as_ref(),
        )?),
        seller_id: seller_id.to_string(),
        origin: seller.origin.clone(),
    };

    // Stored times have millisecond precision; start with one.
    let now = SystemTime::UNIX_EPOCH
        + std::time::Duration::from_millis(
            crate::store::unix_millis(harvest_kit::clock::now()) as u64
        );
    Ok(Product {
        product_id: harvest_domain::new_id("prd").to_string(),
        seller: Some(seller),
        name,
        category: category.into(),
        unit: unit.into(),
        price_fen: price_fen.get(),
        perishable: request.perishable,
        shelf_life_days: request.shelf_life_days,
        cold_chain: request.cold_chain,
        collection_point: Some(point),
        created_at: Some(now.into()),
        updated_at: Some(now.into()),
        per_buyer_limit,
        availability: None,
    })
}

/// Whether two products describe the same thing (ids and times aside).
pub fn same_listing(a: &Product, b: &Product) -> bool {
    let strip = |product: &Product| Product {
        product_id: String::new(),
        created_at: None,
        updated_at: None,
        availability: None,
        ..product.clone()
    };
    strip(a) == strip(b)
}

/// A quantity in a product's unit, for people: `50 kg`, `3 boxes`.
pub fn quantity_text(quantity: i64, unit: Unit) -> String {
    let (one, many) = match unit {
        Unit::Kilogram => ("kg", "kg"),
        Unit::Jin => ("jin", "jin"),
        Unit::Box => ("box", "boxes"),
        Unit::Jar => ("jar", "jars"),
        Unit::Bag => ("bag", "bags"),
        Unit::Piece => ("piece", "pieces"),
        Unit::Bottle => ("bottle", "bottles"),
        Unit::Unspecified => ("unit", "units"),
    };
    format!("{quantity} {}", if quantity == 1 { one } else { many })
}

/// A stock lot to receive, checked against its product.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLot {
    pub lot_id: Id,
    pub quantity: Quantity,
    pub harvested: Date,
    pub best_before: Date,
}

pub fn new_lot(
    request: &ReceiveStockLotRequest,
    product: &Product,
) -> Result<NewLot, CatalogError> {
    let lot_id = if request.lot_id.is_empty() {
        harvest_domain::new_id("lot")
    } else {
        parse_id("lot_id", &request.lot_id)?
    };
    let quantity = quantity("quantity", request.quantity)?;
    let harvested = date("harvest_date", request.harvest_date.as_ref())?;
    let today = Date::today();
    if harvested > today {
        return Err(CatalogError::invalid("harvest_date", "is in the future"));
    }
    let best_before = match (&request.best_before, product.perishable) {
        (Some(_), _) => date("best_before", request.best_before.as_ref())?,
        (None, true) => harvested.plus_days(product.shelf_life_days),
        (None, false) => {
            return Err(CatalogError::invalid(
                "best_before",
                "is required for goods that are not perishable",
            ));
        }
    };
    if best_before < harvested {
        return Err(CatalogError::invalid(
            "best_before",
            "is before the harvest date",
        ));
    }
    if best_before < today {
        return Err(CatalogError::FailedPrecondition(format!(
            "lot is past its best-before date ({best_before})"
        )));
    }
    Ok(NewLot {
        lot_id,
        quantity,
        harvested,
        best_before,
    })
}

/// What a buyer can order of a product with `lots`: the units no order
/// holds in lots whose best-before is `orderable_from` or later, and the
/// earliest best-before among those with units left.
pub fn availability(lots: &[LotState], orderable_from: Date) -> Availability {
    let orderable = lots
        .iter()
        .filter(|lot| lot.best_before >= orderable_from && lot.on_hand > lot.reserved);
    Availability {
        available: orderable
            .clone()
            .map(|lot| lot.on_hand - lot.reserved)
            .sum(),
        best_before: orderable
            .map(|lot| lot.best_before)
            .min()
            .map(date_to_proto),
    }
}

pub fn lot_to_proto(product_id: &str, lot: &LotState) -> StockLot {
    StockLot {
        lot_id: lot.lot_id.clone(),
        product_id: product_id.to_owned(),
        received: lot.received,
        on_hand: lot.on_hand,
        available: lot.on_hand - lot.reserved,
        reserved: lot.reserved,
        harvest_date: Some(date_to_proto(lot.harvested)),
        best_before: Some(date_to_proto(lot.best_before)),
    }
}

#[cfg(test)]
mod tests {
    use harvest_proto::catalog::v1::CollectionPointInput;

    use super::*;

    pub(crate) fn valid_request() -> CreateProductRequest {
        CreateProductRequest {
            seller: Some(common::Seller {
                seller_id: "coop-luochuan".to_owned(),
                name: "Luochuan Apple Cooperative".to_owned(),
                kind: common::SellerKind::Cooperative.into(),
                origin: Some(common::Origin {
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
            shelf_life_days: 30,
            cold_chain: false,
            collection_point: Some(CollectionPointInput {
                name: "Fengqi village square".to_owned(),
                location: Some(common::GeoPoint {
                    latitude: 35.76,
                    longitude: 109.43,
                }),
            }),
            request_id: String::new(),
            per_buyer_limit: 0,
        }
    }

    fn field_of(result: Result<Product, CatalogError>) -> String {
        match result {
            Err(CatalogError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_complete_product() {
        let product = new_product(&valid_request()).expect("valid");
        assert!(product.product_id.starts_with("prd_"));
        let point = product.collection_point.expect("set");
        assert_eq!(point.seller_id, "coop-luochuan");
        assert!(!point.pickup_point_id.is_empty());
    }

    #[test]
    fn names_the_offending_field() {
        let mut request = valid_request();
        request.price_fen = -5;
        assert_eq!(field_of(new_product(&request)), "price_fen");

        let mut request = valid_request();
        request.shelf_life_days = 0;
        assert_eq!(field_of(new_product(&request)), "shelf_life_days");

        let mut request = valid_request();
        if let Some(point) = request.collection_point.as_mut() {
            point.location = None;
        }
        assert_eq!(field_of(new_product(&request)), "collection_point.location");

        let mut request = valid_request();
        if let Some(origin) = request.seller.as_mut().and_then(|s| s.origin.as_mut()) {
            origin.province.clear();
        }
        assert_eq!(field_of(new_product(&request)), "seller.origin.province");

        let mut request = valid_request();
        request.category = 99;
        assert_eq!(field_of(new_product(&request)), "category");

        let mut request = valid_request();
        request.per_buyer_limit = -1;
        assert_eq!(field_of(new_product(&request)), "per_buyer_limit");
    }

    #[test]
    fn per_buyer_limits_are_zero_or_a_quantity() {
        assert_eq!(per_buyer_limit("limit", 0).ok(), Some(0));
        assert_eq!(per_buyer_limit("limit", 2).ok(), Some(2));
        let max = Quantity::MAX.get();
        assert_eq!(per_buyer_limit("limit", max).ok(), Some(max));
        for bad in [-1, i64::MIN, max + 1] {
            assert!(
                matches!(
                    per_buyer_limit("limit", bad),
                    Err(CatalogError::InvalidArgument { ref field, .. }) if field == "limit"
                ),
                "{bad}"
            );
        }

        let mut request = valid_request();
        request.per_buyer_limit = 3;
        let product = new_product(&request).expect("valid");
        assert_eq!(product.per_buyer_limit, 3);
    }

    #[test]
    fn pickup_point_ids_group_by_seller_and_point() {
        let seller = Id::parse("s1").expect("valid");
        let other = Id::parse("s2").expect("valid");
        assert_eq!(
            pickup_point_id(&seller, "square"),
            pickup_point_id(&seller, "square")
        );
        assert_ne!(
            pickup_point_id(&seller, "square"),
            pickup_point_id(&other, "square")
        );
    }
}
