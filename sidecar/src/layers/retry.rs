//! [`RetryPolicy`]: which failed requests are sent again, within a budget.
//!
//! A request is retried when its body is held ([`super::Replay`]), a retry is left
//! (`upstream.max_attempts`), the service's budget allows one (a share of requests plus a
//! minimum rate: tower's `TpsBudget`, so a failing service gets no retry storm), and either
//! the connection failed before the request was sent (any method) or the method is idempotent
//! and the endpoint failed without a response. A response, even a 5xx, is the answer.

use std::sync::Arc;

use http::Method;
use tower::retry::budget::{Budget, TpsBudget};
use tower::retry::Policy;

use super::{full, Avoid, ProxyError, Replay, Request, Response};
use crate::metrics::ServiceMetrics;

/// The retry policy of one service's stack (cloned per request).
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    budget: Arc<TpsBudget>,
    attempts_left: usize,
    metrics: ServiceMetrics,
}

impl RetryPolicy {
    /// At most `max_attempts` attempts in all, retries drawn from `budget`.
    pub fn new(budget: Arc<TpsBudget>, max_attempts: usize, metrics: ServiceMetrics) -> Self {
        RetryPolicy {
            budget,
            attempts_left: max_attempts.saturating_sub(1),
            metrics,
        }
    }
}

/// Whether sending a request with `method` twice has the effect of sending it once.
pub fn idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

impl Policy<Request, Response, ProxyError> for RetryPolicy {
    type Future = std::future::Ready<()>;

    fn retry(
        &mut self,
        req: &mut Request,
        result: &mut Result<Response, ProxyError>,
    ) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        let again = match error {
            ProxyError::Connect { .. } => true,
            ProxyError::Timeout { .. } | ProxyError::Upstream { .. } => idempotent(req.method()),
            _ => false,
        };
        if !again || self.attempts_left == 0 {
            return None;
        }
        if !self.budget.withdraw() {
            self.metrics.retries_refused.inc();
            tracing::debug!(error = %error, "not retrying: the retry budget is spent");
            return None;
        }
        self.attempts_left -= 1;
        self.metrics.retries.inc();
        if let Some(endpoint) = error.endpoint() {
            req.extensions_mut().insert(Avoid(endpoint.to_owned()));
        }
        tracing::debug!(error = %error, "retrying");
        Some(std::future::ready(()))
    }

    fn clone_request(&mut self, req: &Request) -> Option<Request> {
        if self.attempts_left == 0 {
            return None;
        }
        let replay = req.extensions().get::<Replay>()?;
        let mut clone = http::Request::new(full(replay.0.clone()));
        *clone.method_mut() = req.method().clone();
        *clone.uri_mut() = req.uri().clone();
        *clone.version_mut() = req.version();
        *clone.headers_mut() = req.headers().clone();
        *clone.extensions_mut() = req.extensions().clone();
        Some(clone)
    }
}
