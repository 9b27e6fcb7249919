//! The session state machine: every protocol and timing decision of a session, with no I/O.
//!
//! The machine never reads a clock, opens a socket or sleeps. Its driver
//! ([`super::driver`]) feeds it what happened and carries out what it asks for:
//!
//! | Driver calls | When |
//! |---|---|
//! | [`Session::handle_connected`] / [`Session::handle_connect_failed`] | a transport asked for with [`Action::Connect`] came up or failed |
//! | [`Session::handle_read`] | bytes arrived from the server |
//! | [`Session::handle_transport_closed`] | the transport hit EOF or an I/O error |
//! | [`Session::handle_timeout`] | the instant from [`Session::poll_timeout`] has passed |
//! | [`Session::submit`], [`Session::add_auth`], [`Session::remove_watcher`], [`Session::close`] | the client asked for something |
//!
//! and then drains [`Session::poll_action`] (open or close a transport) and
//! [`Session::poll_transmit`] (bytes to write). Time is always passed in (`now`), so tests drive
//! reconnects, pings and expiry with explicit instants.
//!
//! # Timing (T = negotiated session timeout)
//! - A ping goes out when nothing was sent for T/3.
//! - A connection that has been silent for 2T/3 is dropped, and the next server is tried.
//! - Each attempt (TCP, TLS and handshake) gets `connect_timeout` (default T / number of hosts,
//!   at least 1 s); attempts are spaced by jittered exponential back-off.
//! - When no server has been heard from for `client_expiry_factor` × T (default 1.0), the
//!   client declares the session expired itself, without waiting for a server to say so.
//!
//! # Events and generations
//! Every change of connection or session becomes a [`SessionEvent`] ([`Session::poll_event`]):
//! `Connected` (a new session, generation + 1), `Suspended` (the connection broke),
//! `Reconnected { same_session }` (a different session is generation + 1), `ReadOnly`, and
//! `Lost(reason)`. With `renew` set, an expired session is followed by a new one on the same
//! machine instead of the terminal state.
//!
//! # Requests across reconnects
//! A request that was handed to the transport when the connection broke fails with
//! [`Error::ConnectionLoss`], with `outcome_unknown` set for writes. Requests not yet handed out
//! wait for the next connection. After a reconnect the machine sends, in this order: the auth
//! packets, setWatches (or setWatches2 when persistent watches exist) with the last zxid seen,
//! then the waiting requests.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rookery_proto::frame::{parse_frame, write_frame};
use rookery_proto::{
    xid, AuthPacket, ConnectRequest, ConnectResponse, ErrorCode, Jute, OpCode, Reader, ReplyHeader,
    Request, RequestHeader, Response, SetWatches, SetWatches2, WatcherEvent, WatcherType,
    WatchesRequest,
};
use tokio::sync::{oneshot, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::backoff::Backoff;
use super::watch::{WatchKind, WatchLists, WatchRegistry, WatchSub};
use crate::endpoint::HostPort;
use crate::error::{Error, Result};
use crate::types::{LossReason, SessionEvent, SessionEventKind, SessionState};

/// At most this many path bytes go into one setWatches frame (as the Java client does), so
/// that re-arming many watches never exceeds the server's frame limit.
pub(crate) const SET_WATCHES_MAX_BYTES: usize = 128 * 1024;

/// Session settings the machine needs.
#[derive(Debug, Clone)]
pub(crate) struct SessionConfig {
    /// The servers, in connect-string order (the machine shuffles them).
    pub(crate) hosts: Vec<HostPort>,
    /// The requested session timeout.
    pub(crate) session_timeout: Duration,
    /// Time allowed for one attempt (transport and handshake); `None` = T / hosts, at least 1 s.
    pub(crate) connect_timeout: Option<Duration>,
    /// Whether a read-only server is acceptable.
    pub(crate) read_only: bool,
    /// First reconnect back-off.
    pub(crate) backoff_initial: Duration,
    /// Largest reconnect back-off.
    pub(crate) backoff_max: Duration,
    /// Largest frame accepted from the server.
    pub(crate) max_frame_len: usize,
    /// Seed for the host shuffle and the back-off jitter.
    pub(crate) seed: u64,
    /// An existing session to resume: id and password.
    pub(crate) resume: Option<(i64, Vec<u8>)>,
    /// The client declares the session expired after this many session timeouts without
    /// hearing from a server.
    pub(crate) expiry_factor: f64,
    /// After an expiry, start a new session instead of stopping.
    pub(crate) renew: bool,
}

/// What a request's caller receives.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// The reply body, or why there is none.
    pub(crate) result: Result<Response>,
    /// The watch the request left, if it asked for one and the server set it.
    pub(crate) watch: Option<WatchSub>,
}

