//! [`Outlier`]: passive outlier detection. Consecutive failures of one endpoint (5xx
//! responses, failed connects, timeouts, resets) eject it for a time that doubles with each
//! ejection, up to a cap; never more than a set share of a service's endpoints is out.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use tower::Service;

use super::{BoxError, ProxyError, Request, Response};
use crate::balance::{EndpointState, Pool};

/// Outlier detection's settings.
#[derive(Debug, Clone, Copy)]
pub struct OutlierSettings {
    /// Consecutive failures that eject.
    pub consecutive_failures: u32,
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The largest share of the pool ejected at once.
    pub max_ejected_share: f32,
}

/// Watches one endpoint's outcomes and ejects it from its pool.
#[derive(Debug, Clone)]
pub struct Outlier<S> {
    inner: S,
    state: Arc<EndpointState>,
    pool: Weak<Pool>,
    settings: OutlierSettings,
}

impl<S> Outlier<S> {
    /// Outlier detection of `state` (in `pool`) over `inner`.
    pub fn new(
        inner: S,
        state: Arc<EndpointState>,
        pool: Weak<Pool>,
        settings: OutlierSettings,
    ) -> Self {
        Outlier {
            inner,
            state,
            pool,
            settings,
        }
    }
}

impl<S> Service<Request> for Outlier<S>
where
    S: Service<Request, Response = Response, Error = BoxError>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ProxyError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        self.inner
            .poll_ready(cx)
            .map_err(|e| classify(e, &self.state.authority))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let future = self.inner.call(req);
        let state = self.state.clone();
        let pool = self.pool.clone();
        let settings = self.settings;
        Box::pin(async move {
            let result = future.await.map_err(|e| classify(e, &state.authority));
            let failed = match &result {
                Ok(resp) => resp.status().is_server_error(),
                Err(e) => e.is_endpoint_failure(),
            };
            if failed {
                failure(&state, &pool, settings);
            } else {
                success(&state, settings);
            }
            result
        })
    }
}

/// The error of a timed-out or failed attempt as a [`ProxyError`].
fn classify(error: BoxError, endpoint: &str) -> ProxyError {
    match error.downcast::<ProxyError>() {
        Ok(e) => *e,
        Err(e) if e.is::<tower::timeout::error::Elapsed>() => ProxyError::Timeout {
            endpoint: endpoint.to_owned(),
        },
        Err(source) => ProxyError::Upstream {
            endpoint: endpoint.to_owned(),
            source,
        },
    }
}

fn success(state: &EndpointState, settings: OutlierSettings) {
    state.consecutive_failures.store(0, Ordering::Relaxed);
    // Back for longer than a first ejection without failing: the next ejection starts short.
    let until = state.ejected_until_ms.load(Ordering::Relaxed);
    let base_ms = u64::try_from(settings.base_ejection.as_millis()).unwrap_or(u64::MAX);
    if until != 0 && state.now_ms().saturating_sub(until) > base_ms {
        state.ejections.store(0, Ordering::Relaxed);
    }
}

fn failure(state: &EndpointState, pool: &Weak<Pool>, settings: OutlierSettings) {
    let n = state.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
    if n < settings.consecutive_failures || state.ejected_for_ms().is_some() {
        return;
    }
    let Some(pool) = pool.upgrade() else { return };
    let members = pool.members();
    let enabled = members
        .iter()
        .filter(|m| m.state.endpoint.enabled)
        .count()
        .max(1);
    let share_after = pool.ejected_share() + 1.0 / enabled as f32;
    if share_after > settings.max_ejected_share + f32::EPSILON {
        // Debug, not warn: under a wide outage this is every failed request.
        tracing::debug!(service = pool.name(), endpoint = %state.authority, failures = n,
            "not ejecting: the share of ejected endpoints is at its cap");
        return;
    }
    let k = state.ejections.fetch_add(1, Ordering::Relaxed).min(16);
    let length = settings
        .base_ejection
        .saturating_mul(1u32 << k)
        .min(settings.max_ejection);
    let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
    state
        .ejected_until_ms
        .store(state.now_ms().saturating_add(length_ms), Ordering::Relaxed);
    state.consecutive_failures.store(0, Ordering::Relaxed);
    state.metrics.ejections.inc();
    tracing::warn!(service = pool.name(), endpoint = %state.authority, failures = n,
        ejection_ms = length_ms, "ejecting an endpoint");
}
