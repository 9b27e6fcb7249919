//! The request processor as an ensemble member: the runtime that drives the ZAB core
//! ([`crate::zab::Node`]) from the server's single task.
//!
//! - **Writes.** The leader prepares a write against its own state, gives the transaction the
//!   next zxid and proposes it; it is applied (and answered) when ZAB commits it. Followers and
//!   observers forward writes to the leader ([`Relay::Forward`]) and answer them when the commit
//!   reaches them, matching it by (session, xid) as ZooKeeper's `CommitProcessor` does.
//! - **Reads** are served locally, behind the session's own earlier writes (the same per-session
//!   queue as standalone), so a session always reads its own writes.
//! - **Sessions** are global: created and closed as transactions. Only the leader expires them;
//!   followers relay the sessions connected to them every half tick ([`Relay::Touch`]). A new
//!   leader gives every session a full timeout, as ZooKeeper does.
//! - **sync** asks the leader for its commit point ([`Relay::Sync`]) and answers once this member
//!   has applied that far. The leader answers only after a quorum round confirmed it still leads
//!   ([`Node::confirm_leadership`], read index), so a deposed leader cannot hand out a stale
//!   point: `sync` then a read is linearizable. With `linearizableReads` every read waits so.
//! - **Role changes.** A member that stops serving (electing) drops its clients, as ZooKeeper
//!   does; they reconnect to a member that serves, keeping their sessions.
//! - **Storage.** ZAB's store operations go to the log writer thread in order; its completions come
//!   back as [`Event::Persisted`](crate::server::Event::Persisted).

use std::collections::{HashMap, HashSet, VecDeque};

use bytes::Bytes;
use rookery_proto::{ConnectRequest, Reader, Request};

use crate::quorum::relay::NOT_A_CONNECTION;
use crate::quorum::{Incoming, PeerMsg, Relay, Transport};
use crate::server::{Core, Plan, Queued, ReplyKind};
use crate::storage::codec::decode_txn;
use crate::storage::epoch::Epochs;
use crate::storage::snapshot;
use crate::storage::writer::StoreCmd;
use crate::txn::Txn;
use crate::watch::ConnId;
use crate::zab::{self, Action, Input, Node, PeerId, RoleChange, StoreOp, Zxid};

/// Zab ticks per ZooKeeper tick: the core counts time in tenths of `tickTime`, so that election
/// (ZooKeeper's 200 ms `finalizeWait` at the default tick) and failure detection react well
/// inside one `tickTime`.
pub const TICKS_PER_TICK: u32 = 10;

/// The xid a learner's session revalidation travels with in [`Relay::Sync`] (clients number
/// their requests from 1 up).
const REVALIDATE_CXID: i32 = i32::MIN;

/// How many learner connections a leader remembers the forwarding order of (the least recently
/// used is forgotten first). A forgotten connection's next request is refused unless it is its
/// first: its client reconnects, which is safe.
const MAX_FORWARDING_CONNS: usize = 1 << 16;

/// The ensemble side of the request processor.
pub struct Ensemble {
    pub(crate) node: Node,
    net: Box<dyn Transport>,
    /// What the core last said this member is.
    pub(crate) role: RoleChange,
    /// Writes of this member's clients (and handshakes) waiting for their commit, per session, in
    /// order: (xid, what to do).
    waiting: HashMap<i64, VecDeque<(i32, Plan)>>,
    /// Syncs forwarded to the leader, waiting for its answer.
    forwarded_syncs: HashMap<(i64, i32), (ConnId, Queued)>,
    /// Syncs the leader answered, waiting for this member to apply up to the zxid.
    syncs: Vec<(i64, ConnId, Queued)>,
    /// As leader: reads waiting for the quorum round that confirms this leader, by read id: the
    /// commit point when each was asked, and whom it answers.
    confirming: HashMap<u64, (i64, ReadWaiter)>,
    /// The last read id given to [`Node::confirm_leadership`].
    last_read_id: u64,
    /// Handshakes resuming a session (every one, as ZooKeeper's learner revalidates each),
    /// waiting for the leader's commit point, per session.
    revalidating: HashMap<i64, Vec<(ConnId, ConnectRequest)>>,
    /// The same, once the leader answered: waiting to apply up to the zxid.
    revalidated: Vec<(i64, ConnId, ConnectRequest)>,
    /// As leader: learners' revalidations of sessions closing here, answered once the close is
    /// applied (or undone), so that the commit point they get covers it.
    closing_revalidations: HashMap<i64, Vec<ReadWaiter>>,
    /// Zab tick length.
    pub(crate) tick_ms: u64,
    /// Actions not yet performed. Performing one can cause more: applying a commit answers a
    /// client, which lets its next queued write be proposed. Those must wait until the actions
    /// before them are done, or a PROPOSAL would overtake a COMMIT numbered before it.
    queue: VecDeque<Action>,
    performing: bool,
    /// Sessions that sent this learner something since its last [`Relay::Touch`]. Only those
    /// are relayed (ZooKeeper's touch table): a client that is connected but silent (paused,
    /// or behind a half-open connection) must expire like one on the leader.
    touched: HashSet<i64>,
    /// The store operation installing the leader's snapshot, until it is durable. No local
    /// snapshot starts meanwhile: one written before the install has cut the old log would sit
    /// beside that log's divergent tail.
    install_seq: Option<u64>,
    /// As leader: each learner connection's forwarding order (see [`Relay::Forward`]).
    forwarding: ForwardOrder,
    /// As leader: transactions prepared and numbered but held back, in order, while the
    /// proposal window (`max_outstanding_proposals`) is full: (zxid, payload). This is the
    /// leader's backpressure: a write waits for room instead of being refused (which would drop
    /// its client). Its length is bounded by `max_backlog`, and in practice by what the members'
    /// `globalOutstandingLimit` lets their clients have in flight.
    backlog: VecDeque<(i64, Bytes)>,
    /// The longest `backlog` allowed: past it a write is refused.
    max_backlog: usize,
    /// Since when (µs, the core's clock) this member has been without a leader to serve under
    /// (`election_time`).
    looking_since: Option<u64>,
    /// As leader: when (µs, the core's clock) each write not yet committed was numbered, in zxid order
    /// (`proposal_latency`). Bounded by the backlog and the proposal window; cleared when the
    /// role changes.
    proposed_at: VecDeque<(i64, u64)>,
}

