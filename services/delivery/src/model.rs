//! Shipments and couriers as the service keeps them, and the checks every
//! request passes before anything is written.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harvest_bus::PartnerId;
use harvest_domain::{Id, Region, Regions};
use harvest_proto::common::v1 as common;
use harvest_proto::delivery::v1::{
    RegisterCourierRequest, Shipment, ShipmentState as ProtoState, Vehicle,
};

use crate::error::DeliveryError;

const MAX_NAME_CHARS: usize = 120;
const MAX_PLACE_CHARS: usize = 64;
const MAX_REFERENCE_CHARS: usize = 200;
const MAX_REASON_CHARS: usize = 500;
/// More than any vehicle carries; a bigger number is a typo.
pub const MAX_CAPACITY: i32 = 1_000;

/// Where a shipment is in its life. Only moves forward, except that an
/// assigned shipment not picked up within the pickup deadline is taken back
/// from its courier and waits for another (never the same one again):
///
/// ```text
/// awaiting ─▶ assigned ─▶ picked_up ─▶ delivered
///    │ ▲          │            └──────▶ failed (delivery failed: reported,
///    │ │          │                      or not delivered in time)
///    │ └──────────┤ (not picked up in time: taken back from the courier)
///    │            ├───────────────────▶ failed (delivery failed)
///    │            └───────────────────▶ withdrawn (order cancelled)
///    ├──────────────────────────────▶ failed (no courier)
///    └──────────────────────────────▶ withdrawn (order cancelled)
/// ```
///
/// A picked-up shipment past the transit deadline stays picked up, flagged
/// overdue once, until it is delivered or given up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    Awaiting,
    Assigned,
    PickedUp,
    Delivered,
    Failed,
    Withdrawn,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Awaiting => "awaiting",
            State::Assigned => "assigned",
            State::PickedUp => "picked_up",
            State::Delivered => "delivered",
            State::Failed => "failed",
            State::Withdrawn => "withdrawn",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        Some(match name {
            "awaiting" => State::Awaiting,
            "assigned" => State::Assigned,
            "picked_up" => State::PickedUp,
            "delivered" => State::Delivered,
            "failed" => State::Failed,
            "withdrawn" => State::Withdrawn,
            _ => return None,
        })
    }

    /// A courier holds the shipment: it counts against the courier's capacity.
    pub fn is_open(self) -> bool {
        matches!(self, State::Assigned | State::PickedUp)
    }

    pub fn to_proto(self) -> ProtoState {
        match self {
            State::Awaiting => ProtoState::AwaitingCourier,
            State::Assigned => ProtoState::Assigned,
            State::PickedUp => ProtoState::PickedUp,
            State::Delivered => ProtoState::Delivered,
            State::Failed => ProtoState::Failed,
            State::Withdrawn => ProtoState::Withdrawn,
        }
    }
}

/// Why a shipment failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    NoCourier,
    DeliveryFailed,
}

impl FailureKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::NoCourier => "no_courier",
            FailureKind::DeliveryFailed => "delivery_failed",
        }
    }

    pub fn parse(name: &str) -> Option<FailureKind> {
        match name {
            "no_courier" => Some(FailureKind::NoCourier),
            "delivery_failed" => Some(FailureKind::DeliveryFailed),
            _ => None,
        }
    }
}

