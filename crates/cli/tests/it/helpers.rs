use std::process::Stdio;
use std::time::Duration;

use harvest_catalog::CatalogConfig;
use harvest_kit::{RedisConfig, ServerConfig};
use harvest_orders::OrdersConfig;
use harvest_proto::catalog::v1::Product;
use harvest_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use harvest_testkit::{Broker, Redis, TestSettings};
use serde_json::Value;
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use tonic::service::interceptor::InterceptedService;

pub const WAIT: Duration = Duration::from_secs(30);

/// A catalog and an orders service on a private Redis and broker, talking
/// through their own topics, as `harvest` finds them in a real deployment.
pub struct World {
    pub catalog_url: String,
    pub orders_url: String,
    /// The seeded sample catalog.
    pub products: Vec<Product>,
    /// The services' bus settings: brokers and topic prefix.
    pub bus: harvest_bus::BusConfig,
    shutdown: CancellationToken,
    _redis: Redis,
    _broker: Broker,
}

impl Drop for World {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl World {
    pub async fn start() -> World {
        let redis = Redis::start().expect("redis starts");
        let broker = Broker::shared().expect("the shared broker is up");
        let settings = TestSettings::new(&redis, &broker);
        let bus = settings.bus.clone();
        let redis_config = |service: &str| RedisConfig {
            key_prefix: format!("{}{service}:", settings.redis.key_prefix),
            ..settings.redis.clone()
        };
        let regions = settings.regions.clone();
        let shutdown = CancellationToken::new();

        let catalog = harvest_catalog::App::build(CatalogConfig {
            server: ServerConfig::local(0, 0),
            bus: bus.clone(),
            redis: redis_config("catalog"),
            regions: regions.clone(),
            ..CatalogConfig::default()
        })
        .await
        .expect("catalog builds");
        let catalog_url = format!("http://{}", catalog.grpc_addr());
        let stop = shutdown.clone();
        tokio::spawn(async move { catalog.run_until_stopped(stop).await.expect("catalog runs") });

        let orders = harvest_orders::App::build(OrdersConfig {
            server: ServerConfig::local(0, 0),
            bus,
            redis: redis_config("orders"),
            regions,
            ..OrdersConfig::default()
        })
        .await
        .expect("orders builds");
        let orders_url = format!("http://{}", orders.grpc_addr());
        let stop = shutdown.clone();
        tokio::spawn(async move { orders.run_until_stopped(stop).await.expect("orders runs") });

        // Authentication is off here: the minter signs nothing.
        let channel = tonic::transport::Endpoint::from_shared(catalog_url.clone())
            .expect("an endpoint")
            .connect()
            .await
            .expect("catalog connects");
        let mut client = CatalogServiceClient::new(InterceptedService::new(
            channel,
            harvest_kit::issuer::Minter::default(),
        ));
        let products = harvest_sim::seed::seed_catalog(&mut client)
            .await
            .expect("catalog seeded");
        World {
            catalog_url,
            orders_url,
            products,
            bus: settings.bus.clone(),
            shutdown,
            _redis: redis,
            _broker: broker,
        }
    }

    /// The id of the seeded product whose seller is `seller_id`.
    pub fn product_of(&self, seller_id: &str) -> String {
        self.products
            .iter()
            .find(|p| p.seller.as_ref().is_some_and(|s| s.seller_id == seller_id))
            .map(|p| p.product_id.clone())
            .unwrap_or_else(|| panic!("no sample product of {seller_id}"))
    }

    /// `harvest` pointed at this world's services through the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = harvest(args);
        command
            .env("HARVEST_CATALOG_URL", &self.catalog_url)
            .env("HARVEST_ORDERS_URL", &self.orders_url);
        command
    }

    pub async fn run(&self, args: &[&str]) -> Run {
        Run::of(self.command(args)).await
    }

    /// Starts `harvest` in the background, its stdout piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .spawn()
            .expect("harvest starts")
    }
}

/// The built `harvest` binary, with no endpoint set in its environment.
pub fn harvest(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_harvest"));
    command.args(args).kill_on_drop(true);
    for variable in [
        "HARVEST_CATALOG_URL",
        "HARVEST_ORDERS_URL",
        "HARVEST_PAYMENTS_URL",
        "HARVEST_DELIVERY_URL",
        "TRACEPARENT",
    ] {
        command.env_remove(variable);
    }
    command
}

/// How a run of `harvest` ended.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub async fn of(mut command: Command) -> Run {
        let output = tokio::time::timeout(WAIT, command.output())
            .await
            .expect("harvest finishes in time")
            .expect("harvest runs");
        Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "harvest failed: {self:#?}");
        &self.stdout
    }

    /// Asserts success and parses stdout as one JSON object.
    pub fn json(&self) -> Value {
        serde_json::from_str(self.ok()).unwrap_or_else(|e| panic!("not JSON ({e}): {self:#?}"))
    }

    /// Asserts that `harvest` failed with `code` and returns stderr.
    pub fn failed(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "unexpected outcome: {self:#?}");
        assert!(self.stdout.is_empty(), "nothing on stdout: {self:#?}");
        &self.stderr
    }
}

/// The value of a `Label  value` line of a human-readable block.
pub fn field<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label)?.strip_prefix(' ').map(str::trim))
        .unwrap_or_else(|| panic!("no {label} in:\n{text}"))
}
