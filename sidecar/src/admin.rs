//! The admin listener: `/live` (the process runs), `/ready` (it routes, and its instance is
//! registered if it registers one; 503 in lame duck), `/metrics` (Prometheus text) and
//! `/endpoints` (JSON: every endpoint's state and why it is or is not used).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use crate::layers::{full, Body};
use crate::view::View;

/// Whether the sidecar is ready, and if not, why.
pub fn readiness(view: &View, registers: bool) -> Result<(), &'static str> {
    let s = &view.status;
    if s.draining.load(Ordering::Relaxed) {
        return Err("shutting down");
    }
    if !s.listening.load(Ordering::Relaxed) {
        return Err("listeners not bound yet");
    }
    if !(s.registry_loaded.load(Ordering::Relaxed) || s.disk_loaded.load(Ordering::Relaxed)) {
        return Err("no view yet (the registry has not answered and none is kept on disk)");
    }
    if registers && !s.registered.load(Ordering::Relaxed) {
        return Err("not registered (waiting for the health checks or the registry)");
    }
    Ok(())
}

/// Answers one admin request.
pub async fn handle(
    view: Arc<View>,
    registers: bool,
    req: http::Request<Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Ok(text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n"));
    }
    Ok(match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n"),
        "/ready" => match readiness(&view, registers) {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("not ready: {why}\n"),
            ),
        },
        "/metrics" => {
            refresh(&view);
            let mut resp = text(StatusCode::OK, &view.metrics().encode());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            resp
        }
        "/endpoints" => {
            let mut resp = text(StatusCode::OK, &endpoints(&view).to_string());
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /ready, /live, /metrics or /endpoints\n",
        ),
    })
}

/// Sets the gauges that are read, not counted.
fn refresh(view: &View) {
    let s = &view.status;
    let m = view.metrics();
    m.view_age_seconds.set(s.age_seconds());
    m.view_zxid
        .set(i64::try_from(s.zxid.load(Ordering::Relaxed)).unwrap_or(i64::MAX));
    m.view_stale.set(i64::from(s.stale()));
    view.count();
}

/// The `/endpoints` document.
pub fn endpoints(view: &View) -> serde_json::Value {
    let s = &view.status;
    let filtered = view.filtered();
    let mut services = serde_json::Map::new();
    let upstreams = view.upstreams();
    let mut names: Vec<&String> = upstreams.keys().collect();
    names.sort();
    for name in names {
        let upstream = &upstreams[name];
        let mut list: Vec<serde_json::Value> = upstream
            .pool
            .members()
            .iter()
            .map(|m| {
                let st = &m.state;
                let (state, why) = st.state();
                json!({
                    "id": st.endpoint.id,
                    "address": st.authority,
                    "weight": st.endpoint.weight,
                    "zone": st.endpoint.zone,
                    "state": state,
                    "why": why,
                    "outstanding": st.outstanding(),
                    "ewma_ms": (st.ewma_ms() * 1000.0).round() / 1000.0,
                })
            })
            .collect();
        for (id, why) in filtered.get(name).into_iter().flatten() {
            list.push(json!({"id": id, "state": "filtered", "why": why}));
        }
        services.insert(
            name.clone(),
            json!({
                "balancer": format!("{:?}", upstream.policy.balancer),
                "endpoints": list,
            }),
        );
    }
    json!({
        "view": {
            "zxid": s.zxid.load(Ordering::Relaxed),
            "stale": s.stale(),
            "age_seconds": s.age_seconds(),
            "from_disk": s.disk_loaded.load(Ordering::Relaxed) && !s.registry_loaded.load(Ordering::Relaxed),
        },
        "registered": s.registered.load(Ordering::Relaxed),
        "draining": s.draining.load(Ordering::Relaxed),
        "services": services,
    })
}

fn text(status: StatusCode, body: &str) -> http::Response<Body> {
    let mut resp = http::Response::new(full(Bytes::from(body.to_owned())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}
