//! Every record of `zookeeper.jute` that the client protocol uses, field for field.

use crate::error::DecodeError;
use crate::jute::{record, write_bool, write_i32, write_i64, Jute, Reader};

record! {
    /// Node metadata: 68 bytes on the wire.
    #[derive(Copy)]
    pub struct Stat {
        /// zxid of the create.
        pub czxid: i64,
        /// zxid of the last data change.
        pub mzxid: i64,
        /// Creation time, ms since the epoch.
        pub ctime: i64,
        /// Last data change time, ms since the epoch.
        pub mtime: i64,
        /// Data version.
        pub version: i32,
        /// Child version (as reported).
        pub cversion: i32,
        /// ACL version.
        pub aversion: i32,
        /// Owning session of an ephemeral, else 0.
        pub ephemeral_owner: i64,
        /// Length of the data.
        pub data_length: i32,
        /// Number of children.
        pub num_children: i32,
        /// zxid of the last child create or delete.
        pub pzxid: i64,
    }
}

record! {
    /// An identity: a scheme and an id within it.
    pub struct Id {
        /// The scheme (world, auth, digest, ip, ...).
        pub scheme: String,
        /// The id within the scheme.
        pub id: String,
    }
}

record! {
    /// One ACL entry.
    pub struct Acl {
        /// Permission bits.
        pub perms: i32,
        /// Who gets them.
        pub id: Id,
    }
}

impl Acl {
    /// An ACL entry from parts.
    pub fn new(perms: i32, scheme: &str, id: &str) -> Self {
        Acl {
            perms,
            id: Id {
                scheme: scheme.to_owned(),
                id: id.to_owned(),
            },
        }
    }

    /// `OPEN_ACL_UNSAFE`: everything for everyone.
    pub fn open_unsafe() -> Vec<Acl> {
        vec![Acl::new(crate::consts::perms::ALL, "world", "anyone")]
    }

    /// `READ_ACL_UNSAFE`: read for everyone.
    pub fn read_unsafe() -> Vec<Acl> {
        vec![Acl::new(crate::consts::perms::READ, "world", "anyone")]
    }

    /// `CREATOR_ALL_ACL`: everything for the creator's authenticated ids.
    pub fn creator_all() -> Vec<Acl> {
        vec![Acl::new(crate::consts::perms::ALL, "auth", "")]
    }
}

/// The first frame from a client. `read_only` is `None` when the client (3.3 era) left the byte
/// out, and then the response must leave it out too.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectRequest {
    /// Always 0.
    pub protocol_version: i32,
    /// The highest zxid the client has seen.
    pub last_zxid_seen: i64,
    /// Requested session timeout in ms.
    pub timeout_ms: i32,
    /// 0 for a new session, else the session to resume.
    pub session_id: i64,
    /// The session password (16 zero bytes for a new session).
    pub passwd: Vec<u8>,
    /// Whether the client accepts a read-only server, if it sent the byte.
    pub read_only: Option<bool>,
}

impl Jute for ConnectRequest {
    const MIN_LEN: usize = 4 + 8 + 4 + 8 + 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_i32(out, self.protocol_version);
        write_i64(out, self.last_zxid_seen);
        write_i32(out, self.timeout_ms);
        write_i64(out, self.session_id);
        self.passwd.encode(out);
        if let Some(ro) = self.read_only {
            write_bool(out, ro);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let last_zxid_seen = r.read_i64()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = Vec::<u8>::decode(r)?;
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool()?)
        };
        Ok(ConnectRequest {
            protocol_version,
            last_zxid_seen,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}

/// The server's answer to a [`ConnectRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectResponse {
    /// Always 0.
    pub protocol_version: i32,
    /// Negotiated timeout in ms; 0 means the session is invalid or expired.
    pub timeout_ms: i32,
    /// The session id (0 if invalid).
    pub session_id: i64,
    /// The 16-byte session password.
    pub passwd: Vec<u8>,
    /// Read-only flag, present only if the request carried it.
    pub read_only: Option<bool>,
}

