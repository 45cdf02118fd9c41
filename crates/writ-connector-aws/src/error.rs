//! Errors from talking to AWS, and how they map onto [`ConnectorError`].
//!
//! Throttling, 5xx and transport failures are retryable; everything else is permanent unless a
//! connector decides that a service error is a refusal of the change
//! ([`writ_connectors::ApplyOutcome::Rejected`]). No message carries credentials or secret
//! values: requests are never echoed, and the Secrets Manager connector scrubs the new value
//! from any error text as a second line of defence.

use writ_connectors::ConnectorError;

/// Error codes AWS uses for throttling and transient server-side trouble.
const RETRYABLE_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "SlowDown",
    "PriorRequestNotComplete",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "InternalServiceError",
    "InternalServiceErrorException",
    "RequestTimeout",
    "RequestTimeoutException",
    "EC2ThrottledException",
];

/// A failed call to AWS.
#[derive(Debug, thiserror::Error)]
pub enum AwsError {
    /// The request did not complete (connection refused, reset, timeout).
    #[error("transport error: {0}")]
    Transport(String),
    /// The service answered with an error.
    #[error("{code} (HTTP {status}): {message}")]
    Service {
        /// The HTTP status.
        status: u16,
        /// The AWS error code (`NoSuchEntity`, `ResourceNotFoundException`, ...).
        code: String,
        /// The service's message.
        message: String,
    },
    /// The response could not be understood.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// Bad configuration.
    #[error("configuration: {0}")]
    Config(String),
}

impl AwsError {
    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AwsError::Transport(_) => true,
            AwsError::Service { status, code, .. } => {
                *status >= 500 || *status == 429 || RETRYABLE_CODES.contains(&code.as_str())
            }
            AwsError::Decode(_) | AwsError::Config(_) => false,
        }
    }

    /// The AWS error code, if the service answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// Whether the service said "this does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.code(),
            Some("NoSuchEntity" | "NoSuchEntityException" | "ResourceNotFoundException")
        )
    }

    /// Whether this is a client error that refuses the change (not found, invalid,
    /// conflicting state, access denied): retrying the same request will not help.
    pub fn is_refusal(&self) -> bool {
        match self {
            AwsError::Service { status, .. } => (400..500).contains(status) && !self.is_retryable(),
            _ => false,
        }
    }
}

impl From<AwsError> for ConnectorError {
    fn from(e: AwsError) -> Self {
        if e.is_retryable() {
            ConnectorError::Retryable(e.to_string())
        } else {
            ConnectorError::Permanent(e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(status: u16, code: &str) -> AwsError {
        AwsError::Service {
            status,
            code: code.into(),
            message: "m".into(),
        }
    }

    #[test]
    fn classifies_errors() {
        assert!(service(400, "Throttling").is_retryable());
        assert!(service(503, "Anything").is_retryable());
        assert!(service(429, "X").is_retryable());
        assert!(AwsError::Transport("refused".into()).is_retryable());
        assert!(!service(404, "NoSuchEntity").is_retryable());
        assert!(service(404, "NoSuchEntity").is_not_found());
        assert!(service(400, "ResourceNotFoundException").is_refusal());
        assert!(!service(400, "Throttling").is_refusal());
        assert!(ConnectorError::from(service(500, "InternalFailure")).is_retryable());
        assert!(!ConnectorError::from(service(403, "AccessDenied")).is_retryable());
    }
}
