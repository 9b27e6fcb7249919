//! Opcodes, error codes, watch event types, keeper states, create modes and permission bits, with
//! the numeric values of `ZooDefs`, `KeeperException.Code`, `Watcher` and `CreateMode`.

/// Declares a `repr(i32)` enum with `code()` and `from_code()`.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $value:expr ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(i32)]
        pub enum $name { $( $(#[$vmeta])* $variant = $value ),* }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The wire value.
            pub fn code(self) -> i32 {
                self as i32
            }

            /// The value for a wire code, if it is one.
            pub fn from_code(code: i32) -> Option<Self> {
                match code {
                    $( $value => Some($name::$variant), )*
                    _ => None,
                }
            }
        }
    };
}

code_enum! {
    /// Request types (`ZooDefs.OpCode`).
    pub enum OpCode {
        /// Internal: a watch notification.
        Notification = 0,
        /// create
        Create = 1,
        /// delete
        Delete = 2,
        /// exists
        Exists = 3,
        /// getData
        GetData = 4,
        /// setData
        SetData = 5,
        /// getACL
        GetAcl = 6,
        /// setACL
        SetAcl = 7,
        /// getChildren
        GetChildren = 8,
        /// sync
        Sync = 9,
        /// ping (xid -2)
        Ping = 11,
        /// getChildren2
        GetChildren2 = 12,
        /// check (only valid inside multi)
        Check = 13,
        /// multi
        Multi = 14,
        /// create2
        Create2 = 15,
        /// reconfig
        Reconfig = 16,
        /// checkWatches
        CheckWatches = 17,
        /// removeWatches
        RemoveWatches = 18,
        /// createContainer
        CreateContainer = 19,
        /// deleteContainer
        DeleteContainer = 20,
        /// createTTL
        CreateTtl = 21,
        /// multiRead
        MultiRead = 22,
        /// auth (xid -4)
        Auth = 100,
        /// setWatches (xid -8)
        SetWatches = 101,
        /// sasl
        Sasl = 102,
        /// getEphemerals
        GetEphemerals = 103,
        /// getAllChildrenNumber
        GetAllChildrenNumber = 104,
        /// setWatches2 (xid -8)
        SetWatches2 = 105,
        /// addWatch
        AddWatch = 106,
        /// whoAmI
        WhoAmI = 107,
        /// Internal txn type: createSession.
        CreateSession = -10,
        /// closeSession
        CloseSession = -11,
        /// Txn and multi-result type of a failed write.
        Error = -1,
    }
}

impl OpCode {
    /// Whether this opcode changes state (and so becomes a transaction).
    pub fn is_write(self) -> bool {
        matches!(
            self,
            OpCode::Create
                | OpCode::Create2
                | OpCode::CreateContainer
                | OpCode::CreateTtl
                | OpCode::Delete
                | OpCode::DeleteContainer
                | OpCode::SetData
                | OpCode::SetAcl
                | OpCode::Check
                | OpCode::Multi
                | OpCode::Reconfig
                | OpCode::CreateSession
                | OpCode::CloseSession
        )
    }
}

code_enum! {
    /// Error codes (`KeeperException.Code`).
    pub enum ErrorCode {
        /// Success.
        Ok = 0,
        /// Start of the system-error range.
        SystemError = -1,
        /// A multi sub-op after the one that failed.
        RuntimeInconsistency = -2,
        /// Internal inconsistency.
        DataInconsistency = -3,
        /// Client side: the connection was lost.
        ConnectionLoss = -4,
        /// The request did not decode.
        MarshallingError = -5,
        /// Operation not implemented.
        Unimplemented = -6,
        /// Client side: the operation timed out.
        OperationTimeout = -7,
        /// Bad arguments.
        BadArguments = -8,
        /// Unknown session (internal).
        UnknownSession = -12,
        /// Reconfig: no quorum in the new config.
        NewConfigNoQuorum = -13,
        /// Reconfig already running.
        ReconfigInProgress = -14,
        /// Start of the API-error range.
        ApiError = -100,
        /// No such node.
        NoNode = -101,
        /// ACL check failed.
        NoAuth = -102,
        /// Version mismatch.
        BadVersion = -103,
        /// Ephemeral nodes cannot have children.
        NoChildrenForEphemerals = -108,
        /// The node exists.
        NodeExists = -110,
        /// The node has children.
        NotEmpty = -111,
        /// The session expired.
        SessionExpired = -112,
        /// Client side: invalid callback.
        InvalidCallback = -113,
        /// Invalid ACL.
        InvalidAcl = -114,
        /// Authentication failed.
        AuthFailed = -115,
        /// The session moved to another connection.
        SessionMoved = -118,
        /// A write on a read-only server.
        NotReadOnly = -119,
        /// Ephemeral create on a local session.
        EphemeralOnLocalSession = -120,
        /// No such watch.
        NoWatcher = -121,
        /// Client side: request timed out.
        RequestTimeout = -122,
        /// Reconfig is disabled.
        ReconfigDisabled = -123,
        /// The session needs SASL authentication.
        SessionClosedRequireSaslAuth = -124,
        /// Quota exceeded.
        QuotaExceeded = -125,
        /// The request was throttled.
        ThrottledOp = -127,
    }
}

