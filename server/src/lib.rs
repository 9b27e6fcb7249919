//! Rookery's ZooKeeper-compatible server.
//!
//! # Layout
//! - [`config`]: zoo.cfg keys into a typed [`Config`].
//! - [`connection`]: one task per socket: framing, decoding, bounded queues.
//! - [`server`]: the request processor that owns all state and orders everything.
//! - [`prep`]: write requests into transactions, with ZooKeeper's check order.
//! - [`txn`]: the transactions themselves.
//! - [`tree`]: the data tree that applies committed transactions.
//! - [`watch`]: the watch tables.
//! - [`session`]: the session table and expiry.
//! - [`acl`]: ACL checks and auth providers.
//! - [`auth`]: SASL (DIGEST-MD5) and x509 identities.
//! - [`tls`]: TLS for the secure client port and the quorum, reloaded from disk.
//! - [`admin`]: four-letter words, and the AdminServer's HTTP commands.
//! - [`metrics`]: Prometheus metrics (on the admin server and the Prometheus provider's port).
//!
//! - [`storage`]: the transaction log, snapshots and recovery (sync I/O behind a backend trait).
//!
//! Every write is durable (fdatasync, shared by concurrent writes) before it is acknowledged.

pub mod acl;
pub mod admin;
pub mod auth;
pub mod config;
pub mod connection;
pub mod ensemble;
pub mod env;
pub mod inspect;
pub mod metrics;
pub mod prep;
pub mod quorum;
pub mod server;
pub mod session;
pub mod storage;
pub mod tls;
pub mod tree;
pub mod txn;
pub mod watch;
pub mod zab;

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use config::Config;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;

/// Capacity of the core's event queue; connections wait (and stop reading) when it is full.
const CORE_QUEUE: usize = 16 * 1024;

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// Recovery found the data directory unusable.
    #[error(transparent)]
    Storage(#[from] storage::StorageError),
    /// The log failed while serving; nothing after the failure was acknowledged.
    #[error(transparent)]
    Failed(#[from] server::StorageFailed),
    /// The ensemble configuration or the peer ports are unusable.
    #[error("ensemble: {0}")]
    Ensemble(String),
    /// A port could not be bound.
    #[error("cannot listen on the {0}")]
    Listen(String),
    /// The SASL users file is unusable.
    #[error("SASL: {0}")]
    Sasl(String),
    /// The TLS stores are unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// Accepts the next connection on `listener`, or `None` once `shutdown` is cancelled. A failed
/// accept (usually EMFILE) is logged and retried after a short pause rather than spun on.
pub(crate) async fn accept(
    listener: &TcpListener,
    what: &str,
    shutdown: &CancellationToken,
) -> Option<(tokio::net::TcpStream, std::net::SocketAddr)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(pair) => return Some(pair),
                Err(e) => {
                    tracing::warn!(error = %e, "{what} accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = shutdown.cancelled() => return None,
        }
    }
}

/// Starts the admin server and the Prometheus endpoint, as configured. As in ZooKeeper, a port
/// that cannot be bound is a warning, not a reason to stop serving clients.
async fn start_http(
    cfg: &Config,
    core: &mpsc::Sender<server::Event>,
    metrics: &Arc<metrics::Metrics>,
    shutdown: &CancellationToken,
) {
    let mut servers = Vec::new();
    if cfg.admin_enabled {
        let addr = cfg.admin_address.unwrap_or(cfg.client_port_address);
        let routes = admin::http::Routes::Admin {
            command_url: cfg.admin_command_url.clone(),
        };
        servers.push(("admin server", addr, cfg.admin_port, routes));
    }
    if cfg.metrics_enabled {
        let addr = cfg.metrics_address.unwrap_or(cfg.client_port_address);
        servers.push((
            "Prometheus metrics",
            addr,
            cfg.metrics_port,
            admin::http::Routes::Metrics,
        ));
    }
    for (what, ip, port, routes) in servers {
        let listener = match TcpListener::bind((ip, port)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(%ip, port, error = %e, "cannot serve the {what}; carrying on without it");
                continue;
            }
        };
        match listener.local_addr() {
            Ok(local) => tracing::info!(%local, "serving the {what}"),
            Err(_) => tracing::info!("serving the {what}"),
        }
        tokio::spawn(admin::http::serve(
            listener,
            routes,
            core.clone(),
            metrics.clone(),
            shutdown.clone(),
        ));
    }
}

