//! Checks on command-line values, so that a typo is a usage error (exit 2)
//! naming the flag, before any service is called.

use harvest_domain::{Fen, Id, Quantity};

/// One `--line PRODUCT=QUANTITY` of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    pub product_id: String,
    pub quantity: i64,
}

pub fn line(value: &str) -> Result<Line, String> {
    let Some((product, quantity)) = value.split_once('=') else {
        return Err("expected PRODUCT=QUANTITY, e.g. prd_0190f1c2=3".to_owned());
    };
    let product_id = id(product.trim()).map_err(|error| format!("product id: {error}"))?;
    let quantity = quantity.trim();
    let units: i64 = quantity
        .parse()
        .map_err(|_| format!("quantity must be a whole number, got {quantity:?}"))?;
    let quantity = Quantity::parse(units).map_err(|error| error.to_string())?;
    Ok(Line {
        product_id,
        quantity: quantity.get(),
    })
}

/// An id of anything Harvest knows (order, product, buyer, courier…).
pub fn id(value: &str) -> Result<String, String> {
    Id::parse(value)
        .map(String::from)
        .map_err(|error| error.to_string())
}

/// An idempotency key, as the services accept them.
pub fn key(value: &str) -> Result<String, String> {
    const MAX_CHARS: usize = 128;
    let valid = (1..=MAX_CHARS).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
    if valid {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "must be 1 to {MAX_CHARS} letters, digits, '_', '-', '.' or ':'"
        ))
    }
}

/// A positive amount of money in fen.
pub fn amount(value: &str) -> Result<i64, String> {
    let fen: i64 = value
        .trim()
        .parse()
        .map_err(|_| format!("must be a whole number of fen (1 yuan = 100 fen), got {value:?}"))?;
    if fen == 0 {
        return Err("must be positive; leave --amount out to refund everything".to_owned());
    }
    Fen::parse(fen)
        .map(Fen::get)
        .map_err(|error| error.to_string())
}

pub fn latitude(value: &str) -> Result<f64, String> {
    degrees(value, 90.0)
}

pub fn longitude(value: &str) -> Result<f64, String> {
    degrees(value, 180.0)
}

fn degrees(value: &str, limit: f64) -> Result<f64, String> {
    let degrees: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("must be a number of degrees, got {value:?}"))?;
    if !degrees.is_finite() || degrees.abs() > limit {
        return Err(format!("must be within ±{limit} degrees"));
    }
    Ok(degrees)
}

/// A gRPC endpoint, `http://host:port`. Plain HTTP/2 only: the services
/// serve no TLS themselves, and this build carries no TLS stack.
pub fn endpoint(value: &str) -> Result<String, String> {
    let uri: tonic::codegen::http::Uri = value
        .parse()
        .map_err(|error| format!("not a URL ({error}); expected e.g. http://127.0.0.1:50052"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(
            "expected http://host:port or https://host:port, e.g. http://127.0.0.1:50052"
                .to_owned(),
        );
    }
    Ok(value.trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_order_lines() {
        assert_eq!(
            line("prd_apples=3"),
            Ok(Line {
                product_id: "prd_apples".to_owned(),
                quantity: 3
            })
        );
        assert_eq!(line(" prd_1 = 12 ").map(|l| l.quantity), Ok(12));
    }

    #[test]
    fn rejects_bad_order_lines_saying_why() {
        let error = |value| line(value).expect_err(value);
        assert!(error("apples").contains("PRODUCT=QUANTITY"));
        assert!(error("apples=").contains("whole number"));
        assert!(error("apples=two").contains("whole number"));
        assert!(error("apples=1.5").contains("whole number"));
        assert!(error("apples=0").contains("positive"));
        assert!(error("apples=-2").contains("positive"));
        assert!(error("apples=99999999999").contains("limit"));
        assert!(error("=3").starts_with("product id"));
        assert!(error("red apples=3").starts_with("product id"));
    }

    #[test]
    fn checks_keys_and_ids() {
        assert!(key("checkout-42:retry.1").is_ok());
        assert!(key("").is_err());
        assert!(key("a b").is_err());
        assert!(key(&"k".repeat(129)).is_err());
        assert!(id("ord_0190f1c2").is_ok());
        assert!(id("{ord}").is_err());
    }

    #[test]
    fn checks_amounts() {
        assert_eq!(amount("1250"), Ok(1250));
        assert!(
            amount("0")
                .expect_err("zero")
                .contains("leave --amount out")
        );
        assert!(amount("-5").is_err());
        assert!(amount("12.50").expect_err("yuan").contains("fen"));
    }

    #[test]
    fn checks_coordinates() {
        assert_eq!(latitude("35.76"), Ok(35.76));
        assert_eq!(longitude("-73.9"), Ok(-73.9));
        assert!(latitude("91").is_err());
        assert!(longitude("180.5").is_err());
        assert!(latitude("NaN").is_err());
        assert!(latitude("north").is_err());
    }

    #[test]
    fn checks_endpoints() {
        assert_eq!(
            endpoint("http://127.0.0.1:50052/"),
            Ok("http://127.0.0.1:50052".to_owned())
        );
        assert!(endpoint("http://orders.harvest.internal").is_ok());
        assert!(endpoint("https://orders.harvest.internal").is_ok());
        assert!(endpoint("127.0.0.1:50052").is_err());
        assert!(endpoint("ftp://host:1").is_err());
        assert!(endpoint("http://").is_err());
    }
}
