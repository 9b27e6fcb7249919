//! Transactions: the only way the data tree changes.
//!
//! Every write request is turned into a [`Txn`] (by [`crate::prep`]), given the next zxid, and
//! applied to the [`crate::tree::DataTree`] in zxid order. A transaction carries the results of
//! every decision made while preparing it (the sequence-suffixed path, the new versions, the
//! parent's new child counter, the creation time), so applying it is deterministic and gives the
//! same tree on every replica and on replay.

use rookery_proto::Acl;

/// The header every transaction carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnHeader {
    /// The session that issued it (0 for server-internal transactions).
    pub session_id: i64,
    /// The request's xid.
    pub cxid: i32,
    /// Its position in the history.
    pub zxid: i64,
    /// Wall-clock time at the leader when it was prepared, in ms since the epoch.
    pub time_ms: i64,
}

/// A state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Txn {
    /// A new session.
    CreateSession {
        /// Its id.
        session_id: i64,
        /// Negotiated timeout.
        timeout_ms: i32,
        /// Its password.
        passwd: [u8; 16],
    },
    /// A session ends: its ephemerals go.
    CloseSession {
        /// Its id.
        session_id: i64,
    },
    /// A node is created.
    Create {
        /// Full path (with any sequence suffix).
        path: String,
        /// Data.
        data: Option<Vec<u8>>,
        /// ACL (already fixed up).
        acl: Vec<Acl>,
        /// Stored owner: a session id, the container marker or a TTL encoding, or 0.
        ephemeral_owner: i64,
        /// The parent's child-creation counter after this create.
        parent_cversion: i32,
    },
    /// A node is deleted.
    Delete {
        /// Path.
        path: String,
    },
    /// Data is replaced.
    SetData {
        /// Path.
        path: String,
        /// New data.
        data: Option<Vec<u8>>,
        /// The new version.
        version: i32,
    },
    /// The ACL is replaced.
    SetAcl {
        /// Path.
        path: String,
        /// New ACL.
        acl: Vec<Acl>,
        /// The new aversion.
        version: i32,
    },
    /// A version check inside multi (changes nothing).
    Check {
        /// Path.
        path: String,
    },
    /// Several changes applied atomically.
    Multi(Vec<Txn>),
    /// A failed write: it takes a zxid and changes nothing.
    Error(i32),
}

/// Stored `ephemeralOwner` for containers.
pub const CONTAINER_OWNER: i64 = i64::MIN;

/// Stored `ephemeralOwner` for a TTL node.
pub fn ttl_owner(ttl_ms: i64) -> i64 {
    (0xFFi64 << 56) | (ttl_ms & ((1 << 40) - 1))
}

/// The TTL of a stored owner, if it is a TTL node.
pub fn ttl_of(owner: i64) -> Option<i64> {
    ((owner >> 56) & 0xFF == 0xFF && (owner >> 40) & 0xFFFF == 0).then_some(owner & ((1 << 40) - 1))
}

/// Whether a stored owner is a session (a normal ephemeral).
pub fn is_ephemeral_owner(owner: i64) -> bool {
    owner != 0 && owner != CONTAINER_OWNER && ttl_of(owner).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_encodings() {
        assert_eq!(ttl_of(ttl_owner(5000)), Some(5000));
        assert!(!is_ephemeral_owner(ttl_owner(1)));
        assert!(!is_ephemeral_owner(CONTAINER_OWNER));
        assert!(!is_ephemeral_owner(0));
        assert!(is_ephemeral_owner(0x0100_0000_0000_0001));
        assert_eq!(ttl_of(0x0100_0000_0000_0001), None);
    }
}
