//! The leader: discovery (a new epoch), synchronization of each learner, and broadcast.
//!
//! ```text
//! elected ─ FOLLOWERINFO from a quorum ─▶ epoch = max(accepted)+1, persist acceptedEpoch
//!         ─ durable ─▶ LEADERINFO to each learner
//!         ─ fresh ACKEPOCH from a quorum ─▶ persist currentEpoch; sync each learner:
//!                                           DIFF | TRUNC | SNAP, PROPOSALs, COMMIT, NEWLEADER
//!         ─ NEWLEADER ACK from a quorum (own: currentEpoch durable) ─▶ established:
//!                                           commit the initial history, UPTODATE, propose
//! ```
//! A learner that connects later goes through the same steps on its own; it is in the
//! forwarding set (it gets every later PROPOSAL and COMMIT, in order) from the moment its
//! synchronization is sent, so nothing committed after that can pass it by.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::error::ProposeError;
use super::message::{AckEpoch, Entry, Packet, PeerId};
use super::node::{check_seq, send_packet, Action, Core, Envelope, Next, RoleChange, SeqCheck};
use super::read_index::ReadIndex;
use super::sync::{self, SyncPlan};
use super::zxid::{Zxid, MAX_EPOCH};

/// How far a learner's session has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum HandlerState {
    /// FOLLOWERINFO received; the epoch is not chosen (or not durable) yet.
    Connected,
    /// LEADERINFO sent.
    LeaderInfoSent,
    /// ACKEPOCH received; synchronization waits for a quorum of them.
    EpochAcked,
    /// Synchronization and NEWLEADER sent: in the forwarding set.
    Synced,
    /// NEWLEADER acknowledged: its history is durable, its ACKs count.
    NewLeaderAcked,
    /// UPTODATE sent.
    UpToDate,
}

/// The leader's end of one learner's session.
#[derive(Debug)]
pub(crate) struct Handler {
    pub(crate) session: u64,
    pub(crate) send_seq: u64,
    pub(crate) recv_seq: u64,
    pub(crate) observer: bool,
    pub(crate) state: HandlerState,
    pub(crate) ack_epoch: Option<AckEpoch>,
    pub(crate) last_heard: u64,
    /// The leader's last zxid when the synchronization was sent.
    pub(crate) synced_to: Zxid,
    /// Durable on the learner through this zxid (once NEWLEADER is acknowledged).
    pub(crate) matched: Zxid,
    /// The newest leadership-confirmation round the learner echoed.
    pub(crate) echoed: u64,
}

impl Handler {
    /// Acknowledged NEWLEADER: its history is durable and it is in step with the leader.
    pub(crate) fn is_synced(&self) -> bool {
        matches!(
            self.state,
            HandlerState::NewLeaderAcked | HandlerState::UpToDate
        )
    }
}

#[derive(Debug)]
pub(crate) struct Leader {
    pub(crate) started: u64,
    /// (current epoch, last zxid) when elected. A learner that reports more than this in a fresh
    /// ACKEPOCH holds history this server lacks: the election went wrong, and it must not lead.
    pub(crate) summary: (u32, Zxid),
    /// The new epoch, once a quorum's FOLLOWERINFO fixed it.
    pub(crate) epoch: Option<u32>,
    /// The store operation making the accepted epoch durable, while pending.
    pub(crate) epoch_op: Option<u64>,
    /// Accepted epochs from FOLLOWERINFO, of voters (this server's own included).
    pub(crate) infos: BTreeMap<PeerId, u32>,
    /// Voters whose ACKEPOCH counts for this epoch (this server once its epoch is durable).
    pub(crate) epoch_ackers: BTreeSet<PeerId>,
    /// A quorum acknowledged the epoch: the current epoch is set and learners are synchronized.
    pub(crate) syncing: bool,
    /// The store operation making the current epoch durable, while pending.
    pub(crate) current_op: Option<u64>,
    /// Voters that acknowledged NEWLEADER (this server once its history and epoch are durable).
    pub(crate) newleader_ackers: BTreeSet<PeerId>,
    /// A quorum acknowledged NEWLEADER: the initial history is committed, proposals accepted.
    pub(crate) established: bool,
    /// The epoch's zxid counter ran out; stand down at the next tick.
    pub(crate) exhausted: bool,
    pub(crate) learners: BTreeMap<PeerId, Handler>,
    /// The last session of each learner that this leader ended (dropped, or replaced by a newer
    /// one). A late copy of its FOLLOWERINFO must not bring it back: the learner has moved on,
    /// and the resurrected session would be out of step with it.
    pub(crate) closed: BTreeMap<PeerId, u64>,
    /// When to PING the learners next.
    pub(crate) next_ping: u64,
    /// Reads waiting for a quorum to confirm this leader (see [`ReadIndex`]).
    pub(crate) reads: ReadIndex,
}

