//! Kafka settings shared by every service.

use std::path::PathBuf;
use std::time::Duration;

use backon::ExponentialBuilder;
use harvest_domain::Secret;
use rdkafka::ClientConfig;
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
    /// How every client reaches the brokers: `plaintext`, `ssl` (TLS),
    /// `sasl_ssl` (TLS and a SCRAM user) or `sasl_plaintext`.
    pub security_protocol: String,
    /// With `sasl_*`: `SCRAM-SHA-512` or `SCRAM-SHA-256`.
    pub sasl_mechanism: String,
    /// With `sasl_*`: the service's Kafka user, and its password.
    pub sasl_username: String,
    pub sasl_password: Secret<String>,
    /// With `ssl` and `sasl_ssl`: CA certificates (PEM) to trust instead of
    /// the system's.
    pub ssl_ca_file: Option<PathBuf>,
    /// A client certificate (PEM), with `ssl_key_file`, for brokers that ask
    /// for one.
    pub ssl_cert_file: Option<PathBuf>,
    /// The private key (PEM) of `ssl_cert_file`.
    pub ssl_key_file: Option<PathBuf>,
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
            security_protocol: "plaintext".to_owned(),
            sasl_mechanism: "SCRAM-SHA-512".to_owned(),
            sasl_username: String::new(),
            sasl_password: Secret::default(),
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
        }
    }
}

impl BusConfig {
    /// A Kafka client's settings: the brokers, and how to reach them
    /// (`security_protocol` and what goes with it). Every Harvest client of
    /// the bus starts from these.
    pub fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("security.protocol", &self.security_protocol);
        if self.security_protocol.starts_with("sasl_") {
            config
                .set("sasl.mechanism", &self.sasl_mechanism)
                .set("sasl.username", &self.sasl_username)
                .set("sasl.password", self.sasl_password.expose());
        }
        let path = |file: &PathBuf| file.display().to_string();
        if let Some(ca) = &self.ssl_ca_file {
            config.set("ssl.ca.location", path(ca));
        }
        if let (Some(cert), Some(key)) = (&self.ssl_cert_file, &self.ssl_key_file) {
            config
                .set("ssl.certificate.location", path(cert))
                .set("ssl.key.location", path(key));
        }
        config
    }

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
        let protocol = self.security_protocol.as_str();
        if !matches!(
            protocol,
            "plaintext" | "ssl" | "sasl_ssl" | "sasl_plaintext"
        ) {
            return Err(format!(
                "bus.security_protocol must be plaintext, ssl, sasl_ssl or sasl_plaintext, got {protocol:?}"
            ));
        }
        if protocol.starts_with("sasl_") {
            if !matches!(
                self.sasl_mechanism.as_str(),
                "SCRAM-SHA-512" | "SCRAM-SHA-256"
            ) {
                return Err(format!(
                    "bus.sasl_mechanism must be SCRAM-SHA-512 or SCRAM-SHA-256, got {:?}",
                    self.sasl_mechanism
                ));
            }
            if self.sasl_username.trim().is_empty() || self.sasl_password.expose().is_empty() {
                return Err(format!(
                    "bus.security_protocol = {protocol:?} needs bus.sasl_username and bus.sasl_password"
                ));
            }
        }
        if self.ssl_cert_file.is_some() != self.ssl_key_file.is_some() {
            return Err("bus.ssl_cert_file and bus.ssl_key_file go together".to_owned());
        }
        let tls_files = self.ssl_ca_file.is_some() || self.ssl_cert_file.is_some();
        if tls_files && !matches!(protocol, "ssl" | "sasl_ssl") {
            return Err("bus.ssl_* files need bus.security_protocol ssl or sasl_ssl".to_owned());
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
    fn security_settings_are_checked_and_reach_the_client() {
        let scram = BusConfig {
            security_protocol: "sasl_ssl".to_owned(),
            sasl_username: "orders".to_owned(),
            sasl_password: Secret::new("s3cret".to_owned()),
            ssl_ca_file: Some(PathBuf::from("/etc/harvest/kafka-ca.pem")),
            ..BusConfig::default()
        };
        assert_eq!(scram.validate(), Ok(()));
        let client = scram.client_config();
        for (key, value) in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "orders"),
            ("sasl.password", "s3cret"),
            ("ssl.ca.location", "/etc/harvest/kafka-ca.pem"),
        ] {
            assert_eq!(client.get(key), Some(value), "{key}");
        }
        // The client library is built with TLS and SCRAM: it takes these
        // settings (one built without refuses them when the client is made).
        let mut tls = scram.clone();
        tls.ssl_ca_file = None;
        let made: Result<rdkafka::producer::BaseProducer, _> = tls.client_config().create();
        assert!(made.is_ok(), "{:?}", made.err());
        assert!(
            !format!("{scram:?}").contains("s3cret"),
            "the password shows"
        );

        for (broken, problem) in [
            (
                BusConfig {
                    security_protocol: "tls".to_owned(),
                    ..BusConfig::default()
                },
                "bus.security_protocol",
            ),
            (
                BusConfig {
                    sasl_password: Secret::default(),
                    ..scram.clone()
                },
                "bus.sasl_password",
            ),
            (
                BusConfig {
                    sasl_mechanism: "PLAIN".to_owned(),
                    ..scram.clone()
                },
                "bus.sasl_mechanism",
            ),
            (
                BusConfig {
                    ssl_cert_file: Some(PathBuf::from("client.pem")),
                    ..scram.clone()
                },
                "bus.ssl_key_file",
            ),
            (
                BusConfig {
                    ssl_ca_file: Some(PathBuf::from("ca.pem")),
                    ..BusConfig::default()
                },
                "bus.security_protocol ssl or sasl_ssl",
            ),
        ] {
            let refused = broken.validate().expect_err(problem);
            assert!(refused.contains(problem), "{refused}");
        }
    }

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
