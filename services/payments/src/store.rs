//! The payments' state in Redis.
//!
//! Keys are laid out for Redis Cluster: everything about one order's payment
//! shares the hash tag `{order id}`, and every script touches that order's
//! keys only. The listing indexes and the refund idempotency keys live in
//! other slots and are written with single-key commands; the pipelines that
//! reindex or list payments span those slots, and on a cluster the
//! connection sends them split by slot (none needs its commands in order).
//!
//! ```text
//! {prefix}payments:{o}:payment         hash    the payment (fields below)
//! {prefix}payments:{o}:entries         list    LedgerEntry protobufs, oldest first
//! {prefix}payments:refund-key:{k}      string  fingerprint of the refund request that used key k
//! {prefix}payments:index:<state>       zset    order ids (score 0, ordered by id) per state, and `all`
//!                                              (no hash tag: each index its own slot)
//! {prefix}payments:payouts:{s}        zset    order ids (score 0, ordered by id) whose capture paid
//!                                              seller s out
//! {prefix}payments:sandbox:{key}       hash    the sandbox provider's memory of an idempotency key
//! ```
//!
//! Payment hash fields: `state`, `payment_id`, `buyer_id`, `region`,
//! `method`, `amount` (asked to authorize), `authorized`, `captured`,
//! `refunded` (fen), `reference` (the provider's, of the authorization),
//! `decline_reason`, `capture` (the planned split while capturing),
//! `refund_pending` (the refund key being paid back), `refund:<key>` (a
//! refund record), `event:<step>` (the event recorded for a step),
//! `seen:<event id>` (the steps an incoming event led to), `created_ms`,
//! `updated_ms`.
//!
//! The states, and the scripts that move between them:
//!
//! ```text
//! (none) ─open(cancel)─▶ cancelled
//! (none) ─open(authorize)─▶ authorizing ─decide─▶ authorized | declined
//! authorized ─begin_settlement─▶ capturing ─settle─▶ captured
//! authorized ─begin_settlement─▶ voiding ─settle─▶ voided
//! captured | partially_refunded ─begin_refund, finish_refund─▶ partially_refunded | refunded
//! ```
//!
//! `authorizing`, `capturing`, `voiding` and a pending refund mean that the
//! provider is being asked: whoever finds the payment so (a redelivered event,
//! a cancellation, a retried refund) asks again with the same idempotency key
//! and records the answer, so a crash between asking and recording never
//! moves money twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harvest_domain::Id;
use harvest_kit::store::Redis;
use harvest_proto::payments::v1::{LedgerEntry, LedgerEntryKind, PaymentState};
use prost::Message;
use redis::{AsyncCommands, Script};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("redis command failed")]
    Redis(#[from] redis::RedisError),
    #[error("stored payment of order {0} is corrupt: {1}")]
    Corrupt(String, String),
    #[error("stored ledger entry of order {0} is corrupt")]
    CorruptEntry(String, #[source] prost::DecodeError),
}

/// Where a payment stands, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stage {
    /// The order was cancelled before any payment: none will be made.
    Cancelled,
    Authorizing,
    Authorized,
    Declined,
    Capturing,
    Voiding,
    Voided,
    Captured,
    PartiallyRefunded,
    Refunded,
}

impl Stage {
    pub const ALL: [Stage; 10] = [
        Stage::Cancelled,
        Stage::Authorizing,
        Stage::Authorized,
        Stage::Declined,
        Stage::Capturing,
        Stage::Voiding,
        Stage::Voided,
        Stage::Captured,
        Stage::PartiallyRefunded,
        Stage::Refunded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Cancelled => "cancelled",
            Stage::Authorizing => "authorizing",
            Stage::Authorized => "authorized",
            Stage::Declined => "declined",
            Stage::Capturing => "capturing",
            Stage::Voiding => "voiding",
            Stage::Voided => "voided",
            Stage::Captured => "captured",
            Stage::PartiallyRefunded => "partially_refunded",
            Stage::Refunded => "refunded",
        }
    }

    pub fn parse(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.as_str() == name)
    }

    /// The state clients see; `None` for an order that has no payment.
    /// Capturing and voiding still hold the authorization.
    pub fn payment_state(self) -> Option<PaymentState> {
        match self {
            Stage::Cancelled => None,
            Stage::Authorizing => Some(PaymentState::Pending),
            Stage::Authorized | Stage::Capturing | Stage::Voiding => Some(PaymentState::Authorized),
            Stage::Declined => Some(PaymentState::Declined),
            Stage::Voided => Some(PaymentState::Voided),
            Stage::Captured => Some(PaymentState::Captured),
            Stage::PartiallyRefunded => Some(PaymentState::PartiallyRefunded),
            Stage::Refunded => Some(PaymentState::Refunded),
        }
    }
}

