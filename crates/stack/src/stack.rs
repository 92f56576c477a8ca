use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use harvest_bus::{BusConfig, Topology};
use harvest_domain::Regions;
use harvest_kit::auth::Role;
use harvest_kit::issuer::Issuer;
use tonic::transport::ClientTlsConfig;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::servers::{
    BrokerOptions, BrokerServer, ChildGuard, Fsync, RedisOptions, RedisServer, free_port,
};
use crate::tls::LocalTls;

/// A Harvest service, built as its own binary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceKind {
    Catalog,
    Orders,
    Payments,
    Delivery,
}

impl ServiceKind {
    pub const ALL: [ServiceKind; 4] = [
        ServiceKind::Catalog,
        ServiceKind::Orders,
        ServiceKind::Payments,
        ServiceKind::Delivery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ServiceKind::Catalog => "catalog",
            ServiceKind::Orders => "orders",
            ServiceKind::Payments => "payments",
            ServiceKind::Delivery => "delivery",
        }
    }

    /// The gRPC and admin ports the service uses by default.
    pub fn default_ports(self) -> (u16, u16) {
        match self {
            ServiceKind::Catalog => (50051, 9101),
            ServiceKind::Orders => (50052, 9102),
            ServiceKind::Payments => (50053, 9103),
            ServiceKind::Delivery => (50054, 9104),
        }
    }

    pub fn binary(self) -> String {
        format!("harvest-{}", self.name())
    }

    /// The gRPC service name its health is reported under.
    fn grpc_service(self) -> &'static str {
        match self {
            ServiceKind::Catalog => "harvest.catalog.v1.CatalogService",
            ServiceKind::Orders => "harvest.orders.v1.OrdersService",
            ServiceKind::Payments => "harvest.payments.v1.PaymentsService",
            ServiceKind::Delivery => "harvest.delivery.v1.DeliveryService",
        }
    }
}

impl fmt::Display for ServiceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours widths, so tables of services line up.
        f.pad(self.name())
    }
}

/// The `iss` of the stack's tokens.
pub const ISSUER: &str = harvest_kit::issuer::LOCAL_ISSUER;
/// Where, under the state directory, the stack keeps its signing key and
/// the JWKS document of it.
pub const AUTH_DIR: &str = "auth";

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Logs (and durable data) go here.
    pub state_dir: PathBuf,
    /// Keep Redis data on disk (append-only file) and the broker's log
    /// directories under the state directory; otherwise Redis keeps its data
    /// in memory and the broker's directories are removed when it stops.
    pub durable: bool,
    /// When a durable Redis writes its append-only file to disk: before it
    /// answers each write, by default.
    pub redis_fsync: Fsync,
    /// Use this running broker (`host:port`) instead of starting one; the
    /// stack neither creates it nor stops it.
    pub external_broker: Option<String>,
    /// In front of every topic and consumer group, so that several stacks
    /// can share one broker.
    pub topic_prefix: String,
    pub services: Vec<ServiceKind>,
    pub regions: Regions,
    pub partitions: i32,
    /// Where the service binaries are; defaults to the directory of the
    /// running executable (or its parent, for test binaries in `deps/`).
    pub bin_dir: Option<PathBuf>,
    pub otlp_endpoint: Option<String>,
    /// Extra `HARVEST_…` settings for every service.
    pub env: Vec<(String, String)>,
    /// Extra `HARVEST_…` settings for one service (services refuse settings
    /// they do not know).
    pub service_env: Vec<(ServiceKind, String, String)>,
    pub log_filter: String,
    /// Put each service on its default ports when they are free, so that
    /// clients find it without being told where.
    pub prefer_default_ports: bool,
    /// Run the services with authentication on, trusting the stack's own
    /// issuer (its key kept under `auth/` in the state directory); every
    /// call then needs one of its tokens ([`Stack::token`]).
    pub auth: bool,
    /// Serve gRPC over TLS only, with certificates of an authority the
    /// stack makes under `tls/` in the state directory
    /// ([`Stack::client_tls`] trusts it).
    pub tls: bool,
    /// With `tls`: every client must also present a certificate of that
    /// authority (mutual TLS).
    pub mutual_tls: bool,
}