impl Outcome {
    pub(crate) fn err(e: Error) -> Self {
        Outcome {
            result: Err(e),
            watch: None,
        }
    }
}

/// Where a request's outcome goes.
pub(crate) type Completion = oneshot::Sender<Outcome>;

/// What a successful reply does besides answering the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// Nothing.
    None,
    /// Registers a watcher of this kind on the request's path.
    Watch(WatchKind),
    /// exists with a watch: a data watcher when the node exists, an exist watcher on NONODE.
    ExistsWatch,
    /// removeWatches succeeded: remove the local watchers of this type on the path.
    RemoveLocal(WatcherType),
}

/// A request from the client.
#[derive(Debug)]
pub(crate) struct Submission {
    /// The request, paths already chrooted.
    pub(crate) request: Request,
    /// The server path the effect applies to.
    pub(crate) path: String,
    /// What a successful reply also does.
    pub(crate) effect: Effect,
    /// Where the outcome goes.
    pub(crate) completion: Completion,
    /// The caller's place under `max_queued_requests`, held until the outcome is sent.
    pub(crate) permit: Option<OwnedSemaphorePermit>,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Action {
    /// Open a transport to `host`, then call `handle_connected(attempt)` or
    /// `handle_connect_failed(attempt)`.
    Connect {
        /// Identifies this attempt.
        attempt: u64,
        /// Where to connect.
        host: HostPort,
    },
    /// Drop the current transport (or the attempt under way) without reading or writing more.
    CloseTransport,
}

#[derive(Debug)]
enum Waiter {
    User(Completion),
    /// Internal removeWatches for watchers that went away; may fall back to type Any on servers
    /// that do not know the persistent types.
    RemoveWatches {
        fallback_any: bool,
    },
    /// Re-arms these watches; if the server refuses, they can never fire.
    SetWatches(WatchLists),
    Close,
}

#[derive(Debug)]
struct Queued {
    request: Request,
    path: String,
    effect: Effect,
    waiter: Waiter,
    /// Released when this is dropped: whenever the request is answered, failed or discarded.
    _permit: Option<OwnedSemaphorePermit>,
}

impl Queued {
    fn internal(request: Request, path: String, waiter: Waiter) -> Self {
        Queued {
            request,
            path,
            effect: Effect::None,
            waiter,
            _permit: None,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    xid: i32,
    /// Cumulative output offset of the frame's first byte: it was handed to the driver iff this
    /// is below `handed_out`.
    start: u64,
    queued: Queued,
}

#[derive(Debug)]
struct AuthEntry {
    packet: AuthPacket,
    waiter: Option<Completion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No transport; the next attempt starts at `at`.
    Idle { at: Instant },
    /// The driver is opening a transport.
    Connecting { attempt: u64, deadline: Instant },
    /// ConnectRequest sent; waiting for the ConnectResponse.
    Handshaking { deadline: Instant },
    /// The session is established on this transport.
    Connected { read_only: bool },
    /// closeSession sent; waiting for its reply or the end of the connection.
    Closing { deadline: Instant },
    /// Finished for good.
    Terminal(SessionState),
}

/// The session machine.
#[derive(Debug)]
pub(crate) struct Session {
    cfg: SessionConfig,
    rng: StdRng,
    hosts: Vec<HostPort>,
    next_host: usize,
    attempt: u64,
    phase: Phase,
    backoff: Backoff,

    session_id: i64,
    passwd: Vec<u8>,
    negotiated: Option<Duration>,
    /// Whether a session has been established at least once (so it can expire).
    established: bool,
    seen_rw: bool,
    last_zxid: i64,
    last_recv: Instant,
    last_send: Instant,
    /// The last time a server of this session was heard from.
    last_heard: Instant,

    next_xid: i32,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    /// Cumulative count of bytes handed to the driver (`wbuf` starts there).
    handed_out: u64,
    queue: VecDeque<Queued>,
    inflight: VecDeque<InFlight>,
    auths: Vec<AuthEntry>,
    auth_inflight: VecDeque<usize>,
    close_waiters: Vec<oneshot::Sender<()>>,
    watches: WatchRegistry,
    /// Requests under way that will set a watch, per path: (data table, child table). A
    /// server-side watch is never removed while one of these may still set it.
    pending_regs: HashMap<String, (u32, u32)>,
    actions: VecDeque<Action>,
    /// Session events not yet taken by the driver.
    events: VecDeque<SessionEvent>,
    /// 0 before the first session; one more for each new session.
    generation: u64,
    /// Since when no connection has been up (`None` while connected).
    disconnected_since: Option<Instant>,
}

impl Session {
    /// A machine that will start connecting at `now`.
    pub(crate) fn new(cfg: SessionConfig, now: Instant) -> Self {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let mut hosts = cfg.hosts.clone();
        hosts.shuffle(&mut rng);
        let (session_id, passwd, established) = match &cfg.resume {
            Some((id, pw)) => (*id, pw.clone(), true),
            None => (0, vec![0; 16], false),
        };
        Session {
            backoff: Backoff::new(cfg.backoff_initial, cfg.backoff_max),
            rng,
            hosts,
            next_host: 0,
            attempt: 0,
            phase: Phase::Idle { at: now },
            session_id,
            passwd,
            negotiated: established.then_some(cfg.session_timeout),
            established,
            seen_rw: established,
            last_zxid: 0,
            last_recv: now,
            last_send: now,
            last_heard: now,
            next_xid: 1,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            handed_out: 0,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            auths: Vec::new(),
            auth_inflight: VecDeque::new(),
            close_waiters: Vec::new(),
            watches: WatchRegistry::default(),
            pending_regs: HashMap::new(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            generation: 0,
            disconnected_since: Some(now),
            cfg,
        }
    }

    // === what the driver reads ===

    /// The state as the client reports it.
    pub(crate) fn state(&self) -> SessionState {
        match self.phase {
            Phase::Terminal(s) => s,
            Phase::Connected { read_only: false } => SessionState::Connected,
            Phase::Connected { read_only: true } => SessionState::ConnectedReadOnly,
            Phase::Closing { .. } => SessionState::Connected,
            Phase::Idle { .. } | Phase::Connecting { .. } | Phase::Handshaking { .. } => {
                SessionState::Disconnected
            }
        }
    }

    /// Whether the machine is finished (and has nothing left to send).
    pub(crate) fn is_terminal(&self) -> bool {
        matches!(self.phase, Phase::Terminal(_))
    }

    /// The session id (0 before the first handshake).
    pub(crate) fn session_id(&self) -> i64 {
        self.session_id
    }

    /// The session password.
    pub(crate) fn password(&self) -> &[u8] {
        &self.passwd
    }

    /// The negotiated timeout, once a server has answered.
    pub(crate) fn negotiated_timeout(&self) -> Option<Duration> {
        self.negotiated
    }

    /// The highest zxid seen in a reply.
    pub(crate) fn last_zxid(&self) -> i64 {
        self.last_zxid
    }

    /// The next thing the driver must do.
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next session event to publish.
    pub(crate) fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    /// The session generation: 0 before the first session, then 1, 2, ... per new session.
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// Since when no connection has been up, or `None` while connected or finished.
    pub(crate) fn disconnected_since(&self) -> Option<Instant> {
        match self.phase {
            Phase::Terminal(_) => None,
            _ => self.disconnected_since,
        }
    }

    /// Whether [`Session::poll_transmit`] has bytes.
    pub(crate) fn has_transmit(&self) -> bool {
        !self.wbuf.is_empty()
    }

    /// Bytes to write to the current transport, if any.
    pub(crate) fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.wbuf.is_empty() {
            return None;
        }
        self.handed_out += self.wbuf.len() as u64;
        Some(std::mem::take(&mut self.wbuf))
    }

    /// When [`Session::handle_timeout`] must be called next.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self.expiry_deadline();
        let earliest = |a: Instant| Some(expiry.map_or(a, |e| e.min(a)));
        match self.phase {
            Phase::Terminal(_) => None,
            Phase::Closing { deadline } => Some(deadline),
            Phase::Idle { at } => earliest(at),
            Phase::Connecting { deadline, .. } | Phase::Handshaking { deadline } => {
                earliest(deadline)
            }
            Phase::Connected { .. } => {
                let t = self.timeout();
                earliest((self.last_recv + t * 2 / 3).min(self.last_send + t / 3))
            }
        }
    }

    // === what the driver reports ===

    /// The transport for `attempt` is up: send the ConnectRequest.
    pub(crate) fn handle_connected(&mut self, attempt: u64, now: Instant) {
        let Phase::Connecting {
            attempt: current,
            deadline,
        } = self.phase
        else {
            return;
        };
        if current != attempt {
            return;
        }
        self.phase = Phase::Handshaking { deadline };
        self.rbuf.clear();
        // A client that has only ever seen read-only servers asks for a new session each time,
        // as the Java client does: a read-only server cannot vouch for a global session.
        let resume = self.established && self.seen_rw;
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout_ms: duration_ms(self.cfg.session_timeout),
            session_id: if resume { self.session_id } else { 0 },
            passwd: if resume {
                self.passwd.clone()
            } else {
                vec![0; 16]
            },
            read_only: Some(self.cfg.read_only),
        };
        tracing::debug!(
            session_id = format_args!("{:#x}", req.session_id),
            last_zxid = req.last_zxid_seen,
            "handshake"
        );
        write_frame(&mut self.wbuf, |o| req.encode(o));
        self.last_send = now;
    }

