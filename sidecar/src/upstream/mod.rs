//! The connections to upstream endpoints ([`Clients`]: a [`Http1Pool`] of hyper's own senders
//! per endpoint for plain HTTP/1.1, hyper-util's pooled client for TLS and h2c, names resolved
//! with hickory-resolver), and [`Forward`], the service that sends a request to one endpoint.

mod http1;

pub use http1::{Http1Pool, SendError};

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{Uri, Version};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rookery_client::resolve::Resolver;
use tower::Service;

use crate::config::{Protocol, UpstreamConfig};
use crate::error::Result;
use crate::layers::{Body, BodyError, BoxError, ProxyError, Request, Response};

/// Names resolved with hickory-resolver (`/etc/hosts`, then `/etc/resolv.conf`'s servers).
#[derive(Debug, Clone)]
pub struct Dns(Arc<Resolver>);

impl Service<Name> for Dns {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let resolver = self.0.clone();
        Box::pin(async move {
            let ips = resolver.resolve(name.as_str()).await?;
            let addrs: Vec<SocketAddr> = ips.into_iter().map(|ip| SocketAddr::new(ip, 0)).collect();
            Ok(addrs.into_iter())
        })
    }
}

type HttpClient = Client<HttpsConnector<HttpConnector<Dns>>, Body>;

/// How endpoints are reached: plain HTTP/1.1 through a [`Http1Pool`] per endpoint over
/// `plain`; over TLS (HTTP/2 or HTTP/1.1 as ALPN picks) and HTTP/2 with prior knowledge (h2c)
/// through hyper-util's pooled clients.
#[derive(Debug, Clone)]
pub struct Clients {
    plain: HttpConnector<Dns>,
    max_idle_per_endpoint: usize,
    tls: Arc<HttpClient>,
    h2c: Arc<HttpClient>,
}

impl Clients {
    /// Clients with `config`'s timeouts, pool size and CA certificates.
    ///
    /// # Errors
    /// [`crate::Error::Tls`] if the CA file cannot be read; I/O errors of the resolver's set-up.
    pub fn new(config: &UpstreamConfig) -> Result<Clients> {
        let dns = Dns(Arc::new(Resolver::new(None)?));
        let mut http = HttpConnector::new_with_resolver(dns);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        let tls = crate::tls::client_config(config.ca_file.as_deref())?;
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            // Over TLS, ALPN picks HTTP/2 where the instance offers it.
            .enable_all_versions()
            .wrap_connector(http.clone());
        let tls = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(config.max_idle_per_endpoint)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Clients {
            plain: http,
            max_idle_per_endpoint: config.max_idle_per_endpoint,
            tls: Arc::new(tls),
            h2c: Arc::new(h2c),
        })
    }

    /// A [`Forward`] to `authority` with `protocol` (over TLS when `tls`).
    ///
    /// # Errors
    /// [`ProxyError::BadRequest`] if `authority` is not a valid authority.
    pub fn forward(
        &self,
        authority: &str,
        protocol: Protocol,
        tls: bool,
    ) -> Result<Forward, ProxyError> {
        let authority: Authority = authority
            .parse()
            .map_err(|e| ProxyError::BadRequest(format!("endpoint {authority}: {e}")))?;
        let scheme = if tls { Scheme::HTTPS } else { Scheme::HTTP };
        let (via, version) = match (protocol, tls) {
            (Protocol::Http1, false) => {
                let target = Uri::builder()
                    .scheme(Scheme::HTTP)
                    .authority(authority.clone())
                    .path_and_query("/")
                    .build()
                    .map_err(|e| ProxyError::BadRequest(format!("endpoint {authority}: {e}")))?;
                let pool = Http1Pool::new(target, self.plain.clone(), self.max_idle_per_endpoint);
                (Via::Http1(pool), Version::HTTP_11)
            }
            (Protocol::Http1, true) => (Via::Client(self.tls.clone()), Version::HTTP_11),
            (Protocol::H2c, _) => (Via::Client(self.h2c.clone()), Version::HTTP_2),
        };
        Ok(Forward {
            via,
            authority,
            scheme,
            version,
        })
    }
}

/// The connections a [`Forward`] sends on.
#[derive(Debug, Clone)]
enum Via {
    /// The endpoint's own pool of HTTP/1.1 connections.
    Http1(Arc<Http1Pool>),
    /// hyper-util's pooled client (TLS, h2c).
    Client(Arc<HttpClient>),
}

/// Sends requests to one endpoint: the URI's scheme and authority become the endpoint's, the
/// path and query stay.
#[derive(Debug, Clone)]
pub struct Forward {
    via: Via,
    authority: Authority,
    scheme: Scheme,
    version: Version,
}

impl Service<Request> for Forward {
    type Response = Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        *req.version_mut() = self.version;
        let endpoint = self.authority.to_string();
        match &self.via {
            Via::Http1(pool) => {
                // Sent as written: origin-form, with a Host header.
                if req.uri().scheme().is_some() || req.uri().path_and_query().is_none() {
                    let origin = req
                        .uri()
                        .path_and_query()
                        .map_or_else(|| http::uri::PathAndQuery::from_static("/"), Clone::clone);
                    *req.uri_mut() = Uri::from(origin);
                }
                if !req.headers().contains_key(http::header::HOST) {
                    if let Ok(host) = http::HeaderValue::from_str(self.authority.as_str()) {
                        req.headers_mut().insert(http::header::HOST, host);
                    }
                }
                let sent = pool.clone().send(req);
                Box::pin(async move { sent.await.map_err(|e| e.at(endpoint).into()) })
            }
            Via::Client(client) => {
                let mut parts = req.uri().clone().into_parts();
                parts.scheme = Some(self.scheme.clone());
                parts.authority = Some(self.authority.clone());
                if parts.path_and_query.is_none() {
                    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
                }
                match Uri::from_parts(parts) {
                    Ok(uri) => *req.uri_mut() = uri,
                    Err(e) => {
                        let e = ProxyError::BadRequest(e.to_string());
                        return Box::pin(async move { Err(e.into()) });
                    }
                }
                if self.version == Version::HTTP_2 {
                    // The authority travels as :authority.
                    req.headers_mut().remove(http::header::HOST);
                }
                let future = client.request(req);
                Box::pin(async move {
                    match future.await {
                        Ok(resp) => Ok(resp.map(|b| b.map_err(BodyError::from).boxed())),
                        Err(e) if e.is_connect() => Err(SendError::Connect(Box::new(e))),
                        Err(e) => Err(SendError::Upstream(Box::new(e))),
                    }
                    .map_err(|e| e.at(endpoint).into())
                })
            }
        }
    }
}
