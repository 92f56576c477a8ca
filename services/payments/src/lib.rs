//! The payments service: holds buyers' money when stock is reserved, takes
//! it when the order is delivered and pays the sellers out less the
//! platform's commission, and lets go of it (void or refund) when the order
//! is cancelled.
//!
//! It reacts to the `catalog` stream (stock reserved → authorize) and the
//! `orders` stream (delivered → capture, cancelled → void or refund) of every
//! region it serves, writes the `payments` stream, and gives operators a gRPC
//! API to look payments up and refund them. Money moves through a
//! [`provider::PaymentProvider`]; the built-in [`sandbox`] one needs no
//! outside service.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod ledger;
pub mod metrics;
pub mod provider;
pub mod reactions;
pub mod sandbox;
pub mod steps;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use harvest_bus::{Publisher, Stream};
use harvest_domain::Regions;
use harvest_kit::audit::AuditLog;
use harvest_kit::grpc::RequestLimit;
use harvest_kit::service::{Foundation, FoundationError, Listeners, RunError, region_consumers};
use harvest_proto::payments::v1::payments_service_server::PaymentsServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::config::PaymentsConfig;
use crate::reactions::PaymentReactions;
use crate::sandbox::SandboxProvider;
use crate::steps::Payments;
use crate::store::PaymentStore;

/// The name of this service in consumer groups, dead-letter topics and traces.
pub const SERVICE: &str = "payments";

/// The largest request message accepted; a bigger one is refused with
/// RESOURCE_EXHAUSTED. Its requests are ids, a page token and a short
/// reason: well under a kilobyte.
pub const MAX_REQUEST: RequestLimit = RequestLimit::new(16 * 1024);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Foundation(#[from] FoundationError),
}

/// A payments service ready to serve: ports bound, Redis and the broker
/// reached.
pub struct App {
    config: PaymentsConfig,
    listeners: Listeners,
    payments: Arc<Payments<SandboxProvider>>,
    audit: AuditLog,
    publisher: Publisher,
    /// The regions this instance serves.
    served: Regions,
}

impl App {
    pub async fn build(config: PaymentsConfig) -> Result<App, BuildError> {
        config.validate().map_err(BuildError::Config)?;
        let access = config.auth.access(api::RULES).map_err(BuildError::Config)?;
        let Foundation {
            listeners,
            redis,
            publisher,
            served,
        } = Foundation::build(
            &config.server,
            &config.bus,
            &config.redis,
            &config.regions,
            Stream::Payments,
        )
        .await?;
        let audit = AuditLog::new(
            redis.clone(),
            &config.redis.key_prefix,
            SERVICE,
            config.redis.retention(),
        );
        let store = PaymentStore::new(redis.clone(), &config.redis.key_prefix)
            .with_retention(config.redis.retention());
        let provider =
            SandboxProvider::new(redis, &config.redis.key_prefix, config.provider.latency())
                .with_retention(config.redis.retention());
        let payments = Arc::new(Payments::new(
            store,
            publisher.clone(),
            Arc::new(provider),
            config.provider.clone(),
        ));
        Ok(App {
            config,
            listeners: listeners.with_access(access),
            payments,
            audit,
            publisher,
            served,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// Serves the API and consumes every served region's events until
    /// `shutdown`, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let reactions = Arc::new(PaymentReactions::new(
            self.payments.clone(),
            self.config.payouts.commission_basis_points,
        ));
        let tasks = region_consumers(
            &self.config.bus,
            &self.publisher,
            SERVICE,
            &self.served,
            &[Stream::Catalog, Stream::Orders],
            reactions,
            &shutdown,
        );
        tracing::info!(
            grpc = %self.grpc_addr(),
            admin = %self.admin_addr(),
            regions = %self.served,
            "payments serving",
        );
        let api = PaymentsServiceServer::new(api::PaymentsApi::new(self.payments, self.audit));
        self.listeners
            .serve(api, MAX_REQUEST, tasks, shutdown, &self.publisher)
            .await
    }
}
