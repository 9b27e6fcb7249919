//! A learner: a follower (votes, acknowledges proposals) or an observer (learns commits only).
//!
//! ```text
//! FOLLOWERINFO ─ LEADERINFO(e) ─▶ persist acceptedEpoch = e ─ durable ─▶ ACKEPOCH
//!   ─ DIFF | TRUNC | SNAP, PROPOSALs, COMMIT ─▶ logged (store operations, in order)
//!   ─ NEWLEADER(e) ─▶ persist currentEpoch = e (after everything before it) ─ durable ─▶ ACK
//!   ─ UPTODATE ─▶ serving (and, after a tail cut at recovery, clear the tailCut marker);
//!     PROPOSAL ─▶ log ─ durable ─▶ ACK; COMMIT ─▶ apply
//! ```
//! NEWLEADER is acknowledged only once the synchronized history is durable: store operations
//! complete in order, and the current epoch is written after the history (ZOOKEEPER-3911, and the
//! 4643/4646 family: a follower that adopted the epoch before its history was on disk could lose
//! committed transactions in a crash).
//!
//! A packet that makes no sense on an in-order session is an anomaly: the learner leaves the
//! session and elects again, rather than guess.

use super::message::{AckEpoch, Entry, Message, Packet, PeerId};
use super::node::{
    check_seq, send_packet, Action, Core, Envelope, Next, RoleChange, SeqCheck, StoreOp,
};
use super::zxid::{Zxid, MAX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// FOLLOWERINFO sent; waiting for LEADERINFO.
    Connecting,
    /// Persisting the accepted epoch; ACKEPOCH follows.
    AckingEpoch { op: u64 },
    /// ACKEPOCH sent; receiving the synchronization.
    Syncing,
    /// NEWLEADER received at log position `at`; persisting the current epoch.
    NewLeaderPending { op: u64, at: Zxid },
    /// NEWLEADER acknowledged; waiting for UPTODATE.
    Synced,
    /// UPTODATE received.
    Serving,
}

#[derive(Debug)]
pub(crate) struct Learner {
    pub(crate) leader: PeerId,
    pub(crate) observer: bool,
    pub(crate) session: u64,
    pub(crate) send_seq: u64,
    pub(crate) recv_seq: u64,
    pub(crate) started: u64,
    pub(crate) last_heard: u64,
    /// The leader's epoch, from LEADERINFO.
    pub(crate) epoch: Option<u32>,
    pub(crate) phase: Phase,
    /// DIFF, TRUNC or SNAP received.
    pub(crate) sync_started: bool,
    /// The last zxid acknowledged to the leader as durable.
    pub(crate) acked: Zxid,
    /// When to resend FOLLOWERINFO while connecting.
    pub(crate) next_info: u64,
    /// When the current session was opened (`started` is when the first one was).
    pub(crate) session_started: u64,
}

impl Learner {
    pub(crate) fn start(core: &mut Core, leader: PeerId, observer: bool) -> Learner {
        let mut l = Learner {
            leader,
            observer,
            session: 0,
            send_seq: 1,
            recv_seq: 1,
            started: core.now,
            last_heard: core.now,
            epoch: None,
            phase: Phase::Connecting,
            sync_started: false,
            acked: Zxid::ZERO,
            next_info: core.now,
            session_started: core.now,
        };
        l.open_session(core);
        l
    }

    /// Opens a session with the leader under a new random id: FOLLOWERINFO as its packet 1.
    fn open_session(&mut self, core: &mut Core) {
        self.session = core.rng.next_u64();
        self.send_seq = 1;
        self.recv_seq = 1;
        self.session_started = core.now;
        self.next_info = core.now + u64::from(core.cfg.heartbeat_ticks);
        let info = self.info(core);
        self.send(core, info);
    }

