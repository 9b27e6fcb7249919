//! The errors of the consensus core. Each says what the caller can do about it.

use thiserror::Error;

use super::message::PeerId;
use super::zxid::Zxid;

/// A configuration the core refuses to run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Server id 0 is reserved (it means "no vote").
    #[error("server id 0 is not allowed")]
    ZeroId,
    /// The ensemble has no voting members.
    #[error("the ensemble has no voting members")]
    NoVoters,
    /// This server is not a member of the ensemble.
    #[error("server {0} is neither a voter nor an observer")]
    NotAMember(PeerId),
    /// A server is listed as both a voter and an observer.
    #[error("server {0} is both a voter and an observer")]
    VoterAndObserver(PeerId),
    /// A limit is out of range.
    #[error("{field} = {value}: {why}")]
    Limit {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        why: &'static str,
    },
}

/// The durable state handed to [`super::Node::new`] is inconsistent: the data directory is damaged
/// or was written by something else. Starting anyway could break promises made to other servers.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DurableStateError {
    /// The current epoch is above the accepted epoch.
    #[error("current epoch {current} is above the accepted epoch {accepted}")]
    EpochsOutOfOrder {
        /// Accepted epoch.
        accepted: u32,
        /// Current epoch.
        current: u32,
    },
    /// The log has a hole, or goes backwards.
    #[error("log entry {zxid} does not follow {prev}")]
    Hole {
        /// The entry before.
        prev: Zxid,
        /// The entry that does not follow it.
        zxid: Zxid,
    },
    /// The log holds an entry of an epoch this server never accepted.
    #[error("log entry {zxid} is from an epoch after the accepted epoch {accepted}")]
    EntryFromTheFuture {
        /// The entry.
        zxid: Zxid,
        /// The accepted epoch.
        accepted: u32,
    },
}

/// Why [`super::Node::new`] refused to start.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Inconsistent durable state.
    #[error(transparent)]
    DurableState(#[from] DurableStateError),
}

/// Why a proposal was refused. Nothing was proposed; the caller may retry elsewhere or later.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProposeError {
    /// This server is not the established leader. `leader` is the leader it follows, if any:
    /// forward the request there.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this server follows, if it knows one.
        leader: Option<PeerId>,
    },
    /// Too many proposals are waiting to commit (`max_outstanding_proposals`): back off.
    #[error("{outstanding} proposals are waiting to commit")]
    Busy {
        /// How many.
        outstanding: usize,
    },
    /// The epoch's zxid counter is used up (ZOOKEEPER-1277): the leader will stand down at its
    /// next tick so that an election starts a new epoch. Retry with the next leader.
    #[error("the zxid counter of epoch {epoch} is exhausted; a new election follows")]
    CounterExhausted {
        /// The epoch.
        epoch: u32,
    },
}

impl ProposeError {
    /// Whether retrying (after a delay, or with another leader) can succeed. All current causes
    /// are transient; this is here so callers do not match on variants to decide.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// A peer message that could not be decoded. The runtime drops the connection it came on.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame ends before a field does.
    #[error("truncated at byte {at}: {need} bytes needed, {left} left")]
    Truncated {
        /// Offset of the field.
        at: usize,
        /// Bytes it needs.
        need: usize,
        /// Bytes left.
        left: usize,
    },
    /// An unknown message type.
    #[error("unknown message type {0}")]
    UnknownType(u8),
    /// A field holds a value outside its range.
    #[error("bad {field}: {value}")]
    BadValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// A byte string longer than allowed.
    #[error("a byte string of {len} bytes (at most {max})")]
    TooLong {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Bytes after the message.
    #[error("{0} bytes after the message")]
    TrailingBytes(usize),
}

/// A broken invariant of one server's state, found by [`super::Node::check_invariants`]. This is a
/// bug in the core: tests and the simulator fail on it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("server {node}: {what}")]
pub struct InvariantViolation {
    /// The server.
    pub node: PeerId,
    /// What is broken.
    pub what: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync + 'static>() {}

    #[test]
    fn errors_are_send_and_sync() {
        send_sync::<ConfigError>();
        send_sync::<DurableStateError>();
        send_sync::<NodeError>();
        send_sync::<ProposeError>();
        send_sync::<DecodeError>();
        send_sync::<InvariantViolation>();
    }
}
