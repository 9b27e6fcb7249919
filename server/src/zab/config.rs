//! The core's configuration: membership, and every timeout and limit, in ticks and counts.
//!
//! Time is counted in ticks (one [`super::Input::Tick`] each); the runtime decides how long a
//! tick is (ZooKeeper's `tickTime`, or a fraction of it). The defaults follow ZooKeeper's usual
//! settings where it has one.

use std::collections::BTreeSet;

use super::error::ConfigError;
use super::message::PeerId;

/// Default `heartbeat_ticks`: a PING every tick.
pub const DEFAULT_HEARTBEAT_TICKS: u32 = 1;
/// Default `sync_limit_ticks` (ZooKeeper's usual `syncLimit=5`).
pub const DEFAULT_SYNC_LIMIT_TICKS: u32 = 5;
/// Default `init_limit_ticks` (ZooKeeper's usual `initLimit=10`).
pub const DEFAULT_INIT_LIMIT_TICKS: u32 = 10;
/// Default `connect_retry_ticks`.
pub const DEFAULT_CONNECT_RETRY_TICKS: u32 = 5;
/// Default `finalize_wait_ticks`.
pub const DEFAULT_FINALIZE_WAIT_TICKS: u32 = 1;
/// Default `election_resend_min_ticks`.
pub const DEFAULT_ELECTION_RESEND_MIN_TICKS: u32 = 1;
/// Default `election_resend_max_ticks`.
pub const DEFAULT_ELECTION_RESEND_MAX_TICKS: u32 = 16;
/// Default `committed_log_window` (ZooKeeper's `commitLogCount`).
pub const DEFAULT_COMMITTED_LOG_WINDOW: usize = 500;
/// Default `max_outstanding_proposals`.
pub const DEFAULT_MAX_OUTSTANDING_PROPOSALS: usize = 1000;
/// Default `max_zxid_counter`: the whole counter range but its last value, which ZooKeeper
/// reserves to trigger the election (ZOOKEEPER-1277).
pub const DEFAULT_MAX_ZXID_COUNTER: u32 = u32::MAX - 1;

/// The configuration of one server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This server's id.
    pub id: PeerId,
    /// The voting members (ZooKeeper's participants), this server among them unless it observes.
    pub voters: BTreeSet<PeerId>,
    /// The non-voting members: they learn every commit but never count in a quorum or an election.
    pub observers: BTreeSet<PeerId>,
    /// Ticks between a leader's PINGs to each learner.
    pub heartbeat_ticks: u32,
    /// A leader that has not heard from a quorum for this many ticks stands down; a learner that
    /// has not heard from its leader for this many ticks goes back to electing (ZooKeeper's
    /// `syncLimit`).
    pub sync_limit_ticks: u32,
    /// The time a learner has to connect and synchronize, and a new leader to be established
    /// (ZooKeeper's `initLimit`).
    pub init_limit_ticks: u32,
    /// A learner whose leader has not answered its FOLLOWERINFO for this many ticks opens a
    /// fresh session (within its `init_limit_ticks`): a leader answers each session once, so a
    /// lost LEADERINFO would otherwise leave the learner waiting out initLimit.
    pub connect_retry_ticks: u32,
    /// Once a quorum backs the vote, wait this many ticks for a better vote before settling
    /// (ZooKeeper's `finalizeWait`).
    pub finalize_wait_ticks: u32,
    /// First interval between resent election notifications; it doubles while nothing changes.
    pub election_resend_min_ticks: u32,
    /// Largest interval between resent election notifications.
    pub election_resend_max_ticks: u32,
    /// Committed proposals kept in memory to synchronize a learner by DIFF; a learner further
    /// behind gets a SNAP (ZooKeeper's `commitLogCount`).
    pub committed_log_window: usize,
    /// Proposals a leader lets wait for their commit before refusing more (back-pressure).
    pub max_outstanding_proposals: usize,
    /// The largest zxid counter a leader uses; past it, it stands down so that an election starts
    /// a new epoch (ZOOKEEPER-1277). Tests set it low to exercise that path.
    pub max_zxid_counter: u32,
    /// Seed of the core's randomness (leader session ids). It must differ between runs of the same
    /// server (the runtime draws it from the OS at start), or a restarted server could reuse a
    /// session id that a peer still holds.
    pub seed: u64,
}

impl Config {
    /// A configuration with the defaults.
    pub fn new(id: PeerId, voters: BTreeSet<PeerId>, observers: BTreeSet<PeerId>) -> Config {
        Config {
            id,
            voters,
            observers,
            heartbeat_ticks: DEFAULT_HEARTBEAT_TICKS,
            sync_limit_ticks: DEFAULT_SYNC_LIMIT_TICKS,
            init_limit_ticks: DEFAULT_INIT_LIMIT_TICKS,
            connect_retry_ticks: DEFAULT_CONNECT_RETRY_TICKS,
            finalize_wait_ticks: DEFAULT_FINALIZE_WAIT_TICKS,
            election_resend_min_ticks: DEFAULT_ELECTION_RESEND_MIN_TICKS,
            election_resend_max_ticks: DEFAULT_ELECTION_RESEND_MAX_TICKS,
            committed_log_window: DEFAULT_COMMITTED_LOG_WINDOW,
            max_outstanding_proposals: DEFAULT_MAX_OUTSTANDING_PROPOSALS,
            max_zxid_counter: DEFAULT_MAX_ZXID_COUNTER,
            seed: 0,
        }
    }

