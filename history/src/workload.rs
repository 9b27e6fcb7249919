//! The workload: concurrent `rookery-client` sessions doing a mix of plain reads, sync-reads
//! (`sync` and `getData` pipelined), unconditional writes, compare-and-set writes and
//! sequential creates over a few znodes; reads leaving watches on the registers; a queue
//! (enqueue, take); `multi` writes and `multiRead` reads of a pair of registers; ephemeral
//! nodes whose sessions are closed or cut off; recording every invocation, completion and
//! watch delivery.
//!
//! Each session sends a small batch of requests at once (the client queues each request when
//! it is called, so a batch is pipelined in order) and records the completions in the order it
//! sees them, which is what the FIFO check needs. Every request is bounded by
//! `op_timeout_ms`; a request that times out is indeterminate (it may still run later: the
//! client does not cancel queued requests). A session that expires is replaced by a new one,
//! which is a new process in the history; so is one the harness closes on purpose now and
//! then ([`WorkloadConfig::end_session_every`]).
//!
//! Watches: the client hands a notification to its watcher when it reads the frame, before it
//! hands over any reply that came after it on the connection. So before recording each
//! completion the session polls its armed watchers ([`drain_watches`]): a watch the client
//! delivered before a reply is recorded with a smaller sequence number than that reply's
//! completion. (A watch delivered just after may be recorded before it too, which only makes
//! the watch checker miss a violation, never invent one.)

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use futures::FutureExt;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rookery_client::{
    Client, CreateMode, CreateOptions, Error, OneshotWatcher, OpResult, ReadResult,
};
use rookery_testkit::proxy::Proxy;

use crate::history::{
    sequence_of, value_of, Call, Delivery, EphemeralNode, MemberState, Op, Outcome, Process,
    RegisterState, Reply, ServerError, TreeDigest, WatchEvent,
};

/// Relative weights of the operation kinds.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    pub read: u32,
    pub sync_read: u32,
    pub write: u32,
    pub cas: u32,
    pub create_seq: u32,
    /// A read of the sequential parent's number of children, after a `sync` (J6's counter).
    pub count: u32,
    /// `getData` or `exists` leaving a watch on a register; while the session has a watch
    /// armed on the key drawn, a plain read of it instead (one watch per key and session).
    pub watch_read: u32,
    pub enqueue: u32,
    /// A take from the queue (`getChildren`, `getData` of the lowest, `delete`).
    pub dequeue: u32,
    pub pair_read: u32,
    pub pair_cas: u32,
    /// `exists` of the session's own ephemeral node.
    pub own_ephemeral: u32,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            read: 16,
            sync_read: 16,
            write: 12,
            cas: 24,
            create_seq: 10,
            count: 4,
            watch_read: 10,
            enqueue: 6,
            dequeue: 6,
            pair_read: 5,
            pair_cas: 5,
            own_ephemeral: 2,
        }
    }
}

impl Mix {
    fn total(&self) -> u32 {
        self.read
            + self.sync_read
            + self.write
            + self.cas
            + self.create_seq
            + self.count
            + self.watch_read
            + self.enqueue
            + self.dequeue
            + self.pair_read
            + self.pair_cas
            + self.own_ephemeral
    }
}

/// What the sessions do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent sessions.
    pub clients: usize,
    /// The registers (full paths), created beforehand with data `"0"`.
    pub registers: Vec<String>,
    /// The parent of sequential creates, created beforehand.
    pub parent: String,
    /// Registers written only together, by `multi` (created beforehand with `"0"`); empty: no
    /// pair operations.
    pub pair: Vec<String>,
    /// The queue node, created beforehand; empty: no queue operations.
    pub queue: String,
    /// The parent of the sessions' ephemeral nodes, created beforehand; empty: none.
    pub ephemeral_parent: String,
    pub session_timeout_ms: u64,
    pub connect_timeout_ms: u64,
    /// The longest the harness waits for one request before calling it indeterminate.
    pub op_timeout_ms: u64,
    /// Pause between a session's batches, to keep the load modest on a small machine.
    pub think_ms: u64,
    /// Requests a session pipelines at once (1 to this many).
    pub max_batch: usize,
    /// After each batch a session closes itself with probability 1 in this (0: never), and a
    /// new session takes its place: closes while the ensemble is under faults, and many
    /// sessions' ephemerals to clean up.
    pub end_session_every: u32,
    pub mix: Mix,
    pub seed: u64,
}

/// What a session slot recorded.
#[derive(Debug, Default)]
pub struct Recorded {
    pub ops: Vec<Op>,
    pub watches: Vec<WatchEvent>,
}

impl Recorded {
    pub fn extend(&mut self, other: Recorded) {
        self.ops.extend(other.ops);
        self.watches.extend(other.watches);
    }
}

/// The shared clock and counters of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    seq: AtomicU64,
    process: AtomicU32,
    /// Register values and create tokens, unique across the run (0 is the initial value).
    value: AtomicU64,
}

/// An invocation waiting for its completion.
#[derive(Debug)]
pub struct Pending {
    process: Process,
    session_id: i64,
    call: Call,
    invoke_ns: u64,
    invoke_seq: u64,
}

impl Recorder {
    pub fn new(start: Instant) -> Arc<Recorder> {
        Arc::new(Recorder {
            start,
            seq: AtomicU64::new(0),
            process: AtomicU32::new(0),
            value: AtomicU64::new(1),
        })
    }

    /// Nanoseconds since the start of the run, on the monotonic clock.
    pub fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub fn next_process(&self) -> Process {
        self.process.fetch_add(1, Ordering::SeqCst)
    }

    pub fn next_value(&self) -> u64 {
        self.value.fetch_add(1, Ordering::SeqCst)
    }

    /// Records an invocation: call it before the request is queued.
    pub fn invoke(&self, process: Process, session_id: i64, call: Call) -> Pending {
        Pending {
            process,
            session_id,
            call,
            invoke_ns: self.now_ns(),
            invoke_seq: self.seq.fetch_add(1, Ordering::SeqCst),
        }
    }

