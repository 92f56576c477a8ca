//! Reading and replaying a consumer's dead letters.
//!
//! Each (service, region) consumer writes what it can never handle to its
//! dead-letter topic, with the original key, bytes and headers and
//! `dead-letter-*` headers saying why. An operator reads them ([`read`]),
//! fixes the cause, and replays them ([`redrive`]): each goes back to the
//! topic it was read from, with its original key and headers and a
//! `redriven-from` header, so every consumer of that stream sees it again and
//! its idempotent handler acts on it at most once. A redrive mark (the
//! committed offset of the group `harvest.dead-letter-redrive.SERVICE.REGION`)
//! records how far letters were dealt with.

use std::time::{Duration, Instant};

use harvest_domain::Region;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::topology::{Stream, Topology};
use crate::{BusConfig, Envelope, event};

/// How long the broker may take to answer one request of the tool.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// Header naming the dead letter an event was replayed from.
pub const REDRIVEN_FROM: &str = "redriven-from";

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("could not reach the broker at {brokers}")]
    Broker {
        brokers: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "{topic} does not exist: is {service} a Harvest service, and the region and topic prefix right?"
    )]
    NoTopic { topic: String, service: String },
    #[error("there is no dead letter at offset {offset} of {topic}")]
    NoLetter { topic: String, offset: i64 },
    #[error(
        "the dead letter at offset {offset} names {original:?} as its topic, which is not a stream of region {region}: not replayed"
    )]
    Foreign {
        offset: i64,
        original: String,
        region: Region,
    },
    #[error("the broker did not take the replayed event from offset {offset}")]
    NotAcknowledged {
        offset: i64,
        #[source]
        source: KafkaError,
    },
}

/// One dead letter, as written by the consumer.
#[derive(Clone, Debug)]
pub struct DeadLetter {
    pub offset: i64,
    /// When it was dead-lettered (ms since the epoch), if the broker says.
    pub timestamp_ms: Option<i64>,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// Below the redrive mark: dealt with by an earlier redrive.
    pub redriven: bool,
}

impl DeadLetter {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .and_then(|(_, value)| std::str::from_utf8(value).ok())
    }

    pub fn reason(&self) -> &str {
        self.header("dead-letter-reason").unwrap_or("")
    }

    /// The topic it was read from.
    pub fn original_topic(&self) -> &str {
        self.header("dead-letter-original-topic").unwrap_or("")
    }

    /// Its envelope, when the bytes are one.
    pub fn envelope(&self) -> Option<Envelope> {
        event::decode(&self.payload).ok()
    }

    /// Whether a replay can ever go differently: an undecodable or untrusted
    /// event would only be dead-lettered again. A handler's rejection may
    /// succeed once its cause is fixed.
    pub fn replayable(&self) -> bool {
        let reason = self.reason();
        !(reason.starts_with("undecodable:") || reason.starts_with("untrusted:"))
    }
}

/// A dead-letter topic's letters, oldest first.
#[derive(Clone, Debug)]
pub struct Letters {
    pub topic: String,
    pub letters: Vec<DeadLetter>,
    /// Letters below this offset were dealt with by a redrive.
    pub mark: i64,
}

/// The group whose committed offset is the redrive mark.
pub fn redrive_group(topology: &Topology, service: &str, region: &Region) -> String {
    topology.consumer_group(&format!("dead-letter-redrive.{service}"), region)
}

/// Reads every dead letter `service` wrote for `region` that the broker
/// still keeps.
pub async fn read(
    config: &BusConfig,
    topology: &Topology,
    service: &str,
    region: &Region,
) -> Result<Letters, DeadLetterError> {
    let topic = topology.dead_letter_topic(service, region);
    let group = redrive_group(topology, service, region);
    let config = config.clone();
    let service = service.to_owned();
    tokio::task::spawn_blocking(move || read_blocking(&config, &topic, &group, &service))
        .await
        .expect("the reading thread does not panic")
}

fn reader(config: &BusConfig, group: &str) -> Result<BaseConsumer, DeadLetterError> {
    config
        .client_config()
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .map_err(broker_of(config))
}