/// Capacity of the queue of messages from other members.
const PEER_QUEUE: usize = 16 * 1024;

/// Recovers the state in the configured directories (see [`storage::recovery`]). An ensemble
/// member loads its snapshot but does not replay its log: the leader decides which of the log's
/// records are committed ([`storage::recovery::recover_unapplied`]).
pub fn recover(
    cfg: &Config,
    backend: &dyn storage::Backend,
) -> Result<storage::recovery::Recovered, storage::StorageError> {
    let (snap_dir, log_dir) = (&cfg.data_dir, &cfg.data_log_dir);
    let recovered = if cfg.is_ensemble() {
        storage::recovery::recover_unapplied(backend, snap_dir, log_dir)?
    } else {
        storage::recovery::recover(backend, snap_dir, log_dir)?
    };
    for w in &recovered.warnings {
        tracing::warn!("{w}");
    }
    if let Some(cut) = &recovered.cut {
        if cfg.is_ensemble() {
            // `start_ensemble` reads the marker recovery wrote and says what follows.
            tracing::warn!(%cut, "recovery cut a non-empty tail off the log");
        } else {
            // Usually a write that never completed, so never acknowledged. But if the disk
            // damaged or lost it after it was synced, acknowledged writes are gone, and a
            // standalone server has no other copy to recover them from.
            tracing::warn!(
                %cut,
                "recovery cut a non-empty tail off the log: if the disk damaged or lost synced \
                 data, writes that were acknowledged are lost, and a standalone server has no \
                 other copy; going on with the history up to the cut"
            );
        }
    }
    tracing::info!(
        last_zxid = format_args!("{:#x}", recovered.last_zxid),
        applied_zxid = format_args!("{:#x}", recovered.applied_zxid),
        unapplied = recovered.unapplied.len(),
        snapshot = ?recovered.snapshot.as_ref().map(|s| s.0.display().to_string()),
        replayed = ?recovered.replayed,
        sessions = recovered.sessions.len(),
        nodes = recovered.tree.node_count(),
        "recovered"
    );
    Ok(recovered)
}

/// Recovers from the data directories, then serves clients on `listener` (the plain client
/// port, if the configuration has one) and on the secure client port until `shutdown` is
/// cancelled or storage fails.
pub async fn run(
    cfg: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    run_with_backend(cfg, listener, shutdown, Arc::new(storage::FileBackend)).await
}

