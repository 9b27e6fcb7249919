//! [`Http1Pool`]: the plain HTTP/1.1 connections to one endpoint, as hyper's own
//! `client::conn::http1` senders.
//!
//! hyper-util's pooled client costs each request a pool lookup by scheme and authority and a
//! spawned task that waits for the connection to be idle again before it goes back to the pool.
//! Here a request takes an idle sender from its endpoint's stack (most recently used first, so
//! the busy connections stay warm and the rest time out at the instance), and the response body
//! puts it back the moment the body ends. A sender that a closed or not yet idle connection
//! made useless is dropped, and a request that such a connection gave back unsent goes to the
//! next one: the request is only ever written once.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Uri;
use hyper::body::{Body as _, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{Builder, SendRequest};
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;
use tracing::Instrument;

use super::Dns;
use crate::layers::{Body, BodyError, BoxError, ProxyError, Request, Response};

/// Idle connections tried for one request before a new one is opened: each can only be one
/// the instance closed while it sat idle, so a few are enough and the loop stays bounded.
const STALE_TRIES: usize = 4;

/// Why a request got no response.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be opened: the request was not sent.
    Connect(BoxError),
    /// The connection failed with the request sent or partly sent.
    Upstream(BoxError),
}

impl SendError {
    /// The proxy's error for this failure at `endpoint`.
    pub fn at(self, endpoint: String) -> ProxyError {
        match self {
            SendError::Connect(source) => ProxyError::Connect { endpoint, source },
            SendError::Upstream(source) => ProxyError::Upstream { endpoint, source },
        }
    }
}

/// The idle HTTP/1.1 connections to one endpoint, and how to open more.
#[derive(Debug)]
pub struct Http1Pool {
    /// `http://host:port/`: what the connector resolves and dials.
    target: Uri,
    connector: HttpConnector<Dns>,
    idle: Mutex<Vec<SendRequest<Body>>>,
    max_idle: usize,
}

impl Http1Pool {
    /// A pool of connections to `target` (`http://host:port/`), keeping at most `max_idle`
    /// idle ones.
    pub fn new(target: Uri, connector: HttpConnector<Dns>, max_idle: usize) -> Arc<Http1Pool> {
        Arc::new(Http1Pool {
            target,
            connector,
            idle: Mutex::new(Vec::new()),
            max_idle,
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection or a new one.
    ///
    /// # Errors
    /// [`SendError::Connect`] if no connection could be opened, [`SendError::Upstream`] if the
    /// connection failed after the request was handed to it.
    pub async fn send(self: Arc<Self>, mut req: Request) -> Result<Response, SendError> {
        for _ in 0..STALE_TRIES {
            let Some(mut sender) = self.checkout() else {
                break;
            };
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok(self.pooled(resp, sender)),
                Err(mut e) => match e.take_message() {
                    // Closed by the instance while idle, before anything was written.
                    Some(unsent) => req = unsent,
                    None => return Err(SendError::Upstream(e.into_error().into())),
                },
            }
        }
        let mut sender = self.connect().await.map_err(SendError::Connect)?;
        match sender.try_send_request(req).await {
            Ok(resp) => Ok(self.pooled(resp, sender)),
            Err(e) => Err(SendError::Upstream(e.into_error().into())),
        }
    }

    /// The most recently used idle sender that can take a request now.
    fn checkout(&self) -> Option<SendRequest<Body>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(sender) = idle.pop() {
            if sender.is_ready() {
                return Some(sender);
            }
            // Closed: dropping it is all there is to do.
        }
        None
    }

    /// Puts `sender` back, once its connection can take the next request.
    fn checkin(self: Arc<Self>, mut sender: SendRequest<Body>) {
        if sender.is_ready() {
            self.push(sender);
        } else if !sender.is_closed() {
            // The connection task has not yet seen the end of the last response (it runs
            // on its own): rare, and off the request's path.
            let pool = Arc::downgrade(&self);
            tokio::spawn(async move {
                if sender.ready().await.is_ok() {
                    if let Some(pool) = pool.upgrade() {
                        pool.push(sender);
                    }
                }
            });
        }
    }

    fn push(&self, sender: SendRequest<Body>) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.max_idle {
            idle.push(sender);
        }
    }

    /// A new connection, its task spawned.
    async fn connect(&self) -> Result<SendRequest<Body>, BoxError> {
        let io = self
            .connector
            .clone()
            .oneshot(self.target.clone())
            .await
            .map_err(BoxError::from)?;
        let (sender, conn) = Builder::new().handshake(io).await?;
        let span = tracing::debug_span!("upstream connection", endpoint = %self.target);
        tokio::spawn(
            async move {
                if let Err(e) = conn.with_upgrades().await {
                    tracing::debug!(error = %e, "connection ended");
                }
            }
            .instrument(span),
        );
        Ok(sender)
    }

    /// `resp` with a body that returns `sender` to the pool when it ends.
    fn pooled(
        self: &Arc<Self>,
        resp: http::Response<Incoming>,
        sender: SendRequest<Body>,
    ) -> Response {
        // After a 101 the connection belongs to the upgrade.
        let back = (resp.status() != http::StatusCode::SWITCHING_PROTOCOLS)
            .then(|| (sender, self.clone()));
        resp.map(|b| http_body_util::BodyExt::boxed(Pooled::new(b, back)))
    }
}

