use std::fmt;

use serde::{Deserialize, Serialize};

/// An opaque identifier (order, product, lot, buyer, seller, courier…): 1 to 64
/// characters from `A-Z a-z 0-9 _ - . :`. The alphabet keeps every id safe
/// inside Redis keys and their `{hash tags}` and inside Kafka keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Id(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters, got {0}", max = Id::MAX_LEN)]
    TooLong(usize),
    #[error("may contain only letters, digits, '_', '-', '.' and ':'")]
    InvalidCharacter,
}

impl Id {
    pub const MAX_LEN: usize = 64;

    pub fn parse(id: &str) -> Result<Self, IdError> {
        if id.is_empty() {
            return Err(IdError::Empty);
        }
        if id.len() > Self::MAX_LEN {
            return Err(IdError::TooLong(id.len()));
        }
        let valid = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        if !valid {
            return Err(IdError::InvalidCharacter);
        }
        Ok(Id(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Id {
    type Error = IdError;

    fn try_from(id: String) -> Result<Self, Self::Error> {
        Id::parse(&id)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl AsRef<str> for Id {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A new, time-ordered id such as `ord_0190f1c2…`.
pub fn new_id(prefix: &str) -> Id {
    Id(format!("{prefix}_{}", uuid::Uuid::now_v7().simple()))
}

/// An id that is the same every time for the same parts: the event id of a
/// step, so that a retried step emits an event with the same id.
pub fn deterministic_id(prefix: &str, parts: &[&str]) -> Id {
    let name = parts.join("\u{1f}");
    let uuid = uuid::Uuid::new_v5(&HARVEST_NAMESPACE, name.as_bytes());
    Id(format!("{prefix}_{}", uuid.simple()))
}

/// The id of an order's one shipment from a pickup point: delivery creates
/// it under this id, and orders finds the pickup point of a shipment by it.
pub fn shipment_id(order_id: &str, pickup_point_id: &str) -> Id {
    deterministic_id("shp", &[order_id, pickup_point_id])
}

const HARVEST_NAMESPACE: uuid::Uuid =
    uuid::Uuid::from_u128(0x8d6f_3c1e_52a4_4b0f_9f3e_6a1d_2c7b_4e90);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn generated_ids_are_valid() {
        let id = new_id("ord");
        assert_eq!(Id::parse(id.as_str()), Ok(id.clone()));
        assert!(id.as_str().starts_with("ord_"));
    }

    #[test]
    fn deterministic_ids_repeat_for_the_same_parts_only() {
        let a = deterministic_id("evt", &["ord_1", "stock-reserved"]);
        assert_eq!(a, deterministic_id("evt", &["ord_1", "stock-reserved"]));
        assert_ne!(a, deterministic_id("evt", &["ord_1", "stock-rejected"]));
        assert_ne!(
            deterministic_id("evt", &["a", "bc"]),
            deterministic_id("evt", &["ab", "c"])
        );
    }

    #[test]
    fn rejects_key_breaking_characters() {
        for bad in ["", "a b", "{tag}", "a/b", "é", &"x".repeat(65)] {
            assert!(Id::parse(bad).is_err(), "{bad:?} must be rejected");
        }
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_safe_alphabet(id in "\\PC{0,70}") {
            let valid = (1..=64).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b));
            prop_assert_eq!(Id::parse(&id).is_ok(), valid);
        }
    }
}
