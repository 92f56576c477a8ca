//! What can go wrong in the orders service, and how it reaches a client.

use tonic::Status;

use crate::saga::SagaError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("order storage failed")]
    Store(#[from] StoreError),
    #[error("order saga failed")]
    Saga(#[from] SagaError),
}

impl OrderError {
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        OrderError::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<OrderError> for Status {
    fn from(error: OrderError) -> Status {
        match error {
            OrderError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            OrderError::NotFound(message) => Status::not_found(message),
            OrderError::AlreadyExists(message) => Status::already_exists(message),
            OrderError::FailedPrecondition(message) => Status::failed_precondition(message),
            OrderError::PermissionDenied(message) => Status::permission_denied(message),
            OrderError::Unavailable(message) => Status::unavailable(message),
            OrderError::Store(StoreError::Redis(ref redis))
            | OrderError::Saga(SagaError::Store(StoreError::Redis(ref redis)))
                if harvest_kit::store::unreachable(redis) =>
            {
                harvest_kit::store::unreachable_status(
                    &error,
                    "order storage is unreachable for now; retry (PlaceOrder with the same idempotency_key)",
                )
            }
            OrderError::Store(_) | OrderError::Saga(_) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}
