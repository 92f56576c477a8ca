use std::fmt;

use chrono::{Datelike, NaiveDate};

/// A calendar date (harvest, best-before), stored as days since 1970-01-01 so
/// that Redis scripts can compare and sort dates as plain integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i32);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("{year:04}-{month:02}-{day:02} is not a calendar date")]
    NotADate { year: i32, month: i32, day: i32 },
    #[error("{0} is outside 2000-01-01..2099-12-31")]
    OutOfRange(String),
}

impl Date {
    pub fn from_ymd(year: i32, month: i32, day: i32) -> Result<Self, DateError> {
        let not_a_date = DateError::NotADate { year, month, day };
        let (Ok(month_u), Ok(day_u)) = (u32::try_from(month), u32::try_from(day)) else {
            return Err(not_a_date);
        };
        let date = NaiveDate::from_ymd_opt(year, month_u, day_u).ok_or(not_a_date)?;
        if !(2000..=2099).contains(&date.year()) {
            return Err(DateError::OutOfRange(date.to_string()));
        }
        Ok(Date(days_since_epoch(date)))
    }

    pub fn from_days(days: i32) -> Self {
        Date(days)
    }

    pub fn days(self) -> i32 {
        self.0
    }

    /// Today in UTC.
    pub fn today() -> Self {
        Date(days_since_epoch(chrono::Utc::now().date_naive()))
    }

    pub fn plus_days(self, days: i32) -> Self {
        Date(self.0.saturating_add(days))
    }

    pub fn ymd(self) -> (i32, i32, i32) {
        let date = self.naive();
        (date.year(), date.month() as i32, date.day() as i32)
    }

    /// Midnight UTC at the end of this date, as seconds since the epoch.
    pub fn end_unix_seconds(self) -> i64 {
        (i64::from(self.0) + 1) * 86_400
    }

    fn naive(self) -> NaiveDate {
        NaiveDate::default() + chrono::TimeDelta::days(i64::from(self.0))
    }
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - NaiveDate::default()).num_days() as i32
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.naive().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn epoch_is_day_zero() {
        assert_eq!(NaiveDate::default().to_string(), "1970-01-01");
        let date = Date::from_ymd(2026, 11, 28).expect("valid");
        assert_eq!(date.to_string(), "2026-11-28");
        assert_eq!(date.plus_days(3).to_string(), "2026-12-01");
    }

    #[test]
    fn rejects_impossible_dates() {
        assert!(Date::from_ymd(2026, 2, 30).is_err());
        assert!(Date::from_ymd(2026, 13, 1).is_err());
        assert!(Date::from_ymd(2026, -1, 1).is_err());
        assert!(Date::from_ymd(1999, 12, 31).is_err());
    }

    proptest! {
        #[test]
        fn ymd_round_trips(year in 2000..2100i32, month in 1..=12i32, day in 1..=28i32) {
            let date = Date::from_ymd(year, month, day).expect("always a date");
            prop_assert_eq!(date.ymd(), (year, month, day));
            prop_assert_eq!(Date::from_days(date.days()), date);
        }
    }
}
