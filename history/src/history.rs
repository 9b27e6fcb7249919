//! The recorded history: what each session asked, when, and what came back.
//!
//! Times are nanoseconds on one monotonic clock since the start of the run; sequence numbers
//! order every invocation and completion of the run on one counter (two events a clock may
//! give the same nanosecond still have distinct sequence numbers).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One client session as the checkers see it: a new session (after an expiry) is a new
/// process, as in Jepsen.
pub type Process = u32;

/// The value a register starts with (the setup writes `"0"` at version 0).
pub const INITIAL_VALUE: u64 = 0;

/// What a register read returned when the data was not one of the decimal values the workload
/// writes (a corrupted or foreign value): no write ever wrote it, so the checkers flag it.
pub const GARBAGE_VALUE: u64 = u64::MAX;

/// An operation as invoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "kebab-case")]
pub enum Call {
    /// `getData` alone: ZooKeeper promises only per-session order (monotonic reads,
    /// read-your-writes) for it, so only the session checker looks at it.
    Read { key: String },
    /// `sync` then `getData`, pipelined on one session: checked as a linearizable read.
    SyncRead { key: String },
    /// `setData` with version -1.
    Write { key: String, value: u64 },
    /// `setData` guarded by the version the session last saw: compare-and-set.
    Cas {
        key: String,
        expected_version: i32,
        value: u64,
    },
    /// `create2` of a persistent sequential child `<parent>/c` whose data is `token` (unique
    /// per invocation, so the final listing tells which invocation made which node).
    CreateSeq { parent: String, token: u64 },
    /// `sync` of the sequential parent, then `exists` of it, pipelined: how many children it
    /// has at one point of the applied history. The sequential creates are a counter's
    /// increments and this is its read (J6).
    Count { parent: String },
    /// `getData` (or `exists`, when `exists`) of a register leaving a one-shot data watch. The
    /// watch's delivery is a [`WatchEvent`] whose `set_by` is this operation's `invoke_seq`.
    WatchRead { key: String, exists: bool },
    /// `create2` of a queue item: a persistent sequential `<queue>/qn-` holding `token`
    /// (Curator's `DistributedQueue` layout).
    Enqueue { queue: String, token: u64 },
    /// A consumer's `delete` of the item `<queue>/<name>`, which it picked as the lowest child
    /// of `getChildren` and read `token` from: the item is consumed when the delete succeeds.
    Take {
        queue: String,
        name: String,
        token: u64,
    },
    /// `sync` of the first key, then one `multiRead` of `getData` on every key, pipelined: a
    /// read of all the keys at one point of the member's applied history.
    PairRead { keys: Vec<String> },
    /// `multi`: check the first key's version, then `setData` of every key to `value`. Every
    /// write of a pair goes through this, so the keys always hold one value and one version.
    PairCas {
        keys: Vec<String>,
        expected_version: i32,
        value: u64,
    },
    /// `create2` of an ephemeral node holding `token`.
    CreateEphemeral { path: String, token: u64 },
    /// `exists` of an ephemeral node this session created.
    OwnEphemeral { path: String },
    /// The harness ended the session on purpose: `close` (`abandon` false), or cut its only
    /// connection and dropped the client so that no close is sent and the ensemble must expire
    /// it (`abandon` true).
    EndSession { abandon: bool },
    /// A new client asking to resume the session of the op's `session_id` (its id and
    /// password): success means the session is alive on the ensemble.
    Resume,
}

impl Call {
    /// The znode the operation touches (for a sequential create, its parent; for a queue
    /// operation, the queue; for a pair, its first key, which names the pair); empty for
    /// [`Call::EndSession`] and [`Call::Resume`].
    pub fn key(&self) -> &str {
        match self {
            Call::Read { key }
            | Call::SyncRead { key }
            | Call::Write { key, .. }
            | Call::Cas { key, .. }
            | Call::WatchRead { key, .. } => key,
            Call::CreateSeq { parent, .. } | Call::Count { parent } => parent,
            Call::Enqueue { queue, .. } | Call::Take { queue, .. } => queue,
            Call::PairRead { keys } | Call::PairCas { keys, .. } => {
                keys.first().map(String::as_str).unwrap_or_default()
            }
            Call::CreateEphemeral { path, .. } | Call::OwnEphemeral { path } => path,
            Call::EndSession { .. } | Call::Resume => "",
        }
    }

