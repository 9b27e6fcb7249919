//! [`Node`]: one server's ZAB state machine. Inputs in, actions out; no I/O, no clock.

use std::collections::VecDeque;

use bytes::Bytes;

use super::config::Config;
use super::election::Election;
use super::error::{NodeError, ProposeError};
use super::leader::Leader;
use super::learner::Learner;
use super::log::Log;
use super::message::{Entry, Message, Notification, Packet, PeerId, ServerState, Vote};
use super::rng::Rng;
use super::zxid::Zxid;

/// What a server has on disk when it starts: the runtime reads it (epoch files, snapshot, log)
/// and hands it over.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurableState {
    /// The `acceptedEpoch` file.
    pub accepted_epoch: u32,
    /// The `currentEpoch` file.
    pub current_epoch: u32,
    /// The zxid of the state the runtime loaded (its snapshot; 0 for none). Everything up to it
    /// is committed and applied. It must not be past the true commit point, so the runtime passes
    /// its snapshot's zxid, not the end of its log: the log's tail may hold proposals that are
    /// never committed, and the core learns which are from the leader.
    pub snapshot_zxid: Zxid,
    /// The log records after `snapshot_zxid`, in order.
    pub entries: Vec<Entry>,
    /// Recovery cut a non-empty tail off the log, at this start or an earlier one, and the server
    /// has not synchronized with a leader since (the runtime's `tailCut` marker, written before
    /// the cut). The cut may have removed records this server acknowledged (a disk that damaged
    /// or lost them after they were synced), so its log may lack committed writes: until it has
    /// synchronized, it **abstains** from elections. It announces a vote for nobody
    /// ([`Vote::NONE`]) in every notification, never proposes or settles on itself, and follows
    /// only a leader that a quorum of *other* voters follows, with that leader saying it leads.
    /// Once it is up to date with that leader (UPTODATE, after its NEWLEADER acknowledgement
    /// waited for the synchronized history to be durable), the core issues
    /// [`StoreOp::ClearTailCut`] and it votes again. A server that is the only voter has no one
    /// to synchronize from: it warns and clears the mark at once.
    pub tail_cut: bool,
}

/// An event for [`Node::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// One tick of time passed.
    Tick,
    /// A message arrived from a peer.
    Message {
        /// The sender, as the transport authenticated it.
        from: PeerId,
        /// The message.
        msg: Message,
    },
    /// Every [`Action::Store`] up to and including `seq` is durable.
    Persisted {
        /// The last durable store operation.
        seq: u64,
    },
    /// The transport lost its connection from `peer` (ZooKeeper's learner sees its socket to the
    /// leader close). A learner whose leader this is goes back to electing at once instead of
    /// waiting out `sync_limit_ticks`; anything else ignores it. Only liveness depends on it.
    Disconnected {
        /// The peer.
        peer: PeerId,
    },
}

/// A store operation. The runtime executes them one after another in `seq` order, each completely
/// (fsynced) before the next starts; it may fold consecutive appends into one fsync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOp {
    /// Append these entries to the log.
    Append {
        /// The entries, in order; the first follows the log's last record.
        entries: Vec<Entry>,
    },
    /// Remove every log record after `after` (a TRUNC from the leader).
    Truncate {
        /// The last record to keep.
        after: Zxid,
    },
    /// Replace everything with the leader's snapshot at `zxid`: remove log records after `zxid`,
    /// write the snapshot durably, and continue the log after `zxid`.
    InstallSnapshot {
        /// Every transaction up to it is in the image.
        zxid: Zxid,
        /// The image, as the leader's runtime made it.
        snapshot: Bytes,
    },
    /// Write the epoch files (accepted first, then current).
    Epochs {
        /// The accepted epoch.
        accepted: u32,
        /// The current epoch.
        current: u32,
    },
    /// Durably remove the `tailCut` marker ([`DurableState::tail_cut`]): the server synchronized
    /// with a leader, and everything before this operation (the synchronized history, the
    /// current epoch) is durable first, by the order of store operations.
    ClearTailCut,
}

/// A role change the runtime acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Electing: stop serving writes (and, for a strict runtime, reads).
    Looking,
    /// The established leader of `epoch`: proposals are accepted.
    Leading {
        /// The epoch.
        epoch: u32,
    },
    /// Synchronized with `leader` (UPTODATE): serve clients, forward writes to it.
    Following {
        /// The leader.
        leader: PeerId,
        /// Its epoch.
        epoch: u32,
    },
    /// Synchronized with `leader` as an observer.
    Observing {
        /// The leader.
        leader: PeerId,
        /// Its epoch.
        epoch: u32,
    },
}

