//! The payments service's configuration. Every setting can be given in a TOML
//! file (`--config`) or as `HARVEST_SECTION__KEY`, e.g.
//! `HARVEST_PROVIDER__MAX_ATTEMPTS` or `HARVEST_PAYOUTS__COMMISSION_BASIS_POINTS`.

use std::time::Duration;

use harvest_bus::BusConfig;
use harvest_kit::{RedisConfig, RegionsConfig, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PaymentsConfig {
    pub server: ServerConfig,
    pub bus: BusConfig,
    pub redis: RedisConfig,
    pub regions: RegionsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: harvest_kit::auth::AuthConfig,
    pub provider: ProviderConfig,
    pub payouts: PayoutConfig,
}

impl Default for PaymentsConfig {
    fn default() -> Self {
        PaymentsConfig {
            server: ServerConfig::local(50053, 9103),
            bus: BusConfig::default(),
            redis: RedisConfig::default(),
            regions: RegionsConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: harvest_kit::auth::AuthConfig::default(),
            provider: ProviderConfig::default(),
            payouts: PayoutConfig::default(),
        }
    }
}

/// How the payment provider is called. The built-in provider is the sandbox,
/// whose outcomes follow the payment method token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// Calls of one step before a temporary provider failure is handed back
    /// to the event bus (which retries the whole event later).
    pub max_attempts: u32,
    /// Wait after the first failed call; doubles after each further one.
    pub backoff_ms: u64,
    /// How long every sandbox call takes, to resemble a real provider.
    pub latency_ms: u64,
}

impl Default for ProviderConfig {
    fn default() -> Self {
        ProviderConfig {
            max_attempts: 4,
            backoff_ms: 100,
            latency_ms: 20,
        }
    }
}

impl ProviderConfig {
    pub fn backoff(&self) -> Duration {
        Duration::from_millis(self.backoff_ms)
    }

    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms)
    }
}

/// How captured money is split between sellers and the platform.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PayoutConfig {
    /// The platform's commission on each seller's share, in basis points
    /// (1/10,000): 500 is 5%.
    pub commission_basis_points: u32,
}

impl Default for PayoutConfig {
    fn default() -> Self {
        PayoutConfig {
            commission_basis_points: 500,
        }
    }
}

impl PaymentsConfig {
    pub fn validate(&self) -> Result<(), String> {
        harvest_kit::config::validate_shared(
            &self.bus,
            &self.redis,
            &self.telemetry,
            &self.regions,
        )?;
        self.auth.validate()?;
        self.server.validate()?;
        if !(1..=20).contains(&self.provider.max_attempts) {
            return Err("provider.max_attempts must be between 1 and 20".to_owned());
        }
        if self.provider.backoff_ms > 60_000 {
            return Err("provider.backoff_ms must be at most 60000".to_owned());
        }
        if self.provider.latency_ms > 60_000 {
            return Err("provider.latency_ms must be at most 60000".to_owned());
        }
        if self.payouts.commission_basis_points > 10_000 {
            return Err("payouts.commission_basis_points must be at most 10000 (100%)".to_owned());
        }
        Ok(())
    }
}

impl harvest_kit::cli::ServiceConfig for PaymentsConfig {
    fn validate(&self) -> Result<(), String> {
        PaymentsConfig::validate(self)
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
        let config = PaymentsConfig::default();
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.server.grpc_addr.port(), 50053);
        assert_eq!(config.server.admin_addr.port(), 9103);
        assert_eq!(config.payouts.commission_basis_points, 500);

        let mut config = PaymentsConfig::default();
        config.provider.max_attempts = 0;
        assert!(config.validate().is_err_and(|e| e.contains("max_attempts")));
        let mut config = PaymentsConfig::default();
        config.payouts.commission_basis_points = 10_001;
        assert!(config.validate().is_err_and(|e| e.contains("commission")));
    }
}
