//! The request processor (`ZooKeeperServer`): one task that owns the data tree, the session table
//! and the watch tables, and handles every connection's requests in arrival order.
//!
//! Because a single task handles all requests and pushes replies and notifications onto each
//! connection's outbound queue as it goes, three ZooKeeper guarantees hold by construction:
//! replies to one session come back in request order; a write is visible to every read after it;
//! and a watch notification is queued before any later reply that reflects the change.
//!
//! Writes: [`Prep`] turns a request into a [`Txn`] (checked against the tree plus the changes of
//! transactions still in flight), the transaction gets the next zxid and goes to the log writer,
//! and once the log reports it durable, [`Core::commit`] applies it (the only place the tree
//! changes) and the reply goes out. Many writes share one fsync. A session's later requests wait
//! behind its in-flight writes, so replies stay in request order and a read sees the session's own
//! earlier writes. The ensemble will put consensus between preparing and applying.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rookery_proto::frame::write_frame;
use rookery_proto::records::*;
use rookery_proto::{
    perms, xid, AddWatchMode, ErrorCode, EventType, Jute, KeeperState, MultiOp, MultiResult,
    OpCode, Request, RequestError, Response, WatcherType,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::acl;
use crate::config::Config;
use crate::connection::Slot;
use crate::env::Env;
use crate::prep::{Ctx, Outstanding, Prep, WriteOp};
use crate::session::SessionTracker;
use crate::storage::codec::encode_txn;
use crate::storage::recovery::Recovered;
use crate::storage::snapshot::{SessionRecord, SnapshotImage};
use crate::storage::writer::Journal;
use crate::storage::{self, Backend};
use crate::tree::{Applied, DataTree, Notification};
use crate::txn::{Txn, TxnHeader};
use crate::watch::{ConnId, Table, WatchManager, PERSISTENT, RECURSIVE, STANDARD};

/// What a connection's writer task is asked to do.
#[derive(Debug)]
pub enum Outbound {
    /// Write these bytes. The permit, if any, frees an in-flight slot once they are written.
    Frame(Vec<u8>, Option<Slot>),
    /// Flush what is queued, then close the connection.
    Close,
    /// The connection now carries this session: its span says so from here on.
    Session(i64),
}

/// The core's handle on one connection.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    /// The bounded outbound queue.
    pub tx: mpsc::Sender<Outbound>,
    /// Cancelled to drop the connection at once (for example when its queue overflows).
    pub kill: CancellationToken,
}

/// Everything the core reacts to.
#[derive(Debug)]
pub enum Event {
    /// A four-letter word; the reply is the text to write.
    FourLetter {
        /// The command.
        cmd: String,
        /// Where the text goes.
        reply: oneshot::Sender<String>,
    },
    /// A handshake.
    Connect {
        /// The connection.
        conn: ConnId,
        /// The decoded ConnectRequest.
        req: ConnectRequest,
        /// The client's address.
        addr: SocketAddr,
        /// How to reach it.
        handle: ConnHandle,
        /// The verified client certificate's subject (secure port only): an `x509` identity.
        cert_subject: Option<String>,
    },
    /// A request after the handshake.
    Request {
        /// The connection.
        conn: ConnId,
        /// The request's xid.
        xid: i32,
        /// The decoded body, or why it did not decode.
        req: Result<Request, RequestError>,
        /// The in-flight slot this request holds.
        permit: Option<Slot>,
        /// When the frame was read, for latency statistics.
        received: Instant,
    },
    /// The socket closed.
    Disconnected {
        /// The connection.
        conn: ConnId,
    },
    /// The log made every transaction up to this zxid durable.
    Durable(i64),
    /// The log failed; nothing more may be acknowledged.
    StorageFailed(String),
    /// A snapshot finished (its zxid), or failed.
    SnapshotDone(Result<i64, String>),
    /// Ensemble: every ZAB store operation up to this sequence number is durable.
    Persisted(u64),
    /// An AdminServer command or a metrics scrape.
    Admin(crate::admin::http::AdminRequest),
}

impl Event {
    /// What a log writer's batch result tells the core.
    pub fn from_sync(r: Result<crate::storage::writer::Synced, storage::StorageError>) -> Event {
        match r {
            Ok(crate::storage::writer::Synced { seq: Some(seq), .. }) => Event::Persisted(seq),
            Ok(synced) => Event::Durable(synced.zxid),
            Err(e) => Event::StorageFailed(e.to_string()),
        }
    }
}

/// A request waiting behind its session's in-flight writes.
#[derive(Debug)]
pub struct Queued {
    pub(crate) xid: i32,
    pub(crate) req: Result<Request, RequestError>,
    pub(crate) permit: Option<Slot>,
    pub(crate) received: Instant,
}

impl Queued {
    /// Whether it must see every write acknowledged before it when the server is configured for
    /// linearizable reads: the requests that read the tree.
    fn reads_tree(&self) -> bool {
        matches!(
            self.req,
            Ok(Request::Exists(_)
                | Request::GetData(_)
                | Request::GetAcl(_)
                | Request::GetChildren(_)
                | Request::GetChildren2(_)
                | Request::MultiRead(_)
                | Request::GetEphemerals(_)
                | Request::GetAllChildrenNumber(_))
        )
    }

    fn is_txn(&self) -> bool {
        matches!(
            self.req,
            Ok(Request::Create(_)
                | Request::Create2(_)
                | Request::CreateContainer(_)
                | Request::CreateTtl(_)
                | Request::Delete(_)
                | Request::DeleteContainer(_)
                | Request::SetData(_)
                | Request::SetAcl(_)
                | Request::Multi(_)
                | Request::CloseSession)
        )
    }
}

/// How the reply to a write is built once it is applied.
#[derive(Debug, Clone)]
pub(crate) enum ReplyKind {
    Create,
    Create2,
    Stat,
    Empty,
    Multi(Vec<OpCode>),
    Close,
}

/// What to do once a transaction is applied.
#[derive(Debug)]
pub(crate) enum Plan {
    /// Server-internal (expiry, container reaping): nothing.
    Internal,
    /// Answer a handshake: the session now exists.
    Connect {
        conn: ConnId,
        timeout_ms: i32,
        passwd: [u8; 16],
        read_only: Option<bool>,
    },
    /// Answer a write.
    Reply {
        conn: ConnId,
        q: Queued,
        kind: ReplyKind,
    },
}

#[derive(Debug)]
struct Pending {
    hdr: TxnHeader,
    txn: Txn,
    plan: Plan,
}

/// Per-connection state kept by the core.
#[derive(Debug)]
pub struct Conn {
    pub(crate) handle: ConnHandle,
    pub(crate) addr: SocketAddr,
    pub(crate) session_id: i64,
    pub(crate) timeout_ms: i32,
    pub(crate) ids: Vec<Id>,
    pub(crate) stats: ConnStats,
    /// A SASL exchange under way: its challenge has been sent.
    sasl: Option<crate::auth::digest_md5::DigestMd5Server>,
    /// Waiting for its createSession transaction to become durable.
    establishing: bool,
    /// Its writes prepared but not yet applied.
    pub(crate) inflight_writes: usize,
    /// As a learner's connection: the number of its next forwarded write ([`Relay::Forward`]'s
    /// `seq`). Its connections are closed whenever the leader changes, so one count spans one
    /// leader.
    ///
    /// [`Relay::Forward`]: crate::quorum::relay::Relay::Forward
    pub(crate) forwarded: u64,
    /// Its reads waiting for the leader's confirmed commit point (`sync`; with
    /// `linearizableReads`, every read). Only more such reads run behind them (they are answered
    /// in order); anything else waits, so that a write behind them cannot be answered first (the
    /// leader's quorum round may outlast a commit).
    pub(crate) barriers: usize,
    /// Requests waiting behind those writes, in arrival order.
    queue: VecDeque<Queued>,
}

