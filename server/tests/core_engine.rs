//! Engine tests of the request processor ([`Core`]), after openraft's engine tests: the core is
//! driven by hand with events, a clock the test sets, a log writer the test flushes, a seeded
//! RNG and background jobs the test runs, and each test asserts the exact effects: the frames each
//! connection receives, the records queued for the log, the jobs queued, the messages sent to
//! other members. No runtime, no thread, no socket, no real clock or disk (the storage is a
//! [`MemBackend`]).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::rngs::StdRng;
use rand::SeedableRng;
use rookery_proto::{
    Acl, ConnectRequest, ConnectResponse, CreateMode, CreateRequest, CreateResponse, ErrorCode,
    GetDataResponse, Jute, OpCode, PathWatchRequest, Reader, ReplyHeader, Request, Response, Stat,
};
use rookery_server::env::Env;
use rookery_server::quorum::{PeerMsg, Transport};
use rookery_server::server::{ConnHandle, Core, Event, Io, Outbound};
use rookery_server::storage::codec::decode_txn;
use rookery_server::storage::recovery::replay_log;
use rookery_server::storage::txn_log::list_segments;
use rookery_server::storage::writer::InlineWriter;
use rookery_server::storage::{Backend, MemBackend};
use rookery_server::txn::{Txn, TxnHeader};
use rookery_server::zab::{Message, Notification, PeerId, ServerState, Vote, Zxid};
use rookery_server::Config;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

// === harness ===

/// The data (and log) directory, on the in-memory backend.
const DATA: &str = "/mem/data";
/// The manual wall clock at the start of every test (ms since the epoch).
const WALL_MS: i64 = 1_700_000_000_000;
/// The standalone server's id (`serverId`): the top byte of its session ids.
const SERVER_ID: u8 = 7;
/// Capacity of each connection's outbound queue and of the core's event queue.
const QUEUE: usize = 64;

/// A background job the core asked for.
type Job = Box<dyn FnOnce() + Send>;

/// An [`Env`] whose clocks move only when the test says, and whose background jobs wait in a
/// queue until the test runs them.
struct ManualEnv {
    state: Mutex<EnvState>,
}