    /// FOLLOWERINFO or OBSERVERINFO, the session's first packet.
    fn info(&self, core: &Core) -> Packet {
        let accepted_epoch = core.accepted_epoch;
        if self.observer {
            Packet::ObserverInfo { accepted_epoch }
        } else {
            Packet::FollowerInfo { accepted_epoch }
        }
    }

    pub(crate) fn serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// NEWLEADER has been received (its epoch is this server's current epoch).
    pub(crate) fn past_newleader(&self) -> bool {
        matches!(
            self.phase,
            Phase::NewLeaderPending { .. } | Phase::Synced | Phase::Serving
        )
    }

    fn send(&mut self, core: &mut Core, packet: Packet) {
        let envelope = (self.session, self.epoch.unwrap_or(0));
        send_packet(core, self.leader, envelope, &mut self.send_seq, packet);
    }

    fn anomaly(core: &mut Core, what: String) -> Next {
        core.anomaly(what.clone());
        Next::Looking(what)
    }

    pub(crate) fn on_packet(&mut self, core: &mut Core, env: Envelope, packet: Packet) -> Next {
        if env.from != self.leader || env.session != self.session {
            return Next::Stay;
        }
        match self.epoch {
            // Bound to the leader instance whose LEADERINFO it took: packets of another instance
            // on the same server are not part of this stream, and must not use up its numbers.
            Some(epoch) if env.epoch != epoch => return Next::Stay,
            // Not bound yet: only a LEADERINFO, of the epoch it names, binds the session.
            None if !matches!(packet, Packet::LeaderInfo { epoch } if epoch == env.epoch) => {
                return Next::Stay
            }
            _ => {}
        }
        match check_seq(&mut self.recv_seq, env.seq) {
            SeqCheck::Next => {}
            SeqCheck::Duplicate => return Next::Stay,
            SeqCheck::Gap => return Next::Looking("lost a packet from the leader".into()),
        }
        self.last_heard = core.now;
        match packet {
            Packet::LeaderInfo { epoch } => self.on_leader_info(core, epoch),
            Packet::Diff { after } => self.on_diff(core, after),
            Packet::Trunc { after } => self.on_trunc(core, after),
            Packet::Snap { zxid, snapshot } => {
                if let Some(n) = self.expect_sync_start(core, "SNAP") {
                    return n;
                }
                if zxid < core.log.committed() {
                    return Self::anomaly(
                        core,
                        format!(
                            "SNAP at {zxid}, below the commit point {}",
                            core.log.committed()
                        ),
                    );
                }
                core.log.reset(zxid);
                core.store(StoreOp::InstallSnapshot { zxid, snapshot });
                self.sync_started = true;
                Next::Stay
            }
            Packet::Proposal(entry) => self.on_proposal(core, entry),
            Packet::Commit { zxid } => {
                if !self.sync_started || zxid > core.log.last() {
                    return Self::anomaly(
                        core,
                        format!("COMMIT {zxid} past the last zxid {}", core.log.last()),
                    );
                }
                core.commit_to(zxid);
                Next::Stay
            }
            Packet::NewLeader { epoch } => self.on_newleader(core, epoch),
            Packet::UpToDate => {
                if self.phase != Phase::Synced {
                    return Self::anomaly(core, format!("UPTODATE in phase {:?}", self.phase));
                }
                self.phase = Phase::Serving;
                // Its log holds the leader's history durably (NEWLEADER was acknowledged only
                // then): a tail cut at recovery is made good, so it may vote again.
                core.synchronized();
                let (leader, epoch) = (self.leader, core.current_epoch);
                core.out.push(Action::Role(if self.observer {
                    RoleChange::Observing { leader, epoch }
                } else {
                    RoleChange::Following { leader, epoch }
                }));
                Next::Stay
            }
            Packet::Inform(entry) => self.on_inform(core, entry),
            Packet::Ping { round } => {
                // Echoing the round is what lets the leader confirm a read (read index).
                self.send(core, Packet::Ping { round });
                Next::Stay
            }
            other => Self::anomaly(core, format!("leader sent {other:?}")),
        }
    }

