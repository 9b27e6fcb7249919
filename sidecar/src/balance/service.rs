//! [`Balance`]: the tower service that sends each request to its pool's pick.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Service, ServiceExt};

use super::Pool;
use crate::layers::{Avoid, ProxyError, Request, Response};

/// Sends each request to one endpoint of its pool, counting it outstanding on that endpoint
/// until the response headers come, and recording the attempt's outcome in the endpoint's
/// metrics. Always ready: an empty pool is a [`ProxyError::NoEndpoints`] per request.
#[derive(Debug, Clone)]
pub struct Balance {
    pool: Arc<Pool>,
}

impl Balance {
    /// A balancer over `pool`.
    pub fn new(pool: Arc<Pool>) -> Balance {
        Balance { pool }
    }
}

impl Service<Request> for Balance {
    type Response = Response;
    type Error = ProxyError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, ProxyError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let avoid = req.extensions().get::<Avoid>().map(|a| a.0.clone());
        let Some(member) = self.pool.pick(avoid.as_deref()) else {
            let service = self.pool.name().to_owned();
            return Box::pin(async move { Err(ProxyError::NoEndpoints { service }) });
        };
        Box::pin(async move {
            let in_flight = member.state.start();
            let result = member.service.clone().oneshot(req).await;
            let metrics = &member.state.metrics;
            match &result {
                Ok(resp) => {
                    metrics.response(resp.status().as_u16(), in_flight.elapsed().as_secs_f64())
                }
                Err(e) => metrics.error(e.kind()),
            }
            drop(in_flight);
            result
        })
    }
}
