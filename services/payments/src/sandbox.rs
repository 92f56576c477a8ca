//! The built-in sandbox provider, so Harvest runs without any outside service.
//! Its outcomes are chosen by the payment method token:
//!
//! | token | outcome |
//! |---|---|
//! | `approve` | approved |
//! | `decline`, `decline:<reason>` | declined with the reason (default "card declined") |
//! | `transient`, `transient:<n>` | the first n calls (default 2) of a step fail temporarily, then approved |
//! | `slow`, `slow:<ms>` | approved after a delay (default 1500 ms) |
//! | anything else | declined, "unknown payment method" |
//!
//! Only an authorization can be declined: once money is held, capturing,
//! voiding and refunding it are approved. The sandbox remembers every
//! idempotency key in Redis (one hash per key, under the key's hash tag), so
//! the same key gets the same decision and reference after a restart too,
//! for the retention (`redis.retention_secs`) after the key's last call.

use std::sync::OnceLock;
use std::time::Duration;

use harvest_domain::new_id;
use harvest_kit::store::Redis;
use redis::{AsyncCommands, Script};

use crate::provider::{Decision, Operation, PaymentProvider, ProviderError, ProviderRequest};

const DEFAULT_DECLINE_REASON: &str = "card declined";
const DEFAULT_TRANSIENT_FAILURES: u32 = 2;
const DEFAULT_SLOW_MS: u64 = 1_500;
/// Longer delays would only stall a consumer.
const MAX_SLOW_MS: u64 = 60_000;

/// What a payment method token asks the sandbox to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Behavior {
    Approve,
    Decline(String),
    /// Fail this many calls of each step first.
    Transient(u32),
    Slow(Duration),
}

impl Behavior {
    pub fn of(token: &str) -> Behavior {
        let unknown = || Behavior::Decline("unknown payment method".to_owned());
        let (name, argument) = match token.split_once(':') {
            Some((name, argument)) => (name, Some(argument)),
            None => (token, None),
        };
        match (name, argument) {
            ("approve", None) => Behavior::Approve,
            ("decline", None) => Behavior::Decline(DEFAULT_DECLINE_REASON.to_owned()),
            ("decline", Some(reason)) if !reason.trim().is_empty() => {
                Behavior::Decline(reason.trim().to_owned())
            }
            ("decline", Some(_)) => Behavior::Decline(DEFAULT_DECLINE_REASON.to_owned()),
            ("transient", None) => Behavior::Transient(DEFAULT_TRANSIENT_FAILURES),
            ("transient", Some(count)) => count
                .parse()
                .map_or_else(|_| unknown(), Behavior::Transient),
            ("slow", None) => Behavior::Slow(Duration::from_millis(DEFAULT_SLOW_MS)),
            ("slow", Some(ms)) => match ms.parse::<u64>() {
                Ok(ms) if ms <= MAX_SLOW_MS => Behavior::Slow(Duration::from_millis(ms)),
                _ => unknown(),
            },
            _ => unknown(),
        }
    }
}

/// What the sandbox remembers of one idempotency key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SandboxRecord {
    /// Every call with this key, replays included.
    pub calls: i64,
    /// Calls before the decision, temporary failures included.
    pub attempts: i64,
    pub decision: Option<String>,
    pub operation: Option<String>,
    pub amount_fen: Option<i64>,
    pub reference: Option<String>,
    pub reason: Option<String>,
}

#[derive(Clone)]
pub struct SandboxProvider {
    redis: Redis,
    prefix: String,
    latency: Duration,
    /// How long a key is remembered after its last call.
    retention: Duration,
}

/// How long the sandbox remembers a key unless told otherwise, like the
/// services' own retention.
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn sandbox_script() -> &'static Script {
    static SCRIPT: OnceLock<Script> = OnceLock::new();
    SCRIPT.get_or_init(|| Script::new(include_str!("scripts/sandbox.lua")))
}

impl SandboxProvider {
    pub fn new(redis: Redis, prefix: &str, latency: Duration) -> Self {
        SandboxProvider {
            redis,
            prefix: prefix.to_owned(),
            latency,
            retention: DEFAULT_RETENTION,
        }
    }