impl StackOptions {
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        StackOptions {
            state_dir: state_dir.into(),
            durable: false,
            redis_fsync: Fsync::Always,
            external_broker: None,
            topic_prefix: String::new(),
            services: ServiceKind::ALL.to_vec(),
            regions: Regions::default(),
            partitions: 6,
            bin_dir: None,
            otlp_endpoint: None,
            env: Vec::new(),
            service_env: Vec::new(),
            log_filter: "info,rdkafka=warn".to_owned(),
            prefer_default_ports: false,
            auth: true,
            tls: false,
            mutual_tls: false,
        }
    }
}

struct RunningService {
    guard: ChildGuard,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    started: Instant,
    /// How long to wait before restarting it should it exit soon.
    backoff: Duration,
}

/// The first wait before a service that exited is started again.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between restarts of a service that keeps exiting.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A service that served this long before it exited is restarted after
/// [`FIRST_BACKOFF`] again, not after its doubled wait.
pub const STABLE_AFTER: Duration = Duration::from_secs(60);

/// The wait after `backoff`: doubled, up to [`MAX_BACKOFF`].
fn doubled(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// The wait before restarting a service that exited after serving for
/// `uptime`, when `carried` was its wait due after a quick exit.
fn backoff_after(uptime: Duration, carried: Duration) -> Duration {
    if uptime >= STABLE_AFTER {
        FIRST_BACKOFF
    } else {
        carried
    }
}

/// A service that exited without being asked to, until it is restarted.
struct DownService {
    retry_at: Instant,
    backoff: Duration,
}

/// What [`Stack::supervise`] saw or did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Supervision {
    /// A service exited without being asked to.
    Exited {
        kind: ServiceKind,
        /// As the OS put it: `exit status: 1`, `signal: 9 (SIGKILL)`.
        status: String,
        log: PathBuf,
        restart_in: Duration,
    },
    /// A service that exited serves again, on its own ports.
    Restarted { kind: ServiceKind, restarts: u32 },
    /// A restart did not come up; the next attempt is in `retry_in`.
    RestartFailed {
        kind: ServiceKind,
        error: String,
        retry_in: Duration,
    },
}

impl fmt::Display for Supervision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Supervision::Exited {
                kind,
                status,
                log,
                restart_in,
            } => write!(
                f,
                "{kind} exited unexpectedly ({status}); its log: {}; restarting in {} s",
                log.display(),
                restart_in.as_secs()
            ),
            Supervision::Restarted { kind, restarts } => {
                write!(f, "{kind} restarted and serving (restart {restarts})")
            }
            Supervision::RestartFailed {
                kind,
                error,
                retry_in,
            } => write!(
                f,
                "{kind} did not restart: {error}; next attempt in {} s",
                retry_in.as_secs()
            ),
        }
    }
}

/// The running stack. Dropping it kills every process it started.
pub struct Stack {
    options: StackOptions,
    bin_dir: PathBuf,
    // Declared before the servers so that services stop first.
    services: BTreeMap<ServiceKind, RunningService>,
    /// Where each service listened, so that a restart keeps its addresses.
    addresses: BTreeMap<ServiceKind, (SocketAddr, SocketAddr)>,
    /// Services that exited without being asked to, awaiting their restart.
    down: BTreeMap<ServiceKind, DownService>,
    /// Restarts made by [`Stack::supervise`], by service.
    restarts: BTreeMap<ServiceKind, u32>,
    broker: Option<BrokerServer>,
    redis: Option<RedisServer>,
    issuer: Option<Arc<Issuer>>,
    tls: Option<LocalTls>,
}