/// A shipment as stored: what it carries (fixed at creation) and how far it
/// has come.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredShipment {
    pub shipment_id: Id,
    pub order_id: Id,
    /// The order's region: the stream its events go to.
    pub region: Region,
    /// The region whose couriers may carry it.
    pub pool: Region,
    pub state: State,
    pub courier_id: Option<Id>,
    /// The fixed part: pickup point, destination, lines, cold chain, pickup-by.
    pub contents: Shipment,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// When the search for a courier gives up.
    pub assign_by_ms: i64,
    pub assigned_at_ms: Option<i64>,
    pub distance_meters: i64,
    pub picked_up_at_ms: Option<i64>,
    pub delivered_at_ms: Option<i64>,
    pub recipient_name: String,
    pub proof_reference: String,
    /// The digest of the buyer's delivery code; empty when the order asked
    /// for none.
    pub code_digest: String,
    /// Wrong codes given so far.
    pub code_failures: u32,
    /// An operator who confirmed the delivery without the code, and why.
    pub overridden_by: String,
    pub override_reason: String,
    pub failed_at_ms: Option<i64>,
    pub failure: Option<FailureKind>,
    pub failure_reason: String,
    pub withdrawn_at_ms: Option<i64>,
    /// The assignments taken back from their couriers, oldest first. Their
    /// couriers are never offered the shipment again.
    pub releases: Vec<Release>,
    /// Set once the shipment is flagged overdue: when its transit deadline
    /// passed (pickup plus the deadline).
    pub overdue_since_ms: Option<i64>,
    /// When it was flagged overdue.
    pub overdue_at_ms: Option<i64>,
    /// The courier partner of the current courier, if it has one.
    pub partner_id: Option<PartnerId>,
    /// Names of the events already acknowledged by the broker.
    pub announced: BTreeSet<String>,
}

/// An assignment taken back from its courier.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Release {
    pub courier_id: Id,
    pub assigned_at_ms: i64,
    pub distance_meters: i64,
    pub released_at_ms: i64,
    /// The courier's partner, if it has one.
    pub partner_id: Option<PartnerId>,
}

impl StoredShipment {
    pub fn to_proto(&self) -> Shipment {
        Shipment {
            shipment_id: self.shipment_id.to_string(),
            order_id: self.order_id.to_string(),
            region: self.region.to_string(),
            state: self.state.to_proto().into(),
            courier_id: self
                .courier_id
                .as_ref()
                .map(Id::to_string)
                .unwrap_or_default(),
            failure_reason: self.failure_reason.clone(),
            created_at: Some(timestamp(self.created_at_ms)),
            updated_at: Some(timestamp(self.updated_at_ms)),
            ..self.contents.clone()
        }
    }

    /// Whether `courier` is the one this shipment was given to.
    pub fn belongs_to(&self, courier: &Id) -> bool {
        self.courier_id.as_ref() == Some(courier)
    }

    /// Whether the shipment was taken back from `courier`.
    pub fn passed_over(&self, courier: &Id) -> bool {
        self.releases
            .iter()
            .any(|release| &release.courier_id == courier)
    }
}

/// The region whose couriers carry goods away from a pickup point: that of
/// the point's province when the deployment has it, else the order's region.
pub fn courier_pool(province: &str, order_region: &Region, regions: &Regions) -> Region {
    harvest_domain::default_region_of_province(province)
        .and_then(|name| regions.resolve(name).ok())
        .unwrap_or_else(|| order_region.clone())
}

/// Milliseconds since the epoch, by Redis's clock (shared by every replica).
pub fn now_ms() -> i64 {
    unix_millis(harvest_kit::clock::now())
}

pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

pub fn timestamp(ms: i64) -> harvest_proto::Timestamp {
    (UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)).into()
}

pub fn parse_id(field: &str, value: &str) -> Result<Id, DeliveryError> {
    Id::parse(value).map_err(|error| DeliveryError::invalid(field, error))
}

/// Trimmed text that is present, not too long and free of control characters.
pub fn text(field: &str, value: &str, max_chars: usize) -> Result<String, DeliveryError> {
    harvest_domain::clean_text(value, max_chars)
        .map_err(|error| DeliveryError::invalid(field, error))
}

/// Like [`text`], but may be empty.
fn optional_text(field: &str, value: &str, max_chars: usize) -> Result<String, DeliveryError> {
    if value.trim().is_empty() {
        return Ok(String::new());
    }
    text(field, value, max_chars)
}