/// The name of a client-visible state in index keys.
pub fn state_index_name(state: PaymentState) -> &'static str {
    match state {
        PaymentState::Unspecified => "all",
        PaymentState::Pending => "pending",
        PaymentState::Authorized => "authorized",
        PaymentState::Declined => "declined",
        PaymentState::Voided => "voided",
        PaymentState::Captured => "captured",
        PaymentState::PartiallyRefunded => "partially_refunded",
        PaymentState::Refunded => "refunded",
    }
}

const LISTED_STATES: [PaymentState; 7] = [
    PaymentState::Pending,
    PaymentState::Authorized,
    PaymentState::Declined,
    PaymentState::Voided,
    PaymentState::Captured,
    PaymentState::PartiallyRefunded,
    PaymentState::Refunded,
];

/// One refund of a payment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundRecord {
    /// The provider paid it back (otherwise it is still being asked).
    pub done: bool,
    pub amount: i64,
    /// Refunded in all once this refund is done.
    pub total_after: i64,
    pub reason: String,
}

impl RefundRecord {
    fn parse(record: &str) -> Option<RefundRecord> {
        let mut fields = record.splitn(4, '|');
        let done = match fields.next()? {
            "pending" => false,
            "done" => true,
            _ => return None,
        };
        Some(RefundRecord {
            done,
            amount: fields.next()?.parse().ok()?,
            total_after: fields.next()?.parse().ok()?,
            reason: fields.next()?.to_owned(),
        })
    }
}

/// An order's payment as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredPayment {
    pub order_id: String,
    pub stage: Stage,
    pub payment_id: String,
    pub buyer_id: String,
    pub region: String,
    pub payment_method: String,
    /// Asked to authorize.
    pub amount: i64,
    pub authorized: i64,
    pub captured: i64,
    pub refunded: i64,
    pub reference: String,
    pub decline_reason: String,
    /// The planned split (an encoded PaymentCaptured) while capturing.
    pub capture_plan: Option<Vec<u8>>,
    pub refund_pending: Option<String>,
    pub refunds: BTreeMap<String, RefundRecord>,
    pub created_ms: i64,
    pub updated_ms: i64,
    events: HashMap<String, Vec<u8>>,
    seen: HashMap<String, String>,
}

