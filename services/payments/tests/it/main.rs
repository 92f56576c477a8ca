//! Integration tests of the payments service against a real Redis server and
//! the test run's Apache Kafka broker; Redis is private to its test.

mod api;
mod audit_log;
mod helpers;
mod payouts;
mod properties;
mod reactions;
