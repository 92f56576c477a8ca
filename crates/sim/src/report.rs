//! Printing a run for people: the live table and the final summary.

use std::fmt::Write as _;

use crate::stats::millis;
use crate::{Summary, Tick};

/// The live table: one line per region.
pub fn tick_table(tick: &Tick) -> String {
    let mut out = String::new();
    let phase = if tick.draining { "draining" } else { "traffic" };
    let _ = writeln!(
        out,
        "── {:>4}s {phase} ─ {:<10} {:>7} {:>9} {:>9} {:>6} {:>9} {:>9}  cancelled by reason",
        tick.elapsed.as_secs(),
        "region",
        "placed",
        "confirmed",
        "delivered",
        "errors",
        "place p50",
        "place p99",
    );
    for (region, now) in &tick.regions {
        let counts = &now.counts;
        let _ = writeln!(
            out,
            "{:>21} {:<10} {:>7} {:>9} {:>9} {:>6} {:>9} {:>9}  {}",
            "",
            region,
            counts.placed,
            counts.confirmed,
            counts.delivered,
            counts.errors,
            millis(now.window.quantile(0.5)),
            millis(now.window.quantile(0.99)),
            counts.cancelled_by_reason(),
        );
    }
    out
}

/// The final summary with the invariant checks.
pub fn summary(summary: &Summary) -> String {
    let mut out = String::new();
    let findings = &summary.findings;
    let _ = writeln!(
        out,
        "summary after {:.0} s ({:.0} s of traffic)",
        summary.elapsed.as_secs_f64(),
        summary.traffic_seconds
    );
    let _ = writeln!(
        out,
        "  {:<10} {:>7} {:>9} {:>9} {:>9} {:>6} {:>10} {:>10} {:>12}",
        "region",
        "placed",
        "confirmed",
        "delivered",
        "cancelled",
        "errors",
        "place p50",
        "place p99",
        "confirm p99"
    );
    for (region, counts) in &summary.regions {
        let place = summary
            .place_latency
            .get(region)
            .cloned()
            .unwrap_or_default();
        let confirm = summary
            .placed_to_confirmed
            .get(region)
            .cloned()
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:<10} {:>7} {:>9} {:>9} {:>9} {:>6} {:>10} {:>10} {:>12}",
            region,
            counts.placed,
            counts.confirmed,
            counts.delivered,
            counts.cancelled_total(),
            counts.errors,
            millis(place.quantile(0.5)),
            millis(place.quantile(0.99)),
            millis(confirm.quantile(0.99)),
        );
    }
    let mut reasons = crate::stats::RegionCounts::default();
    for counts in summary.regions.values() {
        for (reason, count) in &counts.cancelled {
            *reasons.cancelled.entry(*reason).or_default() += count;
        }
    }
    let _ = writeln!(
        out,
        "  cancelled by reason: {}",
        reasons.cancelled_by_reason()
    );
    let _ = writeln!(
        out,
        "  couriers: {} assignments, {} delivered, {} failed; buyers asked to cancel {} orders",
        summary.fleet_assignments,
        summary.fleet_delivered,
        summary.fleet_failed,
        summary.cancel_requests
    );
    let restarts: Vec<String> = summary
        .service_restarts
        .iter()
        .filter(|(_, count)| **count > 0)
        .map(|(service, count)| format!("{service} {count}"))
        .collect();
    let _ = writeln!(
        out,
        "  services restarted after exiting: {}",
        if restarts.is_empty() {
            "none".to_owned()
        } else {
            restarts.join(", ")
        }
    );
    if let Some(error) = &summary.first_error {
        let _ = writeln!(out, "  first PlaceOrder error: {error}");
    }
    let verdict = |ok: bool| if ok { "ok" } else { "FAILED" };
    let _ = writeln!(out, "invariants");
    let _ = writeln!(
        out,
        "  oversold units:              {:>6}  {}  ({} products audited, on hand = available + reserved for every lot{})",
        findings.oversold_units,
        verdict(findings.oversold_units == 0 && findings.broken_lots.is_empty()),
        findings.products_checked,
        if findings.broken_lots.is_empty() {
            String::new()
        } else {
            format!("; broken: {:?}", findings.broken_lots)
        },
    );
    let _ = writeln!(
        out,
        "  orders not in a final state: {:>6}  {}  (of {} acknowledged)",
        findings.unfinished_orders.len(),
        verdict(findings.unfinished_orders.is_empty()),
        summary.placed(),
    );
    let _ = writeln!(
        out,
        "  double charges:              {:>6}  {}  ({} payments checked)",
        findings.double_charges.len(),
        verdict(findings.double_charges.is_empty()),
        findings.payments_checked,
    );
    let _ = writeln!(
        out,
        "  money held after cancel:     {:>6}  {}",
        findings.money_held_after_cancel.len(),
        verdict(findings.money_held_after_cancel.is_empty()),
    );
    out
}
