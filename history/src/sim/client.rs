//! A simulated client session speaking ZooKeeper's protocol to a member's request processor:
//! the handshake (new or resumed session), pipelined requests, pings, watch notifications and
//! re-arming the watches with `setWatches` after a reconnect (as rookery-client does),
//! reconnecting to another member when its connection ends or goes silent, and a new session
//! (a new process, as in Jepsen) once its session is refused as expired or ended on purpose.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use rookery_proto::consts::{EventType, OpCode};
use rookery_proto::jute::{Jute, Reader};
use rookery_proto::records::{
    Acl, CheckVersionRequest, ConnectRequest, ConnectResponse, CreateRequest, DeleteRequest,
    PathRequest, PathWatchRequest, ReplyHeader, SetDataRequest, SetWatches, WatcherEvent,
};
use rookery_proto::request::{MultiOp, Request};
use rookery_proto::response::{MultiResult, Response};
use rookery_server::server::{ConnHandle, Outbound};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::history::{
    sequence_of, value_of, Call, Outcome, Process, RegisterState, Reply, ServerError,
};

/// Outbound frames a member may queue for one connection before it drops the connection.
const CONN_QUEUE: usize = 4096;

/// The session timeout the clients ask for, in ms.
pub(super) const SESSION_TIMEOUT_MS: i32 = 4000;

/// The xid of pings, as ZooKeeper's clients send them.
const PING_XID: i32 = -2;

/// What a request of the client is for.
#[derive(Debug, Clone)]
pub(super) enum Part {
    /// The `sync` of a sync-read or a pair read: its reply is not the operation's.
    SyncOf(usize),
    /// The request whose reply completes history operation `.0`.
    Completes(usize, OpCode),
    /// A request whose reply is not recorded (set-up writes, the drain's `sync`).
    Setup,
    /// `setWatches` after a reconnect, re-arming the watches on these keys.
    SetWatches(Vec<String>),
    /// A take's listing of the queue (not recorded).
    TakeList,
    /// A take's read of the queue item named so (not recorded).
    TakeRead(String),
    /// The `closeSession` of a session whose close is not recorded (the final drain's).
    Close,
}

/// What a session slot does.
#[derive(Debug, Clone)]
pub(super) enum Role {
    /// A workload session: its ephemeral node first, then the operation mix; now and then it
    /// closes itself and a new session takes the slot.
    Worker,
    /// The ephemeral slot (K6, S1): a session that creates its ephemeral node, checks it for a
    /// short life, and then is closed (and probed with resumes) or abandoned.
    Ephemeral {
        /// When the session's life ends (µs), once its create was answered.
        life_end_us: Option<u64>,
        /// The next check is of its own node (then a pause), not a sync-read.
        next_own: bool,
    },
    /// A new client resuming a session the ephemeral slot closed ([`Call::Resume`]); on
    /// success it checks the session's node (`own`) and closes the session again.
    Resume {
        own: Option<String>,
        /// Probes of the same session still to come after this one.
        probes_left: u32,
        /// The session's node was checked.
        checked: bool,
    },
    /// The final drain of the queue.
    Drain {
        /// The last listing was empty.
        empty: bool,
    },
}

/// A take from the queue under way: the candidates still to try, lowest first.
pub(super) struct Take {
    pub(super) queue: String,
    pub(super) candidates: VecDeque<String>,
    /// The final drain's take: `sync` before the listing, every item tried.
    pub(super) drain: bool,
}

/// A one-shot watch the session holds, not yet delivered.
pub(super) struct Armed {
    pub(super) key: String,
    /// The `invoke_seq` of the read that set it.
    pub(super) set_by: u64,
}

/// The client's connection to one member.
pub(super) struct ClientConn {
    pub(super) member: u64,
    pub(super) incarnation: u64,
    pub(super) conn_id: u64,
    pub(super) rx: mpsc::Receiver<Outbound>,
    pub(super) kill: CancellationToken,
    /// The handshake was answered.
    pub(super) established: bool,
    /// When the client last heard from the member (µs).
    pub(super) last_heard_us: u64,
    /// When the client last sent anything (µs): pings fill silences.
    pub(super) last_sent_us: u64,
    /// The latest time a delivery on this connection is scheduled for, either way: deliveries
    /// are never reordered (TCP).
    pub(super) last_to_server_us: u64,
    pub(super) last_to_client_us: u64,
}

