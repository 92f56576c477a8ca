//! The catalog's state in Redis.
//!
//! Keys are laid out for Redis Cluster: everything about one product shares
//! the hash tag `{product id}`, and every script and transaction touches one
//! product's keys only. Indexes for listing are sorted sets, each written with
//! single-key commands. Pipelines that read or index several products span
//! slots; on a cluster the connection sends them split by slot, and none of
//! them needs its commands in order.
//!
//! ```text
//! {prefix}catalog:{p}:product        hash  data (Product protobuf), price_fen, per_buyer_limit,
//!                                          updated_at_ms
//! {prefix}catalog:{p}:lots           hash  <lot>|received|on_hand|reserved|best_before|harvested
//! {prefix}catalog:{p}:lots-by-date   zset  lot id scored by best-before day
//! {prefix}catalog:{p}:reservations   hash  order id -> reservation record
//! {prefix}catalog:{p}:settled        zset  order ids of settled records, by when (forgotten
//!                                          after the retention)
//! {prefix}catalog:{p}:buyers         hash  buyer id -> order=units@reserved_ms;… of the buyer's
//!                                          reservations within the per-buyer window
//! {prefix}catalog:{p}:buyers-by-time zset  buyer ids by their latest reservation (a buyer idle
//!                                          for the window is forgotten)
//! {prefix}catalog:{o}:outcome        string  the stock event decided for order o
//! {prefix}catalog:create:{r}         string  product id created by request r
//! {prefix}catalog:index:…            zset  product ids, all / by category, province, seller
//! ```

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harvest_domain::{Date, Id};
use harvest_kit::store::Redis;
use harvest_proto::catalog::v1::Product;
use prost::Message;
use redis::{AsyncCommands, Script};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("stored product {0} is corrupt")]
    CorruptProduct(String, #[source] prost::DecodeError),
    #[error("stored record {0:?} is corrupt")]
    CorruptRecord(String),
}

/// What the catalog holds for one (product, order) pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reservation {
    Reserved(Allocation),
    /// Not enough stock when it was tried.
    Short {
        requested: i64,
        available: i64,
    },
    /// Refused: the buyer would hold more than the product's per-buyer
    /// limit. `holds` is what the buyer held within the window before.
    OverLimit {
        requested: i64,
        limit: i64,
        holds: i64,
    },
    Released(Allocation),
    RolledBack(Allocation),
    Committed(Allocation),
    /// The order was cancelled before any stock was reserved for it.
    ReleasedBeforeReserved,
}

/// Units taken from each lot, at the unit price of the moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub unit_price_fen: i64,
    pub lots: Vec<(String, i64)>,
}

impl Allocation {
    pub fn quantity(&self) -> i64 {
        self.lots.iter().map(|(_, quantity)| quantity).sum()
    }
}

impl Reservation {
    fn parse(record: &str) -> Result<Self, StoreError> {
        let corrupt = || StoreError::CorruptRecord(record.to_owned());
        if record == "T" {
            return Ok(Reservation::ReleasedBeforeReserved);
        }
        let mut fields = record.splitn(3, '|');
        let state = fields.next().ok_or_else(corrupt)?;
        let first: i64 = fields
            .next()
            .and_then(|field| field.parse().ok())
            .ok_or_else(corrupt)?;
        let rest = fields.next().ok_or_else(corrupt)?;
        if state == "N" {
            let available = rest.parse().map_err(|_| corrupt())?;
            return Ok(Reservation::Short {
                requested: first,
                available,
            });
        }
        if state == "L" {
            let (limit, holds) = rest.split_once('|').ok_or_else(corrupt)?;
            return Ok(Reservation::OverLimit {
                requested: first,
                limit: limit.parse().map_err(|_| corrupt())?,
                holds: holds.parse().map_err(|_| corrupt())?,
            });
        }
        // Records written since per-buyer limits end with `|buyer id`.
        let lots = rest.split_once('|').map_or(rest, |(lots, _buyer)| lots);
        let lots = lots
            .split(';')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (lot, quantity) = part.split_once('=')?;
                Some((lot.to_owned(), quantity.parse().ok()?))
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(corrupt)?;
        let allocation = Allocation {
            unit_price_fen: first,
            lots,
        };
        match state {
            "R" => Ok(Reservation::Reserved(allocation)),
            "X" => Ok(Reservation::Released(allocation)),
            "B" => Ok(Reservation::RolledBack(allocation)),
            "C" => Ok(Reservation::Committed(allocation)),
            _ => Err(corrupt()),
        }
    }
}

