//! `demo-service`: a small HTTP service for the sidecar's tests, the examples and the compose
//! file. HTTP/1.1 and h2c on one port.
//!
//! - `GET /` answers the instance's name (also in the `x-instance` header);
//! - `GET /health` answers 200, or 503 after `POST /health/fail` (until `POST /health/pass`);
//! - `GET /status/CODE` answers CODE;
//! - `GET /slow/MS` answers after MS milliseconds;
//! - `POST /echo` answers the request's body;
//! - `GET /ws` is a websocket that echoes every message;
//! - `GET /headers` answers the request's headers, one per line;
//! - `POST /mode/broken` makes every other request answer 500 (until `POST /mode/ok`).
//!
//! Usage: `cargo run --example demo-service -- --listen 127.0.0.1:8080 --name a`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

struct Demo {
    name: String,
    healthy: AtomicBool,
    broken: AtomicBool,
}

fn reply(status: StatusCode, body: impl Into<Bytes>, name: &str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = name.parse() {
        r.headers_mut().insert("x-instance", v);
    }
    r
}

async fn handle(
    demo: Arc<Demo>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let name = demo.name.clone();
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let ok = |body: String| reply(StatusCode::OK, body, &name);
    let control = path.starts_with("/health") || path.starts_with("/mode/");
    if demo.broken.load(Ordering::Relaxed) && !control {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{name} is broken\n"),
            &name,
        ));
    }
    Ok(match (method.as_str(), path.as_str()) {
        ("POST", "/mode/broken") => {
            demo.broken.store(true, Ordering::Relaxed);
            ok("broken\n".into())
        }
        ("POST", "/mode/ok") => {
            demo.broken.store(false, Ordering::Relaxed);
            ok("ok\n".into())
        }
        ("GET", "/") => ok(format!("{name}\n")),
        ("GET", "/health") if demo.healthy.load(Ordering::Relaxed) => ok("ok\n".into()),
        ("GET", "/health") => reply(StatusCode::SERVICE_UNAVAILABLE, "failing\n", &name),
        ("POST", "/health/fail") => {
            demo.healthy.store(false, Ordering::Relaxed);
            ok("failing\n".into())
        }
        ("POST", "/health/pass") => {
            demo.healthy.store(true, Ordering::Relaxed);
            ok("ok\n".into())
        }
        ("POST", "/echo") | ("PUT", "/echo") => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            reply(StatusCode::OK, body, &name)
        }
        ("GET", "/headers") => {
            let mut out = format!("version: {:?}\n", req.version());
            for (k, v) in req.headers() {
                out.push_str(&format!("{k}: {}\n", v.to_str().unwrap_or("?")));
            }
            ok(out)
        }
        ("GET", "/ws") => {
            let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
                return Ok(reply(
                    StatusCode::BAD_REQUEST,
                    "not a websocket request\n",
                    &name,
                ));
            };
            let upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let Ok(upgraded) = upgrade.await else { return };
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None)
                        .await;
                let (mut tx, mut rx) = ws.split();
                while let Some(Ok(msg)) = rx.next().await {
                    if msg.is_close() || tx.send(msg).await.is_err() {
                        break;
                    }
                }
            });
            let mut r = reply(StatusCode::SWITCHING_PROTOCOLS, Bytes::new(), &name);
            let h = r.headers_mut();
            h.insert("upgrade", "websocket".parse().unwrap());
            h.insert("connection", "upgrade".parse().unwrap());
            h.insert(
                "sec-websocket-accept",
                derive_accept_key(key.as_bytes()).parse().unwrap(),
            );
            r
        }
        ("GET", p) if p.starts_with("/status/") => {
            let code = p["/status/".len()..]
                .parse::<u16>()
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok());
            match code {
                Some(code) => reply(code, format!("{name} {code}\n"), &name),
                None => reply(StatusCode::BAD_REQUEST, "bad status\n", &name),
            }
        }
        ("GET", p) if p.starts_with("/slow/") => {
            let ms = p["/slow/".len()..].parse::<u64>().unwrap_or(0).min(600_000);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            ok(format!("{name} after {ms} ms\n"))
        }
        _ => reply(StatusCode::NOT_FOUND, "not found\n", &name),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut listen: SocketAddr = "127.0.0.1:8080".parse()?;
    // In a container, the host name is the container's id: each instance answers its own.
    let mut name = std::env::var("HOSTNAME").unwrap_or_else(|_| "demo".to_owned());
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => listen = args.next().unwrap_or_default().parse()?,
            "--name" => name = args.next().unwrap_or_default(),
            other => anyhow::bail!(
                "unknown argument {other}; usage: demo-service --listen IP:PORT --name NAME"
            ),
        }
    }
    let listener = tokio::net::TcpListener::bind(listen).await?;
    eprintln!("demo-service {name} listening on {listen}");
    let demo = Arc::new(Demo {
        name,
        healthy: AtomicBool::new(true),
        broken: AtomicBool::new(false),
    });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = term.recv() => return Ok(()),
        };
        let _ = stream.set_nodelay(true);
        let demo = demo.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(demo.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await;
        });
    }
}