impl StoredPayment {
    fn parse(order_id: &str, fields: HashMap<String, Vec<u8>>) -> Result<Option<Self>, StoreError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let corrupt = |what: &str| StoreError::Corrupt(order_id.to_owned(), what.to_owned());
        let text = |name: &str| {
            fields
                .get(name)
                .map(|value| String::from_utf8_lossy(value).into_owned())
                .unwrap_or_default()
        };
        let number = |name: &str| -> Result<i64, StoreError> {
            match fields.get(name) {
                None => Ok(0),
                Some(value) => std::str::from_utf8(value)
                    .ok()
                    .and_then(|value| value.parse().ok())
                    .ok_or_else(|| corrupt(name)),
            }
        };
        let stage = Stage::parse(&text("state")).ok_or_else(|| corrupt("state"))?;
        let mut events = HashMap::new();
        let mut seen = HashMap::new();
        let mut refunds = BTreeMap::new();
        for (name, value) in &fields {
            if let Some(step) = name.strip_prefix("event:") {
                events.insert(step.to_owned(), value.clone());
            } else if let Some(event_id) = name.strip_prefix("seen:") {
                seen.insert(
                    event_id.to_owned(),
                    String::from_utf8_lossy(value).into_owned(),
                );
            } else if let Some(key) = name.strip_prefix("refund:") {
                let record = std::str::from_utf8(value)
                    .ok()
                    .and_then(RefundRecord::parse)
                    .ok_or_else(|| corrupt(name))?;
                refunds.insert(key.to_owned(), record);
            }
        }
        Ok(Some(StoredPayment {
            order_id: order_id.to_owned(),
            stage,
            payment_id: text("payment_id"),
            buyer_id: text("buyer_id"),
            region: text("region"),
            payment_method: text("method"),
            amount: number("amount")?,
            authorized: number("authorized")?,
            captured: number("captured")?,
            refunded: number("refunded")?,
            reference: text("reference"),
            decline_reason: text("decline_reason"),
            capture_plan: fields.get("capture").cloned(),
            refund_pending: Some(text("refund_pending")).filter(|key| !key.is_empty()),
            refunds,
            created_ms: number("created_ms")?,
            updated_ms: number("updated_ms")?,
            events,
            seen,
        }))
    }

    /// The event recorded for a step (`authorization`, `capture`, `void`,
    /// `refund:<key>`), encoded.
    pub fn event(&self, step: &str) -> Option<&[u8]> {
        self.events.get(step).map(Vec::as_slice)
    }

    /// The steps an incoming event led to, if it was handled before.
    pub fn seen(&self, event_id: &str) -> Option<Vec<String>> {
        self.seen.get(event_id).map(|steps| {
            steps
                .split(',')
                .filter(|step| !step.is_empty())
                .map(str::to_owned)
                .collect()
        })
    }
}

/// What a script did to a payment's state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// This call moved the payment to this stage.
    Changed(Stage),
    /// Nothing changed; the payment is at this stage (`None`: no payment).
    Unchanged(Option<Stage>),
    /// Nothing changed: the request breaks a ledger rule.
    Refused(String),
}

/// What asking to set money aside for a refund did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundStart {
    Started(RefundRecord),
    /// This refund key was used before.
    Existing(RefundRecord),
    /// Another refund of the payment is pending, under this key.
    Busy(String),
    /// The payment is not captured.
    NotCaptured(Option<Stage>),
    NothingLeft {
        captured: i64,
    },
    Exceeds {
        captured: i64,
        refunded: i64,
    },
}

/// A capture or a void.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    Capture,
    Void,
}

impl Settlement {
    fn as_arg(self) -> &'static str {
        match self {
            Settlement::Capture => "capture",
            Settlement::Void => "void",
        }
    }
}

/// A split to capture, as the script checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturePlan {
    pub amount: i64,
    pub commission: i64,
    pub payouts: Vec<i64>,
    /// The whole plan, encoded, kept until the capture is recorded.
    pub encoded: Vec<u8>,
}

/// The payment to open for an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewPayment {
    pub payment_id: String,
    pub buyer_id: String,
    pub region: String,
    pub payment_method: String,
    pub amount: i64,
}

macro_rules! script {
    ($name:ident, $file:literal) => {
        fn $name() -> &'static Script {
            static SCRIPT: OnceLock<Script> = OnceLock::new();
            SCRIPT.get_or_init(|| Script::new(include_str!($file)))
        }
    };
}

script!(open_script, "scripts/open.lua");
script!(decide_script, "scripts/decide.lua");
script!(begin_settlement_script, "scripts/begin_settlement.lua");
script!(settle_script, "scripts/settle.lua");
script!(begin_refund_script, "scripts/begin_refund.lua");
script!(finish_refund_script, "scripts/finish_refund.lua");
script!(release_claim_script, "scripts/release_claim.lua");

pub fn unix_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// Milliseconds since the epoch, by Redis's clock (shared by every replica).
fn now_ms() -> i64 {
    unix_millis(harvest_kit::clock::now())
}

#[derive(Clone)]
pub struct PaymentStore {
    redis: Redis,
    prefix: String,
    /// How long a settled payment is kept.
    retention: Duration,
}