    /// Records a watch delivery, now.
    pub fn watch_event(
        &self,
        process: Process,
        session_id: i64,
        key: String,
        set_by: u64,
        delivery: Delivery,
    ) -> WatchEvent {
        WatchEvent {
            process,
            session_id,
            key,
            set_by,
            at_ns: self.now_ns(),
            seq: self.seq.fetch_add(1, Ordering::SeqCst),
            delivery,
        }
    }

    /// Records the completion (none for an indeterminate outcome).
    pub fn complete(&self, p: Pending, outcome: Outcome) -> Op {
        let (complete_ns, complete_seq) = if matches!(outcome, Outcome::Unknown { .. }) {
            (None, None)
        } else {
            (
                Some(self.now_ns()),
                Some(self.seq.fetch_add(1, Ordering::SeqCst)),
            )
        };
        Op {
            id: 0,
            process: p.process,
            session_id: p.session_id,
            call: p.call,
            invoke_ns: p.invoke_ns,
            complete_ns,
            invoke_seq: p.invoke_seq,
            complete_seq,
            outcome,
        }
    }
}

/// How a request ended, as the session sees it.
pub struct Completed {
    pub outcome: Outcome,
    /// The session is gone for good.
    pub ended: bool,
    /// The watch a [`Call::WatchRead`] left.
    pub watcher: Option<OneshotWatcher>,
}

fn done(outcome: Outcome, ended: bool) -> Completed {
    Completed {
        outcome,
        ended,
        watcher: None,
    }
}

type Issued = Pin<Box<dyn Future<Output = Completed> + Send>>;

/// What a failed request means for the history.
pub fn outcome_of_error(e: &Error) -> Outcome {
    let reason = e.to_string();
    if e.is_outcome_unknown() {
        return Outcome::Unknown { reason };
    }
    match e {
        // Never left the client (reads always say so: they cannot have changed anything).
        Error::ConnectionLoss { .. }
        | Error::TooManyRequests { .. }
        | Error::InvalidArgument(_) => Outcome::NotSent { reason },
        Error::BadVersion => Outcome::Failed(ServerError::BadVersion),
        Error::NoNode => Outcome::Failed(ServerError::NoNode),
        Error::NodeExists => Outcome::Failed(ServerError::NodeExists),
        // A multi that failed applied nothing; the checkers want to know a failed version
        // check like a failed CAS.
        Error::MultiFailed { source, .. } => match source.as_ref() {
            Error::BadVersion => Outcome::Failed(ServerError::BadVersion),
            Error::NoNode => Outcome::Failed(ServerError::NoNode),
            other => Outcome::Failed(ServerError::Other {
                code: other.code().unwrap_or(0),
                name: reason,
            }),
        },
        // A request pending when the session ended may have been applied before.
        Error::SessionExpired
        | Error::ClientClosed
        | Error::AuthFailed
        | Error::Timeout(_)
        | Error::Protocol(_) => Outcome::Unknown { reason },
        other => match other.code() {
            Some(code) => Outcome::Failed(ServerError::Other { code, name: reason }),
            None => Outcome::Unknown { reason },
        },
    }
}

fn failed(e: Error) -> Completed {
    done(outcome_of_error(&e), e.is_session_terminated())
}

/// Completes a read the caller queued right after a `sync` (both already sent, in that order,
/// so the server runs the read after the sync): `reply` makes the outcome of a read behind a
/// successful sync. A read behind a failed sync is no linearizable read: it counts as not done.
fn after_sync<T: Send + 'static>(
    sync: impl Future<Output = Result<(), Error>> + Send + 'static,
    read: impl Future<Output = Result<T, Error>> + Send + 'static,
    reply: impl FnOnce(T) -> Completed + Send + 'static,
) -> Issued {
    Box::pin(async move {
        let (s, r) = futures::join!(sync, read);
        match (s, r) {
            (Ok(()), Ok(v)) => reply(v),
            (Err(e), _) => {
                let terminated = e.is_session_terminated();
                let reason = format!("sync failed: {e}");
                done(Outcome::NotSent { reason }, terminated)
            }
            (Ok(()), Err(e)) => failed(e),
        }
    })
}

fn read_reply(data: &[u8], stat: &rookery_client::Stat) -> Reply {
    Reply::Read {
        value: value_of(data),
        version: stat.version,
        mzxid: stat.mzxid,
    }
}

/// The name after the last `/`, and its sequence number (-1 when not sequential).
fn created(path: &str, stat: &rookery_client::Stat) -> Reply {
    let name = path.rsplit('/').next().unwrap_or_default().to_string();
    let seq = sequence_of(&name).unwrap_or(-1);
    Reply::Created {
        name,
        seq,
        czxid: stat.czxid,
    }
}

/// A create of `path` (a prefix for sequential modes) holding `token`.
fn create(c: &Client, path: &str, token: u64, mode: CreateMode) -> Issued {
    let f = c.create2(
        path,
        token.to_string().as_bytes(),
        &CreateOptions::new(mode),
    );
    Box::pin(async move {
        match f.await {
            Ok((path, stat)) => done(Outcome::Ok(created(&path, &stat)), false),
            Err(e) => failed(e),
        }
    })
}

