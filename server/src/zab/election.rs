//! Fast leader election (ZooKeeper's `FastLeaderElection`), as a state machine.
//!
//! A looking server votes for itself (its current epoch, last zxid and id) and tells every voter.
//! It adopts any better vote it hears (larger `(peer_epoch, zxid, id)`, [`Vote::beats`]) and tells
//! everyone again. Each round has a number (`logical_clock`); a notification from a later round
//! restarts ours in it, one from an earlier round gets our vote back so the sender catches up.
//! Once a quorum of voters backs our vote, we wait `finalize_wait_ticks` for a better one, then
//! settle. Servers that already settled (following or leading) answer a looking server with the
//! leader they settled on; a quorum of those, with the leader itself saying it leads, lets a
//! latecomer join without a new round.
//!
//! Observers never propose themselves and their notifications are never counted; they adopt
//! voters' votes and settle the same way, as observers.
//!
//! A voter whose recovery cut a non-empty tail off its log **abstains** until it has synchronized
//! with a leader (`DurableState::tail_cut`): its log may lack writes it acknowledged, so its vote
//! could help elect a leader without a committed write. Its notifications always carry
//! [`Vote::NONE`], which backs no one (and which no one adopts), as a looking observer's do; it
//! never adopts a vote, never settles on itself, and never settles from looking votes. It settles
//! only the way a latecomer joins: on a leader that a quorum of voters reports following or leading
//! (its own report never matches, so that quorum is of others), with the leader saying it leads.
//! When it is needed for a quorum (three voters, one of them down), nobody is elected until
//! another voter is back: the ensemble waits rather than risk the write.

use std::collections::BTreeMap;

use super::config::Config;
use super::message::{Message, Notification, PeerId, ServerState, Vote};
use super::node::Core;

#[derive(Debug)]
pub(crate) struct Election {
    /// The round (ZooKeeper's `logicalclock`).
    pub(crate) logical_clock: u64,
    /// The vote this server proposes.
    pub(crate) proposed: Vote,
    /// Votes heard in this round from voters (this server's own included), with their senders'
    /// states.
    pub(crate) recv: BTreeMap<PeerId, (Vote, ServerState)>,
    /// Votes of voters that have settled (following or leading), from any round.
    pub(crate) out_of_election: BTreeMap<PeerId, Notification>,
    /// When to settle, if a quorum still backs `proposed` then.
    pub(crate) decide_at: Option<u64>,
    /// When to resend notifications.
    pub(crate) next_send: u64,
    /// The current resend interval (it doubles up to the maximum).
    pub(crate) interval: u32,
    /// The vote settled on and its round, while not looking.
    pub(crate) decided: Option<(Vote, u64)>,
}

/// ZooKeeper's `Vote.equals`: when either side is still looking the whole vote must match; two
/// settled servers agree if they name the same leader with the same epoch (their zxids move on).
fn same_vote(a: (Vote, ServerState), b: (Vote, ServerState)) -> bool {
    if a.1 == ServerState::Looking || b.1 == ServerState::Looking {
        a.0 == b.0
    } else {
        a.0.leader == b.0.leader && a.0.peer_epoch == b.0.peer_epoch
    }
}

impl Election {
    pub(crate) fn new(cfg: &Config) -> Election {
        Election {
            logical_clock: 0,
            proposed: Vote::NONE,
            recv: BTreeMap::new(),
            out_of_election: BTreeMap::new(),
            decide_at: None,
            next_send: 0,
            interval: cfg.election_resend_min_ticks,
            decided: None,
        }
    }

    /// Starts a new round.
    pub(crate) fn start(&mut self, core: &mut Core) {
        self.logical_clock += 1;
        self.recv.clear();
        self.out_of_election.clear();
        self.decided = None;
        let mine = Self::own_proposal(core);
        self.set_proposal(core, mine);
    }