    /// The transport for `attempt` could not be opened.
    pub(crate) fn handle_connect_failed(&mut self, attempt: u64, now: Instant) {
        if matches!(self.phase, Phase::Connecting { attempt: a, .. } if a == attempt) {
            self.phase = Phase::Idle {
                at: now + self.backoff.next_delay(&mut self.rng),
            };
        }
    }

    /// The transport closed (EOF or I/O error).
    pub(crate) fn handle_transport_closed(&mut self, now: Instant) {
        self.lose_connection(now, "connection closed");
    }

    /// Bytes arrived from the server.
    pub(crate) fn handle_read(&mut self, data: &[u8], now: Instant) {
        if !matches!(
            self.phase,
            Phase::Handshaking { .. } | Phase::Connected { .. } | Phase::Closing { .. }
        ) {
            return;
        }
        self.rbuf.extend_from_slice(data);
        let mut pos = 0;
        loop {
            match parse_frame(&self.rbuf[pos..], self.cfg.max_frame_len) {
                Ok(Some(len)) => {
                    let frame = self.rbuf[pos + 4..pos + 4 + len].to_vec();
                    pos += 4 + len;
                    if let Err(why) = self.handle_frame(&frame, now) {
                        tracing::warn!(%why, "protocol error; dropping the connection");
                        self.lose_connection(now, "protocol error");
                    }
                    if !matches!(
                        self.phase,
                        Phase::Handshaking { .. } | Phase::Connected { .. } | Phase::Closing { .. }
                    ) {
                        self.rbuf.clear();
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "bad frame; dropping the connection");
                    self.lose_connection(now, "bad frame");
                    self.rbuf.clear();
                    return;
                }
            }
        }
        self.rbuf.drain(..pos);
    }