/// Queues `call` on `c` now and returns its outcome's future. [`Call::Take`],
/// [`Call::EndSession`] and [`Call::Resume`] are procedures of their own ([`take_one`],
/// [`end_session`], [`resume_probe`]): here they are refused without being sent.
pub fn issue(c: &Client, call: &Call) -> Issued {
    match call {
        Call::Read { key } => {
            let f = c.get_data(key);
            Box::pin(async move {
                match f.await {
                    Ok((data, stat)) => done(Outcome::Ok(read_reply(&data, &stat)), false),
                    Err(e) => failed(e),
                }
            })
        }
        Call::SyncRead { key } => {
            let s = c.sync(key);
            let g = c.get_data(key);
            after_sync(s, g, |(data, stat)| {
                done(Outcome::Ok(read_reply(&data, &stat)), false)
            })
        }
        Call::Write { key, value } => {
            let f = c.set_data(key, value.to_string().as_bytes(), None);
            Box::pin(async move { written(f.await) })
        }
        Call::Cas {
            key,
            expected_version,
            value,
        } => {
            let f = c.set_data(key, value.to_string().as_bytes(), Some(*expected_version));
            Box::pin(async move { written(f.await) })
        }
        Call::CreateSeq { parent, token } => create(
            c,
            &format!("{parent}/c"),
            *token,
            CreateMode::PersistentSequential,
        ),
        Call::WatchRead { key, exists: false } => {
            let f = c.get_data_watched(key);
            Box::pin(async move {
                match f.await {
                    Ok((data, stat, w)) => Completed {
                        outcome: Outcome::Ok(read_reply(&data, &stat)),
                        ended: false,
                        watcher: Some(w),
                    },
                    Err(e) => failed(e),
                }
            })
        }
        Call::WatchRead { key, exists: true } => {
            let f = c.exists_watched(key);
            Box::pin(async move {
                match f.await {
                    Ok((Some(stat), w)) => Completed {
                        outcome: Outcome::Ok(Reply::Stat {
                            version: stat.version,
                            mzxid: stat.mzxid,
                        }),
                        ended: false,
                        watcher: Some(w),
                    },
                    // Registers are never deleted; the exist watch this leaves is dropped.
                    Ok((None, _)) => done(Outcome::Failed(ServerError::NoNode), false),
                    Err(e) => failed(e),
                }
            })
        }
        Call::Enqueue { queue, token } => create(
            c,
            &format!("{queue}/qn-"),
            *token,
            CreateMode::PersistentSequential,
        ),
        Call::PairRead { keys } => {
            let first = keys.first().cloned().unwrap_or_default();
            let s = c.sync(&first);
            let mut m = c.multi_read();
            for k in keys {
                m = m.get_data(k);
            }
            let r = m.execute();
            after_sync(s, r, |results| {
                let mut reads = Vec::new();
                for res in results {
                    match res {
                        Ok(ReadResult::Data { data, stat }) => reads.push(RegisterState {
                            value: value_of(&data),
                            version: stat.version,
                            mzxid: stat.mzxid,
                        }),
                        // Each read of a multiRead fails on its own: the pair's keys always
                        // exist, so this is a server's error reply.
                        Ok(other) => {
                            let reason = format!("multiRead gave {other:?}");
                            return done(
                                Outcome::Failed(ServerError::Other {
                                    code: 0,
                                    name: reason,
                                }),
                                false,
                            );
                        }
                        Err(e) => return done(outcome_of_error(&e), false),
                    }
                }
                done(Outcome::Ok(Reply::Pair { reads }), false)
            })
        }
        Call::PairCas {
            keys,
            expected_version,
            value,
        } => {
            let data = value.to_string();
            let first = keys.first().cloned().unwrap_or_default();
            let mut m = c.multi().check(&first, *expected_version);
            for k in keys {
                m = m.set_data(k, data.as_bytes(), None);
            }
            let f = m.commit();
            Box::pin(async move {
                match f.await {
                    Ok(results) => {
                        let (mut versions, mut mzxids) = (Vec::new(), Vec::new());
                        for r in results {
                            if let OpResult::SetData(stat) = r {
                                versions.push(stat.version);
                                mzxids.push(stat.mzxid);
                            }
                        }
                        done(Outcome::Ok(Reply::PairWritten { versions, mzxids }), false)
                    }
                    Err(e) => failed(e),
                }
            })
        }
        Call::CreateEphemeral { path, token } => create(c, path, *token, CreateMode::Ephemeral),
        Call::Count { parent } => {
            let s = c.sync(parent);
            let e = c.exists(parent);
            after_sync(s, e, |stat| match stat {
                Some(stat) => done(
                    Outcome::Ok(Reply::Count {
                        children: stat.num_children,
                    }),
                    false,
                ),
                None => done(Outcome::Failed(ServerError::NoNode), false),
            })
        }
        Call::OwnEphemeral { path } => {
            let f = c.exists(path);
            Box::pin(async move {
                match f.await {
                    Ok(stat) => done(
                        Outcome::Ok(Reply::Exists {
                            owner: stat.map(|s| s.ephemeral_owner),
                        }),
                        false,
                    ),
                    Err(e) => failed(e),
                }
            })
        }
        Call::Take { .. } | Call::EndSession { .. } | Call::Resume => {
            let reason = format!("{} is not a single request", call.kind());
            Box::pin(std::future::ready(done(Outcome::NotSent { reason }, false)))
        }
    }
}

fn written(r: rookery_client::Result<rookery_client::Stat>) -> Completed {
    match r {
        Ok(stat) => done(
            Outcome::Ok(Reply::Written {
                version: stat.version,
                mzxid: stat.mzxid,
            }),
            false,
        ),
        Err(e) => failed(e),
    }
}

/// A client of `connect`, or an error after `connect_timeout_ms`.
pub async fn connect(
    connect: &str,
    session_timeout_ms: u64,
    connect_timeout_ms: u64,
    seed: u64,
) -> Result<Client, String> {
    let fut = Client::builder(connect)
        .session_timeout(Duration::from_millis(session_timeout_ms))
        .connect_timeout(Duration::from_millis(connect_timeout_ms))
        .rng_seed(seed)
        .connect();
    // The builder bounds itself; the outer bound is a guard against a hang.
    match tokio::time::timeout(Duration::from_millis(connect_timeout_ms + 2_000), fut).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no session within {connect_timeout_ms} ms")),
    }
}

/// A watch the session holds, not yet delivered.
struct Armed {
    key: String,
    /// The `invoke_seq` of the read that set it.
    set_by: u64,
    watcher: OneshotWatcher,
}

/// One client session of a slot: a process of the history.
struct Session {
    client: Client,
    process: Process,
    session_id: i64,
    /// The version this session last saw per key (per pair, under its first key).
    versions: HashMap<String, i32>,
    armed: Vec<Armed>,
    /// Keys with a watch armed or being set.
    arming: Vec<String>,
    /// The session's ephemeral node, once its create was acknowledged.
    ephemeral: Option<String>,
}

impl Session {
    fn new(client: Client, process: Process) -> Session {
        let session_id = client.session_id();
        Session {
            client,
            process,
            session_id,
            versions: HashMap::new(),
            armed: Vec::new(),
            arming: Vec::new(),
            ephemeral: None,
        }
    }

    /// Records every watch the client has delivered by now.
    fn drain_watches(&mut self, rec: &Recorder, out: &mut Recorded) {
        drain_watches(
            &mut self.armed,
            &mut self.arming,
            self.process,
            self.session_id,
            rec,
            out,
        );
    }
}

