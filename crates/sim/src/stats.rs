//! Counting and timing what the simulation sees.

use std::collections::BTreeMap;
use std::time::Duration;

use harvest_proto::common::v1::CancelReason;

/// Latency samples, in seconds.
#[derive(Clone, Debug, Default)]
pub struct Samples {
    values: Vec<f64>,
}

impl Samples {
    pub fn record(&mut self, elapsed: Duration) {
        self.values.push(elapsed.as_secs_f64());
    }

    pub fn record_seconds(&mut self, seconds: f64) {
        if seconds.is_finite() {
            self.values.push(seconds.max(0.0));
        }
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The samples recorded after the first `count`.
    pub fn since(&self, count: usize) -> Samples {
        Samples {
            values: self
                .values
                .get(count..)
                .map(<[f64]>::to_vec)
                .unwrap_or_default(),
        }
    }

    pub fn extend(&mut self, other: &Samples) {
        self.values.extend_from_slice(&other.values);
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), nearest rank; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantile_with_unfinished(q, 0)
    }

    /// The `q` quantile when `unfinished` more samples are known only to be
    /// longer than every recorded one (orders not yet confirmed when the
    /// measurement ended): `None` when the quantile falls among those.
    pub fn quantile_with_unfinished(&self, q: f64, unfinished: usize) -> Option<f64> {
        let total = self.values.len() + unfinished;
        if total == 0 {
            return None;
        }
        let mut sorted = self.values.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as usize).max(1);
        sorted.get(rank - 1).copied()
    }
}

/// Milliseconds, for people: `12.3 ms`, or `-` without a value.
pub fn millis(seconds: Option<f64>) -> String {
    match seconds {
        Some(seconds) => format!("{:.1} ms", seconds * 1000.0),
        None => "-".to_owned(),
    }
}

/// What happened to a region's orders so far.
#[derive(Clone, Debug, Default)]
pub struct RegionCounts {
    /// PlaceOrder calls answered with an order.
    pub placed: u64,
    /// PlaceOrder calls that failed.
    pub errors: u64,
    pub confirmed: u64,
    pub delivered: u64,
    pub cancelled: BTreeMap<i32, u64>,
}

impl RegionCounts {
    pub fn cancelled_total(&self) -> u64 {
        self.cancelled.values().sum()
    }

    /// `out_of_stock 3, buyer_cancelled 1`, or `-`.
    pub fn cancelled_by_reason(&self) -> String {
        let parts: Vec<String> = self
            .cancelled
            .iter()
            .map(|(reason, count)| format!("{} {count}", reason_name(*reason)))
            .collect();
        if parts.is_empty() {
            "-".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

pub fn reason_name(reason: i32) -> String {
    CancelReason::try_from(reason)
        .map(|reason| {
            reason
                .as_str_name()
                .trim_start_matches("CANCEL_REASON_")
                .to_lowercase()
        })
        .unwrap_or_else(|_| format!("reason_{reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        assert_eq!(samples.quantile(0.5), None);
        for ms in 1..=100 {
            samples.record(Duration::from_millis(ms));
        }
        assert_eq!(samples.quantile(0.5), Some(0.05));
        assert_eq!(samples.quantile(0.99), Some(0.099));
        assert_eq!(samples.quantile(1.0), Some(0.1));
        assert_eq!(millis(samples.quantile(0.5)), "50.0 ms");
    }

    #[test]
    fn quantiles_among_the_unfinished_are_unknown() {
        let mut samples = Samples::default();
        for ms in 1..=90 {
            samples.record(Duration::from_millis(ms));
        }
        // 10 of 100 never finished: the median is known, the p99 is not.
        assert_eq!(samples.quantile_with_unfinished(0.5, 10), Some(0.05));
        assert_eq!(samples.quantile_with_unfinished(0.9, 10), Some(0.09));
        assert_eq!(samples.quantile_with_unfinished(0.91, 10), None);
        assert_eq!(Samples::default().quantile_with_unfinished(0.5, 3), None);
    }

    #[test]
    fn reasons_read_like_words() {
        assert_eq!(reason_name(CancelReason::OutOfStock as i32), "out_of_stock");
        let mut counts = RegionCounts::default();
        assert_eq!(counts.cancelled_by_reason(), "-");
        counts
            .cancelled
            .insert(CancelReason::PaymentDeclined as i32, 2);
        assert_eq!(counts.cancelled_by_reason(), "payment_declined 2");
    }
}