impl Jute for ConnectResponse {
    const MIN_LEN: usize = 4 + 4 + 8 + 4;
    fn encode(&self, out: &mut Vec<u8>) {
        write_i32(out, self.protocol_version);
        write_i32(out, self.timeout_ms);
        write_i64(out, self.session_id);
        self.passwd.encode(out);
        if let Some(ro) = self.read_only {
            write_bool(out, ro);
        }
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let protocol_version = r.read_i32()?;
        let timeout_ms = r.read_i32()?;
        let session_id = r.read_i64()?;
        let passwd = Vec::<u8>::decode(r)?;
        let read_only = if r.is_empty() {
            None
        } else {
            Some(r.read_bool()?)
        };
        Ok(ConnectResponse {
            protocol_version,
            timeout_ms,
            session_id,
            passwd,
            read_only,
        })
    }
}

record! {
    /// Precedes every request after the handshake.
    #[derive(Copy)]
    pub struct RequestHeader {
        /// Client-chosen request id, echoed in the reply.
        pub xid: i32,
        /// The opcode.
        pub op: i32,
    }
}

record! {
    /// Precedes every reply and notification.
    #[derive(Copy)]
    pub struct ReplyHeader {
        /// The request's xid, or a special xid.
        pub xid: i32,
        /// The server's last zxid (a write's own zxid).
        pub zxid: i64,
        /// Error code; the body follows only when it is 0.
        pub err: i32,
    }
}

record! {
    /// A watch notification body (xid -1).
    pub struct WatcherEvent {
        /// Event type.
        pub event_type: i32,
        /// Keeper state; always SyncConnected from a server.
        pub state: i32,
        /// The path of the node that changed.
        pub path: String,
    }
}

record! {
    /// auth (xid -4).
    pub struct AuthPacket {
        /// Always 0.
        pub auth_type: i32,
        /// The scheme, e.g. `digest`.
        pub scheme: String,
        /// Credentials, e.g. `user:password`.
        pub auth: Vec<u8>,
    }
}

record! {
    /// create, create2 and createContainer.
    pub struct CreateRequest {
        /// Path (a sequential create gets a suffix).
        pub path: String,
        /// Data, possibly null.
        pub data: Option<Vec<u8>>,
        /// The ACL.
        pub acl: Vec<Acl>,
        /// Create flags ([`crate::CreateMode`]).
        pub flags: i32,
    }
}

record! {
    /// createTTL.
    pub struct CreateTtlRequest {
        /// Path.
        pub path: String,
        /// Data, possibly null.
        pub data: Option<Vec<u8>>,
        /// The ACL.
        pub acl: Vec<Acl>,
        /// Create flags (5 or 6).
        pub flags: i32,
        /// Time to live in ms.
        pub ttl: i64,
    }
}

record! {
    /// Reply to create.
    pub struct CreateResponse {
        /// The path created.
        pub path: String,
    }
}

record! {
    /// Reply to create2, createContainer and createTTL.
    pub struct Create2Response {
        /// The path created.
        pub path: String,
        /// Its stat.
        pub stat: Stat,
    }
}

record! {
    /// delete.
    pub struct DeleteRequest {
        /// Path.
        pub path: String,
        /// Expected version, or -1.
        pub version: i32,
    }
}

record! {
    /// exists, getData, getChildren and getChildren2 (path plus watch flag).
    pub struct PathWatchRequest {
        /// Path.
        pub path: String,
        /// Whether to leave a watch.
        pub watch: bool,
    }
}

record! {
    /// A request that is only a path: getACL, sync, getAllChildrenNumber, getEphemerals,
    /// deleteContainer.
    pub struct PathRequest {
        /// Path (a prefix for getEphemerals).
        pub path: String,
    }
}

record! {
    /// Reply to exists, setData and setACL: one stat.
    pub struct StatResponse {
        /// The node's stat.
        pub stat: Stat,
    }
}

record! {
    /// Reply to getData.
    pub struct GetDataResponse {
        /// Data, possibly null.
        pub data: Option<Vec<u8>>,
        /// The node's stat.
        pub stat: Stat,
    }
}

record! {
    /// setData.
    pub struct SetDataRequest {
        /// Path.
        pub path: String,
        /// New data, possibly null.
        pub data: Option<Vec<u8>>,
        /// Expected version, or -1.
        pub version: i32,
    }
}