/// Sends on a learner's session; only once the epoch is chosen does the leader send anything.
fn send(core: &mut Core, to: PeerId, epoch: u32, h: &mut Handler, packet: Packet) {
    send_packet(core, to, (h.session, epoch), &mut h.send_seq, packet);
}

impl Leader {
    pub(crate) fn start(core: &mut Core) -> (Leader, Next) {
        let mut infos = BTreeMap::new();
        infos.insert(core.id(), core.accepted_epoch);
        let mut leader = Leader {
            started: core.now,
            summary: (core.current_epoch, core.log.last()),
            epoch: None,
            epoch_op: None,
            infos,
            epoch_ackers: BTreeSet::new(),
            syncing: false,
            current_op: None,
            newleader_ackers: BTreeSet::new(),
            established: false,
            exhausted: false,
            learners: BTreeMap::new(),
            closed: BTreeMap::new(),
            next_ping: core.now,
            reads: ReadIndex::default(),
        };
        let next = leader.check_epoch_quorum(core);
        (leader, next)
    }

    pub(crate) fn on_packet(&mut self, core: &mut Core, env: Envelope, packet: Packet) -> Next {
        let from = env.from;
        if let Packet::FollowerInfo { accepted_epoch } | Packet::ObserverInfo { accepted_epoch } =
            packet
        {
            if env.seq == 1 && env.epoch == 0 {
                let observer = matches!(packet, Packet::ObserverInfo { .. });
                return self.on_learner_info(core, from, env.session, observer, accepted_epoch);
            }
        }
        let Some(h) = self.learners.get_mut(&from) else {
            return Next::Stay;
        };
        // A packet of another session, or of this session with another leader instance on this
        // server (another epoch), is not part of this stream: drop it without counting it.
        if h.session != env.session || self.epoch != Some(env.epoch) {
            return Next::Stay;
        }
        match check_seq(&mut h.recv_seq, env.seq) {
            SeqCheck::Next => {}
            SeqCheck::Duplicate => return Next::Stay,
            SeqCheck::Gap => {
                tracing::debug!(
                    server = core.id(),
                    learner = from,
                    "lost a packet; dropping"
                );
                self.drop_learner(from);
                return Next::Stay;
            }
        }
        h.last_heard = core.now;
        match packet {
            Packet::AckEpoch(info) => self.on_ack_epoch(core, from, info),
            Packet::Ack { zxid } => {
                self.on_ack(core, from, zxid);
                Next::Stay
            }
            Packet::Ping { round } => {
                h.echoed = h.echoed.max(round);
                self.check_reads(core);
                Next::Stay
            }
            other => {
                core.anomaly(format!("learner {from} sent {other:?}"));
                self.drop_learner(from);
                Next::Stay
            }
        }
    }

    /// Ends a learner's session; it will open a new one.
    fn drop_learner(&mut self, p: PeerId) {
        if let Some(h) = self.learners.remove(&p) {
            self.closed.insert(p, h.session);
        }
    }