/// A response body that gives its connection back when it ends. Dropped before its end, it
/// drops the sender too: the rest of that response is still on the connection, so hyper closes
/// it.
struct Pooled {
    inner: Incoming,
    back: Option<(SendRequest<Body>, Arc<Http1Pool>)>,
}

impl Pooled {
    fn new(inner: Incoming, back: Option<(SendRequest<Body>, Arc<Http1Pool>)>) -> Pooled {
        let mut body = Pooled { inner, back };
        // An empty body (HEAD, 204, 304, Content-Length: 0) may never be polled.
        if body.inner.is_end_stream() {
            body.release();
        }
        body
    }

    fn release(&mut self) {
        if let Some((sender, pool)) = self.back.take() {
            pool.checkin(sender);
        }
    }
}

impl hyper::body::Body for Pooled {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                // hyper's server stops polling a body that says it has ended.
                if this.inner.is_end_stream() {
                    this.release();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                this.back = None;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                this.release();
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::layers::full;

    /// What the test server does on each connection.
    #[derive(Clone, Copy)]
    enum Script {
        /// Answers every request with a 5-byte body.
        KeepAlive,
        /// Answers one request, then closes the connection without saying so.
        CloseAfterOne,
        /// Sends half of a 10-byte body, then waits.
        HalfBody,
        /// Answers 204 No Content.
        NoContent,
    }

    struct Server {
        addr: SocketAddr,
        accepted: Arc<AtomicUsize>,
        requests: Arc<AtomicUsize>,
    }

    async fn server(script: Script) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(AtomicUsize::new(0));
        let (a, r) = (accepted.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        // One request head (the tests send no bodies).
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        r.fetch_add(1, Ordering::SeqCst);
                        let answer: &[u8] = match script {
                            Script::KeepAlive | Script::CloseAfterOne => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                            }
                            Script::HalfBody => {
                                b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nhello"
                            }
                            Script::NoContent => b"HTTP/1.1 204 No Content\r\n\r\n",
                        };
                        if socket.write_all(answer).await.is_err() {
                            return;
                        }
                        if matches!(script, Script::CloseAfterOne) {
                            return;
                        }
                    }
                });
            }
        });
        Server {
            addr,
            accepted,
            requests,
        }
    }

    fn pool(addr: SocketAddr) -> Arc<Http1Pool> {
        let dns = Dns(Arc::new(
            rookery_client::resolve::Resolver::new(None).unwrap(),
        ));
        let target: Uri = format!("http://{addr}/").parse().unwrap();
        Http1Pool::new(target, HttpConnector::new_with_resolver(dns), 8)
    }

    fn get() -> Request {
        http::Request::builder()
            .uri("/")
            .header(http::header::HOST, "test")
            .body(full(Bytes::new()))
            .unwrap()
    }

    async fn body(resp: Response) -> Bytes {
        resp.into_body().collect().await.unwrap().to_bytes()
    }

    /// Waits (boundedly) until every idle sender's connection has closed.
    async fn idle_closed(pool: &Http1Pool) {
        for _ in 0..200 {
            if pool.idle.lock().unwrap().iter().all(SendRequest::is_closed) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the idle connection never closed");
    }

    #[tokio::test]
    async fn one_connection_carries_sequential_requests() {
        let server = server(Script::KeepAlive).await;
        let pool = pool(server.addr);
        for _ in 0..5 {
            let resp = pool.clone().send(get()).await.unwrap();
            assert_eq!(body(resp).await, "hello");
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
        assert_eq!(server.requests.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_and_keep_them_idle() {
        let server = server(Script::KeepAlive).await;
        let pool = pool(server.addr);
        let held: Vec<Response> =
            futures::future::try_join_all((0..3).map(|_| pool.clone().send(get())))
                .await
                .unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
        for resp in held {
            assert_eq!(body(resp).await, "hello");
        }
        assert_eq!(pool.idle.lock().unwrap().len(), 3);
        pool.clone().send(get()).await.unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_closed_while_idle_is_replaced_and_the_request_sent_once() {
        let server = server(Script::CloseAfterOne).await;
        let pool = pool(server.addr);
        assert_eq!(body(pool.clone().send(get()).await.unwrap()).await, "hello");
        idle_closed(&pool).await;
        assert_eq!(body(pool.clone().send(get()).await.unwrap()).await, "hello");
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
        assert_eq!(server.requests.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_its_connection() {
        let server = server(Script::HalfBody).await;
        let pool = pool(server.addr);
        let mut body = pool.clone().send(get()).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "hello");
        drop(body);
        assert!(pool.idle.lock().unwrap().is_empty());
        let _ = pool.clone().send(get()).await.unwrap();
        assert_eq!(server.accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_empty_body_returns_its_connection_unpolled() {
        let server = server(Script::NoContent).await;
        let pool = pool(server.addr);
        for _ in 0..3 {
            let resp = pool.clone().send(get()).await.unwrap();
            assert_eq!(resp.status(), http::StatusCode::NO_CONTENT);
            // Dropped without a poll, as hyper's server does with an ended body.
            drop(resp);
        }
        assert_eq!(server.accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        match pool(addr).send(get()).await {
            Err(SendError::Connect(_)) => {}
            other => panic!("expected a connect error, got {other:?}"),
        }
    }
}