/// Polls each armed watcher once, without waiting, and records those that have fired or
/// ended (they are then disarmed).
fn drain_watches(
    armed: &mut Vec<Armed>,
    arming: &mut Vec<String>,
    process: Process,
    session_id: i64,
    rec: &Recorder,
    out: &mut Recorded,
) {
    armed.retain_mut(|a| {
        let delivery = match (&mut a.watcher).now_or_never() {
            None => return true,
            Some(Ok(ev)) => Delivery::Fired {
                event: format!("{:?}", ev.event_type),
                zxid: ev.zxid,
            },
            Some(Err(e)) => Delivery::Ended {
                reason: e.to_string(),
            },
        };
        out.watches
            .push(rec.watch_event(process, session_id, a.key.clone(), a.set_by, delivery));
        arming.retain(|k| *k != a.key);
        false
    });
}

/// A queue's items among `names` (a listing of the queue node), lowest sequence number first,
/// the order Curator's `DistributedQueue` takes them in: (sequence, name).
pub fn queue_items(names: Vec<String>) -> Vec<(i64, String)> {
    let mut items: Vec<(i64, String)> = names
        .into_iter()
        .filter(|n| n.starts_with("qn-"))
        .map(|n| (sequence_of(&n).unwrap_or(i64::MAX), n))
        .collect();
    items.sort();
    items
}

/// What a session does next.
pub enum Step {
    Call(Call),
    /// A take from the queue (the caller lists the queue, reads the lowest item, deletes it).
    Take,
}

/// What a session knows when it draws its next operation, and where the operations go.
pub struct Draw<'a> {
    pub mix: Mix,
    pub registers: &'a [String],
    /// The parent of sequential creates.
    pub parent: &'a str,
    /// The queue (empty: no queue operations).
    pub queue: &'a str,
    /// The pair's keys (fewer than two: no pair operations).
    pub pair: &'a [String],
    /// The version the session last saw of a key (0 if none).
    pub seen: &'a dyn Fn(&str) -> i32,
    /// The session's ephemeral node, once created.
    pub ephemeral: Option<&'a str>,
}

/// A session's next operation, drawn with the mix's weights: the real-process workload and the
/// simulator both draw with it. `arm(key)` arms a watch on `key` and says whether none was armed
/// (one watch per key and session: the watch checker needs to know which watch a notification
/// fired, and the client fans one notification out to every local watcher of the path);
/// `next_value` gives values and tokens unique in the run.
pub fn pick(
    rng: &mut StdRng,
    d: &Draw<'_>,
    arm: &mut dyn FnMut(&str) -> bool,
    next_value: &mut dyn FnMut() -> u64,
) -> Step {
    let m = d.mix;
    let mut x = rng.gen_range(0..m.total().max(1));
    let key = d.registers[rng.gen_range(0..d.registers.len())].clone();
    let cas = |rng: &mut StdRng, key: &str| {
        // The version this session last saw; now and then one ahead, which fails unless
        // another session's write got there first.
        let seen = (d.seen)(key);
        if rng.gen_ratio(1, 10) {
            seen + 1
        } else {
            seen
        }
    };
    if x < m.read {
        return Step::Call(Call::Read { key });
    }
    x -= m.read;
    if x < m.sync_read {
        return Step::Call(Call::SyncRead { key });
    }
    x -= m.sync_read;
    if x < m.write {
        return Step::Call(Call::Write {
            key,
            value: next_value(),
        });
    }
    x -= m.write;
    if x < m.cas {
        let expected_version = cas(rng, &key);
        return Step::Call(Call::Cas {
            key,
            expected_version,
            value: next_value(),
        });
    }
    x -= m.cas;
    if x < m.create_seq {
        return Step::Call(Call::CreateSeq {
            parent: d.parent.to_owned(),
            token: next_value(),
        });
    }
    x -= m.create_seq;
    if x < m.count {
        return Step::Call(Call::Count {
            parent: d.parent.to_owned(),
        });
    }
    x -= m.count;
    if x < m.watch_read {
        if !arm(&key) {
            return Step::Call(Call::Read { key });
        }
        return Step::Call(Call::WatchRead {
            key,
            exists: rng.gen_bool(0.5),
        });
    }
    x -= m.watch_read;
    if x < m.enqueue + m.dequeue && !d.queue.is_empty() {
        if x < m.enqueue {
            return Step::Call(Call::Enqueue {
                queue: d.queue.to_owned(),
                token: next_value(),
            });
        }
        return Step::Take;
    }
    x = x.saturating_sub(m.enqueue + m.dequeue);
    if x < m.pair_read + m.pair_cas && d.pair.len() >= 2 {
        let keys = d.pair.to_vec();
        if x < m.pair_read {
            return Step::Call(Call::PairRead { keys });
        }
        let expected_version = cas(rng, &keys[0]);
        return Step::Call(Call::PairCas {
            keys,
            expected_version,
            value: next_value(),
        });
    }
    if let Some(path) = d.ephemeral {
        return Step::Call(Call::OwnEphemeral {
            path: path.to_owned(),
        });
    }
    Step::Call(Call::Read { key })
}

