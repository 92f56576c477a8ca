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
}

impl Default for ReservationConfig {
    fn default() -> Self {
        ReservationConfig {
            delivery_lead_days: 2,
            perishable_pickup_hours: 48,
        }
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
