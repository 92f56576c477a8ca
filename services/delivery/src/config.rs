//! The delivery service's configuration. Every setting can be given in a TOML
//! file (`--config`) or as `HARVEST_SECTION__KEY`, e.g.
//! `HARVEST_ASSIGNMENT__DEADLINE_SECS`.

use std::time::Duration;

use harvest_bus::BusConfig;
use harvest_kit::{RedisConfig, RegionsConfig, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    pub server: ServerConfig,
    pub bus: BusConfig,
    pub redis: RedisConfig,
    pub regions: RegionsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: harvest_kit::auth::AuthConfig,
    pub assignment: AssignmentConfig,
    pub partner_topics: PartnerTopicsConfig,
}

/// Courier partners' topics (`harvest.partner.<partner id>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerTopicsConfig {
    /// Create a partner's topic (with `bus.partitions`, `bus.replication_factor`
    /// and `bus.retention_hours`) before its first courier is registered. Off
    /// where the deployment creates them (deploy/ does, for the partners it
    /// lists).
    pub create: bool,
}

impl Default for PartnerTopicsConfig {
    fn default() -> Self {
        PartnerTopicsConfig { create: true }
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            server: ServerConfig::local(50054, 9104),
            bus: BusConfig::default(),
            redis: RedisConfig::default(),
            regions: RegionsConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: harvest_kit::auth::AuthConfig::default(),
            assignment: AssignmentConfig::default(),
            partner_topics: PartnerTopicsConfig::default(),
        }
    }
}

/// How couriers are found for shipments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssignmentConfig {
    /// Time between two attempts to find a courier for a waiting shipment.
    pub retry_interval_ms: u64,
    /// How long after its creation a shipment may wait for a courier before it
    /// fails with no courier. A shipment taken back from its courier gets the
    /// same time again to find another.
    pub deadline_secs: u64,
    /// How long after its assignment a courier has to confirm the pickup;
    /// past it the shipment is taken back from the courier and offered to
    /// another.
    pub pickup_deadline_secs: u64,
    /// How long after its pickup a shipment may be on the road before it is
    /// flagged overdue (once).
    pub transit_deadline_secs: u64,
    /// How long after its pickup a shipment that is still not delivered
    /// fails (delivery failed). Longer than the transit deadline.
    pub transit_give_up_secs: u64,
    /// Couriers farther than this from the pickup point are not considered.
    pub search_radius_km: u32,
    /// How many of the nearest couriers are looked at per attempt.
    pub max_candidates: u32,
    /// How long a replica holds a due shipment it is working on before another
    /// replica may take it over (should the first one die).
    pub claim_lease_ms: u64,
    /// Due shipments one replica takes per sweep of a region.
    pub sweep_batch: u32,
    /// How often an open assignment stream looks for new assignments made by
    /// other replicas (those made by this one are sent at once).
    pub stream_poll_ms: u64,
}

impl Default for AssignmentConfig {
    fn default() -> Self {
        AssignmentConfig {
            retry_interval_ms: 5_000,
            deadline_secs: 600,
            pickup_deadline_secs: 3_600,
            transit_deadline_secs: 48 * 3_600,
            transit_give_up_secs: 7 * 24 * 3_600,
            search_radius_km: 200,
            max_candidates: 50,
            claim_lease_ms: 30_000,
            sweep_batch: 100,
            stream_poll_ms: 2_000,
        }
    }
}

impl AssignmentConfig {
    pub fn retry_interval(&self) -> Duration {
        Duration::from_millis(self.retry_interval_ms)
    }

    pub fn deadline(&self) -> Duration {
        Duration::from_secs(self.deadline_secs)
    }

    pub fn pickup_deadline(&self) -> Duration {
        Duration::from_secs(self.pickup_deadline_secs)
    }

    pub fn transit_deadline(&self) -> Duration {
        Duration::from_secs(self.transit_deadline_secs)
    }

    pub fn transit_give_up(&self) -> Duration {
        Duration::from_secs(self.transit_give_up_secs)
    }

    pub fn claim_lease(&self) -> Duration {
        Duration::from_millis(self.claim_lease_ms)
    }

