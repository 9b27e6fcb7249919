//! The messages servers exchange: election notifications, and the packets of a leader–learner
//! session (discovery, synchronization, broadcast). [`super::wire`] encodes them.
//!
//! Packet names and type codes follow ZooKeeper's `Leader` packet types where one exists.

use bytes::Bytes;

use super::zxid::Zxid;

/// A server id (ZooKeeper's `myid`). 0 is not a valid id: a vote for 0 is no vote.
pub type PeerId = u64;

/// A proposal: a zxid and the opaque transaction it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its zxid.
    pub zxid: Zxid,
    /// The transaction, opaque to the protocol.
    pub payload: Bytes,
}

/// What a server says it is doing, in election notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ServerState {
    /// Electing.
    Looking,
    /// Following a leader.
    Following,
    /// Leading.
    Leading,
    /// Observing a leader (non-voting).
    Observing,
}

/// A vote in fast leader election: a candidate and the state it was proposed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vote {
    /// The proposed leader (0: no vote, which an observer starts with).
    pub leader: PeerId,
    /// The candidate's last zxid.
    pub zxid: Zxid,
    /// The candidate's current epoch.
    pub peer_epoch: u32,
}

impl Vote {
    /// No candidate: loses to every real vote.
    pub const NONE: Vote = Vote {
        leader: 0,
        zxid: Zxid::ZERO,
        peer_epoch: 0,
    };

    /// FastLeaderElection's total order: larger `(peer_epoch, zxid, leader)` wins. The epoch comes
    /// first so that a server which adopted a newer leader's history beats one with a longer log
    /// from an older epoch.
    pub fn beats(&self, other: &Vote) -> bool {
        (self.peer_epoch, self.zxid, self.leader) > (other.peer_epoch, other.zxid, other.leader)
    }
}

/// An election notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// The sender's state.
    pub state: ServerState,
    /// The sender's vote (while looking) or the leader it settled on.
    pub vote: Vote,
    /// The sender's election round (ZooKeeper's `logicalclock`).
    pub election_epoch: u64,
}

/// A learner's reply to LEADERINFO: its state, for the leader to choose how to synchronize it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckEpoch {
    /// Whether the learner accepted the new epoch just now. A learner that had already accepted
    /// this epoch (from another would-be leader of the same epoch, or earlier) still reports its
    /// state, but does not count towards the leader's quorum: each server backs at most one leader
    /// per epoch (ZooKeeper sends `-1` as the epoch for this).
    pub fresh: bool,
    /// The learner's current epoch.
    pub current_epoch: u32,
    /// The learner's last zxid.
    pub last_zxid: Zxid,
    /// The newest zxid the learner knows is committed (everything up to it is in every later
    /// leader's history).
    pub committed_zxid: Zxid,
    /// For each epoch that has entries after `committed_zxid` in the learner's log (and the epoch
    /// of `committed_zxid` itself), the learner's last zxid in that epoch, ascending. With this the
    /// leader finds the exact point where the two histories part, so TRUNC never removes more
    /// than the learner's entries the leader does not have (ZOOKEEPER-1154/1156).
    pub epoch_ends: Vec<Zxid>,
}

/// A packet of a leader–learner session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// Learner → leader, opening a session: a follower and its accepted epoch.
    FollowerInfo {
        /// The follower's accepted epoch.
        accepted_epoch: u32,
    },
    /// Learner → leader, opening a session: an observer and its accepted epoch.
    ObserverInfo {
        /// The observer's accepted epoch.
        accepted_epoch: u32,
    },
    /// Leader → learner: the new epoch.
    LeaderInfo {
        /// The epoch the leader will lead.
        epoch: u32,
    },
    /// Learner → leader: the reply to LEADERINFO.
    AckEpoch(AckEpoch),
    /// Leader → learner: your log is a prefix of mine up to `after`; proposals follow.
    Diff {
        /// The learner's last zxid, where the proposals continue.
        after: Zxid,
    },
    /// Leader → learner: drop everything after `after` (proposals I do not have); proposals follow.
    Trunc {
        /// The last zxid the two histories share.
        after: Zxid,
    },
    /// Leader → learner: replace your state with this snapshot of everything up to `zxid`.
    Snap {
        /// Every transaction up to it is in the image.
        zxid: Zxid,
        /// The image, opaque to the protocol (the runtime makes and installs it).
        snapshot: Bytes,
    },
    /// Leader → follower: a proposal (during synchronization, or broadcast).
    Proposal(Entry),
    /// Leader → learner: everything up to `zxid` is committed.
    Commit {
        /// The newest committed zxid.
        zxid: Zxid,
    },
    /// Leader → learner: end of synchronization; adopt epoch `epoch` once the history is durable.
    NewLeader {
        /// The leader's epoch.
        epoch: u32,
    },
    /// Follower → leader: everything up to `zxid` is durable in my log. With counter 0 it
    /// acknowledges NEWLEADER of epoch `zxid.epoch()` (as in ZooKeeper).
    Ack {
        /// Durable through this zxid, or the NEWLEADER epoch with counter 0.
        zxid: Zxid,
    },
    /// Leader → learner: the leader is established; start serving.
    UpToDate,
    /// Leader → observer: a committed proposal (proposal and commit in one).
    Inform(Entry),
    /// Heartbeat, both ways. The leader's carries its latest leadership-confirmation round
    /// ([`super::Node::confirm_leadership`]); a learner answers each with a PING echoing it.
    Ping {
        /// The round.
        round: u64,
    },
}

/// A message between two servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Fast leader election.
    Notification(Notification),
    /// A packet of the leader–learner session `session` (chosen by the learner when it connects)
    /// with the leader instance of epoch `epoch`.
    ///
    /// `seq` numbers the packets of each direction from 1, so that a receiver sees exactly the
    /// in-order, gap-free stream TCP would give it: a repeated packet is dropped and a missing one
    /// ends the session. Over TCP neither ever happens; over the simulator's network both do.
    ///
    /// `epoch` ties the session to one leader instance. A server may lead several times, each
    /// time with a new epoch (one above any it accepted), and a late copy of a learner's
    /// FOLLOWERINFO can open the same session id with a newer instance while packets of the older
    /// one are still in flight; without the epoch the two instances' packets would share one
    /// numbering. FOLLOWERINFO and OBSERVERINFO carry 0; the learner binds to the epoch of the
    /// first LEADERINFO it takes, and both sides drop packets of any other epoch unseen.
    Peer {
        /// The session.
        session: u64,
        /// The leader epoch the session is bound to (0 before LEADERINFO).
        epoch: u32,
        /// The packet's number in its direction of the session.
        seq: u64,
        /// The packet.
        packet: Packet,
    },
}