impl PaymentStore {
    pub fn new(redis: Redis, prefix: &str) -> Self {
        PaymentStore {
            redis,
            prefix: prefix.to_owned(),
            retention: Duration::from_secs(30 * 24 * 3600),
        }
    }

    /// Keeps a payment that reached a final state this long.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn payment_key(&self, order: &str) -> String {
        format!("{}payments:{{{order}}}:payment", self.prefix)
    }

    fn entries_key(&self, order: &str) -> String {
        format!("{}payments:{{{order}}}:entries", self.prefix)
    }

    fn refund_claim_key(&self, key: &str) -> String {
        format!("{}payments:refund-key:{{{key}}}", self.prefix)
    }

    fn payouts_key(&self, seller: &str) -> String {
        format!("{}payments:payouts:{{{seller}}}", self.prefix)
    }

    fn index_key(&self, state: PaymentState) -> String {
        format!("{}payments:index:{}", self.prefix, state_index_name(state))
    }

    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn payment(&self, order: &str) -> Result<Option<StoredPayment>, StoreError> {
        let mut redis = self.redis.clone();
        let fields: HashMap<String, Vec<u8>> = redis.hgetall(self.payment_key(order)).await?;
        StoredPayment::parse(order, fields)
    }

    /// The payment's ledger entries, oldest first.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn entries(&self, order: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        let mut redis = self.redis.clone();
        let encoded: Vec<Vec<u8>> = redis.lrange(self.entries_key(order), 0, -1).await?;
        encoded
            .iter()
            .map(|bytes| {
                LedgerEntry::decode(bytes.as_slice())
                    .map_err(|e| StoreError::CorruptEntry(order.to_owned(), e))
            })
            .collect()
    }

    /// Starts the authorization of an order's payment, unless it has one.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn open(&self, order: &Id, payment: &NewPayment) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = open_script()
            .key(self.payment_key(order.as_str()))
            .arg("authorize")
            .arg(now_ms())
            .arg(&payment.payment_id)
            .arg(&payment.buyer_id)
            .arg(&payment.region)
            .arg(&payment.payment_method)
            .arg(payment.amount)
            .invoke_async(&mut redis)
            .await?;
        transition(order.as_str(), &reply, "opened")
    }

    /// Marks an order that has no payment as cancelled, so none is made; the
    /// mark is kept for the retention.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn close_unpaid(&self, order: &Id) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = open_script()
            .key(self.payment_key(order.as_str()))
            .arg("cancel")
            .arg(now_ms())
            .arg(self.retention.as_millis() as i64)
            .invoke_async(&mut redis)
            .await?;
        transition(order.as_str(), &reply, "opened")
    }

    /// Records the provider's answer to the authorization. `entry` is the
    /// authorization's ledger entry (ignored for a decline).
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn decide(
        &self,
        order: &Id,
        approved: bool,
        reference_or_reason: &str,
        event: &[u8],
        entry: &[u8],
    ) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = decide_script()
            .key(self.payment_key(order.as_str()))
            .key(self.entries_key(order.as_str()))
            .arg(if approved { "authorized" } else { "declined" })
            .arg(reference_or_reason)
            .arg(event)
            .arg(now_ms())
            .arg(entry)
            .invoke_async(&mut redis)
            .await?;
        transition(order.as_str(), &reply, "recorded")
    }

    /// Starts capturing (with `plan`) or voiding an authorized payment.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn begin_settlement(
        &self,
        order: &Id,
        settlement: Settlement,
        plan: Option<&CapturePlan>,
    ) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let mut invocation = begin_settlement_script().prepare_invoke();
        invocation
            .key(self.payment_key(order.as_str()))
            .arg(settlement.as_arg())
            .arg(now_ms());
        if let Some(plan) = plan {
            invocation
                .arg(plan.amount)
                .arg(plan.commission)
                .arg(plan.encoded.as_slice());
            for payout in &plan.payouts {
                invocation.arg(*payout);
            }
        }
        let reply: Vec<String> = invocation.invoke_async(&mut redis).await?;
        transition(order.as_str(), &reply, "started")
    }

    /// Records an approved capture or void with its ledger entries.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn settle(
        &self,
        order: &Id,
        settlement: Settlement,
        amount: i64,
        event: &[u8],
        entries: &[Vec<u8>],
    ) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let mut invocation = settle_script().prepare_invoke();
        invocation
            .key(self.payment_key(order.as_str()))
            .key(self.entries_key(order.as_str()))
            .arg(settlement.as_arg())
            .arg(event)
            .arg(now_ms())
            .arg(amount);
        for entry in entries {
            invocation.arg(entry.as_slice());
        }
        let reply: Vec<String> = invocation.invoke_async(&mut redis).await?;
        transition(order.as_str(), &reply, "recorded")
    }

    /// Sets money aside for refund `key` of a captured payment: `amount` fen,
    /// or everything not yet refunded when 0.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn begin_refund(
        &self,
        order: &Id,
        key: &str,
        amount: i64,
        reason: &str,
    ) -> Result<RefundStart, StoreError> {
        let mut redis = self.redis.clone();
        let reply: Vec<String> = begin_refund_script()
            .key(self.payment_key(order.as_str()))
            .arg(key)
            .arg(amount)
            .arg(reason)
            .arg(now_ms())
            .invoke_async(&mut redis)
            .await?;
        let corrupt = || StoreError::Corrupt(order.to_string(), format!("refund reply {reply:?}"));
        let record = |text: &str| RefundRecord::parse(text).ok_or_else(corrupt);
        let number = |text: &str| text.parse::<i64>().map_err(|_| corrupt());
        match reply.as_slice() {
            [kind, text] if kind == "started" => Ok(RefundStart::Started(record(text)?)),
            [kind, text] if kind == "existing" => Ok(RefundStart::Existing(record(text)?)),
            [kind, other] if kind == "busy" => Ok(RefundStart::Busy(other.clone())),
            [kind, state] if kind == "state" => Ok(RefundStart::NotCaptured(Stage::parse(state))),
            [kind, captured, _] if kind == "nothing" => Ok(RefundStart::NothingLeft {
                captured: number(captured)?,
            }),
            [kind, captured, refunded] if kind == "exceeds" => Ok(RefundStart::Exceeds {
                captured: number(captured)?,
                refunded: number(refunded)?,
            }),
            _ => Err(corrupt()),
        }
    }

    /// Records (`Some((event, entry))`) or drops (`None`) pending refund `key`.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn finish_refund(
        &self,
        order: &Id,
        key: &str,
        recorded: Option<(&[u8], &[u8])>,
    ) -> Result<Transition, StoreError> {
        let mut redis = self.redis.clone();
        let mut invocation = finish_refund_script().prepare_invoke();
        invocation
            .key(self.payment_key(order.as_str()))
            .key(self.entries_key(order.as_str()))
            .arg(key)
            .arg(if recorded.is_some() {
                "record"
            } else {
                "abort"
            })
            .arg(now_ms());
        if let Some((event, entry)) = recorded {
            invocation.arg(event).arg(entry);
        }
        let reply: Vec<String> = invocation.invoke_async(&mut redis).await?;
        match reply.as_slice() {
            [kind, state] if kind == "recorded" || kind == "aborted" => {
                Ok(Transition::Changed(parse_stage(order.as_str(), state)?))
            }
            [kind, _] if kind == "existing" => Ok(Transition::Unchanged(None)),
            _ => Err(StoreError::Corrupt(
                order.to_string(),
                format!("refund reply {reply:?}"),
            )),
        }
    }

    /// Remembers which steps an incoming event led to.
    pub async fn mark_seen(
        &self,
        order: &Id,
        event_id: &str,
        steps: &[String],
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: () = redis
            .hset(
                self.payment_key(order.as_str()),
                format!("seen:{event_id}"),
                steps.join(","),
            )
            .await?;
        Ok(())
    }

    /// Files the order under its payment's current state (and `all`), and
    /// under no other, and under each seller in `paid_out`. Idempotent, so a
    /// replay repairs an index that a crash left behind.
    #[tracing::instrument(skip_all, fields(order_id = %order))]
    pub async fn reindex(
        &self,
        order: &str,
        state: Option<PaymentState>,
        paid_out: &[&str],
    ) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        for seller in paid_out {
            pipe.zadd(self.payouts_key(seller), order, 0).ignore();
        }
        for listed in LISTED_STATES {
            if Some(listed) == state {
                pipe.zadd(self.index_key(listed), order, 0).ignore();
            } else {
                pipe.zrem(self.index_key(listed), order).ignore();
            }
        }
        if state.is_some() {
            pipe.zadd(self.index_key(PaymentState::Unspecified), order, 0)
                .ignore();
        }
        // A payment that moves no more money but by refund is kept for the
        // retention from its last step, then goes (its index entries with
        // it, as lists come across them).
        let settled = matches!(
            state,
            Some(
                PaymentState::Declined
                    | PaymentState::Voided
                    | PaymentState::Captured
                    | PaymentState::PartiallyRefunded
                    | PaymentState::Refunded
            )
        );
        if settled {
            let keep = self.retention.as_millis() as i64;
            pipe.pexpire(self.payment_key(order), keep)
                .ignore()
                .pexpire(self.entries_key(order), keep)
                .ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    /// Up to `limit` payments in `state` (every state for `Unspecified`) with
    /// order ids after `after`, in order id order, and whether more may follow.
    pub async fn list(
        &self,
        state: PaymentState,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<StoredPayment>, bool), StoreError> {
        let mut redis = self.redis.clone();
        let index = self.index_key(state);
        let mut cursor = after.map_or_else(|| "-".to_owned(), |id| format!("({id}"));
        let batch = (limit * 2).clamp(16, 500);
        let mut found = Vec::new();
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
                pipe.hgetall(self.payment_key(id));
            }
            let rows: Vec<HashMap<String, Vec<u8>>> = pipe.query_async(&mut redis).await?;
            let mut gone = Vec::new();
            for (id, row) in ids.iter().zip(rows) {
                if row.is_empty() {
                    gone.push(id.as_str());
                    continue;
                }
                let Some(payment) = StoredPayment::parse(id, row)? else {
                    continue;
                };
                // An index may lag a state change that a crash interrupted.
                let listed = payment.stage.payment_state();
                let wanted = match state {
                    PaymentState::Unspecified => listed.is_some(),
                    state => listed == Some(state),
                };
                if !wanted {
                    continue;
                }
                if found.len() == limit {
                    self.forget_in_indexes(&gone).await?;
                    return Ok((found, true));
                }
                found.push(payment);
            }
            self.forget_in_indexes(&gone).await?;
            if ids.len() < batch {
                return Ok((found, false));
            }
        }
    }

    /// The payouts to `seller` of up to `limit` orders after `after` (in
    /// order id order), each with its order id, and the last order id read
    /// when more may follow.
    /// Orders past their retention are dropped from the seller's index as
    /// they are come across.
    pub async fn payouts(
        &self,
        seller: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<(String, LedgerEntry)>, Option<String>), StoreError> {
        let mut redis = self.redis.clone();
        let index = self.payouts_key(seller);
        let ids: Vec<String> = redis
            .zrangebylex_limit(
                &index,
                after.map_or_else(|| "-".to_owned(), |id| format!("({id}")),
                "+",
                0,
                limit as isize + 1,
            )
            .await?;
        let more = ids.len() > limit;
        let ids = &ids[..ids.len().min(limit)];
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.lrange(self.entries_key(id), 0, -1);
        }
        let rows: Vec<Vec<Vec<u8>>> = pipe.query_async(&mut redis).await?;
        let mut found = Vec::new();
        let mut gone = Vec::new();
        for (id, encoded) in ids.iter().zip(rows) {
            if encoded.is_empty() {
                gone.push(id.as_str());
                continue;
            }
            for bytes in encoded {
                let entry = LedgerEntry::decode(bytes.as_slice())
                    .map_err(|e| StoreError::CorruptEntry(id.clone(), e))?;
                if entry.kind() == LedgerEntryKind::Payout && entry.seller_id == seller {
                    found.push((id.clone(), entry));
                }
            }
        }
        if !gone.is_empty() {
            let _: () = redis.zrem(&index, gone).await?;
        }
        let next = more.then(|| ids.last().cloned()).flatten();
        Ok((found, next))
    }

    /// Drops the index entries of payments past their retention.
    async fn forget_in_indexes(&self, gone: &[&str]) -> Result<(), StoreError> {
        if gone.is_empty() {
            return Ok(());
        }
        let mut redis = self.redis.clone();
        let mut pipe = redis::pipe();
        for listed in LISTED_STATES.into_iter().chain([PaymentState::Unspecified]) {
            pipe.zrem(self.index_key(listed), gone).ignore();
        }
        let _: () = pipe.query_async(&mut redis).await?;
        Ok(())
    }

    /// Claims refund idempotency key `key` for the request `fingerprint`.
    /// Returns the fingerprint of an earlier claim, if there was one.
    pub async fn claim_refund_key(
        &self,
        key: &str,
        fingerprint: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis.clone();
        let claim = self.refund_claim_key(key);
        // Remembered for the retention, as long as a payment is kept after
        // its last step.
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&claim)
            .arg(fingerprint)
            .arg("NX")
            .arg("PX")
            .arg(self.retention.as_millis() as u64)
            .query_async(&mut redis)
            .await?;
        if claimed.is_some() {
            return Ok(None);
        }
        Ok(redis.get(&claim).await?)
    }

    /// The fingerprint that holds refund idempotency key `key`, if any.
    pub async fn refund_key_claim(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut redis = self.redis.clone();
        Ok(redis.get(self.refund_claim_key(key)).await?)
    }

    /// Gives back a claim whose request changed nothing.
    pub async fn release_refund_key(&self, key: &str, fingerprint: &str) -> Result<(), StoreError> {
        let mut redis = self.redis.clone();
        let _: i64 = release_claim_script()
            .key(self.refund_claim_key(key))
            .arg(fingerprint)
            .invoke_async(&mut redis)
            .await?;
        Ok(())
    }
}

