//! Creating topics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::BusConfig;
use crate::topology::TopicSpec;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// With what the client library last said of its connections, when it
    /// said something: a refused password or an untrusted certificate,
    /// which the failed request's own error does not tell.
    #[error("could not reach the broker at {brokers}{}", because(.reason))]
    Connect {
        brokers: String,
        reason: Option<Box<str>>,
        #[source]
        source: KafkaError,
    },
    #[error("could not create topic {topic}: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topics {0:?} did not appear, every partition led, in the broker's metadata in time")]
    NotVisible(Vec<String>),
}

fn because(reason: &Option<Box<str>>) -> String {
    reason
        .as_ref()
        .map(|reason| format!(" ({reason})"))
        .unwrap_or_default()
}

/// A client context that keeps what the client library last said of a
/// failed connection, beside logging what it says as the default context
/// does.
#[derive(Default)]
struct LastFailure(Mutex<Option<String>>);

impl ProducerContext for LastFailure {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl ClientContext for LastFailure {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        DefaultClientContext.log(level, fac, log_message);
        // `FAIL` lines say why a connection failed, such as a refused
        // password or an untrusted certificate.
        if fac == "FAIL"
            && let Ok(mut last) = self.0.lock()
        {
            let why = log_message
                .split_once("]: ")
                .map_or(log_message, |(_, why)| why);
            *last = Some(why.to_owned());
        }
    }
}

impl LastFailure {
    fn get(&self) -> Option<Box<str>> {
        self.0.lock().ok()?.as_deref().map(Box::from)
    }
}

/// Creates every topic in `topics` that does not exist yet and waits until the
/// broker lists them all, each partition with a leader. Returns the names it
/// created.
pub async fn ensure_topics(
    config: &BusConfig,
    topics: &[TopicSpec],
) -> Result<Vec<String>, AdminError> {
    let connect_error = |source| AdminError::Connect {
        brokers: config.brokers.clone(),
        reason: None,
        source,
    };
    let metadata = MetadataReader::connect(config)?;
    let existing = metadata.led_partitions().await?;
    let missing: Vec<&TopicSpec> = topics
        .iter()
        .filter(|spec| !existing.contains_key(&spec.name))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> =
        config.client_config().create().map_err(connect_error)?;
    let retention: Vec<String> = missing
        .iter()
        .map(|spec| spec.retention_ms.to_string())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .zip(&retention)
        .map(|(spec, retention_ms)| {
            NewTopic::new(
                &spec.name,
                spec.partitions,
                TopicReplication::Fixed(spec.replication_factor),
            )
            .set("retention.ms", retention_ms)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(connect_error)?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }

    // The broker creates topics asynchronously, and a partition without a
    // leader yet can be reported to a client as missing: an idempotent
    // producer that sees its partition vanish and come back starts its
    // sequence again, and the broker can take a new batch for a repeat of
    // an old one, acknowledged but never written. So: wait until every new
    // topic is listed with all its partitions led.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let led = metadata.led_partitions().await?;
        let absent: Vec<String> = missing
            .iter()
            .filter(|spec| led.get(&spec.name).copied().unwrap_or(0) < spec.partitions)
            .map(|spec| spec.name.clone())
            .collect();
        if absent.is_empty() {
            return Ok(created);
        }
        if Instant::now() > deadline {
            return Err(AdminError::NotVisible(absent));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the broker's topics through a producer's client: when they cannot
/// be read, the error says why as the client library saw it. The admin
/// client never hands its connection errors on; a producer's client does.
/// A read blocks its thread for as long as the broker takes to answer (up
/// to the metadata timeout), so it runs on tokio's blocking pool.
struct MetadataReader {
    brokers: String,
    client: Arc<BaseProducer<LastFailure>>,
}

impl MetadataReader {
    fn connect(config: &BusConfig) -> Result<Self, AdminError> {
        let client = config
            .client_config()
            .create_with_context(LastFailure::default())
            .map_err(|source| AdminError::Connect {
                brokers: config.brokers.clone(),
                reason: None,
                source,
            })?;
        Ok(MetadataReader {
            brokers: config.brokers.clone(),
            client: Arc::new(client),
        })
    }

    async fn led_partitions(&self) -> Result<HashMap<String, i32>, AdminError> {
        let client = Arc::clone(&self.client);
        let read = tokio::task::spawn_blocking(move || {
            led_partitions(client.client()).map_err(|source| {
                // Serve what the library queued meanwhile: its errors among
                // them.
                client.poll(Duration::from_millis(200));
                (client.context().get(), source)
            })
        })
        .await;
        let read = match read {
            Ok(read) => read,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        };
        read.map_err(|(reason, source)| AdminError::Connect {
            brokers: self.brokers.clone(),
            reason,
            source,
        })
    }
}

/// Each listed topic's partitions that have a leader, by topic name.
fn led_partitions<C: ClientContext>(
    client: &Client<C>,
) -> Result<HashMap<String, i32>, KafkaError> {
    let metadata = client.fetch_metadata(None, Duration::from_secs(10))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
        .map(|topic| {
            let led = topic
                .partitions()
                .iter()
                .filter(|partition| partition.error().is_none() && partition.leader() >= 0)
                .count();
            (topic.name().to_owned(), led as i32)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker that cannot be reached keeps `ensure_topics` waiting for up
    /// to the metadata timeout; the task waits, not the thread under it.
    #[tokio::test(flavor = "current_thread")]
    async fn waiting_for_an_unreachable_broker_leaves_the_runtime_free() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            listener.local_addr().expect("address").port()
        };
        let config = BusConfig {
            brokers: format!("127.0.0.1:{port}"),
            ..BusConfig::default()
        };
        let spec = TopicSpec {
            name: "harvest.unreachable".to_owned(),
            partitions: 1,
            replication_factor: 1,
            retention_ms: 60_000,
        };
        let ensure = ensure_topics(&config, std::slice::from_ref(&spec));
        tokio::pin!(ensure);
        let mut ticks = 0;
        let mut ticker = tokio::time::interval(Duration::from_millis(100));
        let outcome = loop {
            tokio::select! {
                outcome = &mut ensure => break outcome,
                _ = ticker.tick() => ticks += 1,
            }
        };
        let error = outcome.expect_err("nothing listens there");
        assert!(
            matches!(error, AdminError::Connect { .. }),
            "refused as unreachable: {error}"
        );
        // The metadata wait is 10 s: a blocked thread would have ticked once.
        assert!(ticks >= 50, "the runtime ticked {ticks} times meanwhile");
    }
}
