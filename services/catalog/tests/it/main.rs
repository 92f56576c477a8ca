//! Integration tests of the catalog against a real Redis server, private to
//! its test, and the test run's Apache Kafka broker.

mod api;
mod audit_log;
mod helpers;
mod properties;
mod purchase_limit;
mod reactions;
mod readiness;