/// The result of trying to reserve one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReserveResult {
    UnknownProduct,
    /// `fresh` is false when the order already had a record (a redelivery).
    Recorded {
        reservation: Reservation,
        fresh: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Release,
    Rollback,
    Commit,
}

impl Settlement {
    fn as_arg(self) -> &'static str {
        match self {
            Settlement::Release => "release",
            Settlement::Rollback => "rollback",
            Settlement::Commit => "commit",
        }
    }
}

/// One stock lot as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LotState {
    pub lot_id: String,
    pub received: i64,
    pub on_hand: i64,
    pub reserved: i64,
    pub best_before: Date,
    pub harvested: Date,
}

/// A product's stock and reservations at one instant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StockSnapshot {
    pub lots: Vec<LotState>,
    pub reservations: BTreeMap<String, Reservation>,
}

impl StockSnapshot {
    /// What is wrong with the stock arithmetic, if anything: every lot must
    /// have 0 ≤ reserved ≤ on_hand ≤ received, and its reserved count must
    /// equal the sum of the live reservations that draw on it.
    pub fn audit(&self) -> Result<(), String> {
        let mut held: BTreeMap<&str, i64> = BTreeMap::new();
        for reservation in self.reservations.values() {
            if let Reservation::Reserved(allocation) = reservation {
                for (lot, quantity) in &allocation.lots {
                    *held.entry(lot.as_str()).or_default() += quantity;
                }
            }
        }
        for lot in &self.lots {
            if lot.reserved < 0 || lot.reserved > lot.on_hand || lot.on_hand > lot.received {
                return Err(format!(
                    "lot {}: received {}, on hand {}, reserved {}",
                    lot.lot_id, lot.received, lot.on_hand, lot.reserved
                ));
            }
            let expected = held.remove(lot.lot_id.as_str()).unwrap_or(0);
            if expected != lot.reserved {
                return Err(format!(
                    "lot {}: reserved counter {} but reservations hold {expected}",
                    lot.lot_id, lot.reserved
                ));
            }
        }
        if let Some((lot, quantity)) = held.into_iter().next() {
            return Err(format!("reservations hold {quantity} of unknown lot {lot}"));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceiveResult {
    UnknownProduct,
    Created,
    /// The lot id was already used; these are its stored values.
    Exists {
        received: i64,
        best_before: Date,
        harvested: Date,
    },
}

/// Which index to list from, and what else to filter on.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub category: Option<i32>,
    pub province: Option<String>,
    pub seller_id: Option<String>,
}

#[derive(Clone)]
pub struct CatalogStore {
    redis: Redis,
    prefix: String,
    /// How long an order's stock outcome and settled reservations are kept.
    retention: Duration,
    buyer_limit: BuyerLimit,
}

/// How many units of a product one buyer may hold, for products without a
/// limit of their own, and for how long a reservation counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BuyerLimit {
    /// 0: none.
    pub default_units: i64,
    pub window: Duration,
}

impl Default for BuyerLimit {
    fn default() -> Self {
        BuyerLimit {
            default_units: 0,
            window: Duration::from_secs(24 * 3600),
        }
    }
}

/// How long a create request id is remembered, and by default an order's
/// stock outcome and settled reservations.
const REMEMBER_FOR: Duration = Duration::from_secs(30 * 24 * 3600);

/// How long a create request's claim on its request id waits for its product
/// to be stored: after that, a retry whose product is still missing (the
/// first call failed or died before storing it) takes the request id over.
pub const CREATE_LEASE: Duration = Duration::from_secs(30);

/// Moves a create request's claim from one call to another, if it still
/// holds `ARGV[1]`: sets `ARGV[2]`, keeping its time to live. 1 when moved.
const TAKE_OVER_CREATE: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
";

/// The claim on a create request id: the product the call creates, and
/// when it claimed the id (unix ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CreateClaim {
    pub product_id: String,
    pub claimed_at_ms: i64,
    /// As stored, to take it over.
    raw: String,
}