/// Whom a read confirmed by the leader's quorum round answers.
#[derive(Debug)]
enum ReadWaiter {
    /// A request of a client connected to this member.
    Local(ConnId, Queued),
    /// A learner's [`Relay::Sync`]: [`Relay::Synced`] goes back to it.
    Remote {
        to: PeerId,
        session_id: i64,
        cxid: i32,
    },
    /// A handshake resuming a session on this leader: answered from the session table once a
    /// quorum confirmed that this member still leads (a deposed leader's table may lack a
    /// close the new leader committed).
    Resume(ConnId, ConnectRequest),
}

/// A leader's view of its learners' connections (learner, connection): the number of the next
/// request each may forward, or refused for good. A request out of order (one before it was
/// lost on the way) is refused, and so is every later one of its connection: a session's
/// writes never commit with a gap. Bounded: the least recently used connection is forgotten
/// first (a connection in use is never forgotten while fewer than the bound are).
#[derive(Debug, Default)]
struct ForwardOrder {
    /// Per connection: the next number, and the stamp of its last use.
    next: HashMap<(PeerId, u64), (u64, u64)>,
    /// Uses in order, oldest first; an entry whose stamp is no longer the connection's is stale.
    uses: VecDeque<((PeerId, u64), u64)>,
    stamp: u64,
}

/// `ForwardOrder::next` of a refused connection.
const REFUSED: u64 = u64::MAX;

impl ForwardOrder {
    /// Whether request `seq` of `key` may be proposed: it is the next one, and none of the
    /// connection was refused. Counts it if so; refuses the connection if not.
    fn admit(&mut self, key: (PeerId, u64), seq: u64) -> bool {
        let next = self.next.get(&key).map_or(0, |&(n, _)| n);
        if next == REFUSED || seq != next {
            self.refuse(key);
            return false;
        }
        self.set(key, seq + 1);
        true
    }

    /// Refuses every later request of `key`.
    fn refuse(&mut self, key: (PeerId, u64)) {
        self.set(key, REFUSED);
    }

    fn set(&mut self, key: (PeerId, u64), next: u64) {
        self.stamp += 1;
        self.next.insert(key, (next, self.stamp));
        self.uses.push_back((key, self.stamp));
        while self.next.len() > MAX_FORWARDING_CONNS {
            let Some((old, stamp)) = self.uses.pop_front() else {
                break;
            };
            if self.next.get(&old).is_some_and(|&(_, s)| s == stamp) {
                self.next.remove(&old);
            }
        }
        // Stale uses are dropped once they outnumber the live ones: amortized O(1) per use.
        if self.uses.len() > 2 * MAX_FORWARDING_CONNS {
            let next = &self.next;
            self.uses
                .retain(|(k, stamp)| next.get(k).is_some_and(|&(_, s)| s == *stamp));
        }
        debug_assert!(self.uses.len() >= self.next.len());
    }

    fn clear(&mut self) {
        self.next.clear();
        self.uses.clear();
    }
}

impl std::fmt::Debug for Ensemble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ensemble")
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Ensemble {
    /// Wraps a core and its transport.
    pub fn new(node: Node, net: Box<dyn Transport>, tick_ms: u64, max_backlog: usize) -> Ensemble {
        Ensemble {
            node,
            net,
            role: RoleChange::Looking,
            waiting: HashMap::new(),
            forwarded_syncs: HashMap::new(),
            syncs: Vec::new(),
            confirming: HashMap::new(),
            last_read_id: 0,
            revalidating: HashMap::new(),
            revalidated: Vec::new(),
            closing_revalidations: HashMap::new(),
            tick_ms: tick_ms.max(1),
            queue: VecDeque::new(),
            performing: false,
            touched: HashSet::new(),
            install_seq: None,
            forwarding: ForwardOrder::default(),
            backlog: VecDeque::new(),
            max_backlog: max_backlog.max(1),
            // Set from the core's clock when the core takes the ensemble.
            looking_since: None,
            proposed_at: VecDeque::new(),
        }
    }

    /// Starts the election-time clock (µs, the core's clock).
    pub(crate) fn looking_from(&mut self, now_us: u64) {
        self.looking_since = Some(now_us);
    }

    /// Serving clients: the established leader, or a synchronized learner.
    pub(crate) fn serving(&self) -> bool {
        !matches!(self.role, RoleChange::Looking)
    }

    /// The leader to forward to, if this member serves as a learner.
    pub(crate) fn leader_to_forward(&self) -> Option<PeerId> {
        match self.role {
            RoleChange::Following { leader, .. } | RoleChange::Observing { leader, .. } => {
                Some(leader)
            }
            _ => None,
        }
    }

    /// Notes that a session connected here sent something (only a learner reports it).
    pub(crate) fn touched(&mut self, session_id: i64) {
        if self.leader_to_forward().is_some() {
            self.touched.insert(session_id);
        }
    }

    pub(crate) fn is_leader(&self) -> bool {
        matches!(self.role, RoleChange::Leading { .. })
    }

    /// The mode as `srvr` prints it.
    pub(crate) fn mode(&self) -> &'static str {
        match self.role {
            RoleChange::Leading { .. } => "leader",
            RoleChange::Following { .. } => "follower",
            RoleChange::Observing { .. } => "observer",
            RoleChange::Looking => "looking",
        }
    }
}

