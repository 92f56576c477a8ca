//! Apache Kafka on this machine: a single KRaft node (broker and controller in
//! one JVM) on free loopback ports.
//!
//! The broker's classpath comes from Maven Central: `make deps` copies
//! `org.apache.kafka:kafka_2.13` and a logging backend (listed in
//! `deploy/kafka/pom.xml`) into a cache folder, `~/.cache/harvest/kafka/libs`
//! unless `HARVEST_KAFKA_LIBS` names another. Java comes from `HARVEST_JAVA`,
//! `JAVA_HOME` or `PATH`.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::servers::{ChildGuard, find_binary, free_port, retry_on_port_clash, wait_until};

/// The heap of a local broker, in MiB: enough for the demo, the tests and the
/// benchmark, small beside everything else on a 2-core machine.
const HEAP_MB: u32 = 512;
/// How long a starting broker may take to answer metadata requests.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a stopping broker may take for its controlled shutdown.
const STOP_GRACE: Duration = Duration::from_secs(20);

/// Where the broker's jars are, and the Java that runs them.
#[derive(Clone, Debug)]
pub struct KafkaInstall {
    pub java: PathBuf,
    pub libs: PathBuf,
}

impl KafkaInstall {
    /// Finds Java and the broker's classpath, or says how to install them.
    pub fn find() -> anyhow::Result<KafkaInstall> {
        let libs = kafka_libs_dir()?;
        let has_broker = std::fs::read_dir(&libs)
            .map(|entries| {
                entries.flatten().any(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("kafka_2.13-") && name.ends_with(".jar")
                })
            })
            .unwrap_or(false);
        if !has_broker {
            bail!(
                "Apache Kafka is not installed in {}: run `make deps` (or set HARVEST_KAFKA_LIBS)",
                libs.display()
            );
        }
        Ok(KafkaInstall {
            java: java_binary()?,
            libs,
        })
    }

    /// A `java` command with the broker's classpath.
    fn java(&self, main_class: &str) -> Command {
        let mut command = Command::new(&self.java);
        // The JVM expands a classpath entry ending in `*` to every jar there.
        command
            .arg("-cp")
            .arg(self.libs.join("*"))
            .arg("-Djava.awt.headless=true");
        command.arg(main_class);
        command
    }
}

/// `HARVEST_KAFKA_LIBS`, else `$XDG_CACHE_HOME/harvest/kafka/libs`, else
/// `~/.cache/harvest/kafka/libs`.
pub fn kafka_libs_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HARVEST_KAFKA_LIBS") {
        return Ok(PathBuf::from(dir));
    }
    Ok(harvest_cache_dir()
        .context("set HARVEST_KAFKA_LIBS")?
        .join("kafka/libs"))
}

/// Where `make deps` puts what it fetches: `$XDG_CACHE_HOME/harvest`, else
/// `~/.cache/harvest`.
pub(crate) fn harvest_cache_dir() -> anyhow::Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(cache.join("harvest"))
}

/// `HARVEST_JAVA`, else `$JAVA_HOME/bin/java`, else `java` on `PATH`.
pub(crate) fn java_binary() -> anyhow::Result<PathBuf> {
    if std::env::var_os("HARVEST_JAVA").is_none()
        && let Some(home) = std::env::var_os("JAVA_HOME")
    {
        let java = PathBuf::from(home).join("bin/java");
        if java.is_file() {
            return Ok(java);
        }
    }
    find_binary("HARVEST_JAVA", "java")
}

/// A second client listener, as production brokers have: TLS only, and
/// only for SCRAM users (`SASL_SSL`).
#[derive(Clone, Debug)]
pub struct SecureListener {
    /// The broker's certificate (PEM), for 127.0.0.1.
    pub cert_file: PathBuf,
    /// Its private key (PEM, PKCS#8, not encrypted).
    pub key_file: PathBuf,
    /// A user the broker knows, with SCRAM-SHA-256 and SCRAM-SHA-512
    /// credentials, and its password (letters and digits).
    pub user: String,
    pub password: String,
    /// When set, a third client listener (`SSL`), TLS only, that takes
    /// only clients presenting a certificate this authority (PEM) signed:
    /// mutual TLS, with no user.
    pub client_ca_file: Option<PathBuf>,
}

/// A KRaft node laid out on disk, formatted and ready to start: its settings,
/// its log directories and its ports (clients, controller, and the secure
/// listener's when it has one).
#[derive(Clone, Debug)]
pub struct KafkaNode {
    install: KafkaInstall,
    dir: PathBuf,
    port: u16,
    controller_port: u16,
    secure: Option<(u16, SecureListener)>,
    /// The mutual-TLS listener's port, when the secure listener asks for
    /// one.
    mutual_port: Option<u16>,
}

