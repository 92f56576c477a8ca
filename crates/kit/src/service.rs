//! Running a service: its listeners, its gRPC API, its admin port and its
//! background tasks (event consumers, timers), with one shutdown for all.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use harvest_bus::consumer::{self, ConsumerSpec};
use harvest_bus::{BusConfig, Handler, Publisher, Stream};
use harvest_domain::{RegionError, Regions};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ServerConfig;

/// A background task: runs until its token is cancelled.
pub type Task = Pin<Box<dyn Future<Output = Result<(), TaskError>> + Send>>;
pub type TaskError = Box<dyn std::error::Error + Send + Sync>;

/// One event consumer per served region, each reading its region's
/// `streams` with `handler` until `shutdown`.
pub fn region_consumers<H: Handler>(
    bus: &BusConfig,
    publisher: &Publisher,
    service: &'static str,
    served: &Regions,
    streams: &[Stream],
    handler: Arc<H>,
    shutdown: &CancellationToken,
) -> Vec<(&'static str, Task)> {
    served
        .iter()
        .map(|region| {
            let spec = ConsumerSpec {
                service,
                region: region.clone(),
                streams: streams.to_vec(),
            };
            let (bus, publisher, handler, shutdown) = (
                bus.clone(),
                publisher.clone(),
                handler.clone(),
                shutdown.clone(),
            );
            let task: Task = Box::pin(async move {
                consumer::run(&bus, publisher, spec, handler, shutdown)
                    .await
                    .map_err(Into::into)
            });
            ("an event consumer", task)
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("could not bind {what} on {addr}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not install the metrics recorder: {0}")]
    Metrics(String),
    #[error("TLS of the gRPC port: {0}")]
    Tls(String),
    #[error("{0}")]
    WebOrigins(String),
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0} failed")]
    Task(&'static str, #[source] TaskError),
    #[error("{0} ended before shutdown was requested")]
    EndedEarly(&'static str),
}

/// The bound ports of a service, before it serves.
pub struct Listeners {
    grpc: TcpListener,
    admin: TcpListener,
    metrics: PrometheusHandle,
    grace_period: Duration,
    /// Where Redis's clock is read while serving.
    clock: Option<crate::store::Redis>,
    /// Who may call which method.
    access: crate::auth::Access,
    /// The gRPC port's TLS; `None` for plaintext.
    tls: Option<tonic::transport::ServerTlsConfig>,
    /// Origins whose pages may call the gRPC port with gRPC-Web.
    web_origins: Vec<tonic::codegen::http::HeaderValue>,
}

impl Listeners {
    /// Binds both ports first, so that a busy port fails start-up at once.
    pub async fn bind(config: &ServerConfig) -> Result<Self, StartError> {
        let bind = |what, addr| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Bind { what, addr, source })
        };
        Ok(Listeners {
            grpc: bind("the gRPC port", config.grpc_addr).await?,
            admin: bind("the admin port", config.admin_addr).await?,
            metrics: crate::admin::prometheus().map_err(StartError::Metrics)?,
            grace_period: config.grace_period(),
            clock: None,
            access: crate::auth::Access::off(&[]),
            tls: config.tls().map_err(StartError::Tls)?,
            web_origins: config
                .allowed_web_origins()
                .map_err(StartError::WebOrigins)?,
        })
    }

    /// Checks every call against `access` (see [`crate::auth`]).
    pub fn with_access(mut self, access: crate::auth::Access) -> Self {
        self.access = access;
        self
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves `api`, the admin port and `tasks` until `shutdown`, or until one
    /// of them fails (which stops the others). A request message over `limit`
    /// is refused with RESOURCE_EXHAUSTED. On shutdown each gets the grace
    /// period to finish what it holds, and then `publisher` as long again to
    /// deliver the events still queued.
    pub async fn serve<S>(
        self,
        api: S,
        limit: crate::grpc::RequestLimit,
        tasks: Vec<(&'static str, Task)>,
        shutdown: CancellationToken,
        publisher: &Publisher,
    ) -> Result<(), RunError>
    where
        S: tower::Service<
                tonic::codegen::http::Request<tonic::body::Body>,
                Response = tonic::codegen::http::Response<tonic::body::Body>,
                Error = std::convert::Infallible,
            > + tonic::server::NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        // Stops everything when shutdown is requested or a task fails.
        let stop = shutdown.child_token();
        let mut set: JoinSet<(&'static str, Result<(), TaskError>)> = JoinSet::new();
        // Without Redis (a service built without a Foundation) there is
        // nothing to follow: ready from the start.
        let (readiness, ready) = tokio::sync::watch::channel(true);
        if let Some(redis) = self.clock.clone() {
            let (publisher, readiness_stop) = (publisher.clone(), stop.clone());
            set.spawn(async move {
                crate::readiness::follow(redis, publisher, readiness, readiness_stop).await;
                ("the readiness check", Ok(()))
            });
        }
        let grpc_stop = stop.clone();
        set.spawn(async move {
            let served = crate::grpc::serve(
                self.grpc,
                crate::grpc::Serving {
                    limit,
                    access: self.access,
                    tls: self.tls,
                    web_origins: self.web_origins,
                },
                api,
                ready,
                grpc_stop,
            )
            .await;
            ("the gRPC server", served.map_err(Into::into))
        });
        let admin_stop = stop.clone();
        set.spawn(async move {
            let served = crate::admin::serve(self.admin, self.metrics, admin_stop).await;
            ("the admin server", served.map_err(Into::into))
        });
        for (name, task) in tasks {
            set.spawn(async move { (name, task.await) });
        }
        if let Some(redis) = self.clock {
            let clock_stop = stop.clone();
            set.spawn(async move {
                let Ok(()) = crate::clock::keep_in_sync(redis, clock_stop).await;
                ("the clock", Ok(()))
            });
        }

        let first_to_end = tokio::select! {
            joined = set.join_next() => joined,
            () = stop.cancelled() => None,
        };
        let failure = first_to_end.map(|joined| {
            let (name, result) = match joined {
                Ok(finished) => finished,
                Err(panic) => ("a task", Err(Box::new(panic) as TaskError)),
            };
            match result {
                Err(error) => {
                    tracing::error!(task = name, error.cause_chain = ?error, "task failed");
                    RunError::Task(name, error)
                }
                Ok(()) => RunError::EndedEarly(name),
            }
        });
        stop.cancel();

        let drained = tokio::time::timeout(self.grace_period, async {
            while set.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(grace_period = ?self.grace_period, "tasks did not finish in time; aborting");
            set.abort_all();
        }
        publisher.flush(self.grace_period);
        failure.map_or(Ok(()), Err)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FoundationError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Redis(#[from] crate::store::ConnectError),
    #[error("could not create topics")]
    Topics(#[from] harvest_bus::admin::AdminError),
    #[error("could not create the event publisher")]
    Publisher(#[from] harvest_bus::PublishError),
    #[error("regions.serve names a region outside regions.all")]
    Regions(#[from] RegionError),
}

/// What every service starts from: its ports bound, Redis reached, the
/// topics in place, a publisher for the stream it owns, and the regions this
/// instance serves.
pub struct Foundation {
    pub listeners: Listeners,
    pub redis: crate::store::Redis,
    pub publisher: Publisher,
    pub served: Regions,
}

impl Foundation {
    pub async fn build(
        server: &ServerConfig,
        bus: &BusConfig,
        redis: &crate::RedisConfig,
        regions: &crate::RegionsConfig,
        owner: harvest_bus::Stream,
    ) -> Result<Foundation, FoundationError> {
        let served = regions.served()?;
        let mut listeners = Listeners::bind(server).await?;
        let mut redis = crate::store::connect(redis).await?;
        // Deadlines and leases follow Redis's clock from the first one on.
        crate::clock::sync(&mut redis)
            .await
            .map_err(|error| FoundationError::Redis(crate::store::ConnectError::from(error)))?;
        listeners.clock = Some(redis.clone());
        let topology = harvest_bus::Topology::new(bus, regions.all.clone());
        if bus.ensure_topics {
            let created = harvest_bus::admin::ensure_topics(bus, &topology.all_topics()).await?;
            if !created.is_empty() {
                tracing::info!(count = created.len(), "created topics");
            }
        }
        let publisher = Publisher::new(bus, topology, owner)?;
        Ok(Foundation {
            listeners,
            redis,
            publisher,
            served,
        })
    }
}