impl Core {
    fn ens(&mut self) -> &mut Ensemble {
        self.ensemble
            .as_mut()
            .expect("only ensemble members run this")
    }

    /// ZAB's timer, every [`Ensemble::tick_ms`].
    pub fn zab_tick(&mut self) {
        self.zab_step(Input::Tick);
    }

    /// Feeds the core one input and performs what it asks.
    pub(crate) fn zab_step(&mut self, input: Input) {
        if let Input::Persisted { seq } = input {
            let ens = self.ens();
            if ens.install_seq.is_some_and(|s| s <= seq) {
                ens.install_seq = None;
            }
        }
        let actions = self.ens().node.step(input);
        self.perform(actions);
    }

    /// Performs the core's actions in order, after any still queued (see `Ensemble::queue`).
    pub(crate) fn perform(&mut self, actions: Vec<Action>) {
        let ens = self.ens();
        ens.queue.extend(actions);
        if ens.performing {
            return;
        }
        ens.performing = true;
        while let Some(action) = self.ens().queue.pop_front() {
            if self.failed.is_some() {
                // Stopping: nothing after the failure may be applied, stored or sent.
                self.ens().queue.clear();
                break;
            }
            self.perform_one(action);
        }
        self.ens().performing = false;
    }

    fn perform_one(&mut self, action: Action) {
        match action {
            Action::Send { to, msg } => self.ens().net.send(to, PeerMsg::Zab(msg)),
            Action::SendSnapshot {
                to,
                session,
                epoch,
                seq,
                zxid,
            } => {
                // The core asks for exactly the applied state: every commit before this
                // action is applied, none after.
                assert_eq!(
                    zxid.to_i64(),
                    self.last_zxid,
                    "a snapshot is sent at the commit point"
                );
                let image = snapshot::encode(&self.snapshot_image());
                tracing::info!(
                    learner = to,
                    zxid = format_args!("{:#x}", self.last_zxid),
                    bytes = image.len(),
                    "sending a snapshot"
                );
                let msg = zab::Message::Peer {
                    session,
                    epoch,
                    seq,
                    packet: zab::Packet::Snap {
                        zxid,
                        snapshot: Bytes::from(image),
                    },
                };
                self.ens().net.send(to, PeerMsg::Zab(msg));
            }
            Action::Store { seq, op } => {
                let cmd = match op {
                    StoreOp::Append { entries } => StoreCmd::Append(
                        entries
                            .into_iter()
                            .map(|e| (e.zxid.to_i64(), e.payload))
                            .collect(),
                    ),
                    StoreOp::Truncate { after } => StoreCmd::Truncate(after.to_i64()),
                    StoreOp::InstallSnapshot { zxid, snapshot } => {
                        if !self.install_snapshot(zxid, &snapshot) {
                            // Never write an image that did not verify.
                            return;
                        }
                        StoreCmd::Install {
                            zxid: zxid.to_i64(),
                            image: snapshot,
                        }
                    }
                    StoreOp::Epochs { accepted, current } => {
                        StoreCmd::Epochs(Epochs { accepted, current })
                    }
                    StoreOp::ClearTailCut => StoreCmd::ClearTailCut,
                };
                if matches!(cmd, StoreCmd::Install { .. }) {
                    self.ens().install_seq = Some(seq);
                }
                self.log.store(seq, cmd);
            }
            Action::Commit { entries } => self.apply_committed(entries),
            Action::Role(role) => self.on_role(role),
            Action::ReadConfirmed { ids } => self.reads_confirmed(ids),
        }
    }

    /// Replaces the applied state with the leader's image (the learner is synchronizing, so no
    /// client is connected).
    fn install_snapshot(&mut self, zxid: Zxid, bytes: &[u8]) -> bool {
        let image = match snapshot::read(std::path::Path::new("<snapshot from the leader>"), bytes)
        {
            Ok(img) if img.zxid == zxid.to_i64() => img,
            Ok(img) => {
                self.fail(format!(
                    "the leader's snapshot holds zxid {:#x}, not {zxid}",
                    img.zxid
                ));
                return false;
            }
            Err(e) => {
                self.fail(format!("the leader's snapshot is unreadable: {e}"));
                return false;
            }
        };
        tracing::info!(zxid = %zxid, nodes = image.nodes.len(), "installing the leader's snapshot");
        let watches = std::mem::take(&mut self.tree.watches);
        self.tree = crate::tree::DataTree::from_image(image.nodes);
        self.tree.watches = watches;
        let now = self.now_ms();
        self.sessions.clear();
        for s in &image.sessions {
            self.sessions.add(s.id, s.timeout_ms, s.passwd, now);
        }
        self.last_zxid = image.zxid;
        self.next_zxid = image.zxid;
        self.outstanding = Default::default();
        true
    }

