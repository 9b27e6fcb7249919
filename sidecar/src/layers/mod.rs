//! The request path's layers, and the one place they are assembled:
//!
//! ```text
//! proxy ─▶ Retry (budget, idempotent or unsent requests) ─▶ Balance (pick an endpoint)
//!            ─▶ Outlier (eject on consecutive failures) ─▶ Timeout (one attempt)
//!            ─▶ Forward (the pooled connections of hyper-util)
//! ```
//!
//! [`service_stack`] builds a service's stack; [`endpoint_stack`] an endpoint's. Nothing else
//! decides the order.

mod error;
mod outlier;
mod retry;

pub use error::ProxyError;
pub use outlier::{Outlier, OutlierSettings};
pub use retry::{idempotent, RetryPolicy};

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use tower::retry::budget::TpsBudget;
use tower::timeout::Timeout;

use crate::balance::{Balance, EndpointState, Pool};
use crate::metrics::ServiceMetrics;
use crate::upstream::Forward;

/// Any error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A body's error: any error, in a named type (a `Box<dyn Error>` in the body type trips
/// rustc's higher-ranked lifetime checks on the futures that hold it).
#[derive(Debug)]
pub struct BodyError(pub BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

impl From<hyper::Error> for BodyError {
    fn from(e: hyper::Error) -> Self {
        BodyError(Box::new(e))
    }
}

/// A request or response body.
pub type Body = http_body_util::combinators::BoxBody<Bytes, BodyError>;
/// A request on its way upstream.
pub type Request = http::Request<Body>;
/// An upstream response.
pub type Response = http::Response<Body>;

/// A request extension: an endpoint that just failed this request, for the next pick to
/// avoid.
#[derive(Debug, Clone)]
pub struct Avoid(pub String);

/// A request extension: the whole body, held so that the request can be sent again.
#[derive(Debug, Clone)]
pub struct Replay(pub Bytes);

/// An endpoint's stack.
pub type EndpointService = Outlier<Timeout<Forward>>;

/// A service's stack.
pub type ServiceStack = tower::retry::Retry<RetryPolicy, Balance>;

/// The stack of one endpoint: outlier detection over a per-attempt timeout over the
/// connection pool.
pub fn endpoint_stack(
    state: &Arc<EndpointState>,
    pool: Weak<Pool>,
    forward: Forward,
    request_timeout: Duration,
    outlier: OutlierSettings,
) -> EndpointService {
    Outlier::new(
        Timeout::new(forward, request_timeout),
        state.clone(),
        pool,
        outlier,
    )
}

/// The stack of one service: retries within `budget` over the balancer of `pool`.
pub fn service_stack(
    pool: Arc<Pool>,
    budget: Arc<TpsBudget>,
    max_attempts: usize,
    metrics: ServiceMetrics,
) -> ServiceStack {
    tower::retry::Retry::new(
        RetryPolicy::new(budget, max_attempts, metrics),
        Balance::new(pool),
    )
}

/// A body of `bytes`.
pub fn full(bytes: Bytes) -> Body {
    use http_body_util::BodyExt;
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed()
}
