//! Integration tests of the payments service against a real Redis server and
//! a real Kafka-protocol broker, each private to its test.

mod api;
mod helpers;
mod properties;
mod reactions;