    /// Stops the server: something that must never happen did, and going on could corrupt
    /// state.
    fn fail(&mut self, why: String) {
        tracing::error!(error = %why, "stopping");
        self.failed = Some(why);
    }

    /// Applies committed transactions in order and answers the local requests they carry.
    fn apply_committed(&mut self, entries: Vec<zab::Entry>) {
        if let Some(last) = entries.last() {
            let last = last.zxid.to_i64();
            // Disjoint fields: the metrics are read while the ensemble's queue is popped.
            let ens = self
                .ensemble
                .as_mut()
                .expect("only ensemble members run this");
            let now_us = self.env.now_us();
            while let Some(&(zxid, at_us)) = ens.proposed_at.front() {
                if zxid > last {
                    break;
                }
                ens.proposed_at.pop_front();
                self.metrics
                    .proposal_latency
                    .observe(now_us.saturating_sub(at_us) as f64 / 1e3);
            }
        }
        let n = entries.len() as u64;
        for e in entries {
            let zxid = e.zxid.to_i64();
            let (hdr, txn) = match decode_txn(zxid, &e.payload) {
                Ok(pair) => pair,
                Err(err) => {
                    return self.fail(format!(
                        "committed transaction {zxid:#x} does not decode: {err}"
                    ))
                }
            };
            let applied = self.commit(&hdr, &txn);
            // As ZooKeeper measures it: from the leader stamping the transaction to its commit
            // here, by the wall clocks of both (so skew between machines shows in it).
            let propagation_ms = (self.env.wall_ms() - hdr.time_ms).max(0);
            self.metrics
                .commit_propagation_latency
                .observe(propagation_ms as f64);
            self.outstanding.applied(zxid);
            let creates = matches!(txn, Txn::CreateSession { .. });
            match self.take_plan(hdr.session_id, hdr.cxid, creates) {
                Some(plan) => self.finish(zxid, &txn, plan, applied),
                None => {
                    if let Txn::CloseSession { session_id } = txn {
                        // Expired by the leader while its client was connected here.
                        if let Some(conn) = self.session_conn.get(&session_id).copied() {
                            self.close_conn(conn);
                        }
                    }
                }
            }
        }
        self.answer_syncs();
        self.finish_revalidations();
        self.release_closing_revalidations();
        // The commits made room in the proposal window.
        self.propose_backlog();
        self.applied_since_snapshot += n;
        let installing = self.ens().install_seq.is_some();
        if self.applied_since_snapshot >= self.snapshot_due && !self.snapshot_running && !installing
        {
            self.start_snapshot();
        }
    }

    /// The local request a committed transaction answers, if any. A session's writes reach the
    /// leader in order and are committed (or rejected) in order, so a commit for a later request
    /// means the ones before it were lost on the way (a peer connection dropped them): those are
    /// rejected, which drops their client's connection, instead of waiting forever.
    fn take_plan(&mut self, session_id: i64, cxid: i32, creates: bool) -> Option<Plan> {
        let ens = self.ens();
        let q = ens.waiting.get_mut(&session_id)?;
        // A handshake waits for its createSession, a request for its own transaction: an
        // expiry's closeSession (xid 0) must not answer a client request sent with xid 0.
        let pos = q
            .iter()
            .position(|(x, p)| *x == cxid && matches!(p, Plan::Connect { .. }) == creates)?;
        let lost: Vec<Plan> = q.drain(..pos).map(|(_, p)| p).collect();
        let (_, plan) = q.pop_front().expect("the position exists");
        if q.is_empty() {
            ens.waiting.remove(&session_id);
        }
        for p in lost {
            tracing::warn!(
                session = format_args!("0x{session_id:x}"),
                "a forwarded request was lost; dropping its client"
            );
            self.reject(p);
        }
        Some(plan)
    }

    /// Forgets what a closed connection was waiting for: its writes still commit, unanswered.
    pub(crate) fn forget_conn(&mut self, conn_id: ConnId) {
        let Some(ens) = self.ensemble.as_mut() else {
            return;
        };
        let of_conn = |p: &Plan| match p {
            Plan::Reply { conn, .. } | Plan::Connect { conn, .. } => *conn == conn_id,
            Plan::Internal => false,
        };
        ens.waiting.retain(|_, q| {
            q.retain(|(_, p)| !of_conn(p));
            !q.is_empty()
        });
        ens.forwarded_syncs.retain(|_, (c, _)| *c != conn_id);
        ens.syncs.retain(|(_, c, _)| *c != conn_id);
        ens.confirming
            .retain(|_, (_, w)| !matches!(w, ReadWaiter::Local(c, _) if *c == conn_id));
        ens.revalidating.retain(|_, v| {
            v.retain(|(c, _)| *c != conn_id);
            !v.is_empty()
        });
        ens.revalidated.retain(|(_, c, _)| *c != conn_id);
    }

    /// Asks the leader for its commit point on behalf of a handshake resuming a session; the
    /// leader answers after any close of the session under way there is applied.
    pub(crate) fn revalidate(&mut self, conn_id: ConnId, req: ConnectRequest) {
        let Some(leader) = self.ensemble.as_ref().and_then(Ensemble::leader_to_forward) else {
            return self.close_conn(conn_id);
        };
        let session_id = req.session_id;
        let ens = self.ens();
        let first = !ens.revalidating.contains_key(&session_id);
        ens.revalidating
            .entry(session_id)
            .or_default()
            .push((conn_id, req));
        if first {
            self.send_relay(
                leader,
                Relay::Sync {
                    session_id,
                    cxid: REVALIDATE_CXID,
                    conn: NOT_A_CONNECTION,
                    seq: 0,
                },
            );
        }
    }