/// Counters for `cons` and `stat`.
#[derive(Debug, Default, Clone)]
pub struct ConnStats {
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) established_wall_ms: i64,
    pub(crate) last_op: &'static str,
    pub(crate) last_cxid: i32,
    pub(crate) last_zxid: i64,
    pub(crate) last_response_wall_ms: i64,
    pub(crate) last_latency_ms: u64,
    pub(crate) latency: Latency,
}

/// Min/avg/max latency in ms.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub(crate) min_ms: u64,
    pub(crate) max_ms: u64,
    pub(crate) total_ms: u64,
    pub(crate) count: u64,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            min_ms: u64::MAX,
            max_ms: 0,
            total_ms: 0,
            count: 0,
        }
    }
}

impl Latency {
    fn record(&mut self, ms: u64) {
        self.min_ms = self.min_ms.min(ms);
        self.max_ms = self.max_ms.max(ms);
        self.total_ms += ms;
        self.count += 1;
    }

    pub(crate) fn min(&self) -> u64 {
        if self.count == 0 {
            0
        } else {
            self.min_ms
        }
    }

    pub(crate) fn avg(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.total_ms as f64 / self.count as f64
        }
    }
}

/// Server-wide counters.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub(crate) received: u64,
    pub(crate) sent: u64,
    pub(crate) latency: Latency,
    pub(crate) auth_failed: u64,
}

/// The request processor.
pub struct Core {
    pub(crate) cfg: Arc<Config>,
    pub(crate) tree: DataTree,
    pub(crate) sessions: SessionTracker,
    pub(crate) conns: HashMap<ConnId, Conn>,
    pub(crate) session_conn: HashMap<i64, ConnId>,
    /// The last applied zxid.
    pub(crate) last_zxid: i64,
    /// The last zxid handed out (applied or in flight).
    pub(crate) next_zxid: i64,
    pub(crate) outstanding: Outstanding,
    /// The `globalOutstandingLimit` slots every connection's requests take (see
    /// [`crate::connection`]).
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    pending: VecDeque<Pending>,
    pub(crate) log: Box<dyn Journal>,
    backend: Arc<dyn Backend>,
    /// For threads (snapshots) that report back.
    events: mpsc::Sender<Event>,
    pub(crate) snapshot_due: u64,
    pub(crate) applied_since_snapshot: u64,
    pub(crate) snapshot_running: bool,
    pub(crate) last_snapshot_zxid: i64,
    last_purge_ms: u64,
    pub(crate) failed: Option<String>,
    /// The clocks and the background threads.
    pub(crate) env: Box<dyn Env>,
    /// Session passwords, SASL nonces and snapshot spacing draw from it.
    rng: StdRng,
    pub(crate) stats: ServerStats,
    last_container_check_ms: u64,
    /// Set for an ensemble member: the consensus core and its transport.
    pub(crate) ensemble: Option<crate::ensemble::Ensemble>,
    /// The Prometheus metrics this core records into.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// SASL DIGEST-MD5 users and their passwords (the JAAS file's `user_NAME` options).
    sasl_users: Arc<BTreeMap<String, crate::tls::Secret>>,
}

/// Why the server stopped on its own.
#[derive(Debug, thiserror::Error)]
#[error("storage failed: {0}")]
pub struct StorageFailed(pub String);

/// What a [`Core`] does its I/O through: the seams a simulator replaces.
pub struct Io {
    /// Where writes go to become durable; completions come back as [`Event::Durable`] and
    /// [`Event::Persisted`].
    pub log: Box<dyn Journal>,
    /// The file system snapshots and purges write through.
    pub backend: Arc<dyn Backend>,
    /// The sender of the queue the core's driver reads: background jobs report through it.
    pub events: mpsc::Sender<Event>,
    /// The clocks and the background threads.
    pub env: Box<dyn Env>,
    /// Randomness. The server seeds it from the operating system (session passwords come from
    /// it); a simulator seeds it from its run's seed.
    pub rng: StdRng,
}

impl Io {
    /// The server's: the real clocks, threads, and an RNG seeded by the operating system.
    pub fn system(
        log: Box<dyn Journal>,
        backend: Arc<dyn Backend>,
        events: mpsc::Sender<Event>,
    ) -> Io {
        Io {
            log,
            backend,
            events,
            env: Box::new(crate::env::SystemEnv::new()),
            rng: StdRng::from_entropy(),
        }
    }
}

/// A reply as the request handlers build it: (xid, zxid, err, body, close afterwards).
type Reply = (i32, i64, i32, Response, bool);

/// A reply carrying only an error code (the body is sent only for err 0).
fn error_reply(xid: i32, zxid: i64, code: ErrorCode, close: bool) -> Reply {
    (xid, zxid, code.code(), Response::Empty, close)
}

/// Like ZooKeeper, snapshot after a random count in [snapCount/2, snapCount] so that the
/// members of an ensemble do not all snapshot at once.
fn pick_snapshot_due(rng: &mut StdRng, snap_count: u64) -> u64 {
    let half = (snap_count / 2).max(1);
    half + rng.gen::<u64>() % (snap_count - half + 1).max(1)
}

fn reply_frame(xid: i32, zxid: i64, err: i32, body: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    rookery_proto::frame::write_reply(&mut out, &ReplyHeader { xid, zxid, err }, body);
    out
}

/// What a reply answers, for the statistics, the latency metrics and the slow-request log.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Op<'a> {
    /// The name `cons` prints as the last operation.
    pub(crate) name: &'static str,
    /// The path the request names (`""` if none).
    pub(crate) path: &'a str,
    /// A write (its latency is `updatelatency`), not a read.
    pub(crate) update: bool,
}

impl<'a> Op<'a> {
    /// A request that did not decode.
    pub(crate) const OTHER: Op<'static> = Op {
        name: "OTHR",
        path: "",
        update: false,
    };

    pub(crate) fn of(req: &'a Request) -> Op<'a> {
        let (name, update) = match req {
            Request::Create(_)
            | Request::Create2(_)
            | Request::CreateContainer(_)
            | Request::CreateTtl(_) => ("CREA", true),
            Request::Delete(_) | Request::DeleteContainer(_) => ("DELE", true),
            Request::Exists(_) => ("EXIS", false),
            Request::GetData(_) => ("GETD", false),
            Request::SetData(_) => ("SETD", true),
            Request::GetAcl(_) => ("GETA", false),
            Request::SetAcl(_) => ("SETA", true),
            Request::GetChildren(_) | Request::GetChildren2(_) => ("GETC", false),
            Request::Sync(_) => ("SYNC", false),
            Request::Ping => ("PING", false),
            Request::Multi(_) => ("MULT", true),
            Request::MultiRead(_) => ("MULT", false),
            Request::CloseSession => ("CLOS", true),
            Request::SetWatches(_) | Request::SetWatches2(_) => ("SETW", false),
            _ => ("OTHR", false),
        };
        Op {
            name,
            path: req.path(),
            update,
        }
    }
}