/// What the runtime must do. Actions are executed in the order returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `msg` to `to`. Messages to one peer must be sent in order; losing one is fine (the
    /// session ends and is re-established).
    Send {
        /// The peer.
        to: PeerId,
        /// The message.
        msg: Message,
    },
    /// Send `Message::Peer { session, epoch, seq, packet: Packet::Snap { zxid, snapshot } }` to
    /// `to`,
    /// where `snapshot` is the runtime's state at `zxid`. That is its applied state at this point:
    /// every [`Action::Commit`] before this action has been applied, none after it.
    SendSnapshot {
        /// The learner.
        to: PeerId,
        /// Session of the message.
        session: u64,
        /// Epoch of the message.
        epoch: u32,
        /// Sequence number of the message.
        seq: u64,
        /// The zxid of the state to send.
        zxid: Zxid,
    },
    /// Perform a store operation, then report it with [`Input::Persisted`].
    Store {
        /// Its sequence number (increasing by one).
        seq: u64,
        /// The operation.
        op: StoreOp,
    },
    /// These entries are committed: apply them, in order. They follow the previous commit (or
    /// the installed snapshot) without a gap. An [`StoreOp::InstallSnapshot`] replaces the applied
    /// state at its place in the action order.
    Commit {
        /// The entries.
        entries: Vec<Entry>,
    },
    /// The server's role changed.
    Role(RoleChange),
    /// The reads [`Node::confirm_leadership`] was asked for with these ids are confirmed: a
    /// quorum recognized this leader after each of them was asked, so every write acknowledged
    /// before they were asked is in this leader's commit point as it stood then. A read not
    /// confirmed when the role changes never is.
    ReadConfirmed {
        /// The reads, in the order they were asked.
        ids: Vec<u64>,
    },
}

/// A summary of a server's state, for status commands and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// This server.
    pub id: PeerId,
    /// What it is doing.
    pub state: ServerState,
    /// The leader it leads or follows (or is connecting to).
    pub leader: Option<PeerId>,
    /// Leading and established, or following and synchronized (UPTODATE received).
    pub serving: bool,
    /// Accepted epoch (in memory; it may not be durable yet).
    pub accepted_epoch: u32,
    /// Current epoch (in memory).
    pub current_epoch: u32,
    /// The last zxid in the log (durable or not).
    pub last_zxid: Zxid,
    /// The last zxid durable in the log.
    pub durable_zxid: Zxid,
    /// The last committed zxid.
    pub committed_zxid: Zxid,
    /// The election round.
    pub election_epoch: u64,
    /// Protocol anomalies seen (see [`Node::anomalies`]).
    pub anomalies: u64,
    /// Abstaining from elections after recovery cut a non-empty tail off its log, until it has
    /// synchronized with a leader ([`DurableState::tail_cut`]).
    pub abstaining: bool,
    /// As leader: learners connected (voters, observers).
    pub learners: (usize, usize),
    /// As leader: learners that acknowledged NEWLEADER and so receive every commit (voters,
    /// observers).
    pub synced_learners: (usize, usize),
}

/// A store operation not yet reported durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PendingOp {
    pub(crate) seq: u64,
    pub(crate) kind: PendingKind,
}

/// What a pending store operation changes once durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PendingKind {
    Append { last: Zxid },
    Truncate { after: Zxid },
    Install { zxid: Zxid },
    Epochs { accepted: u32, current: u32 },
    ClearTailCut,
}

/// The state every role shares: configuration, epochs, the log and its durability, the outbox.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) cfg: Config,
    pub(crate) rng: Rng,
    /// Ticks since start.
    pub(crate) now: u64,
    pub(crate) accepted_epoch: u32,
    pub(crate) current_epoch: u32,
    /// The epochs as the files hold them.
    pub(crate) durable_epochs: (u32, u32),
    pub(crate) log: Log,
    /// The last zxid the log on disk holds, by the operations completed so far.
    pub(crate) disk_last: Zxid,
    /// The log prefix that is durable and matches `log`: nothing after it may be acknowledged.
    pub(crate) durable: Zxid,
    /// The last store sequence number issued.
    pub(crate) store_seq: u64,
    pub(crate) pending: VecDeque<PendingOp>,
    pub(crate) out: Vec<Action>,
    /// Protocol anomalies: packets of an in-order, gap-free session that make no sense. With a
    /// correct leader there are none; the simulator fails on any.
    pub(crate) anomalies: u64,
    pub(crate) last_anomaly: Option<String>,
    /// The log may lack records this server acknowledged, until it synchronizes with a leader
    /// ([`DurableState::tail_cut`]). Cleared (in memory) when [`StoreOp::ClearTailCut`] is issued.
    pub(crate) tail_cut: bool,
}