/// [`run`] over any storage backend (tests use [`storage::MemBackend`] to inject faults).
pub async fn run_with_backend(
    cfg: Config,
    listener: Option<TcpListener>,
    shutdown: CancellationToken,
    backend: Arc<dyn storage::Backend>,
) -> Result<(), RunError> {
    let is_ensemble = cfg.is_ensemble();
    // Unusable certificates stop the server before it recovers or serves anything.
    let secure_tls = match cfg.secure_client_port {
        Some(_) => Some(tls::Reloading::new(
            "secure client port",
            &cfg.ssl,
            tls::server_config,
        )?),
        None => None,
    };
    let recovered = recover(&cfg, backend.as_ref())?;
    let cfg = Arc::new(cfg);
    let mut log = open_log(&cfg, backend.clone(), &recovered)?;
    log.prepare_ahead();
    let (tx, rx) = mpsc::channel(CORE_QUEUE);
    let durable_tx = tx.clone();
    let (ensemble, peers, dirs) = if is_ensemble {
        let (ensemble, peers, dirs) =
            start_ensemble(&cfg, &recovered, shutdown.clone(), &backend).await?;
        (Some(ensemble), Some(peers), Some(dirs))
    } else {
        (None, None, None)
    };
    let metrics = Arc::new(metrics::Metrics::new());
    let fsync_metrics = metrics.clone();
    let writer = storage::writer::LogWriter::spawn(log, dirs, move |r| {
        if let Ok(synced) = &r {
            fsync_metrics.fsync_time.observe(synced.fsync_ms);
        }
        let _ = durable_tx.blocking_send(server::Event::from_sync(r));
    });
    let core = server::Core::new(
        cfg.clone(),
        recovered,
        server::Io::system(Box::new(writer), backend, tx.clone()),
        ensemble,
    )
    .with_metrics(metrics.clone())
    .with_sasl_users(sasl_users(&cfg)?);
    let global = core.slots();
    start_http(&cfg, &tx, &metrics, &shutdown).await;
    let core_shutdown = shutdown.clone();
    let core_task = tokio::spawn(async move {
        let r = core.run(rx, peers, core_shutdown.clone()).await;
        // Whatever stopped the core stops the listener too.
        core_shutdown.cancel();
        r
    });
    let clients = Arc::new(Clients {
        total: Arc::new(Semaphore::new(if cfg.max_cnxns == 0 {
            Semaphore::MAX_PERMITS
        } else {
            cfg.max_cnxns
        })),
        per_ip: Mutex::default(),
        // Connection ids start at a random point: a leader tells its learners' connections apart
        // by (learner, id) when it checks the order of their forwarded requests, and a learner
        // that restarts must not reuse the ids of its previous run (2^62 apart from `u64::MAX`,
        // which stands for no connection, and never 0).
        next_conn: AtomicU64::new((rand::random::<u64>() >> 2) | 1),
        core: tx.clone(),
        cfg: cfg.clone(),
        global,
    });
    if let (Some(port), Some(tls)) = (cfg.secure_client_port, secure_tls) {
        let ip = cfg
            .secure_client_port_address
            .unwrap_or(cfg.client_port_address);
        match TcpListener::bind((ip, port)).await {
            Ok(secure) => {
                if let Ok(local) = secure.local_addr() {
                    tracing::info!(%local, "serving TLS clients");
                }
                tls.watch(shutdown.clone());
                tokio::spawn(clients.clone().serve(secure, Some(tls), shutdown.clone()));
            }
            Err(e) => {
                shutdown.cancel();
                let _ = core_task.await;
                return Err(RunError::Listen(format!(
                    "secure client port {ip}:{port}: {e}"
                )));
            }
        }
    }
    if let Some(listener) = listener {
        tokio::spawn(clients.clone().serve(listener, None, shutdown.clone()));
    }
    drop(clients);
    drop(tx);
    match core_task.await {
        Ok(r) => Ok(r?),
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

/// `sslQuorum`: the members' TLS configurations, reloaded when their files change.
fn quorum_tls(
    cfg: &Config,
    shutdown: &CancellationToken,
) -> Result<Option<quorum::QuorumTls>, RunError> {
    let Some(settings) = &cfg.ssl_quorum else {
        return Ok(None);
    };
    let mut settings = settings.clone();
    if settings.client_auth != tls::ClientAuth::Need {
        // Peer authentication is the point of quorum TLS: a member always shows a certificate.
        tracing::warn!("ssl.quorum.clientAuth is ignored: members always require certificates");
        settings.client_auth = tls::ClientAuth::Need;
    }
    if !settings.hostname_verification {
        tracing::warn!(
            "ssl.quorum.hostnameVerification=false: any certificate from the trust store may \
             act as any member"
        );
    }
    let server = tls::Reloading::new("quorum (accepting)", &settings, tls::server_config)?;
    let client = tls::Reloading::new("quorum (dialling)", &settings, tls::client_config)?;
    server.watch(shutdown.clone());
    client.watch(shutdown.clone());
    Ok(Some(quorum::QuorumTls {
        server,
        client,
        verify_names: settings.hostname_verification,
        handshake_timeout_ms: settings.handshake_timeout_ms,
    }))
}

/// The SASL DIGEST-MD5 users of the configured JAAS file's section (none without a file).
fn sasl_users(cfg: &Config) -> Result<BTreeMap<String, tls::Secret>, RunError> {
    let Some(path) = &cfg.jaas_config else {
        return Ok(BTreeMap::new());
    };
    let jaas = auth::jaas::read_file(path).map_err(|e| RunError::Sasl(e.to_string()))?;
    if jaas.section(&cfg.jaas_section).is_none() {
        return Err(RunError::Sasl(format!(
            "{} has no {} section",
            path.display(),
            cfg.jaas_section
        )));
    }
    let users = jaas.digest_users(&cfg.jaas_section);
    tracing::info!(users = users.len(), section = %cfg.jaas_section, "SASL DIGEST-MD5 users loaded");
    Ok(users
        .into_iter()
        .map(|(user, password)| (user, tls::Secret::new(password)))
        .collect())
}

/// What the client listeners share: the connection limits, and the way to the core.
struct Clients {
    /// `maxCnxns`.
    total: Arc<Semaphore>,
    /// Open connections per client address (`maxClientCnxns`).
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    next_conn: AtomicU64,
    core: mpsc::Sender<server::Event>,
    cfg: Arc<Config>,
    global: Arc<Semaphore>,
}

impl Clients {
    /// Accepts clients on one port (plain, or TLS with `tls`) until `shutdown`.
    async fn serve(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Option<Arc<tls::Reloading<rustls::ServerConfig>>>,
        shutdown: CancellationToken,
    ) {
        let what = if tls.is_some() {
            "secure client"
        } else {
            "client"
        };
        loop {
            let Some((stream, addr)) = accept(&listener, what, &shutdown).await else {
                break;
            };
            let Ok(permit) = self.total.clone().try_acquire_owned() else {
                tracing::warn!(peer = %addr, "too many connections; refusing");
                continue;
            };
            let ip = addr.ip();
            {
                let mut counts = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(ip).or_insert(0);
                let limit = self.cfg.max_client_cnxns;
                if limit != 0 && *n >= limit {
                    tracing::warn!(peer = %addr, limit, "too many connections from this address; refusing");
                    continue;
                }
                *n += 1;
            }
            let conn = self.next_conn.fetch_add(1, Ordering::Relaxed);
            let me = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let (core, cfg, global) = (me.core.clone(), me.cfg.clone(), me.global.clone());
                connection::serve(stream, addr, conn, core, cfg, global, tls).await;
                let mut counts = me.per_ip.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(n) = counts.get_mut(&ip) {
                    *n -= 1;
                    if *n == 0 {
                        counts.remove(&ip);
                    }
                }
                drop(permit);
            });
        }
    }
}

