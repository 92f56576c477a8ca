//! End-to-end tests: the four services as separate processes, on a real
//! Apache Kafka broker and a real Redis, driven through their public APIs
//! the way storefronts and courier systems drive them.

mod access;
mod faults;
mod helpers;
mod proof;
mod restarts;
mod saga;
mod storefront;
mod supervision;
mod tls;
mod trace_viewer;
mod tracing;
mod walkthrough;
