//! Configuration: defaults in code, then an optional TOML file, then
//! `HARVEST_SECTION__KEY` environment variables (`HARVEST_BUS__BROKERS`,
//! `HARVEST_REDIS__URL`, …). Each service composes the sections below into its
//! own config type and validates it once after loading.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use harvest_domain::{Region, RegionError, Regions};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tonic::codegen::http::HeaderValue;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(String),
    #[error("invalid configuration")]
    Invalid(#[source] Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Rejected(String),
}

/// Loads `T` from its defaults, then `file` when given, then the environment.
pub fn load<T>(file: Option<&Path>) -> Result<T, ConfigError>
where
    T: Default + Serialize + DeserializeOwned,
{
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.display().to_string()));
        }
        figment = figment.merge(Toml::file(path));
    }
    // Only HARVEST_SECTION__KEY names are settings; other HARVEST_ variables
    // (HARVEST_CONFIG, tool paths) are not.
    let settings = Env::prefixed("HARVEST_")
        .filter(|key| key.as_str().contains("__"))
        .split("__");
    figment
        .merge(settings)
        .extract()
        .map_err(|error| ConfigError::Invalid(Box::new(error)))
}

/// The whole error, every cause and (for a bad value) where it came from, in
/// one line for a person.
pub fn describe(error: &ConfigError) -> String {
    match error {
        ConfigError::Invalid(figment_error) => {
            let problems: Vec<String> = (**figment_error)
                .clone()
                .into_iter()
                .map(|problem| problem.to_string())
                .collect();
            format!("invalid configuration: {}", problems.join("; "))
        }
        other => other.to_string(),
    }
}

pub use harvest_domain::Secret;

/// The ports a service listens on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// gRPC API. Port 0 picks a free port.
    pub grpc_addr: SocketAddr,
    /// Prometheus metrics and liveness over HTTP. Port 0 picks a free port.
    pub admin_addr: SocketAddr,
    /// How long in-flight requests and events may take to finish at shutdown.
    pub grace_period_secs: u64,
    /// The gRPC port's certificate chain (PEM). With `tls_key_file`, the port
    /// speaks TLS only; without either, plaintext.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `tls_cert_file` (PEM).
    pub tls_key_file: Option<PathBuf>,
    /// CA certificates (PEM): with it, every client must present a
    /// certificate signed by one of them (mutual TLS), as partners' systems
    /// and the services themselves can.
    pub tls_client_ca_file: Option<PathBuf>,
    /// Origins (`scheme://host[:port]`, a list or one comma-separated
    /// string) whose web pages may call the gRPC port from a browser, with
    /// gRPC-Web. The port serves gRPC-Web beside native gRPC either way;
    /// empty, no page of another origin may call it (a gateway serving the
    /// pages and the API on one origin needs none).
    #[serde(default, deserialize_with = "strings_from_list_or_csv")]
    pub web_origins: Vec<String>,
}

