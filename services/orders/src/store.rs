//! The orders service's state in Redis.
//!
//! Every script touches one key (one hash slot), so the layout runs on Redis
//! Cluster; an order's record carries the hash tag `{order id}`, the indexes
//! beside it their region's or buyer's. A step's pipeline spans those slots;
//! where its order matters, the store says how it keeps it on a cluster
//! ([`OrderStore::write_step`]).
//!
//! ```text
//! {prefix}orders:{o}:order              hash  data (StoredOrder protobuf), version
//! {prefix}orders:placement:{b/k}        hash  order_id, request, lease_until — buyer b's key k
//! {prefix}orders:buyer:{b}              zset  order ids of buyer b, scored by creation (ms);
//!                                           gone twice the retention after b's last order
//! {prefix}orders:deadlines:{region}     zset  "payment:o" / "pickup:o", scored by due time (ms)
//! {prefix}orders:outbox:{region}        zset  orders with events not yet acknowledged, by time
//! {prefix}orders:watch:o                pub/sub channel: order o changed
//! ```

use std::sync::OnceLock;
use std::time::Duration;

use harvest_domain::Region;
use harvest_kit::store::Redis;
use harvest_proto::common::v1::OrderState;
use harvest_proto::orders::storage::v1::StoredOrder;
use prost::Message;
use redis::{AsyncCommands, ErrorKind, FromRedisValue, Pipeline, Script, ServerErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("stored order {0} is corrupt")]
    Corrupt(String, #[source] prost::DecodeError),
    #[error("unexpected reply from a script: {0}")]
    Reply(String),
}

/// An order as read, with the version to write it back with.
#[derive(Clone, Debug)]
pub struct Versioned {
    pub record: StoredOrder,
    pub version: u64,
}

/// Who holds an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This call placed the order.
    New(String),
    /// Another call placed this order; take over when its lease expired.
    Existing { order_id: String, take_over: bool },
    /// The key was used for a different request.
    Conflict(String),
}

/// What a decided step writes beside the order's record, in the same round
/// trip.
#[derive(Clone, Debug)]
pub struct StepWrites<'a> {
    pub region: &'a Region,
    /// Deadlines the step starts, with their due times (ms).
    pub schedule: &'a [(DeadlineKind, i64)],
    /// When set, the order has events to publish: the time (ms) to note it
    /// under, for the outbox sweeper.
    pub outbox_at: Option<i64>,
    /// The order's state changed: wake its watchers.
    pub notify: bool,
    /// A new order: list it under its buyer (id, creation time in ms),
    /// unless it is listed already.
    pub buyer_index: Option<(&'a str, i64)>,
}

/// What kind of deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeadlineKind {
    /// An order still PLACED: the catalog has not answered.
    Placement,
    Payment,
    Pickup,
}

impl DeadlineKind {
    fn tag(self) -> &'static str {
        match self {
            DeadlineKind::Placement => "placement",
            DeadlineKind::Payment => "payment",
            DeadlineKind::Pickup => "pickup",
        }
    }
}