    fn on_leader_info(&mut self, core: &mut Core, epoch: u32) -> Next {
        if self.phase != Phase::Connecting {
            return Self::anomaly(core, format!("LEADERINFO in phase {:?}", self.phase));
        }
        if epoch > MAX_EPOCH {
            // No leader chooses such an epoch; accepting it would leave this server promised to
            // an epoch no later leader could exceed.
            return Self::anomaly(core, format!("LEADERINFO with epoch {epoch}"));
        }
        if epoch < core.accepted_epoch {
            // A leader of an epoch older than one this server promised: not an error of the
            // protocol, just a stale leader. Elect again.
            return Next::Looking(format!(
                "leader's epoch {epoch} is below the accepted epoch {}",
                core.accepted_epoch
            ));
        }
        self.epoch = Some(epoch);
        if epoch > core.accepted_epoch {
            core.accepted_epoch = epoch;
            let op = core.store_epochs();
            self.phase = Phase::AckingEpoch { op };
        } else {
            // Already accepted (from this leader in an earlier session, or another would-be
            // leader of the same epoch): report, but do not count twice.
            self.send_ack_epoch(core, false);
            self.phase = Phase::Syncing;
        }
        Next::Stay
    }

    fn send_ack_epoch(&mut self, core: &mut Core, fresh: bool) {
        let info = AckEpoch {
            fresh,
            current_epoch: core.current_epoch,
            last_zxid: core.log.last(),
            committed_zxid: core.log.committed(),
            epoch_ends: core.log.epoch_ends(),
        };
        self.send(core, Packet::AckEpoch(info));
    }

    /// Checks that a DIFF, TRUNC or SNAP may come now.
    fn expect_sync_start(&self, core: &mut Core, what: &str) -> Option<Next> {
        (self.phase != Phase::Syncing || self.sync_started).then(|| {
            Self::anomaly(
                core,
                format!(
                    "{what} in phase {:?} (sync started: {})",
                    self.phase, self.sync_started
                ),
            )
        })
    }

    fn on_diff(&mut self, core: &mut Core, after: Zxid) -> Next {
        if let Some(n) = self.expect_sync_start(core, "DIFF") {
            return n;
        }
        if after != core.log.last() {
            return Self::anomaly(
                core,
                format!(
                    "DIFF after {after}, but the last zxid is {}",
                    core.log.last()
                ),
            );
        }
        self.sync_started = true;
        Next::Stay
    }

    fn on_trunc(&mut self, core: &mut Core, after: Zxid) -> Next {
        if let Some(n) = self.expect_sync_start(core, "TRUNC") {
            return n;
        }
        // Never below what is committed (ZOOKEEPER-1154/1156), never past the end.
        if after < core.log.committed() || after > core.log.last() {
            return Self::anomaly(
                core,
                format!(
                    "TRUNC to {after} outside [{}, {}]",
                    core.log.committed(),
                    core.log.last()
                ),
            );
        }
        core.log.truncate_after(after);
        core.store(StoreOp::Truncate { after });
        self.sync_started = true;
        Next::Stay
    }

    fn on_proposal(&mut self, core: &mut Core, entry: Entry) -> Next {
        let epoch = self.epoch.unwrap_or(0);
        // During synchronization the leader sends its history (its own epoch's proposals too,
        // when this learner joins an established leader); after NEWLEADER, its new proposals.
        // Observers get no live proposals, only INFORMs.
        let in_sync =
            self.phase == Phase::Syncing && self.sync_started && entry.zxid.epoch() <= epoch;
        let live = !self.observer && self.past_newleader() && entry.zxid.epoch() == epoch;
        if !(in_sync || live) {
            return Self::anomaly(
                core,
                format!("PROPOSAL {} in phase {:?}", entry.zxid, self.phase),
            );
        }
        let zxid = entry.zxid;
        if !core.append(entry) {
            return Self::anomaly(
                core,
                format!("PROPOSAL {zxid} does not follow {}", core.log.last()),
            );
        }
        Next::Stay
    }