    /// Remembers each key this long after its last call.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    fn key(&self, idempotency_key: &str) -> String {
        format!("{}payments:sandbox:{{{idempotency_key}}}", self.prefix)
    }

    /// What the sandbox remembers of `idempotency_key`, if it was ever used.
    pub async fn record(
        &self,
        idempotency_key: &str,
    ) -> Result<Option<SandboxRecord>, ProviderError> {
        let mut redis = self.redis.clone();
        let fields: std::collections::HashMap<String, String> = redis
            .hgetall(self.key(idempotency_key))
            .await
            .map_err(ProviderError::Records)?;
        if fields.is_empty() {
            return Ok(None);
        }
        let number = |name: &str| fields.get(name).and_then(|value| value.parse().ok());
        let text = |name: &str| fields.get(name).cloned();
        Ok(Some(SandboxRecord {
            calls: number("calls").unwrap_or(0),
            attempts: number("attempts").unwrap_or(0),
            decision: text("decision"),
            operation: text("operation"),
            amount_fen: number("amount"),
            reference: text("reference"),
            reason: text("reason"),
        }))
    }
}

impl PaymentProvider for SandboxProvider {
    #[tracing::instrument(skip_all, fields(order_id = %request.order_id, operation = request.operation.as_str()))]
    async fn execute(&self, request: &ProviderRequest) -> Result<Decision, ProviderError> {
        let mut behavior = Behavior::of(&request.payment_method);
        if request.operation != Operation::Authorize && matches!(behavior, Behavior::Decline(_)) {
            behavior = Behavior::Approve;
        }
        let mut delay = self.latency;
        let mut failures = 0;
        let (decision, reason) = match &behavior {
            Behavior::Approve => ("approved", ""),
            Behavior::Decline(reason) => ("declined", reason.as_str()),
            Behavior::Transient(count) => {
                failures = *count;
                ("approved", "")
            }
            Behavior::Slow(extra) => {
                delay += *extra;
                ("approved", "")
            }
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut redis = self.redis.clone();
        let reply: Vec<String> = sandbox_script()
            .key(self.key(&request.idempotency_key))
            .arg(request.operation.as_str())
            .arg(request.amount.get())
            .arg(failures)
            .arg(decision)
            .arg(new_id("psb").as_str())
            .arg(reason)
            .arg(self.retention.as_millis() as u64)
            .invoke_async(&mut redis)
            .await
            .map_err(ProviderError::Records)?;
        match reply.as_slice() {
            [kind, attempt] if kind == "transient" => Err(ProviderError::Unavailable(format!(
                "sandbox temporary failure {attempt} for {}",
                request.idempotency_key
            ))),
            [kind, operation, amount] if kind == "conflict" => {
                Err(ProviderError::Refused(format!(
                    "idempotency key {} was used for {operation} of {amount} fen",
                    request.idempotency_key
                )))
            }
            [kind, reference, _] if kind == "approved" => Ok(Decision::Approved {
                reference: reference.clone(),
            }),
            [kind, _, reason] if kind == "declined" => Ok(Decision::Declined {
                reason: reason.clone(),
            }),
            _ => Err(ProviderError::Unavailable(format!(
                "sandbox gave an unexpected answer {reply:?}"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_choose_the_behavior() {
        let ms = Duration::from_millis;
        for (token, expected) in [
            ("approve", Behavior::Approve),
            ("decline", Behavior::Decline("card declined".to_owned())),
            (
                "decline:insufficient funds",
                Behavior::Decline("insufficient funds".to_owned()),
            ),
            ("decline:", Behavior::Decline("card declined".to_owned())),
            ("transient", Behavior::Transient(2)),
            ("transient:5", Behavior::Transient(5)),
            ("slow", Behavior::Slow(ms(1_500))),
            ("slow:20", Behavior::Slow(ms(20))),
        ] {
            assert_eq!(Behavior::of(token), expected, "{token}");
        }
        for unknown in [
            "",
            "APPROVE",
            "approve:now",
            "transient:x",
            "slow:-1",
            "slow:99999999",
            "visa",
        ] {
            assert_eq!(
                Behavior::of(unknown),
                Behavior::Decline("unknown payment method".to_owned()),
                "{unknown:?}"
            );
        }
    }
}