/// Builds the ZAB core from what is on disk and starts the peer transport.
async fn start_ensemble(
    cfg: &Config,
    recovered: &storage::recovery::Recovered,
    shutdown: CancellationToken,
    backend: &Arc<dyn storage::Backend>,
) -> Result<
    (
        ensemble::Ensemble,
        mpsc::Receiver<quorum::Incoming>,
        storage::writer::StoreDirs,
    ),
    RunError,
> {
    let (node, dirs) = zab_node(cfg, recovered, backend, rand::random())?;
    let my_id = u64::from(cfg.server_id);
    let (in_tx, in_rx) = mpsc::channel(PEER_QUEUE);
    let tls = quorum_tls(cfg, &shutdown)?;
    let net = quorum::start(my_id, &cfg.ensemble, in_tx, shutdown, tls)
        .await
        .map_err(|e| RunError::Ensemble(e.to_string()))?;
    tracing::info!(
        id = my_id,
        members = cfg.ensemble.len(),
        accepted_epoch = dirs.epochs.accepted,
        current_epoch = dirs.epochs.current,
        "starting as an ensemble member"
    );
    Ok((ensemble_over(cfg, node, Box::new(net)), in_rx, dirs))
}

/// Opens the transaction log to append after what recovery found.
pub fn open_log(
    cfg: &Config,
    backend: Arc<dyn storage::Backend>,
    recovered: &storage::recovery::Recovered,
) -> Result<storage::txn_log::TxnLog, storage::StorageError> {
    storage::txn_log::TxnLog::open(
        backend,
        &cfg.data_log_dir,
        cfg.prealloc_bytes,
        recovered.last_zxid,
        recovered.tail.clone(),
    )
}

