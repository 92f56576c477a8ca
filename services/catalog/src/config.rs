//! The catalog's configuration. Every setting can be given in a TOML file
//! (`--config`) or as `HARVEST_SECTION__KEY`, e.g. `HARVEST_BUS__BROKERS`.

use harvest_bus::BusConfig;
use harvest_kit::{RedisConfig, RegionsConfig, ServerConfig, TelemetryConfig};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    pub server: ServerConfig,
    pub bus: BusConfig,
    pub redis: RedisConfig,
    pub regions: RegionsConfig,
    pub telemetry: TelemetryConfig,
    pub auth: harvest_kit::auth::AuthConfig,
    pub reservation: ReservationConfig,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig {
            server: ServerConfig::local(50051, 9101),
            bus: BusConfig::default(),
            redis: RedisConfig::default(),
            regions: RegionsConfig::default(),
            telemetry: TelemetryConfig::default(),
            auth: harvest_kit::auth::AuthConfig::default(),
            reservation: ReservationConfig::default(),
        }
    }
}

/// How stock is set aside for orders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReservationConfig {
    /// Days from order to delivery: lots whose best-before comes sooner are
    /// not reserved.
    pub delivery_lead_days: u32,
    /// Hours within which perishables must be picked up.
    pub perishable_pickup_hours: u32,
    /// The most units of a product one buyer may hold within the window, for
    /// products that set no limit of their own; 0 for none.
    pub per_buyer_limit: u32,
    /// Hours during which a buyer's reserved or committed units of a product
    /// count towards its per-buyer limit, from each reservation.
    pub per_buyer_window_hours: u32,
}

/// The largest per-buyer window: a year.
pub const MAX_PER_BUYER_WINDOW_HOURS: u32 = 24 * 366;

impl Default for ReservationConfig {
    fn default() -> Self {
        ReservationConfig {
            delivery_lead_days: 2,
            perishable_pickup_hours: 48,
            per_buyer_limit: 0,
            per_buyer_window_hours: 24,
        }
    }
}

impl ReservationConfig {
    /// How long a buyer's reservation counts towards a per-buyer limit.
    pub fn per_buyer_window(&self) -> std::time::Duration {
        std::time::Duration::from_secs(u64::from(self.per_buyer_window_hours) * 3600)
    }
}

impl CatalogConfig {
    pub fn validate(&self) -> Result<(), String> {
        harvest_kit::config::validate_shared(
            &self.bus,
            &self.redis,
            &self.telemetry,
            &self.regions,
        )?;
        self.auth.validate()?;
        self.server.validate()?;
        if self.reservation.delivery_lead_days > 60 {
            return Err("reservation.delivery_lead_days must be at most 60".to_owned());
        }
        if self.reservation.perishable_pickup_hours == 0 {
            return Err("reservation.perishable_pickup_hours must be positive".to_owned());
        }
        let max_limit = harvest_domain::Quantity::MAX.get();
        if i64::from(self.reservation.per_buyer_limit) > max_limit {
            return Err(format!(
                "reservation.per_buyer_limit must be at most {max_limit}"
            ));
        }
        if !(1..=MAX_PER_BUYER_WINDOW_HOURS).contains(&self.reservation.per_buyer_window_hours) {
            return Err(format!(
                "reservation.per_buyer_window_hours must be between 1 and {MAX_PER_BUYER_WINDOW_HOURS}"
            ));
        }
        Ok(())
    }
}

impl harvest_kit::cli::ServiceConfig for CatalogConfig {
    fn validate(&self) -> Result<(), String> {
        CatalogConfig::validate(self)
    }

    fn telemetry(&self) -> &TelemetryConfig {
        &self.telemetry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_buyer_settings_are_checked() {
        let defaults = CatalogConfig::default();
        assert_eq!(
            defaults.reservation.per_buyer_limit, 0,
            "no limit by default"
        );
        assert_eq!(
            defaults.reservation.per_buyer_window(),
            std::time::Duration::from_secs(24 * 3600)
        );
        assert_eq!(defaults.validate(), Ok(()));

        let with = |adjust: fn(&mut ReservationConfig)| {
            let mut config = CatalogConfig::default();
            adjust(&mut config.reservation);
            config.validate()
        };
        assert_eq!(with(|r| r.per_buyer_limit = 10_000_000), Ok(()));
        assert_eq!(with(|r| r.per_buyer_window_hours = 1), Ok(()));
        for broken in [
            with(|r| r.per_buyer_limit = 10_000_001),
            with(|r| r.per_buyer_window_hours = 0),
            with(|r| r.per_buyer_window_hours = MAX_PER_BUYER_WINDOW_HOURS + 1),
        ] {
            assert!(
                broken
                    .as_ref()
                    .is_err_and(|e| e.contains("reservation.per_buyer")),
                "{broken:?}"
            );
        }
    }
}