impl Core {
    /// A server over recovered state, doing its I/O through `io`. An ensemble member also gets
    /// its consensus core and transport.
    pub fn new(
        cfg: Arc<Config>,
        recovered: Recovered,
        io: Io,
        mut ensemble: Option<crate::ensemble::Ensemble>,
    ) -> Self {
        let Io {
            log,
            backend,
            events,
            env,
            mut rng,
        } = io;
        let mut sessions = SessionTracker::new(cfg.server_id, env.wall_ms(), cfg.tick_time_ms);
        // Restored sessions get a full timeout from now: their clients may be reconnecting.
        for s in &recovered.sessions {
            sessions.add(s.id, s.timeout_ms, s.passwd, 0);
        }
        let snapshot_due = pick_snapshot_due(&mut rng, cfg.snap_count);
        if let Some(ens) = ensemble.as_mut() {
            ens.looking_from(env.now_us());
        }
        Core {
            tree: recovered.tree,
            sessions,
            conns: HashMap::new(),
            session_conn: HashMap::new(),
            last_zxid: recovered.applied_zxid,
            next_zxid: recovered.applied_zxid,
            outstanding: Outstanding::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(cfg.global_outstanding_limit)),
            pending: VecDeque::new(),
            log,
            backend,
            events,
            snapshot_due,
            applied_since_snapshot: 0,
            snapshot_running: false,
            last_snapshot_zxid: recovered.snapshot.as_ref().map_or(0, |s| s.1),
            last_purge_ms: 0,
            failed: None,
            env,
            rng,
            stats: ServerStats::default(),
            last_container_check_ms: 0,
            ensemble,
            cfg,
            metrics: Arc::default(),
            sasl_users: Arc::default(),
        }
    }

    /// Records into `metrics` (shared with the storage thread and the HTTP endpoints).
    pub fn with_metrics(mut self, metrics: Arc<crate::metrics::Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The users SASL DIGEST-MD5 clients may authenticate as; none means SASL is refused.
    pub fn with_sasl_users(mut self, users: BTreeMap<String, crate::tls::Secret>) -> Self {
        self.sasl_users = Arc::new(users);
        self
    }

    /// `crst`: clears every connection's counters.
    pub(crate) fn reset_connection_stats(&mut self) {
        for c in self.conns.values_mut() {
            c.stats.latency = Latency::default();
            c.stats.received = 0;
            c.stats.sent = 0;
        }
    }

    /// `srst`: clears the server's counters.
    pub(crate) fn reset_server_stats(&mut self) {
        self.stats.latency = Latency::default();
        self.stats.received = 0;
        self.stats.sent = 0;
    }

    /// The `globalOutstandingLimit` slots, for the connections to take.
    pub fn slots(&self) -> Arc<tokio::sync::Semaphore> {
        self.slots.clone()
    }

    /// Requests of this member's clients in flight: read and waiting for their reply.
    pub(crate) fn outstanding_requests(&self) -> usize {
        self.cfg.global_outstanding_limit - self.slots.available_permits()
    }

    /// Monotonic ms: the session tracker's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.env.now_ms()
    }

    /// Runs until `shutdown` is cancelled, or until storage fails (an error).
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Event>,
        mut peers: Option<mpsc::Receiver<crate::quorum::Incoming>>,
        shutdown: CancellationToken,
    ) -> Result<(), StorageFailed> {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(
            (self.cfg.tick_time_ms / 2).max(1),
        ));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let zab_tick_ms = self.ensemble.as_ref().map_or(3_600_000, |e| e.tick_ms);
        let mut zab_tick = tokio::time::interval(std::time::Duration::from_millis(zab_tick_ms));
        zab_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let is_ensemble = self.ensemble.is_some();
        while self.failed.is_none() {
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.handle(ev),
                    None => break,
                },
                Some(inc) = async {
                    match peers.as_mut() {
                        Some(p) => p.recv().await,
                        None => std::future::pending().await,
                    }
                } => self.on_peer(inc),
                _ = zab_tick.tick(), if is_ensemble => self.zab_tick(),
                _ = tick.tick() => self.tick(),
                () = shutdown.cancelled() => break,
            }
        }
        for conn in self.conns.values() {
            conn.handle.kill.cancel();
        }
        match self.failed.take() {
            Some(why) => Err(StorageFailed(why)),
            None => {
                // Let the writer finish what is queued; nothing more will be acknowledged.
                self.log.close();
                Ok(())
            }
        }
    }

    /// Why storage failed, once it has: the driver stops the core.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The last applied zxid.
    pub fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The applied tree (a simulator reads each member's final state from it).
    pub fn tree(&self) -> &DataTree {
        &self.tree
    }

    /// `standalone`, or the member's role as `srvr` names it (`leader`, `follower`, `observer`,
    /// or `looking` while it elects).
    pub fn mode(&self) -> &'static str {
        self.ensemble.as_ref().map_or("standalone", |e| e.mode())
    }

    /// Handles one event.
    pub fn handle(&mut self, ev: Event) {
        match ev {
            Event::FourLetter { cmd, reply } => {
                let text = crate::admin::four_letter(self, &cmd);
                let _ = reply.send(text);
            }
            Event::Connect {
                conn,
                req,
                addr,
                handle,
                cert_subject,
            } => self.on_connect(conn, req, addr, handle, cert_subject),
            Event::Request {
                conn,
                xid,
                req,
                permit,
                received,
            } => self.on_request(
                conn,
                Queued {
                    xid,
                    req,
                    permit,
                    received,
                },
            ),
            Event::Disconnected { conn } => self.drop_conn(conn),
            Event::Durable(zxid) => self.on_durable(zxid),
            Event::StorageFailed(why) => {
                tracing::error!(error = %why, "the transaction log failed; no write will be acknowledged, stopping");
                self.failed = Some(why);
            }
            Event::SnapshotDone(result) => self.on_snapshot_done(result),
            Event::Persisted(seq) => self.zab_step(crate::zab::Input::Persisted { seq }),
            Event::Admin(crate::admin::http::AdminRequest::Command { name, reply }) => {
                let _ = reply.send(crate::admin::commands::run(self, &name));
            }
            Event::Admin(crate::admin::http::AdminRequest::MetricsState { reply }) => {
                let _ = reply.send(crate::admin::metrics_state(self));
            }
        }
    }

    // === connections ===

    fn send(&mut self, conn_id: ConnId, frame: Vec<u8>, permit: Option<Slot>) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        match conn.handle.tx.try_send(Outbound::Frame(frame, permit)) {
            Ok(()) => {
                conn.stats.sent += 1;
                self.stats.sent += 1;
            }
            Err(_) => {
                tracing::warn!(
                    conn = conn_id,
                    "outbound queue full or closed; dropping connection"
                );
                self.close_conn(conn_id);
            }
        }
    }

    /// Flushes what is queued, then closes the connection and forgets it.
    pub(crate) fn close_conn(&mut self, conn_id: ConnId) {
        if let Some(conn) = self.conns.get(&conn_id) {
            if conn.handle.tx.try_send(Outbound::Close).is_err() {
                conn.handle.kill.cancel();
            }
        }
        self.drop_conn(conn_id);
    }

    fn drop_conn(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.remove(&conn_id) else {
            return;
        };
        self.forget_conn(conn_id);
        if self.session_conn.get(&conn.session_id) == Some(&conn_id) {
            self.session_conn.remove(&conn.session_id);
        }
        self.tree.watches.remove_conn(conn_id);
    }

    fn on_connect(
        &mut self,
        conn_id: ConnId,
        req: ConnectRequest,
        addr: SocketAddr,
        handle: ConnHandle,
        cert_subject: Option<String>,
    ) {
        let mut ids = vec![acl::ip_id(addr.ip())];
        if let Some(subject) = cert_subject {
            // X509AuthenticationProvider: the subject is the id, and the configured super
            // user's subject is also a super user (named by its subject, as ZooKeeper does).
            if self.cfg.x509_super_user.as_deref() == Some(subject.as_str()) {
                ids.push(Id {
                    scheme: "super".into(),
                    id: subject.clone(),
                });
            }
            tracing::debug!(subject, "client certificate accepted");
            ids.push(Id {
                scheme: crate::auth::x509::SCHEME.into(),
                id: subject,
            });
        }
        let stats = ConnStats {
            established_wall_ms: self.env.wall_ms(),
            last_op: "NA",
            ..ConnStats::default()
        };
        self.conns.insert(
            conn_id,
            Conn {
                handle,
                addr,
                session_id: 0,
                timeout_ms: 0,
                ids,
                stats,
                sasl: None,
                establishing: false,
                inflight_writes: 0,
                barriers: 0,
                forwarded: 0,
                queue: VecDeque::new(),
            },
        );
        if self.ensemble.as_ref().is_some_and(|e| !e.serving()) {
            // ZooKeeper drops clients while it elects: they try another member.
            tracing::debug!(conn = conn_id, "not serving (electing); closing");
            self.close_conn(conn_id);
            return;
        }
        if req.last_zxid_seen > self.last_zxid {
            // The client has seen a newer state than ours: refuse, so it never goes back in time.
            tracing::info!(
                conn = conn_id,
                client_zxid = req.last_zxid_seen,
                "client is ahead of this server; closing"
            );
            self.close_conn(conn_id);
            return;
        }
        if req.session_id == 0 {
            let timeout_ms = self.cfg.negotiate_timeout_ms(req.timeout_ms);
            let read_only = req.read_only.map(|_| false);
            let session_id = self.sessions.next_session_id();
            let mut passwd = [0u8; 16];
            self.rng.fill_bytes(&mut passwd);
            let txn = Txn::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            };
            // The session exists once its transaction is durable; until then, requests pipelined
            // behind the handshake wait in the connection's queue.
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.establishing = true;
            }
            let plan = Plan::Connect {
                conn: conn_id,
                timeout_ms,
                passwd,
                read_only,
            };
            match self.ensemble.as_ref().and_then(|e| e.leader_to_forward()) {
                Some(leader) => {
                    self.forward_create_session(leader, session_id, timeout_ms, passwd, plan)
                }
                None => self.submit(session_id, 0, txn, None, plan),
            }
            return;
        }
        self.resume(conn_id, req, false);
    }

    /// A handshake that names an existing session. `revalidated`: this learner already caught up
    /// with the leader's commit point for it, so an unknown session is now surely gone.
    pub(crate) fn resume(&mut self, conn_id: ConnId, req: ConnectRequest, revalidated: bool) {
        let timeout_ms = self.cfg.negotiate_timeout_ms(req.timeout_ms);
        let read_only = req.read_only.map(|_| false);
        let now = self.now_ms();
        // A learner looks at its own session table only after catching up with its leader
        // (ZooKeeper's learner revalidates every resumed session): the session may have been
        // created through another member moments ago, or closed or expired there, and this
        // member may not have applied that yet (it may even be cut off from the leader, still
        // within syncLimit). Without a leader to ask, the connection is closed and the client
        // tries another member.
        let learner = !revalidated
            && self
                .ensemble
                .as_ref()
                .and_then(|e| e.leader_to_forward())
                .is_some();
        // A leader confirms it still leads before it looks (and waits out a close under way).
        let leader = self.ensemble.as_ref().is_some_and(|e| e.is_leader());
        if leader && (!revalidated || self.sessions.is_closing(req.session_id)) {
            if let Some(conn) = self.conns.get_mut(&conn_id) {
                conn.establishing = true;
            }
            return self.confirm_resume(conn_id, req);
        }
        match self.sessions.get(req.session_id) {
            Some(s) if s.passwd[..] == req.passwd[..] && !learner => {
                let passwd = s.passwd;
                if let Some(old) = self.session_conn.get(&req.session_id).copied() {
                    if old != conn_id {
                        tracing::info!(
                            session = format_args!("0x{:x}", req.session_id),
                            "session moved; closing its old connection"
                        );
                        self.close_conn(old);
                    }
                }
                self.sessions.set_timeout(req.session_id, timeout_ms, now);
                if let Some(e) = &mut self.ensemble {
                    e.touched(req.session_id);
                }
                self.establish(conn_id, req.session_id, timeout_ms, passwd, read_only);
            }
            Some(s) if s.passwd[..] != req.passwd[..] => self.refuse(conn_id, read_only),
            _ if learner => {
                if let Some(conn) = self.conns.get_mut(&conn_id) {
                    conn.establishing = true;
                }
                self.revalidate(conn_id, req);
            }
            _ => self.refuse(conn_id, read_only),
        }
    }

    /// Answers a handshake for a session that is gone (or not this client's) as ZooKeeper
    /// does: an all-zero session, which the client reports as expired, then closes.
    fn refuse(&mut self, conn_id: ConnId, read_only: Option<bool>) {
        let resp = ConnectResponse {
            passwd: vec![0; 16],
            read_only,
            ..ConnectResponse::default()
        };
        let mut frame = Vec::new();
        write_frame(&mut frame, |o| resp.encode(o));
        self.send(conn_id, frame, None);
        self.close_conn(conn_id);
    }

    /// Binds a connection to its session and answers its handshake.
    fn establish(
        &mut self,
        conn_id: ConnId,
        session_id: i64,
        timeout_ms: i32,
        passwd: [u8; 16],
        read_only: Option<bool>,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.session_id = session_id;
        conn.timeout_ms = timeout_ms;
        conn.establishing = false;
        self.session_conn.insert(session_id, conn_id);
        tracing::debug!(
            conn = conn_id,
            session = format_args!("0x{session_id:x}"),
            timeout_ms,
            "session established"
        );
        // Best effort: the span field is for logs only, and a full queue is handled below.
        let _ = conn.handle.tx.try_send(Outbound::Session(session_id));
        let resp = ConnectResponse {
            protocol_version: 0,
            timeout_ms,
            session_id,
            passwd: passwd.to_vec(),
            read_only,
        };
        let mut frame = Vec::new();
        write_frame(&mut frame, |o| resp.encode(o));
        self.send(conn_id, frame, None);
        self.drain(conn_id);
    }

    // === requests ===

    fn on_request(&mut self, conn_id: ConnId, q: Queued) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        conn.stats.received += 1;
        self.stats.received += 1;
        let conn = &self.conns[&conn_id];
        // FIFO per session: nothing overtakes a request that is waiting.
        if conn.establishing || !conn.queue.is_empty() || !self.may_run(conn, &q) {
            let conn = self.conns.get_mut(&conn_id).expect("looked up above");
            conn.queue.push_back(q);
            return;
        }
        self.process(conn_id, q);
    }

    /// Runs the requests a connection has waiting, as far as its in-flight writes allow.
    pub(crate) fn drain(&mut self, conn_id: ConnId) {
        loop {
            let Some(conn) = self.conns.get(&conn_id) else {
                return;
            };
            if conn.establishing {
                return;
            }
            match conn.queue.front() {
                Some(q) if self.may_run(conn, q) => {}
                _ => return,
            }
            let conn = self.conns.get_mut(&conn_id).expect("looked up above");
            let q = conn.queue.pop_front().expect("front exists");
            self.process(conn_id, q);
        }
    }

    /// Whether `q` may run behind what its connection has in flight: nothing but another write
    /// overtakes an in-flight write (writes are applied in order anyway), and nothing but
    /// another read waiting for a confirmed commit point overtakes one.
    fn may_run(&self, conn: &Conn, q: &Queued) -> bool {
        if conn.barriers > 0 {
            return conn.inflight_writes == 0 && self.needs_barrier(q);
        }
        conn.inflight_writes == 0 || q.is_txn()
    }

    /// In an ensemble, `sync` (and with `linearizableReads` every read) is answered from a commit
    /// point the leader confirmed with a quorum round, once this member has applied it.
    fn needs_barrier(&self, q: &Queued) -> bool {
        self.ensemble.is_some()
            && (matches!(q.req, Ok(Request::Sync(_)))
                || (self.cfg.linearizable_reads && q.reads_tree()))
    }

    /// `enforce.auth.enabled`: only auth and SASL requests may come before the connection
    /// holds an identity of an enforced scheme (AuthenticationHelper.enforceAuthentication).
    fn may_proceed(&self, conn_id: ConnId, q: &Queued) -> bool {
        let Some(schemes) = &self.cfg.enforce_auth_schemes else {
            return true;
        };
        if matches!(q.req, Ok(Request::Auth(_) | Request::Sasl(_))) {
            return true;
        }
        let ids = self.conns.get(&conn_id).map(|c| c.ids.as_slice());
        let ok = ids.is_some_and(|ids| ids.iter().any(|id| schemes.contains(&id.scheme)));
        if !ok {
            tracing::info!(
                schemes = ?schemes,
                "connection has not authenticated with a required scheme; closing it"
            );
        }
        ok
    }

    fn process(&mut self, conn_id: ConnId, q: Queued) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let session_id = conn.session_id;
        if session_id == 0 {
            return;
        }
        let now = self.now_ms();
        if let Some(e) = &mut self.ensemble {
            e.touched(session_id);
        }
        if !self.sessions.touch(session_id, now) {
            let frame = reply_frame(
                q.xid,
                self.last_zxid,
                ErrorCode::SessionExpired.code(),
                &Response::Empty,
            );
            self.send(conn_id, frame, q.permit);
            self.close_conn(conn_id);
            return;
        }
        if !self.may_proceed(conn_id, &q) {
            let code = ErrorCode::SessionClosedRequireSaslAuth.code();
            let frame = reply_frame(q.xid, 0, code, &Response::Empty);
            self.send(conn_id, frame, q.permit);
            self.close_conn(conn_id);
            return;
        }
        if q.is_txn() {
            self.write(conn_id, session_id, q);
            return;
        }
        if self.needs_barrier(&q) {
            self.read_barrier(conn_id, session_id, q);
            return;
        }
        self.execute(conn_id, session_id, q);
    }

    /// Runs a read (or any request that is not a transaction) and answers it.
    pub(crate) fn execute(&mut self, conn_id: ConnId, session_id: i64, q: Queued) {
        let Queued {
            xid,
            req,
            permit,
            received,
        } = q;
        let req = match req {
            Ok(req) => req,
            Err(RequestError::UnknownOpCode(op)) => {
                tracing::debug!(conn = conn_id, op, "unknown opcode; closing");
                let frame = reply_frame(xid, -1, ErrorCode::Unimplemented.code(), &Response::Empty);
                self.send(conn_id, frame, permit);
                self.close_conn(conn_id);
                return;
            }
            Err(e) => {
                tracing::debug!(conn = conn_id, error = %e, "request did not decode");
                let frame = reply_frame(
                    xid,
                    self.last_zxid,
                    ErrorCode::MarshallingError.code(),
                    &Response::Empty,
                );
                self.send(conn_id, frame, permit);
                return;
            }
        };
        let reply = self.dispatch(conn_id, session_id, xid, &req);
        self.reply(conn_id, Op::of(&req), xid, reply, permit, received);
    }

    /// Sends a reply and keeps the statistics.
    pub(crate) fn reply(
        &mut self,
        conn_id: ConnId,
        op: Op<'_>,
        cxid: i32,
        (reply_xid, zxid, err, body, close): Reply,
        permit: Option<Slot>,
        received: Instant,
    ) {
        let elapsed = received.elapsed();
        let latency_ms = elapsed.as_millis() as u64;
        self.stats.latency.record(latency_ms);
        // Pings say nothing about the server's speed, only about the client's timer.
        if op.name != "PING" {
            self.metrics.request(op.update, elapsed.as_secs_f64() * 1e3);
        }
        let threshold_ms = self.cfg.slow_request_threshold_ms;
        if threshold_ms > 0 && latency_ms >= threshold_ms {
            self.metrics.slow_requests.inc();
            let session = self.conns.get(&conn_id).map_or(0, |c| c.session_id);
            tracing::warn!(
                session = format_args!("0x{session:x}"),
                op = op.name,
                path = op.path,
                latency_ms,
                threshold_ms,
                err,
                "slow request"
            );
        }
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            let s = &mut conn.stats;
            s.last_op = op.name;
            s.last_cxid = cxid;
            s.last_zxid = zxid;
            s.last_response_wall_ms = self.env.wall_ms();
            s.last_latency_ms = latency_ms;
            s.latency.record(latency_ms);
        }
        self.send(conn_id, reply_frame(reply_xid, zxid, err, &body), permit);
        if close {
            self.close_conn(conn_id);
        }
    }

    /// Runs one request; returns (reply xid, zxid, err, body, close afterwards).
    fn dispatch(&mut self, conn_id: ConnId, session_id: i64, xid: i32, req: &Request) -> Reply {
        let ok = |zxid: i64, body: Response| (xid, zxid, 0, body, false);
        let last = self.last_zxid;
        match req {
            Request::Ping => (xid::PING, last, 0, Response::Empty, false),
            Request::Auth(p) => self.auth(conn_id, xid, p),
            Request::Sasl(t) => self.sasl(conn_id, xid, &t.token),
            Request::Check(_) => {
                // 3.9.3+/3.8.5+: check is only valid inside multi.
                error_reply(xid, -1, ErrorCode::Unimplemented, true)
            }
            Request::Reconfig(_) => error_reply(xid, last, ErrorCode::ReconfigDisabled, false),
            Request::SetWatches(sw) => {
                let all = SetWatches2 {
                    relative_zxid: sw.relative_zxid,
                    data_watches: sw.data_watches.clone(),
                    exist_watches: sw.exist_watches.clone(),
                    child_watches: sw.child_watches.clone(),
                    ..SetWatches2::default()
                };
                self.set_watches(conn_id, &all);
                (xid, last, 0, Response::Empty, false)
            }
            Request::SetWatches2(sw) => {
                self.set_watches(conn_id, sw);
                (xid, last, 0, Response::Empty, false)
            }
            Request::Sync(r) => ok(
                last,
                Response::Path(PathResponse {
                    path: r.path.clone(),
                }),
            ),
            Request::WhoAmI => {
                let ids = self
                    .conns
                    .get(&conn_id)
                    .map(|c| c.ids.clone())
                    .unwrap_or_default();
                let client_info = ids
                    .iter()
                    .map(|id| ClientInfo {
                        auth_scheme: id.scheme.clone(),
                        user: acl::user_name(id),
                    })
                    .collect();
                ok(last, Response::WhoAmI(WhoAmIResponse { client_info }))
            }
            Request::GetEphemerals(r) => {
                let all = r.path.is_empty() || r.path == "/";
                let ephemerals = self
                    .tree
                    .ephemerals_of(session_id)
                    .filter(|p| all || p.starts_with(&r.path))
                    .cloned()
                    .collect();
                ok(
                    last,
                    Response::GetEphemerals(GetEphemeralsResponse { ephemerals }),
                )
            }
            Request::AddWatch(r) => {
                let Some(mode) = AddWatchMode::from_code(r.mode) else {
                    return error_reply(xid, last, ErrorCode::MarshallingError, false);
                };
                if !self.watch_room(conn_id) {
                    return error_reply(xid, last, ErrorCode::BadArguments, true);
                }
                match mode {
                    AddWatchMode::Persistent => {
                        self.tree
                            .watches
                            .add(Table::Data, &r.path, conn_id, PERSISTENT);
                        self.tree
                            .watches
                            .add(Table::Child, &r.path, conn_id, PERSISTENT);
                    }
                    AddWatchMode::PersistentRecursive => {
                        self.tree
                            .watches
                            .add(Table::Data, &r.path, conn_id, RECURSIVE)
                    }
                }
                ok(last, Response::Error(ErrorResponse { err: 0 }))
            }
            Request::CheckWatches(r) => self.watches_op(conn_id, xid, r, false),
            Request::RemoveWatches(r) => self.watches_op(conn_id, xid, r, true),
            Request::MultiRead(ops) => {
                if ops.iter().any(|op| !op.is_read()) {
                    return error_reply(xid, last, ErrorCode::MarshallingError, false);
                }
                let results = ops
                    .iter()
                    .map(|op| self.multi_read_op(conn_id, op))
                    .collect();
                ok(last, Response::Multi(results))
            }
            Request::Exists(_)
            | Request::GetData(_)
            | Request::GetAcl(_)
            | Request::GetChildren(_)
            | Request::GetChildren2(_)
            | Request::GetAllChildrenNumber(_) => match self.read(conn_id, req) {
                Ok(body) => ok(last, body),
                Err(e) => (xid, last, e.code(), Response::Empty, false),
            },
            _ => error_reply(xid, -1, ErrorCode::Unimplemented, true),
        }
    }

    fn auth(&mut self, conn_id: ConnId, xid: i32, p: &AuthPacket) -> Reply {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return (xid, 0, 0, Response::Empty, true);
        };
        match acl::authenticate(
            &p.scheme,
            &p.auth,
            conn.addr.ip(),
            self.cfg.super_digest.as_deref(),
        ) {
            Ok(ids) => {
                for id in ids {
                    if !conn.ids.contains(&id) {
                        conn.ids.push(id);
                    }
                }
                (xid, 0, 0, Response::Empty, false)
            }
            Err(e) => {
                self.stats.auth_failed += 1;
                tracing::info!(conn = conn_id, scheme = %p.scheme, "authentication failed; closing");
                (xid, 0, e.code(), Response::Empty, true)
            }
        }
    }

    /// One step of a SASL DIGEST-MD5 exchange (ZooKeeperServer.processSasl): the client's
    /// empty first token gets the challenge, its digest-response gets `rspauth` and a `sasl`
    /// identity. A failure answers AUTHFAILED (SESSIONCLOSEDREQUIRESASLAUTH when
    /// authentication is enforced) and closes, unless `allowSaslFailedClients` is set.
    fn sasl(&mut self, conn_id: ConnId, xid: i32, token: &[u8]) -> Reply {
        use crate::auth::digest_md5::{generate_nonce, DigestMd5Server, ZOOKEEPER_REALM};
        let last = self.last_zxid;
        let users = self.sasl_users.clone();
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return (xid, 0, 0, Response::Empty, true);
        };
        let outcome = match conn.sasl.take() {
            _ if users.is_empty() => Err("SASL is not configured (no JAAS users)".to_owned()),
            None if token.is_empty() => {
                let mut exchange =
                    DigestMd5Server::new(ZOOKEEPER_REALM, generate_nonce(&mut self.rng));
                let challenge = exchange.challenge();
                conn.sasl = Some(exchange);
                return (
                    xid,
                    last,
                    0,
                    Response::Sasl(SaslToken { token: challenge }),
                    false,
                );
            }
            None => Err("a SASL exchange must start with an empty token (DIGEST-MD5)".to_owned()),
            Some(mut exchange) => exchange
                .respond(token, |user| users.get(user).map(|p| p.expose().to_owned()))
                .map_err(|e| e.to_string()),
        };
        match outcome {
            Ok(done) => {
                tracing::info!(user = %done.authorization_id, "SASL authentication succeeded");
                if self.cfg.sasl_super_user.as_deref() == Some(done.authorization_id.as_str()) {
                    conn.ids.push(acl::super_id());
                }
                let id = Id {
                    scheme: "sasl".into(),
                    id: done.authorization_id,
                };
                if !conn.ids.contains(&id) {
                    conn.ids.push(id);
                }
                (
                    xid,
                    last,
                    0,
                    Response::Sasl(SaslToken { token: done.token }),
                    false,
                )
            }
            Err(reason) => {
                self.stats.auth_failed += 1;
                let enforced = self.cfg.enforce_auth_schemes.is_some();
                if self.cfg.allow_sasl_failed_clients && !enforced {
                    tracing::info!(reason, "SASL authentication failed; keeping the connection (allowSaslFailedClients)");
                    return error_reply(xid, last, ErrorCode::AuthFailed, false);
                }
                tracing::info!(reason, "SASL authentication failed; closing");
                let code = if enforced {
                    ErrorCode::SessionClosedRequireSaslAuth
                } else {
                    ErrorCode::AuthFailed
                };
                error_reply(xid, last, code, true)
            }
        }
    }

    fn watch_room(&self, conn_id: ConnId) -> bool {
        let room = self.tree.watches.count_for(conn_id) < self.cfg.max_watches_per_connection;
        if !room {
            tracing::warn!(
                conn = conn_id,
                "connection holds too many watches; closing it"
            );
        }
        room
    }

    fn add_watch(&mut self, conn_id: ConnId, table: Table, path: &str) {
        if self.watch_room(conn_id) {
            self.tree.watches.add(table, path, conn_id, STANDARD);
        } else {
            self.close_conn(conn_id);
        }
    }

    fn ids(&self, conn_id: ConnId) -> &[Id] {
        self.conns.get(&conn_id).map_or(&[], |c| &c.ids[..])
    }

    fn read(&mut self, conn_id: ConnId, req: &Request) -> Result<Response, ErrorCode> {
        match req {
            Request::Exists(r) => {
                if r.path.contains('\0') {
                    return Err(ErrorCode::BadArguments);
                }
                if let Some(node) = self.tree.get(&r.path) {
                    if !acl::check(&node.acl, self.ids(conn_id), perms::READ) {
                        return Err(ErrorCode::NoAuth);
                    }
                }
                if r.watch {
                    self.add_watch(conn_id, Table::Data, &r.path);
                }
                let node = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
                Ok(Response::Stat(StatResponse { stat: node.stat() }))
            }
            Request::GetData(r) => {
                let (data, stat) = self.get_data(conn_id, r)?;
                Ok(Response::GetData(GetDataResponse { data, stat }))
            }
            Request::GetChildren(r) => {
                let (children, _) = self.get_children(conn_id, r)?;
                Ok(Response::GetChildren(GetChildrenResponse { children }))
            }
            Request::GetChildren2(r) => {
                let (children, stat) = self.get_children(conn_id, r)?;
                Ok(Response::GetChildren2(GetChildren2Response {
                    children,
                    stat,
                }))
            }
            Request::GetAcl(r) => {
                let node = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
                let ids = self.ids(conn_id);
                let admin = acl::check(&node.acl, ids, perms::ADMIN);
                if !admin && !acl::check(&node.acl, ids, perms::READ) {
                    return Err(ErrorCode::NoAuth);
                }
                let list = if admin {
                    node.acl.to_vec()
                } else {
                    acl::mask_digests(&node.acl)
                };
                Ok(Response::GetAcl(GetAclResponse {
                    acl: list,
                    stat: node.stat(),
                }))
            }
            Request::GetAllChildrenNumber(r) => {
                let node = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
                if !acl::check(&node.acl, self.ids(conn_id), perms::READ) {
                    return Err(ErrorCode::NoAuth);
                }
                let total_number = self.tree.descendant_count(&r.path) as i32;
                Ok(Response::AllChildrenNumber(AllChildrenNumberResponse {
                    total_number,
                }))
            }
            _ => Err(ErrorCode::Unimplemented),
        }
    }

    fn get_data(
        &mut self,
        conn_id: ConnId,
        r: &PathWatchRequest,
    ) -> Result<(Option<Vec<u8>>, Stat), ErrorCode> {
        let node = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, self.ids(conn_id), perms::READ) {
            return Err(ErrorCode::NoAuth);
        }
        let out = (node.data.clone(), node.stat());
        if r.watch {
            self.add_watch(conn_id, Table::Data, &r.path);
        }
        Ok(out)
    }

    fn get_children(
        &mut self,
        conn_id: ConnId,
        r: &PathWatchRequest,
    ) -> Result<(Vec<String>, Stat), ErrorCode> {
        let node = self.tree.get(&r.path).ok_or(ErrorCode::NoNode)?;
        if !acl::check(&node.acl, self.ids(conn_id), perms::READ) {
            return Err(ErrorCode::NoAuth);
        }
        let out = (node.children.iter().cloned().collect(), node.stat());
        if r.watch {
            self.add_watch(conn_id, Table::Child, &r.path);
        }
        Ok(out)
    }

    fn multi_read_op(&mut self, conn_id: ConnId, op: &MultiOp) -> MultiResult {
        let res = match op {
            MultiOp::GetData(r) => self
                .get_data(conn_id, r)
                .map(|(d, s)| MultiResult::GetData(d, s)),
            MultiOp::GetChildren(r) => self
                .get_children(conn_id, r)
                .map(|(c, _)| MultiResult::GetChildren(c)),
            _ => Err(ErrorCode::MarshallingError),
        };
        res.unwrap_or_else(|e| MultiResult::Error(e.code()))
    }

    fn watches_op(&mut self, conn_id: ConnId, xid: i32, r: &WatchesRequest, remove: bool) -> Reply {
        let last = self.last_zxid;
        let Some(kind) = WatcherType::from_code(r.watcher_type) else {
            return error_reply(xid, last, ErrorCode::MarshallingError, false);
        };
        let mut found = false;
        for &(table, mask) in WatchManager::spec_for(kind) {
            found |= if remove {
                self.tree.watches.remove(table, &r.path, conn_id, mask)
            } else {
                self.tree.watches.contains(table, &r.path, conn_id, mask)
            };
        }
        let err = if found {
            0
        } else {
            ErrorCode::NoWatcher.code()
        };
        (xid, last, err, Response::Empty, false)
    }

    /// setWatches: re-arms watches after a reconnect, firing at once those whose node changed
    /// since `relative_zxid` (ZooKeeper's `DataTree.setWatches`).
    fn set_watches(&mut self, conn_id: ConnId, sw: &SetWatches2) {
        let rel = sw.relative_zxid;
        let mut fire: Vec<(EventType, &str)> = Vec::new();
        for p in &sw.data_watches {
            match self.tree.get(p) {
                None => fire.push((EventType::NodeDeleted, p)),
                Some(n) if n.mzxid > rel => fire.push((EventType::NodeDataChanged, p)),
                Some(_) => self.tree.watches.add(Table::Data, p, conn_id, STANDARD),
            }
        }
        for p in &sw.exist_watches {
            match self.tree.get(p) {
                None => self.tree.watches.add(Table::Data, p, conn_id, STANDARD),
                Some(_) => fire.push((EventType::NodeCreated, p)),
            }
        }
        for p in &sw.child_watches {
            match self.tree.get(p) {
                None => fire.push((EventType::NodeDeleted, p)),
                Some(n) if n.pzxid > rel => fire.push((EventType::NodeChildrenChanged, p)),
                Some(_) => self.tree.watches.add(Table::Child, p, conn_id, STANDARD),
            }
        }
        for p in &sw.persistent_watches {
            self.tree.watches.add(Table::Data, p, conn_id, PERSISTENT);
            self.tree.watches.add(Table::Child, p, conn_id, PERSISTENT);
        }
        for p in &sw.persistent_recursive_watches {
            self.tree.watches.add(Table::Data, p, conn_id, RECURSIVE);
        }
        let frames: Vec<Vec<u8>> = fire
            .into_iter()
            .map(|(ev, p)| notification_frame(-1, ev, p))
            .collect();
        for f in frames {
            self.send(conn_id, f, None);
        }
    }

    // === writes ===

    /// Gives `txn` the next zxid, records its pending changes, and queues it for the log.
    fn submit(
        &mut self,
        session_id: i64,
        cxid: i32,
        txn: Txn,
        changes: Option<HashMap<String, Option<crate::prep::View>>>,
        plan: Plan,
    ) {
        if self.ensemble.is_some() {
            self.propose(session_id, cxid, txn, changes, plan);
            return;
        }
        self.next_zxid += 1;
        let zxid = self.next_zxid;
        if let Some(changes) = changes {
            self.outstanding.merge(changes, zxid);
        }
        let hdr = TxnHeader {
            session_id,
            cxid,
            zxid,
            time_ms: self.env.wall_ms(),
        };
        let mut payload = Vec::with_capacity(128);
        encode_txn(&hdr, &txn, &mut payload);
        self.log.append(zxid, payload);
        self.pending.push_back(Pending { hdr, txn, plan });
    }

    /// The log made everything up to `durable` durable: apply it in order and answer.
    fn on_durable(&mut self, durable: i64) {
        if self.ensemble.is_some() {
            // ZAB's store completions arrive as `Event::Persisted`.
            return;
        }
        while self.pending.front().is_some_and(|p| p.hdr.zxid <= durable) {
            let p = self.pending.pop_front().expect("front exists");
            let applied = self.commit(&p.hdr, &p.txn);
            self.outstanding.applied(p.hdr.zxid);
            self.finish(p.hdr.zxid, &p.txn, p.plan, applied);
            // `snapCount` counts transactions, as ZooKeeper's does (and as an ensemble member's
            // does), not durable batches.
            self.applied_since_snapshot += 1;
        }
        if self.applied_since_snapshot >= self.snapshot_due && !self.snapshot_running {
            self.start_snapshot();
        }
    }

    pub(crate) fn finish(&mut self, zxid: i64, txn: &Txn, plan: Plan, applied: Applied) {
        match plan {
            Plan::Internal => {}
            Plan::Connect {
                conn,
                timeout_ms,
                passwd,
                read_only,
            } => {
                let session_id = match txn {
                    Txn::CreateSession { session_id, .. } => *session_id,
                    _ => unreachable!("a handshake plan rides on a createSession transaction"),
                };
                self.establish(conn, session_id, timeout_ms, passwd, read_only);
            }
            Plan::Reply { conn, q, kind } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.inflight_writes -= 1;
                }
                let op = q.req.as_ref().map_or(Op::OTHER, Op::of);
                let reply = if applied.err != 0 {
                    (q.xid, zxid, applied.err, Response::Empty, false)
                } else {
                    let close = matches!(kind, ReplyKind::Close);
                    let body = match kind {
                        ReplyKind::Create => {
                            Response::Create(CreateResponse { path: applied.path })
                        }
                        ReplyKind::Create2 => Response::Create2(Create2Response {
                            path: applied.path,
                            stat: applied.stat.unwrap_or_default(),
                        }),
                        ReplyKind::Stat => Response::Stat(StatResponse {
                            stat: applied.stat.unwrap_or_default(),
                        }),
                        ReplyKind::Empty | ReplyKind::Close => Response::Empty,
                        ReplyKind::Multi(ops) => {
                            Response::Multi(multi_results(&ops, txn, applied.subs))
                        }
                    };
                    (q.xid, zxid, 0, body, close)
                };
                self.reply(conn, op, q.xid, reply, q.permit, q.received);
                self.drain(conn);
            }
        }
    }

    /// Applies a durable transaction: the only place the tree and session table change.
    pub fn commit(&mut self, hdr: &TxnHeader, txn: &Txn) -> Applied {
        assert!(
            storage::txn_log::zxid_follows(self.last_zxid, hdr.zxid),
            "transactions are applied in zxid order, without gaps: {:#x} after {:#x}",
            hdr.zxid,
            self.last_zxid
        );
        let mut events = Vec::new();
        let applied = self.tree.apply(hdr, txn, &mut events);
        match txn {
            Txn::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } => {
                let now = self.now_ms();
                self.sessions.add(*session_id, *timeout_ms, *passwd, now);
            }
            Txn::CloseSession { session_id } => {
                self.sessions.remove(*session_id);
            }
            _ => {}
        }
        self.last_zxid = hdr.zxid;
        self.deliver(hdr.zxid, events);
        applied
    }

    fn deliver(&mut self, zxid: i64, events: Vec<Notification>) {
        for n in events {
            let Some(conn) = self.conns.get(&n.conn) else {
                continue;
            };
            // 3.9.2+: a watcher without READ on the node does not learn of the change.
            if !acl::check(&n.acl, &conn.ids, perms::READ) {
                continue;
            }
            let frame = notification_frame(zxid, n.event, &n.path);
            self.send(n.conn, frame, None);
        }
    }

    fn write(&mut self, conn_id: ConnId, session_id: i64, q: Queued) {
        let Ok(req) = &q.req else {
            unreachable!("only decoded requests are transactions")
        };
        if let Request::Multi(ops) = req {
            if ops.iter().any(MultiOp::is_read) {
                let r = error_reply(q.xid, self.last_zxid, ErrorCode::MarshallingError, false);
                self.reply(conn_id, Op::of(req), q.xid, r, q.permit, q.received);
                return;
            }
        }
        let kind = match req {
            Request::Multi(ops) => ReplyKind::Multi(ops.iter().map(MultiOp::op_code).collect()),
            Request::CloseSession => ReplyKind::Close,
            Request::Create(_) => ReplyKind::Create,
            Request::Create2(_) | Request::CreateContainer(_) | Request::CreateTtl(_) => {
                ReplyKind::Create2
            }
            Request::SetData(_) | Request::SetAcl(_) => ReplyKind::Stat,
            _ => ReplyKind::Empty,
        };
        if let Some(leader) = self.ensemble.as_ref().and_then(|e| e.leader_to_forward()) {
            self.forward_write(leader, conn_id, session_id, q, kind);
            return;
        }
        let ids = self
            .conns
            .get(&conn_id)
            .map(|c| c.ids.clone())
            .unwrap_or_default();
        let (txn, changes) = self.prepare(session_id, &ids, req);
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.inflight_writes += 1;
        }
        let xid = q.xid;
        self.submit(
            session_id,
            xid,
            txn,
            Some(changes),
            Plan::Reply {
                conn: conn_id,
                q,
                kind,
            },
        );
    }

    /// Turns a write into a transaction, checked against the tree and the transactions in flight.
    pub(crate) fn prepare(
        &mut self,
        session_id: i64,
        ids: &[Id],
        req: &Request,
    ) -> (Txn, HashMap<String, Option<crate::prep::View>>) {
        let ctx = Ctx {
            session_id,
            ids,
            extended_types: self.cfg.extended_types_enabled,
        };
        let mut prep = Prep::new(&self.tree, &self.outstanding);
        let txn = match req {
            Request::Multi(ops) => {
                let writes: Vec<WriteOp<'_>> = ops.iter().filter_map(WriteOp::from_multi).collect();
                prep.multi(&ctx, &writes)
            }
            Request::CloseSession => Txn::CloseSession { session_id },
            _ => match WriteOp::from_request(req) {
                Some(op) => prep.op(&ctx, &op).unwrap_or_else(|e| Txn::Error(e.code())),
                None => Txn::Error(ErrorCode::MarshallingError.code()),
            },
        };
        let changes = prep.into_changes();
        if matches!(req, Request::CloseSession) {
            self.sessions.set_closing(session_id);
        }
        (txn, changes)
    }

    // === snapshots ===

    /// The applied state as a snapshot image (cheap: the tree is a persistent map).
    pub(crate) fn snapshot_image(&self) -> SnapshotImage {
        SnapshotImage {
            zxid: self.last_zxid,
            nodes: self.tree.image(),
            sessions: self
                .sessions
                .by_deadline()
                .into_iter()
                .map(|s| SessionRecord {
                    id: s.id,
                    timeout_ms: s.timeout_ms,
                    passwd: s.passwd,
                })
                .collect(),
        }
    }

    pub(crate) fn start_snapshot(&mut self) {
        self.applied_since_snapshot = 0;
        self.snapshot_due = pick_snapshot_due(&mut self.rng, self.cfg.snap_count);
        self.snapshot_running = true;
        let image = self.snapshot_image();
        // Later records go to a new segment, so old segments can be purged once covered.
        self.log.roll();
        let dir = self.cfg.data_dir.clone();
        let events = self.events.clone();
        let backend = self.backend.clone();
        tracing::info!(
            zxid = format_args!("{:#x}", image.zxid),
            nodes = image.nodes.len(),
            "taking a snapshot"
        );
        let job = Box::new(move || {
            let result = storage::snapshot::write(backend.as_ref(), &dir, &image)
                .map(|_| image.zxid)
                .map_err(|e| e.to_string());
            let _ = events.blocking_send(Event::SnapshotDone(result));
        });
        if let Err(e) = self.env.background("rookery-snapshot", job) {
            self.on_snapshot_done(Err(format!("starting the snapshot thread: {e}")));
        }
    }

    fn on_snapshot_done(&mut self, result: Result<i64, String>) {
        self.snapshot_running = false;
        match result {
            Ok(zxid) => {
                tracing::info!(zxid = format_args!("{zxid:#x}"), "snapshot written");
                self.last_snapshot_zxid = zxid;
            }
            // The log still holds everything, so a failed snapshot loses nothing; retry later.
            Err(e) => tracing::error!(error = %e, "snapshot failed"),
        }
    }

    fn maybe_purge(&mut self, now: u64) {
        let interval_ms = self.cfg.purge_interval_hours * 3_600_000;
        if interval_ms == 0 || now.saturating_sub(self.last_purge_ms) < interval_ms {
            return;
        }
        self.last_purge_ms = now;
        let (snap_dir, log_dir, retain) = (
            self.cfg.data_dir.clone(),
            self.cfg.data_log_dir.clone(),
            self.cfg.snap_retain_count,
        );
        let backend = self.backend.clone();
        let job = Box::new(move || {
            match storage::purge::purge(backend.as_ref(), &snap_dir, &log_dir, retain) {
                Ok(removed) => {
                    tracing::info!(files = removed.len(), "purged old snapshots and logs")
                }
                Err(e) => tracing::warn!(error = %e, "purge failed"),
            }
        });
        if let Err(e) = self.env.background("rookery-purge", job) {
            // The next interval tries again.
            tracing::warn!(error = %e, "could not start the purge thread");
        }
    }

    // === timers ===

    /// The request processor's timer, every half `tickTime`: expires sessions (on the leader or
    /// a standalone server), relays session activity (on a learner), reaps containers, purges.
    pub fn tick(&mut self) {
        let now = self.now_ms();
        self.maybe_purge(now);
        if self.ensemble.as_ref().is_some_and(|e| !e.is_leader()) {
            // Only the leader expires sessions and reaps containers; learners tell it which
            // sessions showed activity here.
            self.relay_touches();
            return;
        }
        for session_id in self.sessions.expired(now) {
            tracing::info!(
                session = format_args!("0x{session_id:x}"),
                "session expired"
            );
            self.sessions.set_closing(session_id);
            self.submit(
                session_id,
                0,
                Txn::CloseSession { session_id },
                None,
                Plan::Internal,
            );
            if let Some(conn) = self.session_conn.get(&session_id).copied() {
                self.close_conn(conn);
            }
        }
        if now.saturating_sub(self.last_container_check_ms) >= self.cfg.container_check_interval_ms
        {
            self.last_container_check_ms = now;
            self.reap_containers();
        }
    }

    /// Deletes empty containers and expired TTL nodes (`ContainerManager`).
    fn reap_containers(&mut self) {
        let due = self.tree.expired_containers(
            self.env.wall_ms(),
            self.cfg.container_max_never_used_interval_ms as i64,
        );
        for path in due {
            let ctx = Ctx {
                session_id: 0,
                ids: &[],
                extended_types: true,
            };
            let mut prep = Prep::new(&self.tree, &self.outstanding);
            // Prepared against in-flight changes too, so a node already being deleted is skipped.
            if let Ok(txn) = prep.op(&ctx, &WriteOp::DeleteContainer { path: &path }) {
                tracing::debug!(path, "reaping container or TTL node");
                let changes = prep.into_changes();
                self.submit(0, 0, txn, Some(changes), Plan::Internal);
            }
        }
    }
}

