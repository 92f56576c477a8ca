//! Integration tests of the delivery service against a real Redis server and
//! the test run's Apache Kafka broker; Redis is private to its test.

mod api;
mod assignment;
mod audit_log;
mod deadlines;
mod helpers;
mod lifecycle;
mod partners;
