//! What can go wrong in the delivery service, and how it reaches a gRPC client.

use tonic::Status;

use crate::dispatch::DispatchError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("delivery storage failed")]
    Store(#[from] StoreError),
    #[error("delivery could not finish the step")]
    Dispatch(#[from] DispatchError),
    #[error("the courier partner's topic could not be made ready")]
    PartnerTopic(#[from] harvest_bus::admin::AdminError),
}

impl DeliveryError {
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        DeliveryError::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<harvest_kit::auth::NotYours> for DeliveryError {
    fn from(refusal: harvest_kit::auth::NotYours) -> Self {
        DeliveryError::PermissionDenied(refusal.0)
    }
}

impl From<DeliveryError> for Status {
    fn from(error: DeliveryError) -> Status {
        match error {
            DeliveryError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            DeliveryError::NotFound(message) => Status::not_found(message),
            DeliveryError::PermissionDenied(message) => Status::permission_denied(message),
            DeliveryError::FailedPrecondition(message) => Status::failed_precondition(message),
            DeliveryError::Dispatch(DispatchError::Publish(_)) => {
                // The change is saved; its event is published when the request
                // is repeated, or by the sweeper.
                tracing::warn!(error.cause_chain = ?error, "event not published");
                Status::unavailable("the event could not be published yet; retry")
            }
            DeliveryError::PartnerTopic(_) => {
                // Nothing was registered.
                tracing::warn!(error.cause_chain = ?error, "courier not registered");
                Status::unavailable(
                    "the broker could not make the courier partner's topic ready; retry",
                )
            }
            DeliveryError::Store(StoreError::Redis(ref redis))
            | DeliveryError::Dispatch(DispatchError::Store(StoreError::Redis(ref redis)))
                if harvest_kit::store::unreachable(redis) =>
            {
                harvest_kit::store::unreachable_status(&error, harvest_kit::store::RETRY_LATER)
            }
            DeliveryError::Store(_) | DeliveryError::Dispatch(_) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}
