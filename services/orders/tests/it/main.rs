//! Integration tests of the orders service against a real Redis server and a
//! real Apache Kafka broker. The other services' events are published onto
//! the bus by the tests themselves.

mod access;
mod helpers;
mod placement;
mod saga;
mod web;
