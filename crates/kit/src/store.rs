//! The Redis connection.

use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::io::tcp::TcpSettings;

use crate::RedisConfig;

#[derive(Debug, thiserror::Error)]
#[error("could not connect to Redis")]
pub struct ConnectError(#[source] redis::RedisError);

/// A multiplexed connection that reconnects by itself. Cheap to clone.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, ConnectError> {
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
    ConnectionManager::new_with_config(client, manager_config)
        .await
        .map_err(ConnectError)
}
