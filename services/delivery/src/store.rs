//! The delivery service's state in Redis.
//!
//! Keys are laid out for Redis Cluster: everything about one courier shares
//! the hash tag `{courier id}`, everything about one shipment `{shipment id}`,
//! and every script touches one of them only. Indexes (geo, pending) are
//! written with single-key commands; they are hints that the scripts check.
//! The pipeline reading the couriers near a point spans their slots; on a
//! cluster the connection sends it split by slot.
//!
//! ```text
//! {prefix}delivery:{c}:courier         hash  profile, load, available, latitude, longitude
//! {prefix}delivery:{c}:open            zset  shipments holding a unit of c's capacity, by claim time
//! {prefix}delivery:couriers:{r}        geo   couriers of region r by location
//! {prefix}delivery:partner:{p}:couriers zset couriers partner p registered (score 0, by id)
//! {prefix}delivery:cold-couriers:{r}   geo   cold-chain couriers of region r by location
//! {prefix}delivery:{s}:shipment        hash  contents (Shipment protobuf), state, courier and its
//!                                            partner, times,
//!                                            release:<n> for each assignment taken back (see
//!                                            transition.lua), announced:<event> for each event
//!                                            acknowledged
//! {prefix}delivery:{s}:claims          set   couriers ever claimed for s (to give back leftovers)
//! {prefix}delivery:{o}:shipments       set   shipment ids of order o
//! {prefix}delivery:{o}:cancelled       string  order o was cancelled
//! {prefix}delivery:pending:{r}         zset  unfinished shipments of region r's orders, by the
//!                                            time of their next attempt or deadline (unix ms)
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use harvest_bus::PartnerId;
use harvest_domain::{Id, Region};
use harvest_kit::store::Redis;
use harvest_proto::common::v1::GeoPoint;
use harvest_proto::delivery::v1::{Courier, Shipment, Vehicle};
use prost::Message;
use redis::{AsyncCommands, Script};

use crate::model::{FailureKind, NewCourier, Release, State, StoredShipment, timestamp};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("stored shipment {0} is corrupt: {1}")]
    CorruptShipment(String, String),
    #[error("stored courier {0} is corrupt: {1}")]
    CorruptCourier(String, String),
    #[error("unexpected script reply {0:?}")]
    UnexpectedReply(String),
}

/// How long a finished shipment, an order's shipment list and a cancellation
/// are remembered: well past the event streams' retention, so a replayed event
/// still finds them.
pub const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// A courier near a pickup point that looked able to take a shipment.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub courier_id: Id,
    pub distance_meters: i64,
    /// The courier partner that registered the courier, if any.
    pub partner_id: Option<PartnerId>,
}

/// What claiming a unit of a courier's capacity did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim {
    Claimed,
    /// The shipment already held a unit of this courier.
    Held,
    Refused(&'static str),
}

/// A step of a shipment, with its details.
#[derive(Clone, Copy, Debug)]
pub enum Step<'a> {
    Assign {
        courier: &'a Id,
        distance_meters: i64,
        /// The courier's partner, whose topic hears of the assignment.
        partner: Option<&'a PartnerId>,
    },
    Expire {
        reason: &'a str,
    },
    Withdraw,
    /// Takes the shipment back from its courier, who did not pick it up in
    /// time, and gives it until `assign_by_ms` to find another.
    Release {
        courier: &'a Id,
        assign_by_ms: i64,
    },
    /// Flags a picked-up shipment overdue since `since_ms`, once.
    FlagOverdue {
        since_ms: i64,
    },
    /// Fails a picked-up shipment that was never delivered.
    GiveUp {
        reason: &'a str,
    },
    PickUp {
        courier: &'a Id,
    },
    Deliver {
        courier: &'a Id,
        recipient_name: &'a str,
        proof_reference: &'a str,
        /// An operator's confirmation without the buyer's code: who, why.
        overridden: Option<(&'a str, &'a str)>,
    },
    Fail {
        courier: &'a Id,
        reason: &'a str,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    Changed,
    /// The shipment had already taken this very step.
    Unchanged,
    /// A courier's step on a shipment that is not the courier's.
    Forbidden,
    /// Impossible from the shipment's state.
    Refused(State),
    Missing,
}

