//! The service kit: what every Harvest service needs besides its own logic.
//!
//! - [`config`]: defaults in code → optional TOML file → `HARVEST_SECTION__KEY`
//!   environment variables, validated once;
//! - [`telemetry`]: the tracing subscriber, with OTLP export when an endpoint is
//!   set;
//! - [`shutdown`]: one cancellation token for SIGINT/SIGTERM (a second Ctrl-C
//!   exits at once);
//! - [`grpc`]: a gRPC server with health, reflection, request spans that
//!   continue the caller's trace, request metrics, and a per-service limit
//!   on request messages (RESOURCE_EXHAUSTED beyond it);
//! - [`admin`]: the admin HTTP port with Prometheus metrics and liveness;
//! - [`audit`]: the audit log of who changed money or stock, for operators;
//! - [`bells`]: waking only the tasks that wait on one key;
//! - [`clock`]: Redis's clock for deadlines, leases and recorded times;
//! - [`store`]: the Redis connection;
//! - [`readiness`]: serving only while Redis and a broker answer;
//! - [`service`]: binding, serving and draining a service as a whole;
//! - [`cli`]: the `main` every service shares.

#![forbid(unsafe_code)]

pub mod admin;
pub mod audit;
pub mod auth;
pub mod bells;
pub mod cli;
pub mod clock;
pub mod config;
pub mod grpc;
pub mod issuer;
pub mod json_log;
pub mod limits;
pub mod readiness;
pub mod service;
pub mod shutdown;
pub mod store;
pub mod telemetry;

pub use config::{ConfigError, RedisConfig, RegionsConfig, Secret, ServerConfig, TelemetryConfig};