impl Stack {
    /// Starts Redis and the broker, creates every topic, then starts the
    /// services and waits until each reports itself serving.
    pub async fn start(options: StackOptions) -> anyhow::Result<Stack> {
        let bin_dir = match &options.bin_dir {
            Some(dir) => dir.clone(),
            None => default_bin_dir()?,
        };
        let logs = options.state_dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
        let data = options.state_dir.join("data");
        let redis = RedisServer::start(&RedisOptions {
            data_dir: options.durable.then(|| data.join("redis")),
            fsync: options.redis_fsync,
            log: Some(logs.join("redis.log")),
            cluster_dir: None,
        })
        .context("starting redis-server")?;
        let broker = match options.external_broker {
            Some(_) => None,
            None => Some(
                BrokerServer::start(&BrokerOptions {
                    data_dir: options.durable.then(|| data.join("kafka")),
                    log: Some(logs.join("kafka.log")),
                    secure: None,
                })
                .context("starting Apache Kafka")?,
            ),
        };
        let issuer = if options.auth {
            let dir = options.state_dir.join(AUTH_DIR);
            let issuer = Issuer::in_dir(&dir, ISSUER)
                .with_context(|| format!("the stack's token issuer in {}", dir.display()))?;
            Some(Arc::new(issuer))
        } else {
            None
        };
        let tls = if options.tls {
            Some(LocalTls::make(&options.state_dir.join("tls")).context("the stack's TLS")?)
        } else {
            None
        };
        let mut stack = Stack {
            issuer,
            tls,
            options,
            bin_dir,
            services: BTreeMap::new(),
            addresses: BTreeMap::new(),
            down: BTreeMap::new(),
            restarts: BTreeMap::new(),
            broker,
            redis: Some(redis),
        };
        let bus = stack.bus_config();
        let topology = Topology::new(&bus, stack.options.regions.clone());
        harvest_bus::admin::ensure_topics(&bus, &topology.all_topics())
            .await
            .context("creating topics")?;
        for kind in stack.options.services.clone() {
            stack.start_service(kind).await?;
        }
        Ok(stack)
    }

    pub fn options(&self) -> &StackOptions {
        &self.options
    }

    /// The issuer the services trust, when authentication is on.
    pub fn issuer(&self) -> Option<&Arc<Issuer>> {
        self.issuer.as_ref()
    }

    /// A client's TLS for the services, when they serve TLS: trusting the
    /// stack's authority, with its client certificate under mutual TLS.
    pub fn client_tls(&self) -> anyhow::Result<Option<ClientTlsConfig>> {
        self.tls
            .as_ref()
            .map(|tls| tls.client(self.options.mutual_tls))
            .transpose()
    }

    /// The files of the stack's TLS, when it serves TLS.
    pub fn tls_files(&self) -> Option<&LocalTls> {
        self.tls.as_ref()
    }

    /// A token for `subject` in `role`, valid for an hour; `None` when
    /// authentication is off.
    pub fn token(&self, role: Role, subject: &str) -> Option<String> {
        self.issuer
            .as_ref()
            .map(|issuer| issuer.token(role, subject))
    }

    /// The bus settings every service of this stack uses.
    pub fn bus_config(&self) -> BusConfig {
        BusConfig {
            brokers: self.bootstrap(),
            topic_prefix: self.options.topic_prefix.clone(),
            partitions: self.options.partitions,
            ..BusConfig::default()
        }
    }

    pub fn bootstrap(&self) -> String {
        match (&self.options.external_broker, &self.broker) {
            (Some(external), _) => external.clone(),
            (None, Some(broker)) => broker.bootstrap(),
            (None, None) => String::new(),
        }
    }

    pub fn redis_url(&self) -> String {
        self.redis
            .as_ref()
            .map(RedisServer::url)
            .unwrap_or_default()
    }

    pub fn grpc_addr(&self, kind: ServiceKind) -> Option<SocketAddr> {
        self.services.get(&kind).map(|service| service.grpc_addr)
    }

    pub fn admin_addr(&self, kind: ServiceKind) -> Option<SocketAddr> {
        self.services.get(&kind).map(|service| service.admin_addr)
    }

