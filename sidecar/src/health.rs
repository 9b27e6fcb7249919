//! Health checks of the local service: an HTTP GET (2xx or 3xx passes) or a TCP connect,
//! every `interval_ms`, each within `timeout_ms`; `rise` passes in a row make it healthy,
//! `fall` failures in a row unhealthy (HAProxy's and Nerve's terms).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::HealthConfig;

/// What one check does.
#[derive(Debug, Clone)]
pub enum Check {
    /// A TCP connect.
    Tcp(SocketAddr),
    /// An HTTP/1.1 GET of a path.
    Http(SocketAddr, String),
}

impl Check {
    /// The check `config` describes, against `app`.
    pub fn new(config: &HealthConfig, app: SocketAddr) -> Check {
        match &config.http_path {
            Some(path) => Check::Http(app, path.clone()),
            None => Check::Tcp(app),
        }
    }

    /// Runs the check once: `Ok` if it passed, else why not.
    pub async fn run(&self) -> Result<(), String> {
        match self {
            Check::Tcp(addr) => TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Check::Http(addr, path) => {
                let stream = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                let conn = tokio::spawn(conn);
                let req = http::Request::get(path.as_str())
                    .header(http::header::HOST, addr.to_string())
                    .header(http::header::USER_AGENT, "rookery-sidecar-health")
                    .body(Empty::<Bytes>::new())
                    .map_err(|e| e.to_string())?;
                let resp = sender.send_request(req).await.map_err(|e| e.to_string());
                conn.abort();
                let status = resp?.status();
                if status.is_success() || status.is_redirection() {
                    Ok(())
                } else {
                    Err(format!("status {status}"))
                }
            }
        }
    }
}

/// Checks until `stop`, publishing healthy (`true`) or not on `tx` as `rise` and `fall` say.
pub async fn run(
    check: Check,
    config: HealthConfig,
    tx: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let interval = Duration::from_millis(config.interval_ms);
    let timeout = Duration::from_millis(config.timeout_ms);
    let (mut passes, mut failures) = (0u32, 0u32);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let outcome = match tokio::time::timeout(timeout, check.run()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} ms", config.timeout_ms)),
        };
        let healthy = *tx.borrow();
        match outcome {
            Ok(()) => {
                failures = 0;
                passes = passes.saturating_add(1);
                if !healthy && passes >= config.rise {
                    tracing::info!(?check, passes, "the local service is healthy");
                    tx.send_replace(true);
                }
            }
            Err(why) => {
                passes = 0;
                failures = failures.saturating_add(1);
                if healthy && failures >= config.fall {
                    tracing::warn!(?check, failures, %why, "the local service is unhealthy");
                    tx.send_replace(false);
                } else {
                    tracing::debug!(?check, %why, "a health check failed");
                }
            }
        }
    }
}
