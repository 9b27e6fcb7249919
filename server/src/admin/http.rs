//! The admin HTTP server (ZooKeeper's AdminServer: `admin.enableServer`, `admin.serverAddress`,
//! `admin.serverPort`, `admin.commandURL`) and the Prometheus endpoint
//! (`metricsProvider.httpHost`, `metricsProvider.httpPort`).
//!
//! Every answer comes from the request processor through its event queue, as a four-letter
//! word's does, so the HTTP side holds no state of its own. Both servers are bounded: a fixed
//! number of connections, a deadline for a request's headers and for the processor's answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::metrics::{Metrics, ScrapeState};
use crate::server::Event;

/// Connections one admin or metrics server holds at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's headers (and how long an idle
/// keep-alive connection is kept).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the request processor's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What an endpoint asks the request processor.
#[derive(Debug)]
pub enum AdminRequest {
    /// Runs an AdminServer command ([`super::commands::run`]).
    Command {
        /// The name or alias.
        name: String,
        /// The status and JSON answer.
        reply: oneshot::Sender<super::commands::Answer>,
    },
    /// The state [`Metrics::encode`] exports: the numeric `mntr` rows and learner lags.
    MetricsState {
        /// The rows and lags.
        reply: oneshot::Sender<ScrapeState>,
    },
}

/// Which paths a server answers.
#[derive(Debug, Clone)]
pub enum Routes {
    /// The AdminServer: `<command_url>`, `<command_url>/<name>` and `/metrics`.
    Admin {
        /// `admin.commandURL`, `/commands` by default.
        command_url: String,
    },
    /// The Prometheus provider's endpoint: `/metrics` only.
    Metrics,
}

#[derive(Clone)]
struct Shared {
    routes: Routes,
    core: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
}

/// Serves `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    routes: Routes,
    core: mpsc::Sender<Event>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let shared = Shared {
        routes,
        core,
        metrics,
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Some((stream, peer)) = crate::accept(&listener, "admin", &shutdown).await else {
            return;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many admin connections; closing");
            continue;
        };
        let (shared, shutdown) = (shared.clone(), shutdown.clone());
        let span = tracing::debug_span!("admin", %peer);
        tokio::spawn(
            async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let shared = shared.clone();
                    async move { Ok::<_, Infallible>(respond(&shared, req).await) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    r = conn => if let Err(e) = r {
                        tracing::debug!(error = %e, "admin connection ended");
                    },
                    () = shutdown.cancelled() => {}
                }
            }
            .instrument(span),
        );
    }
}

async fn respond(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    }
    let path = req.uri().path();
    if path == "/metrics" {
        return metrics(shared).await;
    }
    let Routes::Admin { command_url } = &shared.routes else {
        return text(StatusCode::NOT_FOUND, "not found; try /metrics\n");
    };
    let Some(rest) = path.strip_prefix(command_url.as_str()) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    match rest.trim_end_matches('/') {
        "" => index(command_url),
        name if name.starts_with('/') && !name[1..].contains('/') => {
            let name = name[1..].to_owned();
            let (reply, answer) = oneshot::channel();
            let ask = Event::Admin(AdminRequest::Command { name, reply });
            match ask_core(shared, ask, answer).await {
                Some(a) => {
                    let mut resp = json(&a.body);
                    *resp.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::OK);
                    resp
                }
                None => unavailable(),
            }
        }
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

async fn metrics(shared: &Shared) -> Response<Full<Bytes>> {
    let (reply, answer) = oneshot::channel();
    let ask = Event::Admin(AdminRequest::MetricsState { reply });
    let Some(state) = ask_core(shared, ask, answer).await else {
        return unavailable();
    };
    let body = shared.metrics.encode(state);
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// Asks the request processor; `None` if it is stopping or does not answer in time.
async fn ask_core<T>(shared: &Shared, ask: Event, answer: oneshot::Receiver<T>) -> Option<T> {
    let asked = async {
        shared.core.send(ask).await.ok()?;
        answer.await.ok()
    };
    tokio::time::timeout(ANSWER_TIMEOUT, asked)
        .await
        .ok()
        .flatten()
}

/// The command list, as ZooKeeper's AdminServer links them.
fn index(command_url: &str) -> Response<Full<Bytes>> {
    let mut body = String::new();
    for (name, _) in super::commands::COMMANDS {
        body.push_str(&format!(
            "<a href=\"{command_url}/{name}\">{name}</a>\n<br/>\n"
        ));
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/html"),
    );
    resp
}

fn json(v: &Value) -> Response<Full<Bytes>> {
    let body = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn unavailable() -> Response<Full<Bytes>> {
    text(
        StatusCode::SERVICE_UNAVAILABLE,
        "the server is stopping or did not answer in time\n",
    )
}