    /// As leader: a handshake resuming a session waits for a quorum round that confirms this
    /// member still leads, and, if the session's close is under way here, for that close to be
    /// applied (the session is then gone) or undone (this member stopped leading and dropped
    /// the connection). Answering from the table at once let a deposed leader, within
    /// syncLimit, resume a session the new leader had closed, and refuse as expired a session
    /// whose close never committed (defect 9, found by the whole-member simulator).
    pub(crate) fn confirm_resume(&mut self, conn_id: ConnId, req: ConnectRequest) {
        let session_id = req.session_id;
        self.confirm_behind_close(session_id, ReadWaiter::Resume(conn_id, req));
    }

    /// As leader: a quorum round for `waiter`, which looks at `session_id`'s entry in the
    /// session table; while the session's close is under way here (it already refuses the
    /// session's handshakes, but the close is not committed), the round waits for the close to
    /// be applied or undone, so that the commit point it gives covers the outcome.
    fn confirm_behind_close(&mut self, session_id: i64, waiter: ReadWaiter) {
        if self.sessions.is_closing(session_id) {
            self.ens()
                .closing_revalidations
                .entry(session_id)
                .or_default()
                .push(waiter);
            return;
        }
        self.confirm_read(waiter);
    }

    /// As leader: answers the revalidations parked behind closes that are now applied or undone.
    fn release_closing_revalidations(&mut self) {
        let parked: Vec<i64> = self.ens().closing_revalidations.keys().copied().collect();
        for session_id in parked {
            if self.sessions.is_closing(session_id) {
                continue;
            }
            let waiters = self.ens().closing_revalidations.remove(&session_id);
            for waiter in waiters.unwrap_or_default() {
                self.confirm_read(waiter);
            }
        }
    }

    /// Looks again at the handshakes whose revalidation point this member has applied.
    fn finish_revalidations(&mut self) {
        let last = self.last_zxid;
        for (_, conn, req) in take_due(&mut self.ens().revalidated, last) {
            self.resume(conn, req, true);
        }
    }

    fn on_role(&mut self, role: RoleChange) {
        tracing::info!(?role, "ensemble role changed");
        let was_serving = self.ens().serving();
        self.ens().role = role;
        let ens = self
            .ensemble
            .as_mut()
            .expect("only ensemble members run this");
        ens.proposed_at.clear();
        let now_us = self.env.now_us();
        if ens.serving() {
            if let Some(since_us) = ens.looking_since.take() {
                self.metrics
                    .election_time
                    .observe(now_us.saturating_sub(since_us) as f64 / 1e3);
            }
        } else {
            ens.looking_since.get_or_insert(now_us);
        }
        if was_serving {
            // As ZooKeeper: a member that stops serving under one leader drops its clients.
            // Outstanding writes have an unknown outcome; their clients learn it after
            // reconnecting (to this member under its new role, or to another).
            let conns: Vec<ConnId> = self.conns.keys().copied().collect();
            for c in conns {
                self.close_conn(c);
            }
            let ens = self.ens();
            ens.waiting.clear();
            ens.forwarded_syncs.clear();
            ens.syncs.clear();
            ens.confirming.clear();
            ens.revalidating.clear();
            ens.revalidated.clear();
            ens.closing_revalidations.clear();
            ens.touched.clear();
            // Held-back transactions were never proposed: their clients were just dropped, and
            // an expiry among them is retried by the next leader.
            ens.backlog.clear();
            self.outstanding = Default::default();
        }
        // A close this member started and did not see commit is in doubt under any new role:
        // the next leader retries an expiry that did not commit. Left marked, a deposed leader
        // would refuse a live session as expired once it follows (defect 9).
        self.sessions.reopen_all();
        match role {
            RoleChange::Looking => {}
            RoleChange::Leading { .. } => {
                // Learners' connections were all closed at the change of leader.
                self.ens().forwarding.clear();
                // Followers' touches did not reach this member: every session gets a full
                // timeout from now, and anything it was closing before is open again (its close
                // may never have committed).
                let now = self.now_ms();
                self.sessions.restart_deadlines(now);
            }
            RoleChange::Following { .. } | RoleChange::Observing { .. } => {}
        }
    }

