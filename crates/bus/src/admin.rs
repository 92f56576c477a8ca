//! Creating topics.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::BusConfig;
use crate::topology::TopicSpec;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("could not reach the broker at {brokers}")]
    Connect {
        brokers: String,
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

/// Creates every topic in `topics` that does not exist yet and waits until the
/// broker lists them all, each partition with a leader. Returns the names it
/// created.
pub async fn ensure_topics(
    config: &BusConfig,
    topics: &[TopicSpec],
) -> Result<Vec<String>, AdminError> {
    let connect_error = |source| AdminError::Connect {
        brokers: config.brokers.clone(),
        source,
    };
    let admin: AdminClient<DefaultClientContext> =
        config.client_config().create().map_err(connect_error)?;

    let existing = led_partitions(&admin).map_err(connect_error)?;
    let missing: Vec<&TopicSpec> = topics
        .iter()
        .filter(|spec| !existing.contains_key(&spec.name))
        .collect();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
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
        let led = led_partitions(&admin).map_err(connect_error)?;
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

/// Each listed topic's partitions that have a leader, by topic name.
fn led_partitions(
    admin: &AdminClient<DefaultClientContext>,
) -> Result<std::collections::HashMap<String, i32>, KafkaError> {
    let metadata = admin
        .inner()
        .fetch_metadata(None, Duration::from_secs(10))?;
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