    pub fn stream_poll(&self) -> Duration {
        Duration::from_millis(self.stream_poll_ms)
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.retry_interval_ms < 10 {
            return Err("assignment.retry_interval_ms must be at least 10".to_owned());
        }
        if self.deadline_secs == 0 {
            return Err("assignment.deadline_secs must be positive".to_owned());
        }
        if self.pickup_deadline_secs == 0 {
            return Err("assignment.pickup_deadline_secs must be positive".to_owned());
        }
        if self.transit_deadline_secs == 0 {
            return Err("assignment.transit_deadline_secs must be positive".to_owned());
        }
        if self.transit_give_up_secs <= self.transit_deadline_secs {
            return Err(
                "assignment.transit_give_up_secs must be greater than assignment.transit_deadline_secs"
                    .to_owned(),
            );
        }
        if !(1..=5_000).contains(&self.search_radius_km) {
            return Err("assignment.search_radius_km must be between 1 and 5000".to_owned());
        }
        if !(1..=1_000).contains(&self.max_candidates) {
            return Err("assignment.max_candidates must be between 1 and 1000".to_owned());
        }
        // Shorter than one attempt takes, and two replicas work on the same
        // shipment at once: safe, but wasted.
        if self.claim_lease_ms < 1_000 {
            return Err("assignment.claim_lease_ms must be at least 1000".to_owned());
        }
        if !(1..=10_000).contains(&self.sweep_batch) {
            return Err("assignment.sweep_batch must be between 1 and 10000".to_owned());
        }
        if self.stream_poll_ms < 10 {
            return Err("assignment.stream_poll_ms must be at least 10".to_owned());
        }
        Ok(())
    }
}

impl DeliveryConfig {
    pub fn validate(&self) -> Result<(), String> {
        harvest_kit::config::validate_shared(
            &self.bus,
            &self.redis,
            &self.telemetry,
            &self.regions,
        )?;
        self.auth.validate()?;
        self.server.validate()?;
        self.assignment.validate()
    }
}

impl harvest_kit::cli::ServiceConfig for DeliveryConfig {
    fn validate(&self) -> Result<(), String> {
        DeliveryConfig::validate(self)
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        let config = DeliveryConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.server.grpc_addr.port(), 50054);
        assert_eq!(config.server.admin_addr.port(), 9104);
        assert_eq!(config.assignment.deadline(), Duration::from_secs(600));

        let mut config = DeliveryConfig::default();
        config.assignment.deadline_secs = 0;
        assert!(
            config
                .validate()
                .is_err_and(|problem| problem.contains("deadline_secs"))
        );
        let mut config = DeliveryConfig::default();
        config.assignment.retry_interval_ms = 1;
        assert!(
            config
                .validate()
                .is_err_and(|problem| problem.contains("retry_interval_ms"))
        );
    }

    #[test]
    fn shipment_deadlines_default_sensibly_and_out_of_range_ones_are_named() {
        let defaults = AssignmentConfig::default();
        assert_eq!(defaults.pickup_deadline(), Duration::from_secs(3_600));
        assert_eq!(defaults.transit_deadline(), Duration::from_secs(48 * 3_600));
        assert_eq!(
            defaults.transit_give_up(),
            Duration::from_secs(7 * 24 * 3_600)
        );

        type Spoiler = fn(&mut AssignmentConfig);
        let cases: [(&str, Spoiler); 4] = [
            ("pickup_deadline_secs", |a| a.pickup_deadline_secs = 0),
            ("transit_deadline_secs", |a| a.transit_deadline_secs = 0),
            ("transit_give_up_secs", |a| {
                a.transit_give_up_secs = a.transit_deadline_secs;
            }),
            ("transit_give_up_secs", |a| {
                a.transit_deadline_secs = 10;
                a.transit_give_up_secs = 9;
            }),
        ];
        for (setting, spoil) in cases {
            let mut config = DeliveryConfig::default();
            spoil(&mut config.assignment);
            let problem = config.validate().expect_err("refused");
            assert!(
                problem.starts_with(&format!("assignment.{setting} ")),
                "{setting}: {problem}"
            );
        }
        let mut short = DeliveryConfig::default();
        short.assignment.transit_deadline_secs = 1;
        short.assignment.transit_give_up_secs = 2;
        assert_eq!(short.validate(), Ok(()));
    }
}
