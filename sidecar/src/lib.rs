//! The Rookery sidecar: one process next to a service that does what SmartStack's three do
//! (Nerve, Synapse and HAProxy).
//!
//! - **Registration** ([`register`]): the local service, once its [`health`] checks pass and
//!   the listeners are bound, as an ephemeral node in Curator's `ServiceInstance` JSON.
//! - **Discovery** ([`discover`]): one persistent recursive watch per registry path, published
//!   as whole registry states. It knows nothing of balancing.
//! - **The view** ([`view`]): each service's pool, swapped atomically, behind a
//!   static-stability guard, kept on disk.
//! - **Balancing** ([`balance`]): pools that add, remove and pick (P2C, peak-EWMA, round
//!   robin, weights).
//! - **Layers** ([`layers`]): timeouts, retries within a budget and outlier ejection, as tower
//!   layers assembled in one place.
//! - **The proxy** ([`proxy`], [`listener`], [`upstream`]): HTTP/1.1 and HTTP/2 both ways,
//!   upgrades, TLS, pooled connections.
//! - **Admin** ([`admin`]): `/ready`, `/live`, `/metrics`, `/endpoints`.
//!
//! [`run`] is the whole sidecar, ending with the lame-duck shutdown when its token is
//! cancelled. See `docs/sidecar.md` for the design.

pub mod admin;
pub mod balance;
pub mod config;
pub mod discover;
pub mod endpoint;
mod error;
pub mod health;
pub mod layers;
pub mod listener;
pub mod metrics;
pub mod proxy;
pub mod register;
pub mod tls;
pub mod upstream;
pub mod view;

pub use config::{Config, Override};
pub use error::{Error, Result};

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rookery_client::Client;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::endpoint::Endpoint;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::upstream::Clients;
use crate::view::View;