impl KafkaNode {
    /// Writes the settings of a new node into `dir` (created, and emptied
    /// first) on two free ports, and formats its storage.
    pub fn prepare(install: KafkaInstall, dir: &Path) -> anyhow::Result<KafkaNode> {
        Self::prepare_with(install, dir, None)
    }

    /// As [`KafkaNode::prepare`], with `secure` as a second client listener
    /// on a free port of its own.
    pub fn prepare_with(
        install: KafkaInstall,
        dir: &Path,
        secure: Option<&SecureListener>,
    ) -> anyhow::Result<KafkaNode> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let node = KafkaNode {
            install,
            dir: dir.to_path_buf(),
            port: free_port()?,
            controller_port: free_port()?,
            secure: match secure {
                Some(listener) => Some((free_port()?, listener.clone())),
                None => None,
            },
            mutual_port: match secure.and_then(|listener| listener.client_ca_file.as_ref()) {
                Some(_) => Some(free_port()?),
                None => None,
            },
        };
        if let Some((_, listener)) = &node.secure {
            // The broker reads its key and certificate from one PEM file.
            let read = |file: &Path| {
                std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
            };
            let keystore = format!(
                "{}{}",
                read(&listener.key_file)?,
                read(&listener.cert_file)?
            );
            std::fs::write(node.keystore_file(), keystore)
                .context("writing the secure listener's keystore")?;
        }
        std::fs::write(node.properties_file(), node.properties())
            .context("writing the broker's settings")?;
        std::fs::write(node.dir.join("log4j2.properties"), LOG4J2)
            .context("writing the broker's log settings")?;
        node.format()?;
        Ok(node)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `host:port` of the secure listener, when the node has one.
    pub fn secure_bootstrap(&self) -> Option<String> {
        self.secure
            .as_ref()
            .map(|(port, _)| format!("127.0.0.1:{port}"))
    }

