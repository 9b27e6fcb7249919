//! [`ProxyError`]: why a request got no upstream response, and the status the caller gets.

use http::StatusCode;

use super::BoxError;

/// Why a request got no upstream response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// No route matched (404).
    #[error("no route: no routing rule or registered service matches this request's host or path")]
    NoRoute,
    /// The service has no usable endpoint (503).
    #[error("service {service:?} has no usable endpoint")]
    NoEndpoints {
        /// The service.
        service: String,
    },
    /// The connection failed; the request was not sent (503).
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: BoxError,
    },
    /// No response headers within the request timeout (504).
    #[error("{endpoint} did not answer within the request timeout")]
    Timeout {
        /// The endpoint.
        endpoint: String,
    },
    /// The connection failed after the request was sent (502).
    #[error("{endpoint} failed: {source}")]
    Upstream {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: BoxError,
    },
    /// The request itself is unusable (400).
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    /// The status the caller gets.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::NoEndpoints { .. } | ProxyError::Connect { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream { .. } => StatusCode::BAD_GATEWAY,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The metrics' name of its kind.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::Connect { .. } => "connect",
            ProxyError::Timeout { .. } => "timeout",
            ProxyError::Upstream { .. } => "reset",
            ProxyError::NoRoute | ProxyError::NoEndpoints { .. } | ProxyError::BadRequest(_) => {
                "none"
            }
        }
    }

    /// The endpoint it happened at.
    pub fn endpoint(&self) -> Option<&str> {
        match self {
            ProxyError::Connect { endpoint, .. }
            | ProxyError::Timeout { endpoint }
            | ProxyError::Upstream { endpoint, .. } => Some(endpoint),
            _ => None,
        }
    }

    /// Whether it is a failure of the endpoint (counted by outlier detection).
    pub fn is_endpoint_failure(&self) -> bool {
        self.endpoint().is_some()
    }
}
