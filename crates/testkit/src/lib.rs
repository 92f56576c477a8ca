//! Test support: a private `redis-server` per test and one Apache Kafka broker
//! per test run (see [`broker`]), on free loopback ports; unique names so
//! tests run in parallel on them; and a probe that reads topics the way an
//! outside consumer would.
//!
//! `redis-server` and `java` are found on `PATH`, the broker's classpath where
//! `make deps` puts it; `HARVEST_REDIS_SERVER`, `HARVEST_JAVA` and
//! `HARVEST_KAFKA_LIBS` name others.

pub mod broker;
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

    /// Freezes the server (SIGSTOP): connections stay open and nothing is
    /// answered, as when its machine stalls.
    pub fn pause(&self) {
        self.0.pause();
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.0.resume();
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
        let server = BrokerServer::start(&BrokerOptions::default())?;
        Ok(Broker {
            bootstrap: server.bootstrap(),
            private: Some(server),
        })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
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
