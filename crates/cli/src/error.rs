//! What can go wrong, how it is told on stderr, and the exit code it gives.

use std::fmt;

use tonic::Code;

/// One of Harvest's four services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    Catalog,
    Orders,
    Payments,
    Delivery,
}

impl Service {
    pub fn name(self) -> &'static str {
        match self {
            Service::Catalog => "catalog",
            Service::Orders => "orders",
            Service::Payments => "payments",
            Service::Delivery => "delivery",
        }
    }

    /// The environment variable that overrides its endpoint.
    pub fn env(self) -> &'static str {
        match self {
            Service::Catalog => "HARVEST_CATALOG_URL",
            Service::Orders => "HARVEST_ORDERS_URL",
            Service::Payments => "HARVEST_PAYMENTS_URL",
            Service::Delivery => "HARVEST_DELIVERY_URL",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "cannot reach the {service} service at {endpoint}: is Harvest running? try `make run`, \
         and point --{service} (or {env}) at the address it prints",
        env = service.env()
    )]
    Unreachable {
        service: Service,
        endpoint: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("{code} from the {service} service: {message}", code = code_name(status.code()), message = status.message())]
    Rpc {
        service: Service,
        status: tonic::Status,
    },
    #[error("the {service} service ended the stream early: {what}")]
    StreamEnded { service: Service, what: String },
    #[error("could not write the output")]
    Output(#[from] std::io::Error),
    #[error(transparent)]
    DeadLetters(#[from] harvest_bus::dead_letters::DeadLetterError),
    #[error("{0}")]
    Refused(String),
    /// A bad flag value found after parsing (an unreadable --issuer-dir).
    #[error("{0}")]
    Usage(String),
}

/// Exit codes scripts can rely on.
pub mod exit {
    pub const FAILURE: u8 = 1;
    /// A usage error: bad flags or values, or `INVALID_ARGUMENT` from a service.
    pub const USAGE: u8 = 2;
    /// `order watch` saw the order cancelled.
    pub const CANCELLED: u8 = 3;
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Rpc { status, .. } if status.code() == Code::InvalidArgument => exit::USAGE,
            CliError::Usage(_) => exit::USAGE,
            _ => exit::FAILURE,
        }
    }

    /// Whether a failed call may still have taken effect, so that retrying
    /// with the same idempotency key is the way to learn its outcome.
    pub fn may_have_taken_effect(&self) -> bool {
        matches!(self, CliError::Rpc { status, .. } if matches!(
            status.code(),
            Code::Unavailable
                | Code::DeadlineExceeded
                | Code::Cancelled
                | Code::Aborted
                | Code::Internal
                | Code::Unknown
        ))
    }

    /// A failed write to stdout because the reader went away (`| head`):
    /// nothing left to tell anyone.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(error) if error.kind() == std::io::ErrorKind::BrokenPipe)
    }
}

/// The canonical name of a gRPC status code, as in the gRPC specification.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The message for stderr: the error, then the innermost cause, which for a
/// transport failure is the one a person can act on ("connection refused").
pub fn describe(error: &CliError) -> String {
    let mut text = format!("error: {error}");
    let mut cause = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(current) = cause {
        innermost = Some(current);
        cause = current.source();
    }
    if let Some(innermost) = innermost {
        text.push_str(&format!("\n  cause: {innermost}"));
    }
    if matches!(error, CliError::Rpc { status, .. } if status.code() == Code::Unauthenticated) {
        text.push_str(
            "\n  hint: give a token with --token (or HARVEST_TOKEN), or run harvest where \
             `make run` keeps its key (target/harvest/auth), or point --issuer-dir at it",
        );
    }
    text
}

/// Turns a gRPC result into the CLI's, naming the service that answered.
pub trait RpcResultExt<T> {
    fn answered_by(self, service: Service) -> Result<T, CliError>;
}

impl<T> RpcResultExt<T> for Result<tonic::Response<T>, tonic::Status> {
    fn answered_by(self, service: Service) -> Result<T, CliError> {
        self.map(tonic::Response::into_inner)
            .map_err(|status| CliError::Rpc { service, status })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unauthenticated_call_says_how_to_get_a_token() {
        let error = CliError::Rpc {
            service: Service::Orders,
            status: tonic::Status::unauthenticated("no bearer token"),
        };
        let text = describe(&error);
        assert!(text.contains("UNAUTHENTICATED"), "{text}");
        assert!(text.contains("--token"), "{text}");
        let other = describe(&CliError::Rpc {
            service: Service::Orders,
            status: tonic::Status::not_found("no such order"),
        });
        assert!(!other.contains("hint"), "{other}");
    }

    #[test]
    fn invalid_argument_is_a_usage_error() {
        let invalid = CliError::Rpc {
            service: Service::Orders,
            status: tonic::Status::invalid_argument("ship_to.phone: must be a phone number"),
        };
        assert_eq!(invalid.exit_code(), exit::USAGE);
        assert_eq!(
            describe(&invalid),
            "error: INVALID_ARGUMENT from the orders service: ship_to.phone: must be a phone number"
        );
        let missing = CliError::Rpc {
            service: Service::Catalog,
            status: tonic::Status::not_found("product prd_1 does not exist"),
        };
        assert_eq!(missing.exit_code(), exit::FAILURE);
        assert!(describe(&missing).starts_with("error: NOT_FOUND from the catalog service"));
    }

    #[test]
    fn retry_hint_only_when_the_outcome_is_unknown() {
        let failed = |status| CliError::Rpc {
            service: Service::Orders,
            status,
        };
        assert!(failed(tonic::Status::deadline_exceeded("slow")).may_have_taken_effect());
        assert!(failed(tonic::Status::unavailable("busy")).may_have_taken_effect());
        assert!(!failed(tonic::Status::invalid_argument("phone")).may_have_taken_effect());
        assert!(!failed(tonic::Status::already_exists("key")).may_have_taken_effect());
    }

    #[test]
    fn names_every_code_like_the_specification() {
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        assert_eq!(code_name(Code::Unauthenticated), "UNAUTHENTICATED");
        for number in 0..=16 {
            let name = code_name(Code::from_i32(number));
            assert!(name.chars().all(|c| c.is_ascii_uppercase() || c == '_'));
        }
    }

    #[test]
    fn broken_pipes_are_recognised() {
        let error = CliError::Output(std::io::ErrorKind::BrokenPipe.into());
        assert!(error.is_broken_pipe());
        assert!(!CliError::Output(std::io::ErrorKind::Other.into()).is_broken_pipe());
    }
}