struct EnvState {
    now_us: u64,
    wall_ms: i64,
    jobs: VecDeque<(&'static str, Job)>,
}

impl ManualEnv {
    fn new(wall_ms: i64) -> Arc<ManualEnv> {
        Arc::new(ManualEnv {
            state: Mutex::new(EnvState {
                now_us: 0,
                wall_ms,
                jobs: VecDeque::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, EnvState> {
        self.state.lock().expect("env state")
    }

    /// Moves both clocks forward.
    fn advance_ms(&self, ms: u64) {
        let mut st = self.lock();
        st.now_us += ms * 1000;
        st.wall_ms += ms as i64;
    }

    /// The names of the jobs waiting, in the order they were asked for.
    fn job_names(&self) -> Vec<&'static str> {
        self.lock().jobs.iter().map(|(name, _)| *name).collect()
    }

    /// Runs the jobs waiting (not any they queue), in order; returns how many ran.
    fn run_jobs(&self) -> usize {
        let jobs: Vec<(&'static str, Job)> = self.lock().jobs.drain(..).collect();
        let n = jobs.len();
        for (_, job) in jobs {
            job();
        }
        n
    }
}

impl Env for ManualEnv {
    fn now_us(&self) -> u64 {
        self.lock().now_us
    }

    fn wall_ms(&self) -> i64 {
        self.lock().wall_ms
    }

    fn background(&self, name: &'static str, job: Job) -> std::io::Result<()> {
        self.lock().jobs.push_back((name, job));
        Ok(())
    }
}

/// A [`Transport`] that records what is sent.
#[derive(Clone, Default)]
struct Recorder {
    sent: Arc<Mutex<Vec<(PeerId, PeerMsg)>>>,
}

impl Recorder {
    fn take(&self) -> Vec<(PeerId, PeerMsg)> {
        std::mem::take(&mut *self.sent.lock().expect("recorder"))
    }
}

impl Transport for Recorder {
    fn send(&self, to: PeerId, msg: PeerMsg) {
        self.sent.lock().expect("recorder").push((to, msg));
    }
}

/// A standalone configuration over [`DATA`], with `extra` zoo.cfg lines.
fn standalone_config(extra: &str) -> Config {
    let text =
        format!("tickTime=2000\ndataDir={DATA}\npreAllocSize=64\nserverId={SERVER_ID}\n{extra}");
    Config::parse(&text).expect("a valid zoo.cfg")
}

/// One request processor with everything around it in the test's hands.
struct Engine {
    core: Core,
    /// The log writer: what the core queues waits here until [`Engine::flush`].
    writer: InlineWriter,
    env: Arc<ManualEnv>,
    backend: MemBackend,
    /// The core's event queue, which background jobs report through.
    events: mpsc::Receiver<Event>,
}

impl Engine {
    /// A standalone server, recovered from an empty [`MemBackend`], its RNG seeded with `seed`.
    fn standalone(cfg: Config, seed: u64) -> Engine {
        Engine::start(cfg, seed, None)
    }

    /// Recovers, opens the log, and builds the core (an ensemble member if `net` is given).
    fn start(cfg: Config, seed: u64, net: Option<Box<dyn Transport>>) -> Engine {
        let backend = MemBackend::new();
        let shared: Arc<dyn Backend> = Arc::new(backend.clone());
        let recovered = rookery_server::recover(&cfg, &backend).expect("recovery");
        let log = rookery_server::open_log(&cfg, shared.clone(), &recovered).expect("open the log");
        let (ensemble, dirs) = match net {
            Some(net) => {
                let (node, dirs) =
                    rookery_server::zab_node(&cfg, &recovered, &shared, seed).expect("zab node");
                (
                    Some(rookery_server::ensemble_over(&cfg, node, net)),
                    Some(dirs),
                )
            }
            None => (None, None),
        };
        let (writer, journal) = InlineWriter::new(log, dirs);
        let (events_tx, events) = mpsc::channel(QUEUE);
        let env = ManualEnv::new(WALL_MS);
        let io = Io {
            log: Box::new(journal),
            backend: shared,
            events: events_tx,
            env: Box::new(env.clone()),
            rng: StdRng::seed_from_u64(seed),
        };
        let core = Core::new(Arc::new(cfg), recovered, io, ensemble);
        Engine {
            core,
            writer,
            env,
            backend,
            events,
        }
    }

    /// Writes and syncs what the core queued, and tells the core; false if nothing was queued.
    fn flush(&mut self) -> bool {
        match self.writer.flush() {
            Some(r) => {
                self.core.handle(Event::from_sync(r));
                true
            }
            None => false,
        }
    }

    /// Opens connection `id` and sends its handshake for a new session.
    fn connect(&mut self, id: u64, timeout_ms: i32) -> Conn {
        let (tx, rx) = mpsc::channel(QUEUE);
        let kill = CancellationToken::new();
        let addr: SocketAddr = ([127, 0, 0, 1], 40_000 + id as u16).into();
        self.core.handle(Event::Connect {
            conn: id,
            req: ConnectRequest {
                timeout_ms,
                passwd: vec![0; 16],
                read_only: Some(false),
                ..ConnectRequest::default()
            },
            addr,
            handle: ConnHandle {
                tx,
                kill: kill.clone(),
            },
            cert_subject: None,
        });
        Conn { id, rx, kill }
    }

    /// A request on `conn`, as its connection task hands it over.
    fn request(&mut self, conn: &Conn, xid: i32, req: Request) {
        self.core.handle(Event::Request {
            conn: conn.id,
            xid,
            req: Ok(req),
            permit: None,
            // Only latency statistics read it.
            received: tokio::time::Instant::now(),
        });
    }

    /// A connection with an established session: the handshake, its flush, and its response.
    fn session(&mut self, id: u64, timeout_ms: i32) -> (Conn, ConnectResponse) {
        let mut conn = self.connect(id, timeout_ms);
        assert!(
            self.flush(),
            "the handshake queues its createSession record"
        );
        let out = conn.take();
        assert_eq!(out.len(), 2, "{out:?}");
        let resp = connect_response(&out[1]);
        assert_eq!(out[0], Out::Session(resp.session_id));
        (conn, resp)
    }
}

/// The test's end of a connection.
struct Conn {
    id: u64,
    rx: mpsc::Receiver<Outbound>,
    kill: CancellationToken,
}

/// What a connection was asked to do, comparable.
#[derive(Debug, PartialEq)]
enum Out {
    Frame(Vec<u8>),
    Close,
    Session(i64),
}

impl Conn {
    /// Everything queued for the connection so far.
    fn take(&mut self) -> Vec<Out> {
        let mut out = Vec::new();
        for _ in 0..QUEUE {
            match self.rx.try_recv() {
                Ok(Outbound::Frame(bytes, _)) => out.push(Out::Frame(bytes)),
                Ok(Outbound::Close) => out.push(Out::Close),
                Ok(Outbound::Session(id)) => out.push(Out::Session(id)),
                Err(_) => break,
            }
        }
        out
    }
}

/// The body of a length-prefixed frame.
fn frame_body(out: &Out) -> &[u8] {
    let Out::Frame(bytes) = out else {
        panic!("expected a frame, got {out:?}");
    };
    let len = u32::from_be_bytes(bytes[..4].try_into().expect("a length prefix")) as usize;
    assert_eq!(len, bytes.len() - 4, "one whole frame");
    &bytes[4..]
}

fn connect_response(out: &Out) -> ConnectResponse {
    rookery_proto::jute::from_slice(frame_body(out)).expect("a ConnectResponse")
}

/// A reply's header, and its body when err is 0.
fn reply(out: &Out, op: OpCode) -> (ReplyHeader, Option<Response>) {
    let mut r = Reader::new(frame_body(out));
    let header = ReplyHeader::decode(&mut r).expect("a reply header");
    let body = (header.err == 0).then(|| Response::decode(op, &mut r).expect("a reply body"));
    assert!(r.is_empty(), "trailing bytes after the reply");
    (header, body)
}

fn create(path: &str, data: &[u8], mode: CreateMode) -> Request {
    Request::Create(CreateRequest {
        path: path.into(),
        data: Some(data.to_vec()),
        acl: Acl::open_unsafe(),
        flags: mode.code(),
    })
}

fn get_data(path: &str) -> Request {
    Request::GetData(PathWatchRequest {
        path: path.into(),
        watch: false,
    })
}

/// Every record in the log, decoded, read without changing anything.
fn log_records(backend: &MemBackend) -> Vec<(TxnHeader, Txn)> {
    let mut records = Vec::new();
    replay_log(backend, Path::new(DATA), 0, false, |_, rec, payload| {
        records.push(decode_txn(rec.zxid, payload).expect("a transaction"));
        Ok(())
    })
    .expect("a readable log");
    records
}

/// The first session id of a server, as ZooKeeper builds it: the server id in the top byte,
/// then bits of the wall clock.
fn first_session_id(server_id: u8, wall_ms: i64) -> i64 {
    (i64::from(server_id) << 56) | (((wall_ms << 24) as u64 >> 8) as i64)
}

// === tests ===

#[test]
fn a_handshake_is_answered_only_after_its_create_session_record_is_flushed() {
    let mut e = Engine::standalone(standalone_config(""), 1);
    // 100 s is above maxSessionTimeout (20 ticks of 2 s): it is negotiated down to 40 s.
    let mut conn = e.connect(1, 100_000);

    assert_eq!(conn.take(), vec![], "nothing before the record is durable");
    assert_eq!(e.writer.queued(), 1, "exactly one record queued");
    assert!(e.env.job_names().is_empty());

    let synced = e.writer.flush().expect("a batch").expect("a good sync");
    assert_eq!((synced.zxid, synced.seq), (1, None));
    assert_eq!(e.writer.queued(), 0);
    assert_eq!(
        conn.take(),
        vec![],
        "durable is not yet applied: the core has not heard"
    );
    e.core.handle(Event::from_sync(Ok(synced)));

    let session_id = first_session_id(SERVER_ID, WALL_MS);
    let out = conn.take();
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0], Out::Session(session_id));
    let resp = connect_response(&out[1]);
    assert_eq!(resp.protocol_version, 0);
    assert_eq!(resp.timeout_ms, 40_000);
    assert_eq!(resp.session_id, session_id);
    assert_eq!(resp.read_only, Some(false));
    assert_eq!(resp.passwd.len(), 16);
    assert_ne!(resp.passwd, vec![0; 16]);
    assert_eq!(e.core.last_zxid(), 1);

    // The record is the session the client was told about.
    let records = log_records(&e.backend);
    assert_eq!(
        records,
        vec![(
            TxnHeader {
                session_id,
                cxid: 0,
                zxid: 1,
                time_ms: WALL_MS,
            },
            Txn::CreateSession {
                session_id,
                timeout_ms: 40_000,
                passwd: resp.passwd[..].try_into().unwrap(),
            }
        )]
    );
    assert!(e.core.failed().is_none());
    assert!(!conn.kill.is_cancelled());
}

#[test]
fn the_same_seed_gives_the_same_session_and_password_and_another_seed_another_password() {
    let handshake = |seed: u64| -> Vec<Out> {
        let mut e = Engine::standalone(standalone_config(""), seed);
        let mut conn = e.connect(1, 30_000);
        assert!(e.flush());
        conn.take()
    };
    let a = handshake(42);
    let b = handshake(42);
    let c = handshake(43);
    assert_eq!(a.len(), 2, "{a:?}");
    // Byte for byte: the same inputs give the same effects.
    assert_eq!(a, b);

    let (ra, rc) = (connect_response(&a[1]), connect_response(&c[1]));
    // The id comes from the server id and the wall clock, the password from the RNG.
    assert_eq!(ra.session_id, first_session_id(SERVER_ID, WALL_MS));
    assert_eq!(rc.session_id, ra.session_id);
    assert_eq!(rc.timeout_ms, ra.timeout_ms);
    assert_ne!(rc.passwd, ra.passwd);
}

#[test]
fn pipelined_writes_and_a_read_are_answered_in_xid_order_after_one_flush() {
    let mut e = Engine::standalone(standalone_config(""), 2);
    let (mut conn, session) = e.session(1, 30_000);
    let first_write = 2; // the session's createSession took zxid 1
    let t0 = WALL_MS;

    e.request(&conn, 1, create("/a", b"x", CreateMode::Persistent));
    e.request(&conn, 2, create("/b", b"yy", CreateMode::Persistent));
    e.request(&conn, 3, get_data("/a"));
    assert_eq!(conn.take(), vec![], "no reply before the flush");
    assert_eq!(e.writer.queued(), 2, "two records queued, the read waits");

    // Both writes share one sync.
    let synced = e.writer.flush().expect("a batch").expect("a good sync");
    assert_eq!(synced.zxid, first_write + 1);
    e.core.handle(Event::from_sync(Ok(synced)));
    assert_eq!(e.writer.queued(), 0, "the read queued nothing");

    let out = conn.take();
    assert_eq!(out.len(), 3, "{out:?}");
    let replies = [
        reply(&out[0], OpCode::Create),
        reply(&out[1], OpCode::Create),
        reply(&out[2], OpCode::GetData),
    ];
    let expected = [
        (
            ReplyHeader {
                xid: 1,
                zxid: first_write,
                err: 0,
            },
            Some(Response::Create(CreateResponse { path: "/a".into() })),
        ),
        (
            ReplyHeader {
                xid: 2,
                zxid: first_write + 1,
                err: 0,
            },
            Some(Response::Create(CreateResponse { path: "/b".into() })),
        ),
        (
            // A read carries the last applied zxid: /b's.
            ReplyHeader {
                xid: 3,
                zxid: first_write + 1,
                err: 0,
            },
            Some(Response::GetData(GetDataResponse {
                data: Some(b"x".to_vec()),
                stat: Stat {
                    czxid: first_write,
                    mzxid: first_write,
                    ctime: t0,
                    mtime: t0,
                    version: 0,
                    cversion: 0,
                    aversion: 0,
                    ephemeral_owner: 0,
                    data_length: 1,
                    num_children: 0,
                    pzxid: first_write,
                },
            })),
        ),
    ];
    assert_eq!(replies, expected);

    let records: Vec<(i64, i64, i32)> = log_records(&e.backend)
        .iter()
        .map(|(h, _)| (h.zxid, h.session_id, h.cxid))
        .collect();
    assert_eq!(
        records,
        vec![
            (1, session.session_id, 0),
            (2, session.session_id, 1),
            (3, session.session_id, 2)
        ]
    );
}

#[test]
fn a_failed_sync_means_the_write_is_never_acknowledged_and_the_core_has_failed() {
    let mut e = Engine::standalone(standalone_config(""), 3);
    let (mut conn, _) = e.session(1, 30_000);
    e.request(&conn, 1, create("/ok", b"", CreateMode::Persistent));
    assert!(e.flush());
    assert_eq!(conn.take().len(), 1);

    e.backend.fail_syncs();
    e.request(&conn, 2, create("/doomed", b"", CreateMode::Persistent));
    assert_eq!(e.writer.queued(), 1);
    let err = e
        .writer
        .flush()
        .expect("a batch")
        .expect_err("the sync fails");
    let why = err.to_string();
    assert!(
        why.contains("injected EIO") && why.contains("fdatasync"),
        "{why}"
    );
    assert!(e.core.failed().is_none());
    e.core.handle(Event::from_sync(Err(err)));

    assert_eq!(e.core.failed(), Some(why.as_str()));
    assert_eq!(conn.take(), vec![], "the write is not acknowledged");
    assert_eq!(e.core.last_zxid(), 2, "nor applied");
    // The writer reports a failure once and stops: nothing later becomes durable.
    e.request(&conn, 3, create("/later", b"", CreateMode::Persistent));
    assert!(e.writer.flush().is_none());
    assert_eq!(conn.take(), vec![]);
    // What survives a crash holds the acknowledged write and not the failed one.
    let after = e.backend.crash(1);
    let recovered =
        rookery_server::storage::recovery::recover(&after, DATA.as_ref(), DATA.as_ref())
            .expect("recovery");
    assert!(recovered.tree.get("/ok").is_some());
    assert!(recovered.tree.get("/doomed").is_none());
}

#[test]
fn a_storage_failed_event_stops_acknowledgements() {
    let mut e = Engine::standalone(standalone_config(""), 4);
    let (mut conn, _) = e.session(1, 30_000);
    e.request(&conn, 1, create("/a", b"", CreateMode::Persistent));
    assert_eq!(e.writer.queued(), 1);
    e.core
        .handle(Event::StorageFailed("the disk went away".into()));
    assert_eq!(e.core.failed(), Some("the disk went away"));
    assert_eq!(conn.take(), vec![]);
    assert_eq!(e.core.last_zxid(), 1);
}

#[test]
fn an_expired_session_is_closed_by_one_record_and_its_ephemeral_node_goes() {
    let mut e = Engine::standalone(standalone_config(""), 5);
    // The shortest timeout (2 ticks) for the session that expires, the longest for the other.
    let (mut a, sa) = e.session(1, 4_000);
    let (mut b, _) = e.session(2, 40_000);
    assert_eq!(sa.timeout_ms, 4_000);
    e.request(&a, 1, create("/e", b"", CreateMode::Ephemeral));
    assert!(e.flush());
    let out = a.take();
    assert_eq!(out.len(), 1);
    assert_eq!(reply(&out[0], OpCode::Create).0.err, 0);
    let created = e.core.last_zxid();

    // The deadline is the timeout from the last request, rounded up to a tick: 4 s here.
    e.env.advance_ms(3_999);
    e.core.tick();
    assert_eq!(e.writer.queued(), 0, "not yet expired");
    assert_eq!(a.take(), vec![]);

    e.env.advance_ms(1);
    e.core.tick();
    assert_eq!(e.writer.queued(), 1, "exactly one record: the close");
    assert_eq!(a.take(), vec![Out::Close]);
    assert_eq!(b.take(), vec![]);
    assert!(e.env.job_names().is_empty());
    // A second tick does not close it again.
    e.core.tick();
    assert_eq!(e.writer.queued(), 1);

    assert!(e.flush());
    let close = created + 1;
    assert_eq!(e.core.last_zxid(), close);
    let (hdr, txn) = log_records(&e.backend).pop().expect("records");
    assert_eq!(
        (hdr, txn),
        (
            TxnHeader {
                session_id: sa.session_id,
                cxid: 0,
                zxid: close,
                time_ms: WALL_MS + 4_000,
            },
            Txn::CloseSession {
                session_id: sa.session_id
            }
        )
    );
    assert_eq!(a.take(), vec![], "the connection is gone");

    e.request(&b, 1, get_data("/e"));
    let out = b.take();
    assert_eq!(out.len(), 1);
    assert_eq!(
        reply(&out[0], OpCode::GetData),
        (
            ReplyHeader {
                xid: 1,
                zxid: close,
                err: ErrorCode::NoNode.code(),
            },
            None
        )
    );
}

#[test]
fn a_snapshot_runs_as_one_background_job_and_lands_on_the_backend() {
    // snapCount=2: a snapshot after one or two applied transactions (ZooKeeper's random
    // spacing); each batch here holds one.
    let mut e = Engine::standalone(standalone_config("snapCount=2"), 6);
    let (mut conn, _) = e.session(1, 30_000);
    let mut batches = 1;
    let mut xid = 0;
    // Bounded: the spacing is at most snapCount transactions.
    while e.env.job_names().is_empty() && batches < 4 {
        xid += 1;
        e.request(
            &conn,
            xid,
            create(&format!("/n{xid}"), b"", CreateMode::Persistent),
        );
        assert!(e.flush());
        assert_eq!(conn.take().len(), 1);
        batches += 1;
    }
    assert!(batches <= 2, "no snapshot after {batches} batches");
    assert_eq!(e.env.job_names(), vec!["rookery-snapshot"]);
    let zxid = e.core.last_zxid();
    // The log rolls to a new segment after the records the snapshot covers.
    assert_eq!(e.writer.queued(), 1, "the roll");
    assert!(e.flush());

    // While it runs, more batches start no other snapshot.
    for _ in 0..3 {
        xid += 1;
        e.request(
            &conn,
            xid,
            create(&format!("/n{xid}"), b"", CreateMode::Persistent),
        );
        assert!(e.flush());
        assert_eq!(conn.take().len(), 1);
    }
    assert_eq!(e.env.job_names(), vec!["rookery-snapshot"]);

    let name = format!("{DATA}/snapshot.{zxid:016x}");
    assert!(e.backend.contents(Path::new(&name)).is_none());
    assert!(e.events.try_recv().is_err(), "no event before the job runs");
    assert_eq!(e.env.run_jobs(), 1);
    let done = e.events.try_recv().expect("the job reports back");
    assert!(
        matches!(&done, Event::SnapshotDone(Ok(z)) if *z == zxid),
        "{done:?}"
    );
    assert!(e.events.try_recv().is_err(), "one event");
    e.core.handle(done);
    assert!(e.backend.contents(Path::new(&name)).is_some(), "{name}");

    // Recovery starts from that snapshot and replays the records after it.
    let recovered =
        rookery_server::storage::recovery::plan(&e.backend, DATA.as_ref(), DATA.as_ref())
            .expect("recovery");
    assert_eq!(recovered.snapshot, Some((name.into(), zxid)));
    assert_eq!(recovered.replayed, Some((zxid + 1, e.core.last_zxid())));
    for i in 1..=xid {
        assert!(recovered.tree.get(&format!("/n{i}")).is_some(), "/n{i}");
    }

    // The records after the snapshot went to a new segment.
    let segments: Vec<i64> = list_segments(&e.backend, Path::new(DATA))
        .expect("segments")
        .into_iter()
        .map(|(first, _)| first)
        .collect();
    assert_eq!(segments, vec![1, zxid + 1]);

    // The next batch may start the next snapshot; never more than one job at a time.
    xid += 1;
    e.request(
        &conn,
        xid,
        create(&format!("/n{xid}"), b"", CreateMode::Persistent),
    );
    assert!(e.flush());
    assert!(e.env.job_names().len() <= 1);
}

#[test]
fn an_ensemble_member_starts_by_sending_election_notifications_to_the_others() {
    let cfg = Config::parse(&format!(
        "tickTime=2000\ndataDir={DATA}\npreAllocSize=64\nmyid=1\n\
         server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.2:2888:3888\n\
         server.3=127.0.0.3:2888:3888\n"
    ))
    .expect("a valid zoo.cfg");
    assert!(cfg.is_ensemble());
    let net = Recorder::default();
    let mut e = Engine::start(cfg, 9, Some(Box::new(net.clone())));
    assert!(net.take().is_empty(), "building the member sends nothing");

    e.core.zab_tick();
    let sent: Vec<(PeerId, Message)> = net
        .take()
        .into_iter()
        .map(|(to, msg)| match msg {
            PeerMsg::Zab(m) => (to, m),
            other => panic!("not a ZAB message: {other:?}"),
        })
        .collect();
    let looking = Message::Notification(Notification {
        state: ServerState::Looking,
        vote: Vote {
            leader: 1,
            zxid: Zxid::ZERO,
            peer_epoch: 0,
        },
        election_epoch: 1,
    });
    // The first round's notifications, then (the resend interval starting at one tick) their
    // first resend.
    assert_eq!(
        sent,
        vec![
            (2, looking.clone()),
            (3, looking.clone()),
            (2, looking.clone()),
            (3, looking),
        ]
    );
    // An election stores nothing and answers no client.
    assert_eq!(e.writer.queued(), 0);
    let mut client = e.connect(1, 30_000);
    assert_eq!(
        client.take(),
        vec![Out::Close],
        "not serving while electing"
    );
    assert_eq!(e.writer.queued(), 0);

    // Nothing more until the resend interval (now two ticks) has passed.
    e.core.zab_tick();
    assert!(net.take().is_empty());
    e.core.zab_tick();
    assert_eq!(net.take().len(), 2);
}

#[test]
fn snap_count_counts_transactions_not_batches() {
    // snapCount=10: a snapshot after 5 to 10 transactions, however they are batched.
    let mut e = Engine::standalone(standalone_config("snapCount=10"), 6);
    let (mut conn, _) = e.session(1, 30_000);
    for xid in 1..=10 {
        e.request(
            &conn,
            xid,
            create(&format!("/n{xid}"), b"", CreateMode::Persistent),
        );
    }
    assert!(e.env.job_names().is_empty());
    assert!(e.flush(), "the ten creates are one batch");
    assert_eq!(conn.take().len(), 10);
    assert_eq!(e.env.job_names(), vec!["rookery-snapshot"]);
}
