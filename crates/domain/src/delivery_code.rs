//! The buyer's proof of delivery: a one-time code made when the order is
//! placed, shown to the buyer only, and handed to each courier at the door.
//! The delivery service keeps only its digest, bound to the order, and a
//! courier confirms a delivery with the code itself.

use ring::digest::{SHA256, digest};

/// Digits in a code.
pub const DIGITS: usize = 6;

/// A new code: six random digits.
pub fn new_code() -> String {
    let random = uuid::Uuid::new_v4().as_u128();
    format!("{:06}", random % 1_000_000)
}

/// The digest of `code` for `order_id`, hex: what the delivery service
/// keeps and compares.
pub fn digest_of(order_id: &str, code: &str) -> String {
    let input = format!("harvest-delivery-code\n{order_id}\n{}", code.trim());
    digest(&SHA256, input.as_bytes())
        .as_ref()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_six_digits_and_their_digests_bind_the_order() {
        let code = new_code();
        assert_eq!(code.len(), DIGITS);
        assert!(code.chars().all(|c| c.is_ascii_digit()), "{code}");
        let digest = digest_of("ord_1", &code);
        assert_eq!(digest.len(), 64);
        assert_eq!(digest, digest_of("ord_1", &format!(" {code} ")));
        assert_ne!(digest, digest_of("ord_2", &code));
        let other = if code == "000000" { "000001" } else { "000000" };
        assert_ne!(digest, digest_of("ord_1", other));
    }
}