/// A session and its state.
pub(super) struct Client {
    pub(super) process: Process,
    pub(super) role: Role,
    pub(super) session_id: i64,
    pub(super) passwd: Vec<u8>,
    pub(super) conn: Option<ClientConn>,
    pub(super) next_xid: i32,
    /// Requests sent and not answered, by xid.
    pub(super) pending: BTreeMap<i32, Part>,
    /// The highest zxid seen in a reply header.
    pub(super) last_zxid: i64,
    /// The last version seen per register (per pair, under its first key), for
    /// compare-and-set.
    pub(super) versions: BTreeMap<String, i32>,
    /// The history operation in flight, if any.
    pub(super) in_flight: Option<usize>,
    /// Watches armed and not delivered.
    pub(super) armed: Vec<Armed>,
    /// Keys with a watch armed or being set (one watch per key and session, so that a
    /// notification names its watch).
    pub(super) arming: BTreeSet<String>,
    /// The last watch set per key (a notification no armed watch expects is recorded against
    /// it, for the checker to judge).
    pub(super) last_set: BTreeMap<String, u64>,
    /// A handshake of this client was accepted.
    pub(super) established_once: bool,
    /// When the client last heard from any member (µs): once its session has gone a session
    /// timeout without, it declares the session lost, as rookery-client does.
    pub(super) last_heard_us: u64,
    /// The session's ephemeral create was sent.
    pub(super) made_ephemeral: bool,
    /// The session's ephemeral node, once its create was acknowledged.
    pub(super) ephemeral: Option<String>,
    /// A take under way.
    pub(super) take: Option<Take>,
    /// The session is being closed: no new operation; once the close is answered (or its
    /// connection is lost) the session is over.
    pub(super) closing: bool,
    /// No operation starts before this (µs): the ephemeral slot's pauses.
    pub(super) next_op_us: u64,
    /// The slot has finished for good (the workload is over and its session ended).
    pub(super) done: bool,
}

impl Client {
    pub(super) fn new(process: Process, role: Role) -> Client {
        Client {
            process,
            role,
            session_id: 0,
            passwd: vec![0; 16],
            conn: None,
            next_xid: 1,
            pending: BTreeMap::new(),
            last_zxid: 0,
            versions: BTreeMap::new(),
            in_flight: None,
            armed: Vec::new(),
            arming: BTreeSet::new(),
            last_set: BTreeMap::new(),
            established_once: false,
            last_heard_us: 0,
            made_ephemeral: false,
            ephemeral: None,
            take: None,
            closing: false,
            next_op_us: 0,
            done: false,
        }
    }

    /// Whether something of the session is under way (an operation, a take, a close).
    pub(super) fn busy(&self) -> bool {
        self.in_flight.is_some() || self.take.is_some() || self.closing
    }

    /// Opens a connection to `member` (`incarnation`): the handle the member's core gets, and
    /// the handshake to send.
    pub(super) fn connect(
        &mut self,
        member: u64,
        incarnation: u64,
        conn_id: u64,
        now_us: u64,
    ) -> (ConnHandle, ConnectRequest) {
        let (tx, rx) = mpsc::channel(CONN_QUEUE);
        let kill = CancellationToken::new();
        self.conn = Some(ClientConn {
            member,
            incarnation,
            conn_id,
            rx,
            kill: kill.clone(),
            established: false,
            last_heard_us: now_us,
            last_sent_us: now_us,
            last_to_server_us: now_us,
            last_to_client_us: now_us,
        });
        let req = ConnectRequest {
            protocol_version: 0,
            last_zxid_seen: self.last_zxid,
            timeout_ms: SESSION_TIMEOUT_MS,
            session_id: self.session_id,
            passwd: self.passwd.clone(),
            read_only: Some(false),
        };
        (ConnHandle { tx, kill }, req)
    }

    /// The next xid.
    pub(super) fn xid(&mut self) -> i32 {
        let x = self.next_xid;
        self.next_xid += 1;
        x
    }
}