    /// A short name of the kind, for figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Call::Read { .. } => "read",
            Call::SyncRead { .. } => "sync-read",
            Call::Write { .. } => "write",
            Call::Cas { .. } => "cas",
            Call::CreateSeq { .. } => "create-seq",
            Call::Count { .. } => "count",
            Call::WatchRead { .. } => "watch-read",
            Call::Enqueue { .. } => "enqueue",
            Call::Take { .. } => "take",
            Call::PairRead { .. } => "pair-read",
            Call::PairCas { .. } => "pair-cas",
            Call::CreateEphemeral { .. } => "create-eph",
            Call::OwnEphemeral { .. } => "own-eph",
            Call::EndSession { .. } => "end-session",
            Call::Resume => "resume",
        }
    }

    /// Whether the operation changes state when it takes effect.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Call::Write { .. }
                | Call::Cas { .. }
                | Call::CreateSeq { .. }
                | Call::Enqueue { .. }
                | Call::Take { .. }
                | Call::PairCas { .. }
                | Call::CreateEphemeral { .. }
                | Call::EndSession { .. }
        )
    }

    /// Whether `reply` is a successful reply this call can give (anything else is a
    /// recording or decoding fault, which the checkers report).
    pub fn fits(&self, reply: &Reply) -> bool {
        match (self, reply) {
            (Call::Read { .. } | Call::SyncRead { .. }, Reply::Read { .. }) => true,
            (Call::WatchRead { exists: false, .. }, Reply::Read { .. }) => true,
            (Call::WatchRead { exists: true, .. }, Reply::Stat { .. }) => true,
            (Call::Write { .. } | Call::Cas { .. }, Reply::Written { .. }) => true,
            (
                Call::CreateSeq { .. } | Call::Enqueue { .. } | Call::CreateEphemeral { .. },
                Reply::Created { .. },
            ) => true,
            (Call::Take { .. }, Reply::Deleted) => true,
            (Call::Count { .. }, Reply::Count { .. }) => true,
            (Call::PairRead { keys }, Reply::Pair { reads }) => reads.len() == keys.len(),
            (Call::PairCas { keys, .. }, Reply::PairWritten { versions, mzxids }) => {
                versions.len() == keys.len() && mzxids.len() == keys.len()
            }
            (Call::OwnEphemeral { .. }, Reply::Exists { .. }) => true,
            (Call::EndSession { .. } | Call::Resume, Reply::Done) => true,
            _ => false,
        }
    }
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "kebab-case")]
pub enum Reply {
    /// A register's value and the Stat's version and mzxid.
    Read {
        value: u64,
        version: i32,
        mzxid: i64,
    },
    /// The Stat after a `setData`.
    Written { version: i32, mzxid: i64 },
    /// The child's name (without the parent), its sequence number (-1 for a node that is not
    /// sequential) and its czxid.
    Created { name: String, seq: i64, czxid: i64 },
    /// `exists` of a register: the Stat's version and mzxid.
    Stat { version: i32, mzxid: i64 },
    /// `exists` of a parent: the Stat's number of children.
    Count { children: i32 },
    /// A `delete` succeeded.
    Deleted,
    /// Each key of a pair as one `multiRead` returned it, in the call's key order.
    Pair { reads: Vec<RegisterState> },
    /// Each key's version and mzxid after a pair's `multi`, in the call's key order.
    PairWritten {
        versions: Vec<i32>,
        mzxids: Vec<i64>,
    },
    /// `exists`: the node's ephemeral owner (0 for a persistent node), or `None` when there is
    /// no node.
    Exists { owner: Option<i64> },
    /// The session was closed or cut off ([`Call::EndSession`]), or resumed ([`Call::Resume`]).
    Done,
}

