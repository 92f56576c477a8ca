//! The local Harvest stack: one piece of code that starts and stops Apache
//! Kafka, Redis, the topics and the services as separate processes on free loopback
//! ports. The demo, the end-to-end tests and the benchmark all run on it.

#![forbid(unsafe_code)]

mod kafka;
pub mod observability;
pub mod servers;
mod stack;
pub mod tls;

pub use observability::{Prometheus, TraceViewer};
pub use servers::Fsync;
pub use stack::{AUTH_DIR, ISSUER, ServiceKind, Stack, StackOptions, Supervision};
