//! Starting the servers Harvest needs, on free loopback ports: `redis-server`
//! here and Apache Kafka in [`crate::kafka`]. Each runs as a child process
//! that is killed when its handle is dropped.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
pub use rustix::process::Signal;

/// Sends process `pid` `signal` (as `kill -SIG pid` would, without a
/// `kill` process); false if there is no such process.
pub fn signal_process(pid: u32, signal: Signal) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|pid| rustix::process::kill_process(pid, signal).is_ok())
}

/// Sends every process of the group led by `leader` `signal` (as
/// `kill -SIG -- -leader` would); false if there is no such group.
pub fn signal_group(leader: u32, signal: Signal) -> bool {
    rustix::process::Pid::from_raw(leader as i32)
        .is_some_and(|pid| rustix::process::kill_process_group(pid, signal).is_ok())
}

pub use crate::kafka::{
    BrokerOptions, BrokerServer, KafkaInstall, KafkaNode, SecureListener, answers, kafka_libs_dir,
};

/// A free loopback port. The OS may hand it out again before it is bound, so
/// servers started on it are retried on a new port if they fail to start.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A child process that is killed when dropped.
pub struct ChildGuard {
    pub name: String,
    child: Child,
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            name: name.into(),
            child,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Why the process ended, if it has.
    pub fn exited(&mut self) -> Option<String> {
        self.exit_status()
            .map(|status| format!("{} exited: {status}", self.name))
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends the process `signal`; false if it is gone.
    pub fn signal(&self, signal: Signal) -> bool {
        signal_process(self.child.id(), signal)
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` before
    /// killing it.
    pub fn terminate(&mut self, grace: Duration) {
        self.signal(Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a server writes its output: nowhere, or a log file.
fn output(log: Option<&Path>) -> anyhow::Result<(Stdio, Stdio)> {
    match log {
        None => Ok((Stdio::null(), Stdio::null())),
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("creating {}", path.display()))?;
            Ok((Stdio::from(file.try_clone()?), Stdio::from(file)))
        }
    }
}

/// A Redis server.
pub struct RedisServer {
    port: u16,
    binary: PathBuf,
    options: RedisOptions,
    guard: ChildGuard,
}

/// When Redis writes its append-only file to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fsync {
    /// Before answering each write: nothing acknowledged is lost when the
    /// process or the machine dies.
    #[default]
    Always,
    /// Once a second: up to a second of acknowledged writes is lost when the
    /// machine dies (not when only the process does).
    EverySec,
}

impl Fsync {
    pub fn as_str(self) -> &'static str {
        match self {
            Fsync::Always => "always",
            Fsync::EverySec => "everysec",
        }
    }
}

/// How to run Redis.
#[derive(Clone, Debug, Default)]
pub struct RedisOptions {
    /// Keep data in an append-only file in this directory; in memory only
    /// when unset.
    pub data_dir: Option<PathBuf>,
    /// When the append-only file is written to disk.
    pub fsync: Fsync,
    pub log: Option<PathBuf>,
    /// Run as a node of a Redis Cluster (serving no slot until it is given
    /// some), its cluster state kept in this directory.
    pub cluster_dir: Option<PathBuf>,
}

impl RedisServer {
    pub fn start(options: &RedisOptions) -> anyhow::Result<Self> {
        let binary = find_binary("HARVEST_REDIS_SERVER", "redis-server")?;
        retry_on_port_clash(|| {
            let port = free_port()?;
            let guard = Self::spawn(&binary, options, port, false)?;
            Ok(RedisServer {
                port,
                binary: binary.clone(),
                options: options.clone(),
                guard,
            })
        })
    }

    fn spawn(
        binary: &Path,
        options: &RedisOptions,
        port: u16,
        append_log: bool,
    ) -> anyhow::Result<ChildGuard> {
        let mut command = Command::new(binary);
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--protected-mode", "yes", "--save", ""])
            // As deploy/redis/redis.conf: records kept compact.
            .args(["--hash-max-listpack-value", "4096"]);
        match &options.data_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                command.arg("--dir").arg(dir).args([
                    "--appendonly",
                    "yes",
                    "--appendfsync",
                    options.fsync.as_str(),
                ]);
            }
            None => {
                command.args(["--appendonly", "no"]);
            }
        }
        if let Some(dir) = &options.cluster_dir {
            std::fs::create_dir_all(dir)?;
            // Named, not port + 10000: that may be past the last port.
            let bus_port = free_port()?;
            command
                .args(["--cluster-enabled", "yes", "--cluster-port"])
                .arg(bus_port.to_string())
                .arg("--cluster-config-file")
                .arg(dir.join(format!("nodes-{port}.conf")));
        }
        let (stdout, stderr) = match (&options.log, append_log) {
            (Some(path), true) => {
                let file = std::fs::OpenOptions::new()
                    .append(true)
                    .create(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                (Stdio::from(file.try_clone()?), Stdio::from(file))
            }
            (log, _) => output(log.as_deref())?,
        };
        let child = command
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut guard = ChildGuard::new("redis-server", child);
        wait_until(
            Duration::from_secs(30),
            "redis-server",
            || guard.exited(),
            || redis_answers(port),
        )?;
        Ok(guard)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    pub fn stop(mut self) {
        self.guard.terminate(Duration::from_secs(5));
    }

    /// Kills the server at once (SIGKILL), as a crash would; its data stays
    /// for [`RedisServer::restart`].
    pub fn crash(&mut self) {
        self.guard.kill();
    }

    /// Starts the server again on its port, loading its append-only file
    /// (when it keeps one), and waits until it answers.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.guard.kill();
        self.guard = Self::spawn(&self.binary, &self.options, self.port, true)?;
        Ok(())
    }

    /// Freezes the process (SIGSTOP): connections stay open and nothing is
    /// answered, as on a machine that stalls.
    pub fn pause(&self) {
        self.guard.signal(Signal::STOP);
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&self) {
        self.guard.signal(Signal::CONT);
    }
}

/// A Redis Cluster of three primaries and no replicas on free loopback
/// ports, every slot assigned by `redis-cli --cluster create`, in memory;
/// stopped, and its state directory removed, when dropped. `redis-cli` is
/// found on `PATH`, or where `HARVEST_REDIS_CLI` says.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        self.nodes.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl RedisCluster {
    /// How many primaries the cluster has.
    pub const PRIMARIES: usize = 3;

    /// Starts the nodes, joins them and waits until every node says the
    /// cluster is up.
    pub fn start() -> anyhow::Result<Self> {
        let cli = find_binary("HARVEST_REDIS_CLI", "redis-cli")?;
        let dir = std::env::temp_dir().join(format!(
            "harvest-redis-cluster-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let mut cluster = RedisCluster {
            nodes: Vec::with_capacity(Self::PRIMARIES),
            dir,
        };
        let options = RedisOptions {
            cluster_dir: Some(cluster.dir.clone()),
            ..RedisOptions::default()
        };
        for _ in 0..Self::PRIMARIES {
            cluster.nodes.push(RedisServer::start(&options)?);
        }
        let created = Command::new(&cli)
            .arg("--cluster")
            .arg("create")
            .args(cluster.addresses())
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", cli.display()))?;
        if !created.status.success() {
            bail!(
                "redis-cli --cluster create failed: {}",
                String::from_utf8_lossy(&created.stdout)
            );
        }
        let ports: Vec<u16> = cluster.nodes.iter().map(RedisServer::port).collect();
        wait_until(
            Duration::from_secs(30),
            "the Redis Cluster",
            || None,
            || ports.iter().all(|port| cluster_is_up(*port)),
        )?;
        Ok(cluster)
    }

    /// `host:port` of every node.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect()
    }

    /// Every node as a seed, `redis://…` separated by commas.
    pub fn url(&self) -> String {
        let urls: Vec<String> = self.nodes.iter().map(RedisServer::url).collect();
        urls.join(",")
    }

    /// Freezes every node (SIGSTOP), as when their machines stall.
    pub fn pause(&self) {
        self.nodes.iter().for_each(RedisServer::pause);
    }

    /// Lets paused nodes go on (SIGCONT).
    pub fn resume(&self) {
        self.nodes.iter().for_each(RedisServer::resume);
    }
}

/// Whether the node on `port` serves a cluster whose every slot is served.
fn cluster_is_up(port: u16) -> bool {
    let Some(mut connection) = quick_connection(port) else {
        return false;
    };
    redis::cmd("CLUSTER")
        .arg("INFO")
        .query::<String>(&mut connection)
        .is_ok_and(|info| info.lines().any(|line| line.trim() == "cluster_state:ok"))
}

fn redis_answers(port: u16) -> bool {
    quick_connection(port)
        .is_some_and(|mut connection| redis::cmd("PING").query::<String>(&mut connection).is_ok())
}

/// A connection to the server on `port`, if it takes one at once.
fn quick_connection(port: u16) -> Option<redis::Connection> {
    redis::Client::open(format!("redis://127.0.0.1:{port}"))
        .ok()?
        .get_connection_with_timeout(Duration::from_millis(200))
        .ok()
}

/// `variable` when set, else `name` on `PATH`.
pub fn find_binary(variable: &str, name: &str) -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os(variable) {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{name} is not on PATH (run `make deps`, or set {variable})"))
}

/// Tries `start` up to three times, each on new ports (`start` picks them
/// with [`free_port`]): a port is free when chosen, but another process may
/// take it before the server binds it. The last error if all three fail.
pub fn retry_on_port_clash<T>(mut start: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let mut last_error = None;
    for _ in 0..3 {
        match start() {
            Ok(server) => return Ok(server),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("server did not start")))
}

/// Polls `ready` until it holds, failing early if the process exits.
/// `exited` says why the process ended, if it has; `name` names it in the
/// error when `ready` never holds.
pub fn wait_until(
    timeout: Duration,
    name: &str,
    mut exited: impl FnMut() -> Option<String>,
    mut ready: impl FnMut() -> bool,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(exit) = exited() {
            bail!(exit);
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("{name} did not answer within {timeout:?}")
}