/// The requests that carry operation `op` (`call`), each with what its reply is for.
/// [`Call::Take`], [`Call::EndSession`] with `abandon` and [`Call::Resume`] are procedures of
/// the simulator's own; a take's `delete` is here (its listing and read are not recorded).
pub(super) fn requests(op: usize, call: &Call) -> Vec<(Request, Part)> {
    match call {
        Call::Read { key } => vec![(get_data(key, false), Part::Completes(op, OpCode::GetData))],
        Call::SyncRead { key } => vec![
            (sync(key), Part::SyncOf(op)),
            (get_data(key, false), Part::Completes(op, OpCode::GetData)),
        ],
        Call::Write { key, value } => vec![(
            set_data(key, *value, -1),
            Part::Completes(op, OpCode::SetData),
        )],
        Call::Cas {
            key,
            expected_version,
            value,
        } => vec![(
            set_data(key, *value, *expected_version),
            Part::Completes(op, OpCode::SetData),
        )],
        Call::CreateSeq { parent, token } => vec![(
            create(&format!("{parent}/c"), *token, 2),
            Part::Completes(op, OpCode::Create2),
        )],
        Call::WatchRead { key, exists: false } => {
            vec![(get_data(key, true), Part::Completes(op, OpCode::GetData))]
        }
        Call::WatchRead { key, exists: true } => vec![(
            Request::Exists(PathWatchRequest {
                path: key.clone(),
                watch: true,
            }),
            Part::Completes(op, OpCode::Exists),
        )],
        Call::Enqueue { queue, token } => vec![(
            create(&format!("{queue}/qn-"), *token, 2),
            Part::Completes(op, OpCode::Create2),
        )],
        Call::Take { queue, name, .. } => vec![(
            Request::Delete(DeleteRequest {
                path: format!("{queue}/{name}"),
                version: -1,
            }),
            Part::Completes(op, OpCode::Delete),
        )],
        Call::PairRead { keys } => {
            let first = keys.first().cloned().unwrap_or_default();
            let reads = keys
                .iter()
                .map(|k| {
                    MultiOp::GetData(PathWatchRequest {
                        path: k.clone(),
                        watch: false,
                    })
                })
                .collect();
            vec![
                (sync(&first), Part::SyncOf(op)),
                (
                    Request::MultiRead(reads),
                    Part::Completes(op, OpCode::MultiRead),
                ),
            ]
        }
        Call::PairCas {
            keys,
            expected_version,
            value,
        } => {
            let first = keys.first().cloned().unwrap_or_default();
            let mut ops = vec![MultiOp::Check(CheckVersionRequest {
                path: first,
                version: *expected_version,
            })];
            ops.extend(keys.iter().map(|k| {
                MultiOp::SetData(SetDataRequest {
                    path: k.clone(),
                    data: Some(value.to_string().into_bytes()),
                    version: -1,
                })
            }));
            vec![(Request::Multi(ops), Part::Completes(op, OpCode::Multi))]
        }
        Call::CreateEphemeral { path, token } => vec![(
            create(path, *token, 1),
            Part::Completes(op, OpCode::Create2),
        )],
        Call::Count { parent } => vec![
            (sync(parent), Part::SyncOf(op)),
            (
                Request::Exists(PathWatchRequest {
                    path: parent.clone(),
                    watch: false,
                }),
                Part::Completes(op, OpCode::Exists),
            ),
        ],
        Call::OwnEphemeral { path } => vec![(
            Request::Exists(PathWatchRequest {
                path: path.clone(),
                watch: false,
            }),
            Part::Completes(op, OpCode::Exists),
        )],
        Call::EndSession { abandon: false } => {
            vec![(
                Request::CloseSession,
                Part::Completes(op, OpCode::CloseSession),
            )]
        }
        other => unreachable!("{other:?} is no request of its own"),
    }
}

pub(super) fn sync(key: &str) -> Request {
    Request::Sync(PathRequest {
        path: key.to_owned(),
    })
}

pub(super) fn get_data(key: &str, watch: bool) -> Request {
    Request::GetData(PathWatchRequest {
        path: key.to_owned(),
        watch,
    })
}