    /// Proposes a prepared transaction as leader; the plan runs at its commit. The transaction
    /// is numbered now and proposed as soon as the proposal window has room, after those held
    /// back before it (see `Ensemble::backlog`). Returns false (and undoes nothing, because
    /// nothing was done) if it cannot be: this member does not lead, the epoch's counter is used
    /// up, or the backlog is full.
    pub(crate) fn propose(
        &mut self,
        session_id: i64,
        cxid: i32,
        txn: Txn,
        changes: Option<HashMap<String, Option<crate::prep::View>>>,
        plan: Plan,
    ) -> bool {
        let closes = match &txn {
            Txn::CloseSession { session_id } => Some(*session_id),
            _ => None,
        };
        let ens = self.ens();
        let held = ens.backlog.len();
        let zxid = if held >= ens.max_backlog {
            tracing::warn!(
                held,
                "too many writes waiting for the proposal window; refusing one"
            );
            None
        } else {
            match ens.node.zxid_after(held as u64) {
                Ok(z) => Some(z.to_i64()),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot propose");
                    None
                }
            }
        };
        let Some(zxid) = zxid else {
            self.not_proposed(closes, plan);
            return false;
        };
        let hdr = crate::txn::TxnHeader {
            session_id,
            cxid,
            zxid,
            time_ms: self.env.wall_ms(),
        };
        let mut payload = Vec::with_capacity(128);
        crate::storage::codec::encode_txn(&hdr, &txn, &mut payload);
        if let Some(changes) = changes {
            self.outstanding.merge(changes, zxid);
        }
        self.next_zxid = zxid;
        let ens = self.ens();
        if !matches!(plan, Plan::Internal) {
            ens.waiting
                .entry(session_id)
                .or_default()
                .push_back((cxid, plan));
        }
        let now_us = self.env.now_us();
        let ens = self.ens();
        ens.backlog.push_back((zxid, Bytes::from(payload)));
        ens.proposed_at.push_back((zxid, now_us));
        self.propose_backlog();
        true
    }

    /// Proposes the held-back transactions, in order, while the proposal window has room.
    fn propose_backlog(&mut self) {
        loop {
            let ens = self.ens();
            let Some((zxid, payload)) = ens.backlog.front().cloned() else {
                return;
            };
            match ens.node.propose(payload) {
                Ok((z, actions)) => {
                    // Numbered by `zxid_after` and proposed in order, with nothing in between.
                    assert_eq!(
                        z.to_i64(),
                        zxid,
                        "a held-back proposal got the zxid announced"
                    );
                    ens.backlog.pop_front();
                    self.perform(actions);
                }
                Err(zab::ProposeError::Busy { .. }) => return,
                Err(e) => {
                    // Deposed, or the epoch's counter is used up: this member stops leading,
                    // which drops its clients and clears the backlog (`on_role`).
                    tracing::debug!(error = %e, held = ens.backlog.len(), "cannot propose");
                    return;
                }
            }
        }
    }

    /// A transaction the core refused: a close that did not happen leaves its session open (an
    /// expiry is retried at the next tick), and the client is dropped.
    fn not_proposed(&mut self, closes: Option<i64>, plan: Plan) {
        if let Some(session_id) = closes {
            self.sessions.reopen(session_id);
            self.release_closing_revalidations();
        }
        self.reject(plan);
    }

    /// A write that will not be answered: its client is dropped (it retries elsewhere).
    fn reject(&mut self, plan: Plan) {
        match plan {
            Plan::Internal => {}
            Plan::Connect { conn, .. } => self.close_conn(conn),
            Plan::Reply { conn, .. } => {
                if let Some(c) = self.conns.get_mut(&conn) {
                    c.inflight_writes -= 1;
                }
                self.close_conn(conn);
            }
        }
    }

    /// Forwards a client's write to the leader; it is answered when its commit arrives.
    pub(crate) fn forward_write(
        &mut self,
        leader: PeerId,
        conn_id: ConnId,
        session_id: i64,
        q: Queued,
        kind: ReplyKind,
    ) {
        let Ok(req) = &q.req else {
            unreachable!("only decoded requests are writes")
        };
        let ids = self
            .conns
            .get(&conn_id)
            .map(|c| c.ids.clone())
            .unwrap_or_default();
        // A forwarded closeSession does not mark the session closing here: the leader does, and
        // the commit removes it everywhere; if the leader refuses it, the session stays usable.
        let mut body = Vec::new();
        req.encode(&mut body);
        let seq = self.conns.get_mut(&conn_id).map_or(0, |c| {
            c.forwarded += 1;
            c.forwarded - 1
        });
        let msg = Relay::Forward {
            session_id,
            cxid: q.xid,
            conn: conn_id,
            seq,
            ids,
            op: req.op_code().code(),
            body: Bytes::from(body),
        };
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.inflight_writes += 1;
        }
        let xid = q.xid;
        let ens = self.ens();
        ens.net.send(leader, PeerMsg::Relay(msg));
        ens.waiting.entry(session_id).or_default().push_back((
            xid,
            Plan::Reply {
                conn: conn_id,
                q,
                kind,
            },
        ));
    }

    /// Forwards a new session to the leader; the handshake is answered at its commit.
    pub(crate) fn forward_create_session(
        &mut self,
        leader: PeerId,
        session_id: i64,
        timeout_ms: i32,
        passwd: [u8; 16],
        plan: Plan,
    ) {
        let ens = self.ens();
        ens.net.send(
            leader,
            PeerMsg::Relay(Relay::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            }),
        );
        ens.waiting
            .entry(session_id)
            .or_default()
            .push_back((0, plan));
    }

    /// A request that must see every write acknowledged before it began (`sync`; with
    /// `linearizableReads`, any read): it runs once this member has applied the commit point
    /// the leader confirmed with a quorum round. Only more such reads of its connection run
    /// before it is answered.
    pub(crate) fn read_barrier(&mut self, conn_id: ConnId, session_id: i64, q: Queued) {
        if let Some(c) = self.conns.get_mut(&conn_id) {
            c.barriers += 1;
        }
        match self.ens().leader_to_forward() {
            Some(leader) => self.forward_sync(leader, conn_id, session_id, q),
            None => self.confirm_read(ReadWaiter::Local(conn_id, q)),
        }
    }

    /// As leader: asks the core for a quorum round for a read, noting the commit point now.
    fn confirm_read(&mut self, waiter: ReadWaiter) {
        let zxid = self.last_zxid;
        let ens = self.ens();
        ens.last_read_id += 1;
        let id = ens.last_read_id;
        match ens.node.confirm_leadership(id) {
            Ok(actions) => {
                ens.confirming.insert(id, (zxid, waiter));
                self.perform(actions);
            }
            Err(e) => {
                tracing::debug!(error = %e, "cannot confirm a read");
                match waiter {
                    ReadWaiter::Local(conn, _) | ReadWaiter::Resume(conn, _) => {
                        self.close_conn(conn)
                    }
                    ReadWaiter::Remote {
                        to,
                        session_id,
                        cxid,
                    } => self.send_relay(to, Relay::Rejected { session_id, cxid }),
                }
            }
        }
    }

    /// The quorum confirmed this leader for these reads: each is answered from its commit point.
    fn reads_confirmed(&mut self, ids: Vec<u64>) {
        for id in ids {
            let Some((zxid, waiter)) = self.ens().confirming.remove(&id) else {
                continue;
            };
            match waiter {
                ReadWaiter::Local(conn, q) => self.ens().syncs.push((zxid, conn, q)),
                ReadWaiter::Resume(conn, req) => self.ens().revalidated.push((zxid, conn, req)),
                ReadWaiter::Remote {
                    to,
                    session_id,
                    cxid,
                } => self.send_relay(
                    to,
                    Relay::Synced {
                        session_id,
                        cxid,
                        zxid,
                    },
                ),
            }
        }
        self.answer_syncs();
        self.finish_revalidations();
    }

    /// A follower's `sync`: ask the leader for its commit point.
    fn forward_sync(&mut self, leader: PeerId, conn_id: ConnId, session_id: i64, q: Queued) {
        let seq = self.conns.get_mut(&conn_id).map_or(0, |c| {
            c.forwarded += 1;
            c.forwarded - 1
        });
        let cxid = q.xid;
        let ens = self.ens();
        ens.net.send(
            leader,
            PeerMsg::Relay(Relay::Sync {
                session_id,
                cxid,
                conn: conn_id,
                seq,
            }),
        );
        ens.forwarded_syncs.insert((session_id, cxid), (conn_id, q));
    }

    /// Runs the reads whose confirmed commit point this member has applied.
    fn answer_syncs(&mut self) {
        let last = self.last_zxid;
        for (_, conn, q) in take_due(&mut self.ens().syncs, last) {
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            c.barriers -= 1;
            let session_id = c.session_id;
            self.execute(conn, session_id, q);
            self.drain(conn);
        }
    }

    /// A message from another member (or the end of a connection from it).
    pub fn on_peer(&mut self, inc: Incoming) {
        let Incoming { from, msg } = inc;
        match msg {
            None => self.zab_step(Input::Disconnected { peer: from }),
            Some(PeerMsg::Zab(msg)) => self.zab_step(Input::Message { from, msg }),
            Some(PeerMsg::Relay(r)) => self.on_relay(from, r),
        }
    }

    fn on_relay(&mut self, from: PeerId, r: Relay) {
        let leader = self.ens().is_leader();
        match r {
            fwd @ Relay::Forward { .. } if leader => self.on_forward(from, fwd),
            Relay::CreateSession {
                session_id,
                timeout_ms,
                passwd,
            } if leader && self.sessions.get(session_id).is_none() => {
                let txn = Txn::CreateSession {
                    session_id,
                    timeout_ms,
                    passwd,
                };
                if !self.propose(session_id, 0, txn, None, Plan::Internal) {
                    self.send_relay(
                        from,
                        Relay::Rejected {
                            session_id,
                            cxid: 0,
                        },
                    );
                }
            }
            Relay::Touch { sessions } if leader => {
                let now = self.now_ms();
                for s in sessions {
                    self.sessions.touch(s, now);
                }
            }
            Relay::Sync {
                session_id,
                cxid,
                conn,
                seq,
            } if leader => {
                // In order among the connection's forwarded requests, as a write must be.
                if conn != NOT_A_CONNECTION && !self.ens().forwarding.admit((from, conn), seq) {
                    self.send_relay(from, Relay::Rejected { session_id, cxid });
                    return;
                }
                let waiter = ReadWaiter::Remote {
                    to: from,
                    session_id,
                    cxid,
                };
                if cxid == REVALIDATE_CXID {
                    // A commit point from before a close under way would let the learner resume
                    // the session from a table without the close.
                    self.confirm_behind_close(session_id, waiter);
                } else {
                    self.confirm_read(waiter);
                }
            }
            Relay::Forward {
                session_id, cxid, ..
            }
            | Relay::Sync {
                session_id, cxid, ..
            } => {
                // Not the leader (any more): the sender will find out by election.
                self.send_relay(from, Relay::Rejected { session_id, cxid });
            }
            Relay::CreateSession { session_id, .. } => self.send_relay(
                from,
                Relay::Rejected {
                    session_id,
                    cxid: 0,
                },
            ),
            Relay::Touch { .. } => {}
            Relay::Synced {
                session_id,
                cxid: REVALIDATE_CXID,
                zxid,
            } => {
                let waiting = self.ens().revalidating.remove(&session_id);
                for (conn, req) in waiting.unwrap_or_default() {
                    self.ens().revalidated.push((zxid, conn, req));
                }
                self.finish_revalidations();
            }
            Relay::Synced {
                session_id,
                cxid,
                zxid,
            } => {
                if let Some((conn, q)) = self.ens().forwarded_syncs.remove(&(session_id, cxid)) {
                    self.ens().syncs.push((zxid, conn, q));
                    self.answer_syncs();
                }
            }
            Relay::Rejected {
                session_id,
                cxid: REVALIDATE_CXID,
            } => {
                let waiting = self.ens().revalidating.remove(&session_id);
                for (conn, _) in waiting.unwrap_or_default() {
                    self.close_conn(conn);
                }
            }
            Relay::Rejected { session_id, cxid } => {
                if let Some((conn, _)) = self.ens().forwarded_syncs.remove(&(session_id, cxid)) {
                    self.close_conn(conn);
                } else if let Some(plan) = self
                    .take_plan(session_id, cxid, false)
                    .or_else(|| self.take_plan(session_id, cxid, true))
                {
                    self.reject(plan);
                }
            }
        }
    }

    fn send_relay(&mut self, to: PeerId, r: Relay) {
        self.ens().net.send(to, PeerMsg::Relay(r));
    }

    /// The leader prepares a follower's write against its own state and proposes it.
    fn on_forward(&mut self, from: PeerId, fwd: Relay) {
        let Relay::Forward {
            session_id,
            cxid,
            conn,
            seq,
            ids,
            op,
            body,
        } = fwd
        else {
            unreachable!("only forwarded requests come here")
        };
        let now = self.now_ms();
        let req = Request::decode(op, &mut Reader::new(&body));
        let in_order = self.ens().forwarding.admit((from, conn), seq);
        if !in_order {
            tracing::debug!(
                peer = from,
                conn,
                seq,
                "a forwarded request out of order (an earlier one was lost, or one was refused): \
                 refusing it"
            );
        }
        let ok = match req {
            _ if !in_order => false,
            Ok(req) if self.sessions.touch(session_id, now) => {
                let (txn, changes) = self.prepare(session_id, &ids, &req);
                self.propose(session_id, cxid, txn, Some(changes), Plan::Internal)
            }
            Ok(_) => false,
            Err(e) => {
                tracing::warn!(peer = from, error = %e, "forwarded request does not decode");
                false
            }
        };
        if !ok {
            self.ens().forwarding.refuse((from, conn));
            self.send_relay(from, Relay::Rejected { session_id, cxid });
        }
    }

    /// A learner's half tick: tell the leader which sessions are connected here.
    pub(crate) fn relay_touches(&mut self) {
        let Some(leader) = self.ensemble.as_ref().and_then(Ensemble::leader_to_forward) else {
            return;
        };
        let touched = std::mem::take(&mut self.ens().touched);
        let sessions: Vec<i64> = touched.into_iter().collect();
        for chunk in sessions.chunks(crate::quorum::relay::MAX_TOUCHES) {
            self.send_relay(
                leader,
                Relay::Touch {
                    sessions: chunk.to_vec(),
                },
            );
        }
    }
}

