//! The orders service's configuration: defaults, then a TOML file
//! (`--config`), then `HARVEST_SECTION__KEY` variables such as
//! `HARVEST_ORDERS__PAYMENT_DEADLINE_SECS`.

use std::time::Duration;

use harvest_bus::BusConfig;
use harvest_kit::{RedisConfig, RegionsConfig, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrdersConfig {
    pub server: ServerConfig,
    pub bus: BusConfig,
    pub redis: RedisConfig,
    pub regions: RegionsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: harvest_kit::auth::AuthConfig,
    pub orders: OrderRules,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig {
            server: ServerConfig::local(50052, 9102),
            bus: BusConfig::default(),
            redis: RedisConfig::default(),
            regions: RegionsConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: harvest_kit::auth::AuthConfig::default(),
            orders: OrderRules::default(),
        }
    }
}

/// The rules of placing and deciding orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OrderRules {
    /// A placed order the catalog has not answered within this is cancelled
    /// (its stock, if reserved after all, is released).
    pub placement_deadline_secs: u64,
    /// A reserved order not paid within this is cancelled.
    pub payment_deadline_secs: u64,
    /// How long an idempotency key is remembered (at least 24 hours).
    pub idempotency_ttl_hours: u64,
    /// How long a PlaceOrder call holds its key before a retry may take over.
    pub placement_lease_ms: u64,
    /// How long PlaceOrder waits for the broker to acknowledge the order's
    /// placed event before it answers `UNAVAILABLE` (the order is kept and
    /// its event published once the broker is back; a retry with the same
    /// idempotency key returns it).
    pub placement_wait_ms: u64,
    /// How often due deadlines are looked for.
    pub deadline_poll_ms: u64,
    /// Events not acknowledged after this are published by the sweeper.
    pub outbox_stale_secs: u64,
    /// The most lines an order may have.
    pub max_lines: usize,
    /// The most units of one product an order may ask for.
    pub max_line_quantity: i64,
}

impl Default for OrderRules {
    fn default() -> Self {
        OrderRules {
            placement_deadline_secs: 10 * 60,
            payment_deadline_secs: 15 * 60,
            idempotency_ttl_hours: 48,
            placement_lease_ms: 10_000,
            placement_wait_ms: 3_000,
            deadline_poll_ms: 250,
            outbox_stale_secs: 15,
            max_lines: 50,
            max_line_quantity: 10_000,
        }
    }
}

impl OrderRules {
    pub fn placement_deadline(&self) -> Duration {
        Duration::from_secs(self.placement_deadline_secs)
    }

    pub fn payment_deadline(&self) -> Duration {
        Duration::from_secs(self.payment_deadline_secs)
    }

    pub fn idempotency_ttl(&self) -> Duration {
        Duration::from_secs(self.idempotency_ttl_hours * 3600)
    }

    pub fn placement_lease(&self) -> Duration {
        Duration::from_millis(self.placement_lease_ms)
    }

    pub fn placement_wait(&self) -> Duration {
        Duration::from_millis(self.placement_wait_ms)
    }

    pub fn deadline_poll(&self) -> Duration {
        Duration::from_millis(self.deadline_poll_ms)
    }

    pub fn outbox_stale(&self) -> Duration {
        Duration::from_secs(self.outbox_stale_secs)
    }
}

impl OrdersConfig {
    pub fn validate(&self) -> Result<(), String> {
        harvest_kit::config::validate_shared(
            &self.bus,
            &self.redis,
            &self.telemetry,
            &self.regions,
        )?;
        self.auth.validate()?;
        self.server.validate()?;
        let rules = &self.orders;
        if rules.idempotency_ttl_hours < 24 {
            return Err("orders.idempotency_ttl_hours must be at least 24".to_owned());
        }
        if rules.placement_deadline_secs == 0 {
            return Err("orders.placement_deadline_secs must be positive".to_owned());
        }
        if rules.payment_deadline_secs == 0 {
            return Err("orders.payment_deadline_secs must be positive".to_owned());
        }
        if rules.placement_lease_ms < 100 {
            return Err("orders.placement_lease_ms must be at least 100".to_owned());
        }
        if !(100..=60_000).contains(&rules.placement_wait_ms) {
            return Err("orders.placement_wait_ms must be between 100 and 60000".to_owned());
        }
        if rules.deadline_poll_ms == 0 {
            return Err("orders.deadline_poll_ms must be positive".to_owned());
        }
        if !(1..=1_000).contains(&rules.max_lines) {
            return Err("orders.max_lines must be between 1 and 1000".to_owned());
        }
        if !(1..=harvest_domain::Quantity::MAX.get()).contains(&rules.max_line_quantity) {
            return Err("orders.max_line_quantity is out of range".to_owned());
        }
        Ok(())
    }
}

impl harvest_kit::cli::ServiceConfig for OrdersConfig {
    fn validate(&self) -> Result<(), String> {
        OrdersConfig::validate(self)
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placement_waits_and_deadlines_out_of_range_are_refused_with_the_setting_named() {
        assert_eq!(OrdersConfig::default().validate(), Ok(()));
        let mut config = OrdersConfig::default();
        config.orders.placement_wait_ms = 50;
        assert_eq!(
            config.validate(),
            Err("orders.placement_wait_ms must be between 100 and 60000".to_owned())
        );
        let mut config = OrdersConfig::default();
        config.orders.placement_deadline_secs = 0;
        assert_eq!(
            config.validate(),
            Err("orders.placement_deadline_secs must be positive".to_owned())
        );
    }
}