    /// `http://host:port` of a service's gRPC API.
    /// Where the health of a service at `addr` is asked, over TLS when the
    /// stack serves it.
    fn health_endpoint(&self, addr: SocketAddr) -> anyhow::Result<tonic::transport::Endpoint> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))?;
        Ok(match self.client_tls()? {
            Some(tls) => endpoint.tls_config(tls)?,
            None => endpoint,
        })
    }

    pub fn endpoint(&self, kind: ServiceKind) -> anyhow::Result<String> {
        let addr = self
            .grpc_addr(kind)
            .with_context(|| format!("{kind} is not running"))?;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        Ok(format!("{scheme}://{addr}"))
    }

    /// Where the broker this stack started writes its output.
    pub fn broker_log_file(&self) -> Option<&Path> {
        self.broker.as_ref().map(BrokerServer::log_file)
    }

    pub fn log_file(&self, kind: ServiceKind) -> PathBuf {
        self.options
            .state_dir
            .join("logs")
            .join(format!("{kind}.log"))
    }

    /// Starts (or restarts, on the same ports) one service and waits until
    /// it serves.
    pub async fn start_service(&mut self, kind: ServiceKind) -> anyhow::Result<()> {
        let binary = self.bin_dir.join(kind.binary());
        if !binary.is_file() {
            bail!(
                "{} is missing: build the workspace first (`cargo build --workspace --bins`)",
                binary.display()
            );
        }
        let (grpc_addr, admin_addr) = match self.addresses.get(&kind) {
            Some(addresses) => *addresses,
            None => {
                let (grpc, admin) = kind.default_ports();
                let port = |preferred: u16| -> anyhow::Result<u16> {
                    let free = self.options.prefer_default_ports
                        && std::net::TcpListener::bind(("127.0.0.1", preferred)).is_ok();
                    if free { Ok(preferred) } else { free_port() }
                };
                (
                    SocketAddr::from(([127, 0, 0, 1], port(grpc)?)),
                    SocketAddr::from(([127, 0, 0, 1], port(admin)?)),
                )
            }
        };
        let log_path = self.log_file(kind);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let mut command = Command::new(&binary);
        command
            .env("HARVEST_SERVER__GRPC_ADDR", grpc_addr.to_string())
            .env("HARVEST_SERVER__ADMIN_ADDR", admin_addr.to_string())
            .env("HARVEST_BUS__BROKERS", self.bootstrap())
            .env(
                "HARVEST_BUS__PARTITIONS",
                self.options.partitions.to_string(),
            )
            .env("HARVEST_BUS__TOPIC_PREFIX", &self.options.topic_prefix)
            .env("HARVEST_BUS__ENSURE_TOPICS", "false")
            .env("HARVEST_REDIS__URL", self.redis_url())
            .env("HARVEST_REGIONS__ALL", self.options.regions.to_string())
            .env("HARVEST_TELEMETRY__LOG_FILTER", &self.options.log_filter)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log));
        if let Some(endpoint) = &self.options.otlp_endpoint {
            command.env("HARVEST_TELEMETRY__OTLP_ENDPOINT", endpoint);
        }
        if let Some(tls) = &self.tls {
            command
                .env("HARVEST_SERVER__TLS_CERT_FILE", &tls.cert_file)
                .env("HARVEST_SERVER__TLS_KEY_FILE", &tls.key_file);
            if self.options.mutual_tls {
                command.env("HARVEST_SERVER__TLS_CLIENT_CA_FILE", &tls.ca_file);
            }
        }
        if let Some(issuer) = &self.issuer {
            command
                .env("HARVEST_AUTH__MODE", "jwt")
                .env("HARVEST_AUTH__JWKS_FILE", issuer.jwks_file())
                .env("HARVEST_AUTH__ISSUER", issuer.name());
        }
        for (key, value) in &self.options.env {
            command.env(key, value);
        }
        for (_, key, value) in self
            .options
            .service_env
            .iter()
            .filter(|(for_kind, ..)| *for_kind == kind)
        {
            command.env(key, value);
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut guard = ChildGuard::new(kind.binary(), child);
        let endpoint = self.health_endpoint(grpc_addr)?;
        wait_for_health(kind, endpoint, &mut guard, &log_path).await?;
        self.addresses.insert(kind, (grpc_addr, admin_addr));
        self.services.insert(
            kind,
            RunningService {
                guard,
                grpc_addr,
                admin_addr,
                started: Instant::now(),
                backoff: FIRST_BACKOFF,
            },
        );
        Ok(())
    }

    /// Supervises the services once, as a process supervisor would: reports
    /// (through `report`) every service that exited without being asked to,
    /// then restarts, on its own ports, each whose wait is over. The wait
    /// starts at 1 s and doubles, up to 30 s, while a service keeps exiting
    /// within a minute of its start. Call it every few hundred milliseconds;
    /// a restart waits until the service serves (or fails to).
    pub async fn supervise(&mut self, mut report: impl FnMut(&Supervision)) {
        // Every exit is reported before any restart, so that one service's
        // restart never holds up the news of another's exit.
        let exited: Vec<(ServiceKind, String)> = self
            .services
            .iter_mut()
            .filter_map(|(kind, service)| {
                let status = service.guard.exit_status()?;
                Some((*kind, status.to_string()))
            })
            .collect();
        for (kind, status) in exited {
            let Some(service) = self.services.remove(&kind) else {
                continue;
            };
            let backoff = backoff_after(service.started.elapsed(), service.backoff);
            self.down.insert(
                kind,
                DownService {
                    retry_at: Instant::now() + backoff,
                    backoff,
                },
            );
            report(&Supervision::Exited {
                kind,
                status,
                log: self.log_file(kind),
                restart_in: backoff,
            });
        }

        let now = Instant::now();
        let due: Vec<ServiceKind> = self
            .down
            .iter()
            .filter(|(_, down)| down.retry_at <= now)
            .map(|(kind, _)| *kind)
            .collect();
        for kind in due {
            let Some(down) = self.down.remove(&kind) else {
                continue;
            };
            let next = doubled(down.backoff);
            match self.start_service(kind).await {
                Ok(()) => {
                    if let Some(service) = self.services.get_mut(&kind) {
                        service.backoff = next;
                    }
                    let restarts = self.restarts.entry(kind).or_default();
                    *restarts += 1;
                    report(&Supervision::Restarted {
                        kind,
                        restarts: *restarts,
                    });
                }
                Err(error) => {
                    self.down.insert(
                        kind,
                        DownService {
                            retry_at: Instant::now() + next,
                            backoff: next,
                        },
                    );
                    report(&Supervision::RestartFailed {
                        kind,
                        error: format!("{error:#}"),
                        retry_in: next,
                    });
                }
            }
        }
    }

    /// How often [`Stack::supervise`] restarted each service.
    pub fn restarts(&self) -> &BTreeMap<ServiceKind, u32> {
        &self.restarts
    }

    /// Kills a service at once (SIGKILL), as a crash would. A service killed
    /// here is not restarted by [`Stack::supervise`].
    pub fn kill_service(&mut self, kind: ServiceKind) {
        self.down.remove(&kind);
        if let Some(mut service) = self.services.remove(&kind) {
            service.guard.kill();
        }
    }

    /// Stops a service gracefully (SIGTERM, then SIGKILL after 15 s).
    pub fn stop_service(&mut self, kind: ServiceKind) {
        self.down.remove(&kind);
        if let Some(mut service) = self.services.remove(&kind) {
            service.guard.terminate(Duration::from_secs(15));
        }
    }

    /// Stops the services gracefully, then the broker and Redis.
    pub fn stop(mut self) {
        let kinds: Vec<ServiceKind> = self.services.keys().copied().collect();
        for kind in kinds {
            self.stop_service(kind);
        }
        if let Some(broker) = self.broker.take() {
            broker.stop();
        }
        if let Some(redis) = self.redis.take() {
            redis.stop();
        }
    }

    /// Kills Redis at once (SIGKILL), as a crash would.
    pub fn crash_redis(&mut self) {
        if let Some(redis) = self.redis.as_mut() {
            redis.crash();
        }
    }

    /// Starts Redis again on its port, from its append-only file when the
    /// stack is durable (in-memory data is gone).
    pub fn restart_redis(&mut self) -> anyhow::Result<()> {
        match self.redis.as_mut() {
            Some(redis) => redis.restart(),
            None => bail!("this stack has no Redis of its own"),
        }
    }

    /// Freezes Redis (SIGSTOP) until [`Stack::resume_redis`].
    pub fn pause_redis(&self) {
        if let Some(redis) = &self.redis {
            redis.pause();
        }
    }

    pub fn resume_redis(&self) {
        if let Some(redis) = &self.redis {
            redis.resume();
        }
    }

    /// Kills the broker this stack started (SIGKILL), as a crash would.
    pub fn crash_broker(&mut self) {
        if let Some(broker) = self.broker.as_mut() {
            broker.crash();
        }
    }

    /// Starts the broker again on its ports and data; it keeps what it had
    /// written to its log directories.
    pub fn restart_broker(&mut self) -> anyhow::Result<()> {
        match self.broker.as_mut() {
            Some(broker) => broker.restart(),
            None => bail!("this stack uses a broker it did not start"),
        }
    }

    /// Process ids of the running services, for measuring them.
    pub fn pids(&self) -> BTreeMap<ServiceKind, u32> {
        self.services
            .iter()
            .map(|(kind, service)| (*kind, service.guard.id()))
            .collect()
    }

    /// Process ids of the servers this stack started (`kafka`, `redis`), for
    /// measuring them beside the services.
    pub fn server_pids(&self) -> BTreeMap<&'static str, u32> {
        let mut pids = BTreeMap::new();
        if let Some(broker) = &self.broker {
            pids.insert("kafka", broker.pid());
        }
        if let Some(redis) = &self.redis {
            pids.insert("redis", redis.pid());
        }
        pids
    }
}

