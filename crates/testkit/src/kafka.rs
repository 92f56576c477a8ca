//! Watching and writing topics directly, the way an outside system would.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// A message as it sits on a topic.
#[derive(Clone, Debug)]
pub struct RawMessage {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl RawMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }
}

/// The messages that decode as Harvest envelopes, in the order read.
pub fn envelopes(messages: &[RawMessage]) -> Vec<harvest_proto::events::v1::Envelope> {
    messages
        .iter()
        .filter_map(|message| prost::Message::decode(message.payload.as_slice()).ok())
        .collect()
}

/// Reads every partition of some topics from the beginning, without a
/// consumer group, and keeps what it read.
pub struct Probe {
    received: Arc<Mutex<Vec<RawMessage>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Probe {
    pub fn start(bootstrap: &str, topics: &[String]) -> anyhow::Result<Self> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("socket.nagle.disable", "true")
            .set("group.id", crate::unique_name())
            .set("enable.auto.commit", "false")
            .create()
            .context("creating probe consumer")?;
        let mut assignment = TopicPartitionList::new();
        for topic in topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), Duration::from_secs(10))
                .with_context(|| format!("metadata of {topic}"))?;
            let partitions = metadata
                .topics()
                .first()
                .map(|t| t.partitions().len())
                .unwrap_or(0);
            anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
            for partition in 0..partitions as i32 {
                assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
            }
        }
        consumer
            .assign(&assignment)
            .context("assigning probe partitions")?;
        // Its task is aborted when the probe is dropped, often after the
        // broker was stopped.
        let consumer = harvest_bus::CloseOffThread::new(consumer);
        let received = Arc::new(Mutex::new(Vec::new()));
        let sink = received.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok(message) = consumer.recv().await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let headers = message
                    .headers()
                    .map(|headers| {
                        headers
                            .iter()
                            .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                            .collect()
                    })
                    .unwrap_or_default();
                let raw = RawMessage {
                    topic: message.topic().to_owned(),
                    partition: message.partition(),
                    offset: message.offset(),
                    key: message.key().map(<[u8]>::to_vec),
                    payload: message.payload().unwrap_or_default().to_vec(),
                    headers,
                };
                if let Ok(mut received) = sink.lock() {
                    received.push(raw);
                }
            }
        });
        Ok(Probe { received, task })
    }

    /// Everything read so far.
    pub fn messages(&self) -> Vec<RawMessage> {
        self.received.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// Waits until `check` finds what it looks for in the messages read so far.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&[RawMessage]) -> Option<T>,
    ) -> Option<T> {
        crate::eventually(timeout, || {
            let found = self.received.lock().ok().and_then(|m| check(&m));
            std::future::ready(found)
        })
        .await
    }
}

/// Writes bytes to a topic as they are, bypassing every Harvest check.
pub async fn send_raw(
    bootstrap: &str,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("socket.nagle.disable", "true")
        .create()
        .context("creating raw producer")?;
    let mut owned = OwnedHeaders::new();
    for (key, value) in headers {
        owned = owned.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .headers(owned),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(error, _)| error)
        .with_context(|| format!("sending to {topic}"))?;
    Ok(())
}