    /// `host:port` of the mutual-TLS listener, when the node has one.
    pub fn mutual_tls_bootstrap(&self) -> Option<String> {
        self.mutual_port.map(|port| format!("127.0.0.1:{port}"))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn properties_file(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn keystore_file(&self) -> PathBuf {
        self.dir.join("secure-listener.pem")
    }

    fn properties(&self) -> String {
        let mut settings = String::new();
        let mut set = |key: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(settings, "{key}={value}");
        };
        let (port, controller) = (self.port, self.controller_port);
        set("process.roles", &"broker,controller");
        set("node.id", &1);
        set(
            "controller.quorum.bootstrap.servers",
            &format!("127.0.0.1:{controller}"),
        );
        let mut secure = self
            .secure
            .as_ref()
            .map(|(port, _)| format!(",SASL_SSL://127.0.0.1:{port}"))
            .unwrap_or_default();
        if let Some(port) = self.mutual_port {
            let _ = write!(secure, ",SSL://127.0.0.1:{port}");
        }
        set(
            "listeners",
            &format!("PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}{secure}"),
        );
        // Clients connect to what the broker advertises: a loopback address,
        // never a name that might resolve elsewhere.
        set(
            "advertised.listeners",
            &format!("PLAINTEXT://127.0.0.1:{port}{secure}"),
        );
        set("controller.listener.names", &"CONTROLLER");
        set("inter.broker.listener.name", &"PLAINTEXT");
        let mut protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT".to_owned();
        if self.secure.is_some() {
            protocols.push_str(",SASL_SSL:SASL_SSL");
        }
        if self.mutual_port.is_some() {
            protocols.push_str(",SSL:SSL");
        }
        set("listener.security.protocol.map", &protocols);
        if let Some((_, listener)) = &self.secure
            && let (Some(_), Some(client_ca)) = (self.mutual_port, &listener.client_ca_file)
        {
            set("listener.name.ssl.ssl.keystore.type", &"PEM");
            set(
                "listener.name.ssl.ssl.keystore.location",
                &self.keystore_file().display(),
            );
            set("listener.name.ssl.ssl.truststore.type", &"PEM");
            set(
                "listener.name.ssl.ssl.truststore.location",
                &client_ca.display(),
            );
            set("listener.name.ssl.ssl.client.auth", &"required");
        }
        if self.secure.is_some() {
            set("sasl.enabled.mechanisms", &"SCRAM-SHA-256,SCRAM-SHA-512");
            for mechanism in ["scram-sha-256", "scram-sha-512"] {
                set(
                    &format!("listener.name.sasl_ssl.{mechanism}.sasl.jaas.config"),
                    &"org.apache.kafka.common.security.scram.ScramLoginModule required;",
                );
            }
            set("listener.name.sasl_ssl.ssl.keystore.type", &"PEM");
            set(
                "listener.name.sasl_ssl.ssl.keystore.location",
                &self.keystore_file().display(),
            );
        }
        set("log.dirs", &self.dir.join("logs").display());
        // One node: every internal topic has one replica.
        set("offsets.topic.replication.factor", &1);
        set("transaction.state.log.replication.factor", &1);
        set("transaction.state.log.min.isr", &1);
        set("share.coordinator.state.topic.replication.factor", &1);
        set("share.coordinator.state.topic.min.isr", &1);
        set("min.insync.replicas", &1);
        // Fewer group-coordinator partitions than the default 50: the first
        // consumer group forms sooner, and one broker coordinates them all.
        set("offsets.topic.num.partitions", &8);
        // A group forms as soon as its first member joins.
        set("group.initial.rebalance.delay.ms", &0);
        // Harvest creates its topics with their settings; a typo must not
        // create another.
        set("auto.create.topics.enable", &false);
        set("num.network.threads", &2);
        set("num.io.threads", &4);
        settings
    }

    /// Formats the node's storage as a one-node cluster of its own.
    fn format(&self) -> anyhow::Result<()> {
        let log = self.dir.join("format.log");
        let file = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let status = self
            .install
            .java("kafka.tools.StorageTool")
            .args(["format", "--standalone", "--cluster-id", &new_cluster_id()])
            .args(self.secure.iter().flat_map(|(_, listener)| {
                ["SCRAM-SHA-256", "SCRAM-SHA-512"]
                    .into_iter()
                    .flat_map(|mechanism| {
                        [
                            "--add-scram".to_owned(),
                            format!(
                                "{mechanism}=[name={},password={}]",
                                listener.user, listener.password
                            ),
                        ]
                    })
            }))
            .arg("--config")
            .arg(self.properties_file())
            .stdin(Stdio::null())
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .status()
            .with_context(|| format!("running {}", self.install.java.display()))?;
        if !status.success() {
            bail!(
                "formatting the broker's storage failed ({status}); see {}",
                log.display()
            );
        }
        Ok(())
    }

    /// The command that runs the node in the foreground until SIGTERM.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.install.java);
        command
            .arg(format!("-Xms{}m", HEAP_MB / 4))
            .arg(format!("-Xmx{HEAP_MB}m"))
            // The JVM settings Kafka's own start script uses.
            .args([
                "-XX:+UseG1GC",
                "-XX:MaxGCPauseMillis=20",
                "-XX:InitiatingHeapOccupancyPercent=35",
                "-XX:+ExplicitGCInvokesConcurrent",
                "-Djava.awt.headless=true",
            ])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                self.dir.join("log4j2.properties").display()
            ))
            .arg(format!("-Dkafka.logs.dir={}", self.dir.display()))
            .arg("-cp")
            .arg(self.install.libs.join("*"))
            .arg("kafka.Kafka")
            .arg(self.properties_file())
            .stdin(Stdio::null());
        command
    }

    /// Waits until the node answers metadata requests with itself as a live
    /// broker; fails early if `exited` reports the process gone.
    pub fn wait_ready(&self, exited: impl FnMut() -> Option<String>) -> anyhow::Result<()> {
        let bootstrap = self.bootstrap();
        wait_until(START_TIMEOUT, "the broker", exited, || {
            answers(&bootstrap, Duration::from_millis(500))
        })
    }
}

/// Whether a broker at `bootstrap` answers a metadata request, listing at
/// least one live broker, within `timeout`.
pub fn answers(bootstrap: &str, timeout: Duration) -> bool {
    let client: Result<BaseConsumer, _> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "0")
        .create();
    client.is_ok_and(|client| {
        client
            .fetch_metadata(None, timeout)
            .is_ok_and(|metadata| !metadata.brokers().is_empty())
    })
}

/// Only warnings and errors, and the line that says the broker is up. Groups
/// formed at once race to create the offsets topic, which one of them does:
/// the others' warnings are noise. The JVM's own shutdown hook stops the
/// broker; log4j's would race it.
const LOG4J2: &str = "\
status = warn
shutdownHook = disable
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = out
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
logger.topics.name = org.apache.kafka.server.DefaultAutoTopicCreationManager
logger.topics.level = error
";

/// A cluster id as Kafka writes them: 16 random bytes, URL-safe base64
/// without padding.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = *uuid::Uuid::new_v4().as_bytes();
    let mut bits = 0u32;
    let mut count = 0;
    let mut id = String::with_capacity(22);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            id.push(char::from(ALPHABET[((bits >> count) & 63) as usize]));
        }
    }
    if count > 0 {
        id.push(char::from(ALPHABET[((bits << (6 - count)) & 63) as usize]));
    }
    id
}

/// How to run a broker.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// Settings and log directories; a temporary directory, removed when the
    /// broker stops, when unset.
    pub data_dir: Option<PathBuf>,
    /// The broker's output; next to its data when unset.
    pub log: Option<PathBuf>,
    /// A second client listener, TLS and SCRAM only.
    pub secure: Option<SecureListener>,
}