impl Core {
    pub(crate) fn id(&self) -> PeerId {
        self.cfg.id
    }

    pub(crate) fn is_voter(&self) -> bool {
        self.cfg.is_voter(self.cfg.id)
    }

    /// A voter that must not vote or lead until it has synchronized
    /// ([`DurableState::tail_cut`]). (An observer's votes never count anyway; a sole voter clears
    /// the mark at start.)
    pub(crate) fn abstaining(&self) -> bool {
        self.tail_cut && self.is_voter()
    }

    /// Synchronized with a leader: the log holds the leader's history durably, so any record a
    /// tail cut removed is back if it was committed. Issues the marker's removal, after everything
    /// stored before.
    pub(crate) fn synchronized(&mut self) {
        if self.tail_cut {
            tracing::info!(
                server = self.cfg.id,
                "synchronized with the leader after a tail cut: voting again"
            );
            self.clear_tail_cut();
        }
    }

    fn clear_tail_cut(&mut self) {
        self.tail_cut = false;
        self.store(StoreOp::ClearTailCut);
    }

    pub(crate) fn send(&mut self, to: PeerId, msg: Message) {
        self.out.push(Action::Send { to, msg });
    }

    /// Issues a store operation and remembers what it changes once durable.
    pub(crate) fn store(&mut self, op: StoreOp) -> u64 {
        self.store_seq += 1;
        let seq = self.store_seq;
        let kind = match &op {
            StoreOp::Append { entries } => PendingKind::Append {
                last: entries.last().map_or(Zxid::ZERO, |e| e.zxid),
            },
            StoreOp::Truncate { after } => PendingKind::Truncate { after: *after },
            StoreOp::InstallSnapshot { zxid, .. } => PendingKind::Install { zxid: *zxid },
            StoreOp::Epochs { accepted, current } => PendingKind::Epochs {
                accepted: *accepted,
                current: *current,
            },
            StoreOp::ClearTailCut => PendingKind::ClearTailCut,
        };
        self.pending.push_back(PendingOp { seq, kind });
        self.out.push(Action::Store { seq, op });
        self.recompute_durable();
        seq
    }

    /// Persists the in-memory epochs.
    pub(crate) fn store_epochs(&mut self) -> u64 {
        self.store(StoreOp::Epochs {
            accepted: self.accepted_epoch,
            current: self.current_epoch,
        })
    }

    /// Whether the store operation `seq` is durable.
    pub(crate) fn is_done(&self, seq: u64) -> bool {
        seq <= self.store_seq && self.pending.front().is_none_or(|p| p.seq > seq)
    }

    /// Appends `entry` to the log and issues its store; false (and nothing done) if it does not
    /// follow the last entry.
    pub(crate) fn append(&mut self, entry: Entry) -> bool {
        if !self.log.append(entry.clone()) {
            return false;
        }
        // Consecutive appends in one step share one store operation: one fsync for the batch.
        if let Some(Action::Store {
            seq,
            op: StoreOp::Append { entries },
        }) = self.out.last_mut()
        {
            if self.pending.back().map(|p| p.seq) == Some(*seq) {
                entries.push(entry.clone());
                if let Some(p) = self.pending.back_mut() {
                    p.kind = PendingKind::Append { last: entry.zxid };
                }
                return true;
            }
        }
        self.store(StoreOp::Append {
            entries: vec![entry],
        });
        true
    }

    /// Commits up to `zxid` (no further than the log goes) and hands the entries to the runtime.
    pub(crate) fn commit_to(&mut self, zxid: Zxid) {
        let upto = zxid.min(self.log.last());
        let entries = self.log.commit_to(upto);
        if !entries.is_empty() {
            self.out.push(Action::Commit { entries });
            self.log.trim(self.cfg.committed_log_window);
        }
    }

