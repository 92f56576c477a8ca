//! What can go wrong in a payments request, and how it reaches a gRPC client.

use tonic::Status;

use crate::steps::StepError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// Worth retrying with the same idempotency key.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Aborted(String),
    #[error(transparent)]
    PermissionDenied(#[from] harvest_kit::auth::NotYours),
    #[error("payments storage failed")]
    Store(#[from] StoreError),
    #[error("a payment step failed")]
    Step(#[source] StepError),
}

impl PaymentsError {
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        PaymentsError::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<StepError> for PaymentsError {
    fn from(error: StepError) -> Self {
        match error {
            StepError::Refused(reason) => PaymentsError::FailedPrecondition(reason),
            StepError::Provider(error) if !error.is_transient() => {
                PaymentsError::FailedPrecondition(error.to_string())
            }
            error @ (StepError::Provider(_) | StepError::Publish(_)) => {
                tracing::warn!(error.cause_chain = ?error, "payment step could not finish");
                PaymentsError::Unavailable(
                    "the payment provider or the event bus is unavailable; \
                     retry with the same idempotency key"
                        .to_owned(),
                )
            }
            StepError::Contended(order) => PaymentsError::Aborted(format!(
                "the payment of order {order} is changing; retry with the same idempotency key"
            )),
            StepError::Store(error) => PaymentsError::Store(error),
            other => PaymentsError::Step(other),
        }
    }
}

impl From<PaymentsError> for Status {
    fn from(error: PaymentsError) -> Status {
        match error {
            PaymentsError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            PaymentsError::NotFound(message) => Status::not_found(message),
            PaymentsError::AlreadyExists(message) => Status::already_exists(message),
            PaymentsError::FailedPrecondition(message) => Status::failed_precondition(message),
            PaymentsError::Unavailable(message) => Status::unavailable(message),
            PaymentsError::Aborted(message) => Status::aborted(message),
            PaymentsError::PermissionDenied(refusal) => refusal.into(),
            PaymentsError::Store(StoreError::Redis(ref redis))
                if harvest_kit::store::unreachable(redis) =>
            {
                harvest_kit::store::unreachable_status(&error, harvest_kit::store::RETRY_LATER)
            }
            PaymentsError::Store(_) | PaymentsError::Step(_) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}