fn read_blocking(
    config: &BusConfig,
    topic: &str,
    group: &str,
    service: &str,
) -> Result<Letters, DeadLetterError> {
    let broker = broker_of(config);
    let consumer = reader(config, group)?;
    let metadata = consumer
        .fetch_metadata(Some(topic), ANSWER_WITHIN)
        .map_err(&broker)?;
    let known = metadata.topics().iter().any(|found| {
        found.name() == topic && found.error().is_none() && !found.partitions().is_empty()
    });
    if !known {
        return Err(DeadLetterError::NoTopic {
            topic: topic.to_owned(),
            service: service.to_owned(),
        });
    }
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, ANSWER_WITHIN)
        .map_err(&broker)?;
    let mark = committed_mark(&consumer, topic).map_err(&broker)?.max(low);
    let mut letters = Vec::new();
    if high > low {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(topic, 0, Offset::Offset(low))
            .map_err(&broker)?;
        consumer.assign(&list).map_err(&broker)?;
        let started = Instant::now();
        while letters
            .last()
            .is_none_or(|last: &DeadLetter| last.offset < high - 1)
        {
            if started.elapsed() > ANSWER_WITHIN * 3 {
                break;
            }
            let Some(message) = consumer.poll(Duration::from_millis(500)) else {
                continue;
            };
            let message = message.map_err(&broker)?;
            let headers = message
                .headers()
                .map(|headers| {
                    headers
                        .iter()
                        .map(|header| {
                            (
                                header.key.to_owned(),
                                header.value.unwrap_or_default().to_vec(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push(DeadLetter {
                offset: message.offset(),
                timestamp_ms: message.timestamp().to_millis(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().unwrap_or_default().to_vec(),
                headers,
                redriven: message.offset() < mark,
            });
        }
    }
    Ok(Letters {
        topic: topic.to_owned(),
        letters,
        mark,
    })
}

fn committed_mark(consumer: &BaseConsumer, topic: &str) -> Result<i64, KafkaError> {
    let mut list = TopicPartitionList::new();
    list.add_partition(topic, 0);
    let committed = consumer.committed_offsets(list, ANSWER_WITHIN)?;
    Ok(committed
        .find_partition(topic, 0)
        .and_then(|element| match element.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
        .unwrap_or(0))
}

/// Replays `letters` to the topics they were read from, each once the one
/// before is acknowledged, then moves the redrive mark to `mark_to` when
/// given (never backwards). Refuses, before replaying anything, a letter
/// whose original topic is not one of `region`'s streams.
pub async fn redrive(
    config: &BusConfig,
    topology: &Topology,
    service: &str,
    region: &Region,
    letters: &[DeadLetter],
    mark_to: Option<i64>,
) -> Result<(), DeadLetterError> {
    let streams: Vec<String> = Stream::ALL
        .iter()
        .map(|stream| topology.topic(*stream, region))
        .collect();
    if let Some(foreign) = letters
        .iter()
        .find(|letter| !streams.iter().any(|topic| topic == letter.original_topic()))
    {
        return Err(DeadLetterError::Foreign {
            offset: foreign.offset,
            original: foreign.original_topic().to_owned(),
            region: region.clone(),
        });
    }
    let dead_letter_topic = topology.dead_letter_topic(service, region);
    let broker = broker_of(config);
    let producer: FutureProducer = config
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set(
            "message.timeout.ms",
            (ANSWER_WITHIN * 3).as_millis().to_string(),
        )
        .create()
        .map_err(&broker)?;
    for letter in letters {
        let from = format!("{dead_letter_topic}@{}", letter.offset);
        let mut headers = OwnedHeaders::new();
        for (key, value) in &letter.headers {
            if key.starts_with("dead-letter-") || key == REDRIVEN_FROM {
                continue;
            }
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        headers = headers.insert(Header {
            key: REDRIVEN_FROM,
            value: Some(&from),
        });
        let mut record = FutureRecord::to(letter.original_topic())
            .payload(&letter.payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        producer
            .send(record, ANSWER_WITHIN * 3)
            .await
            .map_err(|(source, _)| DeadLetterError::NotAcknowledged {
                offset: letter.offset,
                source,
            })?;
    }
    if let Some(mark_to) = mark_to {
        let config = config.clone();
        let group = redrive_group(topology, service, region);
        tokio::task::spawn_blocking(move || {
            let consumer = reader(&config, &group)?;
            let current =
                committed_mark(&consumer, &dead_letter_topic).map_err(broker_of(&config))?;
            if mark_to > current {
                let mut list = TopicPartitionList::new();
                list.add_partition_offset(&dead_letter_topic, 0, Offset::Offset(mark_to))
                    .map_err(broker_of(&config))?;
                consumer
                    .commit(&list, CommitMode::Sync)
                    .map_err(broker_of(&config))?;
            }
            Ok(())
        })
        .await
        .expect("the committing thread does not panic")?;
    }
    Ok(())
}

fn broker_of(config: &BusConfig) -> impl Fn(KafkaError) -> DeadLetterError + '_ {
    |source| DeadLetterError::Broker {
        brokers: config.brokers.clone(),
        source,
    }
}
