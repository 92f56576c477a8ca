//! Integration tests of the delivery service against a real Redis server and
//! a real Kafka-protocol broker, each private to its test.

mod api;
mod assignment;
mod helpers;
mod lifecycle;