/// Runs the sidecar until `stop` is cancelled, then shuts down as a lame duck: `/ready` turns
/// 503 and the registration is deleted; after `drain.propagation_ms` (for callers to see the
/// removal) the listeners stop accepting; in-flight requests get up to `drain.timeout_ms`.
///
/// # Errors
/// A listener that cannot be bound or a TLS file that cannot be read (at start).
pub async fn run(config: Config, stop: CancellationToken) -> Result<()> {
    config.check()?;
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let clients = Clients::new(&config.upstream)?;
    let view = Arc::new(View::new(config.clone(), clients, metrics));

    // Everything that can fail at start, first.
    let admin_listener = listener::bind(config.admin.listen).await?;
    let outbound_listener = listener::bind(config.outbound.listen).await?;
    let outbound_tls = config
        .outbound
        .tls
        .as_ref()
        .map(tls::acceptor)
        .transpose()?;
    let inbound = match &config.inbound {
        Some(l) => Some((
            listener::bind(l.listen).await?,
            l.tls.as_ref().map(tls::acceptor).transpose()?,
        )),
        None => None,
    };
    tracing::info!(outbound = %config.outbound.listen, admin = %config.admin.listen,
        inbound = ?config.inbound.as_ref().map(|l| l.listen), zookeeper = %config.zookeeper,
        "sidecar starting");

    // Stops the background work, last.
    let work = CancellationToken::new();
    // Stops accepting requests (after the lame duck's propagation delay).
    let accepting = CancellationToken::new();
    // Starts the lame duck: unregister.
    let draining = CancellationToken::new();

    let (client_tx, client_rx) = watch::channel(None);
    tokio::spawn(connect(
        config.clone(),
        client_tx,
        view.clone(),
        work.clone(),
    ));
    let sources = discover::sources(&config.base_path, &config.sources);
    let discovered = discover::spawn(client_rx.clone(), sources, work.clone());
    tokio::spawn(view::run(view.clone(), discovered, work.clone()));

    let drain_time = Duration::from_millis(config.drain.timeout_ms);
    let outbound = Arc::new(Proxy::outbound(view.clone(), &config));
    let mut serving = vec![listener::spawn(
        "outbound",
        outbound_listener,
        outbound_tls,
        move |req, _peer| outbound.clone().handle(req),
        accepting.clone(),
        drain_time,
    )];
    if let (Some((l, tls)), Some(service)) = (inbound, &config.service) {
        let local = Endpoint {
            id: "local".into(),
            host: service.app.ip().to_string(),
            port: service.app.port(),
            ssl_port: None,
            weight: 1,
            zone: None,
            enabled: true,
        };
        let upstream = view.fixed(&service.name, local);
        let inbound = Arc::new(Proxy::inbound(view.clone(), upstream, &config));
        serving.push(listener::spawn(
            "inbound",
            l,
            tls,
            move |req, _peer| inbound.clone().handle(req),
            accepting.clone(),
            drain_time,
        ));
    }
    let registers = config.service.is_some();
    let admin_view = view.clone();
    let admin = listener::spawn(
        "admin",
        admin_listener,
        None,
        move |req, _peer| admin::handle(admin_view.clone(), registers, req),
        work.clone(),
        Duration::from_millis(100),
    );
    view.status.listening.store(true, Ordering::Relaxed);

    let registration = config.service.as_ref().map(|service| {
        let (healthy_tx, healthy_rx) = watch::channel(false);
        tokio::spawn(health::run(
            health::Check::new(&config.health, service.app),
            config.health.clone(),
            healthy_tx,
            work.clone(),
        ));
        tokio::spawn(register::run(
            view.clone(),
            config.base_path.clone(),
            register::instance(service, &config),
            client_rx.clone(),
            healthy_rx,
            draining.clone(),
        ))
    });

    stop.cancelled().await;
    tracing::info!("lame duck: not ready, unregistering");
    view.status.draining.store(true, Ordering::Relaxed);
    draining.cancel();
    if let Some(registration) = registration {
        if tokio::time::timeout(Duration::from_secs(10), registration)
            .await
            .is_err()
        {
            tracing::warn!("could not unregister within 10 s; the node goes with the session");
        }
        let propagation = Duration::from_millis(config.drain.propagation_ms);
        tracing::info!(
            propagation_ms = config.drain.propagation_ms,
            "waiting for callers to see the removal"
        );
        tokio::time::sleep(propagation).await;
    }
    tracing::info!("draining in-flight requests");
    accepting.cancel();
    for task in serving {
        let _ = task.await;
    }
    work.cancel();
    let _ = admin.await;
    if let Some(client) = client_rx.borrow().clone() {
        let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    }
    tracing::info!("sidecar stopped");
    Ok(())
}

/// Connects to the ensemble (retrying while it is unreachable: the sidecar routes on a view
/// kept on disk meanwhile), publishes the client, and tracks whether it is connected.
async fn connect(
    config: Arc<Config>,
    tx: watch::Sender<Option<Client>>,
    view: Arc<View>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let client = loop {
        let attempt = Client::builder(&config.zookeeper)
            .session_timeout(Duration::from_millis(config.session_timeout_ms))
            .renew_session(true)
            .connect();
        tokio::select! {
            () = stop.cancelled() => return,
            result = attempt => match result {
                Ok(client) => break client,
                Err(e) => {
                    tracing::warn!(zookeeper = %config.zookeeper, error = %e,
                        "cannot reach the ensemble; routing on the last view meanwhile");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            },
        }
    };
    tracing::info!(
        session = format_args!("{:#x}", client.session_id()),
        "connected to the ensemble"
    );
    let mut states = client.state_watcher();
    let _ = tx.send(Some(client));
    loop {
        let connected = states.borrow_and_update().is_connected();
        view.status.connected.store(connected, Ordering::Relaxed);
        view.metrics().connected.set(i64::from(connected));
        tokio::select! {
            () = stop.cancelled() => return,
            changed = states.changed() => if changed.is_err() { return },
        }
    }
}