async fn wait_for_health(
    kind: ServiceKind,
    endpoint: tonic::transport::Endpoint,
    guard: &mut ChildGuard,
    log: &Path,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exit) = guard.exited() {
            bail!("{exit}; see {}", log.display());
        }
        if serving(kind, &endpoint).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{kind} did not become healthy within a minute; see {}",
                log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serving(kind: ServiceKind, endpoint: &tonic::transport::Endpoint) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let mut client = HealthClient::new(channel);
    let request = HealthCheckRequest {
        service: kind.grpc_service().to_owned(),
    };
    matches!(
        client.check(request).await.map(|r| r.into_inner().status()),
        Ok(ServingStatus::Serving)
    )
}

/// The directory of the running executable, or its parent when that is a
/// `deps/` directory of test binaries.
fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let dir = exe.parent().context("executable has no directory")?;
    if dir.file_name().is_some_and(|name| name == "deps") {
        return Ok(dir.parent().unwrap_or(dir).to_path_buf());
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_up_to_thirty_seconds() {
        let mut wait = FIRST_BACKOFF;
        let mut waits = vec![wait];
        for _ in 0..6 {
            wait = doubled(wait);
            waits.push(wait);
        }
        let seconds: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(seconds, [1, 2, 4, 8, 16, 30, 30]);
    }

    #[test]
    fn a_service_that_served_a_while_starts_over_at_one_second() {
        let carried = Duration::from_secs(16);
        assert_eq!(backoff_after(Duration::from_secs(5), carried), carried);
        assert_eq!(backoff_after(STABLE_AFTER, carried), FIRST_BACKOFF);
    }

    #[test]
    fn a_report_names_the_service_its_exit_and_its_log() {
        let exited = Supervision::Exited {
            kind: ServiceKind::Orders,
            status: "signal: 9 (SIGKILL)".to_owned(),
            log: PathBuf::from("target/harvest/logs/orders.log"),
            restart_in: FIRST_BACKOFF,
        };
        assert_eq!(
            exited.to_string(),
            "orders exited unexpectedly (signal: 9 (SIGKILL)); its log: target/harvest/logs/orders.log; restarting in 1 s"
        );
    }
}
