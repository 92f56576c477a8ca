//! The delivery service's metric names, in one place.

/// Counter: shipments created, by `region` (of the order).
pub const SHIPMENTS_CREATED: &str = "harvest_delivery_shipments_created_total";
/// Counter: attempts to find a courier, by `outcome` (assigned, no_courier,
/// lost: another attempt or a cancellation came first).
pub const ASSIGNMENT_ATTEMPTS: &str = "harvest_delivery_assignment_attempts_total";
/// Histogram: seconds from a shipment's creation to its assignment.
pub const ASSIGNMENT_WAIT_SECONDS: &str = "harvest_delivery_assignment_wait_seconds";
/// Counter: shipments that reached an end, by `outcome` (delivered,
/// no_courier, delivery_failed, withdrawn).
pub const SHIPMENTS_FINISHED: &str = "harvest_delivery_shipments_finished_total";
/// Counter: assignments taken back from couriers who did not pick the
/// shipment up within the pickup deadline.
pub const COURIERS_RELEASED: &str = "harvest_delivery_couriers_released_total";
/// Counter: picked-up shipments flagged overdue (not delivered within the
/// transit deadline), once each.
pub const SHIPMENTS_OVERDUE: &str = "harvest_delivery_shipments_overdue_total";
/// Gauge: unfinished shipments (waiting for a courier, or for their next
/// deadline), by `region`.
pub const PENDING_SHIPMENTS: &str = "harvest_delivery_pending_shipments";
/// Gauge: open StreamAssignments calls of this replica.
pub const ASSIGNMENT_STREAMS: &str = "harvest_delivery_assignment_streams";
/// Counter: courier partners' copies of shipment events that the broker did
/// not acknowledge (each is tried again later; see docs/courier-events.md).
pub const PARTNER_COPIES_DELAYED: &str = "harvest_delivery_partner_copies_delayed_total";
/// Counter: shipments whose courier partner's copies were given up, still
/// not acknowledged a day after the shipment ended.
pub const PARTNER_COPIES_GIVEN_UP: &str = "harvest_delivery_partner_copies_given_up_total";