/// A server's error reply: the operation was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerError {
    BadVersion,
    NoNode,
    NodeExists,
    /// The ensemble refused to resume a session: it has expired or was closed.
    SessionExpired,
    /// Any other error code (with its name, for reading a dump).
    Other {
        code: i32,
        name: String,
    },
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "o", rename_all = "kebab-case")]
pub enum Outcome {
    Ok(Reply),
    /// The server answered with an error: nothing was applied.
    Failed(ServerError),
    /// Nothing was applied and the server did not answer: the request never left the client
    /// (a connection loss before sending, a full queue).
    NotSent {
        reason: String,
    },
    /// Indeterminate: the request may or may not take effect, at any time after its
    /// invocation (connection lost after sending, session expired with it pending, the
    /// harness's own timeout).
    Unknown {
        reason: String,
    },
}

impl Outcome {
    /// Whether a server answered the request (a success or an error reply).
    pub fn replied(&self) -> bool {
        matches!(self, Outcome::Ok(_) | Outcome::Failed(_))
    }
}

/// One operation of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Its index in [`History::ops`].
    pub id: usize,
    pub process: Process,
    pub session_id: i64,
    pub call: Call,
    pub invoke_ns: u64,
    /// `None` exactly when the outcome is [`Outcome::Unknown`]: such an operation may take
    /// effect any time after its invocation, or never.
    pub complete_ns: Option<u64>,
    pub invoke_seq: u64,
    pub complete_seq: Option<u64>,
    pub outcome: Outcome,
}

impl Op {
    /// Whether the outcome is indeterminate.
    pub fn is_unknown(&self) -> bool {
        matches!(self.outcome, Outcome::Unknown { .. })
    }

    /// The successful reply, if any.
    pub fn ok(&self) -> Option<&Reply> {
        match &self.outcome {
            Outcome::Ok(r) => Some(r),
            _ => None,
        }
    }
}

/// A register as one member had it at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterState {
    pub value: u64,
    pub version: i32,
    pub mzxid: i64,
}

/// An ephemeral node as one member had it at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralNode {
    /// Its data ([`GARBAGE_VALUE`] when not a token).
    pub token: u64,
    /// The Stat's `ephemeralOwner` (0: not ephemeral).
    pub owner: i64,
}

/// What one member held at the end, after every fault was healed (read after `sync` through a
/// session bound to that member alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MemberState {
    /// The member's index in the ensemble.
    pub member: usize,
    /// Why the member could not be read, if it could not (then the maps are empty).
    pub error: Option<String>,
    pub registers: BTreeMap<String, RegisterState>,
    /// Per parent: each child's name and the token its data holds ([`crate::history::GARBAGE_VALUE`]
    /// when the data is not a token).
    pub children: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per queue: the items left after the final drain, with their tokens.
    #[serde(default)]
    pub queues: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per ephemeral parent: the nodes left once every workload session had ended.
    #[serde(default)]
    pub ephemerals: BTreeMap<String, BTreeMap<String, EphemeralNode>>,
    /// A digest of the member's whole tree (K1), if it was read.
    #[serde(default)]
    pub tree: Option<TreeDigest>,
}

/// A digest of every node outside `/zookeeper`: path, data and every field of the Stat
/// (K1: members at the same zxid must hold identical trees, not only the nodes the workload
/// reads back). Computed in one harness process, so the hash needs no stability across builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeDigest {
    /// The zxid the tree was read at, when the reader knows it exactly (the simulator); `None`
    /// for a real member read after the workload ended (only session transactions, which
    /// change no node, happen meanwhile).
    pub zxid: Option<i64>,
    pub nodes: usize,
    pub digest: u64,
}

impl TreeDigest {
    /// The digest of `nodes` (path, data, Stat), in any order; `/zookeeper` and below are
    /// skipped (they describe the member, not the replicated tree).
    pub fn of<'a>(
        zxid: Option<i64>,
        nodes: impl IntoIterator<Item = (&'a str, &'a [u8], &'a rookery_proto::records::Stat)>,
    ) -> TreeDigest {
        use std::hash::{DefaultHasher, Hash, Hasher};
        let mut sorted: Vec<_> = nodes
            .into_iter()
            .filter(|(path, _, _)| *path != "/zookeeper" && !path.starts_with("/zookeeper/"))
            .collect();
        sorted.sort_unstable_by_key(|(path, _, _)| *path);
        let mut h = DefaultHasher::new();
        for (path, data, s) in &sorted {
            (path, data).hash(&mut h);
            (
                s.czxid,
                s.mzxid,
                s.ctime,
                s.mtime,
                s.pzxid,
                s.ephemeral_owner,
            )
                .hash(&mut h);
            (
                s.version,
                s.cversion,
                s.aversion,
                s.data_length,
                s.num_children,
            )
                .hash(&mut h);
        }
        TreeDigest {
            zxid,
            nodes: sorted.len(),
            digest: h.finish(),
        }
    }
}