    /// Checks membership and limits.
    ///
    /// # Errors
    /// The first problem found.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 || self.voters.contains(&0) || self.observers.contains(&0) {
            return Err(ConfigError::ZeroId);
        }
        if self.voters.is_empty() {
            return Err(ConfigError::NoVoters);
        }
        if let Some(&both) = self.voters.intersection(&self.observers).next() {
            return Err(ConfigError::VoterAndObserver(both));
        }
        if !self.is_member(self.id) {
            return Err(ConfigError::NotAMember(self.id));
        }
        let limit = |field, value: u64, ok: bool, why| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Limit { field, value, why })
            }
        };
        limit(
            "heartbeat_ticks",
            self.heartbeat_ticks.into(),
            self.heartbeat_ticks >= 1,
            "must be at least 1",
        )?;
        limit(
            "sync_limit_ticks",
            self.sync_limit_ticks.into(),
            self.sync_limit_ticks > self.heartbeat_ticks,
            "must exceed heartbeat_ticks, or a healthy peer looks silent between heartbeats",
        )?;
        limit(
            "init_limit_ticks",
            self.init_limit_ticks.into(),
            self.init_limit_ticks >= self.sync_limit_ticks,
            "must be at least sync_limit_ticks",
        )?;
        limit(
            "connect_retry_ticks",
            self.connect_retry_ticks.into(),
            self.connect_retry_ticks > self.heartbeat_ticks,
            "must exceed heartbeat_ticks, or a learner gives up on FOLLOWERINFOs just resent",
        )?;
        limit(
            "election_resend_min_ticks",
            self.election_resend_min_ticks.into(),
            self.election_resend_min_ticks >= 1,
            "must be at least 1",
        )?;
        limit(
            "election_resend_max_ticks",
            self.election_resend_max_ticks.into(),
            self.election_resend_max_ticks >= self.election_resend_min_ticks,
            "must be at least election_resend_min_ticks",
        )?;
        limit(
            "max_outstanding_proposals",
            self.max_outstanding_proposals as u64,
            self.max_outstanding_proposals >= 1,
            "must be at least 1",
        )?;
        limit(
            "max_zxid_counter",
            self.max_zxid_counter.into(),
            self.max_zxid_counter >= 1 && self.max_zxid_counter < u32::MAX,
            "must be in 1..=0xfffffffe",
        )?;
        Ok(())
    }

    /// Whether `id` votes.
    pub fn is_voter(&self, id: PeerId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a voter or an observer.
    pub fn is_member(&self, id: PeerId) -> bool {
        self.voters.contains(&id) || self.observers.contains(&id)
    }

    /// Every member but this server.
    pub fn peers(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.voters
            .iter()
            .chain(self.observers.iter())
            .copied()
            .filter(move |&p| p != self.id)
    }

    /// Whether `ids` includes a majority of the voters (ids that are not voters do not count).
    pub fn is_quorum<'a>(&self, ids: impl IntoIterator<Item = &'a PeerId>) -> bool {
        let votes = ids.into_iter().filter(|id| self.is_voter(**id)).count();
        votes * 2 > self.voters.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(ids: &[PeerId]) -> BTreeSet<PeerId> {
        ids.iter().copied().collect()
    }

    #[test]
    fn validation() {
        let ok = Config::new(1, set(&[1, 2, 3]), set(&[4]));
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(
            Config::new(4, set(&[1, 2, 3]), set(&[4])).validate(),
            Ok(())
        );
        assert_eq!(
            Config::new(0, set(&[1]), set(&[])).validate(),
            Err(ConfigError::ZeroId)
        );
        assert_eq!(
            Config::new(1, set(&[]), set(&[1])).validate(),
            Err(ConfigError::NoVoters)
        );
        assert_eq!(
            Config::new(1, set(&[1, 2]), set(&[2])).validate(),
            Err(ConfigError::VoterAndObserver(2))
        );
        assert_eq!(
            Config::new(5, set(&[1, 2]), set(&[])).validate(),
            Err(ConfigError::NotAMember(5))
        );
        let mut c = ok.clone();
        c.sync_limit_ticks = 1;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Limit {
                field: "sync_limit_ticks",
                ..
            })
        ));
        let mut c = ok.clone();
        c.init_limit_ticks = 2;
        assert!(matches!(
            c.validate(),
            Err(ConfigError::Limit {
                field: "init_limit_ticks",
                ..
            })
        ));
        let mut c = ok;
        c.max_zxid_counter = u32::MAX;
        assert!(c.validate().is_err());
    }

    #[test]
    fn quorums_count_voters_only() {
        let c = Config::new(1, set(&[1, 2, 3, 4, 5]), set(&[6, 7]));
        assert!(!c.is_quorum(&set(&[1, 2])));
        assert!(!c.is_quorum(&set(&[1, 2, 6, 7])));
        assert!(c.is_quorum(&set(&[1, 2, 3])));
        assert_eq!(c.peers().collect::<Vec<_>>(), [2, 3, 4, 5, 6, 7]);
    }
}
