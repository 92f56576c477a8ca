//! What can go wrong in the catalog, and how it reaches a gRPC client.

use tonic::Status;

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("{field}: {reason}")]
    InvalidArgument { field: String, reason: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error(transparent)]
    PermissionDenied(#[from] harvest_kit::auth::NotYours),
    #[error("catalog storage failed")]
    Store(#[from] StoreError),
}

impl CatalogError {
    pub fn invalid(field: impl Into<String>, reason: impl ToString) -> Self {
        CatalogError::InvalidArgument {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl From<CatalogError> for Status {
    fn from(error: CatalogError) -> Status {
        match error {
            CatalogError::InvalidArgument { .. } => Status::invalid_argument(error.to_string()),
            CatalogError::NotFound(message) => Status::not_found(message),
            CatalogError::AlreadyExists(message) => Status::already_exists(message),
            CatalogError::FailedPrecondition(message) => Status::failed_precondition(message),
            CatalogError::PermissionDenied(refusal) => refusal.into(),
            CatalogError::Store(StoreError::Redis(ref redis))
                if harvest_kit::store::unreachable(redis) =>
            {
                harvest_kit::store::unreachable_status(&error, harvest_kit::store::RETRY_LATER)
            }
            CatalogError::Store(_) => {
                tracing::error!(error.cause_chain = ?error, "request failed");
                Status::internal("internal error")
            }
        }
    }
}