/// Sends `calls` pipelined on the session and records their completions, each after
/// recording the watches delivered before it. Returns whether the session is gone.
async fn run_batch(
    s: &mut Session,
    calls: Vec<Call>,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    out: &mut Recorded,
) -> bool {
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    let mut futs = FuturesUnordered::new();
    for call in calls {
        let pending = rec.invoke(s.process, s.session_id, call.clone());
        let f = issue(&s.client, &call);
        futs.push(async move { (pending, tokio::time::timeout(op_timeout, f).await) });
    }
    let mut terminated = false;
    while let Some((pending, r)) = futs.next().await {
        let c = r.unwrap_or_else(|_| {
            let reason = format!("no reply within {} ms", cfg.op_timeout_ms);
            done(Outcome::Unknown { reason }, false)
        });
        terminated |= c.ended;
        s.drain_watches(rec, out);
        match &c.outcome {
            Outcome::Ok(
                Reply::Read { version, .. }
                | Reply::Written { version, .. }
                | Reply::Stat { version, .. },
            ) => {
                s.versions.insert(pending.call.key().to_string(), *version);
            }
            Outcome::Ok(Reply::Pair { reads }) => {
                if let Some(r) = reads.first() {
                    s.versions.insert(pending.call.key().to_string(), r.version);
                }
            }
            Outcome::Ok(Reply::PairWritten { versions, .. }) => {
                if let Some(v) = versions.first() {
                    s.versions.insert(pending.call.key().to_string(), *v);
                }
            }
            Outcome::Ok(Reply::Created { .. }) => {
                if let Call::CreateEphemeral { path, .. } = &pending.call {
                    s.ephemeral = Some(path.clone());
                }
            }
            _ => {}
        }
        let set_by = pending.invoke_seq;
        let key = pending.call.key().to_string();
        let is_watch = matches!(pending.call, Call::WatchRead { .. });
        out.ops.push(rec.complete(pending, c.outcome));
        // Armed after the completion is recorded: a delivery is looked for before each later
        // completion.
        match c.watcher {
            Some(watcher) => s.armed.push(Armed {
                key,
                set_by,
                watcher,
            }),
            None if is_watch => s.arming.retain(|k| *k != key),
            None => {}
        }
    }
    terminated
}

/// One take from the queue, as Curator's `DistributedQueue` does it: list the items, read the
/// lowest, delete it; on `NoNode` (another consumer took it) try the next, at most a few.
/// Only the `delete` is recorded ([`Call::Take`]): it is what consumes an item. The whole take
/// gets one `op_timeout_ms`: a delete still unanswered then is indeterminate. Returns whether
/// the session is gone.
async fn take_one(
    s: &mut Session,
    queue: &str,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    out: &mut Recorded,
) -> bool {
    let until = tokio::time::Instant::now() + Duration::from_millis(cfg.op_timeout_ms);
    let names = match tokio::time::timeout_at(until, s.client.get_children(queue)).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => return e.is_session_terminated(),
        Err(_) => return false,
    };
    let items = queue_items(names);
    for (_, name) in items.into_iter().take(4) {
        let path = format!("{queue}/{name}");
        let token = match tokio::time::timeout_at(until, s.client.get_data(&path)).await {
            Ok(Ok((data, _))) => value_of(&data),
            Ok(Err(Error::NoNode)) => continue,
            Ok(Err(e)) => return e.is_session_terminated(),
            Err(_) => return false,
        };
        let call = Call::Take {
            queue: queue.to_string(),
            name,
            token,
        };
        let pending = rec.invoke(s.process, s.session_id, call);
        let (outcome, ended) =
            match tokio::time::timeout_at(until, s.client.delete(&path, None)).await {
                Ok(Ok(())) => (Outcome::Ok(Reply::Deleted), false),
                Ok(Err(e)) => (outcome_of_error(&e), e.is_session_terminated()),
                Err(_) => {
                    let reason = format!("take not done within {} ms", cfg.op_timeout_ms);
                    (Outcome::Unknown { reason }, false)
                }
            };
        s.drain_watches(rec, out);
        let next = matches!(outcome, Outcome::Failed(ServerError::NoNode));
        out.ops.push(rec.complete(pending, outcome));
        if ended {
            return true;
        }
        if !next {
            return false;
        }
    }
    false
}

/// Closes the session on purpose and records it ([`Call::EndSession`]). The client's `close`
/// completes when the session is over, whether the server acknowledged the close or the
/// session ended on the client's side (a lost connection while closing): the outcome is `Ok`
/// either way, so it is no proof that the ensemble closed the session.
async fn end_session(mut s: Session, rec: &Recorder, out: &mut Recorded) {
    s.drain_watches(rec, out);
    s.armed.clear();
    let pending = rec.invoke(s.process, s.session_id, Call::EndSession { abandon: false });
    let outcome = match tokio::time::timeout(Duration::from_secs(2), s.client.close()).await {
        Ok(_) => Outcome::Ok(Reply::Done),
        Err(_) => Outcome::Unknown {
            reason: "close not done within 2 s".into(),
        },
    };
    out.ops.push(rec.complete(pending, outcome));
}