    /// Records a protocol anomaly (a bug somewhere; see [`Node::anomalies`]).
    pub(crate) fn anomaly(&mut self, what: String) {
        tracing::warn!(server = self.cfg.id, "protocol anomaly: {what}");
        self.anomalies += 1;
        self.last_anomaly = Some(what);
    }

    /// This server's own vote: its current epoch and last zxid.
    pub(crate) fn own_vote(&self) -> Vote {
        Vote {
            leader: self.cfg.id,
            zxid: self.log.last(),
            peer_epoch: self.current_epoch,
        }
    }

    /// Marks store operations up to `seq` durable.
    fn complete(&mut self, seq: u64) {
        while let Some(op) = self.pending.front().copied() {
            if op.seq > seq {
                break;
            }
            self.pending.pop_front();
            match op.kind {
                PendingKind::Append { last } => self.disk_last = last,
                PendingKind::Truncate { after } => self.disk_last = self.disk_last.min(after),
                PendingKind::Install { zxid } => self.disk_last = zxid,
                PendingKind::Epochs { accepted, current } => {
                    self.durable_epochs = (accepted, current);
                }
                PendingKind::ClearTailCut => {}
            }
        }
        self.recompute_durable();
    }

    /// The durable prefix: what the disk holds, but not past a truncation still pending (the disk
    /// may hold entries there that the log no longer has), nor past the log's end. While a
    /// snapshot install is pending nothing of the new history is durable.
    fn recompute_durable(&mut self) {
        let mut d = self.disk_last.min(self.log.last());
        for op in &self.pending {
            match op.kind {
                PendingKind::Truncate { after } => d = d.min(after),
                PendingKind::Install { .. } => d = Zxid::ZERO,
                PendingKind::Append { .. }
                | PendingKind::Epochs { .. }
                | PendingKind::ClearTailCut => {}
            }
        }
        self.durable = d;
    }
}

/// The role-specific state.
#[derive(Debug)]
pub(crate) enum Role {
    Looking,
    Leading(Box<Leader>),
    Learning(Box<Learner>),
}

/// What a role handler asks the node to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Next {
    Stay,
    /// Go back to electing, for this reason.
    Looking(String),
}

/// One server's ZAB state machine (sans-io).
///
/// Feed it [`Input`]s with [`Node::step`] and proposals with [`Node::propose`]; perform the
/// [`Action`]s it returns, in order. It never blocks, never reads a clock, and never touches a
/// socket or a file: the runtime (or the simulator) does all of that.
#[derive(Debug)]
pub struct Node {
    pub(crate) core: Core,
    pub(crate) election: Election,
    pub(crate) role: Role,
}

impl Node {
    /// A server that starts electing. The first actions (its election notifications) come with
    /// the first [`Node::step`].
    ///
    /// # Errors
    /// A bad configuration, or durable state that contradicts itself (see [`DurableState`]).
    pub fn new(config: Config, durable: DurableState) -> Result<Node, NodeError> {
        use super::error::DurableStateError as E;
        config.validate()?;
        if durable.current_epoch > durable.accepted_epoch {
            return Err(E::EpochsOutOfOrder {
                accepted: durable.accepted_epoch,
                current: durable.current_epoch,
            }
            .into());
        }
        let log = Log::new(durable.snapshot_zxid, durable.entries)?;
        // A server writes an epoch's proposals only after accepting the epoch (the epoch files
        // are written before), so a log entry from a later epoch means the files are not this
        // log's.
        if log.last().epoch() > durable.accepted_epoch {
            return Err(E::EntryFromTheFuture {
                zxid: log.last(),
                accepted: durable.accepted_epoch,
            }
            .into());
        }
        let last = log.last();
        let mut core = Core {
            rng: Rng::new(config.seed ^ config.id.rotate_left(32)),
            cfg: config,
            now: 0,
            accepted_epoch: durable.accepted_epoch,
            current_epoch: durable.current_epoch,
            durable_epochs: (durable.accepted_epoch, durable.current_epoch),
            log,
            disk_last: last,
            durable: last,
            store_seq: 0,
            pending: VecDeque::new(),
            out: Vec::new(),
            anomalies: 0,
            last_anomaly: None,
            tail_cut: durable.tail_cut,
        };
        if core.tail_cut {
            if core.is_voter() && core.cfg.voters.len() == 1 {
                // No one to synchronize from, and no quorum without it: go on with what is left.
                tracing::warn!(
                    server = core.cfg.id,
                    last_zxid = %last,
                    "recovery cut a non-empty tail off the log of the only voter: acknowledged \
                     writes in it may be lost, and there is no other voter to recover them from"
                );
                core.clear_tail_cut();
            } else if core.is_voter() {
                tracing::warn!(
                    server = core.cfg.id,
                    last_zxid = %last,
                    "recovery cut a non-empty tail off the log (now or at an earlier start): \
                     abstaining from elections until synchronized with a leader"
                );
            } else {
                tracing::warn!(
                    server = core.cfg.id,
                    last_zxid = %last,
                    "recovery cut a non-empty tail off the observer's log (now or at an earlier \
                     start): it catches up from the leader"
                );
            }
        }
        let mut election = Election::new(&core.cfg);
        election.start(&mut core);
        Ok(Node {
            core,
            election,
            role: Role::Looking,
        })
    }

