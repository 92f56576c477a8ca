//! Every topic, partition count, retention and consumer group name lives here.
//!
//! Each owning service writes one stream, split by region:
//! `{prefix}harvest.{stream}.{region}`. A consuming service reads a region
//! with its own group, `{prefix}harvest.{service}.{region}`, and sends what it
//! cannot handle to `{prefix}harvest.dead-letter.{service}.{region}`. A spike in
//! one region therefore has its own topics, consumers and lag.
//!
//! A courier partner's topic, `{prefix}harvest.partner.{partner}`, carries the
//! delivery events of the shipments its couriers carry, in every region; only
//! the delivery service writes it.

use std::fmt;

use harvest_domain::{Region, Regions};

use crate::BusConfig;

/// An event stream, named after the only service that writes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Orders,
    Catalog,
    Payments,
    Delivery,
}

impl Stream {
    pub const ALL: [Stream; 4] = [
        Stream::Orders,
        Stream::Catalog,
        Stream::Payments,
        Stream::Delivery,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stream::Orders => "orders",
            Stream::Catalog => "catalog",
            Stream::Payments => "payments",
            Stream::Delivery => "delivery",
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A courier partner, as its topic names it: 1 to 64 letters, digits, `_`,
/// `-` or `.`, the characters a Kafka topic name may contain.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartnerId(String);

impl PartnerId {
    pub const MAX_LEN: usize = 64;

    /// The partner named `id`, or why its name cannot be part of a topic's.
    pub fn parse(id: &str) -> Result<PartnerId, String> {
        let valid_characters = id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if id.is_empty() || id.len() > Self::MAX_LEN || !valid_characters {
            return Err(format!(
                "a courier partner's id must be 1 to {} letters, digits, '_', '-' or '.', \
                 got {id:?}",
                Self::MAX_LEN
            ));
        }
        Ok(PartnerId(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PartnerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A topic to create, with its settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub retention_ms: i64,
}

/// The services that consume streams, and so own a dead-letter topic each.
pub const CONSUMING_SERVICES: [&str; 4] = ["catalog", "orders", "payments", "delivery"];

/// Names and sizes of everything on the broker for one deployment.
#[derive(Clone, Debug)]
pub struct Topology {
    prefix: String,
    regions: Regions,
    partitions: i32,
    replication_factor: i32,
    retention_ms: i64,
}

impl Topology {
    pub fn new(config: &BusConfig, regions: Regions) -> Self {
        Topology {
            prefix: config.topic_prefix.clone(),
            regions,
            partitions: config.partitions,
            replication_factor: config.replication_factor,
            retention_ms: i64::from(config.retention_hours) * 3_600_000,
        }
    }

    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    pub fn topic(&self, stream: Stream, region: &Region) -> String {
        format!("{}harvest.{}.{}", self.prefix, stream.name(), region)
    }

    pub fn dead_letter_topic(&self, service: &str, region: &Region) -> String {
        format!("{}harvest.dead-letter.{service}.{region}", self.prefix)
    }

    /// The topic of a courier partner: the delivery events of the shipments
    /// its couriers carry (see [`partner_topic_name`]).
    pub fn partner_topic(&self, partner: &PartnerId) -> String {
        format!("{}harvest.partner.{partner}", self.prefix)
    }

    /// Every partner's topic at once, as metrics name them: one label
    /// however many partners there are.
    pub fn partner_topics_label(&self) -> String {
        format!("{}harvest.partner.*", self.prefix)
    }

    /// A partner's topic, to create: as many partitions as a stream's.
    pub fn partner_topic_spec(&self, partner: &PartnerId) -> TopicSpec {
        self.spec(self.partner_topic(partner), self.partitions)
    }

    pub fn consumer_group(&self, service: &str, region: &Region) -> String {
        format!("{}harvest.{service}.{region}", self.prefix)
    }

    /// Every topic of the deployment: each stream and each dead-letter topic,
    /// for every region.
    pub fn all_topics(&self) -> Vec<TopicSpec> {
        let mut topics = Vec::new();
        for region in self.regions.iter() {
            for stream in Stream::ALL {
                topics.push(self.spec(self.topic(stream, region), self.partitions));
            }
            for service in CONSUMING_SERVICES {
                // Dead letters are rare and read by people: one partition keeps
                // them in the order they failed.
                topics.push(self.spec(self.dead_letter_topic(service, region), 1));
            }
        }
        topics
    }

    fn spec(&self, name: String, partitions: i32) -> TopicSpec {
        TopicSpec {
            name,
            partitions,
            replication_factor: self.replication_factor,
            retention_ms: self.retention_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_split_by_region_and_prefixed() {
        let config = BusConfig {
            topic_prefix: "t1.".to_owned(),
            ..BusConfig::default()
        };
        let topology = Topology::new(&config, Regions::default());
        let east = Region::parse("east").expect("valid");
        assert_eq!(
            topology.topic(Stream::Orders, &east),
            "t1.harvest.orders.east"
        );
        assert_eq!(
            topology.dead_letter_topic("catalog", &east),
            "t1.harvest.dead-letter.catalog.east"
        );
        assert_eq!(
            topology.consumer_group("catalog", &east),
            "t1.harvest.catalog.east"
        );
        // 7 regions × (4 streams + 4 dead-letter topics)
        assert_eq!(topology.all_topics().len(), 56);
        let partner = PartnerId::parse("sf-express.north_2").expect("valid");
        assert_eq!(
            topology.partner_topic(&partner),
            "t1.harvest.partner.sf-express.north_2"
        );
        assert_eq!(topology.partner_topic_spec(&partner).partitions, 6);
    }

    #[test]
    fn a_partner_id_must_fit_in_a_topic_name() {
        for bad in ["", "a:b", "a b", "a/b", "ä", &"p".repeat(65)] {
            assert!(PartnerId::parse(bad).is_err(), "{bad:?} is refused");
        }
        assert!(PartnerId::parse(&"p".repeat(64)).is_ok());
    }
}
