//! The proxy: routes a request to a service (by Host header or path prefix), sends it through
//! the service's stack, and answers errors with a status and a one-line reason. Websocket (and
//! any HTTP/1.1) upgrades are tunnelled once the upstream answers 101.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Body as _, Incoming};
use hyper_util::rt::TokioIo;
use tokio::time::Instant;
use tower::retry::budget::Budget;
use tower::ServiceExt;
use tracing::Instrument;

use crate::config::{Config, Route};
use crate::layers::{full, Body, BodyError, ProxyError, Replay};
use crate::view::{Upstream, View};

/// Where a proxy's requests go.
#[derive(Debug)]
enum Target {
    /// The outbound listener: by route, to services of the view.
    Routes(Vec<Route>),
    /// The inbound listener: everything to the local service.
    Local(Arc<Upstream>),
}

/// One listener's request handler.
#[derive(Debug)]
pub struct Proxy {
    view: Arc<View>,
    target: Target,
    body_limit: usize,
}

impl Proxy {
    /// The outbound proxy: `config`'s routes over `view`.
    pub fn outbound(view: Arc<View>, config: &Config) -> Proxy {
        Proxy {
            view,
            target: Target::Routes(config.routes.clone()),
            body_limit: config.upstream.retry_body_limit_bytes,
        }
    }

    /// The inbound proxy: everything to `local`.
    pub fn inbound(view: Arc<View>, local: Arc<Upstream>, config: &Config) -> Proxy {
        Proxy {
            view,
            target: Target::Local(local),
            body_limit: config.upstream.retry_body_limit_bytes,
        }
    }

    /// Answers one request.
    pub async fn handle(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> Result<http::Response<Body>, Infallible> {
        let started = Instant::now();
        let (upstream, strip) = match self.route(&req) {
            Ok(found) => found,
            Err(e) => {
                self.view.metrics().unrouted();
                return Ok(error_response(&e));
            }
        };
        let span = tracing::debug_span!("request", service = upstream.pool.name(), method = %req.method(), path = %req.uri().path());
        let response = match self
            .forward(req, &upstream, strip)
            .instrument(span.clone())
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                span.in_scope(|| tracing::debug!(error = %e, "answered with an error"));
                error_response(&e)
            }
        };
        upstream
            .metrics
            .response(response.status().as_u16(), started.elapsed().as_secs_f64());
        Ok(response)
    }

    /// The upstream of `req`, and a prefix to strip.
    fn route(
        &self,
        req: &http::Request<Incoming>,
    ) -> Result<(Arc<Upstream>, Option<String>), ProxyError> {
        let routes = match &self.target {
            Target::Local(local) => return Ok((local.clone(), None)),
            Target::Routes(routes) => routes,
        };
        let host = host_of(req).unwrap_or_default();
        let path = req.uri().path();
        for route in routes {
            let host_ok = route
                .host
                .as_deref()
                .is_none_or(|h| h.eq_ignore_ascii_case(&host));
            let prefix_ok = route.prefix.as_deref().is_none_or(|p| path.starts_with(p));
            if host_ok && prefix_ok {
                let upstream =
                    self.view
                        .upstream(&route.service)
                        .ok_or_else(|| ProxyError::NoEndpoints {
                            service: route.service.clone(),
                        })?;
                let strip = route.prefix.clone().filter(|_| route.strip_prefix);
                return Ok((upstream, strip));
            }
        }
        // No rule: the Host header names the service.
        self.view
            .upstream(&host)
            .map(|u| (u, None))
            .ok_or(ProxyError::NoRoute)
    }

    async fn forward(
        &self,
        mut req: http::Request<Incoming>,
        upstream: &Upstream,
        strip: Option<String>,
    ) -> Result<http::Response<Body>, ProxyError> {
        let upgrade = is_upgrade(req.headers(), req.version());
        let inbound_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // HTTP/2 carries the host as :authority; an HTTP/1.1 upstream needs the header.
        if !parts.headers.contains_key(header::HOST) {
            if let Some(authority) = parts.uri.authority() {
                if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                    parts.headers.insert(header::HOST, v);
                }
            }
        }
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if let Some(prefix) = strip {
            parts.uri = strip_prefix(&parts.uri, &prefix)?;
        }
        // Bodies small enough are held, so that the request can be sent again.
        let exact = body.size_hint().exact();
        let (body, replay) = if body.is_end_stream() {
            (full(Bytes::new()), Some(Bytes::new()))
        } else if exact.is_some_and(|n| n <= self.body_limit as u64) {
            let bytes = Limited::new(body, self.body_limit)
                .collect()
                .await
                .map_err(|e| ProxyError::BadRequest(format!("reading the request body: {e}")))?
                .to_bytes();
            (full(bytes.clone()), Some(bytes))
        } else {
            (body.map_err(BodyError::from).boxed(), None)
        };
        let mut req = http::Request::from_parts(parts, body);
        if let Some(bytes) = replay {
            req.extensions_mut().insert(Replay(bytes));
        }
        upstream.budget().deposit();
        let mut resp = upstream.stack.clone().oneshot(req).await?;
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(inbound) = inbound_upgrade {
                let outbound = hyper::upgrade::on(&mut resp);
                tokio::spawn(
                    async move {
                        match tokio::try_join!(inbound, outbound) {
                            Ok((a, b)) => {
                                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                                if let Err(e) = tokio::io::copy_bidirectional(&mut a, &mut b).await
                                {
                                    tracing::debug!(error = %e, "upgraded connection ended");
                                }
                            }
                            Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                        }
                    }
                    .in_current_span(),
                );
            }
        } else {
            strip_hop_by_hop(resp.headers_mut(), false);
        }
        Ok(resp)
    }
}