    /// The vote this server starts a round with: its own, or none for an observer or an abstaining
    /// voter.
    fn own_proposal(core: &Core) -> Vote {
        if core.is_voter() && !core.abstaining() {
            core.own_vote()
        } else {
            Vote::NONE
        }
    }

    /// Proposes `vote`, tells every voter, and resets the resend back-off.
    fn set_proposal(&mut self, core: &mut Core, vote: Vote) {
        self.proposed = vote;
        self.decide_at = None;
        if core.is_voter() {
            self.recv
                .insert(core.id(), (self.proposed, ServerState::Looking));
        }
        self.interval = core.cfg.election_resend_min_ticks;
        self.send_all(core);
        self.update_deadline(core);
    }

    /// Starts the finalize wait when a quorum backs the proposal (a single voter backs itself),
    /// and cancels it when none does.
    fn update_deadline(&mut self, core: &Core) {
        if self.proposal_has_quorum(core) {
            if self.decide_at.is_none() {
                self.decide_at = Some(core.now + u64::from(core.cfg.finalize_wait_ticks));
            }
        } else {
            self.decide_at = None;
        }
    }

    fn send_all(&mut self, core: &mut Core) {
        let n = self.looking_notification();
        // Only voters are told: observers ask, and learn from the answers.
        let voters: Vec<PeerId> = core
            .cfg
            .voters
            .iter()
            .copied()
            .filter(|&v| v != core.id())
            .collect();
        for v in voters {
            core.send(v, Message::Notification(n));
        }
        self.next_send = core.now + u64::from(self.interval);
    }

    fn looking_notification(&self) -> Notification {
        Notification {
            state: ServerState::Looking,
            vote: self.proposed,
            election_epoch: self.logical_clock,
        }
    }

    /// Whether `candidate` should replace `current`: only a voter can win, and an abstaining
    /// server backs no one.
    fn wins(core: &Core, candidate: &Vote, current: &Vote) -> bool {
        !core.abstaining() && core.cfg.is_voter(candidate.leader) && candidate.beats(current)
    }

    /// Whether a quorum of voters in `votes` agree with `vote`.
    fn quorum_for<'a>(
        core: &Core,
        votes: impl Iterator<Item = (&'a PeerId, (Vote, ServerState))>,
        vote: (Vote, ServerState),
    ) -> bool {
        let backers: Vec<PeerId> = votes
            .filter(|(_, v)| same_vote(*v, vote))
            .map(|(p, _)| *p)
            .collect();
        core.cfg.is_quorum(&backers)
    }

    fn proposal_has_quorum(&self, core: &Core) -> bool {
        // A vote for nobody (an observer's, or an abstaining voter's) is never settled on, even
        // when the votes for nobody of abstaining voters add up to a quorum.
        if !core.cfg.is_voter(self.proposed.leader) {
            return false;
        }
        Self::quorum_for(
            core,
            self.recv.iter().map(|(p, v)| (p, *v)),
            (self.proposed, ServerState::Looking),
        )
    }

