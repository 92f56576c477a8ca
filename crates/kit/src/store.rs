//! The Redis connection: to one server, or to a Redis Cluster.
//!
//! In a cluster every command goes to the node that owns its key's hash
//! slot. A script or a transaction must keep to one slot (the stores' hash
//! tags see to it); a plain pipeline may mix slots, and is then sent as one
//! sub-pipeline per slot, concurrently: its commands keep their order within
//! a slot, not across slots. A store that relies on one write landing before
//! another in a different slot sends them as two pipelines in cluster mode
//! ([`Redis::is_cluster`]). Parts go by slot rather than by node: that costs
//! a round trip per slot where two slots share a node, but needs no copy of
//! the cluster's slot map, and a part is then exactly what the cluster
//! client sends again, whole, to a slot's new owner when the slot has moved.

mod slots;

use std::time::Duration;

use futures::future::try_join_all;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::io::tcp::TcpSettings;
use redis::{
    ClientTlsConfig, Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, TlsCertificates,
    Value,
};

use crate::RedisConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not connect to Redis")]
    Redis(#[from] redis::RedisError),
    #[error("could not read {setting} {}", path.display())]
    TlsFile {
        setting: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The certificates of `config`'s TLS settings; `None` when it has none
/// (a `rediss://` URL then trusts the system's roots).
fn tls_certificates(config: &RedisConfig) -> Result<Option<TlsCertificates>, ConnectError> {
    let read = |setting: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| ConnectError::TlsFile {
            setting,
            path: path.to_path_buf(),
            source,
        })
    };
    let root_cert = match &config.tls_ca_file {
        Some(path) => Some(read("redis.tls_ca_file", path)?),
        None => None,
    };
    let client_tls = match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("redis.tls_cert_file", cert)?,
            client_key: read("redis.tls_key_file", key)?,
        }),
        _ => None,
    };
    Ok(
        (root_cert.is_some() || client_tls.is_some()).then_some(TlsCertificates {
            client_tls,
            root_cert,
        }),
    )
}

/// A client of one node: the server, or a cluster's first seed node (for
/// pub/sub), with the TLS settings of `config`.
pub fn client(config: &RedisConfig, url: &str) -> Result<redis::Client, ConnectError> {
    let info = url.into_connection_info()?.set_tcp_settings(tcp_settings());
    Ok(match tls_certificates(config)? {
        Some(certs) => redis::Client::build_with_tls(info, certs)?,
        None => redis::Client::open(info)?,
    })
}

/// Counter: requests sent to Redis and awaited, a command or a pipeline
/// each (in a cluster, a pipeline split by slot counts one per slot).
pub const REDIS_ROUND_TRIPS: &str = "harvest_redis_round_trips_total";
/// Counter: commands sent to Redis, those in pipelines included (not those a
/// script runs inside Redis).
pub const REDIS_COMMANDS: &str = "harvest_redis_commands_total";

/// How long connecting to a node, and then each answer, may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How often a command is tried again after a dropped connection (and, in a
/// cluster, after a redirection or a failover).
const RETRIES: u32 = 3;

/// A multiplexed Redis connection that reconnects by itself and counts what
/// it sends ([`REDIS_ROUND_TRIPS`], [`REDIS_COMMANDS`]). Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    connection: Connection,
    round_trips: metrics::Counter,
    commands: metrics::Counter,
}

#[derive(Clone)]
enum Connection {
    Single(ConnectionManager),
    /// Follows MOVED and ASK redirections and the cluster's slot map by
    /// itself.
    Cluster(ClusterConnection),
}