/// The final state of every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FinalState {
    pub members: Vec<MemberState>,
}

/// How a watch ended, as the session saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "d", rename_all = "kebab-case")]
pub enum Delivery {
    /// The server's notification: its type (`NodeDataChanged`, ...) and the zxid in its header
    /// (the transaction that fired it; -1 for an event fired at once by `setWatches` after a
    /// reconnect, which ZooKeeper and Rookery send without one).
    Fired { event: String, zxid: i64 },
    /// The watch can no longer fire (the session ended, or the server refused to re-arm it);
    /// the client said so.
    Ended { reason: String },
}

/// A one-shot watch's delivery. Recorded when the harness first sees it, which it checks
/// before recording each completion of the session: a watch the client delivered before a
/// reply gets a smaller `seq` than that reply's completion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    pub process: Process,
    pub session_id: i64,
    pub key: String,
    /// The `invoke_seq` of the [`Call::WatchRead`] that set the watch.
    pub set_by: u64,
    /// On the run's sequence counter.
    pub seq: u64,
    pub at_ns: u64,
    pub delivery: Delivery,
}

/// A whole run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// The registers (full paths) the workload used; each starts at [`INITIAL_VALUE`], version
    /// 0.
    pub registers: Vec<String>,
    /// The parents of sequential creates.
    pub parents: Vec<String>,
    /// Groups of registers written together by `multi` ([`Call::PairCas`]); each starts at
    /// [`INITIAL_VALUE`], version 0, and holds one value on every key.
    #[serde(default)]
    pub pairs: Vec<Vec<String>>,
    /// Queue nodes ([`Call::Enqueue`], [`Call::Take`]); drained at the end.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Parents of the sessions' ephemeral nodes.
    #[serde(default)]
    pub ephemeral_parents: Vec<String>,
    /// Every operation, in invocation order (`ops[i].id == i`).
    pub ops: Vec<Op>,
    /// Every watch delivery seen, in `seq` order.
    #[serde(default)]
    pub watches: Vec<WatchEvent>,
    /// What the members held at the end, if the run got that far.
    pub final_state: Option<FinalState>,
}

impl History {
    /// Sorts `ops` by invocation and numbers them.
    pub fn new(
        registers: Vec<String>,
        parents: Vec<String>,
        mut ops: Vec<Op>,
        final_state: Option<FinalState>,
    ) -> History {
        ops.sort_by_key(|o| o.invoke_seq);
        for (i, o) in ops.iter_mut().enumerate() {
            o.id = i;
        }
        History {
            registers,
            parents,
            ops,
            final_state,
            ..Default::default()
        }
    }
}

/// The sequence number ZooKeeper appends to a sequential node's name: its last ten digits.
pub fn sequence_of(name: &str) -> Option<i64> {
    let digits = name.get(name.len().checked_sub(10)?..)?;
    if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

/// A register value as the workload writes it (decimal), or [`GARBAGE_VALUE`].
pub fn value_of(data: &[u8]) -> u64 {
    std::str::from_utf8(data)
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&v| v != GARBAGE_VALUE)
        .unwrap_or(GARBAGE_VALUE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_are_the_last_ten_digits() {
        assert_eq!(sequence_of("c0000000012"), Some(12));
        assert_eq!(sequence_of("c2147483647"), Some(2147483647));
        assert_eq!(sequence_of("c12"), None);
        assert_eq!(sequence_of("c00000000x1"), None);
    }

    #[test]
    fn values_are_decimal_or_garbage() {
        assert_eq!(value_of(b"42"), 42);
        assert_eq!(value_of(b""), GARBAGE_VALUE);
        assert_eq!(value_of(b"x"), GARBAGE_VALUE);
    }
}
