//! Test support for the sidecar: demo services, sidecars (real `rookery sidecar` processes) and
//! an HTTP client, over the workspace's testkit.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
pub use rookery_testkit::*;

/// A demo service process.
pub struct Backend {
    pub proc: Proc,
    pub addr: SocketAddr,
    pub name: String,
}

/// Starts `demo-service` named `name` on a free port.
pub fn backend(name: &str) -> Backend {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let args = vec![
        "--listen".to_string(),
        addr.to_string(),
        "--name".to_string(),
        name.to_string(),
    ];
    let proc = start_program(&workspace_example("demo-service"), &args, &[], addr);
    Backend {
        proc,
        addr,
        name: name.to_string(),
    }
}

/// A `rookery sidecar` process.
pub struct Sidecar {
    pub proc: Proc,
    pub outbound: SocketAddr,
    pub admin: SocketAddr,
}

/// Settings that make tests quick: short health intervals, a short session and drain.
const QUICK: &[&str] = &[
    "health.interval_ms=200",
    "health.rise=1",
    "health.fall=2",
    "session_timeout_ms=4000",
    "drain.propagation_ms=1000",
    "drain.timeout_ms=5000",
    "stability.confirm_ms=3000",
    "upstream.connect_timeout_ms=500",
];

/// Starts a sidecar for the ensemble at `zk` with `extra` arguments (after the quick
/// settings, so they win).
pub fn sidecar(zk: &str, extra: &[&str]) -> Sidecar {
    let outbound = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut args: Vec<String> = vec![
        "sidecar".into(),
        "--zookeeper".into(),
        zk.into(),
        "--outbound".into(),
        outbound.to_string(),
        "--admin".into(),
        admin.to_string(),
    ];
    for s in QUICK {
        args.push("--set".into());
        args.push(s.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let proc = start_program(
        &rookery_bin(),
        &args,
        &[("RUST_LOG", "info,rookery_sidecar=debug")],
        admin,
    );
    Sidecar {
        proc,
        outbound,
        admin,
    }
}

/// A sidecar that registers `backend` as an instance of `service` (HTTP health checks).
pub fn registering(zk: &str, backend: &Backend, service: &str, extra: &[&str]) -> Sidecar {
    let app = backend.addr.to_string();
    let mut args = vec![
        "--service",
        service,
        "--id",
        &backend.name,
        "--app",
        &app,
        "--health-http",
        "/health",
    ];
    args.extend_from_slice(extra);
    sidecar(zk, &args)
}

/// A sidecar that starts `demo-service` named `name` itself (`rookery sidecar -- demo-service
/// ...`) and registers it as an instance of `service`; the service's address.
pub fn supervising(zk: &str, name: &str, service: &str, extra: &[&str]) -> (Sidecar, SocketAddr) {
    let app = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (app_s, demo) = (
        app.to_string(),
        workspace_example("demo-service").display().to_string(),
    );
    let mut args = vec![
        "--service",
        service,
        "--id",
        name,
        "--app",
        &app_s,
        "--health-http",
        "/health",
    ];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", &demo, "--listen", &app_s, "--name", name]);
    (sidecar(zk, &args), app)
}

/// An HTTP/1.1 client with pooled connections.
#[derive(Clone)]
pub struct Http(Client<HttpConnector, Full<Bytes>>);

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    pub fn new() -> Http {
        Http(Client::builder(TokioExecutor::new()).build_http())
    }

    /// Sends `method path` with `Host: host` to `addr`: the status, the body and the
    /// `x-rookery-error` header. Bounded by 15 s.
    pub async fn send(
        &self,
        method: &str,
        addr: SocketAddr,
        host: &str,
        path: &str,
        body: &[u8],
    ) -> Result<(u16, String, Option<String>), String> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .header("host", host)
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(Duration::from_secs(15), self.0.request(req))
            .await
            .map_err(|_| "no answer in 15 s".to_string())?
            .map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let error = resp
            .headers()
            .get("x-rookery-error")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = tokio::time::timeout(Duration::from_secs(15), resp.into_body().collect())
            .await
            .map_err(|_| "no body in 15 s".to_string())?
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned(), error))
    }

    pub async fn get(
        &self,
        addr: SocketAddr,
        host: &str,
        path: &str,
    ) -> Result<(u16, String), String> {
        self.send("GET", addr, host, path, b"")
            .await
            .map(|(s, b, _)| (s, b))
    }
}

/// Waits until `sidecar`'s `/ready` answers 200.
pub async fn ready(sidecar: &Sidecar) {
    let http = Http::new();
    eventually(WAIT, "the sidecar to be ready", || {
        let http = http.clone();
        async move {
            matches!(
                http.get(sidecar.admin, "admin", "/ready").await,
                Ok((200, _))
            )
        }
    })
    .await;
}

/// The sidecar's `/endpoints` document.
pub async fn endpoints(sidecar: &Sidecar) -> serde_json::Value {
    let (_, body) = Http::new()
        .get(sidecar.admin, "admin", "/endpoints")
        .await
        .expect("GET /endpoints");
    serde_json::from_str(&body).expect("/endpoints is JSON")
}

/// The ids of `service`'s endpoints in `state` on `sidecar`.
pub async fn ids_in(sidecar: &Sidecar, service: &str, state: &str) -> Vec<String> {
    let doc = endpoints(sidecar).await;
    let mut ids: Vec<String> = doc["services"][service]["endpoints"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter(|e| e["state"] == state)
                .filter_map(|e| e["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Waits until `service` has exactly `want` healthy endpoints on `sidecar`.
pub async fn healthy(sidecar: &Sidecar, service: &str, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(
        WAIT,
        &format!("{service} to have healthy endpoints {want:?}"),
        || {
            let want = want.clone();
            async move { ids_in(sidecar, service, "healthy").await == want }
        },
    )
    .await;
}

/// The value of the sample `name` with `labels` in `sidecar`'s metrics (parsed with
/// prometheus-parse), if present.
pub async fn metric(sidecar: &Sidecar, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let (_, body) = Http::new()
        .get(sidecar.admin, "admin", "/metrics")
        .await
        .ok()?;
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("the metrics parse");
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}