fn parse_stage(order: &str, name: &str) -> Result<Stage, StoreError> {
    Stage::parse(name)
        .ok_or_else(|| StoreError::Corrupt(order.to_owned(), format!("state {name:?}")))
}

/// Reads a `{changed_word | 'existing' | 'refused', state | reason}` reply.
fn transition(order: &str, reply: &[String], changed_word: &str) -> Result<Transition, StoreError> {
    match reply {
        [kind, state] if kind == changed_word => {
            Ok(Transition::Changed(parse_stage(order, state)?))
        }
        [kind, state] if kind == "existing" => Ok(Transition::Unchanged(if state.is_empty() {
            None
        } else {
            Some(parse_stage(order, state)?)
        })),
        [kind, reason] if kind == "refused" => Ok(Transition::Refused(reason.clone())),
        _ => Err(StoreError::Corrupt(
            order.to_owned(),
            format!("script reply {reply:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_round_trip_and_map_to_client_states() {
        for stage in Stage::ALL {
            assert_eq!(Stage::parse(stage.as_str()), Some(stage));
        }
        assert_eq!(Stage::parse("bogus"), None);
        assert_eq!(Stage::Cancelled.payment_state(), None);
        assert_eq!(
            Stage::Capturing.payment_state(),
            Some(PaymentState::Authorized)
        );
    }

    #[test]
    fn parses_refund_records_with_any_reason() {
        assert_eq!(
            RefundRecord::parse("done|300|500|damaged | bruised"),
            Some(RefundRecord {
                done: true,
                amount: 300,
                total_after: 500,
                reason: "damaged | bruised".to_owned(),
            })
        );
        for corrupt in ["", "done", "pending|x|1|r", "other|1|1|r", "done|1|1"] {
            assert_eq!(RefundRecord::parse(corrupt), None, "{corrupt:?}");
        }
    }
}
