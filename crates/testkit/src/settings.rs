//! The settings every service under test shares: its own broker and Redis,
//! private topic and key prefixes, short timeouts, two regions.

use harvest_bus::BusConfig;
use harvest_domain::Regions;
use harvest_kit::{RedisConfig, RegionsConfig};

use crate::{Broker, Redis, unique_name};

/// Bus, Redis and region settings for one test.
#[derive(Clone, Debug)]
pub struct TestSettings {
    /// Unique to the test: in front of its topics, groups and keys.
    pub prefix: String,
    pub bus: BusConfig,
    pub redis: RedisConfig,
    /// `east` and `north`, all served.
    pub regions: RegionsConfig,
}

impl TestSettings {
    pub fn new(redis: &Redis, broker: &Broker) -> Self {
        let prefix = unique_name();
        TestSettings {
            bus: BusConfig {
                brokers: broker.bootstrap(),
                topic_prefix: format!("{prefix}."),
                partitions: 3,
                // A group forms in about half of this.
                session_timeout_ms: 6_000,
                handler_backoff_ms: 20,
                handler_backoff_max_ms: 200,
                ..BusConfig::default()
            },
            redis: redis.config(&format!("{prefix}:")),
            regions: RegionsConfig {
                all: Regions::try_from(vec!["east".to_owned(), "north".to_owned()])
                    .unwrap_or_default(),
                serve: Vec::new(),
            },
            prefix,
        }
    }
}
