//! Registration: the local service as an ephemeral node in Curator's `ServiceInstance` JSON
//! under `<base>/<name>/<id>`, written only while the health checks pass (and after the
//! listeners are bound), deleted when they fail or when the sidecar shuts down.
//!
//! After a session is renewed, [`ServiceDiscovery`] writes the node again: a node left by the
//! dead session (its `ephemeralOwner` is not the current session) is replaced in one `multi`
//! (a versioned delete and the create), never by a blind delete and create.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rookery_client::discovery::{ServiceDiscovery, ServiceInstance};
use rookery_client::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, ServiceConfig};
use crate::view::View;

/// `service.advertise = "auto"`: the host's first non-loopback address, as Curator's
/// `ServiceInstanceBuilder` picks one (a container's address on its network).
pub const ADVERTISE_AUTO: &str = "auto";

/// The first non-loopback address of this host's interfaces (IPv4 first).
fn local_ip() -> Option<std::net::IpAddr> {
    let addrs = match if_addrs::get_if_addrs() {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "listing the network interfaces");
            return None;
        }
    };
    let usable = || addrs.iter().filter(|a| !a.is_loopback()).map(|a| a.ip());
    usable().find(|ip| ip.is_ipv4()).or_else(|| usable().next())
}

/// The instance `service` describes.
pub fn instance(service: &ServiceConfig, config: &Config) -> ServiceInstance {
    let id = service
        .id
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let address = match service.advertise.as_deref() {
        Some(ADVERTISE_AUTO) => local_ip().map_or_else(
            || {
                tracing::warn!("no non-loopback address found: advertising the app's address");
                service.app.ip().to_string()
            },
            |ip| ip.to_string(),
        ),
        Some(address) => address.to_owned(),
        None => service.app.ip().to_string(),
    };
    // An inbound listener fronts the service: a plain one is its port, a TLS one its
    // `sslPort` (and the app's own port stays the plain port).
    let inbound = config.inbound.as_ref();
    let tls_inbound = inbound.filter(|l| l.tls.is_some()).map(|l| l.listen.port());
    let plain_inbound = inbound.filter(|l| l.tls.is_none()).map(|l| l.listen.port());
    let port = service
        .port
        .or(plain_inbound)
        .unwrap_or_else(|| service.app.port());
    let mut instance = ServiceInstance::new(&service.name)
        .with_id(&id)
        .with_address(&address, port);
    if let Some(ssl_port) = tls_inbound {
        instance = instance.with_ssl_port(ssl_port);
    }
    if service.weight.is_some() || service.zone.is_some() {
        let mut payload = serde_json::Map::new();
        if let Some(w) = service.weight {
            payload.insert("weight".into(), w.into());
        }
        if let Some(z) = &service.zone {
            payload.insert("zone".into(), z.clone().into());
        }
        instance = instance.with_payload(serde_json::Value::Object(payload));
    }
    instance
}

/// Keeps `instance` registered while `healthy` says so, until `drain`; then unregisters and
/// returns.
pub async fn run(
    view: Arc<View>,
    base_path: String,
    instance: ServiceInstance,
    mut clients: watch::Receiver<Option<Client>>,
    mut healthy: watch::Receiver<bool>,
    drain: CancellationToken,
) {
    let client = tokio::select! {
        c = clients.wait_for(Option::is_some) => match c.map(|c| c.clone()) {
            Ok(Some(c)) => c,
            _ => return,
        },
        () = drain.cancelled() => return,
    };
    let discovery = ServiceDiscovery::new(&client, &base_path);
    let set = |on: bool| {
        view.status.registered.store(on, Ordering::Relaxed);
        view.metrics().registered.set(i64::from(on));
    };
    let mut registered = false;
    loop {
        let want = *healthy.borrow_and_update() && !drain.is_cancelled();
        let mut retry = false;
        if want && !registered {
            match discovery.register(&instance).await {
                Ok(()) => {
                    registered = true;
                    set(true);
                    tracing::info!(name = %instance.name, id = %instance.id, "registered");
                }
                Err(e) => {
                    retry = true;
                    tracing::warn!(name = %instance.name, error = %e, "cannot register yet; retrying");
                }
            }
        } else if !want && registered {
            match discovery.unregister(&instance.name, &instance.id).await {
                Ok(()) => {
                    registered = false;
                    set(false);
                    tracing::info!(name = %instance.name, id = %instance.id, "unregistered");
                }
                Err(e) => {
                    retry = true;
                    tracing::warn!(name = %instance.name, error = %e, "cannot unregister yet; retrying");
                }
            }
        }
        if drain.is_cancelled() && !registered {
            return;
        }
        tokio::select! {
            changed = healthy.changed() => if changed.is_err() { return },
            () = drain.cancelled(), if !drain.is_cancelled() => {}
            () = tokio::time::sleep(Duration::from_secs(1)), if retry => {}
        }
    }
}
