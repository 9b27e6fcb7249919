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
}

impl Call {
    /// The znode the operation touches (for a sequential create, its parent).
    pub fn key(&self) -> &str {
        match self {
            Call::Read { key }
            | Call::SyncRead { key }
            | Call::Write { key, .. }
            | Call::Cas { key, .. } => key,
            Call::CreateSeq { parent, .. } => parent,
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
        }
    }

    /// Whether the operation changes state when it takes effect.
    pub fn is_write(&self) -> bool {
        matches!(
            self,
            Call::Write { .. } | Call::Cas { .. } | Call::CreateSeq { .. }
        )
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
    /// The child's name (without the parent), its sequence number and its czxid.
    Created { name: String, seq: i64, czxid: i64 },
}

/// A server's error reply: the operation was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ServerError {
    BadVersion,
    NoNode,
    NodeExists,
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
}

/// The final state of every member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FinalState {
    pub members: Vec<MemberState>,
}

/// A whole run's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct History {
    /// The registers (full paths) the workload used; each starts at [`INITIAL_VALUE`], version
    /// 0.
    pub registers: Vec<String>,
    /// The parents of sequential creates.
    pub parents: Vec<String>,
    /// Every operation, in invocation order (`ops[i].id == i`).
    pub ops: Vec<Op>,
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
