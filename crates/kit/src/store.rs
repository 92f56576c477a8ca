//! The Redis connection.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, Value};

use crate::RedisConfig;

#[derive(Debug, thiserror::Error)]
#[error("could not connect to Redis")]
pub struct ConnectError(#[from] redis::RedisError);

/// Counter: requests sent to Redis and awaited, a command or a pipeline
/// each.
pub const REDIS_ROUND_TRIPS: &str = "harvest_redis_round_trips_total";
/// Counter: commands sent to Redis, those in pipelines included (not those a
/// script runs inside Redis).
pub const REDIS_COMMANDS: &str = "harvest_redis_commands_total";

/// A multiplexed Redis connection that reconnects by itself and counts what
/// it sends ([`REDIS_ROUND_TRIPS`], [`REDIS_COMMANDS`]). Cheap to clone.
#[derive(Clone)]
pub struct Redis {
    manager: ConnectionManager,
    round_trips: metrics::Counter,
    commands: metrics::Counter,
}

impl ConnectionLike for Redis {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.round_trips.increment(1);
        self.commands.increment(1);
        self.manager.req_packed_command(cmd)
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.round_trips.increment(1);
        self.commands.increment(pipeline.len() as u64);
        self.manager.req_packed_commands(pipeline, offset, count)
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
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

/// Connects to Redis. The counters are those of the metrics recorder
/// installed at the time.
pub async fn connect(config: &RedisConfig) -> Result<Redis, ConnectError> {
    // Nagle's algorithm would hold back a command written while another is
    // in flight on the shared connection until an ACK arrives.
    let info = config
        .url
        .expose()
        .as_str()
        .into_connection_info()
        .map_err(ConnectError)?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info).map_err(ConnectError)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3);
    let manager = ConnectionManager::new_with_config(client, manager_config)
        .await
        .map_err(ConnectError)?;
    Ok(Redis {
        manager,
        round_trips: metrics::counter!(REDIS_ROUND_TRIPS),
        commands: metrics::counter!(REDIS_COMMANDS),
    })
}
