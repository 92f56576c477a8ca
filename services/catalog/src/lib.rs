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

use harvest_bus::consumer::ConsumerSpec;
use harvest_bus::{Publisher, Stream};
use harvest_kit::service::{Foundation, FoundationError, Listeners, RunError, Task, consumer_task};
use harvest_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::config::CatalogConfig;
use crate::reactions::StockReactions;
use crate::store::CatalogStore;

/// The name of this service in consumer groups, dead-letter topics and traces.
pub const SERVICE: &str = "catalog";

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
    publisher: Publisher,
}

impl App {
    pub async fn build(config: CatalogConfig) -> Result<App, BuildError> {
        config.validate().map_err(BuildError::Config)?;
        let Foundation {
            listeners,
            redis,
            publisher,
        } = Foundation::build(
            &config.server,
            &config.bus,
            &config.redis,
            &config.regions,
            Stream::Catalog,
        )
        .await?;
        let store = CatalogStore::new(redis, &config.redis.key_prefix);
        Ok(App {
            config,
            listeners,
            store,
            publisher,
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
        let served = self
            .config
            .regions
            .served()
            .unwrap_or_else(|_| self.config.regions.all.clone());
        let mut tasks: Vec<(&'static str, Task)> = Vec::new();
        for region in served.iter() {
            let spec = ConsumerSpec {
                service: SERVICE,
                region: region.clone(),
                streams: vec![Stream::Orders, Stream::Delivery],
            };
            tasks.push(consumer_task(
                &self.config.bus,
                &self.publisher,
                spec,
                reactions.clone(),
                &shutdown,
            ));
        }
        tracing::info!(
            grpc = %self.grpc_addr(),
            admin = %self.admin_addr(),
            regions = %served,
            "catalog serving",
        );
        let api = CatalogServiceServer::new(api::CatalogApi::new(self.store));
        let result = self.listeners.serve(api, tasks, shutdown).await;
        self.publisher.flush(self.config.server.grace_period());
        result
    }
}