/// Connects with session seed `seed`, retrying every 200 ms until `deadline`; the last
/// failure is left in `last_error`.
async fn connect_until(
    connect_string: &str,
    cfg: &WorkloadConfig,
    seed: u64,
    deadline: Instant,
    last_error: &mut String,
) -> Option<Client> {
    while Instant::now() < deadline {
        match connect(
            connect_string,
            cfg.session_timeout_ms,
            cfg.connect_timeout_ms,
            seed,
        )
        .await
        {
            Ok(c) => return Some(c),
            Err(e) => {
                *last_error = format!("connecting: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    None
}

/// One session slot: runs sessions against `connect` until `deadline`, replacing a session
/// that ends, and returns everything it recorded. Each session first creates its ephemeral
/// node (when the workload has an ephemeral parent).
pub async fn worker(
    slot: usize,
    connect_string: String,
    cfg: Arc<WorkloadConfig>,
    rec: Arc<Recorder>,
    deadline: Instant,
) -> Recorded {
    let mut rng =
        StdRng::seed_from_u64(cfg.seed ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut out = Recorded::default();
    let mut last_error = String::new();
    while let Some(client) =
        connect_until(&connect_string, &cfg, rng.gen(), deadline, &mut last_error).await
    {
        let mut s = Session::new(client, rec.next_process());
        let mut terminated = false;
        if !cfg.ephemeral_parent.is_empty() {
            let call = Call::CreateEphemeral {
                path: format!("{}/w{}", cfg.ephemeral_parent, s.process),
                token: rec.next_value(),
            };
            terminated = run_batch(&mut s, vec![call], &cfg, &rec, &mut out).await;
        }
        let mut closing = false;
        while !terminated && !closing && Instant::now() < deadline {
            let batch = rng.gen_range(1..=cfg.max_batch.max(1));
            let mut calls = Vec::new();
            let mut take = false;
            for _ in 0..batch {
                let draw = Draw {
                    mix: cfg.mix,
                    registers: &cfg.registers,
                    parent: &cfg.parent,
                    queue: &cfg.queue,
                    pair: &cfg.pair,
                    seen: &|k| s.versions.get(k).copied().unwrap_or(0),
                    ephemeral: s.ephemeral.as_deref(),
                };
                let arming = &mut s.arming;
                let mut arm = |k: &str| {
                    let fresh = !arming.iter().any(|a| a == k);
                    if fresh {
                        arming.push(k.to_owned());
                    }
                    fresh
                };
                match pick(&mut rng, &draw, &mut arm, &mut || rec.next_value()) {
                    Step::Call(c) => calls.push(c),
                    Step::Take => take = true,
                }
            }
            terminated = run_batch(&mut s, calls, &cfg, &rec, &mut out).await;
            if take && !terminated {
                terminated = take_one(&mut s, &cfg.queue, &cfg, &rec, &mut out).await;
            }
            s.drain_watches(&rec, &mut out);
            if cfg.think_ms > 0 {
                tokio::time::sleep(Duration::from_millis(rng.gen_range(0..=cfg.think_ms))).await;
            }
            closing = cfg.end_session_every > 0 && rng.gen_ratio(1, cfg.end_session_every);
        }
        if terminated {
            s.drain_watches(&rec, &mut out);
            let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
        } else {
            end_session(s, &rec, &mut out).await;
        }
    }
    out
}

/// The ephemeral slot (K6, S1): sessions that each connect through a proxy of their own to
/// one member, create an ephemeral node, check it for a short life, and then either close
/// (followed by two attempts to resume the closed session) or are cut
/// off: the proxy is
/// blackholed and the client dropped, so no close ever reaches the ensemble, which has to
/// expire the session and delete its node. A session is cut off only when the ensemble has a
/// session timeout (plus a margin) to expire it before the load ends.
pub async fn ephemeral_worker(
    slot: usize,
    members: Vec<SocketAddr>,
    connect_all: String,
    cfg: Arc<WorkloadConfig>,
    rec: Arc<Recorder>,
    deadline: Instant,
) -> Recorded {
    let mut rng = StdRng::seed_from_u64(
        cfg.seed ^ 0x5eed_e9e3 ^ (slot as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    let mut out = Recorded::default();
    if members.is_empty() || cfg.ephemeral_parent.is_empty() {
        return out;
    }
    while Instant::now() < deadline {
        let proxy = Proxy::start(members[rng.gen_range(0..members.len())]).await;
        let client = match connect(
            &proxy.addr.to_string(),
            cfg.session_timeout_ms,
            cfg.connect_timeout_ms,
            rng.gen(),
        )
        .await
        {
            Ok(c) => c,
            Err(_) => {
                drop(proxy);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let password = client.session_password();
        let mut s = Session::new(client, rec.next_process());
        let call = Call::CreateEphemeral {
            path: format!("{}/x{}", cfg.ephemeral_parent, s.process),
            token: rec.next_value(),
        };
        let mut terminated = run_batch(&mut s, vec![call], &cfg, &rec, &mut out).await;
        let life_end = Instant::now() + Duration::from_millis(rng.gen_range(300..=2_000));
        while !terminated && Instant::now() < life_end.min(deadline) {
            let mut calls = vec![Call::SyncRead {
                key: cfg.registers[rng.gen_range(0..cfg.registers.len())].clone(),
            }];
            if let Some(path) = &s.ephemeral {
                calls.push(Call::OwnEphemeral { path: path.clone() });
            }
            terminated = run_batch(&mut s, calls, &cfg, &rec, &mut out).await;
            tokio::time::sleep(Duration::from_millis(rng.gen_range(50..=200))).await;
        }
        if terminated {
            let _ = tokio::time::timeout(Duration::from_secs(2), s.client.close()).await;
            continue;
        }
        let expire_by = Instant::now() + Duration::from_millis(cfg.session_timeout_ms + 3_000);
        if expire_by < deadline && rng.gen_bool(0.5) {
            // Cut off: whatever the client sends from now on (its close, when dropped) is
            // swallowed, and dropping the proxy closes both of its connections.
            proxy.blackhole();
            let pending = rec.invoke(s.process, s.session_id, Call::EndSession { abandon: true });
            out.ops
                .push(rec.complete(pending, Outcome::Ok(Reply::Done)));
            drop(s);
            tokio::time::sleep(Duration::from_millis(50)).await;
            drop(proxy);
        } else {
            let (session_id, own) = (s.session_id, s.ephemeral.clone());
            end_session(s, &rec, &mut out).await;
            drop(proxy);
            // Not after the load: the harness waits for the slots only so long.
            let probes = if Instant::now() < deadline { 2 } else { 0 };
            for _ in 0..probes {
                resume_probe(
                    &connect_all,
                    session_id,
                    &password,
                    own.clone(),
                    &cfg,
                    &rec,
                    &mut out,
                )
                .await;
            }
        }
    }
    out
}

/// Tries to resume a session with its id and password ([`Call::Resume`], a new process with
/// that session id): refused with `SessionExpired` when the ensemble holds the session closed
/// or expired. If it succeeds the session is alive, so its ephemeral node must still be there
/// ([`Call::OwnEphemeral`] is checked), and it is closed again. Client-side expiry is turned
/// off for the probe, so that `SessionExpired` can only be a server's answer.
async fn resume_probe(
    connect_all: &str,
    session_id: i64,
    password: &[u8],
    own: Option<String>,
    cfg: &WorkloadConfig,
    rec: &Recorder,
    out: &mut Recorded,
) {
    let process = rec.next_process();
    let pending = rec.invoke(process, session_id, Call::Resume);
    let fut = Client::builder(connect_all)
        .session_timeout(Duration::from_millis(cfg.session_timeout_ms))
        .connect_timeout(Duration::from_millis(cfg.connect_timeout_ms))
        .client_expiry_factor(100.0)
        .resume_session(session_id, password.to_vec())
        .connect();
    let bound = Duration::from_millis(cfg.connect_timeout_ms + 2_000);
    let client = match tokio::time::timeout(bound, fut).await {
        Ok(Ok(c)) => {
            out.ops
                .push(rec.complete(pending, Outcome::Ok(Reply::Done)));
            c
        }
        Ok(Err(Error::SessionExpired)) => {
            let outcome = Outcome::Failed(ServerError::SessionExpired);
            out.ops.push(rec.complete(pending, outcome));
            return;
        }
        Ok(Err(e)) => {
            let reason = format!("resume: {e}");
            out.ops
                .push(rec.complete(pending, Outcome::NotSent { reason }));
            return;
        }
        Err(_) => {
            let reason = "resume: no answer in time".to_string();
            out.ops
                .push(rec.complete(pending, Outcome::NotSent { reason }));
            return;
        }
    };
    let mut s = Session::new(client, process);
    if let Some(path) = own {
        run_batch(&mut s, vec![Call::OwnEphemeral { path }], cfg, rec, out).await;
    }
    end_session(s, rec, out).await;
}

/// Takes every item left in `queue` (the end of a run, no other consumer left): lists, reads
/// and deletes in pipelined chunks, recording each delete as a [`Call::Take`] of its own
/// process, until the listing is empty or `max` has passed.
pub async fn drain_queue(
    connect_string: &str,
    queue: &str,
    rec: &Recorder,
    cfg: &WorkloadConfig,
    max: Duration,
) -> (Vec<Op>, Result<usize, String>) {
    let deadline = Instant::now() + max;
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    let mut ops = Vec::new();
    let mut taken = 0;
    let mut last_error = String::from("not tried");
    while let Some(c) =
        connect_until(connect_string, cfg, cfg.seed, deadline, &mut last_error).await
    {
        let process = rec.next_process();
        let session_id = c.session_id();
        let result: Result<bool, String> = async {
            while Instant::now() < deadline {
                let s = c.sync(queue);
                let l = c.get_children(queue);
                let listing = async {
                    s.await?;
                    l.await
                };
                let mut names = tokio::time::timeout(op_timeout, listing)
                    .await
                    .map_err(|_| format!("listing {queue} timed out"))?
                    .map_err(|e| format!("listing {queue}: {e}"))?;
                if names.is_empty() {
                    return Ok(true);
                }
                names.sort_by_key(|n| sequence_of(n).unwrap_or(i64::MAX));
                for chunk in names.chunks(200) {
                    let reads: Vec<_> = chunk
                        .iter()
                        .map(|n| c.get_data(&format!("{queue}/{n}")))
                        .collect();
                    let datas = tokio::time::timeout(op_timeout, futures::future::join_all(reads))
                        .await
                        .map_err(|_| format!("reading the items of {queue} timed out"))?;
                    let mut deletes = Vec::new();
                    for (name, d) in chunk.iter().zip(datas) {
                        let token = match d {
                            Ok((data, _)) => value_of(&data),
                            Err(Error::NoNode) => continue,
                            Err(e) => return Err(format!("reading {queue}/{name}: {e}")),
                        };
                        let call = Call::Take {
                            queue: queue.to_string(),
                            name: name.clone(),
                            token,
                        };
                        let pending = rec.invoke(process, session_id, call);
                        let f = c.delete(&format!("{queue}/{name}"), None);
                        deletes.push(async move {
                            (pending, tokio::time::timeout(op_timeout, f).await)
                        });
                    }
                    for (pending, r) in futures::future::join_all(deletes).await {
                        let outcome = match r {
                            Ok(Ok(())) => {
                                taken += 1;
                                Outcome::Ok(Reply::Deleted)
                            }
                            Ok(Err(e)) => outcome_of_error(&e),
                            Err(_) => Outcome::Unknown {
                                reason: "drain: no reply in time".into(),
                            },
                        };
                        ops.push(rec.complete(pending, outcome));
                    }
                }
            }
            Ok(false)
        }
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
        match result {
            Ok(true) => return (ops, Ok(taken)),
            Ok(false) => last_error = format!("{queue} not empty after {max:?}"),
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    (ops, Err(last_error))
}

/// Waits until `parent` has no children (every session that made an ephemeral there has
/// ended), at most `max`; how long it took, or what is left.
pub async fn wait_no_children(
    connect_string: &str,
    parent: &str,
    cfg: &WorkloadConfig,
    max: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    let mut left = String::from("not read");
    while start.elapsed() < max {
        let Ok(c) = connect(
            connect_string,
            cfg.session_timeout_ms,
            cfg.connect_timeout_ms,
            cfg.seed,
        )
        .await
        else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while start.elapsed() < max {
            let s = c.sync(parent);
            let l = c.get_children(parent);
            let listing = async {
                s.await?;
                l.await
            };
            match tokio::time::timeout(op_timeout, listing).await {
                Ok(Ok(names)) if names.is_empty() => {
                    let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
                    return Ok(start.elapsed());
                }
                Ok(Ok(names)) => left = format!("{names:?}"),
                Ok(Err(e)) if e.is_session_terminated() => break,
                Ok(Err(e)) => left = e.to_string(),
                Err(_) => left = "listing timed out".into(),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
    }
    Err(format!("{parent} still holds {left} after {max:?}"))
}

/// What [`read_member`] reads besides the registers.
#[derive(Debug, Clone, Default)]
pub struct FinalLayout {
    pub registers: Vec<String>,
    /// Parents of sequential creates: listed with their tokens.
    pub parents: Vec<String>,
    /// Pairs: read together (a recorded [`Call::PairRead`]), stored under each key.
    pub pairs: Vec<Vec<String>>,
    pub queues: Vec<String>,
    pub ephemeral_parents: Vec<String>,
}

/// Lists `parent` after a `sync` and reads each child's data and Stat, in chunks (all at once
/// could pass the client's queue limit: a long run leaves tens of thousands of children). A
/// child that vanished between the listing and its read is left out.
async fn read_children(
    c: &Client,
    parent: &str,
    op_timeout: Duration,
) -> Result<BTreeMap<String, (u64, rookery_client::Stat)>, String> {
    let s = c.sync(parent);
    let l = c.get_children(parent);
    let listing = async {
        s.await?;
        l.await
    };
    let names = tokio::time::timeout(op_timeout, listing)
        .await
        .map_err(|_| format!("listing {parent} timed out"))?
        .map_err(|e| format!("listing {parent}: {e}"))?;
    let mut children = BTreeMap::new();
    for chunk in names.chunks(500) {
        let reads: Vec<_> = chunk
            .iter()
            .map(|n| c.get_data(&format!("{parent}/{n}")))
            .collect();
        let datas = tokio::time::timeout(op_timeout, futures::future::join_all(reads))
            .await
            .map_err(|_| format!("reading the children of {parent} timed out"))?;
        for (n, d) in chunk.iter().zip(datas) {
            match d {
                Ok((data, stat)) => {
                    children.insert(n.clone(), (value_of(&data), stat));
                }
                Err(Error::NoNode) => {}
                Err(e) => return Err(format!("reading {parent}/{n}: {e}")),
            }
        }
    }
    Ok(children)
}

/// The most nodes [`read_tree`] reads before it gives up.
const MAX_TREE_NODES: usize = 1_000_000;

/// Reads every node of the member's tree outside `/zookeeper` (each directory's children
/// pipelined) and digests them (K1).
async fn read_tree(c: &Client, op_timeout: Duration) -> Result<TreeDigest, String> {
    let timed_out = |what: &str| format!("reading {what}: timed out");
    let (data, stat) = tokio::time::timeout(op_timeout, c.get_data("/"))
        .await
        .map_err(|_| timed_out("/"))?
        .map_err(|e| format!("reading /: {e}"))?;
    let mut dirs = vec!["/".to_string()];
    let mut nodes = vec![("/".to_string(), data, stat)];
    while let Some(dir) = dirs.pop() {
        let kids = tokio::time::timeout(op_timeout, c.get_children(&dir))
            .await
            .map_err(|_| timed_out(&dir))?
            .map_err(|e| format!("listing {dir}: {e}"))?;
        let paths: Vec<String> = kids
            .iter()
            .map(|k| format!("{}/{k}", dir.trim_end_matches('/')))
            .filter(|p| p != "/zookeeper")
            .collect();
        // Queued at once, answered in order.
        let reads: Vec<_> = paths.iter().map(|p| c.get_data(p)).collect();
        let read = tokio::time::timeout(op_timeout * 4, futures::future::join_all(reads))
            .await
            .map_err(|_| timed_out(&format!("the children of {dir}")))?;
        for (path, r) in paths.into_iter().zip(read) {
            let (data, stat) = r.map_err(|e| format!("reading {path}: {e}"))?;
            if stat.num_children > 0 {
                dirs.push(path.clone());
            }
            nodes.push((path, data, stat));
        }
        if nodes.len() > MAX_TREE_NODES {
            return Err(format!("more than {MAX_TREE_NODES} nodes"));
        }
    }
    Ok(TreeDigest::of(
        None,
        nodes.iter().map(|(p, d, s)| (p.as_str(), d.as_slice(), s)),
    ))
}

/// Reads one member's final state through a session bound to it alone: each register by a
/// sync-read and each pair by a pair read (both recorded, so the linearizability checks
/// include the final values), each parent's children with their tokens, each queue's items,
/// each ephemeral parent's nodes with their owners, after a `sync`, and a digest of its whole
/// tree (K1). Tries until `max` has passed.
pub async fn read_member(
    member: usize,
    addr: &str,
    layout: &FinalLayout,
    rec: &Recorder,
    cfg: &WorkloadConfig,
    max: Duration,
) -> (MemberState, Vec<Op>) {
    let deadline = Instant::now() + max;
    let mut ops = Vec::new();
    let mut last_error = String::from("not tried");
    let op_timeout = Duration::from_millis(cfg.op_timeout_ms);
    while let Some(c) = connect_until(addr, cfg, cfg.seed, deadline, &mut last_error).await {
        let process = rec.next_process();
        let mut state = MemberState {
            member,
            ..Default::default()
        };
        let attempt = async {
            let reads = layout
                .registers
                .iter()
                .map(|key| Call::SyncRead { key: key.clone() })
                .chain(
                    layout
                        .pairs
                        .iter()
                        .map(|keys| Call::PairRead { keys: keys.clone() }),
                );
            for call in reads {
                let pending = rec.invoke(process, c.session_id(), call.clone());
                let done = tokio::time::timeout(op_timeout, issue(&c, &call))
                    .await
                    .unwrap_or_else(|_| {
                        let reason = "final read timed out".to_string();
                        self::done(Outcome::Unknown { reason }, false)
                    });
                let op = rec.complete(pending, done.outcome);
                let result = match (&call, op.ok()) {
                    (
                        Call::SyncRead { key },
                        Some(Reply::Read {
                            value,
                            version,
                            mzxid,
                        }),
                    ) => {
                        let r = RegisterState {
                            value: *value,
                            version: *version,
                            mzxid: *mzxid,
                        };
                        Ok(vec![(key.clone(), r)])
                    }
                    (Call::PairRead { keys }, Some(Reply::Pair { reads }))
                        if reads.len() == keys.len() =>
                    {
                        Ok(keys.iter().cloned().zip(reads.iter().copied()).collect())
                    }
                    _ => Err(format!("reading {}: {:?}", call.key(), op.outcome)),
                };
                ops.push(op);
                state.registers.extend(result?);
            }
            for parent in &layout.parents {
                let kids = read_children(&c, parent, op_timeout).await?;
                let kids = kids.into_iter().map(|(n, (t, _))| (n, t)).collect();
                state.children.insert(parent.clone(), kids);
            }
            for queue in &layout.queues {
                let kids = read_children(&c, queue, op_timeout).await?;
                let kids = kids.into_iter().map(|(n, (t, _))| (n, t)).collect();
                state.queues.insert(queue.clone(), kids);
            }
            for parent in &layout.ephemeral_parents {
                let kids = read_children(&c, parent, op_timeout).await?;
                let kids = kids
                    .into_iter()
                    .map(|(n, (token, stat))| {
                        let owner = stat.ephemeral_owner;
                        (n, EphemeralNode { token, owner })
                    })
                    .collect();
                state.ephemerals.insert(parent.clone(), kids);
            }
            state.tree = Some(read_tree(&c, op_timeout).await?);
            Ok::<(), String>(())
        };
        let result = attempt.await;
        let _ = tokio::time::timeout(Duration::from_secs(2), c.close()).await;
        match result {
            Ok(()) => return (state, ops),
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    (
        MemberState {
            member,
            error: Some(last_error),
            ..Default::default()
        },
        ops,
    )
}