impl ServerConfig {
    /// Loopback addresses with the given ports.
    pub fn local(grpc_port: u16, admin_port: u16) -> Self {
        ServerConfig {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], grpc_port)),
            admin_addr: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            grace_period_secs: 10,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            web_origins: Vec::new(),
        }
    }

    /// Whether the TLS settings can work: a certificate and its key
    /// together, and client CAs only with them.
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => Err("server.tls_cert_file needs server.tls_key_file".to_owned()),
            (None, Some(_)) => Err("server.tls_key_file needs server.tls_cert_file".to_owned()),
            (None, None) if self.tls_client_ca_file.is_some() => Err(
                "server.tls_client_ca_file needs server.tls_cert_file and server.tls_key_file"
                    .to_owned(),
            ),
            _ => Ok(()),
        }?;
        self.allowed_web_origins().map(drop)
    }

    /// [`ServerConfig::web_origins`], checked: each an `http` or `https`
    /// origin, nothing after the host and port.
    pub fn allowed_web_origins(&self) -> Result<Vec<HeaderValue>, String> {
        self.web_origins
            .iter()
            .map(|origin| {
                let invalid = |why: &str| format!("server.web_origins: {origin:?} {why}");
                let rest = origin
                    .strip_prefix("https://")
                    .or_else(|| origin.strip_prefix("http://"))
                    .ok_or_else(|| invalid("must start with http:// or https://"))?;
                if rest.is_empty() || rest.contains(['/', '?', '#', '*', ' ']) {
                    return Err(invalid(
                        "must be scheme://host[:port], with no path and no wildcard",
                    ));
                }
                HeaderValue::from_str(origin).map_err(|_| invalid("is not a valid origin"))
            })
            .collect()
    }

    /// The gRPC port's TLS, read from the files; `None` for plaintext.
    pub fn tls(&self) -> Result<Option<tonic::transport::ServerTlsConfig>, String> {
        self.validate()?;
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) else {
            return Ok(None);
        };
        let read = |setting: &str, path: &std::path::Path| {
            std::fs::read(path).map_err(|error| format!("{setting} {}: {error}", path.display()))
        };
        let identity = tonic::transport::Identity::from_pem(
            read("server.tls_cert_file", cert)?,
            read("server.tls_key_file", key)?,
        );
        let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.tls_client_ca_file {
            let ca = read("server.tls_client_ca_file", ca)?;
            tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(ca));
        }
        Ok(Some(tls))
    }

    pub fn grace_period(&self) -> Duration {
        Duration::from_secs(self.grace_period_secs)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port[/db]`; with `cluster`, one or more seed
    /// nodes of the cluster separated by commas
    /// (`redis://10.0.0.1:6379,redis://10.0.0.2:6379`), from which the client
    /// learns every node and which slots each one serves.
    pub url: Secret<String>,
    /// Talk to a Redis Cluster: commands go to the node that owns their hash
    /// slot, and pipelines are split by slot (see [`crate::store`]).
    pub cluster: bool,
    /// Prepended to every key; lets several deployments (or tests) share a
    /// server.
    pub key_prefix: String,
    /// How long what an order leaves in Redis is kept once it ended: the
    /// order, its payment and ledger, its shipments, the catalog's decision
    /// and settled reservations. Past it, they are gone from every API.
    /// Keep it longer than the event streams' retention, so that a replayed
    /// event still finds what it would change.
    pub retention_secs: u64,
    /// With a `rediss://` URL (TLS): CA certificates (PEM) to trust instead
    /// of the system's roots.
    pub tls_ca_file: Option<PathBuf>,
    /// A client certificate (PEM) for a server that asks for one
    /// (`tls-auth-clients yes`), with `tls_key_file`.
    pub tls_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert_file`.
    pub tls_key_file: Option<PathBuf>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: Secret::new("redis://127.0.0.1:6379".to_owned()),
            cluster: false,
            key_prefix: String::new(),
            retention_secs: 30 * 24 * 3600,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl RedisConfig {
    pub fn retention(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.retention_secs)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.retention_secs == 0 {
            return Err("redis.retention_secs must be positive".to_owned());
        }
        if self.key_prefix.contains(['{', '}']) {
            return Err("redis.key_prefix must not contain '{' or '}'".to_owned());
        }
        let seeds = self.seeds();
        if seeds
            .iter()
            .any(|seed| !seed.starts_with("redis://") && !seed.starts_with("rediss://"))
        {
            return Err("redis.url must start with redis:// or rediss://".to_owned());
        }
        if seeds.len() > 1 && !self.cluster {
            return Err(
                "redis.url lists several nodes, which only redis.cluster allows".to_owned(),
            );
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err("redis.tls_cert_file and redis.tls_key_file go together".to_owned());
        }
        let tls_files = self.tls_ca_file.is_some() || self.tls_cert_file.is_some();
        if tls_files && seeds.iter().any(|seed| !seed.starts_with("rediss://")) {
            return Err("redis TLS files need a rediss:// URL".to_owned());
        }
        Ok(())
    }

    /// The node to subscribe to pub/sub channels on: the server, or a
    /// cluster's first seed node. A PUBLISH on any node of a cluster reaches
    /// the subscribers of every node, so one node hears every channel.
    pub fn pubsub_url(&self) -> &str {
        self.seeds().first().copied().unwrap_or_default()
    }

    /// The nodes `url` names: the server, or the cluster's seed nodes.
    pub fn seeds(&self) -> Vec<&str> {
        self.url
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|seed| !seed.is_empty())
            .collect()
    }
}

/// The regions of the deployment, and the ones this instance serves.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegionsConfig {
    /// Every region of the deployment (a list, or one comma-separated string).
    #[serde(deserialize_with = "regions_from_list_or_csv")]
    pub all: Regions,
    /// The regions this instance consumes events for; empty means all.
    #[serde(deserialize_with = "region_list_from_list_or_csv")]
    pub serve: Vec<Region>,
}

/// Checks the sections every service's configuration shares.
pub fn validate_shared(
    bus: &harvest_bus::BusConfig,
    redis: &RedisConfig,
    telemetry: &TelemetryConfig,
    regions: &RegionsConfig,
) -> Result<(), String> {
    bus.validate()?;
    redis.validate()?;
    telemetry.validate()?;
    regions
        .served()
        .map_err(|error| format!("regions.serve: {error}"))?;
    Ok(())
}

impl RegionsConfig {
    /// The regions this instance serves, each checked against `all`.
    pub fn served(&self) -> Result<Regions, RegionError> {
        if self.serve.is_empty() {
            return Ok(self.all.clone());
        }
        let served = self
            .serve
            .iter()
            .map(|region| self.all.resolve(region.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        Regions::new(served)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ListOrCsv {
    List(Vec<String>),
    Csv(String),
}

impl ListOrCsv {
    fn names(self) -> Vec<String> {
        match self {
            ListOrCsv::List(names) => names,
            ListOrCsv::Csv(text) => text
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

fn strings_from_list_or_csv<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<String>, D::Error> {
    Ok(ListOrCsv::deserialize(d)?.names())
}

fn regions_from_list_or_csv<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Regions, D::Error> {
    Regions::try_from(ListOrCsv::deserialize(d)?.names()).map_err(serde::de::Error::custom)
}

fn region_list_from_list_or_csv<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<Region>, D::Error> {
    ListOrCsv::deserialize(d)?
        .names()
        .iter()
        .map(|name| Region::parse(name).map_err(serde::de::Error::custom))
        .collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `tracing` filter directives; `RUST_LOG` overrides them.
    pub log_filter: String,
    /// `text` or `json`.
    pub log_format: String,
    /// OTLP/gRPC collector, e.g. `http://127.0.0.1:4317`. Spans are recorded
    /// and exported only when set; without it tracing costs nothing.
    pub otlp_endpoint: Option<String>,
    /// The share of traces kept, from 0.0 to 1.0, decided once per trace
    /// where it starts (a PlaceOrder call): an order is traced whole or not
    /// at all.
    pub sample_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            log_filter: "info,rdkafka=warn".to_owned(),
            log_format: "text".to_owned(),
            otlp_endpoint: None,
            sample_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return Err(format!(
                "telemetry.log_format must be text or json, got {:?}",
                self.log_format
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(format!(
                "telemetry.sample_ratio must be between 0.0 and 1.0, got {}",
                self.sample_ratio
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's test jail returns its own error type
mod tests {
    use super::*;

    #[derive(Default, Serialize, Deserialize)]
    #[serde(default)]
    struct Sample {
        redis: RedisConfig,
        regions: RegionsConfig,
    }

    #[test]
    fn web_origins_are_exact_origins() {
        let with = |origins: &[&str]| ServerConfig {
            web_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..ServerConfig::local(0, 0)
        };
        let fine = with(&["https://shop.example", "http://127.0.0.1:8080"]);
        assert_eq!(fine.validate(), Ok(()));
        assert_eq!(fine.allowed_web_origins().map(|o| o.len()), Ok(2));
        for bad in [
            "*",
            "https://*.example",
            "shop.example",
            "ftp://shop.example",
            "https://shop.example/",
            "https://shop.example/path",
            "https://",
        ] {
            let refused = with(&[bad]).validate().expect_err(bad);
            assert!(refused.starts_with("server.web_origins: "), "{refused}");
            assert!(refused.contains(bad), "{refused}");
        }
    }

    #[test]
    fn web_origins_come_from_one_comma_separated_variable() {
        #[derive(Serialize, Deserialize)]
        struct Served {
            server: ServerConfig,
        }
        impl Default for Served {
            fn default() -> Self {
                Served {
                    server: ServerConfig::local(0, 0),
                }
            }
        }
        figment::Jail::expect_with(|jail| {
            let unset: Served = load(None).expect("loads");
            assert!(unset.server.web_origins.is_empty());
            jail.set_env(
                "HARVEST_SERVER__WEB_ORIGINS",
                "https://shop.example, http://127.0.0.1:8080",
            );
            let served: Served = load(None).expect("loads");
            assert_eq!(
                served.server.web_origins,
                ["https://shop.example", "http://127.0.0.1:8080"]
            );
            Ok(())
        });
    }

    #[test]
    fn a_retention_of_nothing_is_refused() {
        let config = RedisConfig {
            retention_secs: 0,
            ..RedisConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err("redis.retention_secs must be positive".to_owned())
        );
        assert_eq!(RedisConfig::default().validate(), Ok(()));
    }

    #[test]
    fn a_sample_ratio_outside_zero_to_one_is_refused() {
        for ratio in [0.0, 0.25, 1.0] {
            let config = TelemetryConfig {
                sample_ratio: ratio,
                ..TelemetryConfig::default()
            };
            assert_eq!(config.validate(), Ok(()), "{ratio}");
        }
        for ratio in [-0.1, 1.5, f64::NAN] {
            let config = TelemetryConfig {
                sample_ratio: ratio,
                ..TelemetryConfig::default()
            };
            let refused = config.validate().expect_err("refused");
            assert!(refused.contains("telemetry.sample_ratio"), "{refused}");
        }
    }

    #[test]
    fn several_seed_nodes_need_cluster_mode() {
        let mut config = RedisConfig {
            url: Secret::new("redis://10.0.0.1:7000, redis://10.0.0.2:7000".to_owned()),
            ..RedisConfig::default()
        };
        assert_eq!(
            config.validate(),
            Err("redis.url lists several nodes, which only redis.cluster allows".to_owned())
        );
        config.cluster = true;
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(
            config.seeds(),
            ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]
        );
        config.url = Secret::new("redis://10.0.0.1:7000,10.0.0.2:7000".to_owned());
        assert_eq!(
            config.validate(),
            Err("redis.url must start with redis:// or rediss://".to_owned())
        );
    }

    #[test]
    fn cluster_mode_comes_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HARVEST_REDIS__CLUSTER", "true");
            jail.set_env(
                "HARVEST_REDIS__URL",
                "redis://10.0.0.1:7000,redis://10.0.0.2:7000",
            );
            let sample: Sample = load(None).expect("loads");
            assert!(sample.redis.cluster);
            assert_eq!(sample.redis.seeds().len(), 2);
            Ok(())
        });
    }

    #[test]
    fn secrets_are_hidden_from_debug() {
        let config = RedisConfig {
            url: Secret::new("redis://:hunter2@db:6379".to_owned()),
            ..RedisConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn environment_overrides_defaults_and_accepts_comma_lists() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("HARVEST_REDIS__KEY_PREFIX", "t1:");
            jail.set_env("HARVEST_REGIONS__SERVE", "east, north");
            jail.set_env("HARVEST_CONFIG", "not a setting");
            let sample: Sample = load(None).expect("loads");
            assert_eq!(sample.redis.key_prefix, "t1:");
            let served = sample.regions.served().expect("known regions");
            assert_eq!(served.to_string(), "east,north");
            Ok(())
        });
    }

    #[test]
    fn a_file_sits_between_defaults_and_environment() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "harvest.toml",
                "[redis]\nkey_prefix = \"file:\"\n[regions]\nall = [\"east\", \"west\"]\n",
            )?;
            let sample: Sample = load(Some(Path::new("harvest.toml"))).expect("loads");
            assert_eq!(sample.redis.key_prefix, "file:");
            assert_eq!(sample.regions.all.to_string(), "east,west");
            jail.set_env("HARVEST_REDIS__KEY_PREFIX", "env:");
            let sample: Sample = load(Some(Path::new("harvest.toml"))).expect("loads");
            assert_eq!(sample.redis.key_prefix, "env:");
            Ok(())
        });
    }

    #[test]
    fn unknown_served_region_is_an_error() {
        let regions = RegionsConfig {
            all: Regions::default(),
            serve: vec![Region::parse("atlantis").expect("well-formed")],
        };
        assert!(regions.served().is_err());
        assert!(load::<Sample>(Some(Path::new("/nonexistent/harvest.toml"))).is_err());
    }
}
