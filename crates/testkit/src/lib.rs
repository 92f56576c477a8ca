//! Test support: a private `redis-server` and a private Kafka-protocol broker
//! (`nisshi`) per test, on free loopback ports, stopped when dropped; and
//! unique names so tests can run in parallel.
//!
//! Binaries are found on `PATH` (or in `~/.cargo/bin` for the broker); set
//! `HARVEST_REDIS_SERVER` or `HARVEST_NISSHI` to use others.

pub mod kafka;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A name no other test uses, e.g. `t3f9a1c2`.
pub fn unique_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("t{}", &id[..12])
}

/// A free loopback port. The OS may hand it out again before it is bound, so
/// servers started on it are retried on a new port if they fail to start.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process that is killed when dropped.
struct Guard {
    name: &'static str,
    child: Child,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Guard {
    fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(format!("{} exited: {status}", self.name)),
            _ => None,
        }
    }
}

/// A private Redis server.
pub struct Redis {
    port: u16,
    _guard: Guard,
}

impl Redis {
    pub fn start() -> anyhow::Result<Self> {
        let binary = binary("HARVEST_REDIS_SERVER", "redis-server")?;
        retry_on_port_clash(|port| {
            let child = Command::new(&binary)
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args([
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--protected-mode",
                    "yes",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut guard = Guard {
                name: "redis-server",
                child,
            };
            wait_until(Duration::from_secs(10), &mut guard, || redis_answers(port))?;
            Ok(Redis {
                port,
                _guard: guard,
            })
        })
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

fn redis_answers(port: u16) -> bool {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return false;
    };
    let Ok(mut connection) = client.get_connection_with_timeout(Duration::from_millis(200)) else {
        return false;
    };
    redis::cmd("PING").query::<String>(&mut connection).is_ok()
}

/// A private Kafka-protocol broker with in-memory storage.
pub struct Broker {
    port: u16,
    _guard: Guard,
}

impl Broker {
    pub fn start() -> anyhow::Result<Self> {
        let binary = nisshi_binary()?;
        retry_on_port_clash(|port| {
            let url = format!("tcp://127.0.0.1:{port}");
            let child = Command::new(&binary)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "memory://nisshi/"])
                .env("RUST_LOG", "error")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {}", binary.display()))?;
            let mut guard = Guard {
                name: "nisshi",
                child,
            };
            wait_until(Duration::from_secs(20), &mut guard, || {
                TcpStream::connect_timeout(
                    &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(200),
                )
                .is_ok()
            })?;
            Ok(Broker {
                port,
                _guard: guard,
            })
        })
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// The `nisshi` binary: `HARVEST_NISSHI`, then `PATH`, then `~/.cargo/bin`.
pub fn nisshi_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = binary("HARVEST_NISSHI", "nisshi") {
        return Ok(path);
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    if let Some(path) = home.map(|home| home.join("bin/nisshi"))
        && path.is_file()
    {
        return Ok(path);
    }
    bail!("the nisshi broker is not installed: run `make deps` (or set HARVEST_NISSHI)")
}

fn binary(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} is not on PATH (set {variable} to its path)"))
}

fn retry_on_port_clash<T>(mut start: impl FnMut(u16) -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut last_error = None;
    for _ in 0..3 {
        match start(free_port()?) {
            Ok(server) => return Ok(server),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("server did not start")))
}

fn wait_until(
    timeout: Duration,
    guard: &mut Guard,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(exit) = guard.exited() {
            bail!(exit);
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{} did not answer within {timeout:?}", guard.name)
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
