//! Checking PlaceOrder requests, before anything is written.

use std::collections::HashSet;

use harvest_domain::{Id, Quantity, Region, Regions};
use harvest_proto::common::v1::{Address, GeoPoint, OrderLine};
use harvest_proto::orders::v1::PlaceOrderRequest;
use prost::Message;

use crate::config::OrderRules;
use crate::error::OrderError;

const MAX_KEY_CHARS: usize = 128;
const MAX_TEXT_CHARS: usize = 200;
const MAX_PAYMENT_METHOD_CHARS: usize = 64;

/// A PlaceOrder request that passed every check, in canonical form.
#[derive(Clone, Debug, PartialEq)]
pub struct ValidOrder {
    pub idempotency_key: String,
    pub buyer_id: Id,
    pub region: Region,
    pub ship_to: Address,
    pub lines: Vec<OrderLine>,
    pub payment_method: String,
}

impl ValidOrder {
    /// The request as bytes: two requests are the same exactly when their
    /// canonical forms are equal.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        PlaceOrderRequest {
            idempotency_key: self.idempotency_key.clone(),
            buyer_id: self.buyer_id.to_string(),
            region: self.region.to_string(),
            ship_to: Some(self.ship_to.clone()),
            lines: self.lines.clone(),
            payment_method: self.payment_method.clone(),
        }
        .encode_to_vec()
    }
}

fn text(field: &str, value: &str, max_chars: usize) -> Result<String, OrderError> {
    harvest_domain::clean_text(value, max_chars).map_err(|error| OrderError::invalid(field, error))
}

pub fn parse_id(field: &str, value: &str) -> Result<Id, OrderError> {
    if value.is_empty() {
        return Err(OrderError::invalid(field, "is required"));
    }
    Id::parse(value).map_err(|error| OrderError::invalid(field, error))
}

fn address(address: Option<&Address>) -> Result<Address, OrderError> {
    let address = address.ok_or_else(|| OrderError::invalid("ship_to", "is required"))?;
    let phone = text("ship_to.phone", &address.phone, 20)?;
    let digits = phone.chars().filter(char::is_ascii_digit).count();
    if digits < 5
        || !phone
            .chars()
            .all(|c| c.is_ascii_digit() || "+- ()".contains(c))
    {
        return Err(OrderError::invalid(
            "ship_to.phone",
            "must be a phone number",
        ));
    }
    let location = match address.location {
        None => None,
        Some(point) => {
            let valid = point.latitude.is_finite()
                && point.longitude.is_finite()
                && (-90.0..=90.0).contains(&point.latitude)
                && (-180.0..=180.0).contains(&point.longitude);
            if !valid {
                return Err(OrderError::invalid(
                    "ship_to.location",
                    "latitude must be within ±90 and longitude within ±180",
                ));
            }
            Some(GeoPoint { ..point })
        }
    };
    Ok(Address {
        recipient: text("ship_to.recipient", &address.recipient, 64)?,
        phone,
        province: text("ship_to.province", &address.province, 64)?,
        county: text("ship_to.county", &address.county, 64)?,
        street: text("ship_to.street", &address.street, MAX_TEXT_CHARS)?,
        location,
    })
}