/// What a registration did.
#[derive(Clone, Debug, PartialEq)]
pub enum Registration {
    /// The courier as stored.
    Registered(Box<Courier>),
    /// A courier not registered before came without a location; nothing was
    /// written.
    NeedsLocation,
    /// The courier was registered by another partner; nothing was written.
    OtherPartner,
}

/// A shipment to create.
#[derive(Clone, Debug)]
pub struct NewShipment<'a> {
    pub contents: &'a Shipment,
    pub shipment_id: &'a Id,
    pub order_id: &'a Id,
    pub region: &'a Region,
    pub pool: &'a Region,
    pub now_ms: i64,
    pub assign_by_ms: i64,
    /// The digest of the buyer's delivery code ('' for none).
    pub code_digest: &'a str,
}

#[derive(Clone)]
pub struct DeliveryStore {
    redis: Redis,
    prefix: String,
    /// How long a finished shipment, and what is known of its order, is kept.
    retention: Duration,
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        fn $name() -> &'static Script {
            static SCRIPT: OnceLock<Script> = OnceLock::new();
            SCRIPT.get_or_init(|| Script::new(include_str!($file)))
        }
    };
}

script!(register_courier_script, "scripts/register_courier.lua");
script!(update_status_script, "scripts/update_courier_status.lua");
script!(claim_courier_script, "scripts/claim_courier.lua");
script!(release_courier_script, "scripts/release_courier.lua");
script!(create_shipment_script, "scripts/create_shipment.lua");
script!(transition_script, "scripts/transition.lua");
script!(claim_due_script, "scripts/claim_due.lua");

impl DeliveryStore {
    pub fn new(redis: Redis, prefix: &str) -> Self {
        DeliveryStore {
            redis,
            prefix: prefix.to_owned(),
            retention: REMEMBER_FOR,
        }
    }

