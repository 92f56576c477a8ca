//! The Redis connection.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::RedisConfig;

#[derive(Debug, thiserror::Error)]
#[error("could not connect to Redis")]
pub struct ConnectError(#[source] redis::RedisError);

/// A multiplexed connection that reconnects by itself. Cheap to clone.
pub async fn connect(config: &RedisConfig) -> Result<ConnectionManager, ConnectError> {
    let client = redis::Client::open(config.url.expose().as_str()).map_err(ConnectError)?;
    let manager_config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(3);
    ConnectionManager::new_with_config(client, manager_config)
        .await
        .map_err(ConnectError)
}
