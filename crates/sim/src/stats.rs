//! Counting and timing what the simulation sees.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use harvest_proto::common::v1::CancelReason;

/// Latency samples, in an HDR histogram of microseconds (three significant
/// digits, from 1 µs to an hour and beyond as needed): constant memory and
/// cheap quantiles however many orders a run places.
#[derive(Clone, Debug)]
pub struct Samples {
    histogram: Histogram<u64>,
}

impl Default for Samples {
    fn default() -> Self {
        let mut histogram =
            Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds");
        histogram.auto(true);
        Samples { histogram }
    }
}

impl Samples {
    pub fn record(&mut self, elapsed: Duration) {
        self.record_micros(elapsed.as_micros().min(u128::from(u64::MAX)) as u64);
    }

    pub fn record_seconds(&mut self, seconds: f64) {
        if seconds.is_finite() {
            self.record_micros((seconds.max(0.0) * 1_000_000.0) as u64);
        }
    }

    fn record_micros(&mut self, micros: u64) {
        // Auto-resizing: a value past the top grows the histogram.
        let _ = self.histogram.record(micros.max(1));
    }

    pub fn len(&self) -> usize {
        self.histogram.len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.histogram.is_empty()
    }

    /// The samples recorded since `earlier`, a copy of these taken before.
    pub fn since(&self, earlier: &Samples) -> Samples {
        let mut histogram = self.histogram.clone();
        if histogram.subtract(&earlier.histogram).is_err() {
            // Not an earlier copy of these: nothing is known to be newer.
            histogram.reset();
        }
        Samples { histogram }
    }

    pub fn extend(&mut self, other: &Samples) {
        let _ = self.histogram.add(&other.histogram);
    }

    /// The `q`-quantile (0 ≤ q ≤ 1), nearest rank; `None` without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        self.quantile_with_unfinished(q, 0)
    }

    /// The `q` quantile when `unfinished` more samples are known only to be
    /// longer than every recorded one (orders not yet confirmed when the
    /// measurement ended): `None` when the quantile falls among those.
    pub fn quantile_with_unfinished(&self, q: f64, unfinished: usize) -> Option<f64> {
        let recorded = self.histogram.len();
        let total = recorded + unfinished as u64;
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        if rank > recorded {
            return None;
        }
        let micros = self
            .histogram
            .value_at_quantile(rank as f64 / recorded as f64);
        Some(micros as f64 / 1e6)
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
    /// Of `placed`, the orders acknowledged only on a later attempt with
    /// the same idempotency key.
    pub placed_on_retry: u64,
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

    /// Within the histogram's three significant digits of `seconds`.
    fn close_to(value: Option<f64>, seconds: f64) -> bool {
        value.is_some_and(|value| (value - seconds).abs() <= seconds * 0.001)
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let mut samples = Samples::default();
        assert_eq!(samples.quantile(0.5), None);
        for ms in 1..=100 {
            samples.record(Duration::from_millis(ms));
        }
        assert!(close_to(samples.quantile(0.5), 0.05));
        assert!(close_to(samples.quantile(0.99), 0.099));
        assert!(close_to(samples.quantile(1.0), 0.1));
        assert_eq!(millis(samples.quantile(0.5)), "50.0 ms");
        assert_eq!(samples.len(), 100);
    }

    #[test]
    fn quantiles_among_the_unfinished_are_unknown() {
        let mut samples = Samples::default();
        for ms in 1..=90 {
            samples.record(Duration::from_millis(ms));
        }
        // 10 of 100 never finished: the median is known, the p99 is not.
        assert!(close_to(samples.quantile_with_unfinished(0.5, 10), 0.05));
        assert!(close_to(samples.quantile_with_unfinished(0.9, 10), 0.09));
        assert_eq!(samples.quantile_with_unfinished(0.91, 10), None);
        assert_eq!(Samples::default().quantile_with_unfinished(0.5, 3), None);
    }

    #[test]
    fn a_phase_is_what_was_recorded_since_its_start() {
        let mut samples = Samples::default();
        samples.record(Duration::from_secs(5));
        let start = samples.clone();
        for ms in 1..=10 {
            samples.record(Duration::from_millis(ms));
        }
        let phase = samples.since(&start);
        assert_eq!(phase.len(), 10);
        assert!(
            close_to(phase.quantile(1.0), 0.01),
            "the 5 s before is not in it"
        );
        let mut all = Samples::default();
        all.extend(&start);
        all.extend(&phase);
        assert_eq!(all.len(), 11);
        // Minutes-long samples fit too: the histogram grows.
        all.record(Duration::from_secs(7_200));
        assert!(close_to(all.quantile(1.0), 7_200.0));
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
