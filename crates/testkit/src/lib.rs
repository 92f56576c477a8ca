//! Test support: a private `redis-server` and a private Kafka-protocol broker
//! (`nisshi`) per test, on free loopback ports, stopped when dropped; unique
//! names so tests run in parallel; and a probe that reads topics the way an
//! outside consumer would.
//!
//! Binaries are found on `PATH` (or in `~/.cargo/bin` for the broker); set
//! `HARVEST_REDIS_SERVER` or `HARVEST_NISSHI` to use others.

pub mod kafka;
mod settings;

pub use settings::TestSettings;

use std::time::Duration;

use harvest_stack::servers::{BrokerOptions, BrokerServer, RedisOptions, RedisServer};

/// A name no other test uses, e.g. `t3f9a1c2d4e5b`.
pub fn unique_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// A private, in-memory Redis server.
pub struct Redis(RedisServer);

impl Redis {
    pub fn start() -> anyhow::Result<Self> {
        RedisServer::start(&RedisOptions::default()).map(Redis)
    }

    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// A private, in-memory Kafka-protocol broker.
pub struct Broker(BrokerServer);

impl Broker {
    pub fn start() -> anyhow::Result<Self> {
        BrokerServer::start(&BrokerOptions::default()).map(Broker)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.0.bootstrap()
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