    /// Keeps finished shipments, and what is known of their orders, this
    /// long.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn courier_key(&self, courier: &str) -> String {
        format!("{}delivery:{{{courier}}}:courier", self.prefix)
    }

    fn open_key(&self, courier: &str) -> String {
        format!("{}delivery:{{{courier}}}:open", self.prefix)
    }

    fn geo_key(&self, region: &str, cold_chain: bool) -> String {
        let index = if cold_chain {
            "cold-couriers"
        } else {
            "couriers"
        };
        format!("{}delivery:{index}:{{{region}}}", self.prefix)
    }

    fn shipment_key(&self, shipment: &str) -> String {
        format!("{}delivery:{{{shipment}}}:shipment", self.prefix)
    }

    fn claims_key(&self, shipment: &str) -> String {
        format!("{}delivery:{{{shipment}}}:claims", self.prefix)
    }

    fn order_shipments_key(&self, order: &str) -> String {
        format!("{}delivery:{{{order}}}:shipments", self.prefix)
    }

    fn cancelled_key(&self, order: &str) -> String {
        format!("{}delivery:{{{order}}}:cancelled", self.prefix)
    }

    fn partner_couriers_key(&self, partner: &str) -> String {
        format!("{}delivery:partner:{{{partner}}}:couriers", self.prefix)
    }

    fn pending_key(&self, region: &Region) -> String {
        format!("{}delivery:pending:{{{region}}}", self.prefix)
    }

    // ----- couriers -----

    /// Registers (or updates) a courier and files it in its region's geo
    /// indexes. A new courier is written only with a location, and a
    /// registered one only by the partner that registered it (`partner`;
    /// empty while authentication is off, which checks nothing), both
    /// checked in the same script so that a concurrent registration cannot
    /// slip in between.
    #[tracing::instrument(skip_all, fields(courier_id = %courier.courier_id))]
    pub async fn register_courier(
        &self,
        courier: &NewCourier,
        partner: &str,
        now_ms: i64,
    ) -> Result<Registration, StoreError> {
        let mut redis = self.redis.clone();
        let id = courier.courier_id.as_str();
        let (latitude, longitude) = coordinates(courier.location.as_ref());
        let (written, previous_region): (i64, String) = register_courier_script()
            .key(self.courier_key(id))
            .arg(&courier.name)
            .arg(&courier.home_county)
            .arg(&courier.home_province)
            .arg(courier.region.as_str())
            .arg(courier.vehicle.as_str_name())
            .arg(u8::from(courier.cold_chain))
            .arg(courier.capacity)
            .arg(latitude)
            .arg(longitude)
            .arg(now_ms)
            .arg(partner)
            .invoke_async(&mut redis)
            .await?;
        match written {
            0 => return Ok(Registration::NeedsLocation),
            2 => return Ok(Registration::OtherPartner),
            _ => {}
        }
        if !previous_region.is_empty() && previous_region != courier.region.as_str() {
            let _: () = redis::pipe()
                .zrem(self.geo_key(&previous_region, false), id)
                .ignore()
                .zrem(self.geo_key(&previous_region, true), id)
                .ignore()
                .query_async(&mut redis)
                .await?;
        }
        let stored = self.courier(&courier.courier_id).await?.ok_or_else(|| {
            StoreError::CorruptCourier(id.to_owned(), "vanished after registration".to_owned())
        })?;
        self.index_courier(&stored).await?;
        if !stored.partner_id.is_empty() {
            let _: () = redis
                .zadd(self.partner_couriers_key(&stored.partner_id), id, 0)
                .await?;
        }
        Ok(Registration::Registered(Box::new(stored)))
    }

    /// Sets availability and (when given) location. `None` for an unknown
    /// courier.
    #[tracing::instrument(skip_all, fields(courier_id = %courier_id))]
    pub async fn update_courier_status(
        &self,
        courier_id: &Id,
        available: bool,
        location: Option<&GeoPoint>,
        now_ms: i64,
    ) -> Result<Option<Courier>, StoreError> {
        let mut redis = self.redis.clone();
        let (latitude, longitude) = coordinates(location);
        let known: i64 = update_status_script()
            .key(self.courier_key(courier_id.as_str()))
            .arg(u8::from(available))
            .arg(latitude)
            .arg(longitude)
            .arg(now_ms)
            .invoke_async(&mut redis)
            .await?;
        if known == 0 {
            return Ok(None);
        }
        let Some(stored) = self.courier(courier_id).await? else {
            return Ok(None);
        };
        if location.is_some() {
            self.index_courier(&stored).await?;
        }
        Ok(Some(stored))
    }

    /// Files a located courier in its region's geo index, and in the
    /// cold-chain one exactly when it has cold chain.
    async fn index_courier(&self, courier: &Courier) -> Result<(), StoreError> {
        let Some(point) = courier.location else {
            return Ok(());
        };
        let mut redis = self.redis.clone();
        let id = courier.courier_id.as_str();
        let mut pipe = redis::pipe();
        pipe.cmd("GEOADD")
            .arg(self.geo_key(&courier.region, false))
            .arg(point.longitude)
            .arg(point.latitude)
            .arg(id)
            .ignore();
        if courier.cold_chain {
            pipe.cmd("GEOADD")
                .arg(self.geo_key(&courier.region, true))
                .arg(point.longitude)
                .arg(point.latitude)
                .arg(id)
                .ignore();
        } else {
            pipe.zrem(self.geo_key(&courier.region, true), id).ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    /// A page of the couriers `partner` registered, by id, after `after`;
    /// the last one's id when there may be more.
    pub async fn partner_couriers(
        &self,
        partner: &str,
        after: Option<&str>,
        page_size: usize,
    ) -> Result<(Vec<Courier>, Option<String>), StoreError> {
        let mut redis = self.redis.clone();
        let from = after.map_or_else(|| "-".to_owned(), |after| format!("({after}"));
        let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
            .arg(self.partner_couriers_key(partner))
            .arg(from)
            .arg("+")
            .arg("LIMIT")
            .arg(0)
            .arg(page_size + 1)
            .query_async(&mut redis)
            .await?;
        let more = ids.len() > page_size;
        let ids: Vec<Id> = ids
            .into_iter()
            .take(page_size)
            .filter_map(|id| Id::parse(&id).ok())
            .collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.hgetall(self.courier_key(id.as_str()));
        }
        let rows: Vec<HashMap<String, String>> = pipe.query_async(&mut redis).await?;
        let mut couriers = Vec::with_capacity(ids.len());
        for (id, fields) in ids.iter().zip(rows) {
            if !fields.is_empty() {
                couriers.push(parse_courier(id, &fields)?);
            }
        }
        let next = more.then(|| ids.last().map(Id::to_string)).flatten();
        Ok((couriers, next))
    }

    pub async fn courier(&self, courier_id: &Id) -> Result<Option<Courier>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: HashMap<String, String> =
            redis.hgetall(self.courier_key(courier_id.as_str())).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_courier(courier_id, &fields).map(Some)
    }

    /// Couriers of `pool` within `radius_km` of `point`, nearest first, that
    /// looked able to take a shipment when read (available, spare capacity,
    /// cold chain when needed). The claim script decides for sure.
    #[tracing::instrument(skip_all, fields(pool = %pool, cold_chain = cold_chain))]
    pub async fn nearby_couriers(
        &self,
        pool: &Region,
        point: &GeoPoint,
        cold_chain: bool,
        radius_km: u32,
        limit: u32,
    ) -> Result<Vec<Candidate>, StoreError> {
        let mut redis = self.redis.clone();
        let found: Vec<(String, f64)> = redis::cmd("GEOSEARCH")
            .arg(self.geo_key(pool.as_str(), cold_chain))
            .arg("FROMLONLAT")
            .arg(point.longitude)
            .arg(point.latitude)
            .arg("BYRADIUS")
            .arg(radius_km)
            .arg("km")
            .arg("ASC")
            .arg("COUNT")
            .arg(limit)
            .arg("WITHDIST")
            .query_async(&mut redis)
            .await?;
        if found.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for (courier, _) in &found {
            pipe.cmd("HMGET").arg(self.courier_key(courier)).arg(&[
                "available",
                "load",
                "capacity",
                "cold_chain",
                "partner",
            ]);
        }
        type Row = (
            Option<String>,
            Option<i64>,
            Option<i64>,
            Option<String>,
            Option<String>,
        );
        let rows: Vec<Row> = pipe.query_async(&mut redis).await?;
        let candidates = found
            .into_iter()
            .zip(rows)
            .filter(|(_, (available, load, capacity, cold, _))| {
                available.as_deref() == Some("1")
                    && load.unwrap_or(0) < capacity.unwrap_or(0)
                    && (!cold_chain || cold.as_deref() == Some("1"))
            })
            .filter_map(|((courier, distance_km), (.., partner))| {
                Some(Candidate {
                    courier_id: Id::parse(&courier).ok()?,
                    distance_meters: (distance_km * 1_000.0).round() as i64,
                    partner_id: partner.as_deref().and_then(partner_of),
                })
            })
            .collect();
        Ok(candidates)
    }

    /// Takes a unit of the courier's capacity for the shipment, atomically.
    pub async fn claim_courier(
        &self,
        courier_id: &Id,
        shipment_id: &Id,
        pool: &Region,
        cold_chain: bool,
        now_ms: i64,
    ) -> Result<Claim, StoreError> {
        let mut redis = self.redis.clone();
        let reply: String = claim_courier_script()
            .key(self.courier_key(courier_id.as_str()))
            .key(self.open_key(courier_id.as_str()))
            .arg(shipment_id.as_str())
            .arg(pool.as_str())
            .arg(u8::from(cold_chain))
            .arg(now_ms)
            .invoke_async(&mut redis)
            .await?;
        Ok(match reply.as_str() {
            "claimed" => Claim::Claimed,
            "held" => Claim::Held,
            "unknown" => Claim::Refused("unknown"),
            "elsewhere" => Claim::Refused("elsewhere"),
            "unavailable" => Claim::Refused("unavailable"),
            "no_cold_chain" => Claim::Refused("no_cold_chain"),
            "full" => Claim::Refused("full"),
            _ => return Err(StoreError::UnexpectedReply(reply)),
        })
    }

    /// Gives back the unit the shipment holds on the courier, if any.
    pub async fn release_courier(
        &self,
        courier_id: &Id,
        shipment_id: &Id,
    ) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let released: i64 = release_courier_script()
            .key(self.courier_key(courier_id.as_str()))
            .key(self.open_key(courier_id.as_str()))
            .arg(shipment_id.as_str())
            .invoke_async(&mut redis)
            .await?;
        Ok(released == 1)
    }

    /// The shipments holding a unit of the courier's capacity, oldest claim
    /// first. May include a shipment whose assignment is still being decided.
    pub async fn open_shipments(&self, courier_id: &Id) -> Result<Vec<String>, StoreError> {
        let mut redis = self.redis.clone();
        Ok(redis
            .zrange(self.open_key(courier_id.as_str()), 0, -1)
            .await?)
    }

    // ----- shipments -----

    /// Remembers that the shipment is about to claim the courier, so that a
    /// claim left over by a crash is given back once the shipment is settled.
    pub async fn record_claim(&self, shipment_id: &Id, courier_id: &Id) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .sadd(self.claims_key(shipment_id.as_str()), courier_id.as_str())
            .await?;
        Ok(())
    }

    pub async fn claims(&self, shipment_id: &Id) -> Result<Vec<Id>, StoreError> {
        self.id_set(self.claims_key(shipment_id.as_str())).await
    }

    /// Creates the shipment unless it exists; true when created.
    #[tracing::instrument(skip_all, fields(shipment_id = %shipment.shipment_id))]
    pub async fn create_shipment(&self, shipment: &NewShipment<'_>) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        let reply: String = create_shipment_script()
            .key(self.shipment_key(shipment.shipment_id.as_str()))
            .arg(shipment.contents.encode_to_vec())
            .arg(shipment.order_id.as_str())
            .arg(shipment.region.as_str())
            .arg(shipment.pool.as_str())
            .arg(shipment.now_ms)
            .arg(shipment.assign_by_ms)
            .arg(shipment.code_digest)
            .invoke_async(&mut redis)
            .await?;
        let order_key = self.order_shipments_key(shipment.order_id.as_str());
        let _: () = redis::pipe()
            .sadd(&order_key, shipment.shipment_id.as_str())
            .ignore()
            .expire(&order_key, self.retention.as_secs() as i64)
            .ignore()
            .query_async(&mut redis)
            .await?;
        Ok(reply == "created")
    }

    pub async fn shipment(&self, shipment_id: &Id) -> Result<Option<StoredShipment>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: HashMap<String, Vec<u8>> = redis
            .hgetall(self.shipment_key(shipment_id.as_str()))
            .await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_shipment(shipment_id, &fields).map(Some)
    }

    /// Takes one step of a shipment, atomically, if it is possible.
    #[tracing::instrument(skip_all, fields(shipment_id = %shipment_id))]
    pub async fn step(
        &self,
        shipment_id: &Id,
        step: Step<'_>,
        now_ms: i64,
    ) -> Result<StepOutcome, StoreError> {
        let (overridden_by, override_reason) = match step {
            Step::Deliver {
                overridden: Some((by, why)),
                ..
            } => (by, why),
            _ => ("", ""),
        };
        let (name, courier, first, second) = match step {
            Step::Assign {
                courier,
                distance_meters,
                partner,
            } => (
                "assign",
                courier.as_str(),
                distance_meters.to_string(),
                partner.map_or("", PartnerId::as_str),
            ),
            Step::Expire { reason } => ("expire", "", reason.to_owned(), ""),
            Step::Withdraw => ("withdraw", "", String::new(), ""),
            Step::Release {
                courier,
                assign_by_ms,
            } => ("release", courier.as_str(), assign_by_ms.to_string(), ""),
            Step::FlagOverdue { since_ms } => ("flag_overdue", "", since_ms.to_string(), ""),
            Step::GiveUp { reason } => ("give_up", "", reason.to_owned(), ""),
            Step::PickUp { courier } => ("pick_up", courier.as_str(), String::new(), ""),
            Step::Deliver {
                courier,
                recipient_name,
                proof_reference,
                ..
            } => (
                "deliver",
                courier.as_str(),
                recipient_name.to_owned(),
                proof_reference,
            ),
            Step::Fail { courier, reason } => ("fail", courier.as_str(), reason.to_owned(), ""),
        };
        let mut redis = self.redis.clone();
        let (outcome, state, _courier): (String, String, String) = transition_script()
            .key(self.shipment_key(shipment_id.as_str()))
            .key(self.claims_key(shipment_id.as_str()))
            .arg(name)
            .arg(courier)
            .arg(now_ms)
            .arg(self.retention.as_millis() as i64)
            .arg(first)
            .arg(second)
            .arg(overridden_by)
            .arg(override_reason)
            .invoke_async(&mut redis)
            .await?;
        let unexpected = || StoreError::UnexpectedReply(format!("{outcome}|{state}"));
        Ok(match outcome.as_str() {
            "changed" => StepOutcome::Changed,
            "unchanged" => StepOutcome::Unchanged,
            "forbidden" => StepOutcome::Forbidden,
            "missing" => StepOutcome::Missing,
            "refused" => StepOutcome::Refused(State::parse(&state).ok_or_else(unexpected)?),
            _ => return Err(unexpected()),
        })
    }

    /// Counts a wrong delivery code given for the shipment; the count so far.
    pub async fn count_code_failure(&self, shipment_id: &Id) -> Result<i64, StoreError> {
        let mut redis = self.redis.clone();
        Ok(redis
            .hincr(self.shipment_key(shipment_id.as_str()), "code_failures", 1)
            .await?)
    }

    /// Notes that the broker acknowledged the shipment's `events` (names
    /// as [`crate::events`] gives them); one command.
    pub async fn mark_announced(
        &self,
        shipment_id: &Id,
        events: &[String],
    ) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        let fields: Vec<(String, u8)> = events
            .iter()
            .map(|event| (format!("announced:{event}"), 1))
            .collect();
        let mut redis = self.redis.clone();
        let _: () = redis
            .hset_multiple(self.shipment_key(shipment_id.as_str()), &fields)
            .await?;
        Ok(())
    }

    // ----- orders -----

    pub async fn order_shipments(&self, order_id: &Id) -> Result<Vec<Id>, StoreError> {
        self.id_set(self.order_shipments_key(order_id.as_str()))
            .await
    }

    /// The ids in a set, sorted; members that are not ids are skipped.
    async fn id_set(&self, key: String) -> Result<Vec<Id>, StoreError> {
        let mut redis = self.redis.clone();
        let members: Vec<String> = redis.smembers(key).await?;
        let mut ids: Vec<Id> = members
            .iter()
            .filter_map(|member| Id::parse(member).ok())
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub async fn mark_cancelled(&self, order_id: &Id) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .set_ex(
                self.cancelled_key(order_id.as_str()),
                1,
                self.retention.as_secs(),
            )
            .await?;
        Ok(())
    }

    pub async fn is_cancelled(&self, order_id: &Id) -> Result<bool, StoreError> {
        let mut redis = self.redis.clone();
        Ok(redis.exists(self.cancelled_key(order_id.as_str())).await?)
    }

    // ----- pending work -----

    /// Makes the shipment due at `at_ms` (earlier or later than before).
    pub async fn schedule(
        &self,
        region: &Region,
        shipment_id: &Id,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .zadd(self.pending_key(region), shipment_id.as_str(), at_ms)
            .await?;
        Ok(())
    }

    pub async fn unschedule(&self, region: &Region, shipment_id: &str) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis.zrem(self.pending_key(region), shipment_id).await?;
        Ok(())
    }

    /// Takes up to `limit` due shipments for `lease`.
    pub async fn claim_due(
        &self,
        region: &Region,
        now_ms: i64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        let mut redis = self.redis.clone();
        Ok(claim_due_script()
            .key(self.pending_key(region))
            .arg(now_ms)
            .arg(lease.as_millis() as i64)
            .arg(limit)
            .invoke_async(&mut redis)
            .await?)
    }

    pub async fn pending_count(&self, region: &Region) -> Result<u64, StoreError> {
        let mut redis = self.redis.clone();
        Ok(redis.zcard(self.pending_key(region)).await?)
    }
}