    /// The instant from [`Session::poll_timeout`] has passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        match self.phase {
            Phase::Terminal(_) => return,
            Phase::Closing { deadline } => {
                if now >= deadline {
                    self.terminate(LossReason::Closed, now);
                }
                return;
            }
            _ => {}
        }
        if self.expiry_deadline().is_some_and(|d| now >= d) {
            tracing::warn!(
                timeout_ms = duration_ms(self.timeout()),
                factor = self.cfg.expiry_factor,
                "no server reachable for the client-side expiry time: session expired"
            );
            self.terminate(LossReason::ClientExpired, now);
            return;
        }
        match self.phase {
            Phase::Idle { at } if now >= at => self.start_attempt(now),
            Phase::Connecting { deadline, .. } | Phase::Handshaking { deadline }
                if now >= deadline =>
            {
                self.lose_connection(now, "connect attempt timed out")
            }
            Phase::Connected { .. } => {
                let t = self.timeout();
                if now >= self.last_recv + t * 2 / 3 {
                    self.lose_connection(now, "no reply from the server within 2/3 of the timeout");
                } else if now >= self.last_send + t / 3 {
                    write_frame(&mut self.wbuf, |o| {
                        RequestHeader {
                            xid: xid::PING,
                            op: OpCode::Ping.code(),
                        }
                        .encode(o)
                    });
                    self.last_send = now;
                }
            }
            _ => {}
        }
    }

    // === what the client asks for ===

    /// Queues a request: sent at once when connected, else when the connection is back.
    pub(crate) fn submit(&mut self, s: Submission, now: Instant) {
        match self.phase {
            Phase::Terminal(st) => {
                let _ = s.completion.send(Outcome::err(st.terminal_error()));
                return;
            }
            Phase::Closing { .. } => {
                let _ = s.completion.send(Outcome::err(Error::ClientClosed));
                return;
            }
            _ => {}
        }
        self.pend_regs(&s.path, s.effect, 1);
        let q = Queued {
            request: s.request,
            path: s.path,
            effect: s.effect,
            waiter: Waiter::User(s.completion),
            _permit: s.permit,
        };
        if matches!(self.phase, Phase::Connected { .. }) {
            self.send(q, now);
        } else {
            self.queue.push_back(q);
        }
    }

    /// Adds credentials: sent now if connected, and again after every reconnect.
    pub(crate) fn add_auth(&mut self, packet: AuthPacket, completion: Completion, now: Instant) {
        if let Phase::Terminal(st) = self.phase {
            let _ = completion.send(Outcome::err(st.terminal_error()));
            return;
        }
        let idx = self.auths.len();
        self.auths.push(AuthEntry {
            packet,
            waiter: Some(completion),
        });
        if matches!(self.phase, Phase::Connected { .. } | Phase::Closing { .. }) {
            self.send_auth(idx, now);
        }
    }

    /// A watcher handle was dropped: forget it, and remove the server-side watch once no other
    /// local watcher needs it.
    pub(crate) fn remove_watcher(&mut self, id: u64, now: Instant) {
        if let Some((path, kind)) = self.watches.remove(id) {
            self.request_server_removal(&path, kind, now);
        }
    }

    /// Closes the session: closeSession when connected, else locally at once. `done` is
    /// completed when the machine is terminal.
    pub(crate) fn close(&mut self, done: Option<oneshot::Sender<()>>, now: Instant) {
        if let Some(d) = done {
            self.close_waiters.push(d);
        }
        match self.phase {
            Phase::Terminal(_) => self.finish_close_waiters(),
            Phase::Closing { .. } => {}
            Phase::Connected { .. } => {
                let q = Queued::internal(Request::CloseSession, String::new(), Waiter::Close);
                self.send(q, now);
                let grace = self.timeout().min(Duration::from_secs(3));
                self.phase = Phase::Closing {
                    deadline: now + grace,
                };
            }
            Phase::Idle { .. } | Phase::Connecting { .. } | Phase::Handshaking { .. } => {
                self.terminate(LossReason::Closed, now)
            }
        }
    }

    /// Number of registered watchers.
    #[cfg(test)]
    pub(crate) fn watcher_count(&self) -> usize {
        self.watches.len()
    }

    // === internals ===

    fn timeout(&self) -> Duration {
        self.negotiated.unwrap_or(self.cfg.session_timeout)
    }

    fn expiry_deadline(&self) -> Option<Instant> {
        if !self.established || matches!(self.phase, Phase::Terminal(_) | Phase::Closing { .. }) {
            return None;
        }
        Some(self.last_heard + self.timeout().mul_f64(self.cfg.expiry_factor))
    }

    fn attempt_timeout(&self) -> Duration {
        self.cfg.connect_timeout.unwrap_or_else(|| {
            let n = u32::try_from(self.hosts.len().max(1)).unwrap_or(u32::MAX);
            (self.timeout() / n).max(Duration::from_secs(1))
        })
    }

    fn start_attempt(&mut self, now: Instant) {
        let host = self.hosts[self.next_host % self.hosts.len()].clone();
        self.next_host = self.next_host.wrapping_add(1);
        self.attempt += 1;
        self.phase = Phase::Connecting {
            attempt: self.attempt,
            deadline: now + self.attempt_timeout(),
        };
        tracing::debug!(%host, attempt = self.attempt, "connecting");
        self.actions.push_back(Action::Connect {
            attempt: self.attempt,
            host,
        });
    }

    fn alloc_xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid = if x == i32::MAX { 1 } else { x + 1 };
        x
    }

    fn send(&mut self, q: Queued, now: Instant) {
        let op = q.request.op_code();
        let xid = match op {
            OpCode::SetWatches | OpCode::SetWatches2 => xid::SET_WATCHES,
            _ => self.alloc_xid(),
        };
        let start = self.handed_out + self.wbuf.len() as u64;
        write_frame(&mut self.wbuf, |o| {
            RequestHeader { xid, op: op.code() }.encode(o);
            q.request.encode(o);
        });
        self.last_send = now;
        self.inflight.push_back(InFlight {
            xid,
            start,
            queued: q,
        });
    }

    fn send_auth(&mut self, idx: usize, now: Instant) {
        let packet = &self.auths[idx].packet;
        write_frame(&mut self.wbuf, |o| {
            RequestHeader {
                xid: xid::AUTH,
                op: OpCode::Auth.code(),
            }
            .encode(o);
            packet.encode(o);
        });
        self.last_send = now;
        self.auth_inflight.push_back(idx);
    }

    fn send_set_watches(&mut self, now: Instant) {
        let lists = self.watches.lists();
        let mut batch = WatchLists::default();
        let mut size = 0;
        let all = [
            (0, lists.data),
            (1, lists.exist),
            (2, lists.child),
            (3, lists.persistent),
            (4, lists.recursive),
        ];
        for (which, paths) in all {
            for path in paths {
                if size + path.len() > SET_WATCHES_MAX_BYTES && size > 0 {
                    self.send_watch_batch(std::mem::take(&mut batch), now);
                    size = 0;
                }
                size += path.len();
                match which {
                    0 => batch.data.push(path),
                    1 => batch.exist.push(path),
                    2 => batch.child.push(path),
                    3 => batch.persistent.push(path),
                    _ => batch.recursive.push(path),
                }
            }
        }
        if size > 0 {
            self.send_watch_batch(batch, now);
        }
    }

    fn send_watch_batch(&mut self, b: WatchLists, now: Instant) {
        let lists = b.clone();
        let request = if b.persistent.is_empty() && b.recursive.is_empty() {
            Request::SetWatches(SetWatches {
                relative_zxid: self.last_zxid,
                data_watches: b.data,
                exist_watches: b.exist,
                child_watches: b.child,
            })
        } else {
            Request::SetWatches2(SetWatches2 {
                relative_zxid: self.last_zxid,
                data_watches: b.data,
                exist_watches: b.exist,
                child_watches: b.child,
                persistent_watches: b.persistent,
                persistent_recursive_watches: b.recursive,
            })
        };
        let q = Queued::internal(request, String::new(), Waiter::SetWatches(lists));
        self.send(q, now);
    }

    fn handle_frame(&mut self, frame: &[u8], now: Instant) -> Result<(), String> {
        if let Phase::Handshaking { .. } = self.phase {
            let resp = ConnectResponse::decode(&mut Reader::new(frame))
                .map_err(|e| format!("bad ConnectResponse: {e}"))?;
            self.handle_connect_response(resp, now);
            return Ok(());
        }
        let mut r = Reader::new(frame);
        let h = ReplyHeader::decode(&mut r).map_err(|e| format!("bad reply header: {e}"))?;
        self.last_recv = now;
        self.last_heard = now;
        match h.xid {
            xid::NOTIFICATION => {
                let ev = WatcherEvent::decode(&mut r).map_err(|e| format!("bad event: {e}"))?;
                tracing::debug!(path = %ev.path, event_type = ev.event_type, "watch event");
                for (_, path, kind) in self.watches.dispatch(&ev, h.zxid) {
                    self.request_server_removal(&path, kind, now);
                }
            }
            xid::PING => {}
            xid::AUTH => {
                let idx = self
                    .auth_inflight
                    .pop_front()
                    .ok_or("auth reply with no auth packet outstanding")?;
                let waiter = self.auths.get_mut(idx).and_then(|a| a.waiter.take());
                let result = if h.err == 0 {
                    Ok(Response::Empty)
                } else {
                    Err(Error::from_code(h.err))
                };
                if let Some(w) = waiter {
                    let _ = w.send(Outcome {
                        result,
                        watch: None,
                    });
                }
                if h.err == ErrorCode::AuthFailed.code() {
                    tracing::warn!("authentication failed");
                    self.terminate(LossReason::AuthFailed, now);
                }
            }
            _ => {
                match self.inflight.front() {
                    None => return Err(format!("reply xid {} with no request outstanding", h.xid)),
                    Some(inf) if inf.xid != h.xid => {
                        return Err(format!(
                            "reply xid {} out of order (expected {})",
                            h.xid, inf.xid
                        ))
                    }
                    Some(_) => {}
                }
                let Some(inf) = self.inflight.pop_front() else {
                    return Ok(());
                };
                if h.zxid > 0 {
                    self.last_zxid = self.last_zxid.max(h.zxid);
                }
                self.complete(inf.queued, h.err, &mut r, now);
            }
        }
        Ok(())
    }

    fn handle_connect_response(&mut self, resp: ConnectResponse, now: Instant) {
        if resp.timeout_ms <= 0 {
            tracing::warn!("the server says the session has expired");
            self.terminate(LossReason::Expired, now);
            return;
        }
        let kind = if self.generation == 0 || !self.established {
            self.generation += 1;
            SessionEventKind::Connected
        } else if resp.session_id == self.session_id {
            SessionEventKind::Reconnected { same_session: true }
        } else {
            // A read-only client asks for a new session at each connection (see
            // handle_connected); a different id means its ephemerals and watches went with
            // the old one.
            tracing::warn!(
                old = format_args!("{:#x}", self.session_id),
                new = format_args!("{:#x}", resp.session_id),
                "the server gave a different session"
            );
            self.generation += 1;
            SessionEventKind::Reconnected {
                same_session: false,
            }
        };
        let read_only = resp.read_only == Some(true);
        self.session_id = resp.session_id;
        self.passwd = resp.passwd;
        self.negotiated = Some(Duration::from_millis(resp.timeout_ms.unsigned_abs().into()));
        self.established = true;
        self.seen_rw |= !read_only;
        self.phase = Phase::Connected { read_only };
        self.last_recv = now;
        self.last_heard = now;
        self.disconnected_since = None;
        self.backoff.reset();
        self.emit(kind);
        if read_only {
            self.emit(SessionEventKind::ReadOnly);
        }
        if matches!(kind, SessionEventKind::Reconnected { .. }) {
            // Persistent watches get no catch-up events: tell each stream to re-read.
            for (_, path, kind) in self.watches.resync() {
                self.request_server_removal(&path, kind, now);
            }
        }
        tracing::info!(
            session_id = format_args!("{:#x}", self.session_id),
            timeout_ms = resp.timeout_ms,
            read_only,
            "session established"
        );
        for idx in 0..self.auths.len() {
            self.send_auth(idx, now);
        }
        self.send_set_watches(now);
        while let Some(q) = self.queue.pop_front() {
            self.send(q, now);
        }
    }

    fn complete(&mut self, q: Queued, err: i32, r: &mut Reader<'_>, now: Instant) {
        let op = q.request.op_code();
        let result = if err != 0 {
            Err(Error::from_code(err))
        } else {
            Response::decode(op, r).map_err(|e| Error::Protocol(format!("{op:?} reply: {e}")))
        };
        self.pend_regs(&q.path, q.effect, -1);
        match q.waiter {
            Waiter::User(completion) => {
                let watch = match (q.effect, &result) {
                    (Effect::Watch(kind), Ok(_)) => Some(self.watches.add(&q.path, kind)),
                    (Effect::ExistsWatch, Ok(_)) => {
                        Some(self.watches.add(&q.path, WatchKind::Data))
                    }
                    (Effect::ExistsWatch, Err(Error::NoNode)) => {
                        Some(self.watches.add(&q.path, WatchKind::Exist))
                    }
                    (Effect::RemoveLocal(ty), Ok(_)) => {
                        self.watches.remove_all(&q.path, ty);
                        None
                    }
                    _ => None,
                };
                let watch_id = watch.as_ref().map(|w| match w {
                    WatchSub::Oneshot { id, .. } | WatchSub::Persistent { id, .. } => *id,
                });
                if completion.send(Outcome { result, watch }).is_err() {
                    // The caller dropped its future: nobody will ever hold this watcher.
                    if let Some(id) = watch_id {
                        self.remove_watcher(id, now);
                    }
                }
            }
            Waiter::RemoveWatches { fallback_any } => {
                let unknown_type = [
                    ErrorCode::MarshallingError,
                    ErrorCode::Unimplemented,
                    ErrorCode::BadArguments,
                ]
                .iter()
                .any(|c| c.code() == err);
                if fallback_any
                    && unknown_type
                    && self.watches.path_is_free(&q.path)
                    && !self.regs_pending(&q.path, WatcherType::Any)
                {
                    // A server before ZOOKEEPER-4472 (3.8.x) only removes persistent watches
                    // with type Any; nothing else of ours is left on the path.
                    self.send_remove_watches(q.path, WatcherType::Any, false, now);
                }
            }
            Waiter::SetWatches(lists) => {
                if err != 0 {
                    // Those watches are not armed on the server and never will fire: end them
                    // loudly rather than leave a waiter hanging.
                    self.watches.fail(&lists, &Error::from_code(err));
                }
            }
            Waiter::Close => self.terminate(LossReason::Closed, now),
        }
    }

    fn request_server_removal(&mut self, path: &str, kind: WatchKind, now: Instant) {
        if !matches!(self.phase, Phase::Connected { .. }) {
            // Server-side watches belong to the connection: the next one only gets the
            // watches still registered here.
            return;
        }
        let Some(ty) = self.watches.server_removal(path, kind) else {
            return;
        };
        if self.regs_pending(path, ty) {
            return;
        }
        let fallback_any = matches!(
            ty,
            WatcherType::Persistent | WatcherType::PersistentRecursive
        );
        self.send_remove_watches(path.to_owned(), ty, fallback_any, now);
    }

    fn send_remove_watches(
        &mut self,
        path: String,
        ty: WatcherType,
        fallback_any: bool,
        now: Instant,
    ) {
        tracing::debug!(%path, ?ty, "removing server-side watch");
        let request = Request::RemoveWatches(WatchesRequest {
            path: path.clone(),
            watcher_type: ty.code(),
        });
        let q = Queued::internal(request, path, Waiter::RemoveWatches { fallback_any });
        self.send(q, now);
    }

    /// Which server tables a watch-setting effect touches: (data, child).
    fn effect_tables(effect: Effect) -> (bool, bool) {
        match effect {
            Effect::Watch(WatchKind::Data | WatchKind::Exist | WatchKind::Recursive)
            | Effect::ExistsWatch => (true, false),
            Effect::Watch(WatchKind::Child) => (false, true),
            Effect::Watch(WatchKind::Persistent) => (true, true),
            Effect::None | Effect::RemoveLocal(_) => (false, false),
        }
    }

    fn pend_regs(&mut self, path: &str, effect: Effect, delta: i32) {
        let (d, c) = Self::effect_tables(effect);
        if !d && !c {
            return;
        }
        let entry = self.pending_regs.entry(path.to_owned()).or_default();
        let apply = |n: &mut u32, on: bool| {
            if on {
                *n = n.saturating_add_signed(delta);
            }
        };
        apply(&mut entry.0, d);
        apply(&mut entry.1, c);
        if *entry == (0, 0) {
            self.pending_regs.remove(path);
        }
    }

    fn regs_pending(&self, path: &str, ty: WatcherType) -> bool {
        let (d, c) = self.pending_regs.get(path).copied().unwrap_or_default();
        match ty {
            WatcherType::Data | WatcherType::PersistentRecursive => d > 0,
            WatcherType::Children => c > 0,
            WatcherType::Persistent | WatcherType::Any => d > 0 || c > 0,
        }
    }

    /// Drops the transport (if any) and schedules the next attempt. Requests already handed to
    /// the transport fail with ConnectionLoss; the others wait for the next connection.
    fn lose_connection(&mut self, now: Instant, why: &str) {
        match self.phase {
            Phase::Terminal(_) => return,
            Phase::Closing { .. } => {
                self.terminate(LossReason::Closed, now);
                return;
            }
            Phase::Idle { .. } => return,
            Phase::Connecting { .. } | Phase::Handshaking { .. } => {
                tracing::debug!(why, "connect attempt failed");
                self.actions.push_back(Action::CloseTransport);
            }
            Phase::Connected { .. } => {
                tracing::info!(why, "disconnected");
                self.actions.push_back(Action::CloseTransport);
                self.disconnected_since = Some(now);
                self.emit(SessionEventKind::Suspended);
                let mut unsent = VecDeque::new();
                for inf in std::mem::take(&mut self.inflight) {
                    let sent = inf.start < self.handed_out;
                    let q = inf.queued;
                    match q.waiter {
                        Waiter::User(c) if sent => {
                            self.pend_regs(&q.path, q.effect, -1);
                            let outcome_unknown = q.request.op_code().is_write();
                            let _ = c.send(Outcome::err(Error::ConnectionLoss { outcome_unknown }));
                        }
                        Waiter::User(_) => unsent.push_back(q),
                        Waiter::RemoveWatches { .. } | Waiter::SetWatches(_) | Waiter::Close => {}
                    }
                }
                // Unsent requests go first next time, ahead of anything queued since.
                unsent.append(&mut self.queue);
                self.queue = unsent;
                self.auth_inflight.clear();
            }
        }
        self.wbuf.clear();
        self.rbuf.clear();
        self.phase = Phase::Idle {
            at: now + self.backoff.next_delay(&mut self.rng),
        };
    }

    fn emit(&mut self, kind: SessionEventKind) {
        self.events.push_back(SessionEvent {
            kind,
            generation: self.generation,
        });
    }

    /// The session is over for `reason`: final, or, for an expiry with `renew` set, followed
    /// by a new session.
    fn terminate(&mut self, reason: LossReason, now: Instant) {
        if matches!(self.phase, Phase::Terminal(_)) {
            return;
        }
        let state = match reason {
            LossReason::Expired | LossReason::ClientExpired => SessionState::Expired,
            LossReason::AuthFailed => SessionState::AuthFailed,
            LossReason::Closed => SessionState::Closed,
        };
        if !matches!(self.phase, Phase::Idle { .. }) {
            self.actions.push_back(Action::CloseTransport);
        }
        self.emit(SessionEventKind::Lost(reason));
        let err = state.terminal_error();
        self.fail_everything(&err);
        if self.cfg.renew && state == SessionState::Expired {
            tracing::info!(?reason, "session expired; starting a new one");
            // Credentials stay (they are sent on every connection); the zxid seen stays too,
            // so the new session never reads older state than the old one did.
            self.session_id = 0;
            self.passwd = vec![0; 16];
            self.negotiated = None;
            self.established = false;
            self.seen_rw = false;
            self.disconnected_since.get_or_insert(now);
            self.phase = Phase::Idle { at: now };
            return;
        }
        tracing::info!(?state, "session finished");
        self.phase = Phase::Terminal(state);
        for a in &mut self.auths {
            if let Some(w) = a.waiter.take() {
                let _ = w.send(Outcome::err(err.clone()));
            }
        }
        self.finish_close_waiters();
    }

    /// Fails every request and watcher of the session with `err`.
    fn fail_everything(&mut self, err: &Error) {
        for inf in std::mem::take(&mut self.inflight) {
            if let Waiter::User(c) = inf.queued.waiter {
                let _ = c.send(Outcome::err(err.clone()));
            }
        }
        for q in std::mem::take(&mut self.queue) {
            if let Waiter::User(c) = q.waiter {
                let _ = c.send(Outcome::err(err.clone()));
            }
        }
        self.pending_regs.clear();
        self.auth_inflight.clear();
        self.watches.terminate(err);
        self.wbuf.clear();
        self.rbuf.clear();
    }

    fn finish_close_waiters(&mut self) {
        for w in self.close_waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

fn duration_ms(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
