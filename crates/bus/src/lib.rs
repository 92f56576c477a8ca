//! Harvest's event bus over Kafka.
//!
//! - [`topology`]: the one place that names topics, partition counts, retention
//!   and consumer groups, split by region;
//! - [`admin::ensure_topics`]: creates whatever topics are missing;
//! - [`Publisher`]: an idempotent producer (`acks=all`) whose `publish` resolves
//!   only once the broker has acknowledged the event, and which may write only
//!   to its owner's stream;
//! - [`consumer::run`]: an at-least-once consumer that stores an offset only
//!   after the handler succeeded, retries failed handlers with backoff, sends
//!   what cannot be handled to a dead-letter topic with its original bytes and
//!   the reason, and on shutdown finishes the message in hand;
//! - [`CloseOffThread`]: closes a group member off the async workers, so a
//!   service whose broker died still stops;
//! - W3C trace context travels in Kafka headers (and in the envelope), so one
//!   order is one trace across services.

#![forbid(unsafe_code)]

pub mod admin;
mod closing;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod event;
pub mod metrics;
mod publisher;
pub mod topology;
pub mod trace;

pub use closing::CloseOffThread;
pub use config::BusConfig;
pub use consumer::{Handler, HandlerError, IncomingEvent};
pub use event::{EventError, Payload, new_envelope};
pub use harvest_proto::events::v1::Envelope;
pub use publisher::{PublishError, Published, Publisher};
pub use topology::{PartnerId, Stream, Topology};