/// The ZAB core of this member, from what recovery found on disk (its epochs and tail-cut
/// marker too), with its randomness seeded by `seed`; and where the log writer performs the
/// core's store operations that are not log appends.
pub fn zab_node(
    cfg: &Config,
    recovered: &storage::recovery::Recovered,
    backend: &Arc<dyn storage::Backend>,
    seed: u64,
) -> Result<(zab::Node, storage::writer::StoreDirs), RunError> {
    let epochs = storage::epoch::read(backend.as_ref(), &cfg.data_dir)?;
    // Set by recovery before it cut a non-empty tail, at this start or an earlier one, and removed
    // only once this member has synchronized with a leader (see `storage::tail_cut`).
    let tail_cut = storage::tail_cut::read(backend.as_ref(), &cfg.data_dir)?;
    if let Some(what) = &tail_cut {
        tracing::warn!(
            marker = %storage::tail_cut::path(&cfg.data_dir).display(),
            cut = %what,
            "recovery cut a non-empty tail off this member's log, and it has not synchronized \
             with a leader since: the cut may have removed acknowledged writes, so a voter does \
             not vote or lead until it has synchronized with a leader that a quorum of the other \
             voters elected (if too few of them are up, the ensemble waits for them; a sole \
             voter goes on). Only if you know that the cut data was never acknowledged (for \
             example every member lost power together and the disks honour fsync) may you \
             remove the marker by hand and restart"
        );
    }
    let my_id = u64::from(cfg.server_id);
    let voters = cfg
        .ensemble
        .iter()
        .filter(|p| !p.observer)
        .map(|p| p.id)
        .collect();
    let observers = cfg
        .ensemble
        .iter()
        .filter(|p| p.observer)
        .map(|p| p.id)
        .collect();
    let per = ensemble::TICKS_PER_TICK;
    let mut zcfg = zab::Config::new(my_id, voters, observers);
    // A PING (and, while connecting, a resent FOLLOWERINFO) every zab tick: a learner whose
    // first FOLLOWERINFO reached its leader before that leader settled is taken within a tenth
    // of a tick, not a whole heartbeat later.
    zcfg.heartbeat_ticks = 1;
    zcfg.sync_limit_ticks = cfg.sync_limit_ticks.saturating_mul(per);
    zcfg.init_limit_ticks = cfg.init_limit_ticks.saturating_mul(per);
    // A learner whose leader does not answer opens a fresh session after one tickTime.
    zcfg.connect_retry_ticks = per;
    zcfg.election_resend_max_ticks = 4 * per;
    zcfg.max_outstanding_proposals = cfg.max_outstanding_proposals;
    zcfg.seed = seed;
    zcfg.validate()
        .map_err(|e| RunError::Ensemble(e.to_string()))?;
    let durable = zab::DurableState {
        accepted_epoch: epochs.accepted,
        current_epoch: epochs.current,
        snapshot_zxid: zab::Zxid::from_i64(recovered.applied_zxid),
        entries: recovered
            .unapplied
            .iter()
            .map(|(zxid, payload)| zab::Entry {
                zxid: zab::Zxid::from_i64(*zxid),
                payload: bytes::Bytes::copy_from_slice(payload),
            })
            .collect(),
        tail_cut: tail_cut.is_some(),
    };
    let node = zab::Node::new(zcfg, durable).map_err(|e| RunError::Ensemble(e.to_string()))?;
    let dirs = storage::writer::StoreDirs {
        backend: backend.clone(),
        snap_dir: cfg.data_dir.clone(),
        epochs,
    };
    Ok((node, dirs))
}

/// The ensemble side of the request processor over `node`, sending through `net`, with the
/// configuration's tick and backlog limits.
pub fn ensemble_over(
    cfg: &Config,
    node: zab::Node,
    net: Box<dyn quorum::Transport>,
) -> ensemble::Ensemble {
    let tick_ms = (cfg.tick_time_ms / u64::from(ensemble::TICKS_PER_TICK)).max(1);
    // Each member's clients have at most `globalOutstandingLimit` requests in flight, so a
    // leader holds back at most that many writes per member (with room for members configured
    // with a larger limit).
    let max_backlog = cfg
        .global_outstanding_limit
        .saturating_mul(2 * cfg.ensemble.len().max(1));
    ensemble::Ensemble::new(node, net, tick_ms, max_backlog)
}