    /// FOLLOWERINFO / OBSERVERINFO: a learner opens a session.
    fn on_learner_info(
        &mut self,
        core: &mut Core,
        from: PeerId,
        session: u64,
        observer: bool,
        accepted_epoch: u32,
    ) -> Next {
        if observer == core.cfg.is_voter(from) {
            tracing::warn!(
                server = core.id(),
                learner = from,
                observer,
                "learner's role disagrees with the configuration; ignoring it"
            );
            return Next::Stay;
        }
        if self
            .learners
            .get(&from)
            .is_some_and(|h| h.session == session)
            || self.closed.get(&from) == Some(&session)
        {
            return Next::Stay;
        }
        if let Some(epoch) = self.epoch {
            if accepted_epoch > epoch {
                // The learner promised a later epoch (to a would-be leader that never got
                // established) and may not acknowledge this one; while a quorum vouches for this
                // leader it cannot elect another either, and would loop forever. Standing down
                // lets the next election choose an epoch above its promise.
                return Next::Looking(format!(
                    "learner {from} has accepted epoch {accepted_epoch}, above this leader's {epoch}"
                ));
            }
        }
        let mut h = Handler {
            session,
            send_seq: 1,
            recv_seq: 2,
            observer,
            state: HandlerState::Connected,
            ack_epoch: None,
            last_heard: core.now,
            synced_to: Zxid::ZERO,
            matched: Zxid::ZERO,
            echoed: 0,
        };
        if let (Some(epoch), None) = (self.epoch, self.epoch_op) {
            send(core, from, epoch, &mut h, Packet::LeaderInfo { epoch });
            h.state = HandlerState::LeaderInfoSent;
        }
        if let Some(old) = self.learners.insert(from, h) {
            self.closed.insert(from, old.session);
        }
        if !observer && self.epoch.is_none() {
            self.infos.insert(from, accepted_epoch);
            return self.check_epoch_quorum(core);
        }
        Next::Stay
    }

    /// A quorum of voters connected: choose the epoch and make it durable before telling anyone.
    fn check_epoch_quorum(&mut self, core: &mut Core) -> Next {
        if self.epoch.is_some() || !core.cfg.is_quorum(self.infos.keys()) {
            return Next::Stay;
        }
        let max = self.infos.values().copied().max().unwrap_or(0);
        if max >= MAX_EPOCH {
            return Next::Looking(format!("no epoch after {max} is available"));
        }
        let epoch = max + 1;
        core.accepted_epoch = epoch;
        self.epoch = Some(epoch);
        self.epoch_op = Some(core.store_epochs());
        Next::Stay
    }

    fn on_ack_epoch(&mut self, core: &mut Core, from: PeerId, info: AckEpoch) -> Next {
        let Some(h) = self.learners.get_mut(&from) else {
            return Next::Stay;
        };
        if h.state != HandlerState::LeaderInfoSent {
            core.anomaly(format!("ACKEPOCH from {from} in state {:?}", h.state));
            self.drop_learner(from);
            return Next::Stay;
        }
        let counts = !h.observer && info.fresh && !self.syncing;
        if counts && (info.current_epoch, info.last_zxid) > self.summary {
            return Next::Looking(format!(
                "learner {from} is ahead of this leader: epoch {}, zxid {}",
                info.current_epoch, info.last_zxid
            ));
        }
        h.state = HandlerState::EpochAcked;
        h.ack_epoch = Some(info);
        if counts {
            self.epoch_ackers.insert(from);
        }
        if self.syncing {
            self.sync_learner(core, from);
            Next::Stay
        } else {
            self.check_sync_quorum(core)
        }
    }