record! {
    /// Reply to getACL.
    pub struct GetAclResponse {
        /// The ACL.
        pub acl: Vec<Acl>,
        /// The node's stat.
        pub stat: Stat,
    }
}

record! {
    /// setACL.
    pub struct SetAclRequest {
        /// Path.
        pub path: String,
        /// The new ACL.
        pub acl: Vec<Acl>,
        /// Expected aversion, or -1.
        pub version: i32,
    }
}

record! {
    /// Reply to getChildren.
    pub struct GetChildrenResponse {
        /// Child names.
        pub children: Vec<String>,
    }
}

record! {
    /// Reply to getChildren2.
    pub struct GetChildren2Response {
        /// Child names.
        pub children: Vec<String>,
        /// The parent's stat.
        pub stat: Stat,
    }
}

record! {
    /// Reply to sync: the path echoed.
    pub struct PathResponse {
        /// The path.
        pub path: String,
    }
}

record! {
    /// check (inside multi).
    pub struct CheckVersionRequest {
        /// Path.
        pub path: String,
        /// Expected version.
        pub version: i32,
    }
}

record! {
    /// reconfig.
    pub struct ReconfigRequest {
        /// Servers joining.
        pub joining_servers: String,
        /// Servers leaving.
        pub leaving_servers: String,
        /// A whole new membership.
        pub new_members: String,
        /// Expected config id.
        pub cur_config_id: i64,
    }
}

record! {
    /// checkWatches and removeWatches.
    pub struct WatchesRequest {
        /// Path.
        pub path: String,
        /// [`crate::WatcherType`] value.
        pub watcher_type: i32,
    }
}

record! {
    /// setWatches (101).
    pub struct SetWatches {
        /// The client's last seen zxid.
        pub relative_zxid: i64,
        /// Data watches.
        pub data_watches: Vec<String>,
        /// Exists watches.
        pub exist_watches: Vec<String>,
        /// Child watches.
        pub child_watches: Vec<String>,
    }
}

record! {
    /// setWatches2 (105).
    pub struct SetWatches2 {
        /// The client's last seen zxid.
        pub relative_zxid: i64,
        /// Data watches.
        pub data_watches: Vec<String>,
        /// Exists watches.
        pub exist_watches: Vec<String>,
        /// Child watches.
        pub child_watches: Vec<String>,
        /// Persistent watches.
        pub persistent_watches: Vec<String>,
        /// Persistent recursive watches.
        pub persistent_recursive_watches: Vec<String>,
    }
}

record! {
    /// sasl request and response: an opaque token.
    pub struct SaslToken {
        /// The token.
        pub token: Vec<u8>,
    }
}

record! {
    /// Reply to getEphemerals.
    pub struct GetEphemeralsResponse {
        /// Full paths of the session's ephemerals.
        pub ephemerals: Vec<String>,
    }
}

record! {
    /// Reply to getAllChildrenNumber.
    pub struct AllChildrenNumberResponse {
        /// Number of descendants.
        pub total_number: i32,
    }
}

record! {
    /// addWatch.
    pub struct AddWatchRequest {
        /// Path.
        pub path: String,
        /// [`crate::AddWatchMode`] value.
        pub mode: i32,
    }
}

record! {
    /// One auth identity, as whoAmI reports it.
    pub struct ClientInfo {
        /// Scheme.
        pub auth_scheme: String,
        /// User.
        pub user: String,
    }
}

record! {
    /// Reply to whoAmI.
    pub struct WhoAmIResponse {
        /// Every identity the connection holds.
        pub client_info: Vec<ClientInfo>,
    }
}

record! {
    /// A bare error code: the addWatch reply body and a failed multi sub-result.
    #[derive(Copy)]
    pub struct ErrorResponse {
        /// The code.
        pub err: i32,
    }
}

record! {
    /// Precedes each multi sub-op and sub-result, and ends the list (`type -1, done true`).
    #[derive(Copy)]
    pub struct MultiHeader {
        /// Sub-op opcode, or -1.
        pub op: i32,
        /// True only on the terminator.
        pub done: bool,
        /// Error code (-1 in requests).
        pub err: i32,
    }
}