impl Redis {
    /// Whether this talks to a Redis Cluster, where a pipeline's commands
    /// keep their order only within one hash slot.
    pub fn is_cluster(&self) -> bool {
        matches!(self.connection, Connection::Cluster(_))
    }
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.round_trips.increment(1);
        self.commands.increment(1);
        match &mut self.connection {
            Connection::Single(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.commands.increment(pipeline.len() as u64);
        match &mut self.connection {
            Connection::Single(manager) => {
                self.round_trips.increment(1);
                manager.req_packed_commands(pipeline, offset, count)
            }
            Connection::Cluster(cluster) => {
                // A transaction must keep to one slot: the cluster client
                // refuses one that does not. (A plain pipeline is always
                // asked for all its replies.)
                if pipeline.is_transaction() || offset != 0 || count != pipeline.len() {
                    self.round_trips.increment(1);
                    return cluster.req_packed_commands(pipeline, offset, count);
                }
                let groups = slots::group_by_slot(pipeline);
                self.round_trips.increment(groups.len() as u64);
                Box::pin(split_by_slot(cluster.clone(), pipeline, groups))
            }
        }
    }

    fn get_db(&self) -> i64 {
        match &self.connection {
            Connection::Single(manager) => manager.get_db(),
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

/// Sends each slot's commands of `pipeline` to the node owning the slot, all
/// at once, and returns the replies in the pipeline's order.
async fn split_by_slot(
    cluster: ClusterConnection,
    pipeline: &Pipeline,
    groups: Vec<slots::SlotGroup>,
) -> RedisResult<Vec<Value>> {
    let sent = groups.iter().map(|group| {
        let mut cluster = cluster.clone();
        let part = group.pipeline(pipeline);
        let count = part.len();
        let route = match group.slot {
            Some(slot) => {
                SingleNodeRoutingInfo::SpecificNode(Route::with_slot(slot, SlotAddr::Master))
            }
            None => SingleNodeRoutingInfo::Random,
        };
        async move { cluster.route_pipeline(part, 0, count, route).await }
    });
    let replies = try_join_all(sent).await?;
    Ok(slots::reassemble(pipeline.len(), &groups, replies))
}

/// Whether a Redis error says the server cannot be reached or cannot answer
/// for now (down, failing over, loading its data): worth retrying, unlike a
/// refused command or a bad reply.
pub fn unreachable(error: &redis::RedisError) -> bool {
    error.is_io_error()
        || error.is_timeout()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || matches!(error.retry_method(), redis::RetryMethod::WaitAndRetry)
}

/// A call that failed because Redis cannot be reached for now: logged, and
/// answered `UNAVAILABLE` with `message`, which tells the client to retry.
pub fn unreachable_status(error: &impl std::fmt::Debug, message: &str) -> tonic::Status {
    tracing::warn!(error.cause_chain = ?error, "storage unreachable");
    tonic::Status::unavailable(message)
}

/// What a client is told when Redis cannot be reached for now.
pub const RETRY_LATER: &str = "storage is unreachable for now; retry";

/// Connects to Redis, or to a Redis Cluster through its seed nodes when
/// `config.cluster` is set. The counters are those of the metrics recorder
/// installed at the time.
pub async fn connect(config: &RedisConfig) -> Result<Redis, ConnectError> {
    let connection = if config.cluster {
        Connection::Cluster(connect_cluster(config).await?)
    } else {
        Connection::Single(connect_single(config).await?)
    };
    Ok(Redis {
        connection,
        round_trips: metrics::counter!(REDIS_ROUND_TRIPS),
        commands: metrics::counter!(REDIS_COMMANDS),
    })
}

/// Nagle's algorithm would hold back a command written while another is in
/// flight on the shared connection until an ACK arrives.
fn tcp_settings() -> TcpSettings {
    TcpSettings::default().set_nodelay(true)
}

async fn connect_single(config: &RedisConfig) -> Result<ConnectionManager, ConnectError> {
    let client = client(config, config.url.expose())?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(TIMEOUT))
        .set_response_timeout(Some(TIMEOUT))
        .set_number_of_retries(RETRIES as usize);
    Ok(ConnectionManager::new_with_config(client, manager_config).await?)
}

async fn connect_cluster(config: &RedisConfig) -> Result<ClusterConnection, ConnectError> {
    let mut builder = ClusterClientBuilder::new(config.seeds());
    if let Some(certs) = tls_certificates(config)? {
        builder = builder.certs(certs);
    }
    let client = builder
        .tcp_settings(tcp_settings())
        .connection_timeout(TIMEOUT)
        .response_timeout(TIMEOUT)
        .retries(RETRIES)
        .build()?;
    Ok(client.get_async_connection().await?)
}
