//! `harvest` as a person runs it: the built binary as a subprocess, against a
//! real catalog and orders service started in-process on a private Redis and
//! the test run's Apache Kafka broker.

mod catalog;
mod dlq;
mod errors;
mod helpers;
mod orders;