impl CreateClaim {
    fn new(product: &Id, now_ms: i64) -> CreateClaim {
        let raw = format!("{product}|{now_ms}");
        CreateClaim {
            product_id: product.to_string(),
            claimed_at_ms: now_ms,
            raw,
        }
    }

    /// A stored claim; one without a time (made before claims had one)
    /// counts as made long ago.
    fn parse(raw: String) -> CreateClaim {
        let (product_id, claimed_at_ms) = match raw.split_once('|') {
            Some((product, at)) => (product.to_owned(), at.parse().unwrap_or(0)),
            None => (raw.clone(), 0),
        };
        CreateClaim {
            product_id,
            claimed_at_ms,
            raw,
        }
    }

    /// Whether its lease has run out at `now_ms`.
    pub fn lapsed(&self, now_ms: i64) -> bool {
        now_ms - self.claimed_at_ms > CREATE_LEASE.as_millis() as i64
    }
}

fn reserve_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(concat!(
            include_str!("scripts/buyer_holding.lua"),
            include_str!("scripts/reserve.lua")
        ))
    })
}

fn settle_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        Script::new(concat!(
            include_str!("scripts/buyer_holding.lua"),
            include_str!("scripts/settle.lua")
        ))
    })
}

fn receive_lot_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/receive_lot.lua")))
}

fn update_product_script() -> &'static Script {
    static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/update_product.lua")))
}

pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

impl CatalogStore {
    pub fn new(redis: Redis, prefix: &str) -> Self {
        CatalogStore {
            redis,
            prefix: prefix.to_owned(),
            retention: REMEMBER_FOR,
            buyer_limit: BuyerLimit::default(),
        }
    }

    /// Applies `limit` to products without a per-buyer limit of their own,
    /// and counts a buyer's reservations for its window.
    pub fn with_buyer_limit(mut self, limit: BuyerLimit) -> Self {
        self.buyer_limit = limit;
        self
    }