/// Latitude and longitude as script arguments; empty for none.
fn coordinates(point: Option<&GeoPoint>) -> (String, String) {
    point.map_or_else(
        || (String::new(), String::new()),
        |point| (point.latitude.to_string(), point.longitude.to_string()),
    )
}

fn parse_courier(courier_id: &Id, fields: &HashMap<String, String>) -> Result<Courier, StoreError> {
    let corrupt = |what: &str| StoreError::CorruptCourier(courier_id.to_string(), what.to_owned());
    let text = |name: &str| fields.get(name).cloned().unwrap_or_default();
    let number = |name: &str| -> Result<i64, StoreError> {
        fields
            .get(name)
            .map_or(Ok(0), |value| value.parse().map_err(|_| corrupt(name)))
    };
    let vehicle = Vehicle::from_str_name(&text("vehicle")).ok_or_else(|| corrupt("vehicle"))?;
    let location = match (fields.get("latitude"), fields.get("longitude")) {
        (Some(latitude), Some(longitude)) => Some(GeoPoint {
            latitude: latitude.parse().map_err(|_| corrupt("latitude"))?,
            longitude: longitude.parse().map_err(|_| corrupt("longitude"))?,
        }),
        _ => None,
    };
    Ok(Courier {
        courier_id: courier_id.to_string(),
        name: text("name"),
        home_county: text("home_county"),
        home_province: text("home_province"),
        region: text("region"),
        vehicle: vehicle.into(),
        cold_chain: text("cold_chain") == "1",
        capacity: number("capacity")? as i32,
        load: number("load")? as i32,
        available: text("available") == "1",
        location,
        registered_at: Some(timestamp(number("registered_at_ms")?)),
        partner_id: text("partner"),
    })
}