/// A running KRaft node, stopped when dropped.
pub struct BrokerServer {
    node: KafkaNode,
    guard: ChildGuard,
    log: PathBuf,
    temporary: bool,
}

impl BrokerServer {
    pub fn start(options: &BrokerOptions) -> anyhow::Result<Self> {
        let install = KafkaInstall::find()?;
        let (dir, temporary) = match &options.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (
                std::env::temp_dir()
                    .join(format!("harvest-kafka-{}", uuid::Uuid::new_v4().simple())),
                true,
            ),
        };
        let log = options
            .log
            .clone()
            .unwrap_or_else(|| dir.join("broker.log"));
        let secure = options.secure.as_ref();
        match retry_on_port_clash(|| Self::start_once(&install, &dir, &log, secure)) {
            Ok((node, guard)) => Ok(BrokerServer {
                node,
                guard,
                log,
                temporary,
            }),
            Err(error) => {
                if temporary {
                    let _ = std::fs::remove_dir_all(&dir);
                }
                Err(error.context(format!("starting Apache Kafka; see {}", log.display())))
            }
        }
    }

    fn start_once(
        install: &KafkaInstall,
        dir: &Path,
        log: &Path,
        secure: Option<&SecureListener>,
    ) -> anyhow::Result<(KafkaNode, ChildGuard)> {
        let node = KafkaNode::prepare_with(install.clone(), dir, secure)?;
        let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = node
            .command()
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("starting the broker (java kafka.Kafka)")?;
        let mut guard = ChildGuard::new("kafka", child);
        if let Err(error) = node.wait_ready(|| guard.exited()) {
            guard.kill();
            return Err(error);
        }
        Ok((node, guard))
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.node.bootstrap()
    }

    /// `host:port` of the secure listener, when the broker has one.
    pub fn secure_bootstrap(&self) -> Option<String> {
        self.node.secure_bootstrap()
    }

    /// `host:port` of the mutual-TLS listener, when the broker has one.
    pub fn mutual_tls_bootstrap(&self) -> Option<String> {
        self.node.mutual_tls_bootstrap()
    }

    pub fn log_file(&self) -> &Path {
        &self.log
    }

    pub fn pid(&self) -> u32 {
        self.guard.id()
    }

    /// Stops the broker: a controlled shutdown (SIGTERM), then SIGKILL if it
    /// takes too long.
    pub fn stop(mut self) {
        self.guard.terminate(STOP_GRACE);
    }

    /// Kills the broker at once (SIGKILL), as a crash would.
    pub fn kill(mut self) {
        self.guard.kill();
    }

    /// Kills the broker's process (SIGKILL) and keeps its data and ports, for
    /// [`BrokerServer::restart`].
    pub fn crash(&mut self) {
        self.guard.kill();
    }

    /// Starts the node again on its data and ports (after [`crash`]), and
    /// waits until it answers.
    ///
    /// [`crash`]: BrokerServer::crash
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.guard.kill();
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let child = self
            .node
            .command()
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("restarting the broker (java kafka.Kafka)")?;
        self.guard = ChildGuard::new("kafka", child);
        let guard = &mut self.guard;
        self.node
            .wait_ready(|| guard.exited())
            .with_context(|| format!("restarting Apache Kafka; see {}", self.log.display()))
    }
}

impl Drop for BrokerServer {
    fn drop(&mut self) {
        self.guard.kill();
        if self.temporary {
            let _ = std::fs::remove_dir_all(self.node.dir());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let first = new_cluster_id();
        let second = new_cluster_id();
        assert_eq!(first.len(), 22);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(first, second);
    }

    #[test]
    fn the_node_advertises_a_loopback_address_and_one_replica_everywhere() {
        let node = KafkaNode {
            install: KafkaInstall {
                java: PathBuf::from("java"),
                libs: PathBuf::from("libs"),
            },
            dir: PathBuf::from("/tmp/node"),
            port: 19092,
            controller_port: 19093,
            secure: None,
            mutual_port: None,
        };
        let properties = node.properties();
        assert!(properties.contains("advertised.listeners=PLAINTEXT://127.0.0.1:19092\n"));
        assert!(properties.contains("controller.quorum.bootstrap.servers=127.0.0.1:19093\n"));
        assert!(!properties.contains("localhost"));
        for key in [
            "offsets.topic.replication.factor",
            "transaction.state.log.replication.factor",
            "transaction.state.log.min.isr",
            "share.coordinator.state.topic.replication.factor",
            "share.coordinator.state.topic.min.isr",
        ] {
            assert!(properties.contains(&format!("{key}=1\n")), "{key}");
        }
    }
}