/// The request's host without its port, lower case.
fn host_of(req: &http::Request<Incoming>) -> Option<String> {
    let raw = match req.uri().host() {
        Some(h) => h.to_owned(),
        None => {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            let authority: http::uri::Authority = h.parse().ok()?;
            authority.host().to_owned()
        }
    };
    Some(
        raw.trim_matches(|c| c == '[' || c == ']')
            .to_ascii_lowercase(),
    )
}

fn is_upgrade(headers: &HeaderMap, version: Version) -> bool {
    version == Version::HTTP_11
        && headers.contains_key(header::UPGRADE)
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// Removes the headers that describe one connection, not the message (RFC 9110 7.6.1),
/// keeping `Connection: upgrade` and `Upgrade` on an upgrade.
fn strip_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    for name in [
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
    ] {
        if !(upgrade && name == header::UPGRADE) {
            headers.remove(name);
        }
    }
    headers.remove("keep-alive");
    headers.remove("proxy-connection");
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

fn strip_prefix(uri: &http::Uri, prefix: &str) -> Result<http::Uri, ProxyError> {
    let pq = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let rest = pq.strip_prefix(prefix).unwrap_or(pq);
    let rest = if rest.starts_with('/') {
        rest.to_owned()
    } else {
        format!("/{rest}")
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        rest.parse()
            .map_err(|e| ProxyError::BadRequest(format!("path after the prefix: {e}")))?,
    );
    http::Uri::from_parts(parts).map_err(|e| ProxyError::BadRequest(e.to_string()))
}

/// The caller's answer to `error`: its status, an `x-rookery-error` header naming the kind,
/// and a one-line reason.
pub fn error_response(error: &ProxyError) -> http::Response<Body> {
    let mut resp = http::Response::new(full(Bytes::from(format!("rookery-sidecar: {error}\n"))));
    *resp.status_mut() = error.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp.headers_mut().insert(
        HeaderName::from_static("x-rookery-error"),
        HeaderValue::from_static(error_name(error)),
    );
    resp
}

fn error_name(error: &ProxyError) -> &'static str {
    match error {
        ProxyError::NoRoute => "no-route",
        ProxyError::NoEndpoints { .. } => "no-endpoints",
        ProxyError::Connect { .. } => "connect",
        ProxyError::Timeout { .. } => "timeout",
        ProxyError::Upstream { .. } => "upstream-reset",
        ProxyError::BadRequest(_) => "bad-request",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_go_and_listed_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-trace"),
        );
        h.insert("x-trace", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn an_upgrade_keeps_its_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h, Version::HTTP_11));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn a_prefix_is_stripped_to_an_absolute_path() {
        let uri: http::Uri = "/orders/7?x=1".parse().unwrap();
        assert_eq!(strip_prefix(&uri, "/orders").unwrap(), "/7?x=1");
        assert_eq!(strip_prefix(&uri, "/orders/").unwrap(), "/7?x=1");
        let uri: http::Uri = "/orders".parse().unwrap();
        assert_eq!(strip_prefix(&uri, "/orders").unwrap(), "/");
    }

    #[test]
    fn errors_have_statuses() {
        assert_eq!(error_response(&ProxyError::NoRoute).status(), 404);
        let e = ProxyError::Timeout {
            endpoint: "a:1".into(),
        };
        let r = error_response(&e);
        assert_eq!(r.status(), 504);
        assert_eq!(r.headers()["x-rookery-error"], "timeout");
    }
}