fn parse_shipment(
    shipment_id: &Id,
    fields: &HashMap<String, Vec<u8>>,
) -> Result<StoredShipment, StoreError> {
    let corrupt =
        |what: &str| StoreError::CorruptShipment(shipment_id.to_string(), what.to_owned());
    let text = |name: &str| -> Result<String, StoreError> {
        fields.get(name).map_or(Ok(String::new()), |value| {
            String::from_utf8(value.clone()).map_err(|_| corrupt(name))
        })
    };
    let time = |name: &str| -> Result<Option<i64>, StoreError> {
        let value = text(name)?;
        if value.is_empty() {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| corrupt(name))
    };
    let required_time = |name: &str| time(name)?.ok_or_else(|| corrupt(name));
    let contents = Shipment::decode(
        fields
            .get("contents")
            .map(Vec::as_slice)
            .ok_or_else(|| corrupt("contents"))?,
    )
    .map_err(|_| corrupt("contents"))?;
    let courier_id = text("courier_id")?;
    let failure_kind = text("failure_kind")?;
    let releases = parse_releases(&text("releases")?, |n| text(&format!("release:{n}")))
        .ok_or_else(|| corrupt("releases"))?;
    let announced: BTreeSet<String> = fields
        .keys()
        .filter_map(|field| field.strip_prefix("announced:"))
        .map(str::to_owned)
        .collect();
    Ok(StoredShipment {
        shipment_id: shipment_id.clone(),
        order_id: Id::parse(&text("order_id")?).map_err(|_| corrupt("order_id"))?,
        region: Region::parse(&text("region")?).map_err(|_| corrupt("region"))?,
        pool: Region::parse(&text("pool")?).map_err(|_| corrupt("pool"))?,
        state: State::parse(&text("state")?).ok_or_else(|| corrupt("state"))?,
        courier_id: if courier_id.is_empty() {
            None
        } else {
            Some(Id::parse(&courier_id).map_err(|_| corrupt("courier_id"))?)
        },
        contents,
        created_at_ms: required_time("created_at_ms")?,
        updated_at_ms: required_time("updated_at_ms")?,
        assign_by_ms: required_time("assign_by_ms")?,
        assigned_at_ms: time("assigned_at_ms")?,
        distance_meters: time("distance_m")?.unwrap_or(0),
        picked_up_at_ms: time("picked_up_at_ms")?,
        delivered_at_ms: time("delivered_at_ms")?,
        recipient_name: text("recipient_name")?,
        proof_reference: text("proof_reference")?,
        code_digest: text("code_digest")?,
        code_failures: time("code_failures")?
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32,
        overridden_by: text("overridden_by")?,
        override_reason: text("override_reason")?,
        failed_at_ms: time("failed_at_ms")?,
        failure: if failure_kind.is_empty() {
            None
        } else {
            Some(FailureKind::parse(&failure_kind).ok_or_else(|| corrupt("failure_kind"))?)
        },
        failure_reason: text("failure_reason")?,
        withdrawn_at_ms: time("withdrawn_at_ms")?,
        releases,
        overdue_since_ms: time("overdue_since_ms")?,
        overdue_at_ms: time("overdue_at_ms")?,
        partner_id: partner_of(&text("partner_id")?),
        announced,
    })
}