    /// A notification while looking; returns the settled vote and round, if this settles it.
    pub(crate) fn on_notification(
        &mut self,
        core: &mut Core,
        from: PeerId,
        n: Notification,
    ) -> Option<(Vote, u64)> {
        if !core.cfg.is_voter(from) {
            // An observer asking: answer as a voter; its vote never counts. Only a looking
            // observer is asking: one that observes is itself answering us, and answering that
            // back would start an endless exchange (which duplicated messages multiply).
            if core.is_voter() && n.state == ServerState::Looking {
                core.send(from, Message::Notification(self.looking_notification()));
            }
            return None;
        }
        match n.state {
            ServerState::Looking => {
                if n.election_epoch > self.logical_clock {
                    self.logical_clock = n.election_epoch;
                    self.recv.clear();
                    let mine = Self::own_proposal(core);
                    let best = if Self::wins(core, &n.vote, &mine) {
                        n.vote
                    } else {
                        mine
                    };
                    self.set_proposal(core, best);
                } else if n.election_epoch < self.logical_clock {
                    // A straggler: our vote brings it into this round. (Observers do not answer:
                    // two servers answering each other's stale rounds would never stop.)
                    if core.is_voter() {
                        core.send(from, Message::Notification(self.looking_notification()));
                    }
                    return None;
                } else if Self::wins(core, &n.vote, &self.proposed) {
                    self.set_proposal(core, n.vote);
                }
                self.recv.insert(from, (n.vote, ServerState::Looking));
                self.update_deadline(core);
                None
            }
            ServerState::Following | ServerState::Leading => {
                if !core.cfg.is_voter(n.vote.leader) {
                    // An abstaining server that follows: it backs no one.
                    if n.election_epoch == self.logical_clock {
                        self.recv.insert(from, (n.vote, n.state));
                    }
                    self.out_of_election.remove(&from);
                    return None;
                }
                let settled = (n.vote, n.state);
                if n.election_epoch == self.logical_clock {
                    self.recv.insert(from, settled);
                    let in_round =
                        Self::quorum_for(core, self.recv.iter().map(|(p, v)| (p, *v)), settled);
                    if in_round
                        && self.leader_confirmed_in_round(core, n.vote.leader, n.election_epoch)
                    {
                        return Some((n.vote, n.election_epoch));
                    }
                }
                self.out_of_election.insert(from, n);
                let joined = Self::quorum_for(
                    core,
                    self.out_of_election
                        .iter()
                        .map(|(p, m)| (p, (m.vote, m.state))),
                    settled,
                );
                if joined
                    && self.leader_confirmed_out_of_election(core, n.vote.leader, n.election_epoch)
                {
                    self.logical_clock = n.election_epoch;
                    return Some((n.vote, n.election_epoch));
                }
                None
            }
            ServerState::Observing => None,
        }
    }

    /// ZooKeeper's `checkLeader` for the votes of this round: the leader must itself say it
    /// leads, or be this server in this very round.
    fn leader_confirmed_in_round(&self, core: &Core, leader: PeerId, election_epoch: u64) -> bool {
        if leader == core.id() {
            // An abstaining server never leads, whatever stale votes for it say.
            return !core.abstaining() && self.logical_clock == election_epoch;
        }
        self.recv
            .get(&leader)
            .is_some_and(|(_, s)| *s == ServerState::Leading)
    }

    /// `checkLeader` for settled servers' votes: the leader must itself say it leads (a quorum of
    /// followers of a leader that has since died must not pull a latecomer in).
    fn leader_confirmed_out_of_election(
        &self,
        core: &Core,
        leader: PeerId,
        election_epoch: u64,
    ) -> bool {
        if leader == core.id() {
            return !core.abstaining() && self.logical_clock == election_epoch;
        }
        self.out_of_election
            .get(&leader)
            .is_some_and(|n| n.state == ServerState::Leading)
    }

    /// A tick while looking: settle after the finalize wait, resend with back-off.
    pub(crate) fn on_tick(&mut self, core: &mut Core) -> Option<(Vote, u64)> {
        if let Some(at) = self.decide_at {
            if core.now >= at {
                if self.proposal_has_quorum(core) {
                    return Some((self.proposed, self.logical_clock));
                }
                self.decide_at = None;
            }
        }
        if core.now >= self.next_send {
            self.interval = (self.interval * 2).min(core.cfg.election_resend_max_ticks);
            self.send_all(core);
        }
        None
    }

    /// Answers a looking server with the vote this server settled on (as the node reports it).
    pub(crate) fn reply(
        &self,
        core: &mut Core,
        to: PeerId,
        state: ServerState,
        reported: Option<(Vote, u64)>,
    ) {
        let (vote, election_epoch) = reported.unwrap_or((self.proposed, self.logical_clock));
        core.send(
            to,
            Message::Notification(Notification {
                state,
                vote,
                election_epoch,
            }),
        );
    }
}
