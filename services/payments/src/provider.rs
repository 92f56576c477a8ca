//! The payment provider: the outside service that holds, takes and returns
//! buyers' money. Every call names its step with an idempotency key derived
//! from the order and the step, so repeating a call (after a timeout, a crash
//! or a redelivered event) never moves money twice.

use std::future::Future;
use std::time::Instant;

use harvest_domain::{Fen, Id};

use crate::config::ProviderConfig;
use crate::metrics;

/// What is asked of the provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    /// Hold the amount on the buyer's payment method.
    Authorize,
    /// Take held money.
    Capture,
    /// Release a hold.
    Void,
    /// Give taken money back.
    Refund,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Authorize => "authorize",
            Operation::Capture => "capture",
            Operation::Void => "void",
            Operation::Refund => "refund",
        }
    }
}

/// One call to the provider.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderRequest {
    pub operation: Operation,
    /// The same for every attempt of one step, e.g. `ord_1:authorize`.
    pub idempotency_key: String,
    pub order_id: Id,
    pub amount: Fen,
    /// The buyer's payment method token, as the storefront gave it.
    pub payment_method: String,
}

/// The provider's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Approved { reference: String },
    Declined { reason: String },
}

impl Decision {
    /// The provider's reference of an approval, or the reason of a decline.
    pub fn into_reference(self) -> Result<String, String> {
        match self {
            Decision::Approved { reference } => Ok(reference),
            Decision::Declined { reason } => Err(reason),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// Worth trying again later.
    #[error("the payment provider is temporarily unavailable: {0}")]
    Unavailable(String),
    /// Will never succeed as asked.
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
    #[error("the payment provider's records could not be reached")]
    Records(#[source] redis::RedisError),
}

impl ProviderError {
    pub fn is_transient(&self) -> bool {
        !matches!(self, ProviderError::Refused(_))
    }
}

/// A payment provider. Implementations must honor the idempotency key: the
/// same key returns the same decision and reference, however often it is
/// called.
pub trait PaymentProvider: Send + Sync + 'static {
    fn execute(
        &self,
        request: &ProviderRequest,
    ) -> impl Future<Output = Result<Decision, ProviderError>> + Send;
}

/// The idempotency key of one step of one order, e.g. `ord_1:capture`.
pub fn idempotency_key(order_id: &Id, step: &str) -> String {
    format!("{order_id}:{step}")
}

/// Calls the provider, retrying temporary failures with exponential backoff
/// up to `settings.max_attempts` calls. A failure that is still temporary
/// after that is returned, for the caller to retry later.
#[tracing::instrument(skip_all, fields(order_id = %request.order_id, operation = request.operation.as_str()))]
pub async fn execute_with_retries<P: PaymentProvider>(
    provider: &P,
    settings: &ProviderConfig,
    request: &ProviderRequest,
) -> Result<Decision, ProviderError> {
    let operation = request.operation.as_str();
    let mut backoff = settings.backoff();
    let mut attempt = 1;
    loop {
        let started = Instant::now();
        let result = provider.execute(request).await;
        ::metrics::histogram!(metrics::PROVIDER_SECONDS, "operation" => operation)
            .record(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(Decision::Approved { .. }) => "approved",
            Ok(Decision::Declined { .. }) => "declined",
            Err(error) if error.is_transient() => "unavailable",
            Err(_) => "refused",
        };
        ::metrics::counter!(metrics::PROVIDER_CALLS, "operation" => operation, "outcome" => outcome)
            .increment(1);
        match result {
            Err(error) if error.is_transient() && attempt < settings.max_attempts => {
                tracing::warn!(
                    attempt,
                    max_attempts = settings.max_attempts,
                    error.cause_chain = ?error,
                    "provider call failed; retrying",
                );
                tokio::time::sleep(backoff).await;
                backoff = backoff.saturating_mul(2);
                attempt += 1;
            }
            other => return other,
        }
    }
}