fn notification_frame(zxid: i64, event: EventType, path: &str) -> Vec<u8> {
    let ev = WatcherEvent {
        event_type: event.code(),
        state: KeeperState::SyncConnected.code(),
        path: path.to_owned(),
    };
    let mut out = Vec::new();
    write_frame(&mut out, |o| {
        ReplyHeader {
            xid: xid::NOTIFICATION,
            zxid,
            err: 0,
        }
        .encode(o);
        ev.encode(o);
    });
    out
}

/// The per-op results of a multi, in request order.
fn multi_results(ops: &[OpCode], txn: &Txn, subs: Vec<Applied>) -> Vec<MultiResult> {
    if let Txn::Multi(txns) = txn {
        if txns.iter().any(|t| matches!(t, Txn::Error(_))) {
            return txns
                .iter()
                .map(|t| MultiResult::Error(if let Txn::Error(e) = t { *e } else { 0 }))
                .collect();
        }
    }
    ops.iter()
        .zip(subs)
        .map(|(op, a)| match op {
            OpCode::Create => MultiResult::Create(a.path),
            OpCode::Delete => MultiResult::Delete,
            OpCode::SetData => MultiResult::SetData(a.stat.unwrap_or_default()),
            OpCode::Check => MultiResult::Check,
            // create2, createContainer and createTTL (3.9 returns the stat).
            _ => MultiResult::Create2(a.path, a.stat.unwrap_or_default()),
        })
        .collect()
}