fn script(cell: &'static OnceLock<Script>, source: &str) -> &'static Script {
    cell.get_or_init(|| Script::new(source))
}

static CLAIM_PLACEMENT: OnceLock<Script> = OnceLock::new();
static COMPARE_AND_SET: OnceLock<Script> = OnceLock::new();
static CLAIM_DUE: OnceLock<Script> = OnceLock::new();
static REMOVE_IF_OLDER: OnceLock<Script> = OnceLock::new();

/// Milliseconds since the epoch, by Redis's clock (shared by every replica).
pub fn now_millis() -> i64 {
    harvest_kit::clock::now_ms()
}

#[derive(Clone)]
pub struct OrderStore {
    redis: Redis,
    prefix: String,
    /// How long an ended order is kept.
    retention: Duration,
}

impl OrderStore {
    pub fn new(redis: Redis, prefix: &str, retention: Duration) -> Self {
        OrderStore {
            redis,
            prefix: prefix.to_owned(),
            retention,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn order_key(&self, order: &str) -> String {
        format!("{}orders:{{{order}}}:order", self.prefix)
    }

    fn placement_key(&self, buyer: &str, key: &str) -> String {
        format!("{}orders:placement:{{{buyer}/{key}}}", self.prefix)
    }

    fn buyer_key(&self, buyer: &str) -> String {
        format!("{}orders:buyer:{{{buyer}}}", self.prefix)
    }

    fn deadlines_key(&self, region: &Region) -> String {
        format!("{}orders:deadlines:{{{region}}}", self.prefix)
    }

    fn outbox_key(&self, region: &Region) -> String {
        format!("{}orders:outbox:{{{region}}}", self.prefix)
    }

    /// The pub/sub channel announcing changes of an order.
    pub fn watch_channel(&self, order: &str) -> String {
        format!("{}orders:watch:{order}", self.prefix)
    }

    /// The pattern matching every order's channel.
    pub fn watch_pattern(&self) -> String {
        format!("{}orders:watch:*", self.prefix)
    }

    pub async fn claim_placement(
        &self,
        buyer: &str,
        key: &str,
        order_id: &str,
        request: &[u8],
        lease: Duration,
        keep_for: Duration,
    ) -> Result<Claim, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = script(
            &CLAIM_PLACEMENT,
            include_str!("scripts/claim_placement.lua"),
        )
        .key(self.placement_key(buyer, key))
        .arg(order_id)
        .arg(request)
        .arg(now_millis())
        .arg(lease.as_millis() as u64)
        .arg(keep_for.as_secs())
        .invoke_async(&mut redis)
        .await?;
        match reply.as_slice() {
            [status, order] if status == "new" => Ok(Claim::New(order.clone())),
            [status, order] if status == "conflict" => Ok(Claim::Conflict(order.clone())),
            [status, order, expired] if status == "existing" => Ok(Claim::Existing {
                order_id: order.clone(),
                take_over: expired == "1",
            }),
            _ => Err(StoreError::Reply(reply.join(" "))),
        }
    }

    pub async fn load(&self, order: &str) -> Result<Option<Versioned>, StoreError> {
        let mut redis = self.redis.clone();
        let (data, version): (Option<Vec<u8>>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.order_key(order))
            .arg(&["data", "version"])
            .query_async(&mut redis)
            .await?;
        let Some(data) = data else {
            return Ok(None);
        };
        let record = StoredOrder::decode(data.as_slice())
            .map_err(|error| StoreError::Corrupt(order.to_owned(), error))?;
        Ok(Some(Versioned {
            record,
            version: version.unwrap_or(0),
        }))
    }

    /// Writes `record` if the stored version is still `version` (0: only if
    /// the order does not exist). Returns the new version, or `None` when
    /// someone else wrote first.
    pub async fn compare_and_set(
        &self,
        order: &str,
        version: u64,
        record: &StoredOrder,
    ) -> Result<Option<u64>, StoreError> {
        let mut redis = self.redis.clone();
        let written: u64 = script(
            &COMPARE_AND_SET,
            include_str!("scripts/compare_and_set.lua"),
        )
        .key(self.order_key(order))
        .arg(version)
        .arg(record.encode_to_vec())
        .invoke_async(&mut redis)
        .await?;
        Ok((written > 0).then_some(written))
    }

    /// Writes a decided step: the deadlines it starts and the outbox note
    /// first (so that a write that wins can forget nothing it promised;
    /// after one that loses, a stray deadline is refused as stale and a
    /// stray note cleared by the sweeper), then the record if the stored
    /// version is still `version`, then the watchers' wake-up (a spurious
    /// one costs them a read). One round trip on one server, which runs a
    /// pipeline in order. On a cluster those notes live in other slots than
    /// the record ({region}, {buyer}), and a pipeline split by slot keeps no
    /// order across slots: the notes go first, on their own, and the record
    /// and the wake-up after, one more round trip. Returns the new version,
    /// or `None` when someone else wrote first.
    pub async fn write_step(
        &self,
        order: &str,
        version: u64,
        record: &StoredOrder,
        writes: &StepWrites<'_>,
    ) -> Result<Option<u64>, StoreError> {
        let mut pipe = redis::pipe();
        self.note_step(&mut pipe, order, writes);
        if self.redis.is_cluster() && !pipe.is_empty() {
            let () = self.query(&pipe).await?;
            pipe.clear();
        }
        let cas = self.compare_and_set_invocation(order, version, record);
        pipe.invoke_script(&cas);
        if writes.notify {
            pipe.publish(self.watch_channel(order), order).ignore();
        }
        let (written,): (u64,) = self.query(&pipe).await?;
        Ok((written > 0).then_some(written))
    }

    /// Adds to `pipe` what a step notes beside the order's record: the
    /// deadlines it starts, the outbox note, the buyer's list.
    fn note_step(&self, pipe: &mut Pipeline, order: &str, writes: &StepWrites<'_>) {
        for (kind, due) in writes.schedule {
            pipe.zadd(
                self.deadlines_key(writes.region),
                format!("{}:{order}", kind.tag()),
                *due,
            )
            .ignore();
        }
        if let Some(at) = writes.outbox_at {
            // Never moved back: a write that loses its race, or that was
            // decided earlier and arrives late, must not give a newer note
            // an older time, which a finisher of that older time would then
            // take for its own and remove while the newer events wait.
            pipe.cmd("ZADD")
                .arg(self.outbox_key(writes.region))
                .arg("GT")
                .arg(at)
                .arg(order)
                .ignore();
        }
        if let Some((buyer, created_ms)) = writes.buyer_index {
            pipe.cmd("ZADD")
                .arg(self.buyer_key(buyer))
                .arg("NX")
                .arg(created_ms)
                .arg(order)
                .ignore();
            // Orders placed twice the retention ago are gone: so go their
            // entries in the buyer's list.
            let kept_for = 2 * self.retention.as_millis() as i64;
            let forgotten = created_ms - kept_for;
            pipe.zrembyscore(self.buyer_key(buyer), "-inf", forgotten)
                .ignore()
                // A buyer who never orders again: the whole list goes.
                .pexpire(self.buyer_key(buyer), kept_for)
                .ignore();
        }
    }

    /// After the events of a step were acknowledged: writes the record with
    /// its outbox emptied if the stored version is still `version`, forgets
    /// the outbox note made at `outbox_at` (unless renewed since), and drops
    /// the deadlines the order has left behind. One round trip (one per slot
    /// on a cluster, sent together: these need no order, as the events are
    /// out already, and a note cleared before a record write that never
    /// lands only leaves acknowledged events in the outbox, published again
    /// under the same ids by whoever touches the order next). `None` when
    /// someone else wrote first.
    pub async fn finish_outbox(
        &self,
        order: &str,
        version: u64,
        record: &StoredOrder,
        region: &Region,
        outbox_at: i64,
        unschedule: &[DeadlineKind],
    ) -> Result<Option<u64>, StoreError> {
        let mut pipe = redis::pipe();
        let cas = self.compare_and_set_invocation(order, version, record);
        pipe.invoke_script(&cas);
        let mut clear = script(
            &REMOVE_IF_OLDER,
            include_str!("scripts/remove_if_older.lua"),
        )
        .prepare_invoke();
        clear.key(self.outbox_key(region)).arg(order).arg(outbox_at);
        pipe.invoke_script(&clear).ignore();
        for kind in unschedule {
            pipe.zrem(
                self.deadlines_key(region),
                format!("{}:{order}", kind.tag()),
            )
            .ignore();
        }
        let (written,): (u64,) = self.query(&pipe).await?;
        Ok((written > 0).then_some(written))
    }

    fn compare_and_set_invocation<'a>(
        &self,
        order: &str,
        version: u64,
        record: &StoredOrder,
    ) -> redis::ScriptInvocation<'a> {
        let mut invocation = script(
            &COMPARE_AND_SET,
            include_str!("scripts/compare_and_set.lua"),
        )
        .prepare_invoke();
        let ended = record.order.as_ref().is_some_and(|order| {
            matches!(order.state(), OrderState::Delivered | OrderState::Cancelled)
        });
        let keep_ms = if ended {
            self.retention.as_millis() as u64
        } else {
            0
        };
        invocation
            .key(self.order_key(order))
            .arg(version)
            .arg(record.encode_to_vec())
            .arg(keep_ms);
        invocation
    }

    /// Runs a pipeline; when Redis no longer knows a script (it restarted),
    /// loads every script of this store and runs it again. The pipeline's
    /// other commands then run twice, so they must be idempotent. On a
    /// cluster the client sends SCRIPT LOAD to every node, so the script is
    /// there whichever node owns the key.
    async fn query<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, StoreError> {
        let mut redis = self.redis.clone();
        match pipe.query_async(&mut redis).await {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                for (cell, source) in [
                    (
                        &COMPARE_AND_SET,
                        include_str!("scripts/compare_and_set.lua"),
                    ),
                    (
                        &REMOVE_IF_OLDER,
                        include_str!("scripts/remove_if_older.lua"),
                    ),
                ] {
                    let _: String = script(cell, source)
                        .prepare_invoke()
                        .load_async(&mut redis)
                        .await?;
                }
                Ok(pipe.query_async(&mut redis).await?)
            }
            result => Ok(result?),
        }
    }

    /// Up to `limit` order ids of a buyer, newest first, strictly after the
    /// cursor `(created_ms, order_id)`; and whether more follow.
    pub async fn buyer_orders(
        &self,
        buyer: &str,
        after: Option<(i64, String)>,
        limit: usize,
    ) -> Result<(Vec<(String, i64)>, bool), StoreError> {
        let mut redis = self.redis.clone();
        let key = self.buyer_key(buyer);
        let max = after
            .as_ref()
            .map_or_else(|| "+inf".to_owned(), |(ms, _)| ms.to_string());
        let mut skip = 0usize;
        let mut found = Vec::with_capacity(limit);
        loop {
            let batch = (limit + 1).max(16);
            let rows: Vec<(String, i64)> = redis
                .zrevrangebyscore_limit_withscores(
                    &key,
                    &max,
                    "-inf",
                    skip as isize,
                    batch as isize,
                )
                .await?;
            let exhausted = rows.len() < batch;
            skip += rows.len();
            for (order, ms) in rows {
                // Members sharing the cursor's score come in reverse id order:
                // skip those at or before the cursor.
                if let Some((after_ms, after_id)) = &after
                    && ms == *after_ms
                    && order.as_str() >= after_id.as_str()
                {
                    continue;
                }
                if found.len() == limit {
                    return Ok((found, true));
                }
                found.push((order, ms));
            }
            if exhausted {
                return Ok((found, false));
            }
        }
    }

    /// When the region's earliest deadline and earliest outbox note fell
    /// due (ms since the epoch), in one round trip; `None` for an empty set.
    /// A claimed deadline's time is its lease's end, so an earliest time
    /// long past is work nobody is doing.
    pub async fn earliest_due(
        &self,
        region: &Region,
    ) -> Result<(Option<i64>, Option<i64>), StoreError> {
        let mut redis = self.redis.clone();
        let first = |key: String| {
            let mut command = redis::cmd("ZRANGE");
            command.arg(key).arg(0).arg(0).arg("WITHSCORES");
            command
        };
        // Both sets share the region's hash tag: one pipeline, one slot.
        type First = Vec<(String, f64)>;
        let (deadline, outbox): (First, First) = redis::pipe()
            .add_command(first(self.deadlines_key(region)))
            .add_command(first(self.outbox_key(region)))
            .query_async(&mut redis)
            .await?;
        let at = |found: First| found.first().map(|(_, score)| *score as i64);
        Ok((at(deadline), at(outbox)))
    }

    /// Claims up to `limit` due deadlines of a region for `lease`.
    pub async fn claim_due(
        &self,
        region: &Region,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<(DeadlineKind, String)>, StoreError> {
        let mut redis = self.redis.clone();
        let members: Vec<String> = script(&CLAIM_DUE, include_str!("scripts/claim_due.lua"))
            .key(self.deadlines_key(region))
            .arg(now_millis())
            .arg(lease.as_millis() as u64)
            .arg(limit)
            .invoke_async(&mut redis)
            .await?;
        Ok(members
            .into_iter()
            .filter_map(|member| {
                let (tag, order) = member.split_once(':')?;
                let kind = match tag {
                    "placement" => DeadlineKind::Placement,
                    "payment" => DeadlineKind::Payment,
                    "pickup" => DeadlineKind::Pickup,
                    _ => return None,
                };
                Some((kind, order.to_owned()))
            })
            .collect())
    }

    pub async fn finish_deadline(
        &self,
        region: &Region,
        kind: DeadlineKind,
        order: &str,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .zrem(
                self.deadlines_key(region),
                format!("{}:{order}", kind.tag()),
            )
            .await?;
        Ok(())
    }

    /// Forgets the note, unless it was renewed after `seen_ms`.
    pub async fn clear_outbox_mark(
        &self,
        region: &Region,
        order: &str,
        seen_ms: i64,
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: i64 = script(
            &REMOVE_IF_OLDER,
            include_str!("scripts/remove_if_older.lua"),
        )
        .key(self.outbox_key(region))
        .arg(order)
        .arg(seen_ms)
        .invoke_async(&mut redis)
        .await?;
        Ok(())
    }

    /// Orders whose events have waited longer than `older_than`.
    pub async fn stale_outboxes(
        &self,
        region: &Region,
        older_than: Duration,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut redis = self.redis.clone();
        let cutoff = now_millis() - older_than.as_millis() as i64;
        Ok(redis
            .zrangebyscore_limit(self.outbox_key(region), "-inf", cutoff, 0, limit as isize)
            .await?)
    }
}
