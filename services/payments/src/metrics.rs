//! The names of the payments service's metrics.

/// Counter: payment steps recorded, by `outcome` (authorized, declined,
/// captured, voided, refunded).
pub const PAYMENTS: &str = "harvest_payments_total";
/// Counter: money moved by recorded steps, in fen, by `kind` (authorized,
/// captured, voided, refunded, payout, commission).
pub const AMOUNT_FEN: &str = "harvest_payments_amount_fen_total";
/// Counter: calls to the payment provider, by `operation` and `outcome`
/// (approved, declined, unavailable, refused).
pub const PROVIDER_CALLS: &str = "harvest_payments_provider_calls_total";
/// Histogram: seconds per payment provider call, by `operation`.
pub const PROVIDER_SECONDS: &str = "harvest_payments_provider_seconds";