pub(super) fn get_children(key: &str) -> Request {
    Request::GetChildren(PathWatchRequest {
        path: key.to_owned(),
        watch: false,
    })
}

fn set_data(key: &str, value: u64, version: i32) -> Request {
    Request::SetData(SetDataRequest {
        path: key.to_owned(),
        data: Some(value.to_string().into_bytes()),
        version,
    })
}

/// `create2` of `path` holding `token`, with `flags` (0 persistent, 1 ephemeral, 2 persistent
/// sequential).
pub(super) fn create(path: &str, token: u64, flags: i32) -> Request {
    Request::Create2(CreateRequest {
        path: path.to_owned(),
        data: Some(token.to_string().into_bytes()),
        acl: Acl::open_unsafe(),
        flags,
    })
}

/// `setWatches` re-arming the data watches on `keys` from `relative_zxid`, as rookery-client
/// sends it after a reconnect (an `exists` watch on a node that exists is a data watch).
pub(super) fn set_watches(relative_zxid: i64, keys: Vec<String>) -> Request {
    Request::SetWatches(SetWatches {
        relative_zxid,
        data_watches: keys,
        exist_watches: Vec::new(),
        child_watches: Vec::new(),
    })
}

/// A frame the member sent, as the client reads it.
pub(super) enum Frame {
    /// The handshake's answer.
    Connected(ConnectResponse),
    /// A reply (or a notification, xid -1, or a ping's answer, xid -2).
    Reply(ReplyHeader, Vec<u8>),
}

/// Splits a frame off its 4-byte length; `established` says whether the handshake is done.
pub(super) fn decode_frame(frame: &[u8], established: bool) -> Result<Frame, String> {
    let body = frame.get(4..).ok_or("a frame without a length")?;
    let mut r = Reader::new(body);
    if !established {
        return ConnectResponse::decode(&mut r)
            .map(Frame::Connected)
            .map_err(|e| format!("a connect response that does not decode: {e}"));
    }
    let header = ReplyHeader::decode(&mut r).map_err(|e| format!("a reply header: {e}"))?;
    Ok(Frame::Reply(
        header,
        body[body.len() - r.remaining()..].to_vec(),
    ))
}

/// What a reply to a request of `op_code` (for `call`) means for the history.
pub(super) fn outcome(call: &Call, op_code: OpCode, header: &ReplyHeader, body: &[u8]) -> Outcome {
    if header.err != 0 {
        return match (call, header.err) {
            // `exists` answers a missing node with NoNode: a successful answer.
            (Call::OwnEphemeral { .. }, NO_NODE) => Outcome::Ok(Reply::Exists { owner: None }),
            (_, err) => Outcome::Failed(server_error(err)),
        };
    }
    let resp = match Response::decode(op_code, &mut Reader::new(body)) {
        Ok(r) => r,
        Err(e) => {
            return Outcome::Failed(ServerError::Other {
                code: 0,
                name: format!("undecodable reply: {e}"),
            })
        }
    };
    match (call, resp) {
        (
            Call::Read { .. } | Call::SyncRead { .. } | Call::WatchRead { exists: false, .. },
            Response::GetData(d),
        ) => Outcome::Ok(Reply::Read {
            value: value_of(d.data.as_deref().unwrap_or_default()),
            version: d.stat.version,
            mzxid: d.stat.mzxid,
        }),
        (Call::WatchRead { exists: true, .. }, Response::Stat(s)) => Outcome::Ok(Reply::Stat {
            version: s.stat.version,
            mzxid: s.stat.mzxid,
        }),
        (Call::Write { .. } | Call::Cas { .. }, Response::Stat(s)) => Outcome::Ok(Reply::Written {
            version: s.stat.version,
            mzxid: s.stat.mzxid,
        }),
        (
            Call::CreateSeq { .. } | Call::Enqueue { .. } | Call::CreateEphemeral { .. },
            Response::Create2(c),
        ) => {
            let name = rookery_proto::path::name(&c.path).to_owned();
            Outcome::Ok(Reply::Created {
                seq: sequence_of(&name).unwrap_or(-1),
                name,
                czxid: c.stat.czxid,
            })
        }
        (Call::Take { .. }, Response::Empty) => Outcome::Ok(Reply::Deleted),
        (Call::Count { .. }, Response::Stat(s)) => Outcome::Ok(Reply::Count {
            children: s.stat.num_children,
        }),
        (Call::OwnEphemeral { .. }, Response::Stat(s)) => Outcome::Ok(Reply::Exists {
            owner: Some(s.stat.ephemeral_owner),
        }),
        (Call::EndSession { .. }, Response::Empty) => Outcome::Ok(Reply::Done),
        (Call::PairRead { .. }, Response::Multi(results)) => {
            let mut reads = Vec::new();
            for r in results {
                match r {
                    MultiResult::GetData(data, stat) => reads.push(RegisterState {
                        value: value_of(data.as_deref().unwrap_or_default()),
                        version: stat.version,
                        mzxid: stat.mzxid,
                    }),
                    // Each read of a multiRead fails on its own: the pair's keys always
                    // exist, so this is the server's error reply.
                    MultiResult::Error(e) => return Outcome::Failed(server_error(e)),
                    other => {
                        return Outcome::Failed(ServerError::Other {
                            code: 0,
                            name: format!("multiRead gave {other:?}"),
                        })
                    }
                }
            }
            Outcome::Ok(Reply::Pair { reads })
        }
        (Call::PairCas { .. }, Response::Multi(results)) => {
            // A multi that failed applied nothing: its first real error says why, as
            // rookery-client reports it.
            if let Some(err) = first_failure(&results) {
                return Outcome::Failed(server_error(err));
            }
            let (mut versions, mut mzxids) = (Vec::new(), Vec::new());
            for r in results {
                if let MultiResult::SetData(stat) = r {
                    versions.push(stat.version);
                    mzxids.push(stat.mzxid);
                }
            }
            Outcome::Ok(Reply::PairWritten { versions, mzxids })
        }
        (call, resp) => Outcome::Failed(ServerError::Other {
            code: 0,
            name: format!("unexpected reply {resp:?} to {call:?}"),
        }),
    }
}

