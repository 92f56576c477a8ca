use std::fmt;

/// A positive number of units of a product (kilograms, boxes, jars…).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Quantity(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity must be positive, got {0}")]
    NotPositive(i64),
    #[error("quantity {0} is above the limit of {max}", max = Quantity::MAX.0)]
    TooLarge(i64),
}

impl Quantity {
    /// No single order line or stock lot is larger; keeps every sum far from
    /// overflow.
    pub const MAX: Quantity = Quantity(10_000_000);

    pub fn parse(units: i64) -> Result<Self, QuantityError> {
        if units <= 0 {
            return Err(QuantityError::NotPositive(units));
        }
        if units > Self::MAX.0 {
            return Err(QuantityError::TooLarge(units));
        }
        Ok(Quantity(units))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn parse_accepts_exactly_one_to_max(units in any::<i64>()) {
            let parsed = Quantity::parse(units);
            prop_assert_eq!(parsed.is_ok(), (1..=Quantity::MAX.0).contains(&units));
            if let Ok(quantity) = parsed {
                prop_assert_eq!(quantity.get(), units);
            }
        }
    }
}