    /// Keeps orders' stock outcomes and settled reservations this long.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn product_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:product", self.prefix)
    }

    fn lots_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:lots", self.prefix)
    }

    fn lots_by_date_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:lots-by-date", self.prefix)
    }

    fn settled_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:settled", self.prefix)
    }

    fn reservations_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:reservations", self.prefix)
    }

    fn buyers_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:buyers", self.prefix)
    }

    fn buyers_by_time_key(&self, product: &str) -> String {
        format!("{}catalog:{{{product}}}:buyers-by-time", self.prefix)
    }

    fn outcome_key(&self, order: &str) -> String {
        format!("{}catalog:{{{order}}}:outcome", self.prefix)
    }

    fn create_request_key(&self, request: &str) -> String {
        format!("{}catalog:create:{{{request}}}", self.prefix)
    }

    fn index_key(&self, index: &str) -> String {
        format!("{}catalog:index:{index}", self.prefix)
    }

    fn filter_index(&self, filter: &ListFilter) -> String {
        if let Some(seller) = &filter.seller_id {
            return self.index_key(&format!("seller:{seller}"));
        }
        if let Some(category) = filter.category {
            return self.index_key(&format!("category:{category}"));
        }
        if let Some(province) = &filter.province {
            return self.index_key(&format!("province:{province}"));
        }
        self.index_key("all")
    }

    /// Remembers that `request` creates `product`. Returns the claim of an
    /// earlier call with the same request id, if any.
    pub async fn claim_create_request(
        &self,
        request: &Id,
        product: &Id,
    ) -> Result<Option<CreateClaim>, StoreError> {
        let mut redis = self.redis.clone();
        let key = self.create_request_key(request.as_str());
        let claim = CreateClaim::new(product, unix_millis(SystemTime::now()));
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&claim.raw)
            .arg("NX")
            .arg("EX")
            .arg(REMEMBER_FOR.as_secs())
            .query_async(&mut redis)
            .await?;
        if claimed.is_some() {
            return Ok(None);
        }
        let earlier: Option<String> = redis.get(&key).await?;
        Ok(earlier.map(CreateClaim::parse))
    }

    /// Takes `request` over from the `earlier` claim, for `product`, if that
    /// claim still holds it. True when taken.
    pub async fn take_over_create_request(
        &self,
        request: &Id,
        earlier: &CreateClaim,
        product: &Id,
    ) -> Result<bool, StoreError> {
        static SCRIPT: std::sync::OnceLock<Script> = std::sync::OnceLock::new();
        let claim = CreateClaim::new(product, unix_millis(SystemTime::now()));
        let mut redis = self.redis.clone();
        let taken: i64 = SCRIPT
            .get_or_init(|| Script::new(TAKE_OVER_CREATE))
            .key(self.create_request_key(request.as_str()))
            .arg(&earlier.raw)
            .arg(&claim.raw)
            .invoke_async(&mut redis)
            .await?;
        Ok(taken == 1)
    }

    /// Stores a new product and adds it to the listing indexes.
    pub async fn insert_product(&self, product: &Product) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let id = &product.product_id;
        let updated_ms = product
            .updated_at
            .and_then(|at| SystemTime::try_from(at).ok())
            .map(unix_millis)
            .unwrap_or(0);
        let _: () = redis
            .hset_multiple(
                self.product_key(id),
                &[
                    ("data", product.encode_to_vec()),
                    ("price_fen", product.price_fen.to_string().into_bytes()),
                    (
                        "per_buyer_limit",
                        product.per_buyer_limit.to_string().into_bytes(),
                    ),
                    ("updated_at_ms", updated_ms.to_string().into_bytes()),
                ],
            )
            .await?;
        let origin = product
            .seller
            .as_ref()
            .and_then(|seller| seller.origin.as_ref());
        let mut indexes = vec![
            self.index_key("all"),
            self.index_key(&format!("category:{}", product.category)),
        ];
        if let Some(seller) = &product.seller {
            indexes.push(self.index_key(&format!("seller:{}", seller.seller_id)));
        }
        if let Some(origin) = origin {
            indexes.push(self.index_key(&format!("province:{}", origin.province)));
        }
        let mut pipe = redis::pipe();
        for index in indexes {
            pipe.zadd(index, id, 0).ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    pub async fn product(&self, product: &str) -> Result<Option<Product>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: ProductRow = redis::cmd("HMGET")
            .arg(self.product_key(product))
            .arg(PRODUCT_FIELDS)
            .query_async(&mut redis)
            .await?;
        decode_product(product, fields)
    }

    /// A product and its lots, read in one round trip (one hash slot).
    pub async fn product_with_lots(
        &self,
        product: &str,
    ) -> Result<Option<(Product, Vec<LotState>)>, StoreError> {
        let mut redis = self.redis.clone();
        let (fields, lots): (ProductRow, BTreeMap<String, i64>) = redis::pipe()
            .cmd("HMGET")
            .arg(self.product_key(product))
            .arg(PRODUCT_FIELDS)
            .hgetall(self.lots_key(product))
            .query_async(&mut redis)
            .await?;
        match decode_product(product, fields)? {
            Some(found) => Ok(Some((found, parse_lots(&lots)?))),
            None => Ok(None),
        }
    }

    /// Up to `limit` products matching `filter` with ids after `after`, in id
    /// order, each with its lots, and whether more may follow.
    pub async fn list_products(
        &self,
        filter: &ListFilter,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(Product, Vec<LotState>)>, bool), StoreError> {
        let mut redis = self.redis.clone();
        let index = self.filter_index(filter);
        let mut cursor = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let mut found = Vec::new();
        let batch = (limit * 2).clamp(16, 500);
        loop {
            let ids: Vec<String> = redis
                .zrangebylex_limit(&index, &cursor, "+", 0, batch as isize)
                .await?;
            let Some(last) = ids.last() else {
                return Ok((found, false));
            };
            cursor = format!("({last}");
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HMGET")
                    .arg(self.product_key(id))
                    .arg(PRODUCT_FIELDS)
                    .hgetall(self.lots_key(id));
            }
            let rows: Vec<(ProductRow, BTreeMap<String, i64>)> =
                pipe.query_async(&mut redis).await?;
            for (id, (row, lots)) in ids.iter().zip(rows) {
                let Some(product) = decode_product(id, row)? else {
                    continue;
                };
                if !matches(filter, &product) {
                    continue;
                }
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push((product, parse_lots(&lots)?));
            }
            if ids.len() < batch {
                return Ok((found, false));
            }
        }
    }

    /// Sets the price: the price it replaced and the product as it now is;
    /// `None` when there is no such product.
    pub async fn update_price(
        &self,
        product: &str,
        price_fen: i64,
    ) -> Result<Option<(i64, Product)>, StoreError> {
        self.update_product(product, "price_fen", price_fen).await
    }

    /// Sets the product's own per-buyer limit (0: the default applies);
    /// `None` when there is no such product.
    pub async fn update_purchase_limit(
        &self,
        product: &str,
        per_buyer_limit: i64,
    ) -> Result<Option<Product>, StoreError> {
        Ok(self
            .update_product(product, "per_buyer_limit", per_buyer_limit)
            .await?
            .map(|(_, product)| product))
    }

    /// Sets one of the product's own fields; the value it replaced (0 when
    /// unset) and the product, or `None` when there is no such product.
    async fn update_product(
        &self,
        product: &str,
        field: &str,
        value: i64,
    ) -> Result<Option<(i64, Product)>, StoreError> {
        let mut redis = self.redis.clone();
        let previous: i64 = update_product_script()
            .key(self.product_key(product))
            .arg(field)
            .arg(value)
            .arg(unix_millis(harvest_kit::clock::now()))
            .invoke_async(&mut redis)
            .await?;
        if previous < 0 {
            return Ok(None);
        }
        Ok(self
            .product(product)
            .await?
            .map(|product| (previous, product)))
    }

    pub async fn receive_lot(
        &self,
        product: &str,
        lot: &str,
        quantity: i64,
        best_before: Date,
        harvested: Date,
    ) -> Result<ReceiveResult, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = receive_lot_script()
            .key(self.product_key(product))
            .key(self.lots_key(product))
            .key(self.lots_by_date_key(product))
            .arg(lot)
            .arg(quantity)
            .arg(best_before.days())
            .arg(harvested.days())
            .invoke_async(&mut redis)
            .await?;
        let corrupt = || StoreError::CorruptRecord(reply.join("|"));
        match reply.first().map(String::as_str) {
            Some("unknown") => Ok(ReceiveResult::UnknownProduct),
            Some("created") => Ok(ReceiveResult::Created),
            Some("exists") if reply.len() == 4 => {
                let number = |i: usize| reply[i].parse::<i64>().map_err(|_| corrupt());
                Ok(ReceiveResult::Exists {
                    received: number(1)?,
                    best_before: Date::from_days(number(2)? as i32),
                    harvested: Date::from_days(number(3)? as i32),
                })
            }
            _ => Err(corrupt()),
        }
    }

    /// Every lot of a product, earliest best-before first (then by lot id).
    pub async fn lots(&self, product: &str) -> Result<Vec<LotState>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: BTreeMap<String, i64> = redis.hgetall(self.lots_key(product)).await?;
        parse_lots(&fields)
    }

    /// Reserves `quantity` of `product` for `buyer`'s `order` from lots whose
    /// best-before is `earliest_best_before` or later, unless that would take
    /// the buyer above the product's per-buyer limit; atomic, and a repeat
    /// for the same order returns the first result.
    pub async fn reserve(
        &self,
        product: &str,
        order: &str,
        buyer: &str,
        quantity: i64,
        earliest_best_before: Date,
    ) -> Result<ReserveResult, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = reserve_script()
            .key(self.product_key(product))
            .key(self.lots_key(product))
            .key(self.lots_by_date_key(product))
            .key(self.reservations_key(product))
            .key(self.settled_key(product))
            .key(self.buyers_key(product))
            .key(self.buyers_by_time_key(product))
            .arg(order)
            .arg(quantity)
            .arg(earliest_best_before.days())
            .arg(unix_millis(harvest_kit::clock::now()))
            .arg(self.retention.as_millis() as u64)
            .arg(buyer)
            .arg(self.buyer_limit.default_units)
            .arg(self.buyer_limit.window.as_millis() as u64)
            .invoke_async(&mut redis)
            .await?;
        match reply.as_slice() {
            [status] if status == "unknown" => Ok(ReserveResult::UnknownProduct),
            [status, record] => Ok(ReserveResult::Recorded {
                reservation: Reservation::parse(record)?,
                fresh: status == "new",
            }),
            _ => Err(StoreError::CorruptRecord(reply.join("|"))),
        }
    }

    /// Releases, rolls back or commits the order's reservation of `product`.
    /// Returns whether this call changed it, and the record as it now stands.
    pub async fn settle(
        &self,
        product: &str,
        order: &str,
        settlement: Settlement,
    ) -> Result<(bool, Option<Reservation>), StoreError> {
        let mut redis = self.redis.clone();
        let (status, record): (String, String) = settle_script()
            .key(self.lots_key(product))
            .key(self.reservations_key(product))
            .key(self.settled_key(product))
            .key(self.buyers_key(product))
            .key(self.buyers_by_time_key(product))
            .arg(order)
            .arg(settlement.as_arg())
            .arg(unix_millis(harvest_kit::clock::now()))
            .invoke_async(&mut redis)
            .await?;
        let reservation = if record.is_empty() {
            None
        } else {
            Some(Reservation::parse(&record)?)
        };
        Ok((status == "changed", reservation))
    }

    /// A product's lots and reservation records (by order id), read in one
    /// transaction: what an audit of the stock arithmetic needs.
    pub async fn snapshot(&self, product: &str) -> Result<StockSnapshot, StoreError> {
        let mut redis = self.redis.clone();
        let (lot_fields, records): (BTreeMap<String, i64>, BTreeMap<String, String>) =
            redis::pipe()
                .atomic()
                .hgetall(self.lots_key(product))
                .hgetall(self.reservations_key(product))
                .query_async(&mut redis)
                .await?;
        let reservations = records
            .into_iter()
            .map(|(order, record)| Ok((order, Reservation::parse(&record)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(StockSnapshot {
            lots: parse_lots(&lot_fields)?,
            reservations,
        })
    }

    /// The stock event already decided for an order, encoded, and the
    /// current price of each of `products` (`None` for a product that does
    /// not exist), in one round trip.
    pub async fn outcome_and_prices(
        &self,
        order: &str,
        products: &[&str],
    ) -> Result<(Option<Vec<u8>>, Vec<Option<i64>>), StoreError> {
        let mut redis = self.redis.clone();
        let mut pipeline = redis::pipe();
        pipeline.get(self.outcome_key(order));
        for product in products {
            pipeline.hget(self.product_key(product), "price_fen");
        }
        let (outcome, prices): (Option<Vec<u8>>, Vec<Option<i64>>) = {
            let mut replies: Vec<redis::Value> = pipeline.query_async(&mut redis).await?;
            let prices = replies
                .split_off(1)
                .into_iter()
                .map(redis::from_redis_value)
                .collect::<Result<_, _>>()
                .map_err(redis::RedisError::from)?;
            let outcome = match replies.pop() {
                Some(reply) => redis::from_redis_value(reply).map_err(redis::RedisError::from)?,
                None => None,
            };
            (outcome, prices)
        };
        Ok((outcome, prices))
    }

    pub async fn save_outcome(&self, order: &str, encoded: &[u8]) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .set_ex(self.outcome_key(order), encoded, self.retention.as_secs())
            .await?;
        Ok(())
    }
}

fn parse_lots(fields: &BTreeMap<String, i64>) -> Result<Vec<LotState>, StoreError> {
    let mut lots: BTreeMap<&str, LotState> = BTreeMap::new();
    for (field, value) in fields {
        let Some((lot_id, name)) = field.rsplit_once('|') else {
            return Err(StoreError::CorruptRecord(field.clone()));
        };
        let lot = lots.entry(lot_id).or_insert_with(|| LotState {
            lot_id: lot_id.to_owned(),
            received: 0,
            on_hand: 0,
            reserved: 0,
            best_before: Date::from_days(0),
            harvested: Date::from_days(0),
        });
        match name {
            "received" => lot.received = *value,
            "on_hand" => lot.on_hand = *value,
            "reserved" => lot.reserved = *value,
            "best_before" => lot.best_before = Date::from_days(*value as i32),
            "harvested" => lot.harvested = Date::from_days(*value as i32),
            _ => return Err(StoreError::CorruptRecord(field.clone())),
        }
    }
    let mut lots: Vec<LotState> = lots.into_values().collect();
    lots.sort_by(|a, b| (a.best_before, &a.lot_id).cmp(&(b.best_before, &b.lot_id)));
    Ok(lots)
}

/// The fields of a product hash read to build a product, in [`ProductRow`]'s order.
const PRODUCT_FIELDS: &[&str] = &["data", "price_fen", "per_buyer_limit", "updated_at_ms"];

/// `data`, `price_fen`, `per_buyer_limit` and `updated_at_ms` of a product hash.
type ProductRow = (Option<Vec<u8>>, Option<i64>, Option<i64>, Option<i64>);

fn decode_product(
    id: &str,
    (data, price_fen, per_buyer_limit, updated_ms): ProductRow,
) -> Result<Option<Product>, StoreError> {
    let Some(data) = data else {
        return Ok(None);
    };
    let mut product = Product::decode(data.as_slice())
        .map_err(|e| StoreError::CorruptProduct(id.to_owned(), e))?;
    if let Some(price_fen) = price_fen {
        product.price_fen = price_fen;
    }
    if let Some(per_buyer_limit) = per_buyer_limit {
        product.per_buyer_limit = per_buyer_limit;
    }
    if let Some(ms) = updated_ms.filter(|ms| *ms > 0) {
        product.updated_at = Some((UNIX_EPOCH + Duration::from_millis(ms as u64)).into());
    }
    Ok(Some(product))
}

fn matches(filter: &ListFilter, product: &Product) -> bool {
    let seller = product.seller.as_ref();
    let province = seller
        .and_then(|seller| seller.origin.as_ref())
        .map(|origin| origin.province.as_str());
    filter
        .category
        .is_none_or(|category| product.category == category)
        && filter
            .province
            .as_deref()
            .is_none_or(|wanted| province == Some(wanted))
        && filter
            .seller_id
            .as_deref()
            .is_none_or(|wanted| seller.map(|s| s.seller_id.as_str()) == Some(wanted))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_record_shape() {
        let allocation = Allocation {
            unit_price_fen: 1250,
            lots: vec![("lot-a".to_owned(), 3), ("lot_b".to_owned(), 2)],
        };
        assert_eq!(
            Reservation::parse("R|1250|lot-a=3;lot_b=2").ok(),
            Some(Reservation::Reserved(allocation.clone()))
        );
        assert_eq!(
            Reservation::parse("C|1250|lot-a=3;lot_b=2").ok(),
            Some(Reservation::Committed(allocation.clone()))
        );
        assert_eq!(allocation.quantity(), 5);
        assert_eq!(
            Reservation::parse("N|10|4").ok(),
            Some(Reservation::Short {
                requested: 10,
                available: 4
            })
        );
        assert_eq!(
            Reservation::parse("T").ok(),
            Some(Reservation::ReleasedBeforeReserved)
        );
        assert_eq!(
            Reservation::parse("X|1250|lot-a=3;lot_b=2|buyer:hz-1").ok(),
            Some(Reservation::Released(allocation.clone())),
            "the buyer a record ends with is not part of the allocation"
        );
        assert_eq!(
            Reservation::parse("L|3|2|1").ok(),
            Some(Reservation::OverLimit {
                requested: 3,
                limit: 2,
                holds: 1
            })
        );
        for corrupt in [
            "", "R", "R|x|a=1", "Q|1|a=1", "R|1|a=", "N|1|x", "L|1|2", "L|1|2|x",
        ] {
            assert!(Reservation::parse(corrupt).is_err(), "{corrupt:?}");
        }
    }
}
