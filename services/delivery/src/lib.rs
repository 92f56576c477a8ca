//! The delivery service: couriers, the shipments of confirmed orders, and
//! which courier carries which shipment.
//!
//! Courier systems register couriers, report where they are, follow their
//! assignments and confirm pickups and deliveries over gRPC. The service reacts
//! to the `orders` stream of every region it serves (a confirmed order gets a
//! shipment per pickup point and the nearest courier able to carry it; a
//! cancelled order's shipments are withdrawn) and writes the `delivery`
//! stream, which courier systems consume too, and each courier partner's
//! topic, with the events of the shipments its couriers carry (see
//! `docs/courier-events.md`).

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod dispatch;
pub mod error;
pub mod events;
pub mod metrics;
pub mod model;
pub mod partners;
pub mod reactions;
pub mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use harvest_bus::{Publisher, Stream};
use harvest_domain::Regions;
use harvest_kit::audit::AuditLog;
use harvest_kit::grpc::RequestLimit;
use harvest_kit::service::{Foundation, FoundationError, Listeners, RunError, region_consumers};
use harvest_proto::delivery::v1::delivery_service_server::DeliveryServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::config::DeliveryConfig;
use crate::dispatch::Dispatcher;
use crate::partners::PartnerTopics;
use crate::reactions::ShipmentReactions;
use crate::store::DeliveryStore;

/// The name of this service in consumer groups, dead-letter topics and traces.
pub const SERVICE: &str = "delivery";

/// The largest request message accepted; a bigger one is refused with
/// RESOURCE_EXHAUSTED. A courier's profile, a location or a step on a
/// shipment is well under a kilobyte.
pub const MAX_REQUEST: RequestLimit = RequestLimit::new(16 * 1024);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Foundation(#[from] FoundationError),
}

/// A delivery service ready to serve: ports bound, Redis and the broker reached.
pub struct App {
    config: DeliveryConfig,
    listeners: Listeners,
    store: DeliveryStore,
    audit: AuditLog,
    publisher: Publisher,
    /// The regions this instance serves.
    served: Regions,
}

impl App {
    pub async fn build(config: DeliveryConfig) -> Result<App, BuildError> {
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
            Stream::Delivery,
        )
        .await?;
        let audit = AuditLog::new(
            redis.clone(),
            &config.redis.key_prefix,
            SERVICE,
            config.redis.retention(),
        );
        let store = DeliveryStore::new(redis, &config.redis.key_prefix)
            .with_retention(config.redis.retention());
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

    /// Serves the API, consumes every served region's order events and sweeps
    /// its unfinished shipments until `shutdown`, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let dispatcher = Arc::new(Dispatcher::new(
            self.store.clone(),
            self.publisher.clone(),
            self.config.regions.all.clone(),
            self.config.assignment.clone(),
        ));
        let reactions = Arc::new(ShipmentReactions::new(dispatcher.clone()));
        let mut tasks = region_consumers(
            &self.config.bus,
            &self.publisher,
            SERVICE,
            &self.served,
            &[Stream::Orders],
            reactions,
            &shutdown,
        );
        for region in self.served.iter() {
            tasks.push((
                "a shipment sweeper",
                Box::pin(dispatcher.clone().sweep(region.clone(), shutdown.clone())),
            ));
        }
        tracing::info!(
            grpc = %self.grpc_addr(),
            admin = %self.admin_addr(),
            regions = %self.served,
            "delivery serving",
        );
        let partners = PartnerTopics::new(
            self.config.partner_topics.create,
            self.config.bus.clone(),
            self.publisher.topology().clone(),
        );
        let api = DeliveryServiceServer::new(api::DeliveryApi::new(
            dispatcher,
            partners,
            self.audit,
            shutdown.clone(),
        ));
        self.listeners
            .serve(api, MAX_REQUEST, tasks, shutdown, &self.publisher)
            .await
    }
}
