use std::fmt;

/// An amount of money in fen (1/100 yuan). Never negative, never a float.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fen(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FenError {
    #[error("amount must not be negative, got {0}")]
    Negative(i64),
    #[error("amount {0} fen is above the limit of {max} fen", max = Fen::MAX.0)]
    TooLarge(i64),
    #[error("amount overflows")]
    Overflow,
}

impl Fen {
    pub const ZERO: Fen = Fen(0);
    /// Ten billion yuan: far above any single order, far below `i64::MAX`, so
    /// that sums of many amounts cannot overflow.
    pub const MAX: Fen = Fen(1_000_000_000_000);

    pub fn parse(fen: i64) -> Result<Self, FenError> {
        if fen < 0 {
            return Err(FenError::Negative(fen));
        }
        if fen > Self::MAX.0 {
            return Err(FenError::TooLarge(fen));
        }
        Ok(Fen(fen))
    }

    pub fn get(self) -> i64 {
        self.0
    }

    pub fn checked_add(self, other: Fen) -> Result<Fen, FenError> {
        self.0
            .checked_add(other.0)
            .ok_or(FenError::Overflow)
            .and_then(Fen::parse)
    }

    pub fn checked_sub(self, other: Fen) -> Result<Fen, FenError> {
        self.0
            .checked_sub(other.0)
            .ok_or(FenError::Overflow)
            .and_then(Fen::parse)
    }

    /// Unit price times a quantity.
    pub fn times(self, quantity: i64) -> Result<Fen, FenError> {
        self.0
            .checked_mul(quantity)
            .ok_or(FenError::Overflow)
            .and_then(Fen::parse)
    }

    /// The share of `basis_points` (1/10,000), rounded down.
    pub fn basis_points(self, basis_points: u32) -> Fen {
        // i128: the product of an amount below MAX and 10,000 fits easily.
        Fen((i128::from(self.0) * i128::from(basis_points) / 10_000) as i64)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "¥{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn rejects_negative_and_huge_amounts() {
        assert_eq!(Fen::parse(-1), Err(FenError::Negative(-1)));
        assert!(matches!(
            Fen::parse(Fen::MAX.0 + 1),
            Err(FenError::TooLarge(_))
        ));
        assert_eq!(Fen::parse(0).map(Fen::get), Ok(0));
    }

    #[test]
    fn displays_yuan_and_fen() {
        assert_eq!(Fen(123_456).to_string(), "¥1234.56");
        assert_eq!(Fen(5).to_string(), "¥0.05");
    }

    proptest! {
        #[test]
        fn parse_accepts_exactly_the_valid_range(fen in any::<i64>()) {
            let valid = (0..=Fen::MAX.0).contains(&fen);
            prop_assert_eq!(Fen::parse(fen).is_ok(), valid);
        }

        #[test]
        fn add_then_sub_round_trips(a in 0..=Fen::MAX.0 / 2, b in 0..=Fen::MAX.0 / 2) {
            let (a, b) = (Fen(a), Fen(b));
            let sum = a.checked_add(b).expect("halves cannot overflow");
            prop_assert_eq!(sum.checked_sub(b), Ok(a));
        }

        #[test]
        fn commission_never_exceeds_amount(amount in 0..=Fen::MAX.0, bp in 0u32..=10_000) {
            let share = Fen(amount).basis_points(bp);
            prop_assert!(share.get() >= 0 && share.get() <= amount);
        }
    }
}
