//! Kafka settings shared by every service.

use std::time::Duration;

use backon::ExponentialBuilder;
use serde::{Deserialize, Serialize};

/// How a service reaches and uses the broker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusConfig {
    /// Comma-separated `host:port` list.
    pub brokers: String,
    /// Prepended to every topic and consumer group name; lets several
    /// deployments (or tests) share one cluster.
    pub topic_prefix: String,
    /// Partitions of each regional event stream.
    pub partitions: i32,
    pub replication_factor: i32,
    /// How long the broker keeps events.
    pub retention_hours: u32,
    /// A consumer group member that is silent this long is replaced.
    pub session_timeout_ms: u32,
    /// How long the producer waits to batch events.
    pub linger_ms: u32,
    /// How long a publish may take before it fails.
    pub publish_timeout_ms: u64,
    /// The wait after a handler's first transient failure. Each further
    /// failure doubles it, up to `handler_backoff_max_ms`, and every wait is
    /// stretched by a random factor between 1 and 2, so that replicas do not
    /// retry in step. A transient failure is retried without limit.
    pub handler_backoff_ms: u64,
    /// The most the doubling of `handler_backoff_ms` reaches (before the
    /// random stretch).
    pub handler_backoff_max_ms: u64,
    /// Events buffered per partition ahead of its handler.
    pub partition_queue_depth: usize,
    /// The most events of one partition handled as one batch: the events of
    /// different orders in a batch are handled concurrently, those of one
    /// order in turn, and one offset is stored once the whole batch is done.
    pub max_batch: usize,
    /// How long a fetch may wait at the broker for `fetch_min_bytes` of new
    /// events before it answers with what it has: the most an event waits
    /// there on a quiet stream.
    pub fetch_wait_max_ms: u32,
    /// How many bytes of new events a fetch waits for at the broker (up to
    /// `fetch_wait_max_ms`). 1 answers at the first event, so a busy
    /// consumer makes a request per few events; more takes them in fewer,
    /// fuller fetches, for a few milliseconds more per hop when it is quiet.
    pub fetch_min_bytes: u32,
    /// Create missing topics at start-up. Turn off where topics are managed
    /// by the platform.
    pub ensure_topics: bool,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            brokers: "127.0.0.1:9092".to_owned(),
            topic_prefix: String::new(),
            partitions: 6,
            replication_factor: 1,
            retention_hours: 7 * 24,
            session_timeout_ms: 10_000,
            linger_ms: 2,
            publish_timeout_ms: 30_000,
            handler_backoff_ms: 100,
            handler_backoff_max_ms: 1_000,
            partition_queue_depth: 256,
            max_batch: 64,
            fetch_wait_max_ms: 20,
            fetch_min_bytes: 8_192,
            ensure_topics: true,
        }
    }
}

impl BusConfig {
    pub fn publish_timeout(&self) -> Duration {
        Duration::from_millis(self.publish_timeout_ms)
    }

    /// The waits between a failing handler's attempts: without end.
    pub fn handler_backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.handler_backoff_ms))
            .with_max_delay(Duration::from_millis(self.handler_backoff_max_ms))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
    }

    /// Problems that make the configuration unusable, in words for a person.
    pub fn validate(&self) -> Result<(), String> {
        if self.brokers.trim().is_empty() {
            return Err("bus.brokers must name at least one broker".to_owned());
        }
        if self.partitions < 1 {
            return Err("bus.partitions must be at least 1".to_owned());
        }
        if self.replication_factor < 1 {
            return Err("bus.replication_factor must be at least 1".to_owned());
        }
        if self.handler_backoff_ms < 1 || self.handler_backoff_max_ms < self.handler_backoff_ms {
            return Err(
                "bus.handler_backoff_ms must be at least 1 and at most bus.handler_backoff_max_ms"
                    .to_owned(),
            );
        }
        if self.partition_queue_depth < 1 {
            return Err("bus.partition_queue_depth must be at least 1".to_owned());
        }
        if self.fetch_min_bytes < 1 {
            return Err("bus.fetch_min_bytes must be at least 1".to_owned());
        }
        if self.max_batch < 1 {
            return Err("bus.max_batch must be at least 1".to_owned());
        }
        let valid_prefix = self
            .topic_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !valid_prefix {
            return Err(
                "bus.topic_prefix may contain only letters, digits, '.', '_' and '-'".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_and_fetches_of_nothing_are_refused_with_the_setting_named() {
        assert_eq!(BusConfig::default().validate(), Ok(()));
        let no_batch = BusConfig {
            max_batch: 0,
            ..BusConfig::default()
        };
        assert_eq!(
            no_batch.validate(),
            Err("bus.max_batch must be at least 1".to_owned())
        );
        let backoff_over_its_cap = BusConfig {
            handler_backoff_ms: 2_000,
            handler_backoff_max_ms: 1_000,
            ..BusConfig::default()
        };
        assert_eq!(
            backoff_over_its_cap.validate(),
            Err(
                "bus.handler_backoff_ms must be at least 1 and at most bus.handler_backoff_max_ms"
                    .to_owned()
            )
        );
        let no_bytes = BusConfig {
            fetch_min_bytes: 0,
            ..BusConfig::default()
        };
        assert_eq!(
            no_bytes.validate(),
            Err("bus.fetch_min_bytes must be at least 1".to_owned())
        );
    }
}