/// The partner a stored courier or assignment names: none when empty, or
/// when the name cannot be a topic's (registration refuses those).
fn partner_of(stored: &str) -> Option<PartnerId> {
    PartnerId::parse(stored).ok()
}

/// The assignments taken back, oldest first, from their count and the
/// record of each (`record(n)` for n from 1); `None` when one is missing or
/// malformed.
fn parse_releases(
    count: &str,
    record: impl Fn(usize) -> Result<String, StoreError>,
) -> Option<Vec<Release>> {
    let count: usize = if count.is_empty() {
        0
    } else {
        count.parse().ok()?
    };
    (1..=count)
        .map(|n| {
            let record = record(n).ok()?;
            let mut parts = record.split(' ');
            let release = Release {
                courier_id: Id::parse(parts.next()?).ok()?,
                assigned_at_ms: parts.next()?.parse().ok()?,
                distance_meters: parts.next()?.parse().ok()?,
                released_at_ms: parts.next()?.parse().ok()?,
                // Absent from releases recorded before partners had topics.
                partner_id: parts.next().and_then(partner_of),
            };
            parts.next().is_none().then_some(release)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_read_in_order_and_a_broken_record_is_refused() {
        let records = |n: usize| -> Result<String, StoreError> {
            Ok(match n {
                1 => "cou_a 1000 250 4600".to_owned(),
                2 => "cou_b 5000 900 8600 partner-b".to_owned(),
                _ => String::new(),
            })
        };
        assert_eq!(parse_releases("", records), Some(Vec::new()));
        let releases = parse_releases("2", records).expect("valid");
        assert_eq!(
            releases
                .iter()
                .map(|release| release.courier_id.as_str())
                .collect::<Vec<_>>(),
            ["cou_a", "cou_b"]
        );
        assert_eq!(releases[1].assigned_at_ms, 5_000);
        assert_eq!(releases[1].distance_meters, 900);
        assert_eq!(releases[1].released_at_ms, 8_600);
        assert_eq!(releases[0].partner_id, None);
        assert_eq!(
            releases[1].partner_id.as_ref().map(PartnerId::as_str),
            Some("partner-b")
        );
        assert_eq!(parse_releases("3", records), None, "record 3 is missing");
        assert_eq!(parse_releases("x", records), None);
        let extra = |_: usize| Ok("cou_a 1 2 3 partner-a x".to_owned());
        assert_eq!(parse_releases("1", extra), None);
    }
}