/// Checks every field of a PlaceOrder request.
pub fn validate(
    request: &PlaceOrderRequest,
    regions: &Regions,
    rules: &OrderRules,
) -> Result<ValidOrder, OrderError> {
    if request.idempotency_key.is_empty() {
        return Err(OrderError::invalid(
            "idempotency_key",
            "is required: choose a unique key per order and reuse it when retrying",
        ));
    }
    if request.idempotency_key.len() > MAX_KEY_CHARS
        || !request
            .idempotency_key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
    {
        return Err(OrderError::invalid(
            "idempotency_key",
            format!("must be 1 to {MAX_KEY_CHARS} letters, digits, '_', '-', '.' or ':'"),
        ));
    }
    let buyer_id = parse_id("buyer_id", &request.buyer_id)?;
    if request.region.is_empty() {
        return Err(OrderError::invalid("region", "is required"));
    }
    let region = regions
        .resolve(&request.region)
        .map_err(|error| OrderError::invalid("region", error))?;
    let ship_to = address(request.ship_to.as_ref())?;
    let payment_method = text(
        "payment_method",
        &request.payment_method,
        MAX_PAYMENT_METHOD_CHARS,
    )?;

    if request.lines.is_empty() {
        return Err(OrderError::invalid(
            "lines",
            "an order needs at least one line",
        ));
    }
    if request.lines.len() > rules.max_lines {
        return Err(OrderError::invalid(
            "lines",
            format!("an order may have at most {} lines", rules.max_lines),
        ));
    }
    let mut seen = HashSet::new();
    let mut lines = Vec::with_capacity(request.lines.len());
    for (index, line) in request.lines.iter().enumerate() {
        let product_id = parse_id(&format!("lines[{index}].product_id"), &line.product_id)?;
        let field = format!("lines[{index}].quantity");
        let quantity =
            Quantity::parse(line.quantity).map_err(|error| OrderError::invalid(&field, error))?;
        if quantity.get() > rules.max_line_quantity {
            return Err(OrderError::invalid(
                field,
                format!(
                    "at most {} units of one product per order",
                    rules.max_line_quantity
                ),
            ));
        }
        if !seen.insert(product_id.clone()) {
            return Err(OrderError::invalid(
                format!("lines[{index}].product_id"),
                format!("product {product_id} is already on another line; combine the lines"),
            ));
        }
        lines.push(OrderLine {
            product_id: product_id.to_string(),
            quantity: quantity.get(),
        });
    }
    Ok(ValidOrder {
        idempotency_key: request.idempotency_key.clone(),
        buyer_id,
        region,
        ship_to,
        lines,
        payment_method,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> PlaceOrderRequest {
        PlaceOrderRequest {
            idempotency_key: "checkout-42".to_owned(),
            buyer_id: "buyer-7".to_owned(),
            region: "east".to_owned(),
            ship_to: Some(Address {
                recipient: "Zhang Wei".to_owned(),
                phone: "+86 138 0000 0000".to_owned(),
                province: "Zhejiang".to_owned(),
                county: "Xihu".to_owned(),
                street: "1 Wensan Road".to_owned(),
                location: None,
            }),
            lines: vec![OrderLine {
                product_id: "prd_1".to_owned(),
                quantity: 2,
            }],
            payment_method: "approve".to_owned(),
        }
    }

    type Spoiler = fn(&mut PlaceOrderRequest);

    fn field_of(request: &PlaceOrderRequest) -> String {
        match validate(request, &Regions::default(), &OrderRules::default()) {
            Err(OrderError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_good_request_and_canonicalizes_it() {
        let mut padded = request();
        padded.payment_method = "  approve ".to_owned();
        let a = validate(&request(), &Regions::default(), &OrderRules::default()).expect("valid");
        let b = validate(&padded, &Regions::default(), &OrderRules::default()).expect("valid");
        assert_eq!(a.canonical_bytes(), b.canonical_bytes());
    }

    #[test]
    fn names_the_offending_field() {
        let cases: Vec<(Spoiler, &str)> = vec![
            (|r| r.idempotency_key.clear(), "idempotency_key"),
            (|r| r.idempotency_key = "x".repeat(129), "idempotency_key"),
            (|r| r.buyer_id = "a b".to_owned(), "buyer_id"),
            (|r| r.region = "atlantis".to_owned(), "region"),
            (|r| r.region.clear(), "region"),
            (|r| r.ship_to = None, "ship_to"),
            (
                |r| {
                    r.ship_to
                        .as_mut()
                        .into_iter()
                        .for_each(|a| a.phone = "call me".to_owned())
                },
                "ship_to.phone",
            ),
            (|r| r.lines.clear(), "lines"),
            (|r| r.lines[0].quantity = 0, "lines[0].quantity"),
            (|r| r.lines[0].quantity = -3, "lines[0].quantity"),
            (|r| r.lines[0].quantity = 50_000, "lines[0].quantity"),
            (|r| r.lines.push(r.lines[0].clone()), "lines[1].product_id"),
            (|r| r.lines = vec![r.lines[0].clone(); 51], "lines"),
            (|r| r.payment_method.clear(), "payment_method"),
        ];
        for (spoil, field) in cases {
            let mut broken = request();
            spoil(&mut broken);
            assert_eq!(field_of(&broken), field);
        }
    }
}
