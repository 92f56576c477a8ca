//! Metric names of the event bus.

/// Counter: events a handler finished, by `service`, `topic`, `outcome`
/// (`ok`, `dead_letter`).
pub const EVENTS_HANDLED: &str = "harvest_events_handled_total";
/// Histogram: seconds from receiving an event to storing its offset.
pub const HANDLER_SECONDS: &str = "harvest_event_handler_seconds";
/// Counter: failed handler attempts that will be retried, by `service`.
pub const HANDLER_RETRIES: &str = "harvest_event_handler_retries_total";
/// Counter: events published, by `topic`.
pub const EVENTS_PUBLISHED: &str = "harvest_events_published_total";
/// Histogram: seconds from publish to the broker's acknowledgement.
pub const PUBLISH_SECONDS: &str = "harvest_event_publish_seconds";
/// Gauge: messages not yet consumed, by consumer `group` and `topic`.
pub const CONSUMER_LAG: &str = "harvest_consumer_lag";
/// Gauge: partitions whose fetching is paused behind a full queue, by
/// consumer `group`.
pub const PARTITIONS_PAUSED: &str = "harvest_consumer_partitions_paused";