/// The error of a failed multi: the first result with a code other than 0 and
/// RUNTIMEINCONSISTENCY (which marks the operations after the failed one), else the first
/// non-zero one (rookery-client's rule).
fn first_failure(results: &[MultiResult]) -> Option<i32> {
    let runtime = rookery_proto::ErrorCode::RuntimeInconsistency.code();
    let failed = |skip_runtime: bool| {
        results.iter().find_map(|r| match r {
            MultiResult::Error(e) if *e != 0 && !(skip_runtime && *e == runtime) => Some(*e),
            _ => None,
        })
    };
    failed(true).or_else(|| failed(false))
}

/// `NONODE`.
pub(super) const NO_NODE: i32 = -101;

pub(super) fn server_error(code: i32) -> ServerError {
    match code {
        -103 => ServerError::BadVersion,
        NO_NODE => ServerError::NoNode,
        -110 => ServerError::NodeExists,
        -112 => ServerError::SessionExpired,
        code => ServerError::Other {
            code,
            name: format!("error {code}"),
        },
    }
}

/// The version a reply shows for the key it read or wrote (for a pair, its first key's), for
/// the next compare-and-set.
pub(super) fn version_seen(outcome: &Outcome) -> Option<i32> {
    match outcome {
        Outcome::Ok(
            Reply::Read { version, .. }
            | Reply::Written { version, .. }
            | Reply::Stat { version, .. },
        ) => Some(*version),
        Outcome::Ok(Reply::Pair { reads }) => reads.first().map(|r| r.version),
        Outcome::Ok(Reply::PairWritten { versions, .. }) => versions.first().copied(),
        _ => None,
    }
}

/// A watch notification: the event's name (`NodeDataChanged`, ...) and the path.
pub(super) fn decode_notification(body: &[u8]) -> Result<(String, String), String> {
    let ev = WatcherEvent::decode(&mut Reader::new(body))
        .map_err(|e| format!("a notification that does not decode: {e}"))?;
    let name = match EventType::from_code(ev.event_type) {
        Some(t) => format!("{t:?}"),
        None => format!("event type {}", ev.event_type),
    };
    Ok((name, ev.path))
}

/// The xid of a ping.
pub(super) fn ping_xid() -> i32 {
    PING_XID
}
