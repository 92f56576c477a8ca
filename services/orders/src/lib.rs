//! The orders service: the storefront's front door and the single decider of
//! every order's fate.
//!
//! Storefronts place, read, list, cancel and watch orders over gRPC. The
//! service consumes the catalog, payments and delivery streams of the regions
//! it serves, runs each event through the order's state machine
//! ([`decider`]), and writes the `orders` stream: placed, state changes,
//! confirmed, cancelled (with the reason) and delivered. Deadlines (unpaid
//! reservations, perishables not picked up) live in Redis and fire once.

#![forbid(unsafe_code)]

pub mod api;
pub mod config;
pub mod decider;
pub mod error;
pub mod model;
pub mod reactions;
pub mod saga;
pub mod store;
pub mod timers;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;

use harvest_bus::{Publisher, Stream};
use harvest_domain::Regions;
use harvest_kit::grpc::RequestLimit;
use harvest_kit::service::{Foundation, FoundationError, Listeners, RunError, region_consumers};
use harvest_proto::orders::v1::orders_service_server::OrdersServiceServer;
use tokio_util::sync::CancellationToken;

pub use crate::config::OrdersConfig;
use crate::reactions::SagaReactions;
use crate::saga::Saga;
use crate::store::OrderStore;
use crate::watch::WatchHub;

/// The name of this service in consumer groups, dead-letter topics and traces.
pub const SERVICE: &str = "orders";

/// The largest request message accepted; a bigger one is refused with
/// RESOURCE_EXHAUSTED before it is read. PlaceOrder is the largest request:
/// an order at its most lines with the longest address is a few kilobytes.
pub const MAX_REQUEST: RequestLimit = RequestLimit::new(64 * 1024);

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Foundation(#[from] FoundationError),
    #[error("the pub/sub connection to Redis")]
    RedisPubSub(#[source] harvest_kit::store::ConnectError),
}

/// An orders service ready to serve.
pub struct App {
    config: OrdersConfig,
    listeners: Listeners,
    saga: Saga,
    publisher: Publisher,
    pubsub: redis::Client,
    /// The regions this instance serves.
    served: Regions,
}

impl App {
    pub async fn build(config: OrdersConfig) -> Result<App, BuildError> {
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
            Stream::Orders,
        )
        .await?;
        let pubsub = harvest_kit::store::client(&config.redis, config.redis.pubsub_url())
            .map_err(BuildError::RedisPubSub)?;
        let store = OrderStore::new(redis, &config.redis.key_prefix, config.redis.retention());
        let saga = Saga::new(store, publisher.clone(), config.orders.clone());
        Ok(App {
            config,
            listeners: listeners.with_access(access),
            saga,
            publisher,
            pubsub,
            served,
        })
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.listeners.grpc_addr()
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.listeners.admin_addr()
    }

    /// Serves until `shutdown`, then drains.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> Result<(), RunError> {
        let reactions = Arc::new(SagaReactions::new(self.saga.clone()));
        let rules = &self.config.orders;
        let mut tasks = region_consumers(
            &self.config.bus,
            &self.publisher,
            SERVICE,
            &self.served,
            &[Stream::Catalog, Stream::Payments, Stream::Delivery],
            reactions,
            &shutdown,
        );
        for region in self.served.iter() {
            let deadlines = timers::run_deadlines(
                self.saga.clone(),
                region.clone(),
                rules.deadline_poll(),
                shutdown.clone(),
            );
            tasks.push((
                "the deadline timer",
                Box::pin(async move { Ok(deadlines.await?) }),
            ));
            let sweeper = timers::run_outbox_sweeper(
                self.saga.clone(),
                region.clone(),
                rules.outbox_stale(),
                shutdown.clone(),
            );
            tasks.push((
                "the outbox sweeper",
                Box::pin(async move { Ok(sweeper.await?) }),
            ));
        }
        let hub = WatchHub::default();
        let store = self.saga.store();
        let watching = hub.clone().run(
            self.pubsub.clone(),
            store.watch_pattern(),
            store.watch_channel("").len(),
            shutdown.clone(),
        );
        tasks.push((
            "the watch hub",
            Box::pin(async move { Ok(watching.await?) }),
        ));

        tracing::info!(
            grpc = %self.grpc_addr(),
            admin = %self.admin_addr(),
            regions = %self.served,
            "orders serving",
        );
        let api = api::OrdersApi::new(
            self.saga.clone(),
            self.config.regions.all.clone(),
            self.config.orders.clone(),
            hub,
        );
        let server = OrdersServiceServer::new(api);
        self.listeners
            .serve(server, MAX_REQUEST, tasks, shutdown, &self.publisher)
            .await
    }
}