/// A valid point, when one is given.
pub fn location(
    field: &str,
    point: Option<&common::GeoPoint>,
) -> Result<Option<common::GeoPoint>, DeliveryError> {
    let Some(point) = point else {
        return Ok(None);
    };
    if !(point.latitude.is_finite() && (-85.05..=85.05).contains(&point.latitude)) {
        // Redis geo indexes cover web-mercator latitudes only.
        return Err(DeliveryError::invalid(
            format!("{field}.latitude"),
            "must be between -85.05 and 85.05",
        ));
    }
    if !(point.longitude.is_finite() && (-180.0..=180.0).contains(&point.longitude)) {
        return Err(DeliveryError::invalid(
            format!("{field}.longitude"),
            "must be between -180 and 180",
        ));
    }
    Ok(Some(*point))
}

/// A courier to register, checked.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCourier {
    pub courier_id: Id,
    pub name: String,
    pub home_county: String,
    pub home_province: String,
    pub region: Region,
    pub vehicle: Vehicle,
    pub cold_chain: bool,
    pub capacity: i32,
    pub location: Option<common::GeoPoint>,
}

pub fn new_courier(
    request: &RegisterCourierRequest,
    regions: &Regions,
) -> Result<NewCourier, DeliveryError> {
    let courier_id = if request.courier_id.is_empty() {
        harvest_domain::new_id("cou")
    } else {
        parse_id("courier_id", &request.courier_id)?
    };
    let region = regions
        .resolve(request.region.trim())
        .map_err(|error| DeliveryError::invalid("region", error))?;
    let vehicle = Vehicle::try_from(request.vehicle)
        .ok()
        .filter(|vehicle| *vehicle != Vehicle::Unspecified)
        .ok_or_else(|| DeliveryError::invalid("vehicle", "must be a known vehicle"))?;
    if !(1..=MAX_CAPACITY).contains(&request.capacity) {
        return Err(DeliveryError::invalid(
            "capacity",
            format!("must be between 1 and {MAX_CAPACITY}"),
        ));
    }
    Ok(NewCourier {
        courier_id,
        name: text("name", &request.name, MAX_NAME_CHARS)?,
        home_county: text("home_county", &request.home_county, MAX_PLACE_CHARS)?,
        home_province: text("home_province", &request.home_province, MAX_PLACE_CHARS)?,
        region,
        vehicle,
        cold_chain: request.cold_chain,
        capacity: request.capacity,
        location: location("location", request.location.as_ref())?,
    })
}

pub fn recipient_name(value: &str) -> Result<String, DeliveryError> {
    text("recipient_name", value, MAX_NAME_CHARS)
}

pub fn proof_reference(value: &str) -> Result<String, DeliveryError> {
    optional_text("proof_reference", value, MAX_REFERENCE_CHARS)
}

/// An operator's reason for confirming a delivery without the buyer's code.
pub fn override_reason(value: &str) -> Result<String, DeliveryError> {
    text("override_reason", value, MAX_REASON_CHARS)
}

pub fn failure_reason(value: &str) -> Result<String, DeliveryError> {
    text("reason", value, MAX_REASON_CHARS)
}