/// Removes and returns the entries waiting for a zxid this member has applied (`<= last`).
fn take_due<T>(waiting: &mut Vec<(i64, ConnId, T)>, last: i64) -> Vec<(i64, ConnId, T)> {
    if waiting.iter().all(|(z, _, _)| *z > last) {
        return Vec::new();
    }
    let (due, rest) = std::mem::take(waiting)
        .into_iter()
        .partition(|(z, _, _)| *z <= last);
    *waiting = rest;
    due
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_requests_are_admitted_in_order_only_and_a_gap_refuses_the_rest() {
        let mut f = ForwardOrder::default();
        assert!(f.admit((2, 7), 0));
        assert!(f.admit((2, 7), 1));
        assert!(f.admit((3, 7), 0), "connections are per learner");
        // Request 2 was lost on the way: 3 is refused, and so is everything after it.
        assert!(!f.admit((2, 7), 3));
        assert!(!f.admit((2, 7), 2));
        assert!(!f.admit((2, 7), 4));
        // A connection that starts past 0 lost its first request.
        assert!(!f.admit((2, 8), 1));
        // A refused connection stays refused.
        assert!(f.admit((3, 9), 0));
        f.refuse((3, 9));
        assert!(!f.admit((3, 9), 1));
    }

    #[test]
    fn forwarding_order_forgets_the_least_recently_used_connection_first() {
        let mut f = ForwardOrder::default();
        f.refuse((2, 7));
        assert!(f.admit((1, 1), 0));
        let mut busy = 1;
        for conn in 0..(3 * MAX_FORWARDING_CONNS as u64) {
            assert!(f.admit((3, conn), 0));
            // A long-lived connection that keeps forwarding is never forgotten.
            if conn % 1000 == 0 {
                assert!(f.admit((1, 1), busy), "a connection in use was forgotten");
                busy += 1;
            }
        }
        assert_eq!(f.next.len(), MAX_FORWARDING_CONNS);
        assert!(f.uses.len() <= 2 * MAX_FORWARDING_CONNS + 1);
        // The idle ones went first: (2, 7)'s refusal is forgotten (its request 0 would be
        // admitted again), and an old idle connection's next request is refused.
        assert!(f.admit((2, 7), 0));
        assert!(
            !f.admit((3, 0), 1),
            "forgotten: only a first request is admitted"
        );
        assert!(f.admit((3, 3 * MAX_FORWARDING_CONNS as u64 - 1), 1));
    }

    #[test]
    fn due_entries_are_taken_in_order_and_the_rest_stay() {
        let mut waiting = vec![(5, 1, 'a'), (9, 2, 'b'), (3, 3, 'c')];
        let due = take_due(&mut waiting, 5);
        assert_eq!(due, vec![(5, 1, 'a'), (3, 3, 'c')]);
        assert_eq!(waiting, vec![(9, 2, 'b')]);
        assert!(take_due(&mut waiting, 8).is_empty());
    }
}