    /// A quorum acknowledged the epoch: adopt it and synchronize everyone who has.
    fn check_sync_quorum(&mut self, core: &mut Core) -> Next {
        let Some(epoch) = self.epoch else {
            return Next::Stay;
        };
        if self.syncing || self.epoch_op.is_some() || !core.cfg.is_quorum(&self.epoch_ackers) {
            return Next::Stay;
        }
        self.syncing = true;
        core.current_epoch = epoch;
        self.current_op = Some(core.store_epochs());
        let waiting: Vec<PeerId> = self
            .learners
            .iter()
            .filter(|(_, h)| h.state == HandlerState::EpochAcked)
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            self.sync_learner(core, p);
        }
        Next::Stay
    }

    /// Sends a learner what it lacks, then NEWLEADER; from here it is in the forwarding set.
    fn sync_learner(&mut self, core: &mut Core, p: PeerId) {
        let (Some(epoch), Some(h)) = (self.epoch, self.learners.get_mut(&p)) else {
            return;
        };
        let Some(info) = h.ack_epoch.take() else {
            return;
        };
        let plan = sync::plan(&core.log, &info);
        tracing::debug!(server = core.id(), learner = p, ?plan, learner_last = %info.last_zxid, "synchronizing");
        let from = match plan {
            SyncPlan::Diff { after } => {
                send(core, p, epoch, h, Packet::Diff { after });
                after
            }
            SyncPlan::Trunc { after } => {
                send(core, p, epoch, h, Packet::Trunc { after });
                after
            }
            SyncPlan::Snap => {
                let zxid = core.log.committed();
                let seq = h.send_seq;
                h.send_seq += 1;
                core.out.push(Action::SendSnapshot {
                    to: p,
                    session: h.session,
                    epoch,
                    seq,
                    zxid,
                });
                zxid
            }
        };
        for entry in core.log.range(from, core.log.last()) {
            send(core, p, epoch, h, Packet::Proposal(entry));
        }
        // Tell it what is committed whenever it knows less: its log may already hold everything
        // (a DIFF with nothing to send) without its knowing that it is committed.
        let committed = core.log.committed();
        if committed > info.committed_zxid {
            send(core, p, epoch, h, Packet::Commit { zxid: committed });
        }
        send(core, p, epoch, h, Packet::NewLeader { epoch });
        h.synced_to = core.log.last();
        h.state = HandlerState::Synced;
    }

    fn on_ack(&mut self, core: &mut Core, from: PeerId, zxid: Zxid) {
        let (Some(epoch), Some(h)) = (self.epoch, self.learners.get_mut(&from)) else {
            return;
        };
        if zxid.counter() == 0 {
            if h.state != HandlerState::Synced || zxid.epoch() != epoch {
                core.anomaly(format!(
                    "NEWLEADER ACK {zxid} from {from} in state {:?}",
                    h.state
                ));
                self.drop_learner(from);
                return;
            }
            h.state = HandlerState::NewLeaderAcked;
            h.matched = h.synced_to;
            if !h.observer {
                self.newleader_ackers.insert(from);
            }
            if self.established {
                send(core, from, epoch, h, Packet::UpToDate);
                h.state = HandlerState::UpToDate;
            } else {
                self.check_established(core);
            }
        } else {
            if h.observer || h.state < HandlerState::NewLeaderAcked || zxid > core.log.last() {
                core.anomaly(format!(
                    "ACK {zxid} from {from} in state {:?} (last {})",
                    h.state,
                    core.log.last()
                ));
                self.drop_learner(from);
                return;
            }
            h.matched = h.matched.max(zxid);
        }
        self.try_commit(core);
    }

    pub(crate) fn on_persisted(&mut self, core: &mut Core) -> Next {
        if let Some(op) = self.epoch_op {
            if core.is_done(op) {
                self.epoch_op = None;
                self.epoch_ackers.insert(core.id());
                let epoch = self.epoch.expect("an epoch op implies an epoch");
                for (p, h) in self.learners.iter_mut() {
                    if h.state == HandlerState::Connected {
                        send(core, *p, epoch, h, Packet::LeaderInfo { epoch });
                        h.state = HandlerState::LeaderInfoSent;
                    }
                }
                if let Next::Looking(why) = self.check_sync_quorum(core) {
                    return Next::Looking(why);
                }
            }
        }
        if let Some(op) = self.current_op {
            if core.is_done(op) {
                self.current_op = None;
                self.newleader_ackers.insert(core.id());
                self.check_established(core);
            }
        }
        self.try_commit(core);
        Next::Stay
    }

    /// A quorum holds the initial history durably under the new epoch: commit it and serve.
    fn check_established(&mut self, core: &mut Core) {
        let Some(epoch) = self.epoch else {
            return;
        };
        if self.established
            || !self.syncing
            || self.current_op.is_some()
            || !core.cfg.is_quorum(&self.newleader_ackers)
        {
            return;
        }
        self.established = true;
        core.commit_to(core.log.last());
        let committed = core.log.committed();
        for (p, h) in self.learners.iter_mut() {
            if h.state >= HandlerState::Synced {
                send(core, *p, epoch, h, Packet::Commit { zxid: committed });
            }
            if h.state == HandlerState::NewLeaderAcked {
                send(core, *p, epoch, h, Packet::UpToDate);
                h.state = HandlerState::UpToDate;
            }
        }
        tracing::info!(server = core.id(), epoch, zxid = %committed, "established as leader");
        core.out.push(Action::Role(RoleChange::Leading { epoch }));
    }

    /// The newest zxid durable on a quorum of voters (this server by its own fsync).
    pub(crate) fn quorum_match(&self, core: &Core) -> Zxid {
        let mut matches: Vec<Zxid> = core
            .cfg
            .voters
            .iter()
            .map(|&v| {
                if v == core.id() {
                    core.durable
                } else {
                    self.learners
                        .get(&v)
                        .filter(|h| h.state >= HandlerState::NewLeaderAcked)
                        .map_or(Zxid::ZERO, |h| h.matched)
                }
            })
            .collect();
        matches.sort_unstable_by(|a, b| b.cmp(a));
        matches[core.cfg.voters.len() / 2]
    }

    /// Commits whatever a quorum now holds, in order, and tells the learners.
    fn try_commit(&mut self, core: &mut Core) {
        let Some(epoch) = self.epoch.filter(|_| self.established) else {
            return;
        };
        let q = self.quorum_match(core);
        let before = core.log.committed();
        if q <= before {
            return;
        }
        let newly = core.log.range(before, q);
        core.commit_to(q);
        for (p, h) in self.learners.iter_mut() {
            if h.state < HandlerState::Synced {
                continue;
            }
            if h.observer {
                for e in &newly {
                    send(core, *p, epoch, h, Packet::Inform(e.clone()));
                }
            } else {
                send(core, *p, epoch, h, Packet::Commit { zxid: q });
            }
        }
    }

    pub(crate) fn next_zxid(&self, core: &Core) -> Result<Zxid, ProposeError> {
        let zxid = self.zxid_after(core, 0)?;
        let outstanding = core.log.count_after(core.log.committed());
        if outstanding >= core.cfg.max_outstanding_proposals {
            return Err(ProposeError::Busy { outstanding });
        }
        Ok(zxid)
    }

    /// The zxid of the proposal `queued` places after the next one, whatever the window.
    pub(crate) fn zxid_after(&self, core: &Core, queued: u64) -> Result<Zxid, ProposeError> {
        let Some(epoch) = self.epoch.filter(|_| self.established) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        let last = core.log.last();
        let next = if last.epoch() == epoch {
            u64::from(last.counter()) + 1
        } else {
            1
        };
        let counter = next.saturating_add(queued);
        if self.exhausted || counter > u64::from(core.cfg.max_zxid_counter) {
            return Err(ProposeError::CounterExhausted { epoch });
        }
        Ok(Zxid::new(epoch, counter as u32))
    }

    pub(crate) fn propose(
        &mut self,
        core: &mut Core,
        payload: Bytes,
    ) -> Result<Zxid, ProposeError> {
        let zxid = match self.next_zxid(core) {
            Ok(z) => z,
            Err(e) => {
                if let ProposeError::CounterExhausted { .. } = e {
                    self.exhausted = true;
                }
                return Err(e);
            }
        };
        let entry = Entry { zxid, payload };
        let appended = core.append(entry.clone());
        assert!(appended, "a leader's next zxid always follows its log");
        for (p, h) in self.learners.iter_mut() {
            if !h.observer && h.state >= HandlerState::Synced {
                send(core, *p, zxid.epoch(), h, Packet::Proposal(entry.clone()));
            }
        }
        Ok(zxid)
    }

    /// PINGs every learner whose session has an epoch, with the current read round.
    fn ping(&mut self, core: &mut Core, epoch: u32) {
        let round = self.reads.round();
        for (p, h) in self.learners.iter_mut() {
            if h.state >= HandlerState::LeaderInfoSent {
                send(core, *p, epoch, h, Packet::Ping { round });
            }
        }
    }

    /// Read `id` waits for a quorum to confirm this leader; [`Action::ReadConfirmed`] names it
    /// once one has (at once when this server alone is a quorum).
    pub(crate) fn confirm_leadership(
        &mut self,
        core: &mut Core,
        id: u64,
    ) -> Result<(), ProposeError> {
        let Some(epoch) = self.epoch.filter(|_| self.established) else {
            return Err(ProposeError::NotLeader { leader: None });
        };
        if self.reads.add(id) {
            self.ping(core, epoch);
        }
        self.check_reads(core);
        Ok(())
    }

    /// Confirms the round in flight once a quorum of voters (this server included) echoed it,
    /// and the next one too if it is already echoed (only when this server alone is a quorum).
    fn check_reads(&mut self, core: &mut Core) {
        let Some(epoch) = self.epoch.filter(|_| self.established) else {
            return;
        };
        while self.reads.in_flight() {
            let round = self.reads.round();
            let mut echoed: Vec<PeerId> = vec![core.id()];
            echoed.extend(
                self.learners
                    .iter()
                    .filter(|(_, h)| !h.observer && h.echoed >= round)
                    .map(|(p, _)| *p),
            );
            if !core.cfg.is_quorum(&echoed) {
                return;
            }
            let (ids, again) = self.reads.confirm();
            core.out.push(Action::ReadConfirmed { ids });
            if again {
                self.ping(core, epoch);
            }
        }
    }

    pub(crate) fn on_tick(&mut self, core: &mut Core) -> Next {
        if self.exhausted {
            return Next::Looking("the zxid counter is exhausted; a new epoch is needed".into());
        }
        let now = core.now;
        if let Some(epoch) = self.epoch.filter(|_| now >= self.next_ping) {
            self.next_ping = now + u64::from(core.cfg.heartbeat_ticks);
            self.ping(core, epoch);
        }
        let (sync_limit, init_limit) = (
            u64::from(core.cfg.sync_limit_ticks),
            u64::from(core.cfg.init_limit_ticks),
        );
        let silent: Vec<PeerId> = self
            .learners
            .iter()
            .filter(|(_, h)| {
                let limit = if h.state >= HandlerState::NewLeaderAcked {
                    sync_limit
                } else {
                    init_limit
                };
                now - h.last_heard > limit
            })
            .map(|(p, _)| *p)
            .collect();
        for p in silent {
            self.drop_learner(p);
        }
        if !self.established {
            if now - self.started > init_limit {
                return Next::Looking("not established within initLimit".into());
            }
            return Next::Stay;
        }
        // Every learner left is within its limit: those synchronized heard within syncLimit,
        // those (re)joining within initLimit. Counting the latter too (as ZooKeeper's
        // `LearnerHandler.synced()` does) keeps a leader from standing down each time a follower
        // reconnects; a learner that never finishes is dropped at initLimit.
        let mut alive: Vec<PeerId> = vec![core.id()];
        alive.extend(
            self.learners
                .iter()
                .filter(|(_, h)| !h.observer)
                .map(|(p, _)| *p),
        );
        if !core.cfg.is_quorum(&alive) {
            return Next::Looking("lost contact with a quorum (syncLimit)".into());
        }
        Next::Stay
    }
}