/// A shipment of one line in the east, created at 1 s and waiting until
/// 601 s, with nothing else set: the starting point of unit tests.
#[cfg(test)]
pub fn sample_shipment(state: State) -> StoredShipment {
    let id = |text: &str| Id::parse(text).expect("valid");
    StoredShipment {
        shipment_id: id("shp_1"),
        order_id: id("ord_1"),
        region: Region::parse("east").expect("valid"),
        pool: Region::parse("east").expect("valid"),
        state,
        courier_id: None,
        contents: Shipment {
            lines: vec![common::OrderLine {
                product_id: "prd_1".to_owned(),
                quantity: 2,
            }],
            ..Shipment::default()
        },
        created_at_ms: 1_000,
        updated_at_ms: 1_000,
        assign_by_ms: 601_000,
        assigned_at_ms: None,
        distance_meters: 0,
        picked_up_at_ms: None,
        delivered_at_ms: None,
        recipient_name: String::new(),
        proof_reference: String::new(),
        code_digest: String::new(),
        code_failures: 0,
        overridden_by: String::new(),
        override_reason: String::new(),
        failed_at_ms: None,
        failure: None,
        failure_reason: String::new(),
        withdrawn_at_ms: None,
        releases: Vec::new(),
        overdue_since_ms: None,
        overdue_at_ms: None,
        partner_id: None,
        announced: BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid_request() -> RegisterCourierRequest {
        RegisterCourierRequest {
            courier_id: String::new(),
            name: "Wang Lei".to_owned(),
            home_county: "Anji".to_owned(),
            home_province: "Zhejiang".to_owned(),
            region: "east".to_owned(),
            vehicle: Vehicle::Tricycle.into(),
            cold_chain: false,
            capacity: 4,
            location: Some(common::GeoPoint {
                latitude: 30.63,
                longitude: 119.68,
            }),
        }
    }

    fn field_of(result: Result<NewCourier, DeliveryError>) -> String {
        match result {
            Err(DeliveryError::InvalidArgument { field, .. }) => field,
            other => panic!("expected invalid argument, got {other:?}"),
        }
    }

    #[test]
    fn accepts_a_courier_and_gives_it_an_id() {
        let courier = new_courier(&valid_request(), &Regions::default()).expect("valid");
        assert!(courier.courier_id.as_str().starts_with("cou_"));
        assert_eq!(courier.region.as_str(), "east");
    }

    /// Breaks one field of a valid request.
    type Spoiler = fn(&mut RegisterCourierRequest);

    #[test]
    fn names_the_offending_field() {
        let regions = Regions::default();
        let cases: [(&str, Spoiler); 8] = [
            ("courier_id", |r| r.courier_id = "a b".to_owned()),
            ("name", |r| r.name = "  ".to_owned()),
            ("home_county", |r| r.home_county.clear()),
            ("home_province", |r| r.home_province = "x\u{7}".to_owned()),
            ("region", |r| r.region = "atlantis".to_owned()),
            ("vehicle", |r| r.vehicle = 0),
            ("capacity", |r| r.capacity = 0),
            ("location.latitude", |r| {
                r.location = Some(common::GeoPoint {
                    latitude: 91.0,
                    longitude: 0.0,
                })
            }),
        ];
        for (field, spoil) in cases {
            let mut request = valid_request();
            spoil(&mut request);
            assert_eq!(field_of(new_courier(&request, &regions)), field);
        }
    }

    #[test]
    fn couriers_come_from_the_pickup_province_when_the_deployment_has_it() {
        let regions = Regions::try_from(vec!["east".to_owned(), "north".to_owned()]).expect("ok");
        let east = Region::parse("east").expect("valid");
        assert_eq!(courier_pool("Hebei", &east, &regions).as_str(), "north");
        assert_eq!(courier_pool("zhejiang", &east, &regions).as_str(), "east");
        // Yunnan is in the southwest, which this deployment does not have.
        assert_eq!(courier_pool("Yunnan", &east, &regions).as_str(), "east");
        assert_eq!(courier_pool("", &east, &regions).as_str(), "east");
    }

    #[test]
    fn states_round_trip_and_only_assigned_or_picked_up_are_open() {
        for state in [
            State::Awaiting,
            State::Assigned,
            State::PickedUp,
            State::Delivered,
            State::Failed,
            State::Withdrawn,
        ] {
            assert_eq!(State::parse(state.as_str()), Some(state));
            assert_eq!(
                state.is_open(),
                matches!(state, State::Assigned | State::PickedUp)
            );
        }
        assert_eq!(State::parse("lost"), None);
        assert_eq!(
            FailureKind::parse(FailureKind::NoCourier.as_str()),
            Some(FailureKind::NoCourier)
        );
    }
}