    fn on_newleader(&mut self, core: &mut Core, epoch: u32) -> Next {
        if self.phase != Phase::Syncing || !self.sync_started || self.epoch != Some(epoch) {
            return Self::anomaly(core, format!("NEWLEADER {epoch} in phase {:?}", self.phase));
        }
        core.current_epoch = epoch;
        // Queued after every store operation of the synchronization, so it completes only once
        // the whole synchronized history is durable.
        let op = core.store_epochs();
        self.phase = Phase::NewLeaderPending {
            op,
            at: core.log.last(),
        };
        Next::Stay
    }

    fn on_inform(&mut self, core: &mut Core, entry: Entry) -> Next {
        let epoch = self.epoch.unwrap_or(0);
        if !self.observer || !self.past_newleader() || entry.zxid.epoch() > epoch {
            return Self::anomaly(
                core,
                format!("INFORM {} in phase {:?}", entry.zxid, self.phase),
            );
        }
        let zxid = entry.zxid;
        // The synchronization may already have sent it as a proposal.
        if zxid > core.log.last() && !core.append(entry) {
            return Self::anomaly(
                core,
                format!("INFORM {zxid} does not follow {}", core.log.last()),
            );
        }
        core.commit_to(zxid);
        Next::Stay
    }

    pub(crate) fn on_persisted(&mut self, core: &mut Core) -> Next {
        match self.phase {
            Phase::AckingEpoch { op } if core.is_done(op) => {
                self.send_ack_epoch(core, true);
                self.phase = Phase::Syncing;
            }
            Phase::NewLeaderPending { op, at } if core.is_done(op) => {
                let epoch = self.epoch.expect("NEWLEADER implies an epoch");
                self.send(
                    core,
                    Packet::Ack {
                        zxid: Zxid::new(epoch, 0),
                    },
                );
                self.acked = at;
                self.phase = Phase::Synced;
            }
            _ => {}
        }
        let acking = matches!(self.phase, Phase::Synced | Phase::Serving);
        if acking && !self.observer && core.durable > self.acked {
            self.acked = core.durable;
            self.send(core, Packet::Ack { zxid: core.durable });
        }
        Next::Stay
    }

    pub(crate) fn on_tick(&mut self, core: &mut Core) -> Next {
        let now = core.now;
        if self.phase == Phase::Connecting
            && now - self.session_started >= u64::from(core.cfg.connect_retry_ticks)
        {
            // No LEADERINFO yet. The leader may still wait for a quorum, or it answered and the
            // answer was lost: it answers a session once, so only a fresh session (which it
            // takes in place of this one) can get a new answer.
            tracing::debug!(
                server = core.id(),
                leader = self.leader,
                "no LEADERINFO; opening a fresh session"
            );
            self.open_session(core);
        }
        if self.phase == Phase::Connecting && now >= self.next_info {
            self.next_info = now + u64::from(core.cfg.heartbeat_ticks);
            // The leader may not have settled yet when the first one arrived (it drops session
            // packets while electing), or it was lost: send it again, as packet 1 of the same
            // session, which the leader takes once (ZooKeeper's learner retries its connection).
            let info = self.info(core);
            core.send(
                self.leader,
                Message::Peer {
                    session: self.session,
                    epoch: 0,
                    seq: 1,
                    packet: info,
                },
            );
        }
        let silence = if self.serving() {
            core.cfg.sync_limit_ticks
        } else {
            core.cfg.init_limit_ticks
        };
        if now - self.last_heard > u64::from(silence) {
            return Next::Looking(format!("leader {} silent", self.leader));
        }
        if !self.serving() && now - self.started > u64::from(core.cfg.init_limit_ticks) {
            return Next::Looking("not synchronized within initLimit".into());
        }
        Next::Stay
    }
}