    /// This server's id.
    pub fn id(&self) -> PeerId {
        self.core.cfg.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.core.cfg
    }

    /// Handles one input and returns what to do.
    pub fn step(&mut self, input: Input) -> Vec<Action> {
        match input {
            Input::Tick => self.tick(),
            Input::Message { from, msg } => self.message(from, msg),
            Input::Persisted { seq } => self.persisted(seq),
            Input::Disconnected { peer } => {
                if matches!(&self.role, Role::Learning(l) if l.leader == peer) {
                    self.apply(Next::Looking(format!("connection from leader {peer} lost")));
                }
            }
        }
        std::mem::take(&mut self.core.out)
    }

    /// Proposes `payload` (as the established leader), returning its zxid and the actions that
    /// send it and log it. It commits later: an [`Action::Commit`] with it comes from a later step.
    ///
    /// # Errors
    /// Not the established leader, too many proposals outstanding, or the epoch's counter is used
    /// up. Nothing was proposed.
    pub fn propose(&mut self, payload: Bytes) -> Result<(Zxid, Vec<Action>), ProposeError> {
        match &mut self.role {
            Role::Leading(l) => {
                let zxid = l.propose(&mut self.core, payload)?;
                Ok((zxid, std::mem::take(&mut self.core.out)))
            }
            _ => Err(ProposeError::NotLeader {
                leader: self.leader(),
            }),
        }
    }

