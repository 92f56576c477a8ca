//! Test support: a private `redis-server` per test and one Apache Kafka broker
//! per test run (see [`broker`]), on free loopback ports; unique names so
//! tests run in parallel on them; and a probe that reads topics the way an
//! outside consumer would.
//!
//! `redis-server`, `redis-cli` and `java` are found on `PATH`, the broker's
//! classpath where `make deps` puts it; `HARVEST_REDIS_SERVER`,
//! `HARVEST_REDIS_CLI`, `HARVEST_JAVA` and `HARVEST_KAFKA_LIBS` name others.
//!
//! With `HARVEST_TEST_REDIS=cluster`, every test's Redis is a Redis Cluster
//! of three primaries instead of one server, and the settings tests get turn
//! cluster mode on: the same tests then show that every script, transaction
//! and pipeline of the stores works across a cluster's slots.

pub mod broker;
pub mod kafka;
mod settings;

pub use settings::TestSettings;

use std::time::Duration;

use anyhow::bail;
use harvest_kit::{RedisConfig, Secret};
pub use harvest_stack::servers::SecureListener;
use harvest_stack::servers::{
    BrokerOptions, BrokerServer, RedisCluster, RedisOptions, RedisServer,
};
pub use harvest_stack::tls::LocalTls;

/// `cluster` to give every test a Redis Cluster, `single` (the default) for
/// one server.
pub const TEST_REDIS: &str = "HARVEST_TEST_REDIS";

/// A name no other test uses, e.g. `t3f9a1c2d4e5b`.
pub fn unique_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// A token issuer of the test's own, its key in a directory no other test
/// uses: start a service with its `config()` to turn authentication on, and
/// call it with its tokens.
pub fn issuer() -> anyhow::Result<harvest_kit::issuer::Issuer> {
    let dir = std::env::temp_dir().join(unique_name());
    Ok(harvest_kit::issuer::Issuer::in_dir(
        &dir,
        "https://id.harvest.test",
    )?)
}

/// A private, in-memory Redis: one server, or a Redis Cluster when
/// [`TEST_REDIS`] says `cluster`.
pub struct Redis(Deployment);

enum Deployment {
    Single(RedisServer),
    Cluster(RedisCluster),
}

impl Redis {
    /// The kind of Redis [`TEST_REDIS`] asks for.
    pub fn start() -> anyhow::Result<Self> {
        match std::env::var(TEST_REDIS).as_deref() {
            Err(_) | Ok("" | "single") => Self::single(),
            Ok("cluster") => Self::cluster(),
            Ok(other) => bail!("{TEST_REDIS} is `single` or `cluster`, not {other:?}"),
        }
    }

    /// One server, whatever [`TEST_REDIS`] says.
    pub fn single() -> anyhow::Result<Self> {
        RedisServer::start(&RedisOptions::default()).map(|server| Redis(Deployment::Single(server)))
    }

    /// A cluster of three primaries, whatever [`TEST_REDIS`] says.
    pub fn cluster() -> anyhow::Result<Self> {
        RedisCluster::start().map(|cluster| Redis(Deployment::Cluster(cluster)))
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self.0, Deployment::Cluster(_))
    }

    /// The server's URL, or every cluster node's separated by commas.
    pub fn url(&self) -> String {
        match &self.0 {
            Deployment::Single(server) => server.url(),
            Deployment::Cluster(cluster) => cluster.url(),
        }
    }

    /// Settings that reach this Redis, keys under `key_prefix`.
    pub fn config(&self, key_prefix: &str) -> RedisConfig {
        RedisConfig {
            url: Secret::new(self.url()),
            cluster: self.is_cluster(),
            key_prefix: key_prefix.to_owned(),
            ..RedisConfig::default()
        }
    }

    /// A connection for looking under a store: in a cluster, each command
    /// goes to the node of its key.
    pub async fn connect(&self) -> anyhow::Result<harvest_kit::store::Redis> {
        Ok(harvest_kit::store::connect(&self.config("")).await?)
    }

    /// Freezes the server, or every node (SIGSTOP): connections stay open and
    /// nothing is answered, as when its machine stalls.
    pub fn pause(&self) {
        match &self.0 {
            Deployment::Single(server) => server.pause(),
            Deployment::Cluster(cluster) => cluster.pause(),
        }
    }

    /// Lets a paused server or cluster go on (SIGCONT).
    pub fn resume(&self) {
        match &self.0 {
            Deployment::Single(server) => server.resume(),
            Deployment::Cluster(cluster) => cluster.resume(),
        }
    }
}

/// A Kafka broker for a test: the run's shared one, or a private one.
pub struct Broker {
    bootstrap: String,
    private: Option<BrokerServer>,
}

impl Broker {
    /// The broker every test of the run shares. Keep to your own topic and
    /// group prefix ([`unique_name`]) on it, and never stop it.
    pub fn shared() -> anyhow::Result<Self> {
        Ok(Broker {
            bootstrap: broker::shared_bootstrap()?,
            private: None,
        })
    }

    /// A broker of the test's own, stopped when dropped: for tests that stop
    /// or kill it. It costs a JVM start.
    pub fn private() -> anyhow::Result<Self> {
        Self::start_private(&BrokerOptions::default())
    }

    /// A private broker with a second client listener that speaks only
    /// TLS and takes only SCRAM users ([`Broker::secure_bootstrap`]), and a
    /// third for mutual TLS when `listener` names an authority for clients
    /// ([`Broker::mutual_tls_bootstrap`]).
    pub fn secure(listener: SecureListener) -> anyhow::Result<Self> {
        Self::start_private(&BrokerOptions {
            secure: Some(listener),
            ..BrokerOptions::default()
        })
    }

    fn start_private(options: &BrokerOptions) -> anyhow::Result<Self> {
        let server = BrokerServer::start(options)?;
        Ok(Broker {
            bootstrap: server.bootstrap(),
            private: Some(server),
        })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// `host:port` of a [`Broker::secure`] broker's TLS and SCRAM listener.
    pub fn secure_bootstrap(&self) -> Option<String> {
        self.private.as_ref()?.secure_bootstrap()
    }

    /// `host:port` of a [`Broker::secure`] broker's mutual-TLS listener,
    /// when its [`SecureListener`] names an authority for clients.
    pub fn mutual_tls_bootstrap(&self) -> Option<String> {
        self.private.as_ref()?.mutual_tls_bootstrap()
    }

    /// Kills a private broker at once, as a crash would.
    pub fn kill(&mut self) {
        if let Some(server) = self.private.take() {
            server.kill();
        }
    }

    /// Kills a private broker's process (SIGKILL), keeping its data and
    /// address for [`Broker::restart`].
    pub fn crash(&mut self) {
        if let Some(server) = self.private.as_mut() {
            server.crash();
        }
    }

    /// Starts a crashed private broker again at the same address, on the
    /// same data, and waits until it answers. Runs the JVM start off the
    /// async workers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        let Some(mut server) = self.private.take() else {
            anyhow::bail!("only a private broker can be restarted");
        };
        let (server, restarted) = tokio::task::spawn_blocking(move || {
            let restarted = server.restart();
            (server, restarted)
        })
        .await?;
        self.private = Some(server);
        restarted
    }
}

/// Polls `check` until it returns `Some` or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