code_enum! {
    /// Watch event types (`Watcher.Event.EventType`).
    pub enum EventType {
        /// Connection-state change (client made).
        None = -1,
        /// The node was created.
        NodeCreated = 1,
        /// The node was deleted.
        NodeDeleted = 2,
        /// The node's data changed.
        NodeDataChanged = 3,
        /// The node's children changed.
        NodeChildrenChanged = 4,
        /// Client made, after removeWatches.
        DataWatchRemoved = 5,
        /// Client made, after removeWatches.
        ChildWatchRemoved = 6,
        /// Client made, after removeWatches.
        PersistentWatchRemoved = 7,
    }
}

code_enum! {
    /// Keeper states (`Watcher.Event.KeeperState`).
    pub enum KeeperState {
        /// Deprecated.
        Unknown = -1,
        /// Disconnected (client made).
        Disconnected = 0,
        /// Deprecated.
        NoSyncConnected = 1,
        /// Connected; the state of every server notification.
        SyncConnected = 3,
        /// Authentication failed.
        AuthFailed = 4,
        /// Connected to a read-only server.
        ConnectedReadOnly = 5,
        /// SASL authenticated.
        SaslAuthenticated = 6,
        /// The session expired.
        Expired = -112,
        /// The client closed.
        Closed = 7,
    }
}

code_enum! {
    /// Watch kinds for checkWatches and removeWatches (`Watcher.WatcherType`).
    pub enum WatcherType {
        /// Child watches.
        Children = 1,
        /// Data (and exists) watches.
        Data = 2,
        /// Any watch.
        Any = 3,
        /// Persistent watches.
        Persistent = 4,
        /// Persistent recursive watches.
        PersistentRecursive = 5,
    }
}

code_enum! {
    /// addWatch modes (`AddWatchMode`).
    pub enum AddWatchMode {
        /// Persistent, on the node only.
        Persistent = 0,
        /// Persistent, on the node and every descendant.
        PersistentRecursive = 1,
    }
}

code_enum! {
    /// Create flags (`CreateMode`).
    pub enum CreateMode {
        /// A normal node.
        Persistent = 0,
        /// Deleted when the session ends.
        Ephemeral = 1,
        /// Persistent with a sequence suffix.
        PersistentSequential = 2,
        /// Ephemeral with a sequence suffix.
        EphemeralSequential = 3,
        /// Deleted by the server once its last child is gone.
        Container = 4,
        /// Deleted once unmodified and childless for its TTL.
        PersistentWithTtl = 5,
        /// TTL with a sequence suffix.
        PersistentSequentialWithTtl = 6,
    }
}

impl CreateMode {
    /// Whether the node is ephemeral.
    pub fn is_ephemeral(self) -> bool {
        matches!(
            self,
            CreateMode::Ephemeral | CreateMode::EphemeralSequential
        )
    }

    /// Whether a sequence suffix is appended.
    pub fn is_sequential(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentSequential
                | CreateMode::EphemeralSequential
                | CreateMode::PersistentSequentialWithTtl
        )
    }

    /// Whether the node has a TTL.
    pub fn is_ttl(self) -> bool {
        matches!(
            self,
            CreateMode::PersistentWithTtl | CreateMode::PersistentSequentialWithTtl
        )
    }
}

/// Permission bits (`ZooDefs.Perms`).
pub mod perms {
    /// Read data and children.
    pub const READ: i32 = 1;
    /// Set data.
    pub const WRITE: i32 = 1 << 1;
    /// Create children.
    pub const CREATE: i32 = 1 << 2;
    /// Delete children.
    pub const DELETE: i32 = 1 << 3;
    /// Set the ACL.
    pub const ADMIN: i32 = 1 << 4;
    /// Everything.
    pub const ALL: i32 = READ | WRITE | CREATE | DELETE | ADMIN;
}

/// Special xids.
pub mod xid {
    /// Watch notification (server to client).
    pub const NOTIFICATION: i32 = -1;
    /// Ping.
    pub const PING: i32 = -2;
    /// Auth packet.
    pub const AUTH: i32 = -4;
    /// setWatches and setWatches2.
    pub const SET_WATCHES: i32 = -8;
}

/// Four-letter-word command codes: the first four bytes of a connection read as an `int`.
pub const FOUR_LETTER_WORDS: &[&str] = &[
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs", "wchc", "wchp",
    "dirs", "isro", "gtmk", "srst",
];

/// The largest ttl a TTL node can carry (2^40 - 1 ms).
pub const MAX_TTL_MS: i64 = (1 << 40) - 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for op in OpCode::ALL {
            assert_eq!(OpCode::from_code(op.code()), Some(*op));
        }
        for e in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(e.code()), Some(*e));
        }
        assert_eq!(OpCode::from_code(10), None);
        assert_eq!(ErrorCode::NoNode.code(), -101);
        assert_eq!(KeeperState::Expired.code(), -112);
    }
}
