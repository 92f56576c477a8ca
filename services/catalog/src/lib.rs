//! The catalog service: products of farmers and village cooperatives, their
//! prices and stock lots, and the stock reservations of the order saga.
//!
//! Storefronts browse it and sellers stock it over gRPC; it reacts to the
//! `orders` stream (reserve on placed, release on cancelled) and the
//! `delivery` stream (commit on picked up) of every region it serves, and
//! writes the `catalog` stream.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod error;
pub mod model;
pub mod reactions;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use harvest_bus::{Publisher, Stream};
use harvest_domain::Regions;
use harvest_kit::audit::AuditLog;
use harvest_kit::grpc::RequestLimit;
use harvest_kit::service::{Foundation, FoundationError, Listeners, RunError, region_consumers};
use harvest_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::config::CatalogConfig;
use crate::reactions::StockReactions;
use crate::store::{BuyerLimit, CatalogStore};

/// The name of this service in consumer groups, dead-letter topics and traces.
pub const SERVICE: &str = "catalog";

/// The largest request message accepted; a bigger one is refused with
/// RESOURCE_EXHAUSTED. A product with every text field at its longest is
/// a few kilobytes.
pub const MAX_REQUEST: RequestLimit = RequestLimit::new(16 * 1024);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Foundation(#[from] FoundationError),
}

/// A catalog ready to serve: ports bound, Redis and the broker reached.
pub struct App {
    config: CatalogConfig,
    listeners: Listeners,
    store: CatalogStore,
    audit: AuditLog,
    publisher: Publisher,
    /// The regions this instance serves.
    served: Regions,
}

impl App {
    pub async fn build(config: CatalogConfig) -> Result<App, BuildError> {
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
            Stream::Catalog,
        )
        .await?;
        let audit = AuditLog::new(
            redis.clone(),
            &config.redis.key_prefix,
            SERVICE,
            config.redis.retention(),
        );
        let store = CatalogStore::new(redis, &config.redis.key_prefix)
            .with_retention(config.redis.retention())
            .with_buyer_limit(BuyerLimit {
                default_units: i64::from(config.reservation.per_buyer_limit),
                window: config.reservation.per_buyer_window(),
            });
        Ok(App {
            config,
            listeners: listeners.with_access(access),
            store,
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
        let reactions = Arc::new(StockReactions::new(
            self.store.clone(),
            self.publisher.clone(),
            self.config.reservation.clone(),
        ));
        let tasks = region_consumers(
            &self.config.bus,
            &self.publisher,
            SERVICE,
            &self.served,
            &[Stream::Orders, Stream::Delivery],
            reactions,
            &shutdown,
        );
        tracing::info!(
            grpc = %self.grpc_addr(),
            admin = %self.admin_addr(),
            regions = %self.served,
            "catalog serving",
        );
        let api = CatalogServiceServer::new(api::CatalogApi::new(
            self.store,
            self.audit,
            self.config.reservation.delivery_lead_days,
        ));
        self.listeners
            .serve(api, MAX_REQUEST, tasks, shutdown, &self.publisher)
            .await
    }
}