    /// Read index: asks the established leader to confirm with a quorum round that it still
    /// leads, for read `id` (chosen by the caller). An [`Action::ReadConfirmed`] naming `id`
    /// comes from this step or a later one; the caller answers the read from its commit point as
    /// it was when it asked. Reads asked while a round is in flight share the next round.
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`]: not the established leader. Nothing was asked.
    pub fn confirm_leadership(&mut self, id: u64) -> Result<Vec<Action>, ProposeError> {
        match &mut self.role {
            Role::Leading(l) => {
                l.confirm_leadership(&mut self.core, id)?;
                Ok(std::mem::take(&mut self.core.out))
            }
            _ => Err(ProposeError::NotLeader {
                leader: self.leader(),
            }),
        }
    }

    /// The zxid the next successful [`Node::propose`] will get, for payloads that carry their own
    /// zxid (ZooKeeper's transaction header does).
    ///
    /// # Errors
    /// As [`Node::propose`].
    pub fn next_zxid(&self) -> Result<Zxid, ProposeError> {
        match &self.role {
            Role::Leading(l) => l.next_zxid(&self.core),
            _ => Err(ProposeError::NotLeader {
                leader: self.leader(),
            }),
        }
    }

    /// The zxid the proposal `queued` places after the next successful [`Node::propose`] will
    /// get, if nothing else is proposed meanwhile, whether or not the window
    /// (`max_outstanding_proposals`) has room now: for a caller that numbers transactions it
    /// holds back until there is room.
    ///
    /// # Errors
    /// [`ProposeError::NotLeader`] or [`ProposeError::CounterExhausted`], never `Busy`.
    pub fn zxid_after(&self, queued: u64) -> Result<Zxid, ProposeError> {
        match &self.role {
            Role::Leading(l) => l.zxid_after(&self.core, queued),
            _ => Err(ProposeError::NotLeader {
                leader: self.leader(),
            }),
        }
    }

    /// A summary of the state.
    pub fn status(&self) -> Status {
        let (state, serving) = match &self.role {
            Role::Looking => (ServerState::Looking, false),
            Role::Leading(l) => (ServerState::Leading, l.established),
            Role::Learning(l) => (
                if l.observer {
                    ServerState::Observing
                } else {
                    ServerState::Following
                },
                l.serving(),
            ),
        };
        Status {
            id: self.core.cfg.id,
            state,
            leader: self.leader(),
            serving,
            accepted_epoch: self.core.accepted_epoch,
            current_epoch: self.core.current_epoch,
            last_zxid: self.core.log.last(),
            durable_zxid: self.core.durable,
            committed_zxid: self.core.log.committed(),
            election_epoch: self.election.logical_clock,
            anomalies: self.core.anomalies,
            abstaining: self.core.abstaining(),
            learners: self.learner_counts(false),
            synced_learners: self.learner_counts(true),
        }
    }

    /// As leader: each connected learner and the transactions it has yet to make durable (its
    /// whole history this epoch until it acknowledges NEWLEADER). Empty unless leading.
    pub fn learner_lags(&self) -> Vec<(PeerId, i64)> {
        let Role::Leading(l) = &self.role else {
            return Vec::new();
        };
        let last = self.core.log.last();
        l.learners
            .iter()
            .map(|(&id, h)| {
                let behind = if h.matched.epoch() == last.epoch() {
                    i64::from(last.counter().saturating_sub(h.matched.counter()))
                } else {
                    i64::from(last.counter())
                };
                (id, behind)
            })
            .collect()
    }

    fn learner_counts(&self, synced: bool) -> (usize, usize) {
        let Role::Leading(l) = &self.role else {
            return (0, 0);
        };
        let mut n = (0, 0);
        for h in l.learners.values() {
            if synced && !h.is_synced() {
                continue;
            }
            if h.observer {
                n.1 += 1;
            } else {
                n.0 += 1;
            }
        }
        n
    }

    /// How many protocol anomalies this server has seen, and the last one. An anomaly is a packet
    /// from the leader (or a learner) that arrived in order on its session but makes no sense:
    /// a proposal that leaves a hole, a commit of something never proposed, a TRUNC below the
    /// commit point. The server leaves the session (or drops the learner) and carries on, but a
    /// correct peer never causes one, so tests treat any as a failure.
    pub fn anomalies(&self) -> (u64, Option<&str>) {
        (self.core.anomalies, self.core.last_anomaly.as_deref())
    }

    fn leader(&self) -> Option<PeerId> {
        match &self.role {
            Role::Looking => None,
            Role::Leading(_) => Some(self.core.cfg.id),
            Role::Learning(l) => Some(l.leader),
        }
    }

    fn server_state(&self) -> ServerState {
        self.status().state
    }

    fn tick(&mut self) {
        self.core.now += 1;
        let next = match &mut self.role {
            Role::Looking => {
                if let Some(decision) = self.election.on_tick(&mut self.core) {
                    self.decide(decision.0, decision.1);
                }
                Next::Stay
            }
            Role::Leading(l) => l.on_tick(&mut self.core),
            Role::Learning(l) => l.on_tick(&mut self.core),
        };
        self.apply(next);
    }

    fn message(&mut self, from: PeerId, msg: Message) {
        if from == self.core.cfg.id || !self.core.cfg.is_member(from) {
            return;
        }
        match msg {
            Message::Notification(n) => self.notification(from, n),
            Message::Peer {
                session,
                epoch,
                seq,
                packet,
            } => {
                let env = Envelope {
                    from,
                    session,
                    epoch,
                    seq,
                };
                let opens = matches!(
                    packet,
                    Packet::FollowerInfo { .. } | Packet::ObserverInfo { .. }
                );
                if opens && matches!(self.role, Role::Learning(_)) {
                    // A server that settled on this one as its leader, while this one follows
                    // another: say whom, so that it elects again at once instead of waiting out
                    // initLimit (every member listens on its quorum port, so unlike ZooKeeper's
                    // refused connection, nothing else tells it). A looking server stays silent:
                    // it may be about to lead.
                    let (state, vote) = (self.server_state(), self.reported_vote());
                    self.election.reply(&mut self.core, from, state, vote);
                }
                let next = match &mut self.role {
                    Role::Looking => Next::Stay,
                    Role::Leading(l) => l.on_packet(&mut self.core, env, packet),
                    Role::Learning(l) => l.on_packet(&mut self.core, env, packet),
                };
                self.apply(next);
            }
        }
    }

    fn notification(&mut self, from: PeerId, n: Notification) {
        if let Role::Learning(l) = &self.role {
            let not_leading = matches!(n.state, ServerState::Following | ServerState::Observing);
            if l.leader == from && !l.serving() && not_leading {
                let reason = format!("leader {from} does not lead: it follows {}", n.vote.leader);
                // Elect again, with its answer as the first vote heard.
                self.apply(Next::Looking(reason));
            }
        }
        let state = self.server_state();
        if state == ServerState::Looking {
            if let Some((vote, epoch)) = self.election.on_notification(&mut self.core, from, n) {
                self.decide(vote, epoch);
            }
        } else if n.state == ServerState::Looking {
            // Tell a looking server whom we follow, so it can join us.
            let vote = self.reported_vote();
            self.election.reply(&mut self.core, from, state, vote);
        }
    }

    /// The vote a settled server reports: the one it settled on, with the peer epoch brought up
    /// to the epoch it adopted from that leader (ZooKeeper's `updateElectionVote`,
    /// ZOOKEEPER-1732). Otherwise followers that joined a later instance of the same leader
    /// report different epochs for it than the leader does, a looking server never sees a
    /// quorum agree, and it can never join.
    fn reported_vote(&self) -> Option<(Vote, u64)> {
        let (mut vote, round) = self.election.decided?;
        if self.core.abstaining() {
            // Following, but not synchronized yet: its vote must not help anyone to a quorum.
            return Some((Vote::NONE, round));
        }
        let adopted = match &self.role {
            Role::Looking => false,
            Role::Leading(l) => l.syncing,
            Role::Learning(l) => l.past_newleader(),
        };
        if adopted {
            vote.peer_epoch = self.core.current_epoch;
        }
        Some((vote, round))
    }

    fn persisted(&mut self, seq: u64) {
        if seq > self.core.store_seq {
            self.core.anomaly(format!(
                "runtime reported store {seq} durable, only {} issued",
                self.core.store_seq
            ));
            return;
        }
        self.core.complete(seq);
        let next = match &mut self.role {
            Role::Looking => Next::Stay,
            Role::Leading(l) => l.on_persisted(&mut self.core),
            Role::Learning(l) => l.on_persisted(&mut self.core),
        };
        self.apply(next);
    }

    fn apply(&mut self, next: Next) {
        if let Next::Looking(reason) = next {
            tracing::debug!(server = self.core.cfg.id, %reason, "back to electing");
            self.role = Role::Looking;
            self.core.out.push(Action::Role(RoleChange::Looking));
            self.election.start(&mut self.core);
        }
    }

    /// The election settled on `vote` in round `election_epoch`.
    fn decide(&mut self, vote: Vote, election_epoch: u64) {
        self.election.decided = Some((vote, election_epoch));
        let id = self.core.cfg.id;
        tracing::debug!(
            server = id,
            leader = vote.leader,
            election_epoch,
            "election settled"
        );
        if vote.leader == id {
            let (leader, next) = Leader::start(&mut self.core);
            self.role = Role::Leading(Box::new(leader));
            self.apply(next);
        } else {
            let observer = !self.core.is_voter();
            let learner = Learner::start(&mut self.core, vote.leader, observer);
            self.role = Role::Learning(Box::new(learner));
        }
    }
}

/// Where a session packet came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Envelope {
    pub(crate) from: PeerId,
    pub(crate) session: u64,
    pub(crate) epoch: u32,
    pub(crate) seq: u64,
}

/// Sends `packet` on a session, numbering it.
pub(crate) fn send_packet(
    core: &mut Core,
    to: PeerId,
    (session, epoch): (u64, u32),
    next_seq: &mut u64,
    packet: Packet,
) {
    let seq = *next_seq;
    *next_seq += 1;
    core.send(
        to,
        Message::Peer {
            session,
            epoch,
            seq,
            packet,
        },
    );
}

/// Where a received packet stands in its session's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    /// The next packet: process it.
    Next,
    /// Seen before: drop it.
    Duplicate,
    /// One or more packets before it were lost: the session is broken.
    Gap,
}

/// Checks `seq` against the next expected number, advancing it for the next packet.
pub(crate) fn check_seq(expected: &mut u64, seq: u64) -> SeqCheck {
    use std::cmp::Ordering;
    match seq.cmp(expected) {
        Ordering::Equal => {
            *expected += 1;
            SeqCheck::Next
        }
        Ordering::Less => SeqCheck::Duplicate,
        Ordering::Greater => SeqCheck::Gap,
    }
}
